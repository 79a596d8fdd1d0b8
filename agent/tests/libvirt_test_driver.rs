//! `LibvirtHypervisor` against libvirt's built-in `test:///default` driver (no daemon needed).
//! All connections of a process share that driver's state, so each test uses its own uids.

use std::path::PathBuf;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{
    DomainSpec, DomainState, Hypervisor, HypervisorError, VirtType, domain_name,
};

const URI: &str = "test:///default";

fn spec(uid: &str, dir: &std::path::Path) -> DomainSpec {
    DomainSpec {
        name: domain_name(uid),
        uid: uid.into(),
        namespace: "team-a".into(),
        vm_name: format!("vm-{uid}"),
        generation: 1,
        virt_type: VirtType::Qemu,
        vcpus: 1,
        memory_mib: 256,
        root_disk: dir.join("disk.qcow2"),
        seed_iso: dir.join("seed.iso"),
        kernel: None,
        initrd: None,
        cmdline: None,
        console_log: dir.join("console.log"),
        nics: Vec::new(),
        disks: Vec::new(),
    }
}

#[test]
fn full_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect(URI).unwrap();
    let s = spec("lifecycle-1", dir.path());

    let defined = hv.define(&s).unwrap();
    assert_eq!(defined.name, "yun-lifecycle-1");
    assert_eq!(defined.state, DomainState::ShutOff);
    assert_eq!(defined.uid(), Some("lifecycle-1"));

    let started = hv.start(&s.name).unwrap();
    assert_eq!(started.state, DomainState::Running);
    assert_eq!(started.uuid, defined.uuid);
    // Starting a running domain is a no-op.
    assert_eq!(hv.start(&s.name).unwrap().state, DomainState::Running);

    let seen = hv.lookup(&s.name).unwrap().unwrap();
    assert_eq!(seen.state, DomainState::Running);
    assert_eq!(seen.uuid.len(), 36, "{}", seen.uuid);
    assert_eq!(seen.uuid, defined.uuid);
    let meta = seen.meta.unwrap();
    assert_eq!(
        (
            meta.uid.as_str(),
            meta.namespace.as_str(),
            meta.vm_name.as_str()
        ),
        ("lifecycle-1", "team-a", "vm-lifecycle-1")
    );
    assert_eq!(meta.generation, 1);

    hv.destroy(&s.name).unwrap();
    assert_eq!(
        hv.lookup(&s.name).unwrap().unwrap().state,
        DomainState::ShutOff
    );
    // Destroying a stopped domain is fine.
    hv.destroy(&s.name).unwrap();

    hv.undefine(&s.name).unwrap();
    assert_eq!(hv.lookup(&s.name).unwrap(), None);
    hv.undefine(&s.name).unwrap();
    hv.destroy(&s.name).unwrap();
}

#[test]
fn list_managed_only_returns_yun_domains() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect(URI).unwrap();
    // The driver's own domain exists and is not ours.
    let builtin = hv.lookup("test").unwrap().unwrap();
    assert_eq!(builtin.meta, None);

    let a = spec("listed-a", dir.path());
    let b = spec("listed-b", dir.path());
    hv.define(&a).unwrap();
    hv.define(&b).unwrap();
    hv.start(&b.name).unwrap();

    let managed = hv.list_managed().unwrap();
    let ours: Vec<_> = managed
        .iter()
        .filter(|d| d.name.starts_with("yun-listed-"))
        .map(|d| (d.name.as_str(), d.uid(), d.state.clone()))
        .collect();
    assert_eq!(
        ours,
        [
            ("yun-listed-a", Some("listed-a"), DomainState::ShutOff),
            ("yun-listed-b", Some("listed-b"), DomainState::Running),
        ]
    );
    assert!(managed.iter().all(|d| d.name != "test" && d.meta.is_some()));

    hv.destroy(&b.name).unwrap();
    hv.undefine(&a.name).unwrap();
    hv.undefine(&b.name).unwrap();
    assert!(
        !hv.list_managed()
            .unwrap()
            .iter()
            .any(|d| d.name.starts_with("yun-listed-"))
    );
}

#[test]
fn redefinition_keeps_uuid_and_updates_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect(URI).unwrap();
    let mut s = spec("redefine-1", dir.path());
    let first = hv.define(&s).unwrap();
    hv.start(&s.name).unwrap();
    s.generation = 2;
    s.memory_mib = 512;
    let second = hv.define(&s).unwrap();
    assert_eq!(second.uuid, first.uuid);
    assert_eq!(
        second.state,
        DomainState::Running,
        "redefinition does not stop it"
    );
    hv.destroy(&s.name).unwrap();
    let after = hv.lookup(&s.name).unwrap().unwrap();
    assert_eq!(after.meta.unwrap().generation, 2);
    hv.undefine(&s.name).unwrap();
}

#[test]
fn direct_kernel_boot_definition_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect(URI).unwrap();
    let mut s = spec("kernel-1", dir.path());
    s.kernel = Some(dir.path().join("vmlinuz"));
    s.initrd = Some(dir.path().join("initrd.img"));
    s.cmdline = Some("console=ttyS0 yun.test='a&b'".into());
    hv.define(&s).unwrap();
    assert_eq!(hv.start(&s.name).unwrap().state, DomainState::Running);
    hv.destroy(&s.name).unwrap();
    hv.undefine(&s.name).unwrap();
}

#[test]
fn shutdown_and_start_of_missing_domain_say_not_found() {
    let hv = LibvirtHypervisor::connect(URI).unwrap();
    let err = hv.start("yun-missing").unwrap_err();
    assert!(matches!(&err, HypervisorError::NotFound { domain } if domain == "yun-missing"));
    assert!(matches!(
        hv.shutdown("yun-missing"),
        Err(HypervisorError::NotFound { .. })
    ));
    assert_eq!(hv.lookup("yun-missing").unwrap(), None);
}

#[test]
fn graceful_shutdown_of_running_domain() {
    let dir = tempfile::tempdir().unwrap();
    let hv = LibvirtHypervisor::connect(URI).unwrap();
    let s = spec("shutdown-1", dir.path());
    hv.define(&s).unwrap();
    hv.shutdown(&s.name).unwrap(); // not running: no-op
    hv.start(&s.name).unwrap();
    hv.shutdown(&s.name).unwrap();
    // The test driver has no guest: it powers off at once.
    assert_eq!(
        hv.lookup(&s.name).unwrap().unwrap().state,
        DomainState::ShutOff
    );
    hv.undefine(&s.name).unwrap();
}

#[test]
fn bad_uri_is_a_connect_error_naming_it() {
    let err = LibvirtHypervisor::connect("nosuchdriver:///x").unwrap_err();
    assert!(matches!(err, HypervisorError::Connect { .. }));
    assert!(err.to_string().contains("nosuchdriver:///x"), "{err}");
}

#[test]
fn connection_is_shared_across_threads() {
    let hv = std::sync::Arc::new(LibvirtHypervisor::connect(URI).unwrap());
    let dirs: Vec<PathBuf> = (0..4)
        .map(|i| std::env::temp_dir().join(format!("t{i}")))
        .collect();
    let handles: Vec<_> = dirs
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let hv = hv.clone();
            std::thread::spawn(move || {
                let s = spec(&format!("thread-{i}"), &d);
                hv.define(&s).unwrap();
                hv.start(&s.name).unwrap();
                hv.destroy(&s.name).unwrap();
                hv.undefine(&s.name).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
