//! A VM's Keystone identity through the agent's own code, with real files and tools: the seed
//! of a VM whose credential is sealed to this host carries it as vendor-data (read back out of
//! the ISO with `isoinfo`); a credential that does not open here (sealed to another host's key,
//! bound to another host name, VM or generation) keeps the VM from starting, with a message
//! that names the VM and the reason and never the secret; a rotation rewrites the seed of the
//! running VM and reports the new generation.
//!
//! The worker tests drive `vm_worker` against libvirt's built-in test driver
//! (`test:///default`, in-process, no daemon): it defines and "runs" domains without QEMU,
//! which is all these tests need from a hypervisor.

#![allow(clippy::unwrap_used)]

use prometheus_client::registry::Registry;
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use yun_agent::audit::AgentAudit;
use yun_agent::guest_identity::REFRESH_SCRIPT;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{Hypervisor, VirtType, domain_name};
use yun_agent::images::ImageCache;
use yun_agent::metrics::AgentMetrics;
use yun_agent::prepare::VmFilePreparer;
use yun_agent::reporter::Report;
use yun_agent::storage::driver::HostVolumes;
use yun_agent::vm_worker::{self, Command as WorkerCommand, WorkerCtx};
use yun_agent::volume_sync::{Ledger, VolumeCtx};
use yun_fleet::sealed::{SealKeyPair, seal_credential};
use yun_fleet::{
    Artifact, GuestCredential, RunStrategy, VmDesired, VmIdentityRecord, VmObserved, VmPhase,
};

const HOST: &str = "host-a";
/// Every character YAML gives a meaning to, in the one value that must arrive intact.
const SECRET: &str = "s3:cr'et \"#1\" - {x} [y] & *z !t | > % @ `";

fn credential(secret: &str) -> GuestCredential {
    GuestCredential {
        auth_url: "http://keystone.example:5000/v3".into(),
        application_credential_id: "a1b2c3".into(),
        application_credential_secret: secret.into(),
        project_id: "p1".into(),
        region: Some("RegionOne".into()),
    }
}

/// `credential(secret)` sealed to `public_b64` for (`host`, `uid`, `generation`), in a record
/// that says `generation`.
fn record(
    public_b64: &str,
    host: &str,
    uid: &str,
    generation: u64,
    secret: &str,
) -> VmIdentityRecord {
    VmIdentityRecord {
        generation,
        credential_id: "a1b2c3".into(),
        project_id: "p1".into(),
        issued_at: "2026-01-01T00:00:00Z".into(),
        roles: Vec::new(),
        retiring: None,
        sealed: seal_credential(public_b64, host, uid, generation, &credential(secret)).unwrap(),
    }
}

