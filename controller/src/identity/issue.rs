//! Creating and revoking one generation of a VM's Keystone identity.
//!
//! Generation `g` of VM `uid` is Keystone user `yun-vm-<uid>-g<g>` in the tenant's domain,
//! holding exactly the requested roles on the tenant's project, and one restricted
//! application credential of that user with the same roles (see `yun_identity::appcred`).
//! The user's random password is used once, to create the credential, and then forgotten.
//! Revoking deletes the user: Keystone deletes its credential and revokes its tokens with it.

use jiff::Timestamp;
use yun_fleet::{GuestCredential, VmIdentityRecord};
use yun_identity::{AppCredential, Credentials, IdentityError, Keystone, Project, Secret, User};

use super::plan::vm_user_name;
use super::{Identity, Inner, VmIdentityError};

/// One generation to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    pub uid: &'a str,
    pub generation: u64,
    pub project: &'a Project,
    /// Sorted, deduplicated.
    pub roles: &'a [String],
    pub host: &'a str,
    /// The host's `HostInfo.seal_key`.
    pub seal_key: Option<&'a str>,
    /// The generation this one replaces (kept valid until this one is delivered).
    pub retiring: Option<u64>,
}

fn random_password() -> Secret {
    // Two v4 UUIDs: 244 random bits from the OS; the password is never stored.
    Secret::new(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ))
}

impl Identity {
    /// Creates generation `req.generation` and seals it to `req.host`.
    pub async fn issue(&self, req: &IssueRequest<'_>) -> Result<VmIdentityRecord, VmIdentityError> {
        let Some(inner) = &self.inner else {
            return Err(VmIdentityError::Keystone(IdentityError::Api {
                operation: "issuing a VM identity",
                object: req.uid.to_owned(),
                status: None,
                detail: "the controller has no Keystone credentials (--keystone-credentials)"
                    .into(),
            }));
        };
        if let Some(role) = req
            .roles
            .iter()
            .find(|r| !inner.cfg.allowed_roles.iter().any(|a| a == *r))
        {
            return Err(VmIdentityError::RoleNotAllowed {
                role: role.clone(),
                allowed: inner.cfg.allowed_roles.join(", "),
            });
        }
        let seal_key = req.seal_key.ok_or_else(|| VmIdentityError::NoSealKey {
            host: req.host.to_owned(),
        })?;
        let name = vm_user_name(req.uid, req.generation);
        // A user of this generation without a record is left from an issue that did not
        // reach the fleet bus: start over rather than guess its state.
        delete_user_named(&inner.admin, &name).await?;
        let (_, created) = inner
            .create_owned_credential(&name, req.project, req.roles)
            .await?;
        let guest = GuestCredential {
            auth_url: inner.guest_auth_url.clone(),
            application_credential_id: created.id.clone(),
            application_credential_secret: created.secret.expose().to_owned(),
            project_id: req.project.id.clone(),
            region: inner.cfg.region.clone(),
        };
        let sealed =
            yun_fleet::sealed::seal_credential(seal_key, req.host, req.uid, req.generation, &guest)
                .map_err(|source| VmIdentityError::Seal {
                    host: req.host.to_owned(),
                    source,
                })?;
        Ok(VmIdentityRecord {
            generation: req.generation,
            credential_id: created.id,
            project_id: req.project.id.clone(),
            issued_at: Timestamp::now().to_string(),
            // What was asked (sorted), not Keystone's expansion with implied roles, so the
            // plan can tell a changed request from an unchanged one.
            roles: req.roles.to_vec(),
            retiring: req.retiring,
            sealed,
        })
    }

    /// Revokes generation `generation` of VM `uid`; `false` when it did not exist (already
    /// revoked, or never issued). Does nothing when Keystone is not configured.
    pub async fn revoke(&self, uid: &str, generation: u64) -> Result<bool, VmIdentityError> {
        let Some(inner) = &self.inner else {
            return Ok(false);
        };
        Ok(delete_user_named(&inner.admin, &vm_user_name(uid, generation)).await?)
    }
}

impl Inner {
    /// Creates Keystone user `name` in `project`'s domain holding exactly `roles` on it, and
    /// its one restricted application credential (also named `name`) with those roles. The
    /// user's random password is used once, to log in as the owner, and then forgotten.
    pub(super) async fn create_owned_credential(
        &self,
        name: &str,
        project: &Project,
        roles: &[String],
    ) -> Result<(User, AppCredential), IdentityError> {
        let password = random_password();
        let user = self
            .admin
            .create_user(name, &project.domain_id, &password)
            .await?;
        for role in roles {
            self.admin
                .assign_project_role(&user.id, &project.id, role)
                .await?;
        }
        let login = Credentials::password(
            self.admin.auth_url(),
            name.to_owned(),
            password,
            project.name.clone(),
        );
        let owner = Keystone::connect(&with_domain(login, &self.cfg.domain)).await?;
        let created = owner
            .create_application_credential(&user.id, name, &project.id, roles, None)
            .await?;
        Ok((user, created))
    }
}

/// Deletes user `name` if it exists, and before it each of its application credentials;
/// `false` when there was no such user.
///
/// Deleting the user would delete its credentials too, but Keystone does that with a bulk
/// delete that leaves the credentials' role rows to the database's `ON DELETE CASCADE`; a
/// database that does not enforce foreign keys (SQLite, as in tests) keeps them, and they
/// collide with the next credential given the same internal id (a 409 on create). Deleting
/// each credential by itself removes its rows in every backend. They are listed rather than
/// taken from the controller's records, so a credential a record never named (an issue that
/// did not finish, a retiring generation) is covered too.
pub(super) async fn delete_user_named(admin: &Keystone, name: &str) -> Result<bool, IdentityError> {
    let Some(user) = admin.user(name).await? else {
        return Ok(false);
    };
    for id in admin.application_credential_ids(&user.id).await? {
        match admin.delete_application_credential(&user.id, &id).await {
            Ok(()) | Err(IdentityError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    admin.delete_user(&user.id).await?;
    Ok(true)
}

/// Logs the per-VM user in within the tenant domain (by name).
fn with_domain(mut login: Credentials, domain: &str) -> Credentials {
    if let yun_identity::AuthMethod::Password {
        user_domain,
        project_domain,
        ..
    } = &mut login.method
    {
        *user_domain = domain.to_owned();
        *project_domain = domain.to_owned();
    }
    login
}
