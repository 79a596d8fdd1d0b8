//! Validation of the identifiers that become etcd key segments.
//!
//! A key segment must never contain `/` (it would escape its prefix) and must stay short;
//! host names and VM uids are restricted to DNS-1123 labels (lowercase alphanumerics and `-`).

use thiserror::Error;

/// Why an identifier cannot be used as a key segment.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is longer than {max} characters")]
    TooLong {
        what: &'static str,
        value: String,
        max: usize,
    },
    #[error(
        "{what} {value:?} must consist of lowercase letters, digits and '-', and start and end with a letter or digit"
    )]
    BadChars { what: &'static str, value: String },
}

/// Checks that `value` is a DNS-1123 label of at most `max` characters.
pub fn check_dns_label(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > max {
        return Err(NameError::TooLong {
            what,
            value: value.to_owned(),
            max,
        });
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !value.chars().all(ok_char)
        || !edge_ok(value.chars().next())
        || !edge_ok(value.chars().last())
    {
        return Err(NameError::BadChars {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// A host name usable in keys (DNS-1123 label, ≤63 characters).
pub fn check_host_name(value: &str) -> Result<(), NameError> {
    check_dns_label("host name", value, 63)
}

/// A VM uid usable in keys (Kubernetes uids are lowercase UUIDs, which pass).
pub fn check_vm_uid(value: &str) -> Result<(), NameError> {
    check_dns_label("vm uid", value, 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_and_uuids() {
        assert!(check_host_name("rack1-node07").is_ok());
        assert!(check_vm_uid("0b7c1a2e-6c3f-4d0e-9a51-2f1b3c4d5e6f").is_ok());
    }

    #[test]
    fn rejects_what_could_escape_a_prefix() {
        assert!(matches!(
            check_host_name("a/b"),
            Err(NameError::BadChars { .. })
        ));
        assert!(matches!(check_host_name(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            check_host_name("-a"),
            Err(NameError::BadChars { .. })
        ));
        assert!(matches!(
            check_host_name("Upper"),
            Err(NameError::BadChars { .. })
        ));
        assert!(matches!(
            check_host_name(&"a".repeat(64)),
            Err(NameError::TooLong { .. })
        ));
    }
}
