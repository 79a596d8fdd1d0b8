//! Users and their roles on projects: what a principal may do, and (for bootstrap, tests and
//! per-VM identities) creating users and granting roles.

use std::borrow::Cow;

use openstack_sdk::api::identity::v3::project::user::role::set as grant;
use openstack_sdk::api::identity::v3::role::find as find_role;
use openstack_sdk::api::identity::v3::role_assignment::list as assignments;
use openstack_sdk::api::identity::v3::user::{create, delete, find as find_user};
use openstack_sdk::api::{QueryAsync, find, ignore};
use serde::Deserialize;

use crate::client::api_error;
use crate::projects::builder_error;
use crate::{Keystone, Result, Secret};

/// A Keystone user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
}

#[derive(Deserialize)]
struct Assignment {
    role: NamedRef,
}

#[derive(Deserialize)]
struct NamedRef {
    id: String,
    name: Option<String>,
}

impl Keystone {
    /// Creates an enabled user `name` in `domain_id` with `password`. Needs an admin.
    pub async fn create_user(
        &self,
        name: &str,
        domain_id: &str,
        password: &Secret,
    ) -> Result<User> {
        let user = create::UserBuilder::default()
            .name(name)
            .domain_id(domain_id)
            .enabled(true)
            .password(Some(Cow::Borrowed(password.expose())))
            .build()
            .map_err(|e| builder_error("creating user", name, e))?;
        let request = create::Request::builder()
            .user(user)
            .build()
            .map_err(|e| builder_error("creating user", name, e))?;
        request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("creating user", name, e))
    }

    /// The user with this id, or else this name; `None` when there is none. Needs an admin.
    pub async fn user(&self, name_or_id: &str) -> Result<Option<User>> {
        let request = find_user::Request::builder()
            .id(Cow::Borrowed(name_or_id))
            .build()
            .map_err(|e| builder_error("looking up user", name_or_id, e))?;
        match find(request).query_async(&self.session).await {
            Ok(user) => Ok(Some(user)),
            Err(err) => match api_error("looking up user", name_or_id, err) {
                crate::IdentityError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Deletes a user; Keystone deletes its application credentials and revokes its tokens
    /// with it. Needs an admin.
    pub async fn delete_user(&self, user_id: &str) -> Result<()> {
        let request = delete::Request::builder()
            .id(user_id)
            .build()
            .map_err(|e| builder_error("deleting user", user_id, e))?;
        ignore(request)
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("deleting user", user_id, e))
    }

    /// Grants role `role` (a name or id, e.g. `member`) to a user on a project. Granting a
    /// role the user already holds is not an error. Needs an admin.
    pub async fn assign_project_role(
        &self,
        user_id: &str,
        project_id: &str,
        role: &str,
    ) -> Result<()> {
        let object = || format!("role {role} for user {user_id} on project {project_id}");
        let lookup = find_role::Request::builder()
            .id(role)
            .build()
            .map_err(|e| builder_error("granting", &object(), e))?;
        let found: NamedRef = find(lookup)
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("looking up role", role, e))?;
        let request = grant::Request::builder()
            .id(found.id.as_str())
            .project_id(project_id)
            .user_id(user_id)
            .build()
            .map_err(|e| builder_error("granting", &object(), e))?;
        ignore(request)
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("granting", object(), e))
    }

    /// The names of the roles `user_id` holds on `project_id`, directly or through groups and
    /// implied roles, sorted and without duplicates.
    pub async fn role_assignments(&self, user_id: &str, project_id: &str) -> Result<Vec<String>> {
        let object = || format!("of user {user_id} on project {project_id}");
        let request = assignments::Request::builder()
            .user_id(user_id)
            .scope_project_id(project_id)
            .effective("true")
            .include_names("true")
            .build()
            .map_err(|e| builder_error("listing role assignments", &object(), e))?;
        let found: Vec<Assignment> = request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("listing role assignments", object(), e))?;
        let mut roles: Vec<String> = found
            .into_iter()
            .map(|assignment| assignment.role.name.unwrap_or(assignment.role.id))
            .collect();
        roles.sort();
        roles.dedup();
        Ok(roles)
    }
}
