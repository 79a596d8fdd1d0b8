//! Ready-made records for tests of the crates on either side of the contract (feature
//! `fixtures`). Tests change the fields they care about with struct-update syntax, so a new
//! field on a record is filled in here once, not in every test.

use crate::{
    Artifact, DiskFormat, HostInfo, ImageSpec, Resources, RunStrategy, SCHEMA_VERSION, VmDesired,
};

/// A small VM `namespace/name` with uid `uid`: 1 vCPU, 256 MiB, 1 GiB, image `t/img`, no NICs.
pub fn vm_desired(uid: &str, namespace: &str, name: &str) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        uid: uid.into(),
        namespace: namespace.into(),
        name: name.into(),
        generation: 1,
        resources: Resources {
            cpus: 1,
            memory_mib: 256,
            disk_gib: 1,
        },
        image: ImageSpec {
            name: "t/img".into(),
            disk: Artifact {
                source: "file:///x".into(),
                sha256: "ab".repeat(32),
            },
            format: DiskFormat::Qcow2,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
        hostname: name.into(),
        user_data: None,
        run_strategy: RunStrategy::Always,
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    }
}

/// A small host `name`'s registration record: 2 CPUs, 1 GiB, 10 GiB disk, no labels, no
/// tunnel, no seal key.
pub fn host_info(name: &str) -> HostInfo {
    HostInfo {
        v: SCHEMA_VERSION,
        name: name.into(),
        cpus: 2,
        memory_mib: 1024,
        disk_gib: 10,
        labels: Default::default(),
        agent_version: "t".into(),
        virt_type: "qemu".into(),
        started_at: "t".into(),
        tunnel_ip: None,
        seal_key: None,
        metrics_address: None,
    }
}
