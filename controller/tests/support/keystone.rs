//! A real Keystone for the identity tests: started, logged in to as admin, and the controller's
//! `Identity` connected to it the way `--keystone-credentials` does (a 0600 credentials file).

use std::path::Path;
use std::time::Duration;

use yun_controller::identity::{Identity, IdentityConfig};
use yun_identity::{Credentials, Keystone, Secret};
use yun_testkit::KeystoneServer;

/// Starts Keystone (failing loudly when it is not installed) and logs in as its admin.
pub async fn start_keystone() -> (KeystoneServer, Keystone) {
    yun_identity::install_crypto_provider();
    assert!(
        KeystoneServer::is_installed(),
        "Keystone is not installed in {} (scripts/install-keystone.sh, run by install-deps)",
        KeystoneServer::venv().display()
    );
    let keystone = tokio::task::spawn_blocking(KeystoneServer::start)
        .await
        .unwrap()
        .unwrap();
    let admin = Keystone::connect(&Credentials::password(
        keystone.url(),
        keystone.admin_user(),
        Secret::new(keystone.admin_password()),
        "admin",
    ))
    .await
    .unwrap();
    (keystone, admin)
}

/// The controller's identity on `keystone`, with its credentials file written in `dir`, tenant
/// domain `Default`, VM roles `allowed_roles`.
pub async fn controller_identity(
    keystone: &KeystoneServer,
    dir: &Path,
    rotation: Duration,
    allowed_roles: &[&str],
) -> Identity {
    let credentials = dir.join("keystone.toml");
    keystone.write_admin_credentials(&credentials).unwrap();
    Identity::connect(IdentityConfig {
        credentials,
        guest_auth_url: None,
        rotation,
        domain: "Default".into(),
        allowed_roles: allowed_roles.iter().map(|r| r.to_string()).collect(),
        region: None,
    })
    .await
    .unwrap()
}
