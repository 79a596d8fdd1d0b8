//! The single-writer protocol's etcd half against a real etcd: claims change only in guarded
//! transactions together with the desired record, and an agent cannot start an attach once
//! the desired record it acted on has changed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;
use yun_fleet::*;
use yun_fleet_etcd::{ClaimGrant, ClaimWrite, FleetBus};
use yun_testkit::EtcdServer;

const VOL: &str = "vol-1";

fn vm(uid: &str, volumes: Vec<VolumeRecord>) -> VmDesired {
    VmDesired {
        volumes,
        ..yun_fleet::fixtures::vm_desired(uid, "t", uid)
    }
}

fn volume() -> VolumeRecord {
    VolumeRecord {
        id: "t/data".into(),
        uid: VOL.into(),
        size_gib: 1,
        read_only: false,
        source: VolumeSourceRecord::Local {},
    }
}

fn claim(holders: &[(&str, &str)]) -> VolumeClaim {
    VolumeClaim {
        v: SCHEMA_VERSION,
        volume: "t/data".into(),
        home: None,
        holders: holders
            .iter()
            .map(|(host, vm)| ClaimHolder {
                host: (*host).into(),
                vm_uid: (*vm).into(),
                vm: format!("t/{vm}"),
                read_only: false,
                granted_at: "2026-01-01T00:00:00Z".into(),
            })
            .collect(),
    }
}

fn record(phase: AttachPhase) -> AttachmentRecord {
    AttachmentRecord {
        v: SCHEMA_VERSION,
        volume: "t/data".into(),
        phase,
        target_dev: None,
        message: None,
        attempts: 0,
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

async fn bus(etcd: &EtcdServer) -> FleetBus {
    FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_grants_read_at_the_same_revision_cannot_both_win() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    assert!(bus.volume_claim(VOL).await.unwrap().is_none());
    // Both controllers (or reconciles) read "no claim" (revision 0) and grant to their VM.
    let a = ClaimGrant {
        volume_uid: VOL.into(),
        expected_revision: 0,
        claim: claim(&[("h1", "vm-a")]),
    };
    let b = ClaimGrant {
        volume_uid: VOL.into(),
        expected_revision: 0,
        claim: claim(&[("h2", "vm-b")]),
    };
    let va = vm("vm-a", vec![volume()]);
    let vb = vm("vm-b", vec![volume()]);
    let (ra, rb) = tokio::join!(
        bus.grant_volume_claims("h1", &va, std::slice::from_ref(&a)),
        bus.grant_volume_claims("h2", &vb, std::slice::from_ref(&b)),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        (ra == ClaimWrite::Written) ^ (rb == ClaimWrite::Written),
        "exactly one grant wins: {ra:?} {rb:?}"
    );
    let held = bus.volume_claim(VOL).await.unwrap().unwrap().value;
    assert_eq!(held.holders.len(), 1);
    // The loser's desired record was not written: its host never hears of the volume.
    let (winner_host, loser_host, loser) = if ra == ClaimWrite::Written {
        ("h1", "h2", "vm-b")
    } else {
        ("h2", "h1", "vm-a")
    };
    assert_eq!(held.holders[0].host, winner_host);
    assert!(bus.desired(loser_host, loser).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attach_cannot_start_once_the_desired_record_changed() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let grant = ClaimGrant {
        volume_uid: VOL.into(),
        expected_revision: 0,
        claim: claim(&[("h1", "vm-a")]),
    };
    let with = vm("vm-a", vec![volume()]);
    assert_eq!(
        bus.grant_volume_claims("h1", &with, &[grant])
            .await
            .unwrap(),
        ClaimWrite::Written
    );
    let seen = bus.desired_stored("h1", "vm-a").await.unwrap().unwrap();
    // The controller withdraws the volume before the agent got to it.
    bus.put_desired("h1", &vm("vm-a", Vec::new()))
        .await
        .unwrap();
    let started = bus
        .begin_attachment(
            "h1",
            "vm-a",
            VOL,
            seen.mod_revision,
            &record(AttachPhase::Attaching),
        )
        .await
        .unwrap();
    assert!(
        !started,
        "a stale desired revision must not start an attach"
    );
    let view = bus.attachment_view("h1", "vm-a", VOL).await.unwrap();
    assert!(view.attachment.is_none());
    assert!(view.desired.unwrap().volumes.is_empty());
    // With the current revision the agent records its intent, and the controller sees it.
    bus.put_desired("h1", &with).await.unwrap();
    let now = bus.desired_stored("h1", "vm-a").await.unwrap().unwrap();
    assert!(
        bus.begin_attachment(
            "h1",
            "vm-a",
            VOL,
            now.mod_revision,
            &record(AttachPhase::Attaching)
        )
        .await
        .unwrap()
    );
    let view = bus.attachment_view("h1", "vm-a", VOL).await.unwrap();
    assert_eq!(view.attachment.unwrap().phase, AttachPhase::Attaching);
    assert!(!view.host_alive, "no lease was registered for h1");
    let all = bus.vm_attachments("h1", "vm-a").await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), [VOL]);
    bus.delete_attachment("h1", "vm-a", VOL).await.unwrap();
    assert!(bus.vm_attachments("h1", "vm-a").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn force_detach_releases_the_claim_and_withdraws_the_volume_in_one_step() {
    let etcd = EtcdServer::start().unwrap();
    let bus = bus(&etcd).await;
    let grant = ClaimGrant {
        volume_uid: VOL.into(),
        expected_revision: 0,
        claim: claim(&[("h1", "vm-a")]),
    };
    bus.grant_volume_claims("h1", &vm("vm-a", vec![volume()]), &[grant])
        .await
        .unwrap();
    let stored = bus.volume_claim(VOL).await.unwrap().unwrap();
    let mut desired = bus.desired_stored("h1", "vm-a").await.unwrap().unwrap();
    desired.value.volumes.clear();
    // A stale claim revision changes nothing at all.
    assert_eq!(
        bus.force_detach(
            VOL,
            stored.mod_revision - 1,
            None,
            &[("h1".into(), desired.clone())]
        )
        .await
        .unwrap(),
        ClaimWrite::Conflict
    );
    assert_eq!(
        bus.desired("h1", "vm-a")
            .await
            .unwrap()
            .unwrap()
            .volumes
            .len(),
        1
    );
    assert_eq!(
        bus.force_detach(VOL, stored.mod_revision, None, &[("h1".into(), desired)])
            .await
            .unwrap(),
        ClaimWrite::Written
    );
    assert!(bus.volume_claim(VOL).await.unwrap().is_none());
    assert!(
        bus.desired("h1", "vm-a")
            .await
            .unwrap()
            .unwrap()
            .volumes
            .is_empty()
    );
    let listed = bus.list_volume_claims().await.unwrap();
    assert!(listed.is_empty());
}
