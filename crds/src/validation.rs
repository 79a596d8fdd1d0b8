//! Pure validation shared by every kind.
//!
//! Two layers check a Yun object: the CRD schema (enforced by the API server) and the `validate()`
//! methods here (enforced by the controller in bootstrap mode, where manifests are read from files
//! with no API server in front). Both layers are built from the constants in this module, so a
//! bound or pattern is written once; tests in `tests/schema_agreement.rs` check the two agree.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use regex::Regex;
use thiserror::Error;

/// A DNS-1123 label: what Kubernetes requires of namespaces, and Yun of host names (they become
/// etcd key segments) and guest hostnames.
pub const DNS1123_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Maximum length of a DNS-1123 label.
pub const DNS1123_LABEL_MAX: usize = 63;
/// A DNS-1123 subdomain: what Kubernetes requires of most object names.
pub const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Maximum length of a DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Lowercase hex SHA-256.
pub const SHA256_PATTERN: &str = "^[0-9a-f]{64}$";
/// Artifact sources: only `file://` URLs with an absolute path are supported in this version.
pub const FILE_SOURCE_PATTERN: &str = "^file:///";
/// The name part of a label key, and a non-empty label value (Kubernetes label syntax).
pub const LABEL_NAME_PATTERN: &str = "^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$";
/// Maximum length of a label value and of the name part of a label key.
pub const LABEL_NAME_MAX: usize = 63;

static DNS1123_LABEL: LazyLock<Regex> = LazyLock::new(|| compile(DNS1123_LABEL_PATTERN));
static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| compile(DNS1123_SUBDOMAIN_PATTERN));
static SHA256: LazyLock<Regex> = LazyLock::new(|| compile(SHA256_PATTERN));
static FILE_SOURCE: LazyLock<Regex> = LazyLock::new(|| compile(FILE_SOURCE_PATTERN));
static LABEL_NAME: LazyLock<Regex> = LazyLock::new(|| compile(LABEL_NAME_PATTERN));

fn compile(pattern: &'static str) -> Regex {
    // The patterns are constants of this crate (a unit test compiles every one of them), never input.
    Regex::new(pattern).expect("built-in validation pattern compiles")
}

/// One problem with one field, e.g. `spec.cpu: must be between 1 and 256, got 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field from the object root, e.g. `spec.disk.sha256` or `metadata.name`.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one object (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", join_errors(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    /// The individual problems, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether some problem concerns exactly this field path.
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

/// Which rule an object's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// DNS-1123 label, ≤63 (Host: the name becomes an etcd key segment).
    Label,
    /// DNS-1123 subdomain, ≤253 (the Kubernetes default for object names).
    Subdomain,
}

/// Whether a kind lives in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Cluster,
    Namespaced,
}

/// Collects field problems; `finish` turns them into a result.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    errors: Vec<FieldError>,
}

/// Values are echoed in messages; a 32 KiB user-data blob is cut short.
pub(crate) fn shown(value: &str) -> String {
    const MAX_SHOWN: usize = 80;
    if value.chars().count() <= MAX_SHOWN {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_SHOWN).collect();
        format!("{head:?}…")
    }
}

pub(crate) fn is_dns1123_label(value: &str) -> bool {
    value.len() <= DNS1123_LABEL_MAX && DNS1123_LABEL.is_match(value)
}

pub(crate) fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX && DNS1123_SUBDOMAIN.is_match(value)
}

