//! DeviceIdentity in bootstrap mode against a real Keystone (PyPI keystone under gunicorn,
//! SQLite, loopback) and a real etcd, through the controller's bootstrap pass and its device
//! view over HTTP:
//!
//! - a device in an enabled project gets a credentials file (0600 in a 0700 directory) whose
//!   credential obtains a token, and a `Ready=True` status naming the credential (not the
//!   secret); passes and a controller restart keep that credential, a lost file replaces it;
//! - with its token the view returns its namespace's security groups (rules, members), and
//!   not another namespace's; an admin token and a VM credential's token get 403, a garbage
//!   or missing token 401, a POST 405;
//! - deleting the manifest revokes: the file is gone, the token gets 401, the credential no
//!   longer logs in; `device.issue`/`device.revoke` are in the audit trail;
//! - a device in a disabled project is refused with a condition naming it, and gets no file.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use support::fleet::start_fleet_sealed;
use support::keystone::{controller_identity, start_keystone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yun_controller::bootstrap::BootstrapSource;
use yun_controller::devices::view::{ViewState, serve};
use yun_controller::devices::{DeviceConfig, Devices};
use yun_controller::fleet_ops::Fleet;
use yun_controller::metrics::ControllerMetrics;
use yun_fleet::sealed::{SealKeyPair, open_credential};
use yun_fleet_etcd::FleetBus;
use yun_identity::{Credentials, Keystone, Secret, TokenCache};

const HOST: &str = "h1";

/// Two tenants, each with a network, security groups and a VM; team-a's VM asks for a Keystone
/// identity of its own.
const BASE: &str = r#"apiVersion: yun.dev/v1alpha1
kind: VmImage
metadata: {name: img, namespace: team-a}
spec:
  os: t
  disk: {source: 'file:///x.qcow2', format: qcow2, sha256: '0000000000000000000000000000000000000000000000000000000000000000'}
---
apiVersion: yun.dev/v1alpha1
kind: VmImage
metadata: {name: img, namespace: team-b}
spec:
  os: t
  disk: {source: 'file:///x.qcow2', format: qcow2, sha256: '0000000000000000000000000000000000000000000000000000000000000000'}
---
apiVersion: yun.dev/v1alpha1
kind: Network
metadata: {name: lan, namespace: team-a}
spec: {vlan: {id: 100}, cidr: 10.0.0.0/24}
---
apiVersion: yun.dev/v1alpha1
kind: Network
metadata: {name: lan, namespace: team-b}
spec: {vlan: {id: 200}, cidr: 10.1.0.0/24}
---
apiVersion: yun.dev/v1alpha1
kind: SecurityGroup
metadata: {name: web, namespace: team-a}
spec:
  ingress: [{protocol: tcp, ports: [{port: 443}]}]
---
apiVersion: yun.dev/v1alpha1
kind: SecurityGroup
metadata: {name: db, namespace: team-a}
spec:
  ingress: [{protocol: tcp, ports: [{port: 5432}], remote: {securityGroup: web}}]
---
apiVersion: yun.dev/v1alpha1
kind: SecurityGroup
metadata: {name: secret-b, namespace: team-b}
spec:
  ingress: [{protocol: tcp, ports: [{port: 22}]}]
---
apiVersion: yun.dev/v1alpha1
kind: VirtualMachine
metadata: {name: web1, namespace: team-a}
spec:
  image: img
  cpu: 1
  memoryMiB: 128
  networks: [{network: lan}]
  securityGroups: [web]
  identity: {roles: [reader]}
---
apiVersion: yun.dev/v1alpha1
kind: VirtualMachine
metadata: {name: b1, namespace: team-b}
spec:
  image: img
  cpu: 1
  memoryMiB: 128
  networks: [{network: lan}]
  securityGroups: [secret-b]
"#;

const DEVICE: &str = r#"apiVersion: yun.dev/v1alpha1
kind: DeviceIdentity
metadata: {name: ids, namespace: team-a}
spec:
  description: the IDS in rack 7
  roles: [reader]
  view: [SecurityGroups]
"#;

const DEVICE_OFF: &str = r#"apiVersion: yun.dev/v1alpha1
kind: DeviceIdentity
metadata: {name: fw, namespace: team-off}
spec:
  roles: [reader]
  view: [SecurityGroups]
"#;

/// One HTTP/1.1 request to the view; (status, body).
async fn http(addr: SocketAddr, method: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("X-Auth-Token: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} /v1/security-groups HTTP/1.1\r\nHost: view\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap();
    (status, body)
}

async fn status_of(bus: &FleetBus, ns: &str, name: &str) -> Option<serde_json::Value> {
    support::stored(bus, "DeviceIdentity", ns, name)
        .await
        .map(|r| r["status"].clone())
}

fn ready(status: &serde_json::Value) -> (String, String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    let s = |k: &str| c[k].as_str().unwrap().to_owned();
    (s("status"), s("reason"), s("message"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What the device does with its file: log in with the application credential.
async fn device_login(path: &Path) -> Result<Keystone, yun_identity::IdentityError> {
    Keystone::connect(&Credentials::from_file(path)?).await
}

fn credential_id(path: &Path) -> String {
    match Credentials::from_file(path).unwrap().method {
        yun_identity::AuthMethod::ApplicationCredential { id, .. } => id,
        other => panic!("not an application credential: {other:?}"),
    }
}

struct Controller {
    src: BootstrapSource,
}

impl Controller {
    fn new(manifests: &Path, fleet: Fleet, devices: &Devices) -> Controller {
        let metrics = ControllerMetrics::new(&mut Registry::default());
        let src =
            BootstrapSource::new(manifests.into(), fleet, metrics).with_devices(devices.clone());
        Controller { src }
    }

    /// Runs passes until `done` holds.
    async fn until(&mut self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..150 {
            self.src.pass().await.unwrap();
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("bootstrap passes did not converge: {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_identities_get_a_credential_file_and_a_read_only_view_of_their_namespace() {
    let (keystone, admin) = start_keystone().await;
    admin.create_project("team-a", "default").await.unwrap();
    admin.create_project("team-b", "default").await.unwrap();
    let off = admin.create_project("team-off", "default").await.unwrap();
    admin.set_project_enabled(&off.id, false).await.unwrap();

    let work = tempfile::tempdir().unwrap();
    let identity = controller_identity(
        &keystone,
        work.path(),
        Duration::from_secs(86_400),
        &["member", "reader"],
    )
    .await;

    let host_key = SealKeyPair::generate();
    let test_fleet = start_fleet_sealed(&[(HOST, 8, 8192)], Some(host_key.public_b64())).await;
    let bus = test_fleet.bus.clone();
    let audit_log = work.path().join("audit/controller.log");
    std::fs::create_dir_all(audit_log.parent().unwrap()).unwrap();
    let audit = yun_audit::Trail::open(
        &audit_log,
        yun_audit::Actor::component("yun-controller/test"),
    )
    .unwrap();
    let fleet = || {
        Fleet::start(bus.clone(), None)
            .with_audit(audit.clone())
            .with_identity(identity.clone())
    };

    let manifests = work.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("base.yaml"), BASE).unwrap();
    std::fs::write(manifests.join("ids.yaml"), DEVICE).unwrap();
    std::fs::write(manifests.join("fw.yaml"), DEVICE_OFF).unwrap();
    let devices_dir: PathBuf = work.path().join("devices");
    let devices = Devices::new(DeviceConfig::new(devices_dir.clone()));
    let view = serve(
        "127.0.0.1:0".parse().unwrap(),
        ViewState {
            identity: identity.clone(),
            cache: Arc::new(TokenCache::default()),
            directory: devices.directory.clone(),
        },
    )
    .await
    .unwrap();
    // Before any pass (a standby controller) the view says it cannot answer.
    assert_eq!(http(view, "GET", Some("anything")).await.0, 503);

    let file = devices_dir.join("team-a/ids.toml");
    let mut controller = Controller::new(&manifests, fleet(), &devices);
    controller
        .until("device file, VM credential, group members", async || {
            let vm_identity = support::stored_all(&bus, "VirtualMachine")
                .await
                .iter()
                .any(|r| r["metadata"]["name"] == "web1" && r["status"]["host"].is_string());
            let (hosts, _) = bus.fleet_view().await.unwrap();
            let members = hosts[HOST].desired.len() == 2;
            file.exists() && vm_identity && members
        })
        .await;
    // One more pass: the view's directory now holds the placed VMs' addresses.
    controller.src.pass().await.unwrap();

    // The file: private, in yun-identity's format, and its credential logs in.
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&devices_dir.join("team-a")), 0o700);
    let session = device_login(&file)
        .await
        .expect("the device's credential logs in");
    let token = session.current_token().unwrap();
    let issued = credential_id(&file);
    let status = status_of(&bus, "team-a", "ids").await.unwrap();
    let (ok, reason, message) = ready(&status);
    assert_eq!(
        (ok.as_str(), reason.as_str()),
        ("True", "Issued"),
        "{message}"
    );
    assert_eq!(status["credentialId"], issued.as_str());
    assert!(status["issuedAt"].is_string());
    let text = std::fs::read_to_string(&file).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("application_credential_secret = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        !status.to_string().contains(secret),
        "the secret is in the status record"
    );

    // The view: team-a's groups with rules and members, nothing of team-b.
    let (code, body) = http(view, "GET", Some(token.expose())).await;
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["namespace"], "team-a");
    assert_eq!(json["device"], "ids");
    let groups = json["securityGroups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["db", "web"], "{body}");
    assert!(
        !body.contains("secret-b") && !body.contains("10.1.0."),
        "{body}"
    );
    let web = &groups[1];
    assert_eq!(web["ingress"][0]["ports"], serde_json::json!([[443, 443]]));
    let members = web["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{body}");
    assert!(
        members[0].as_str().unwrap().starts_with("10.0.0."),
        "{body}"
    );
    assert_eq!(
        groups[0]["ingress"][0]["remote"]["group"], "team-a/web",
        "{body}"
    );

    // Anyone else: 403 for valid tokens that are not the device's, 401 without a valid token.
    let admin_token = admin.current_token().unwrap();
    assert_eq!(http(view, "GET", Some(admin_token.expose())).await.0, 403);
    let vm_status = support::stored(&bus, "VirtualMachine", "team-a", "web1")
        .await
        .unwrap();
    let record = bus
        .desired(HOST, vm_status["metadata"]["uid"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap()
        .identity
        .expect("web1 has a credential");
    let guest = open_credential(
        &host_key,
        HOST,
        vm_status["metadata"]["uid"].as_str().unwrap(),
        record.generation,
        &record.sealed,
    )
    .unwrap();
    let as_vm = Keystone::connect(&Credentials::application_credential(
        guest.auth_url.clone(),
        guest.application_credential_id.clone(),
        Secret::new(guest.application_credential_secret.clone()),
    ))
    .await
    .unwrap();
    let vm_token = as_vm.current_token().unwrap();
    assert_eq!(http(view, "GET", Some(vm_token.expose())).await.0, 403);
    assert_eq!(http(view, "GET", Some("gAAAA-not-a-token")).await.0, 401);
    assert_eq!(http(view, "GET", None).await.0, 401);
    assert_eq!(http(view, "POST", Some(token.expose())).await.0, 405);
    assert_eq!(http(view, "DELETE", Some(token.expose())).await.0, 405);

    // The disabled tenant's device is refused, named, and gets nothing.
    let off_status = status_of(&bus, "team-off", "fw").await.unwrap();
    let (ok, reason, message) = ready(&off_status);
    assert_eq!(
        (ok.as_str(), reason.as_str()),
        ("False", "ProjectDisabled"),
        "{message}"
    );
    assert!(message.contains("team-off"), "{message}");
    assert!(off_status.get("credentialId").is_none());
    assert!(!devices_dir.join("team-off/fw.toml").exists());

    // Idempotent: more passes, and a restarted controller, keep the credential.
    controller.src.pass().await.unwrap();
    drop(controller);
    let mut controller = Controller::new(&manifests, fleet(), &devices);
    controller.src.pass().await.unwrap();
    assert_eq!(credential_id(&file), issued);
    assert_eq!(
        status_of(&bus, "team-a", "ids").await.unwrap()["credentialId"],
        issued.as_str()
    );

    // A lost file: a new credential replaces the old one, which stops working.
    std::fs::remove_file(&file).unwrap();
    controller.src.pass().await.unwrap();
    let reissued = credential_id(&file);
    assert_ne!(reissued, issued);
    assert!(device_login(&file).await.is_ok());
    drop(session);
    assert_eq!(
        http(view, "GET", Some(token.expose())).await.0,
        401,
        "the replaced credential's token still reads the view"
    );
    let new_session = device_login(&file).await.unwrap();
    let new_token = new_session.current_token().unwrap();
    assert_eq!(http(view, "GET", Some(new_token.expose())).await.0, 200);

    // Deleting the manifest revokes: no file, no record, no user, the token and credential
    // are dead.
    let uid = support::stored(&bus, "DeviceIdentity", "team-a", "ids")
        .await
        .unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = format!("yun-device-{uid}");
    assert!(admin.user(&user).await.unwrap().is_some());
    let saved = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(manifests.join("ids.yaml")).unwrap();
    controller
        .until("device revoked", async || {
            !file.exists() && status_of(&bus, "team-a", "ids").await.is_none()
        })
        .await;
    assert!(!devices_dir.join("team-a").exists());
    assert_eq!(http(view, "GET", Some(new_token.expose())).await.0, 401);
    let kept = work.path().join("kept.toml");
    std::fs::write(&kept, saved).unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        device_login(&kept).await.is_err(),
        "a deleted device's credential still logs in"
    );
    assert!(
        admin.user(&user).await.unwrap().is_none(),
        "{user} is still in Keystone"
    );

    // The audit trail has the issues and revocations.
    audit.close().await;
    let trail = std::fs::read_to_string(&audit_log).unwrap();
    let count = |action: &str| {
        trail
            .lines()
            .filter(|l| l.contains(&format!("\"action\":\"{action}\"")))
            .filter(|l| l.contains("DeviceIdentity team-a/ids"))
            .count()
    };
    assert_eq!(count("device.issue"), 2, "{trail}");
    assert_eq!(count("device.revoke"), 2, "{trail}");
    assert!(!trail.contains(secret), "the secret is in the audit trail");
    drop(keystone);
}
