//! A VM with a Keystone identity on a real host: the test template boots under TCG from a seed
//! that holds the sealed-then-opened credential. It proves what the unit and worker tests
//! cannot: QEMU reads the owner-only (0600) seed (libvirt's dynamic ownership hands it over),
//! libvirt refuses a live media change on the seed's virtio disk, and a seed rewritten while
//! the guest runs (a rotation) is what the guest finds at its next cold boot.
//!
//! The test guest does not run cloud-init: it mounts the seed and prints the `yun-marker:` of
//! its user-data, which is how the test tells which seed a boot saw.
//!
//! Needs root and libvirt on qemu:///system (`scripts/libvirt.sh up <dir>`).

#![allow(clippy::unwrap_used)]

mod guestlab;

use guestlab::{
    SYSTEM_URI, StateDir, build_template, console, lock_libvirt, require_libvirt, run, tail,
    wait_for,
};
use std::sync::Arc;
use std::time::Duration;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{Hypervisor, VirtType};
use yun_agent::images::ImageCache;
use yun_agent::prepare::VmFilePreparer;
use yun_fleet::sealed::{SealKeyPair, seal_credential};
use yun_fleet::{GuestCredential, VmDesired, VmIdentityRecord};

const HOST: &str = "host-a";
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn identity(key: &SealKeyPair, uid: &str, generation: u64) -> VmIdentityRecord {
    let cred = GuestCredential {
        auth_url: "http://keystone.example:5000/v3".into(),
        application_credential_id: format!("cred-{generation}"),
        application_credential_secret: format!("secret-{generation}"),
        project_id: "p1".into(),
        region: None,
    };
    VmIdentityRecord {
        generation,
        credential_id: cred.application_credential_id.clone(),
        project_id: cred.project_id.clone(),
        issued_at: "2026-01-01T00:00:00Z".into(),
        roles: Vec::new(),
        retiring: None,
        sealed: seal_credential(&key.public_b64(), HOST, uid, generation, &cred).unwrap(),
    }
}

/// Destroys and undefines the domain on drop.
struct Domain<'a>(&'a LibvirtHypervisor, String);

impl Drop for Domain<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy(&self.1);
        let _ = self.0.undefine(&self.1);
    }
}

/// Waits for a readiness line that ends in `marker=<marker>` (the console log may or may not
/// start afresh at a restart) and returns it.
fn ready_line(log: &std::path::Path, marker: &str) -> String {
    let end = format!(" marker={marker}");
    wait_for(
        &format!("a boot with marker {marker}"),
        BOOT_TIMEOUT,
        || {
            console(log)
                .lines()
                .find(|l| l.starts_with("YUN-GUEST-") && l.ends_with(&end))
                .map(str::to_owned)
        },
        || tail(&console(log), 30),
    )
}

#[test]
fn guest_boots_from_the_private_seed_and_sees_a_rotation_after_a_cold_boot() {
    require_libvirt();
    let _lock = lock_libvirt();
    let state = StateDir::new("vm-identity");
    let Some(image) = build_template(&state.0) else {
        return;
    };
    let key = Arc::new(SealKeyPair::generate());
    let preparer = VmFilePreparer::new(
        ImageCache::open(state.0.join("images")).unwrap(),
        state.0.join("vms"),
    )
    .with_identity(HOST, key.clone());
    let hv = LibvirtHypervisor::connect(SYSTEM_URI).unwrap();
    let uid = format!("idt-{}", std::process::id());
    let mut vm: VmDesired = yun_fleet::fixtures::vm_desired(&uid, "idt", "guest");
    vm.image = image;
    vm.user_data = Some("#cloud-config\n# yun-marker: seed-1\n".into());
    vm.identity = Some(identity(&key, &uid, 1));

    let spec = preparer.prepare(&vm, VirtType::Qemu).unwrap();
    let seed = spec.seed_iso.clone();
    let log = spec.console_log.clone();
    hv.define(&spec).unwrap();
    let domain = Domain(&hv, spec.name.clone());
    hv.start(&domain.1).unwrap();
    let first = ready_line(&log, "seed-1");
    assert_eq!(
        first,
        format!("YUN-GUEST-READY instance-id={uid} hostname=guest marker=seed-1"),
        "the guest read its 0600 seed"
    );

    // Rotation while the guest runs: a new seed under the same path (a new file).
    vm.user_data = Some("#cloud-config\n# yun-marker: seed-2\n".into());
    vm.identity = Some(identity(&key, &uid, 2));
    preparer.write_seed(&vm).unwrap();
    // The seed is a virtio disk: libvirt changes media only on CD-ROMs and floppies, so the
    // running guest cannot be handed the new file.
    let change = run(&[
        "virsh",
        "-c",
        SYSTEM_URI,
        "change-media",
        &domain.1,
        "vdb",
        seed.to_str().unwrap(),
        "--update",
        "--live",
    ]);
    assert!(
        !change.status.success(),
        "libvirt changed the seed disk's media live: update docs/ops/identity.md"
    );

    // A cold boot (a new QEMU process) opens the new seed.
    hv.destroy(&domain.1).unwrap();
    hv.start(&domain.1).unwrap();
    let second = ready_line(&log, "seed-2");
    assert_eq!(
        second,
        format!("YUN-GUEST-READY instance-id={uid} hostname=guest marker=seed-2")
    );
}
