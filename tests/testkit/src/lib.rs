//! Test harness for Yun: real etcd servers, libvirt checks, guarded child processes and
//! bounded polling, shared by the crates' tests and by tests/integration.

mod child;
mod error;
mod etcd;
mod libvirt;
mod paths;
mod wait;

pub use child::{ChildGuard, TERMINATE_GRACE};
pub use error::TestkitError;
pub use etcd::EtcdServer;
pub use libvirt::require_libvirt_system;
pub use paths::{binary, workspace_root};
pub use wait::{wait_until, wait_until_async};
