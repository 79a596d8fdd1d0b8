//! Keystone in the controller: tenants are projects (checked before anything is placed for
//! them), and VMs that ask for it get an application credential of their own, sealed to their
//! host, rotated, and revoked when they are deleted. Off unless the controller is given
//! Keystone credentials (`--keystone-credentials`).

pub mod device;
mod issue;
pub mod plan;
pub mod step;
pub mod tenants;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use yun_identity::{Credentials, IdentityError, Keystone};

pub use plan::{IdentityPlan, plan, vm_user_name};
pub use tenants::TenantVerdict;

/// Default age at which a VM credential is replaced.
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(30 * 86_400);
/// Roles a VM may ask for unless configured otherwise.
pub const DEFAULT_VM_ROLES: &[&str] = &["member", "reader"];

/// How the controller talks to Keystone.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The controller's own Keystone credentials: a TOML file only its owner may read.
    pub credentials: PathBuf,
    /// Keystone as the guests reach it (default: the controller's `auth_url`).
    pub guest_auth_url: Option<String>,
    /// Age at which a VM credential is rotated.
    pub rotation: Duration,
    /// Keystone domain (by name) of the tenant projects and of the per-VM users.
    pub domain: String,
    /// The roles a VM may ask for; anything else is refused.
    pub allowed_roles: Vec<String>,
    /// Region name written into the guest's clouds.yaml.
    pub region: Option<String>,
}

/// Why a VM's identity could not be issued or revoked. Never carries a secret.
#[derive(Debug, Error)]
pub enum VmIdentityError {
    #[error("Keystone: {0}")]
    Keystone(#[from] IdentityError),
    #[error("sealing the credential for host {host}: {source}")]
    Seal {
        host: String,
        source: yun_fleet::sealed::SealError,
    },
    #[error(
        "host {host} publishes no seal key (its agent predates VM identities); the credential cannot be delivered there"
    )]
    NoSealKey { host: String },
    #[error("role {role:?} may not be given to a VM (allowed: {allowed})")]
    RoleNotAllowed { role: String, allowed: String },
}

struct Inner {
    admin: Keystone,
    cfg: IdentityConfig,
    /// Id of the tenant domain (`cfg.domain` names it).
    domain_id: String,
    guest_auth_url: String,
    tenants: tenants::TenantCache,
}

/// The controller's Keystone, or nothing (tenancy is then not enforced and VM identities are
/// refused).
#[derive(Clone, Default)]
pub struct Identity {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Identity(disabled)"),
            Some(i) => write!(
                f,
                "Identity({} as {})",
                i.admin.auth_url(),
                i.admin.user_id()
            ),
        }
    }
}

impl Identity {
    pub fn disabled() -> Identity {
        Identity::default()
    }

    /// Reads the credentials file (refused when group or others may read it) and logs in.
    pub async fn connect(cfg: IdentityConfig) -> Result<Identity, IdentityError> {
        let credentials = Credentials::from_file(&cfg.credentials)?;
        let admin = Keystone::connect(&credentials).await?;
        tracing::info!(
            auth_url = %admin.auth_url(),
            principal = %credentials.principal(),
            "Keystone connected: tenants are checked against projects"
        );
        let domain_id =
            admin
                .domain_id(&cfg.domain)
                .await?
                .ok_or_else(|| IdentityError::NotFound {
                    operation: "looking up the tenant domain (--keystone-domain)",
                    object: cfg.domain.clone(),
                })?;
        let guest_auth_url = cfg
            .guest_auth_url
            .clone()
            .unwrap_or_else(|| admin.auth_url().to_owned());
        Ok(Identity {
            inner: Some(Arc::new(Inner {
                admin,
                cfg,
                domain_id,
                guest_auth_url,
                tenants: tenants::TenantCache::default(),
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn rotation(&self) -> Duration {
        self.inner
            .as_ref()
            .map_or(DEFAULT_ROTATION, |i| i.cfg.rotation)
    }

    /// Whether anything may be placed for `namespace`; `None` when Keystone is not configured.
    pub async fn tenant(&self, namespace: &str) -> Option<TenantVerdict> {
        let inner = self.inner.as_ref()?;
        let now = Instant::now();
        if let Some(v) = inner.tenants.get(namespace, now) {
            return Some(v);
        }
        let lookup = inner.admin.project_named(namespace, &inner.domain_id).await;
        Some(inner.tenants.remember(namespace, &lookup, Instant::now()))
    }
}
