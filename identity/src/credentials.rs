//! How a component proves who it is to Keystone, read from a file only its owner can read.
//!
//! The file is TOML, one of two forms:
//!
//! ```toml
//! # An application credential (what every Yun component uses in production).
//! auth_url = "https://keystone.example:5000/v3"
//! application_credential_id = "6d8d..."
//! application_credential_secret = "..."
//! ```
//!
//! ```toml
//! # A user's password, scoped to a project (bootstrap and tests).
//! auth_url = "http://127.0.0.1:5000/v3"
//! username = "admin"
//! password = "..."
//! user_domain = "Default"      # domain *name*; optional, "Default" when left out
//! project = "admin"            # project name
//! project_domain = "Default"   # domain name; optional, "Default" when left out
//! ```

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{IdentityError, Result, Secret};

/// The domain Keystone creates at bootstrap, by name.
pub const DEFAULT_DOMAIN: &str = "Default";

/// Where Keystone is and how to authenticate to it. `Debug` shows no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub auth_url: String,
    pub method: AuthMethod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// An application credential: always scoped to the one project it was made for.
    ApplicationCredential { id: String, secret: Secret },
    /// A user's password with a project scope; domains are given by name.
    Password {
        username: String,
        password: Secret,
        user_domain: String,
        project: String,
        project_domain: String,
    },
}

impl Credentials {
    pub fn application_credential(
        auth_url: impl Into<String>,
        id: impl Into<String>,
        secret: Secret,
    ) -> Self {
        Self {
            auth_url: auth_url.into(),
            method: AuthMethod::ApplicationCredential {
                id: id.into(),
                secret,
            },
        }
    }

    /// A password login scoped to `project`, with user and project in the default domain.
    pub fn password(
        auth_url: impl Into<String>,
        username: impl Into<String>,
        password: Secret,
        project: impl Into<String>,
    ) -> Self {
        Self {
            auth_url: auth_url.into(),
            method: AuthMethod::Password {
                username: username.into(),
                password,
                user_domain: DEFAULT_DOMAIN.to_owned(),
                project: project.into(),
                project_domain: DEFAULT_DOMAIN.to_owned(),
            },
        }
    }

    /// Reads a credentials file (format in the module docs). Refuses a file that group or
    /// others may access in any way, naming the path: the secret must stay with its owner.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let read_error = |source| IdentityError::CredentialsRead {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        // Checked on the open file, so the file read is the file checked.
        let metadata = file.metadata().map_err(read_error)?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::CredentialsExposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        if !metadata.is_file() {
            return Err(invalid(path, "not a regular file".to_owned()));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_error)?;
        Self::parse(&text, path)
    }

    /// Parses the TOML text of a credentials file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let file: CredentialsFile = toml::from_str(text).map_err(|e| {
            // toml's Display quotes the offending line, which may be the secret: report only
            // the message and the line number.
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            invalid(origin, format!("{}{at}", e.message()))
        })?;
        file.into_credentials(origin)
    }

    /// Who these credentials authenticate, for messages: the user name or the credential id.
    pub fn principal(&self) -> String {
        match &self.method {
            AuthMethod::ApplicationCredential { id, .. } => format!("application credential {id}"),
            AuthMethod::Password {
                username,
                user_domain,
                ..
            } => format!("user {username} (domain {user_domain})"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    auth_url: String,
    application_credential_id: Option<String>,
    application_credential_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
    user_domain: Option<String>,
    project: Option<String>,
    project_domain: Option<String>,
}

impl CredentialsFile {
    fn into_credentials(self, origin: &Path) -> Result<Credentials> {
        let app_credential = self.application_credential_id.is_some()
            || self.application_credential_secret.is_some();
        let password = self.username.is_some()
            || self.password.is_some()
            || self.project.is_some()
            || self.user_domain.is_some()
            || self.project_domain.is_some();
        let method = match (app_credential, password) {
            (true, true) => {
                return Err(invalid(
                    origin,
                    "has both application credential and password fields; keep one form".to_owned(),
                ));
            }
            (false, false) => {
                return Err(invalid(
                    origin,
                    "needs application_credential_id and application_credential_secret, or \
                     username, password and project"
                        .to_owned(),
                ));
            }
            (true, false) => AuthMethod::ApplicationCredential {
                id: required(
                    self.application_credential_id,
                    "application_credential_id",
                    origin,
                )?,
                secret: required(
                    self.application_credential_secret,
                    "application_credential_secret",
                    origin,
                )?
                .into(),
            },
            (false, true) => AuthMethod::Password {
                username: required(self.username, "username", origin)?,
                password: required(self.password, "password", origin)?.into(),
                user_domain: self
                    .user_domain
                    .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned()),
                project: required(self.project, "project", origin)?,
                project_domain: self
                    .project_domain
                    .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned()),
            },
        };
        Ok(Credentials {
            auth_url: self.auth_url,
            method,
        })
    }
}

fn required(value: Option<String>, field: &str, origin: &Path) -> Result<String> {
    match value {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(invalid(origin, format!("missing or empty `{field}`"))),
    }
}

fn invalid(path: &Path, detail: String) -> IdentityError {
    IdentityError::CredentialsInvalid {
        path: PathBuf::from(path),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-value-never-shown";

    fn origin() -> &'static Path {
        Path::new("/etc/yun/test.toml")
    }

    #[test]
    fn application_credential_file_parses() {
        let text = format!(
            "auth_url = \"http://k/v3\"\napplication_credential_id = \"abc\"\n\
             application_credential_secret = \"{SECRET}\"\n"
        );
        let credentials = Credentials::parse(&text, origin()).unwrap();
        assert_eq!(
            credentials,
            Credentials::application_credential("http://k/v3", "abc", Secret::new(SECRET))
        );
        assert!(!format!("{credentials:?}").contains(SECRET));
    }

    #[test]
    fn password_file_defaults_domains() {
        let text = format!(
            "auth_url = \"http://k/v3\"\nusername = \"admin\"\npassword = \"{SECRET}\"\n\
             project = \"admin\"\n"
        );
        let credentials = Credentials::parse(&text, origin()).unwrap();
        assert_eq!(
            credentials,
            Credentials::password("http://k/v3", "admin", Secret::new(SECRET), "admin")
        );
    }

    #[test]
    fn mixed_or_incomplete_files_are_refused_without_echoing_the_secret() {
        let mixed = format!(
            "auth_url = \"u\"\nusername = \"a\"\napplication_credential_secret = \"{SECRET}\"\n"
        );
        let incomplete = format!("auth_url = \"u\"\nusername = \"a\"\npassword = \"{SECRET}\"\n");
        // A type error on the secret's own line: toml would quote that line.
        let malformed = format!("auth_url = \"u\"\npassword = [\"{SECRET}\"]\n");
        for (text, expected) in [
            (mixed, "keep one form"),
            (incomplete, "`project`"),
            (malformed, "line 2"),
        ] {
            let message = Credentials::parse(&text, origin()).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("/etc/yun/test.toml"), "{message}");
            assert!(!message.contains(SECRET), "{message}");
        }
    }
}