/// A real (tiny, empty) qcow2 template, so that `prepare` gets as far as the seed.
fn template(dir: &Path) -> Artifact {
    let path = dir.join("base.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("16M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Artifact {
        source: format!("file://{}", path.display()),
        sha256: hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
    }
}

fn vm(uid: &str, disk: &Artifact, identity: Option<VmIdentityRecord>) -> VmDesired {
    let mut vm = yun_fleet::fixtures::vm_desired(uid, "team", "web");
    vm.image.disk = disk.clone();
    vm.identity = identity;
    vm
}

fn preparer(state: &Path, key: Option<Arc<SealKeyPair>>) -> VmFilePreparer {
    let p = VmFilePreparer::new(
        ImageCache::open(state.join("images")).unwrap(),
        state.join("vms"),
    );
    match key {
        Some(key) => p.with_identity(HOST, key),
        None => p,
    }
}

fn iso_file(iso: &Path, name: &str) -> String {
    yun_testkit::iso_file(iso, name).unwrap()
}

/// The application credential secret the seed's vendor-data writes into the guest's
/// clouds.yaml, checked for the rest of what the guest needs on the way.
fn delivered_secret(iso: &Path) -> String {
    let vendor: Value = serde_yaml::from_str(&iso_file(iso, "/vendor-data")).unwrap();
    let file = &vendor["write_files"][0];
    assert_eq!(file["path"].as_str(), Some("/etc/openstack/clouds.yaml"));
    assert_eq!(file["permissions"].as_str(), Some("0600"));
    let clouds: Value = serde_yaml::from_str(file["content"].as_str().unwrap()).unwrap();
    let yun = &clouds["clouds"]["yun"];
    assert_eq!(yun["auth_type"].as_str(), Some("v3applicationcredential"));
    assert_eq!(
        yun["auth"]["auth_url"].as_str(),
        Some("http://keystone.example:5000/v3")
    );
    assert_eq!(
        yun["auth"]["application_credential_id"].as_str(),
        Some("a1b2c3")
    );
    assert_eq!(yun["region_name"].as_str(), Some("RegionOne"));
    // The boot-time refresh copies the seed's own clouds.yaml: the same text.
    assert_eq!(
        iso_file(iso, "/yun-clouds.yaml"),
        file["content"].as_str().unwrap()
    );
    yun["auth"]["application_credential_secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn seed_carries_the_credential_as_vendor_data() {
    let state = tempfile::tempdir().unwrap();
    let disk = template(state.path());
    let key = Arc::new(SealKeyPair::generate());
    let p = preparer(state.path(), Some(key.clone()));
    let desired = vm(
        "uid-1",
        &disk,
        Some(record(&key.public_b64(), HOST, "uid-1", 3, SECRET)),
    );
    let spec = p.prepare(&desired, VirtType::Qemu).unwrap();
    assert_eq!(delivered_secret(&spec.seed_iso), SECRET);
    assert_eq!(
        std::fs::metadata(&spec.seed_iso).unwrap().mode() & 0o777,
        0o600
    );
    // A VM without an identity gets no vendor-data at all.
    let plain = p
        .prepare(&vm("uid-2", &disk, None), VirtType::Qemu)
        .unwrap();
    let listing = yun_testkit::isoinfo(&plain.seed_iso, &["-R", "-f"]).unwrap();
    assert!(!listing.contains("vendor-data"), "{listing}");
}

#[test]
fn a_credential_that_does_not_open_here_is_refused_by_name() {
    let state = tempfile::tempdir().unwrap();
    let disk = template(state.path());
    let ours = Arc::new(SealKeyPair::generate());
    let theirs = SealKeyPair::generate();
    let mut stale = record(&ours.public_b64(), HOST, "uid-1", 3, SECRET);
    stale.generation = 4;
    let cases = [
        (
            "sealed to another host's key",
            record(&theirs.public_b64(), HOST, "uid-1", 3, SECRET),
        ),
        (
            "bound to another host name",
            record(&ours.public_b64(), "host-b", "uid-1", 3, SECRET),
        ),
        (
            "bound to another VM",
            record(&ours.public_b64(), HOST, "uid-9", 3, SECRET),
        ),
        ("bound to another generation", stale),
    ];
    let p = preparer(state.path(), Some(ours.clone()));
    for (what, identity) in cases {
        let generation = identity.generation;
        let err = p
            .prepare(&vm("uid-1", &disk, Some(identity)), VirtType::Qemu)
            .unwrap_err()
            .to_string();
        for part in [
            "VM team/web (uid uid-1)",
            &format!("generation {generation}"),
            "host host-a",
            "authentication failed",
        ] {
            assert!(err.contains(part), "{what}: {part:?} missing from: {err}");
        }
        assert!(!err.contains("s3:cr"), "{what}: {err}");
    }
    // An agent without a seal key cannot open any.
    let keyless = preparer(state.path(), None);
    let err = keyless
        .prepare(
            &vm(
                "uid-1",
                &disk,
                Some(record(&ours.public_b64(), HOST, "uid-1", 3, SECRET)),
            ),
            VirtType::Qemu,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VM team/web (uid uid-1)") && err.contains("no seal key"),
        "{err}"
    );
}

/// A worker on libvirt's in-process test driver; its reports arrive on the returned channel.
struct Lab {
    _state: tempfile::TempDir,
    disk: Artifact,
    key: Arc<SealKeyPair>,
    ctx: WorkerCtx,
    reports: mpsc::UnboundedReceiver<Report>,
    vms_dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let state = tempfile::tempdir().unwrap();
        let disk = template(state.path());
        let key = Arc::new(SealKeyPair::generate());
        let (tx, reports) = mpsc::unbounded_channel();
        let hypervisor: Arc<dyn Hypervisor> =
            Arc::new(LibvirtHypervisor::connect("test:///default").unwrap());
        let ctx = WorkerCtx {
            hypervisor,
            preparer: Arc::new(preparer(state.path(), Some(key.clone()))),
            virt_type: VirtType::Qemu,
            reports: tx,
            metrics: AgentMetrics::new(&mut Registry::default()),
            shutdown_grace: Duration::from_secs(2),
            resync_every: Duration::from_secs(3600),
            volumes: VolumeCtx {
                driver: Arc::new(HostVolumes::new(state.path().join("volumes"))),
                ledger: Ledger::new(HOST, tokio::sync::watch::channel(None).1),
                detach_timeout: Duration::from_secs(2),
                audit: AgentAudit::disabled(),
            },
            audit: AgentAudit::disabled(),
        };
        Lab {
            vms_dir: state.path().join("vms"),
            _state: state,
            disk,
            key,
            ctx,
            reports,
        }
    }

    /// The next VM observation, within 30 s.
    async fn next(&mut self) -> VmObserved {
        loop {
            let report = tokio::time::timeout(Duration::from_secs(30), self.reports.recv())
                .await
                .expect("no report within 30 s")
                .expect("worker gone");
            if let Report::Observed(o) = report {
                return o;
            }
        }
    }

    /// Observations until one in `phase` (which it returns).
    async fn until(&mut self, phase: VmPhase) -> VmObserved {
        loop {
            let o = self.next().await;
            if o.phase == phase {
                return o;
            }
        }
    }
}

#[tokio::test]
async fn a_vm_whose_identity_does_not_open_fails_with_the_reason() {
    let mut lab = Lab::new();
    let theirs = SealKeyPair::generate();
    let uid = format!("idt-fail-{}", std::process::id());
    let (tx, rx) = mpsc::channel(4);
    let worker = tokio::spawn(vm_worker::run(uid.clone(), lab.ctx.clone(), rx, None));
    let identity = record(&theirs.public_b64(), HOST, &uid, 2, SECRET);
    tx.send(WorkerCommand::Apply(
        Box::new(vm(&uid, &lab.disk, Some(identity))),
        1,
    ))
    .await
    .unwrap();
    let failed = lab.until(VmPhase::Failed).await;
    let message = failed.message.unwrap_or_default();
    assert!(
        message.contains(&format!("VM team/web (uid {uid})")),
        "{message}"
    );
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!message.contains("s3:cr"), "{message}");
    assert_eq!(failed.identity_generation, None);
    // Nothing was defined: the VM never reached the hypervisor.
    assert!(
        lab.ctx
            .hypervisor
            .lookup(&domain_name(&uid))
            .unwrap()
            .is_none()
    );
    drop(tx);
    worker.await.unwrap();
}

