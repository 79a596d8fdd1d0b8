//! A session renews its token before it expires, so a long-running component never presents
//! an expired one. Keystone here issues 8 s tokens; the session renews a quarter of the
//! lifetime (2 s) before expiry.
//! Needs `scripts/install-keystone.sh`; without it the test fails under CI and says SKIPPED elsewhere.

use std::time::Duration;

use yun_identity::{Credentials, Keystone, Secret};
use yun_testkit::KeystoneServer;

const LIFETIME: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_renews_its_token_before_expiry() {
    if !KeystoneServer::installed_for("session_renews_its_token_before_expiry") {
        return;
    }
    let server =
        tokio::task::spawn_blocking(|| KeystoneServer::start_with_token_lifetime(LIFETIME))
            .await
            .unwrap()
            .unwrap();
    let admin = Keystone::connect(&Credentials::password(
        server.url(),
        server.admin_user(),
        Secret::new(server.admin_password()),
        "admin",
    ))
    .await
    .unwrap();
    let first = admin.current_token().unwrap();
    let first_info = admin.validate_token(first.expose()).await.unwrap();
    let lifetime = first_info.expires_at.duration_since(jiff::Timestamp::now());
    assert!(
        lifetime <= jiff::SignedDuration::from_secs(8),
        "{lifetime:?}"
    );

    // Past the first token's expiry: the session holds a newer, valid token and keeps working.
    tokio::time::sleep(LIFETIME + Duration::from_secs(1)).await;
    let second = admin.current_token().unwrap();
    assert_ne!(second, first, "the token was not renewed");
    assert!(admin.validate_token(first.expose()).await.is_err());
    let second_info = admin.validate_token(second.expose()).await.unwrap();
    assert!(second_info.expires_at > first_info.expires_at);
    assert!(admin.project("admin").await.unwrap().is_some());
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
