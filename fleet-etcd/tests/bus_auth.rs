//! Fleet-bus security against a real etcd with TLS, client certificates and auth enabled: a
//! host's certificate reaches its own records only, the controller's reaches everything, and
//! certificates of another CA or of no provisioned user get nothing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use yun_fleet::fixtures::host_info;
use yun_fleet::fixtures::vm_desired;
use yun_fleet::*;
use yun_fleet_etcd::roles::{self, CONTROLLER_USER, RoleError};
use yun_fleet_etcd::{BusError, BusTls, EventKind, FleetBus, PlacementOutcome, TlsError};
use yun_testkit::{EtcdServer, TestPki};

const VM_A: &str = "6f1c2a3b-0000-4000-8000-00000000000a";
const VM_B: &str = "6f1c2a3b-0000-4000-8000-00000000000b";
const VOLUME: &str = "6f1c2a3b-0000-4000-8000-0000000000f1";

async fn connect(etcd: &EtcdServer, tls: &BusTls) -> FleetBus {
    FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), Some(tls))
        .await
        .unwrap()
}

async fn start(secure_auth: bool) -> EtcdServer {
    let start = if secure_auth {
        EtcdServer::start_secure
    } else {
        EtcdServer::start_tls_only
    };
    tokio::task::spawn_blocking(start).await.unwrap().unwrap()
}

fn observed(uid: &str) -> VmObserved {
    VmObserved {
        v: SCHEMA_VERSION,
        uid: uid.into(),
        phase: VmPhase::Running,
        observed_generation: 1,
        domain_uuid: None,
        started_at: None,
        message: None,
        updated_at: "2026-01-01T00:00:00Z".into(),
        identity_generation: None,
    }
}