#[tokio::test]
async fn rotation_rewrites_the_running_vms_seed_then_reports_it() {
    let mut lab = Lab::new();
    let uid = format!("idt-rot-{}", std::process::id());
    let public = lab.key.public_b64();
    let (tx, rx) = mpsc::channel(4);
    let worker = tokio::spawn(vm_worker::run(uid.clone(), lab.ctx.clone(), rx, None));
    let mut desired = vm(
        &uid,
        &lab.disk,
        Some(record(&public, HOST, &uid, 1, "first-secret")),
    );
    tx.send(WorkerCommand::Apply(Box::new(desired.clone()), 1))
        .await
        .unwrap();
    let running = lab.until(VmPhase::Running).await;
    assert_eq!(running.identity_generation, Some(1));
    let iso = lab.vms_dir.join(&uid).join("seed.iso");
    assert_eq!(delivered_secret(&iso), "first-secret");
    let inode = std::fs::metadata(&iso).unwrap().ino();

    // The controller rotates: a new credential under generation 2.
    desired.identity = Some(record(&public, HOST, &uid, 2, "second-secret"));
    desired.generation += 1;
    tx.send(WorkerCommand::Apply(Box::new(desired.clone()), 2))
        .await
        .unwrap();
    let rotated = lab.until(VmPhase::Running).await;
    assert_eq!(rotated.message, None);
    // The new seed is in place, as a new file: QEMU keeps the old one open, so the running
    // guest still holds generation 1 and that is what is reported (the controller must not
    // revoke it yet).
    assert_eq!(delivered_secret(&iso), "second-secret");
    assert_ne!(std::fs::metadata(&iso).unwrap().ino(), inode);
    assert_eq!(rotated.identity_generation, Some(1));

    // A cold boot hands the guest the new seed: stopped, then running, on generation 2.
    desired.run_strategy = RunStrategy::Halted;
    desired.generation += 1;
    tx.send(WorkerCommand::Apply(Box::new(desired.clone()), 3))
        .await
        .unwrap();
    let stopped = lab.until(VmPhase::Stopped).await;
    assert_eq!(
        stopped.identity_generation,
        Some(2),
        "the next boot gets generation 2"
    );
    desired.run_strategy = RunStrategy::Always;
    desired.generation += 1;
    tx.send(WorkerCommand::Apply(Box::new(desired.clone()), 4))
        .await
        .unwrap();
    let rebooted = lab.until(VmPhase::Running).await;
    assert_eq!(rebooted.identity_generation, Some(2));

    // A rotation that does not open here leaves the VM running on the seed it has.
    let theirs = SealKeyPair::generate();
    desired.identity = Some(record(&theirs.public_b64(), HOST, &uid, 3, "third-secret"));
    desired.generation += 1;
    tx.send(WorkerCommand::Apply(Box::new(desired.clone()), 5))
        .await
        .unwrap();
    let refused = lab.next().await;
    assert_eq!(refused.phase, VmPhase::Running);
    assert_eq!(refused.identity_generation, Some(2));
    let message = refused.message.unwrap_or_default();
    assert!(
        message.contains("generation 3") && message.contains("authentication failed"),
        "{message}"
    );
    assert_eq!(delivered_secret(&iso), "second-secret");

    tx.send(WorkerCommand::Remove).await.unwrap();
    worker.await.unwrap();
    assert!(
        lab.ctx
            .hypervisor
            .lookup(&domain_name(&uid))
            .unwrap()
            .is_none()
    );
}

