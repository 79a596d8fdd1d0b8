//! Test harness for Yun: the list of external programs the tests run (and when a test may skip), real etcd servers, iSCSI targets, NFS servers, Keystones and Prometheus servers, libvirt
//! checks, ISO (seed) reading, guarded child processes and bounded polling, shared by the crates' tests and by
//! tests/integration.

mod child;
mod daemon;
mod error;
mod etcd;
mod etcd_tls;
mod iscsi;
mod iso;
mod keystone;
mod libvirt;
mod nfs;
mod paths;
mod prometheus;
mod skip;
mod tools;
mod wait;

pub use child::{ChildGuard, TERMINATE_GRACE};
pub use error::TestkitError;
pub use etcd::EtcdServer;
pub use etcd_tls::{TestPki, etcdctl_flags};
pub use iscsi::IscsiTarget;
pub use iso::{iso_file, isoinfo};
pub use keystone::KeystoneServer;
pub use libvirt::require_libvirt_system;
pub use nfs::NfsServer;
pub use paths::{binary, workspace_root};
pub use prometheus::PrometheusServer;
pub use skip::{
    KernelFeature, SKIP_LOG_ENV, have_tools, missing_dependency, skip_for_kernel, under_ci,
};
pub use tools::{
    TOOLS, Tool, cannot_run, find as find_tool, package_of, require as require_tool,
    require_all as require_tools,
};
pub use wait::{wait_until, wait_until_async};
