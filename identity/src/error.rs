//! The one error type of the identity crate. No variant carries a secret: messages name the
//! operation, the object and what Keystone said, never a password, credential secret or token.

use std::path::PathBuf;

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading credentials file {}: {source}", .path.display())]
    CredentialsRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "credentials file {} is accessible by group or others (mode {mode:03o}); \
         it holds a secret: `chmod 600` it",
        .path.display()
    )]
    CredentialsExposed { path: PathBuf, mode: u32 },

    #[error("credentials file {}: {detail}", .path.display())]
    CredentialsInvalid { path: PathBuf, detail: String },

    #[error("authenticating to {auth_url} as {principal}: {detail}")]
    Authenticate {
        auth_url: String,
        principal: String,
        detail: String,
    },

    /// Keystone refused or failed a request; `status` is the HTTP status when there was one.
    #[error("{operation} {object}: {detail}")]
    Api {
        operation: &'static str,
        object: String,
        status: Option<u16>,
        detail: String,
    },

    #[error("{operation} {object}: not found")]
    NotFound {
        operation: &'static str,
        object: String,
    },

    /// Keystone does not accept the token: unknown, expired, revoked, or its user, project or
    /// credential is gone or disabled.
    #[error("token is not valid: {detail}")]
    TokenInvalid { detail: String },

    #[error(
        "creating application credential {name} for user {user_id}: Keystone lets only the \
         user itself do that, and this connection is user {session_user}"
    )]
    NotOwner {
        name: String,
        user_id: String,
        session_user: String,
    },

    #[error(
        "creating application credential {name}: this connection is scoped to project \
         {session_project}, not {project_id}; an application credential is always for the \
         project of the token that creates it"
    )]
    WrongProject {
        name: String,
        project_id: String,
        session_project: String,
    },

    #[error(
        "creating application credential {name}: user {user_id} holds no role {role} on \
         project {project_id}, and a credential never gets more than its owner has"
    )]
    RoleNotHeld {
        name: String,
        user_id: String,
        project_id: String,
        role: String,
    },
}
