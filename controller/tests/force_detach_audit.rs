//! `yun-controller force-detach` records what the operator did in its own audit log, against a
//! real etcd: the real binary releases a granted volume and appends a `volume.force_detach`
//! record (actor: the operator as a user), a failed second run appends an error record, the
//! chain verifies (also through `yun-controller audit verify`), and a log that cannot be
//! opened stops the command before anything changes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;
use yun_audit::{ActorKind, AuditRecord};
use yun_fleet::{ClaimHolder, SCHEMA_VERSION, VmDesired, VolumeClaim, VolumeRecord};
use yun_fleet_etcd::{ClaimGrant, FleetBus};
use yun_testkit::EtcdServer;

const VOLUME_UID: &str = "4f0c2a9e-0000-4000-8000-00000000d47a";

fn volume() -> VolumeRecord {
    VolumeRecord {
        id: "t/data".into(),
        uid: VOLUME_UID.into(),
        size_gib: 1,
        read_only: false,
        source: yun_fleet::VolumeSourceRecord::Local {},
    }
}

/// Grants the volume to VM `t/vm-a` on host h1, as the controller does.
async fn grant(bus: &FleetBus) {
    let vm = VmDesired {
        volumes: vec![volume()],
        ..yun_fleet::fixtures::vm_desired("vm-a", "t", "vm-a")
    };
    let claim = VolumeClaim {
        v: SCHEMA_VERSION,
        volume: "t/data".into(),
        home: None,
        holders: vec![ClaimHolder {
            host: "h1".into(),
            vm_uid: "vm-a".into(),
            vm: "t/vm-a".into(),
            read_only: false,
            granted_at: "2026-01-01T00:00:00Z".into(),
        }],
    };
    let grant = ClaimGrant {
        volume_uid: VOLUME_UID.into(),
        expected_revision: 0,
        claim,
    };
    bus.grant_volume_claims("h1", &vm, &[grant]).await.unwrap();
}

async fn yun_controller(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_yun-controller"));
    cmd.args(args)
        .env_remove("YUN_ETCD_ENDPOINTS")
        .env_remove("YUN_CLI_AUDIT_LOG")
        .env_remove("SUDO_USER");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// `force-detach t/data` confirmed, against `endpoint`, recording in `log`, plus `extra`.
fn force_args<'a>(endpoint: &'a str, log: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "force-detach",
        "t/data",
        "--i-know-the-host-is-down",
        "--etcd-endpoints",
        endpoint,
        "--audit-log",
        log,
    ];
    args.extend_from_slice(extra);
    args
}

fn records(path: &Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn force_detach_records_the_operator_and_the_outcome_in_a_verifiable_log() {
    let etcd = EtcdServer::start().unwrap();
    let endpoint = etcd.endpoint();
    let bus = FleetBus::connect(
        std::slice::from_ref(&endpoint),
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap();
    grant(&bus).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit").join("cli.log");
    let log_arg = log.to_str().unwrap();
    let out = yun_controller(
        &force_args(&endpoint, log_arg, &["--as", "alice"]),
        &[("USER", "root")],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bus.volume_claim(VOLUME_UID).await.unwrap().is_none());

    // Nothing left to release: the command fails, and the failure is recorded too, as the
    // user sudo was run by.
    let out = yun_controller(
        &force_args(&endpoint, log_arg, &[]),
        &[("SUDO_USER", "bob"), ("USER", "root")],
    )
    .await;
    assert!(!out.status.success());

    let got = records(&log);
    assert_eq!(got.len(), 2, "{got:#?}");
    let (ok, failed) = (&got[0], &got[1]);
    assert_eq!(
        (ok.actor.kind, ok.actor.id.as_str()),
        (ActorKind::User, "alice")
    );
    assert_eq!(ok.action, "volume.force_detach");
    assert_eq!(ok.object, "Volume t/data");
    assert_eq!(ok.outcome, yun_audit::Outcome::Ok);
    assert_eq!(ok.details["uid"], VOLUME_UID);
    assert_eq!(
        ok.details["released"],
        serde_json::json!(["VM t/vm-a on host h1"])
    );
    assert_eq!(failed.actor.id, "bob");
    assert_eq!(failed.outcome.result(), "error");
    assert!(
        failed.outcome.message().unwrap().contains("no claim"),
        "{failed:?}"
    );
    assert_eq!(yun_audit::verify(&log, None).unwrap().records, 2);
    let out = yun_controller(&["audit", "verify", "--audit-log", log_arg], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("2 records verified"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_cannot_be_opened_stops_the_force_detach_before_it_changes_anything() {
    let etcd = EtcdServer::start().unwrap();
    let endpoint = etcd.endpoint();
    let bus = FleetBus::connect(
        std::slice::from_ref(&endpoint),
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap();
    grant(&bus).await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let log = not_a_dir.join("cli.log");
    let args = force_args(&endpoint, log.to_str().unwrap(), &["--as", "alice"]);
    let out = yun_controller(&args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(log.to_str().unwrap()), "{stderr}");
    assert!(
        bus.volume_claim(VOLUME_UID).await.unwrap().is_some(),
        "the volume must still be claimed"
    );
}
