//! yun-identity against a real Keystone (PyPI keystone under gunicorn, SQLite, on loopback):
//! tenants as projects, per-VM application credentials from creation to revocation, the
//! credentials file permission check, and cached validation that does not need Keystone.
//! Needs `scripts/install-keystone.sh`; without it each test fails under CI and says SKIPPED elsewhere.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yun_identity::{
    Credentials, IdentityError, Keystone, Secret, TokenCache, install_crypto_provider,
};
use yun_testkit::KeystoneServer;

/// Writes straight to stderr: libtest captures eprintln! of passing tests, and a skip must
/// be seen.
fn shout(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

async fn start_keystone(test: &str) -> Option<KeystoneServer> {
    if !KeystoneServer::installed_for(test) {
        return None;
    }
    let server = tokio::task::spawn_blocking(KeystoneServer::start)
        .await
        .unwrap()
        .unwrap();
    shout(&format!(
        "{test}: Keystone up in {:.1} s at {}",
        server.startup_time().as_secs_f64(),
        server.url()
    ));
    Some(server)
}

/// Writes a credentials file with `mode` and returns its path.
fn credentials_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn admin_file_text(server: &KeystoneServer) -> String {
    format!(
        "auth_url = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nproject = \"admin\"\n",
        server.url(),
        server.admin_user(),
        server.admin_password()
    )
}

async fn connect_admin(server: &KeystoneServer, dir: &Path) -> Keystone {
    let path = credentials_file(dir, "admin.toml", &admin_file_text(server), 0o600);
    Keystone::connect(&Credentials::from_file(&path).unwrap())
        .await
        .unwrap()
}

#[test]
fn credentials_file_readable_by_others_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = "auth_url = \"http://127.0.0.1:1/v3\"\napplication_credential_id = \"id\"\n\
                application_credential_secret = \"do-not-print-me\"\n";
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let path = credentials_file(dir.path(), "component.toml", text, mode);
        let err = Credentials::from_file(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::CredentialsExposed { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("{mode:03o}")), "{message}");
        assert!(!message.contains("do-not-print-me"), "{message}");
    }
    let path = credentials_file(dir.path(), "component.toml", text, 0o600);
    let credentials = Credentials::from_file(&path).unwrap();
    assert!(!format!("{credentials:?}").contains("do-not-print-me"));
    let missing = Credentials::from_file(dir.path().join("absent.toml")).unwrap_err();
    assert!(missing.to_string().contains("absent.toml"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_projects_and_a_vm_credential_from_creation_to_revocation() {
    let test = "tenant_projects_and_a_vm_credential_from_creation_to_revocation";
    let Some(server) = start_keystone(test).await else {
        return;
    };
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let admin = connect_admin(&server, dir.path()).await;
    assert!(admin.project_id().is_some());
    let wrong = Credentials::password(
        server.url(),
        "admin",
        Secret::new("not-the-password"),
        "admin",
    );
    let refused = Keystone::connect(&wrong).await.unwrap_err();
    assert!(
        matches!(refused, IdentityError::Authenticate { .. }),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains("not-the-password"));

    // A tenant is a project: found by name and by id, enabled, and unknown names are None.
    let tenant = admin.create_project("tenant-a", "default").await.unwrap();
    assert!(tenant.enabled);
    assert_eq!(
        admin.project("tenant-a").await.unwrap(),
        Some(tenant.clone())
    );
    assert_eq!(
        admin.project(&tenant.id).await.unwrap(),
        Some(tenant.clone())
    );
    assert_eq!(admin.project("no-such-tenant").await.unwrap(), None);

    // The VM's own user, with `member` (which implies `reader`) on the tenant.
    let vm_password = Secret::new("vm-user-password-0123456789");
    let vm_user = admin
        .create_user("yun-vm-test-1", "default", &vm_password)
        .await
        .unwrap();
    admin
        .assign_project_role(&vm_user.id, &tenant.id, "member")
        .await
        .unwrap();
    assert_eq!(
        admin
            .role_assignments(&vm_user.id, &tenant.id)
            .await
            .unwrap(),
        vec!["member".to_owned(), "reader".to_owned()]
    );

    // Only the user itself may create its credential, and never with more than it holds.
    let member = vec!["member".to_owned()];
    let not_owner = admin
        .create_application_credential(&vm_user.id, "vm-1", &tenant.id, &member, None)
        .await
        .unwrap_err();
    assert!(
        matches!(not_owner, IdentityError::NotOwner { .. }),
        "{not_owner:?}"
    );
    let as_vm_user = Keystone::connect(&Credentials::password(
        server.url(),
        "yun-vm-test-1",
        vm_password,
        "tenant-a",
    ))
    .await
    .unwrap();
    let too_much = as_vm_user
        .create_application_credential(&vm_user.id, "vm-1", &tenant.id, &["admin".to_owned()], None)
        .await
        .unwrap_err();
    assert!(
        matches!(too_much, IdentityError::RoleNotHeld { .. }),
        "{too_much:?}"
    );
    let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let credential = as_vm_user
        .create_application_credential(&vm_user.id, "vm-1", &tenant.id, &member, Some(expires_at))
        .await
        .unwrap();
    assert_eq!(credential.project_id, tenant.id);
    // Keystone lists the roles `member` implies too, and nothing the owner lacks.
    assert_eq!(
        credential.roles,
        vec!["member".to_owned(), "reader".to_owned()]
    );
    let expiry = credential.expires_at.unwrap();
    assert!((expiry.as_second() - expires_at.as_second()).abs() <= 1);
    assert!(!format!("{credential:?}").contains(credential.secret.expose()));
    drop(as_vm_user);

    // The VM authenticates with it; the admin validates the token the VM presents.
    let vm_secret = credential.secret.clone();
    let vm_credentials =
        Credentials::application_credential(server.url(), &credential.id, credential.secret);
    let as_vm = Keystone::connect(&vm_credentials).await.unwrap();
    let vm_token = as_vm.current_token().unwrap();
    let info = admin.validate_token(vm_token.expose()).await.unwrap();
    assert_eq!(info.user_id, vm_user.id);
    assert_eq!(info.project_id.as_deref(), Some(tenant.id.as_str()));
    assert_eq!(info.roles, vec!["member".to_owned(), "reader".to_owned()]);
    assert_eq!(
        info.application_credential_id.as_deref(),
        Some(credential.id.as_str())
    );
    assert!(info.expires_at > jiff::Timestamp::now());
    let garbage = admin
        .validate_token("gAAAAA-not-a-token")
        .await
        .unwrap_err();
    assert!(
        matches!(garbage, IdentityError::TokenInvalid { .. }),
        "{garbage:?}"
    );

    // VM deleted: the credential is revoked, its token stops validating, and it cannot get
    // a new one.
    admin
        .delete_application_credential(&vm_user.id, &credential.id)
        .await
        .unwrap();
    let revoked = admin.validate_token(vm_token.expose()).await.unwrap_err();
    assert!(
        matches!(revoked, IdentityError::TokenInvalid { .. }),
        "{revoked:?}"
    );
    let after = Keystone::connect(&vm_credentials).await.unwrap_err();
    assert!(
        matches!(after, IdentityError::Authenticate { .. }),
        "{after:?}"
    );
    assert!(!after.to_string().contains(vm_secret.expose()), "{after}");
    admin.delete_user(&vm_user.id).await.unwrap();

    // A disabled tenant is reported disabled; nothing is placed for it.
    let disabled = admin.set_project_enabled(&tenant.id, false).await.unwrap();
    assert!(!disabled.enabled);
    let seen = admin.project("tenant-a").await.unwrap().unwrap();
    assert!(!seen.enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_validation_answers_without_keystone_within_the_ttl() {
    let test = "cached_validation_answers_without_keystone_within_the_ttl";
    let Some(mut server) = start_keystone(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let admin = connect_admin(&server, dir.path()).await;
    let token = admin.current_token().unwrap();
    let cache = TokenCache::new(100, Duration::from_secs(60));

    let first = cache.validate(&admin, token.expose()).await.unwrap();
    assert_eq!(first.user_id, admin.user_id());
    assert_eq!(cache.stats(), (0, 1));

    // Keystone gone: the uncached path fails, the cached one still answers.
    let server = tokio::task::spawn_blocking(move || {
        server.stop().unwrap();
        server
    })
    .await
    .unwrap();
    let uncached = admin.validate_token(token.expose()).await.unwrap_err();
    assert!(
        !matches!(uncached, IdentityError::TokenInvalid { .. }),
        "{uncached:?}"
    );
    let cached = cache.validate(&admin, token.expose()).await.unwrap();
    assert_eq!(cached, first);
    assert_eq!(cache.stats(), (1, 1));
    // A token never validated is not answered from the cache.
    assert!(cache.validate(&admin, "gAAAAA-other").await.is_err());
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