impl Checker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Problems found so far.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    /// Inclusive numeric bound (schema `minimum`/`maximum`). A float NaN is out of every range.
    pub(crate) fn range<T: PartialOrd + fmt::Display>(
        &mut self,
        path: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if !(&min..=&max).contains(&&value) {
            self.push(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    /// Length in characters (schema `minLength`/`maxLength` count Unicode code points).
    pub(crate) fn chars(&mut self, path: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min || n > max {
            if min > 0 && n == 0 {
                self.push(path, "must not be empty");
            } else if min == 0 {
                self.push(
                    path,
                    format!("must be at most {max} characters long, got {n}"),
                );
            } else {
                self.push(
                    path,
                    format!("must be {min} to {max} characters long, got {n}"),
                );
            }
        }
    }

    /// Number of list items (schema `maxItems`).
    pub(crate) fn max_items(&mut self, path: &str, len: usize, max: usize) {
        if len > max {
            self.push(path, format!("must have at most {max} items, got {len}"));
        }
    }

    /// Length in bytes of the UTF-8 encoding (mirrors CEL `size(bytes(self))`).
    pub(crate) fn max_bytes(&mut self, path: &str, value: &str, max: usize) {
        if value.len() > max {
            self.push(
                path,
                format!("must be at most {max} bytes, got {}", value.len()),
            );
        }
    }

    fn pattern(&mut self, path: &str, value: &str, re: &Regex, what: &str) {
        if !re.is_match(value) {
            self.push(
                path,
                format!(
                    "must be {what} (pattern {}), got {}",
                    re.as_str(),
                    shown(value)
                ),
            );
        }
    }

    /// `value` matches `pattern` (one of this crate's schema patterns), described as `what`.
    pub(crate) fn matches(&mut self, path: &str, value: &str, pattern: &'static str, what: &str) {
        match Regex::new(pattern) {
            Ok(re) => self.pattern(path, value, &re, what),
            // A constant of this crate; its unit tests compile every pattern.
            Err(e) => self.push(
                path,
                format!("internal error: pattern {pattern} is invalid: {e}"),
            ),
        }
    }

    pub(crate) fn sha256(&mut self, path: &str, value: &str) {
        self.pattern(path, value, &SHA256, "64 lowercase hex digits");
    }

    pub(crate) fn file_source(&mut self, path: &str, value: &str) {
        self.pattern(
            path,
            value,
            &FILE_SOURCE,
            "a file:/// URL (only file sources are supported)",
        );
    }

    pub(crate) fn dns1123_label(&mut self, path: &str, value: &str) {
        let before = self.errors.len();
        self.chars(path, value, 1, DNS1123_LABEL_MAX);
        if self.errors.len() == before && !value.is_empty() {
            self.pattern(path, value, &DNS1123_LABEL, "a DNS-1123 label");
        }
    }

    pub(crate) fn dns1123_subdomain(&mut self, path: &str, value: &str) {
        let before = self.errors.len();
        self.chars(path, value, 1, DNS1123_SUBDOMAIN_MAX);
        if self.errors.len() == before && !value.is_empty() {
            self.pattern(path, value, &DNS1123_SUBDOMAIN, "a DNS-1123 subdomain");
        }
    }

    /// Kubernetes label syntax: `[prefix/]name`, prefix a DNS-1123 subdomain, name ≤63; value ≤63.
    pub(crate) fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (key, value) in labels {
            let entry = format!("{path}[{key}]");
            let name = match key.split_once('/') {
                Some((prefix, name)) => {
                    self.dns1123_subdomain(&format!("{entry} (key prefix)"), prefix);
                    name
                }
                None => key.as_str(),
            };
            if name.is_empty() || name.len() > LABEL_NAME_MAX || !LABEL_NAME.is_match(name) {
                self.push(
                    entry.clone(),
                    format!(
                        "key name must be 1 to {LABEL_NAME_MAX} characters matching {LABEL_NAME_PATTERN}, got {}",
                        shown(name)
                    ),
                );
            }
            if !value.is_empty() && (value.len() > LABEL_NAME_MAX || !LABEL_NAME.is_match(value)) {
                self.push(
                    entry,
                    format!(
                        "value must be empty or 1 to {LABEL_NAME_MAX} characters matching {LABEL_NAME_PATTERN}, got {}",
                        shown(value)
                    ),
                );
            }
        }
    }

    /// `metadata.name`, `metadata.namespace` and `metadata.labels` as the API server checks them
    /// (plus Yun's stricter name rule for hosts). A missing namespace on a namespaced kind is
    /// allowed: it means `default`.
    pub(crate) fn metadata(
        &mut self,
        meta: &ObjectMeta,
        kind: &str,
        scope: Scope,
        name_rule: NameRule,
    ) {
        match meta.name.as_deref() {
            None | Some("") => self.push("metadata.name", "is required"),
            Some(name) => match name_rule {
                NameRule::Label => self.dns1123_label("metadata.name", name),
                NameRule::Subdomain => self.dns1123_subdomain("metadata.name", name),
            },
        }
        match (scope, meta.namespace.as_deref()) {
            (Scope::Cluster, Some(ns)) => self.push(
                "metadata.namespace",
                format!(
                    "must not be set: {kind} is cluster-scoped, got {}",
                    shown(ns)
                ),
            ),
            (Scope::Namespaced, Some(ns)) => self.dns1123_label("metadata.namespace", ns),
            (_, None) => {}
        }
        if let Some(labels) = &meta.labels {
            self.labels("metadata.labels", labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_pattern_compiles() {
        for p in [
            DNS1123_LABEL_PATTERN,
            DNS1123_SUBDOMAIN_PATTERN,
            SHA256_PATTERN,
            FILE_SOURCE_PATTERN,
            LABEL_NAME_PATTERN,
        ] {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
    }

    fn errors(f: impl FnOnce(&mut Checker)) -> Vec<String> {
        let mut c = Checker::new();
        f(&mut c);
        c.finish()
            .err()
            .map(|e| e.0.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn range_is_inclusive_and_names_bounds_and_value() {
        assert!(errors(|c| c.range("spec.cpu", 1, 1, 256)).is_empty());
        assert!(errors(|c| c.range("spec.cpu", 256, 1, 256)).is_empty());
        assert_eq!(
            errors(|c| c.range("spec.cpu", 0, 1, 256)),
            ["spec.cpu: must be between 1 and 256, got 0"]
        );
        assert_eq!(errors(|c| c.range("spec.cpu", 257, 1, 256)).len(), 1);
    }

    #[test]
    fn dns_names() {
        assert!(errors(|c| c.dns1123_label("x", "web-1")).is_empty());
        assert!(!errors(|c| c.dns1123_label("x", "web.1")).is_empty());
        assert!(!errors(|c| c.dns1123_label("x", "-web")).is_empty());
        assert!(!errors(|c| c.dns1123_label("x", "Web")).is_empty());
        assert!(!errors(|c| c.dns1123_label("x", &"a".repeat(64))).is_empty());
        assert_eq!(
            errors(|c| c.dns1123_label("x", "")),
            ["x: must not be empty"]
        );
        assert!(errors(|c| c.dns1123_subdomain("x", "a.b-c.d")).is_empty());
        assert!(!errors(|c| c.dns1123_subdomain("x", "a..b")).is_empty());
        assert!(!errors(|c| c.dns1123_subdomain("x", &"a".repeat(254))).is_empty());
    }

    #[test]
    fn labels_follow_kubernetes_syntax() {
        let ok: BTreeMap<String, String> = [
            ("zone".to_owned(), "eu-1a".to_owned()),
            ("yun.dev/rack".to_owned(), "r_07.b".to_owned()),
            ("empty".to_owned(), String::new()),
        ]
        .into();
        assert!(errors(|c| c.labels("metadata.labels", &ok)).is_empty());
        let bad: BTreeMap<String, String> = [
            ("Bad Key".to_owned(), "v".to_owned()),
            ("UPPER.example/x".to_owned(), "v".to_owned()),
            ("k".to_owned(), "-v".to_owned()),
        ]
        .into();
        let e = errors(|c| c.labels("metadata.labels", &bad));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("metadata.labels[Bad Key]: key name"),
            "{e:?}"
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let e = errors(|c| c.sha256("spec.disk.sha256", &"z".repeat(1000)));
        assert_eq!(e.len(), 1);
        assert!(e[0].len() < 300, "{}", e[0]);
    }
}
