//! CHAP credentials of iSCSI Volumes from Kubernetes Secrets (`spec.iscsi.chap.secretRef`).
//!
//! Secrets are read one by one with `get` (never listed or watched: the controller needs to
//! see only the Secrets a Volume names, not every Secret of the cluster) and kept for a short
//! time, so the VM resync does not read the same Secret every few seconds. A changed password
//! reaches the hosts within [`FOUND_TTL`].

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use yun_fleet::{ChapRecord, Secret as Password};

/// How long a Secret that was read stays cached.
pub const FOUND_TTL: Duration = Duration::from_secs(30);
/// How long a failed read (missing Secret, missing key) stays cached: short, so that creating
/// the Secret unblocks the VM quickly.
pub const FAILED_TTL: Duration = Duration::from_secs(3);
/// The Secret keys (the same as Kubernetes' `kubernetes.io/basic-auth` type).
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
/// Longest user name or password accepted (libvirt and QEMU take far less in practice).
const MAX_LEN: usize = 255;

type Key = (String, String);
/// Credentials, or why the Secret cannot be used.
pub type ChapResult = Result<ChapRecord, String>;

/// The cache of resolved credentials, keyed by `(namespace, name)` of the Secret.
#[derive(Default)]
pub struct ChapSecrets {
    cache: Mutex<HashMap<Key, (Instant, ChapResult)>>,
}

impl std::fmt::Debug for ChapSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("ChapSecrets").field("cached", &n).finish()
    }
}

impl ChapSecrets {
    /// The credentials in the Secret `namespace/name`, or why they cannot be used (the error
    /// names the Secret and the key, never a value).
    pub async fn get(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<ChapRecord, String> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some((at, cached)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            let ttl = if cached.is_ok() {
                FOUND_TTL
            } else {
                FAILED_TTL
            };
            if at.elapsed() < ttl {
                return cached.clone();
            }
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let read = match api.get_opt(name).await {
            Ok(Some(secret)) => chap_from_secret(namespace, name, &secret),
            Ok(None) => Err(format!("Secret {namespace}/{name} does not exist")),
            // Not cached: an API hiccup must not pin the error for the TTL.
            Err(e) => return Err(format!("reading Secret {namespace}/{name}: {e}")),
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (Instant::now(), read.clone()));
        read
    }
}

/// The CHAP credentials a Secret holds under `username` and `password`.
pub fn chap_from_secret(
    namespace: &str,
    name: &str,
    secret: &Secret,
) -> Result<ChapRecord, String> {
    let value = |key: &str| -> Result<String, String> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| format!("Secret {namespace}/{name}: key {key:?} is missing"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("Secret {namespace}/{name}: key {key:?} is not UTF-8"))?;
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(format!(
                "Secret {namespace}/{name}: key {key:?} must hold 1 to {MAX_LEN} bytes"
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(format!(
                "Secret {namespace}/{name}: key {key:?} contains a control character (a trailing newline?)"
            ));
        }
        Ok(text)
    };
    Ok(ChapRecord::Inline {
        username: value(USERNAME_KEY)?,
        password: Password(value(PASSWORD_KEY)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn username_and_password_become_inline_credentials() {
        let rec = chap_from_secret(
            "t",
            "chap",
            &secret(&[("username", b"alice"), ("password", b"s3cret-pw")]),
        )
        .unwrap();
        match &rec {
            ChapRecord::Inline { username, password } => {
                assert_eq!(username, "alice");
                assert_eq!(password.0, "s3cret-pw");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{rec:?}").contains("s3cret-pw"));
    }

    #[test]
    fn bad_secrets_name_the_key_and_never_the_value() {
        let missing = chap_from_secret("t", "chap", &secret(&[("username", b"alice")]));
        assert_eq!(
            missing.unwrap_err(),
            "Secret t/chap: key \"password\" is missing"
        );
        let newline = chap_from_secret(
            "t",
            "chap",
            &secret(&[("username", b"alice"), ("password", b"hunter2\n")]),
        )
        .unwrap_err();
        assert!(
            newline.contains("\"password\" contains a control character"),
            "{newline}"
        );
        assert!(!newline.contains("hunter2"), "{newline}");
        let empty = chap_from_secret(
            "t",
            "chap",
            &secret(&[("username", b""), ("password", b"x")]),
        )
        .unwrap_err();
        assert!(
            empty.contains("\"username\" must hold 1 to 255 bytes"),
            "{empty}"
        );
        let binary = chap_from_secret(
            "t",
            "chap",
            &secret(&[("username", b"a"), ("password", &[0xff, 0xfe])]),
        )
        .unwrap_err();
        assert!(binary.contains("not UTF-8"), "{binary}");
    }
}
