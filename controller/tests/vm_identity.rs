//! Tenants and VM identities against a real Keystone (PyPI keystone under gunicorn, SQLite,
//! loopback) and a real etcd: the controller's VirtualMachine step with `--keystone-credentials`.
//!
//! - a VM in an enabled project is placed and gets a credential sealed to its host; opened
//!   with the host's key (what the agent puts in the guest's seed) it obtains a token;
//! - a rotation issues a second credential, keeps the first valid until the agent reports the
//!   new one delivered, then revokes the first;
//! - deleting the VM revokes its credential (the token request fails);
//! - VMs in a disabled or unknown project are refused (`Scheduled=False`, reason named).
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::fleet::start_fleet_sealed;
use support::keystone::{controller_identity, start_keystone};
use yun_controller::fleet_ops::Fleet;
use yun_controller::vm_logic::VmIdentity;
use yun_controller::vm_reconcile::{VmInput, VmOutcome, World, reconcile_vm};
use yun_crds::{VirtualMachineSpec, VirtualMachineStatus, VmImageSpec};
use yun_fleet::sealed::{SealKeyPair, open_credential};
use yun_fleet::{GuestCredential, VmIdentityRecord, VmObserved, VmPhase};
use yun_identity::{Credentials, Keystone, Secret};

const HOST: &str = "h1";

fn spec(roles: &[&str]) -> VirtualMachineSpec {
    serde_json::from_value(serde_json::json!({
        "image": support::IMAGE, "cpu": 1, "memoryMiB": 256, "diskGiB": 2,
        "identity": {"roles": roles},
    }))
    .unwrap()
}

fn vm_id(namespace: &str, name: &str, uid: &str) -> VmIdentity {
    VmIdentity {
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
        generation: 1,
    }
}

/// One reconcile pass; the status it would write.
async fn pass(
    fleet: &Fleet,
    id: &VmIdentity,
    spec: &VirtualMachineSpec,
    image: &VmImageSpec,
    prior: Option<&VirtualMachineStatus>,
) -> VirtualMachineStatus {
    let world = World {
        images: BTreeMap::from([(support::IMAGE.to_owned(), image)]),
        ..World::default()
    };
    let input = VmInput {
        id: id.clone(),
        spec: Some(spec),
        deleting: false,
        prior,
    };
    match reconcile_vm(fleet, input, &world, "2026-11-24T00:00:00Z")
        .await
        .unwrap()
    {
        VmOutcome::Status { status, .. } => status,
        VmOutcome::Removed => panic!("{} removed while not deleting", id.name),
    }
}

fn condition<'a>(status: &'a VirtualMachineStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    let ok = match c.status {
        yun_crds::ConditionStatus::True => "True",
        yun_crds::ConditionStatus::False => "False",
        yun_crds::ConditionStatus::Unknown => "Unknown",
    };
    (ok, c.reason.as_str(), c.message.as_str())
}

async fn record_of(fleet: &Fleet, uid: &str) -> VmIdentityRecord {
    fleet
        .bus
        .desired(HOST, uid)
        .await
        .unwrap()
        .expect("desired record")
        .identity
        .expect("identity in the desired record")
}

/// What the agent on h1 does with the record: open the box with its key.
fn open(key: &SealKeyPair, uid: &str, record: &VmIdentityRecord) -> GuestCredential {
    open_credential(key, HOST, uid, record.generation, &record.sealed).unwrap()
}

/// What the guest does with clouds.yaml: log in with the application credential.
async fn guest_login(c: &GuestCredential) -> Result<Keystone, yun_identity::IdentityError> {
    let creds = Credentials::application_credential(
        c.auth_url.clone(),
        c.application_credential_id.clone(),
        Secret::new(c.application_credential_secret.clone()),
    );
    Keystone::connect(&creds).await
}

