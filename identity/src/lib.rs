//! Keystone (OpenStack identity v3) for Yun, through the OpenStack SDK (`openstack_sdk`),
//! which stays confined to this crate together with its HTTP client and TLS stack.
//!
//! - [`Credentials`]: a component's own Keystone identity, read from a file only its owner may
//!   read (an application credential in production, a password for bootstrap and tests).
//! - [`Keystone`]: an authenticated session that renews its token before expiry; tenant
//!   [`Project`] lookups; users and role assignments; application credentials.
//! - [`Keystone::validate_token`] and [`TokenCache`]: token validation, cached for the
//!   controller's hot path.
//!
//! No secret reaches a log, an error or `Debug` output: they are held as [`Secret`].

mod appcred;
mod cache;
mod client;
mod credentials;
mod error;
mod projects;
mod secret;
mod token;
mod users;

pub use appcred::AppCredential;
pub use cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, TokenCache};
pub use client::{Keystone, RENEW_MARGIN};
pub use credentials::{AuthMethod, Credentials, DEFAULT_DOMAIN};
pub use error::{IdentityError, Result};
pub use projects::Project;
pub use secret::Secret;
pub use token::TokenInfo;
pub use users::User;

/// Makes rustls's ring provider the process default. The SDK's HTTP client links rustls with
/// aws-lc-rs and kube links it with ring; with two providers compiled in, rustls cannot pick
/// one by itself and a client built without an explicit provider panics. Call it early in
/// `main` of every binary that links this crate; [`Keystone::connect`] calls it too. Calling
/// it again, or after another provider was installed, does nothing.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
