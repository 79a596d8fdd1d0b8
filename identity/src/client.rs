//! An authenticated connection to Keystone through the OpenStack SDK, which keeps its token
//! fresh: a background task re-authenticates [`RENEW_MARGIN`] before the token expires, and a
//! request answered 401 re-authenticates once and is retried.

use std::fmt;
use std::sync::Arc;

use openstack_sdk::api::ApiError;
use openstack_sdk::config::{Auth, CloudConfig};
use openstack_sdk::{AsyncOpenStack, RenewHandle, RestError};

use secrecy::ExposeSecret;

use crate::{AuthMethod, Credentials, IdentityError, Result, Secret};

/// How long before expiry the token is renewed, at most: a quarter of the token's lifetime
/// when that is shorter. Keystone's default token lifetime is 1 h.
pub const RENEW_MARGIN: std::time::Duration = std::time::Duration::from_secs(300);

/// A Keystone session for one principal and one project scope. Cheap to clone: clones share
/// the token. `Debug` shows the URL, user and project, never the token.
#[derive(Clone)]
pub struct Keystone {
    pub(crate) session: AsyncOpenStack,
    auth_url: String,
    user_id: String,
    project_id: Option<String>,
    /// Dropped with the last clone, which stops the renewal task.
    _renew: Arc<RenewHandle>,
}

impl Keystone {
    /// Authenticates with `credentials` and starts keeping the token fresh. Must run inside a
    /// tokio runtime (the renewal task is spawned on it).
    pub async fn connect(credentials: &Credentials) -> Result<Self> {
        crate::install_crypto_provider();
        link_auth_plugins();
        let auth_error = |detail: String| IdentityError::Authenticate {
            auth_url: credentials.auth_url.clone(),
            principal: credentials.principal(),
            detail,
        };
        let session = AsyncOpenStack::builder(&cloud_config(credentials))
            // The SDK would otherwise write tokens to a cache file under $HOME.
            .disable_auth_cache(true)
            .connect()
            .await
            .map_err(|e| auth_error(e.to_string()))?;
        let info = session
            .get_auth_info()
            .ok_or_else(|| auth_error("Keystone returned no token information".to_owned()))?;
        let renew =
            session.enable_auto_renew(renew_margin(info.token.issued_at, info.token.expires_at));
        Ok(Self {
            auth_url: credentials.auth_url.clone(),
            user_id: info.token.user.id.clone(),
            project_id: info.token.project.and_then(|project| project.id),
            session,
            _renew: Arc::new(renew),
        })
    }

    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// The Keystone user this session acts as (for an application credential, its owner).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The project the token is scoped to.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// This session's current token, e.g. for a component to present to the controller.
    pub fn current_token(&self) -> Option<Secret> {
        self.session
            .get_auth_token()
            .map(|token| Secret::new(token.expose_secret()))
    }

    /// The names of the roles in this session's current token.
    pub(crate) fn token_roles(&self) -> Vec<String> {
        self.session
            .get_auth_info()
            .and_then(|info| info.token.roles)
            .unwrap_or_default()
            .into_iter()
            .map(|role| role.name)
            .collect()
    }
}

impl fmt::Debug for Keystone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystone")
            .field("auth_url", &self.auth_url)
            .field("user_id", &self.user_id)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// [`RENEW_MARGIN`], or a quarter of the token's lifetime if less: a margin as long as the
/// lifetime would make the SDK's renewal task renew again at once, forever.
fn renew_margin(
    issued_at: Option<chrono::DateTime<chrono::Utc>>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> chrono::TimeDelta {
    let fallback = chrono::TimeDelta::seconds(RENEW_MARGIN.as_secs() as i64);
    let lifetime = expires_at - issued_at.unwrap_or_else(chrono::Utc::now);
    (lifetime / 4).clamp(chrono::TimeDelta::zero(), fallback)
}

/// The SDK finds auth plugins in a registry filled from linker sections, and a plugin crate
/// nothing refers to is not linked: its method is then "not a supported type". Referring to
/// each plugin's anchor keeps it in the binary.
fn link_auth_plugins() {
    std::hint::black_box(&openstack_sdk_auth_applicationcredential::ANCHOR);
    std::hint::black_box(&openstack_sdk_auth_password::ANCHOR);
}

fn cloud_config(credentials: &Credentials) -> CloudConfig {
    let mut auth = Auth {
        auth_url: Some(credentials.auth_url.clone()),
        ..Auth::default()
    };
    let auth_type = match &credentials.method {
        AuthMethod::ApplicationCredential { id, secret } => {
            auth.application_credential_id = Some(id.clone());
            auth.application_credential_secret = Some(secret.to_sdk());
            "v3applicationcredential"
        }
        AuthMethod::Password {
            username,
            password,
            user_domain,
            project,
            project_domain,
        } => {
            auth.username = Some(username.clone());
            auth.password = Some(password.to_sdk());
            auth.user_domain_name = Some(user_domain.clone());
            auth.project_name = Some(project.clone());
            auth.project_domain_name = Some(project_domain.clone());
            "v3password"
        }
    };
    CloudConfig {
        auth: Some(auth),
        auth_type: Some(auth_type.to_owned()),
        name: Some("yun".to_owned()),
        auth_cache: Some(false),
        ..CloudConfig::default()
    }
}

/// Turns an SDK error into ours, keeping Keystone's status and message but not the request
/// (whose URI may carry ids the caller already has in `object`).
pub(crate) fn api_error(
    operation: &'static str,
    object: impl Into<String>,
    err: ApiError<RestError>,
) -> IdentityError {
    let object = object.into();
    let (status, detail) = match err {
        ApiError::ResourceNotFound => return IdentityError::NotFound { operation, object },
        ApiError::OpenStack { status, msg, .. } => (Some(status), msg),
        ApiError::OpenStackService { status, .. } => (Some(status), status.to_string()),
        ApiError::OpenStackUnrecognized { status, obj, .. } => (Some(status), obj.to_string()),
        other => (None, other.to_string()),
    };
    if status == Some(http::StatusCode::NOT_FOUND) {
        return IdentityError::NotFound { operation, object };
    }
    IdentityError::Api {
        operation,
        object,
        status: status.map(|s| s.as_u16()),
        detail,
    }
}
