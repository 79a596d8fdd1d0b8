//! The agent's audit trail on a real host: one VM of the test template driven through its own
//! `vm_worker` (real libvirt on qemu:///system, TCG; the attachment ledger on a real etcd;
//! local volumes) is started with a volume attached cold and one that cannot be prepared,
//! gets a second volume hot-plugged, is stopped, loses that volume, and is removed. Every
//! change lands in the agent's log, in order, as `yun-agent/<host>`, once each (the failing
//! volume's retries are not recorded again), and the chain verifies. The binary refuses to
//! start with a log it cannot open, naming it.
//!
//! Needs root and libvirt on qemu:///system (`scripts/libvirt.sh up <dir>`). The domain, the
//! files and etcd go when it ends.

#![allow(clippy::unwrap_used)]

mod guestlab;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use guestlab::{SYSTEM_URI, StateDir, build_template, lock_libvirt, require_libvirt};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use yun_agent::audit::AgentAudit;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{Hypervisor, VirtType, domain_name};
use yun_agent::images::ImageCache;
use yun_agent::metrics::AgentMetrics;
use yun_agent::prepare::VmFilePreparer;
use yun_agent::reporter::Report;
use yun_agent::storage::driver::HostVolumes;
use yun_agent::vm_worker::{self, Command, WorkerCtx};
use yun_agent::volume_sync::{Ledger, VolumeCtx};
use yun_audit::{ActorKind, AuditRecord, Outcome};
use yun_fleet::{AttachPhase, RunStrategy, VmDesired, VmPhase, VolumeRecord, VolumeSourceRecord};
use yun_fleet_etcd::FleetBus;
use yun_testkit::EtcdServer;

const HOST: &str = "audit-host";
/// Each step of one TCG guest on a busy 2-core machine (no step waits for the guest to boot).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

fn uid(n: u16) -> String {
    format!("{:08x}-{n:04x}-4000-8000-00000000a0d1", std::process::id())
}

fn local_volume(n: u16, size_gib: u32) -> VolumeRecord {
    VolumeRecord {
        id: format!("au/vol-{n}"),
        uid: uid(n),
        size_gib,
        read_only: false,
        source: VolumeSourceRecord::Local {},
    }
}

/// Destroys and undefines the domain on drop (also when the test fails half way).
struct DomainGuard(LibvirtHypervisor, String);

impl Drop for DomainGuard {
    fn drop(&mut self) {
        let _ = self.0.destroy(&self.1);
        let _ = self.0.undefine(&self.1);
    }
}

/// Publishes `vm` as the controller would and hands it to the worker with its revision.
async fn apply(bus: &FleetBus, tx: &mpsc::Sender<Command>, vm: &VmDesired) {
    bus.put_desired(HOST, vm).await.unwrap();
    let stored = bus.desired_stored(HOST, &vm.uid).await.unwrap().unwrap();
    tx.send(Command::Apply(Box::new(vm.clone()), stored.mod_revision))
        .await
        .unwrap();
}

/// Waits for the worker's report that the VM is in `phase` at `generation` (or gone).
async fn wait_report(
    reports: &mut mpsc::UnboundedReceiver<Report>,
    want: impl Fn(&Report) -> bool,
    what: &str,
) {
    let found = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(r) = reports.recv().await {
            if let Report::Observed(o) = &r
                && o.message.is_some()
            {
                eprintln!("worker reports {:?}: {:?}", o.phase, o.message);
            }
            if want(&r) {
                return;
            }
        }
        panic!("reports channel closed while waiting for {what}");
    })
    .await;
    assert!(found.is_ok(), "timed out waiting for {what}");
}

fn phase(r: &Report, phase: VmPhase, generation: u64) -> bool {
    matches!(r, Report::Observed(o) if o.phase == phase && o.observed_generation == generation)
}

