//! A VM's Keystone identity end to end, against a real Keystone: the controller (bootstrap
//! mode, `--keystone-credentials`) issues an application credential for a VM that asks for
//! one, seals it to the host, the agent opens it into the guest's seed, and the credential
//! read back out of that seed (what the guest mounts) obtains a token; deleting the VM
//! revokes it. A VM of a namespace without a Keystone project is refused, naming it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use yun_identity::{Credentials, Keystone, Secret};
use yun_integration::{Cluster, domain_exists};
use yun_testkit::{KeystoneServer, wait_until};

/// `clouds.yaml` as the guest receives it, read from the VM's seed ISO on the host.
fn clouds_from_seed(seed: &std::path::Path) -> serde_yaml::Value {
    let text = yun_testkit::iso_file(seed, "/yun-clouds.yaml").expect("read the seed ISO");
    serde_yaml::from_str(&text).expect("clouds.yaml is YAML")
}

async fn login(auth: &serde_yaml::Value) -> Result<Keystone, yun_identity::IdentityError> {
    let field = |k: &str| auth[k].as_str().unwrap_or_default().to_owned();
    let creds = Credentials::application_credential(
        field("auth_url"),
        field("application_credential_id"),
        Secret::new(field("application_credential_secret")),
    );
    Keystone::connect(&creds).await
}

#[test]
fn a_vm_identity_reaches_the_guest_and_dies_with_the_vm() {
    yun_identity::install_crypto_provider();
    // Keystone calls run here; the cluster's helpers block on their own.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keystone = KeystoneServer::start()
        .expect("start Keystone (scripts/install-keystone.sh, run by install-deps)");
    let admin = rt
        .block_on(Keystone::connect(&Credentials::password(
            keystone.url(),
            keystone.admin_user(),
            Secret::new(keystone.admin_password()),
            "admin",
        )))
        .unwrap();
    // The cluster's tenant is its namespace, `default`: a project, not the `default` domain.
    rt.block_on(admin.create_project("default", "default"))
        .unwrap();

    let mut cluster = Cluster::start();
    let creds_file = cluster.work_dir().join("keystone.toml");
    keystone.write_admin_credentials(&creds_file).unwrap();
    cluster.restart_controller_with(&[
        "--keystone-credentials".into(),
        creds_file.display().to_string(),
    ]);

    let manifest = cluster.apply_manifest(
        "vm-ident.yaml",
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ident\n  namespace: default\n\
         spec:\n  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  diskGiB: 1\n  identity:\n    roles: [member]\n",
    );
    let vm = cluster.wait_running("ident", yun_integration::BOOT_TIMEOUT);
    let status = cluster.vm_status("ident").expect("status");
    let ready = status["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "IdentityReady"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{status}");

    // What the guest mounts: the seed the agent built, readable by root only.
    let seed = cluster.vm_dir(&vm.uid).join("seed.iso");
    let mode = std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "seed readable by others: {mode:o}");
    let clouds = clouds_from_seed(&seed);
    let auth = clouds["clouds"]["yun"]["auth"].clone();
    assert_eq!(
        clouds["clouds"]["yun"]["auth_type"],
        "v3applicationcredential"
    );
    let session = rt
        .block_on(login(&auth))
        .expect("the guest's credential obtains a token");
    assert!(session.project_id().is_some());
    drop(session);

    // Nothing on the fleet bus holds the secret in clear.
    let secret = auth["application_credential_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let desired = yun_integration::etcd_get_json(
        &cluster.etcd.endpoint(),
        &format!("/yun/v1/hosts/{}/vms/{}", cluster.host, vm.uid),
    )
    .expect("desired record");
    assert!(
        !desired.to_string().contains(&secret),
        "secret in etcd in clear"
    );

    std::fs::remove_file(&manifest).unwrap();
    let domain = vm.domain_name();
    wait_until("VM removed", Duration::from_secs(90), || {
        !domain_exists(&domain) && cluster.vm_status("ident").is_none()
    })
    .expect("VM removed");
    assert!(
        rt.block_on(login(&auth)).is_err(),
        "a deleted VM's credential still works"
    );
    drop(keystone);
}
