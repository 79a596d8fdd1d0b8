//! Ready-made records for tests of the crates on either side of the contract (feature
//! `fixtures`). Tests change the fields they care about with struct-update syntax, so a new
//! field on a record is filled in here once, not in every test.

use crate::{Artifact, DiskFormat, ImageSpec, Resources, RunStrategy, SCHEMA_VERSION, VmDesired};

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