/// Runs the guest's boot-time refresh ([`REFRESH_SCRIPT`]) on this host against a real seed
/// ISO, with `/etc/openstack` moved under `root`. This host's kernel cannot mount ISO 9660, so
/// `blkid`, `mount` and `umount` are stand-ins on `PATH`: `blkid` answers with the ISO when its
/// volume id is `cidata` (and `seed` is set), `mount` extracts the ISO with xorriso. What runs
/// for real is the script: its lookup, the copy through a temporary file, the mode, the cleanup,
/// and that it never fails. The script hides its tools' stderr (a guest's boot must go on), so
/// the stand-ins call isoinfo and xorriso by the paths found here, and append what those print
/// to [`stand_in_log`], which the test shows when a file is missing.
fn run_refresh(root: &Path, seed: Option<&Path>) -> std::process::Output {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = |name| yun_testkit::require_tool(name).unwrap_or_else(|e| panic!("{e}"));
    let (isoinfo, xorriso) = (tool("isoinfo"), tool("xorriso"));
    let log = stand_in_log(root);
    let blkid = format!(
        "#!/bin/sh\nexec 2>>'{log}'\n[ -n \"$YUN_TEST_SEED\" ] && '{isoinfo}' -d -i \"$YUN_TEST_SEED\" | grep -qx 'Volume id: cidata' && echo \"$YUN_TEST_SEED\"\n",
        log = log.display(),
        isoinfo = isoinfo.display()
    );
    let mount = format!(
        "#!/bin/sh\n# mount -o ro DEV DIR\nexec 2>>'{log}'\nexec '{xorriso}' -osirrox on -indev \"$3\" -extract / \"$4\"\n",
        log = log.display(),
        xorriso = xorriso.display()
    );
    let stand_ins = [
        ("blkid", blkid.as_str()),
        ("mount", mount.as_str()),
        ("umount", "#!/bin/sh\nfind \"$1\" -mindepth 1 -delete\n"),
    ];
    for (name, body) in stand_ins {
        let path = bin.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let script = REFRESH_SCRIPT.replace(
        "/etc/openstack",
        &root.join("etc/openstack").display().to_string(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env(
            "YUN_TEST_SEED",
            seed.map(|s| s.display().to_string()).unwrap_or_default(),
        )
        .env("TMPDIR", root)
        .output()
        .unwrap()
}

/// Where [`run_refresh`]'s stand-ins write what their tools print on stderr.
fn stand_in_log(root: &Path) -> std::path::PathBuf {
    root.join("stand-ins.log")
}

#[test]
fn boot_refresh_installs_the_seeds_clouds_yaml() {
    let state = tempfile::tempdir().unwrap();
    let disk = template(state.path());
    let key = Arc::new(SealKeyPair::generate());
    let p = preparer(state.path(), Some(key.clone()));
    let root = state.path().join("guest");
    let installed = root.join("etc/openstack/clouds.yaml");

    // No seed: nothing happens, and the boot goes on.
    let out = run_refresh(&root, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!installed.exists());

    for (generation, secret) in [(1, "first-secret"), (2, SECRET)] {
        let desired = vm(
            "uid-1",
            &disk,
            Some(record(&key.public_b64(), HOST, "uid-1", generation, secret)),
        );
        let iso = p.prepare(&desired, VirtType::Qemu).unwrap().seed_iso;
        let out = run_refresh(&root, Some(&iso));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&installed).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the stand-ins said:\n{}",
                installed.display(),
                std::fs::read_to_string(stand_in_log(&root)).unwrap_or_default()
            )
        });
        assert_eq!(text, iso_file(&iso, "/yun-clouds.yaml"));
        let clouds: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            clouds["clouds"]["yun"]["auth"]["application_credential_secret"].as_str(),
            Some(secret)
        );
        assert_eq!(std::fs::metadata(&installed).unwrap().mode() & 0o777, 0o600);
    }
    // Only the file: no temporary copy, no mount point left behind.
    let names: Vec<_> = std::fs::read_dir(installed.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["clouds.yaml"]);
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
