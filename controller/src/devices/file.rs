//! A device's credentials file: `<devices dir>/<namespace>/<name>.toml`, mode 0600 in a 0700
//! directory, in yun-identity's credentials format, so the device (or its operator) uses it as
//! it is:
//!
//! ```toml
//! auth_url = "https://keystone.example:5000/v3"
//! application_credential_id = "..."
//! application_credential_secret = "..."
//! ```
//!
//! Written atomically (a private temporary file renamed into place), so a reader never sees
//! half a file and the secret is never readable by anyone else, not even for an instant.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use yun_identity::{AuthMethod, Credentials};

use crate::identity::device::DeviceCredential;

/// Why a credentials file could not be written or removed. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFileError {
    #[error("writing device credentials file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing device credentials file {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the credentials file of device `namespace`/`name` goes. Both are DNS names (the
/// manifest parser checked them), so neither can leave `dir`.
pub fn credentials_path(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(namespace).join(format!("{name}.toml"))
}

/// A TOML basic string. A JSON string literal is one: TOML accepts every escape serde_json
/// writes (`\"`, `\\`, `\n`, `\uXXXX`, ...).
fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// The file's text.
pub fn render(credential: &DeviceCredential) -> String {
    format!(
        "# Keystone application credential of a Yun DeviceIdentity; keep it private.\n\
         auth_url = {}\napplication_credential_id = {}\napplication_credential_secret = {}\n",
        toml_string(&credential.auth_url),
        toml_string(&credential.credential_id),
        toml_string(credential.secret.expose()),
    )
}

/// Writes device `namespace`/`name`'s credentials file (replacing any), returns its path.
pub fn write(
    dir: &Path,
    namespace: &str,
    name: &str,
    credential: &DeviceCredential,
) -> Result<PathBuf, DeviceFileError> {
    let path = credentials_path(dir, namespace, name);
    let tmp = dir.join(namespace).join(format!(".{name}.toml.tmp"));
    let failed = |source| DeviceFileError::Write {
        path: path.clone(),
        source,
    };
    let ns_dir = dir.join(namespace);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&ns_dir)
        .map_err(failed)?;
    // An existing directory keeps its mode through `create`: make sure it is private.
    std::fs::set_permissions(&ns_dir, Permissions::from_mode(0o700)).map_err(failed)?;
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(render(credential).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(failed)?;
    Ok(path)
}

/// Whether `path` is a private credentials file for application credential `credential_id`.
/// Anything else (missing, exposed, unreadable, another credential) means it must be written
/// again, with a new credential.
pub fn holds(path: &Path, credential_id: &str) -> bool {
    match Credentials::from_file(path) {
        Ok(Credentials {
            method: AuthMethod::ApplicationCredential { id, .. },
            ..
        }) => id == credential_id,
        _ => false,
    }
}

/// Removes device `namespace`/`name`'s credentials file (and the namespace's directory once it
/// is empty). A file that is not there is fine.
pub fn remove(dir: &Path, namespace: &str, name: &str) -> Result<(), DeviceFileError> {
    let path = credentials_path(dir, namespace, name);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(DeviceFileError::Remove { path, source }),
    }
    // Fails while other devices' files are there, which is what we want.
    let _ = std::fs::remove_dir(dir.join(namespace));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_identity::Secret;

    fn credential(secret: &str) -> DeviceCredential {
        DeviceCredential {
            user_id: "u1".into(),
            credential_id: "cred-1".into(),
            project_id: "p1".into(),
            auth_url: "http://127.0.0.1:5000/v3".into(),
            secret: Secret::new(secret),
        }
    }

    #[test]
    fn the_file_is_private_readable_by_yun_identity_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "s3cr\"et\\with-quotes";
        let path = write(dir.path(), "team-a", "ids", &credential(secret)).unwrap();
        assert_eq!(path, dir.path().join("team-a/ids.toml"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("team-a")), 0o700);
        let read = Credentials::from_file(&path).unwrap();
        assert_eq!(
            read,
            Credentials::application_credential(
                "http://127.0.0.1:5000/v3",
                "cred-1",
                Secret::new(secret)
            )
        );
        assert!(holds(&path, "cred-1"));
        assert!(!holds(&path, "cred-2"));
        // Rewritten in place; a file others may read is not trusted.
        write(dir.path(), "team-a", "ids", &credential("other")).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        assert!(!holds(&path, "cred-1"));
        remove(dir.path(), "team-a", "ids").unwrap();
        assert!(!path.exists());
        assert!(!dir.path().join("team-a").exists());
        remove(dir.path(), "team-a", "ids").unwrap();
    }
}
