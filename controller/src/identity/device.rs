//! Keystone identities of third-party devices (`DeviceIdentity`): one Keystone user per device
//! and rotation (`yun-device-<uid>`, then `yun-device-<uid>-r<n>` after the n-th scheduled
//! rotation), in the tenant's domain, holding exactly the device's roles on the tenant's
//! project, with one restricted application credential of its own (see
//! `yun_identity::appcred`). As for VMs, the user's random password is used once, to create the
//! credential, and forgotten; revoking deletes the user, which deletes its credential and
//! revokes its tokens. A user per rotation is what lets the old credential stay valid while
//! the device picks up the new one.
//!
//! Also the token validation of the device view: cached through a [`TokenCache`], or fresh.

use yun_identity::{IdentityError, Project, Secret, TokenCache, TokenInfo};

use super::Identity;
use super::issue::delete_user_named;

/// Every device user's name starts with this.
pub const DEVICE_USER_PREFIX: &str = "yun-device-";

/// The Keystone user (and application credential) name of device `uid` after `rotation`
/// scheduled rotations.
pub fn device_user_name(uid: &str, rotation: u64) -> String {
    match rotation {
        0 => format!("{DEVICE_USER_PREFIX}{uid}"),
        n => format!("{DEVICE_USER_PREFIX}{uid}-r{n}"),
    }
}

/// Why a device identity could not be issued or revoked, or a token checked. Never carries a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum DeviceIdentityError {
    #[error(
        "the controller has no Keystone credentials (--keystone-credentials), so it cannot give a device an identity"
    )]
    Disabled,
    #[error("Keystone: {0}")]
    Keystone(#[from] IdentityError),
}

/// A freshly issued device credential. The secret goes to the device's credentials file and
/// nowhere else.
#[derive(Debug, Clone)]
pub struct DeviceCredential {
    pub user_id: String,
    pub credential_id: String,
    pub project_id: String,
    /// Keystone as the device reaches it (`--keystone-guest-auth-url`, else the controller's).
    pub auth_url: String,
    pub secret: Secret,
}

impl Identity {
    /// Creates device `uid`'s user for `rotation` with exactly `roles` (sorted, deduplicated,
    /// already checked against what devices may hold) on `project`, and its one application
    /// credential. A user of that name left from an earlier issue is deleted first.
    pub async fn issue_device(
        &self,
        uid: &str,
        rotation: u64,
        project: &Project,
        roles: &[String],
    ) -> Result<DeviceCredential, DeviceIdentityError> {
        let inner = self.inner.as_ref().ok_or(DeviceIdentityError::Disabled)?;
        let name = device_user_name(uid, rotation);
        delete_user_named(&inner.admin, &name).await?;
        let (user, created) = inner.create_owned_credential(&name, project, roles).await?;
        Ok(DeviceCredential {
            user_id: user.id,
            credential_id: created.id,
            project_id: created.project_id,
            auth_url: inner.guest_auth_url.clone(),
            secret: created.secret,
        })
    }

    /// Deletes device `uid`'s user of `rotation` (its credentials and tokens with it); `false`
    /// when there was none. Does nothing when Keystone is not configured.
    pub async fn revoke_device(
        &self,
        uid: &str,
        rotation: u64,
    ) -> Result<bool, DeviceIdentityError> {
        let Some(inner) = &self.inner else {
            return Ok(false);
        };
        Ok(delete_user_named(&inner.admin, &device_user_name(uid, rotation)).await?)
    }

    /// Who `token` speaks for: from `cache` when it validated recently, else from Keystone.
    /// With `fresh`, the cache is bypassed (and refreshed): for answers that must not rest on
    /// a validation made before a revocation.
    pub async fn validate_token(
        &self,
        cache: &TokenCache,
        token: &str,
        fresh: bool,
    ) -> Result<TokenInfo, DeviceIdentityError> {
        let inner = self.inner.as_ref().ok_or(DeviceIdentityError::Disabled)?;
        if fresh {
            cache.remove(token);
        }
        Ok(cache.validate(&inner.admin, token).await?)
    }
}