fn attaching() -> AttachmentRecord {
    AttachmentRecord {
        v: SCHEMA_VERSION,
        volume: "t/data".into(),
        phase: AttachPhase::Attaching,
        target_dev: None,
        message: None,
        attempts: 0,
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

/// The controller places `uid` on `host` through the real placement transaction.
async fn place(controller: &FleetBus, host: &str, uid: &str) {
    let vm = vm_desired(uid, "default", uid);
    let alloc = controller.host_alloc(host).await.unwrap();
    let placement = Placement {
        v: SCHEMA_VERSION,
        host: host.into(),
        resources: vm.resources,
        scheduling: Scheduling::default(),
    };
    let outcome = controller
        .commit_placement(
            alloc.mod_revision,
            &alloc.value.with(vm.resources, Qos::Burstable),
            &vm,
            &placement,
        )
        .await
        .unwrap();
    assert_eq!(outcome, PlacementOutcome::Committed);
}

/// Asserts etcd refused `result` for lack of permission, and the error names `key`.
fn assert_denied<T: std::fmt::Debug>(result: Result<T, BusError>, key: &str) {
    let err = result.unwrap_err();
    assert!(
        err.is_permission_denied(),
        "expected permission denied, got {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("permission denied") && msg.contains(key),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_certificate_reaches_only_its_own_records() {
    let etcd = start(true).await;
    let root = connect(&etcd, &etcd.root_tls().unwrap()).await;
    for _ in 0..2 {
        // Twice: provisioning is idempotent.
        roles::ensure_controller_user(&root, CONTROLLER_USER)
            .await
            .unwrap();
        roles::ensure_host_user(&root, "a").await.unwrap();
        roles::ensure_host_user(&root, "b").await.unwrap();
    }
    let controller = connect(&etcd, &etcd.controller_tls().unwrap()).await;
    place(&controller, "a", VM_A).await;
    place(&controller, "b", VM_B).await;

    let a = connect(&etcd, &etcd.tls_for("host:a").unwrap()).await;
    // What the agent does in a session: lease, info on it, images, list, watch, report.
    let mut lease = a.grant_lease(10).await.unwrap();
    a.put_host_info(&host_info("a"), &lease).await.unwrap();
    assert!(lease.refresh().await.unwrap() > 0);
    let images = HostImages::new(BTreeMap::from([("t/img".to_string(), 1)]));
    a.put_host_images("a", &images).await.unwrap();
    let (view, revision) = a.host_view("a").await.unwrap();
    let desired_rev = view.desired[VM_A].mod_revision;
    assert_eq!(view.info, Some(host_info("a")));
    let mut watch = a
        .watch_prefix(&keys::host_prefix("a").unwrap(), revision + 1)
        .await
        .unwrap();
    a.put_observed("a", &observed(VM_A)).await.unwrap();
    // The attach guard compares the desired record the host may only read.
    assert!(
        a.begin_attachment("a", VM_A, VOLUME, desired_rev, &attaching())
            .await
            .unwrap()
    );
    let events = watch.next().await.unwrap();
    assert_eq!(events[0].key, keys::vm_observed("a", VM_A).unwrap());
    assert!(matches!(events[0].kind, EventKind::Put(_)));
    // The controller sees what the host wrote.
    let (fleet, _) = controller.fleet_view().await.unwrap();
    assert_eq!(fleet["a"].observed[VM_A].phase, VmPhase::Running);
    assert!(fleet["a"].attachments[VM_A].contains_key(VOLUME));

    // Another host's records: neither read, nor watched, nor written.
    assert_denied(a.host_view("b").await, "/yun/v1/hosts/b/");
    assert_denied(a.fleet_view().await, keys::HOSTS_PREFIX);
    assert_denied(
        a.put_observed("b", &observed(VM_B)).await,
        "/yun/v1/hosts/b/report/",
    );
    let mut foreign = a
        .watch_prefix(&keys::host_prefix("b").unwrap(), 1)
        .await
        .unwrap();
    assert_denied(foreign.next().await, "/yun/v1/hosts/b/");
    // The controller's records, even on its own prefix: desired VMs, allocation, placements.
    let vm = vm_desired(VM_A, "default", VM_A);
    assert_denied(
        a.put_desired("a", &vm).await,
        &keys::vm_desired("a", VM_A).unwrap(),
    );
    assert_denied(
        a.delete_desired("a", VM_A).await,
        &keys::vm_desired("a", VM_A).unwrap(),
    );
    let alloc = a.host_alloc("a").await.unwrap();
    let placement = Placement {
        v: SCHEMA_VERSION,
        host: "a".into(),
        resources: vm.resources,
        scheduling: Scheduling::default(),
    };
    let x = vm_desired("x", "default", "x");
    assert_denied(
        a.commit_placement(alloc.mod_revision, &alloc.value, &x, &placement)
            .await,
        &keys::vm_desired("a", "x").unwrap(),
    );
    let mut raw = a.client();
    for key in [
        keys::placement("x").unwrap(),
        keys::host_alloc("a").unwrap(),
        keys::host_fw_groups("a").unwrap(),
        keys::ELECTION_CONTROLLER.to_owned(),
    ] {
        let err = raw.put(key.as_str(), "x", None).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{key}: {err}"
        );
    }
    assert_denied(a.try_lead("host-a", 5).await, keys::ELECTION_CONTROLLER);
    // Nothing of that reached etcd.
    assert_eq!(controller.desired("a", VM_A).await.unwrap(), Some(vm));
    assert!(controller.placement("x").await.unwrap().is_none());
    assert!(controller.observed("b", VM_B).await.unwrap().is_none());

    // etcd wants write permission on every key attached to a lease it revokes: the host's own
    // info is, so a clean shutdown may revoke; the key goes with it.
    a.revoke_lease(lease.id()).await.unwrap();
    assert_eq!(controller.host_info("a").await.unwrap(), None);

    // The controller leads through the election key and may resign (revoking its lease).
    let leadership = controller.try_lead("c1", 5).await.unwrap().unwrap();
    assert_eq!(
        controller.current_leader().await.unwrap().as_deref(),
        Some("c1")
    );
    controller.resign(leadership).await.unwrap();
    assert_eq!(controller.current_leader().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_of_another_ca_or_of_no_user_are_refused() {
    let etcd = start(true).await;
    let root = connect(&etcd, &etcd.root_tls().unwrap()).await;
    roles::ensure_host_user(&root, "a").await.unwrap();
    let own = etcd.tls_for("host:a").unwrap();

    // Same CN, another CA: the TLS handshake fails, no request reaches etcd.
    let other_pki = tokio::task::spawn_blocking({
        let dir = etcd.dir().join("other-pki");
        move || TestPki::create(dir)
    })
    .await
    .unwrap()
    .unwrap();
    let foreign = BusTls {
        ca: own.ca.clone(),
        ..other_pki.client("host:a").unwrap()
    };
    let bus = connect(&etcd, &foreign).await;
    let err = bus.host_view("a").await.unwrap_err();
    assert!(!err.is_permission_denied(), "{err:?}");
    assert!(matches!(err, BusError::Etcd { .. }), "{err:?}");
    assert!(bus.grant_lease(5).await.is_err());
    let log = etcd.log_tail();
    assert!(
        log.contains("rejected connection") && log.contains("failed to verify client certificate"),
        "etcd must have refused the handshake:\n{log}"
    );
    // And a client that trusts another CA refuses etcd's serving certificate.
    let bus = connect(
        &etcd,
        &BusTls {
            ca: other_pki.dir().join("ca-bundle.crt"),
            ..own.clone()
        },
    )
    .await;
    let err = bus.host_view("a").await.unwrap_err();
    assert!(matches!(err, BusError::Etcd { .. }), "{err:?}");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );

    // A certificate of the right CA whose CN names no user.
    let stranger = connect(&etcd, &etcd.tls_for("host:c").unwrap()).await;
    assert_denied(stranger.host_view("c").await, "/yun/v1/hosts/c/");
    assert_denied(
        stranger
            .put_host_images("c", &HostImages::new(BTreeMap::new()))
            .await,
        "/yun/v1/hosts/c/images",
    );

    // A client refuses to use a key others may read, and names it.
    let loose = etcd.dir().join("loose.key");
    std::fs::copy(&own.key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = FleetBus::connect(
        &[etcd.endpoint()],
        Duration::from_secs(5),
        Some(&BusTls {
            key: loose.clone(),
            ..own.clone()
        }),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BusError::Tls(TlsError::KeyReadableByOthers { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("loose.key") && err.to_string().contains("0644"));
    // And a plain endpoint with a certificate, or https without one, is a clear error.
    let plain = etcd.endpoint().replace("https://", "http://");
    let err = FleetBus::connect(&[plain], Duration::from_secs(5), Some(&own))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not https://"), "{err}");
    let err = FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no client certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_turns_auth_on_and_removing_a_host_locks_it_out() {
    let etcd = start(false).await;
    let root = connect(&etcd, &etcd.root_tls().unwrap()).await;
    let c = connect(&etcd, &etcd.tls_for("host:c").unwrap()).await;
    // Before auth is on, any certificate of the CA may read anything.
    c.fleet_view().await.unwrap();
    roles::ensure_root_and_enable_auth(&root).await.unwrap();
    roles::ensure_root_and_enable_auth(&root).await.unwrap();
    assert_denied(c.fleet_view().await, keys::HOSTS_PREFIX);

    // Only root provisions.
    roles::ensure_controller_user(&root, CONTROLLER_USER)
        .await
        .unwrap();
    let controller = connect(&etcd, &etcd.controller_tls().unwrap()).await;
    let err = roles::ensure_host_user(&controller, "c").await.unwrap_err();
    assert!(matches!(err, RoleError::PermissionDenied { .. }), "{err:?}");
    assert!(matches!(
        roles::ensure_controller_user(&root, "host:c").await,
        Err(RoleError::Reserved { .. })
    ));

    // A stale extra permission on a host's role is revoked by the next ensure.
    roles::ensure_host_user(&root, "c").await.unwrap();
    let mut raw = root.client();
    raw.role_grant_permission(
        "host:c",
        etcd_client::Permission::read_write(keys::host_alloc("c").unwrap()),
    )
    .await
    .unwrap();
    roles::ensure_host_user(&root, "c").await.unwrap();
    let perms = raw.role_get("host:c").await.unwrap().permissions();
    let granted: Vec<_> = perms
        .iter()
        .map(|p| p.key_str().unwrap().to_owned())
        .collect();
    let wanted: Vec<_> = roles::host_grants("c")
        .unwrap()
        .into_iter()
        .map(|g| g.key)
        .collect();
    assert_eq!(
        granted.iter().collect::<std::collections::BTreeSet<_>>(),
        wanted.iter().collect()
    );
    c.put_host_images("c", &HostImages::new(BTreeMap::new()))
        .await
        .unwrap();
    let err = c
        .client()
        .put(keys::host_alloc("c").unwrap(), "x", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // A decommissioned host: its certificate still verifies but names no user any more.
    roles::remove_host_user(&root, "c").await.unwrap();
    roles::remove_host_user(&root, "c").await.unwrap();
    assert_denied(c.host_view("c").await, "/yun/v1/hosts/c/");
}
