//! Credentials are never logged: with every tracing target at TRACE, a password login, a
//! token validation, an application credential's creation and a login with it leave none of
//! the password, the credential secret or the tokens in the log.
//! Needs `scripts/install-keystone.sh`; without it the test fails under CI and says SKIPPED elsewhere.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::io::Write;
use std::sync::{Arc, Mutex};

use yun_identity::{Credentials, Keystone, Secret};
use yun_testkit::KeystoneServer;

/// Everything the subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// The current-thread runtime keeps every task on this thread, where the subscriber is set.
#[tokio::test]
async fn no_password_secret_or_token_reaches_the_log() {
    if !KeystoneServer::installed_for("no_password_secret_or_token_reaches_the_log") {
        return;
    }
    let server = tokio::task::spawn_blocking(KeystoneServer::start)
        .await
        .unwrap()
        .unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let admin = Keystone::connect(&Credentials::password(
        server.url(),
        server.admin_user(),
        Secret::new(server.admin_password()),
        "admin",
    ))
    .await
    .unwrap();
    let admin_token = admin.current_token().unwrap();
    admin.validate_token(admin_token.expose()).await.unwrap();
    let member = vec!["member".to_owned()];
    let credential = admin
        .create_application_credential(
            admin.user_id(),
            "logged",
            admin.project_id().unwrap(),
            &member,
            None,
        )
        .await
        .unwrap();
    let as_credential = Keystone::connect(&Credentials::application_credential(
        server.url(),
        &credential.id,
        credential.secret.clone(),
    ))
    .await
    .unwrap();
    let credential_token = as_credential.current_token().unwrap();
    admin
        .validate_token(credential_token.expose())
        .await
        .unwrap();

    let log = captured.text();
    assert!(
        log.contains("auth/tokens"),
        "the SDK logged nothing; the test would prove nothing:\n{log}"
    );
    for (what, secret) in [
        ("admin password", server.admin_password()),
        ("credential secret", credential.secret.expose()),
        ("admin token", admin_token.expose()),
        ("credential token", credential_token.expose()),
    ] {
        assert!(!log.contains(secret), "the log holds the {what}:\n{log}");
    }
    drop(_guard);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
