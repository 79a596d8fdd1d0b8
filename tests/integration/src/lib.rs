//! Fixtures for Yun's integration tests: a real etcd, the `yun-controller` (bootstrap mode) and
//! `yun-agent` binaries against the system libvirtd, plus helpers to read what they did.

mod cluster;
mod etcd_read;
mod host;

pub use cluster::{BOOT_TIMEOUT, Cluster, VmRunning, store_key};
pub use etcd_read::{KeyChange, etcd_get_json, etcd_history, etcd_keys, etcd_wait_for};
pub use host::{
    domain_exists, domain_id, domain_state, free_port, http_get, qemu_pid, random_suffix,
};
