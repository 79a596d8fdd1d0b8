//! Application credentials: how VMs (and components) get a Keystone identity of their own.
//!
//! Keystone lets only a user create application credentials for itself, for the project its
//! token is scoped to, with at most the roles it holds there; an application credential can
//! not create further ones unless made "unrestricted", which Yun never does. So the
//! controller gives each VM its own Keystone user (`yun-vm-<vm uid>`) in the VM's project:
//!
//! 1. as admin: [`Keystone::create_user`] with a random password that is never stored, and
//!    [`Keystone::assign_project_role`] for the roles the VM is to have (never `admin`);
//! 2. [`Keystone::connect`] as that user with the password, scoped to the project, and
//!    [`Keystone::create_application_credential`] for exactly those roles; the session and
//!    the password are then dropped;
//! 3. on VM deletion, as admin: [`Keystone::delete_application_credential`] and
//!    [`Keystone::delete_user`], which also revokes the tokens the VM obtained.
//!
//! The credential's roles are thus never more than its owner has: Keystone refuses more at
//! creation, and a role taken from the owner later is gone from the credential's tokens too.
//! A per-project shared user would not work: handing the controller its password means
//! resetting it, and Keystone revokes all of a user's tokens when its password changes.

use std::borrow::Cow;

use jiff::Timestamp;
use openstack_sdk::api::identity::v3::user::application_credential::{create, delete, list};
use openstack_sdk::api::{QueryAsync, ignore};
use serde::Deserialize;

use crate::client::api_error;
use crate::projects::builder_error;
use crate::{IdentityError, Keystone, Result, Secret};

/// A freshly created application credential. Its secret is shown by Keystone only once, at
/// creation: hand it to the VM and do not keep it.
#[derive(Debug, Clone)]
pub struct AppCredential {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub project_id: String,
    /// Sorted role names, including those the requested roles imply (`member` → `reader`).
    pub roles: Vec<String>,
    pub expires_at: Option<Timestamp>,
    pub secret: Secret,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    name: String,
    project_id: String,
    secret: String,
    roles: Vec<RoleRef>,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct RoleRef {
    name: String,
}

impl Keystone {
    /// Creates a restricted application credential `name` owned by `user_id` for
    /// `project_id` with exactly `roles` (names), expiring at `expires_at` if given.
    ///
    /// This session must be `user_id` itself, scoped to `project_id` (see the module docs),
    /// and every role must be one the user holds there; each is checked before Keystone is
    /// asked, so the error says which rule was broken.
    pub async fn create_application_credential(
        &self,
        user_id: &str,
        name: &str,
        project_id: &str,
        roles: &[String],
        expires_at: Option<Timestamp>,
    ) -> Result<AppCredential> {
        self.check_may_create(user_id, name, project_id, roles)?;
        let role_refs = roles
            .iter()
            .map(|role| create::RolesBuilder::default().name(role.as_str()).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| builder_error("creating application credential", name, e))?;
        let expiry = expires_at.map(|at| at.strftime("%Y-%m-%dT%H:%M:%S%.6f").to_string());
        let credential = create::ApplicationCredentialBuilder::default()
            .name(name)
            .roles(role_refs)
            .unrestricted(Some(false))
            .expires_at(expiry.as_deref().map(Cow::Borrowed))
            .build()
            .map_err(|e| builder_error("creating application credential", name, e))?;
        let request = create::Request::builder()
            .user_id(user_id)
            .application_credential(credential)
            .build()
            .map_err(|e| builder_error("creating application credential", name, e))?;
        let created: Created = request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("creating application credential", name, e))?;
        let mut granted: Vec<String> = created.roles.into_iter().map(|role| role.name).collect();
        granted.sort();
        Ok(AppCredential {
            id: created.id,
            name: created.name,
            user_id: user_id.to_owned(),
            project_id: created.project_id,
            roles: granted,
            expires_at: created
                .expires_at
                .as_deref()
                .and_then(crate::token::parse_keystone_time),
            secret: Secret::new(created.secret),
        })
    }

    /// Deletes (and so revokes) application credential `id` of `user_id`; tokens obtained
    /// with it stop validating. The owner or an admin may do this.
    pub async fn delete_application_credential(&self, user_id: &str, id: &str) -> Result<()> {
        let request = delete::Request::builder()
            .user_id(user_id)
            .id(id)
            .build()
            .map_err(|e| builder_error("deleting application credential", id, e))?;
        ignore(request)
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("deleting application credential", id, e))
    }

    /// The ids of every application credential `user_id` owns. The owner or an admin may
    /// list them.
    pub async fn application_credential_ids(&self, user_id: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Listed {
            id: String,
        }
        let request = list::Request::builder()
            .user_id(user_id)
            .build()
            .map_err(|e| builder_error("listing application credentials", user_id, e))?;
        let listed: Vec<Listed> = request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("listing application credentials", user_id, e))?;
        Ok(listed.into_iter().map(|c| c.id).collect())
    }

    fn check_may_create(
        &self,
        user_id: &str,
        name: &str,
        project_id: &str,
        roles: &[String],
    ) -> Result<()> {
        if self.user_id() != user_id {
            return Err(IdentityError::NotOwner {
                name: name.to_owned(),
                user_id: user_id.to_owned(),
                session_user: self.user_id().to_owned(),
            });
        }
        if self.project_id() != Some(project_id) {
            return Err(IdentityError::WrongProject {
                name: name.to_owned(),
                project_id: project_id.to_owned(),
                session_project: self.project_id().unwrap_or("(none)").to_owned(),
            });
        }
        // The token's roles are the owner's effective roles on the project.
        let held = self.token_roles();
        let missing = if roles.is_empty() {
            // Keystone would copy all of the token's roles; Yun always names them.
            Some("(none requested)".to_owned())
        } else {
            roles.iter().find(|role| !held.contains(role)).cloned()
        };
        match missing {
            None => Ok(()),
            Some(role) => Err(IdentityError::RoleNotHeld {
                name: name.to_owned(),
                user_id: user_id.to_owned(),
                project_id: project_id.to_owned(),
                role,
            }),
        }
    }
}
