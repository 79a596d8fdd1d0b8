//! Tenants are Keystone projects: looking them up, and (for bootstrap and tests) creating and
//! disabling them.

use std::borrow::Cow;

use openstack_sdk::api::identity::v3::domain::find as find_domain;
use openstack_sdk::api::identity::v3::project::{create, find, list, set};
use openstack_sdk::api::{QueryAsync, find};
use serde::Deserialize;

use crate::client::api_error;
use crate::{IdentityError, Keystone, Result};

/// A Keystone project, as the controller needs it before placing anything for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub domain_id: String,
}

impl Keystone {
    /// The project with this id, or else this name; `None` when there is none. A name used
    /// in several domains is an error rather than a guess.
    pub async fn project(&self, name_or_id: &str) -> Result<Option<Project>> {
        let request = find::Request::builder()
            .id(Cow::Borrowed(name_or_id))
            .build()
            .map_err(|e| builder_error("looking up project", name_or_id, e))?;
        match find(request).query_async(&self.session).await {
            Ok(project) => Ok(Some(project)),
            Err(err) => match api_error("looking up project", name_or_id, err) {
                IdentityError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The project named `name` in domain `domain_id` (never a domain itself); `None` when
    /// there is none. Unlike [`Keystone::project`], a name can never be mistaken for an id:
    /// a tenant called `default` is not the `default` domain.
    pub async fn project_named(&self, name: &str, domain_id: &str) -> Result<Option<Project>> {
        let request = list::Request::builder()
            .name(name)
            .domain_id(domain_id)
            .build()
            .map_err(|e| builder_error("looking up project", name, e))?;
        let found: Vec<Project> = request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("looking up project", name, e))?;
        Ok(found.into_iter().find(|p| p.name == name))
    }

    /// The id of the domain with this name (or id); `None` when there is none.
    pub async fn domain_id(&self, name_or_id: &str) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct Domain {
            id: String,
        }
        let request = find_domain::Request::builder()
            .id(Cow::Borrowed(name_or_id))
            .build()
            .map_err(|e| builder_error("looking up domain", name_or_id, e))?;
        let found: std::result::Result<Domain, _> = find(request).query_async(&self.session).await;
        match found {
            Ok(domain) => Ok(Some(domain.id)),
            Err(err) => match api_error("looking up domain", name_or_id, err) {
                IdentityError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Creates an enabled project `name` in `domain_id` (e.g. `default`). Needs an admin.
    pub async fn create_project(&self, name: &str, domain_id: &str) -> Result<Project> {
        let project = create::ProjectBuilder::default()
            .name(name)
            .domain_id(Some(Cow::Borrowed(domain_id)))
            .enabled(true)
            .build()
            .map_err(|e| builder_error("creating project", name, e))?;
        let request = create::Request::builder()
            .project(project)
            .build()
            .map_err(|e| builder_error("creating project", name, e))?;
        request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("creating project", name, e))
    }

    /// Enables or disables a project; tokens scoped to a disabled project stop validating.
    /// Needs an admin.
    pub async fn set_project_enabled(&self, project_id: &str, enabled: bool) -> Result<Project> {
        let project = set::ProjectBuilder::default()
            .enabled(enabled)
            .build()
            .map_err(|e| builder_error("updating project", project_id, e))?;
        let request = set::Request::builder()
            .id(project_id)
            .project(project)
            .build()
            .map_err(|e| builder_error("updating project", project_id, e))?;
        request
            .query_async(&self.session)
            .await
            .map_err(|e| api_error("updating project", project_id, e))
    }
}

/// A request the SDK's builder refused: a bug on our side, reported like an API error.
pub(crate) fn builder_error(
    operation: &'static str,
    object: &str,
    err: impl std::fmt::Display,
) -> IdentityError {
    IdentityError::Api {
        operation,
        object: object.to_owned(),
        status: None,
        detail: format!("building the request: {err}"),
    }
}
