//! TLS client identity for the fleet bus: a CA bundle to trust etcd by, and this process's
//! certificate and key. etcd (with `--client-cert-auth` and auth enabled) takes the user name
//! from the certificate's CN, so the certificate *is* the credential: its key must be private.

use etcd_client::{Certificate, Identity, TlsOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors loading the TLS files or matching them with the endpoints.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read etcd TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("etcd TLS {what} {path} holds no PEM block")]
    NotPem { what: &'static str, path: PathBuf },
    #[error(
        "etcd client key {path} is readable by group or others (mode {mode:04o}); run chmod 600 on it"
    )]
    KeyReadableByOthers { path: PathBuf, mode: u32 },
    #[error("etcd TLS needs the CA, the certificate and the key together; {missing} is missing")]
    Incomplete { missing: &'static str },
    #[error("etcd endpoint {endpoint} is https:// but no client certificate is configured")]
    HttpsWithoutTls { endpoint: String },
    #[error("a client certificate is configured but etcd endpoint {endpoint} is not https://")]
    TlsWithoutHttps { endpoint: String },
}

/// Paths of the files a fleet-bus client authenticates with (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusTls {
    /// CA certificate(s) etcd's serving certificate must chain to (a bundle during CA rotation).
    pub ca: PathBuf,
    /// This client's certificate; its CN is its etcd user.
    pub cert: PathBuf,
    /// The certificate's private key: must not be readable by group or others.
    pub key: PathBuf,
}

impl BusTls {
    /// TLS from three optional settings (flags, config keys): all three or none (plain).
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<BusTls>, TlsError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(BusTls { ca, cert, key })),
            (ca, cert, _) => Err(TlsError::Incomplete {
                missing: if ca.is_none() {
                    "the CA"
                } else if cert.is_none() {
                    "the certificate"
                } else {
                    "the key"
                },
            }),
        }
    }

    /// Reads the files (refusing a key others can read) into etcd-client's TLS options.
    pub fn load(&self) -> Result<TlsOptions, TlsError> {
        check_key_mode(&self.key)?;
        let ca = read_pem("CA", &self.ca)?;
        let cert = read_pem("certificate", &self.cert)?;
        let key = read_pem("key", &self.key)?;
        Ok(TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key)))
    }
}

/// Every endpoint is https:// exactly when TLS is configured: a plain endpoint would send the
/// bus unencrypted, and an https one without a certificate cannot authenticate.
pub(crate) fn check_endpoints(endpoints: &[String], tls: bool) -> Result<(), TlsError> {
    for e in endpoints {
        let https = e.starts_with("https://");
        if tls && !https {
            return Err(TlsError::TlsWithoutHttps {
                endpoint: e.clone(),
            });
        }
        if !tls && https {
            return Err(TlsError::HttpsWithoutTls {
                endpoint: e.clone(),
            });
        }
    }
    Ok(())
}

fn check_key_mode(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        what: "key",
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyReadableByOthers {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_none() {
        assert_eq!(BusTls::from_parts(None, None, None).unwrap(), None);
        let err = BusTls::from_parts(Some("ca".into()), None, Some("k".into())).unwrap_err();
        assert!(err.to_string().contains("the certificate"), "{err}");
        let err = BusTls::from_parts(Some("ca".into()), Some("c".into()), None).unwrap_err();
        assert!(err.to_string().contains("the key"), "{err}");
    }

    #[test]
    fn key_readable_by_others_is_refused_with_path_and_mode() {
        let dir = std::env::temp_dir().join(format!("yun-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = b"-----BEGIN X-----\nAA==\n-----END X-----\n";
        for f in ["ca.crt", "c.crt", "c.key"] {
            std::fs::write(dir.join(f), pem).unwrap();
        }
        let tls = BusTls {
            ca: dir.join("ca.crt"),
            cert: dir.join("c.crt"),
            key: dir.join("c.key"),
        };
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = tls.load().unwrap_err().to_string();
        assert!(err.contains("c.key") && err.contains("0640"), "{err}");
        std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(tls.load().is_ok());
        std::fs::write(&tls.ca, b"not pem").unwrap();
        let err = tls.load().unwrap_err().to_string();
        assert!(err.contains("ca.crt") && err.contains("PEM"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn endpoint_scheme_must_match_tls() {
        let https = vec!["https://127.0.0.1:2379".to_string()];
        let http = vec!["http://127.0.0.1:2379".to_string()];
        assert!(check_endpoints(&https, true).is_ok());
        assert!(check_endpoints(&http, false).is_ok());
        assert!(matches!(
            check_endpoints(&http, true),
            Err(TlsError::TlsWithoutHttps { .. })
        ));
        assert!(matches!(
            check_endpoints(&https, false),
            Err(TlsError::HttpsWithoutTls { .. })
        ));
    }
}
