//! The store's key table, all under [`STORE_PREFIX`] (outside the fleet bus's `/yun/v1/`, so no
//! agent role reaches it and its own etcd role can be limited to it).
//!
//! ```text
//! /yun/store/v1/objects/<plural>/<namespace>/<name>   the object's JSON (`_` for cluster scope);
//!                                                     its mod_revision is its resourceVersion
//! /yun/store/v1/uids/<uid>                            the object key of uid (owner lookups)
//! /yun/store/v1/owners/<owner uid>/<plural>/<namespace>/<name>
//!                                                     one per owner reference: who to cascade to
//! /yun/store/v1/events/<involved uid>/<reason>.<hash> an Event (count, first/last seen); leased
//! ```

use crate::error::StoreError;
use crate::kind::KindInfo;
use crate::meta::ObjectName;

/// Defined in the fleet contract's key table, beside the prefixes it keeps the store apart from.
pub use yun_fleet::keys::STORE_PREFIX;
pub const OBJECTS_PREFIX: &str = "/yun/store/v1/objects/";
const UIDS_PREFIX: &str = "/yun/store/v1/uids/";
const OWNERS_PREFIX: &str = "/yun/store/v1/owners/";
pub const EVENTS_PREFIX: &str = "/yun/store/v1/events/";
/// The namespace segment of a cluster-scoped object (no namespace may be named `_`).
const CLUSTER: &str = "_";

/// Every object of `kind`, or of `kind` in `namespace`.
pub fn objects_prefix(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| kind.namespaced) {
        Some(ns) => format!("{OBJECTS_PREFIX}{}/{ns}/", kind.plural),
        None => format!("{OBJECTS_PREFIX}{}/", kind.plural),
    }
}

pub fn object_key(kind: &KindInfo, name: &ObjectName) -> String {
    let ns = name.namespace.as_deref().unwrap_or(CLUSTER);
    format!("{OBJECTS_PREFIX}{}/{ns}/{}", kind.plural, name.name)
}

/// `(plural, name)` of an object key.
pub fn parse_object_key(key: &str) -> Result<(String, ObjectName), StoreError> {
    let bad = || StoreError::invalid("", format!("{key:?} is not an object key"));
    let rest = key.strip_prefix(OBJECTS_PREFIX).ok_or_else(bad)?;
    let mut parts = rest.splitn(3, '/');
    let (Some(plural), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok((
        plural.to_owned(),
        ObjectName {
            namespace: (ns != CLUSTER).then(|| ns.to_owned()),
            name: name.to_owned(),
        },
    ))
}

pub fn uid_key(uid: &str) -> String {
    format!("{UIDS_PREFIX}{uid}")
}

/// Every dependent of owner `uid`.
pub fn owner_prefix(uid: &str) -> String {
    format!("{OWNERS_PREFIX}{uid}/")
}

/// The index entry saying `object_key` is owned by `owner_uid`.
pub fn owner_key(owner_uid: &str, object_key: &str) -> String {
    let suffix = object_key
        .strip_prefix(OBJECTS_PREFIX)
        .unwrap_or(object_key);
    format!("{}{suffix}", owner_prefix(owner_uid))
}

/// Every Event about the object with `uid`.
pub fn events_prefix(uid: &str) -> String {
    format!("{EVENTS_PREFIX}{uid}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(namespaced: bool) -> KindInfo {
        KindInfo {
            kind: "Thing".into(),
            api_version: "yun.dev/v1alpha1".into(),
            plural: "things".into(),
            namespaced,
        }
    }

    #[test]
    fn object_keys_round_trip_in_both_scopes() {
        for (namespaced, namespace) in [(true, Some("team-a")), (false, None)] {
            let name = ObjectName {
                namespace: namespace.map(str::to_owned),
                name: "web-1".into(),
            };
            let key = object_key(&kind(namespaced), &name);
            assert!(key.starts_with(&objects_prefix(&kind(namespaced), namespace)));
            assert_eq!(parse_object_key(&key).unwrap(), ("things".into(), name));
        }
        assert!(parse_object_key("/yun/v1/hosts/a/info").is_err());
    }

    #[test]
    fn a_namespace_prefix_never_matches_a_longer_namespace() {
        let a = objects_prefix(&kind(true), Some("a"));
        let ab = object_key(
            &kind(true),
            &ObjectName {
                namespace: Some("ab".into()),
                name: "x".into(),
            },
        );
        assert!(!ab.starts_with(&a));
    }

    #[test]
    fn owner_entries_sit_under_the_owners_prefix() {
        let key = object_key(
            &kind(true),
            &ObjectName {
                namespace: Some("ns".into()),
                name: "child".into(),
            },
        );
        let entry = owner_key("uid-1", &key);
        assert!(entry.starts_with(&owner_prefix("uid-1")));
        assert!(entry.ends_with("things/ns/child"));
    }
}
