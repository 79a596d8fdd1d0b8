//! Where yunctl connects and which namespace it works in: the config file, overridden by flags.
//!
//! ```yaml
//! endpoints: [https://10.0.0.1:2379]
//! ca: /etc/yun/pki/ca.pem          # relative paths are relative to this file
//! cert: /etc/yun/pki/yunctl.pem
//! key: /etc/yun/pki/yunctl-key.pem
//! namespace: team-a
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use yun_fleet_etcd::BusTls;

use crate::cli::GlobalArgs;
use crate::error::CtlError;

/// Where etcd is when neither the config file nor a flag says.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
pub const DEFAULT_NAMESPACE: &str = "default";

/// The config file as written; every key is optional, unknown keys are refused (a typo would
/// otherwise silently fall back to a default).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub endpoints: Option<Vec<String>>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub namespace: Option<String>,
}

/// What a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoints: Vec<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub namespace: String,
    /// Whether `-n` was given: then a manifest naming another namespace is refused, as kubectl does.
    pub namespace_from_flag: bool,
}

impl Settings {
    /// TLS when the CA, certificate and key are all set (refused when only some are).
    pub fn tls(&self) -> Result<Option<BusTls>, CtlError> {
        Ok(BusTls::from_parts(
            self.ca.clone(),
            self.cert.clone(),
            self.key.clone(),
        )?)
    }
}

/// The config file to read: `--config`/`$YUNCTL_CONFIG` (which must exist), else
/// `$HOME/.yun/yunctl.yaml` (which may not).
pub fn config_path(flag: Option<&Path>, home: Option<&Path>) -> Option<(PathBuf, bool)> {
    match flag {
        Some(path) => Some((path.to_owned(), true)),
        None => home.map(|h| (h.join(".yun").join("yunctl.yaml"), false)),
    }
}

/// Reads the config file; a missing default file is an empty config.
pub fn load(path: &Path, required: bool) -> Result<ConfigFile, CtlError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(ConfigFile::default())
        }
        Err(cause) => Err(CtlError::Read {
            path: path.to_owned(),
            cause,
        }),
    }
}

/// Parses the file's text; relative certificate paths become relative to the file's directory.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, CtlError> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    // serde_yaml's message starts with the key at fault (`endpoints: invalid type: ...`).
    let mut file: ConfigFile = serde_yaml::from_str(text).map_err(|e| CtlError::Config {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    for p in [&mut file.ca, &mut file.cert, &mut file.key]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    Ok(file)
}

/// Flags over the file over the defaults.
pub fn merge(file: ConfigFile, flags: &GlobalArgs) -> Settings {
    let endpoints = if !flags.etcd_endpoints.is_empty() {
        flags.etcd_endpoints.clone()
    } else {
        file.endpoints
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_owned()])
    };
    Settings {
        endpoints,
        ca: flags.etcd_ca.clone().or(file.ca),
        cert: flags.etcd_cert.clone().or(file.cert),
        key: flags.etcd_key.clone().or(file.key),
        namespace: flags
            .namespace
            .clone()
            .or(file.namespace)
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        namespace_from_flag: flags.namespace.is_some(),
    }
}

/// The settings for this invocation.
pub fn settings(flags: &GlobalArgs) -> Result<Settings, CtlError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = match config_path(flags.config.as_deref(), home.as_deref()) {
        Some((path, required)) => load(&path, required)?,
        None => ConfigFile::default(),
    };
    Ok(merge(file, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_and_no_flags_mean_local_etcd_and_the_default_namespace() {
        let s = merge(ConfigFile::default(), &GlobalArgs::default());
        assert_eq!(s.endpoints, [DEFAULT_ENDPOINT]);
        assert_eq!(s.namespace, "default");
        assert!(!s.namespace_from_flag);
        assert_eq!(s.tls().unwrap(), None);
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let file = parse(
            Path::new("/etc/yun/yunctl.yaml"),
            "endpoints: [https://a:2379]\nca: pki/ca.pem\ncert: /abs/c.pem\nkey: k.pem\nnamespace: team-a\n",
        )
        .unwrap();
        assert_eq!(file.ca.as_deref(), Some(Path::new("/etc/yun/pki/ca.pem")));
        assert_eq!(file.cert.as_deref(), Some(Path::new("/abs/c.pem")));
        let flags = GlobalArgs {
            etcd_endpoints: vec!["https://b:2379".into()],
            etcd_key: Some("/flag/k.pem".into()),
            ..GlobalArgs::default()
        };
        let s = merge(file.clone(), &flags);
        assert_eq!(s.endpoints, ["https://b:2379"]);
        assert_eq!(s.key.as_deref(), Some(Path::new("/flag/k.pem")));
        assert_eq!(s.ca, file.ca);
        assert_eq!(s.namespace, "team-a");
        let s = merge(
            file,
            &GlobalArgs {
                namespace: Some("team-b".into()),
                ..GlobalArgs::default()
            },
        );
        assert_eq!(
            (s.namespace.as_str(), s.namespace_from_flag),
            ("team-b", true)
        );
    }

    #[test]
    fn a_bad_file_is_one_error_naming_the_file_and_the_key() {
        let e = parse(Path::new("/x/y.yaml"), "endpoints: 5\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("config file /x/y.yaml: endpoints:"),
            "{msg}"
        );
        let e = parse(Path::new("/x/y.yaml"), "endpoint: [a]\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `endpoint`"), "{e}");
        assert_eq!(parse(Path::new("/x"), "\n").unwrap(), ConfigFile::default());
    }

    #[test]
    fn only_an_explicit_config_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.yaml");
        assert_eq!(load(&missing, false).unwrap(), ConfigFile::default());
        assert!(load(&missing, true).is_err());
        assert_eq!(
            config_path(None, Some(Path::new("/home/u"))),
            Some((PathBuf::from("/home/u/.yun/yunctl.yaml"), false))
        );
        assert_eq!(
            config_path(Some(Path::new("c.yaml")), Some(Path::new("/home/u"))),
            Some((PathBuf::from("c.yaml"), true))
        );
    }

    #[test]
    fn half_a_tls_setup_is_refused() {
        let s = merge(
            ConfigFile {
                ca: Some("ca.pem".into()),
                ..ConfigFile::default()
            },
            &GlobalArgs::default(),
        );
        assert!(s.tls().is_err());
    }
}