async fn report_delivered(fleet: &Fleet, uid: &str, generation: u64) {
    let observed = VmObserved {
        v: yun_fleet::SCHEMA_VERSION,
        uid: uid.into(),
        phase: VmPhase::Running,
        observed_generation: 1,
        domain_uuid: None,
        started_at: None,
        message: None,
        updated_at: "2026-11-24T00:00:00Z".into(),
        identity_generation: Some(generation),
    };
    fleet.bus.put_observed(HOST, &observed).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_identities_are_issued_sealed_rotated_and_revoked_and_tenants_checked() {
    let (keystone, admin) = start_keystone().await;
    admin.create_project("team-a", "default").await.unwrap();
    let off = admin.create_project("team-off", "default").await.unwrap();
    admin.set_project_enabled(&off.id, false).await.unwrap();

    // The controller's credentials file, readable by its owner only.
    let dir = tempfile::tempdir().unwrap();
    let rotation = Duration::from_secs(4);
    let identity =
        controller_identity(&keystone, dir.path(), rotation, &["member", "reader"]).await;

    let host_key = SealKeyPair::generate();
    let test_fleet = start_fleet_sealed(&[(HOST, 8, 8192)], Some(host_key.public_b64())).await;
    let fleet = Fleet::start(test_fleet.bus.clone(), None).with_identity(identity);
    let image = support::image(support::IMAGE, "team-a").spec;

    // Refused tenants: nothing placed, the condition names the project problem.
    for (ns, reason) in [
        ("team-off", "ProjectDisabled"),
        ("ghost", "ProjectNotFound"),
    ] {
        let id = vm_id(ns, "web", &format!("uid-{ns}"));
        let status = pass(&fleet, &id, &spec(&["member"]), &image, None).await;
        let (ok, why, message) = condition(&status, "Scheduled");
        assert_eq!((ok, why), ("False", reason), "{message}");
        assert!(message.contains(ns), "{message}");
        assert_eq!(status.host, None);
        assert!(
            fleet.bus.placement(&id.uid).await.unwrap().is_none(),
            "{ns} placed"
        );
    }

    // An enabled tenant: placed, credential issued and sealed to h1.
    let uid = "7f1c2a3b-0000-4000-8000-000000000001";
    let id = vm_id("team-a", "web", uid);
    let wants = spec(&["member"]);
    let status = pass(&fleet, &id, &wants, &image, None).await;
    assert_eq!(status.host.as_deref(), Some(HOST));
    let (ok, why, message) = condition(&status, "IdentityReady");
    assert_eq!((ok, why), ("True", "Issued"), "{message}");
    let first = record_of(&fleet, uid).await;
    assert_eq!((first.generation, first.retiring), (1, None));
    assert_eq!(first.roles, vec!["member".to_string()]);
    let raw = serde_json::to_string(&fleet.bus.desired(HOST, uid).await.unwrap()).unwrap();
    let cred1 = open(&host_key, uid, &first);
    assert!(
        !raw.contains(&cred1.application_credential_secret),
        "the secret is in the desired record in clear"
    );
    assert!(
        open_credential(&SealKeyPair::generate(), HOST, uid, 1, &first.sealed).is_err(),
        "another host's key opened the box"
    );
    let session = guest_login(&cred1)
        .await
        .expect("the guest's credential obtains a token");
    assert_eq!(session.project_id(), Some(first.project_id.as_str()));
    drop(session);

    // A second pass keeps it (no new credential per pass).
    let status = pass(&fleet, &id, &wants, &image, Some(&status)).await;
    assert_eq!(
        record_of(&fleet, uid).await.credential_id,
        first.credential_id
    );

    // Rotation: after the period a second credential; the first stays valid until delivery.
    tokio::time::sleep(rotation).await;
    let status = pass(&fleet, &id, &wants, &image, Some(&status)).await;
    let second = record_of(&fleet, uid).await;
    assert_eq!((second.generation, second.retiring), (2, Some(1)));
    let cred2 = open(&host_key, uid, &second);
    assert_ne!(
        cred2.application_credential_id,
        cred1.application_credential_id
    );
    guest_login(&cred1)
        .await
        .expect("the old credential works until the new one is delivered");
    report_delivered(&fleet, uid, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the index sees the observation
    let status = pass(&fleet, &id, &wants, &image, Some(&status)).await;
    let settled = record_of(&fleet, uid).await;
    assert_eq!((settled.generation, settled.retiring), (2, None));
    assert!(
        guest_login(&cred1).await.is_err(),
        "the retired credential still works"
    );
    guest_login(&cred2)
        .await
        .expect("the delivered credential works");

    // Deletion revokes before anything else.
    let input = VmInput {
        id: id.clone(),
        spec: Some(&wants),
        deleting: true,
        prior: Some(&status),
    };
    let world = World::default();
    let mut removed = false;
    for _ in 0..20 {
        if reconcile_vm(&fleet, input.clone(), &world, "t")
            .await
            .unwrap()
            == VmOutcome::Removed
        {
            removed = true;
            break;
        }
        // The agent's part: the domain is gone.
        let _ = fleet.bus.delete_observed(HOST, uid).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(removed, "the VM was not removed");
    let Err(err) = guest_login(&cred2).await else {
        panic!("a deleted VM's credential still works");
    };
    let shown = err.to_string();
    assert!(
        !shown.contains(&cred2.application_credential_secret),
        "{shown}"
    );
    assert!(
        admin
            .user(&format!("yun-vm-{uid}-g2"))
            .await
            .unwrap()
            .is_none()
    );
    drop(keystone);
}