/// Polls etcd until the VM's attachment of `volume_uid` satisfies `done`.
async fn wait_attachment(
    bus: &FleetBus,
    vm_uid: &str,
    volume_uid: &str,
    done: impl Fn(Option<AttachPhase>) -> bool,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let records = bus.vm_attachments(HOST, vm_uid).await.unwrap();
        if done(records.get(volume_uid).map(|r| r.phase)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn records(path: &Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_and_volume_changes_are_recorded_once_each_in_a_verifiable_log() {
    require_libvirt();
    let _lock = lock_libvirt();
    let state = StateDir::new("audit-trail");
    let Some(image) = build_template(&state.0) else {
        return;
    };
    let etcd = EtcdServer::start().unwrap();
    let bus = FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .unwrap();
    let (_bus_tx, bus_rx) = watch::channel(Some(bus.clone()));
    let log = state.0.join("audit").join("agent.log");
    let audit = AgentAudit::open(&log, HOST).unwrap();

    let vm_uid = uid(1);
    let _guard = DomainGuard(
        LibvirtHypervisor::connect(SYSTEM_URI).unwrap(),
        domain_name(&vm_uid),
    );
    let hv: Arc<dyn Hypervisor> = Arc::new(LibvirtHypervisor::connect(SYSTEM_URI).unwrap());
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let ctx = WorkerCtx {
        hypervisor: hv,
        preparer: Arc::new(VmFilePreparer::new(
            ImageCache::open(state.0.join("images")).unwrap(),
            state.0.join("vms"),
        )),
        virt_type: VirtType::Qemu,
        reports: reports_tx,
        metrics: AgentMetrics::new(&mut Registry::default()),
        // The guest is never given time to boot: its ACPI shutdown times out and it is forced.
        shutdown_grace: Duration::from_secs(3),
        resync_every: Duration::from_secs(3600),
        volumes: VolumeCtx {
            driver: Arc::new(HostVolumes::new(state.0.join("volumes"))),
            ledger: Ledger::new(HOST, bus_rx),
            detach_timeout: Duration::from_secs(10),
            audit: audit.clone(),
        },
        audit: audit.clone(),
    };
    let (tx, rx) = mpsc::channel(8);
    let worker = tokio::spawn(vm_worker::run(vm_uid.clone(), ctx, rx, None));

    let (a, b) = (local_volume(2, 1), local_volume(3, 1));
    // Size 0: the local driver refuses to create it, on every retry.
    let bad = local_volume(4, 0);
    let mut vm = VmDesired {
        image,
        hostname: "au".into(),
        volumes: vec![a.clone(), bad.clone()],
        ..yun_fleet::fixtures::vm_desired(&vm_uid, "au", "web")
    };

    // 1. Started with `a` cold; `bad` fails (and is retried with backoff).
    apply(&bus, &tx, &vm).await;
    wait_report(&mut reports, |r| phase(r, VmPhase::Running, 1), "Running").await;
    // 2. `b` hot-plugged into the running domain.
    vm.generation = 2;
    vm.volumes = vec![a.clone(), b.clone(), bad.clone()];
    apply(&bus, &tx, &vm).await;
    let attached = |p: Option<AttachPhase>| p == Some(AttachPhase::Attached);
    wait_attachment(&bus, &vm_uid, &b.uid, attached, "b attached").await;
    // Let `bad` be retried at least twice more (2 s, then 4 s backoff).
    tokio::time::sleep(Duration::from_secs(7)).await;
    // 3. Stopped (`bad` dropped: its record goes, nothing is detached).
    vm.generation = 3;
    vm.run_strategy = RunStrategy::Halted;
    vm.volumes = vec![a.clone(), b.clone()];
    apply(&bus, &tx, &vm).await;
    wait_report(&mut reports, |r| phase(r, VmPhase::Stopped, 3), "Stopped").await;
    // 4. `b` detached from the stopped domain's definition.
    vm.generation = 4;
    vm.volumes = vec![a.clone()];
    apply(&bus, &tx, &vm).await;
    wait_attachment(&bus, &vm_uid, &b.uid, |p| p.is_none(), "b detached").await;
    // 5. Removed: the domain and `a`'s attachment go.
    tx.send(Command::Remove).await.unwrap();
    let gone = |r: &Report| matches!(r, Report::Gone(u) if *u == vm_uid);
    wait_report(&mut reports, gone, "Gone").await;
    worker.await.unwrap();
    audit.close().await;

    assert_eq!(yun_audit::verify(&log, None).unwrap().records, 8);
    let got = records(&log);
    for r in &got {
        assert_eq!(r.actor.kind, ActorKind::Component);
        assert_eq!(r.actor.id, format!("yun-agent/{HOST}"));
        if let Some(v) = r.details.get("vmUid") {
            assert_eq!(v, &json!(vm_uid));
        }
    }
    let summary: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|r| (r.action.as_str(), r.object.as_str(), r.outcome.result()))
        .collect();
    let web = "VirtualMachine au/web";
    assert_eq!(
        summary,
        [
            ("volume.attach", "Volume au/vol-4", "error"),
            ("vm.start", web, "ok"),
            ("volume.attach", "Volume au/vol-2", "ok"),
            ("volume.attach", "Volume au/vol-3", "ok"),
            ("vm.stop", web, "ok"),
            ("volume.detach", "Volume au/vol-3", "ok"),
            ("vm.destroy", web, "ok"),
            ("volume.detach", "Volume au/vol-2", "ok"),
        ],
        "{got:#?}"
    );
    let d = |i: usize, key: &str| got[i].details.get(key).cloned().unwrap_or_default();
    assert!(
        matches!(&got[0].outcome, Outcome::Error { message } if message.contains("sizeGiB")),
        "{:?}",
        got[0].outcome
    );
    assert_eq!(d(1, "uid"), json!(vm_uid));
    assert!(d(1, "domainUuid").is_string());
    assert_eq!(
        (d(2, "uid"), d(2, "cold"), d(2, "target"), d(2, "driver")),
        (json!(a.uid), json!(true), json!("vdc"), json!("local"))
    );
    assert_eq!((d(3, "cold"), d(3, "target")), (json!(null), json!("vdd")));
    assert_eq!(d(3, "vm"), json!("au/web"));
    assert_eq!(d(7, "domainRemoved"), json!(true));
}

#[test]
fn the_agent_does_not_start_with_a_log_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let log = not_a_dir.join("agent.log");
    let config = dir.path().join("agent.toml");
    let text = format!(
        "host_name = \"n1\"\nvirt_type = \"qemu\"\nstate_dir = {:?}\naudit_log = {:?}\n",
        dir.path().join("state"),
        log
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yun-agent"))
        .arg("--config")
        .arg(&config)
        .env_remove("YUN_AGENT_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(log.to_str().unwrap()), "{stderr}");
}
