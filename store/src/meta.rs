//! The bookkeeping the API server does on every write, as pure functions on an object's JSON:
//! uid and creation time minted once, `metadata.generation` bumped only when the spec changes,
//! status kept apart (the status subresource), finalizers and the deletion timestamp.
//!
//! An object here is `{apiVersion, kind, metadata, spec?, status?}`. `resourceVersion` is never
//! stored: it is the etcd revision of the object's key, set on every object the store returns.

use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::kind::KindInfo;

/// The parts of an object outside its spec: what a spec change does not include.
const NOT_SPEC: [&str; 4] = ["apiVersion", "kind", "metadata", "status"];

/// Where an object lives: its namespace (`None` for a cluster-scoped kind) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName {
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, StoreError> {
    obj.as_object_mut()
        .ok_or_else(|| StoreError::invalid("", "an object must be a JSON object"))?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| StoreError::invalid("metadata", "must be an object"))
}

/// `metadata.<field>` as a string, if set.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion").filter(|rv| !rv.is_empty())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Deleting and no finalizer left: the store removes it.
pub fn is_finalized(obj: &Value) -> bool {
    is_deleting(obj) && finalizers(obj).is_empty()
}

/// The uids of the objects that own this one (`metadata.ownerReferences[*].uid`).
pub fn owner_uids(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A copy of `obj` carrying `resource_version`.
pub fn with_resource_version(mut obj: Value, resource_version: i64) -> Value {
    if let Ok(meta) = metadata_mut(&mut obj) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(resource_version.to_string()),
        );
    }
    obj
}

/// What is stored: the object without its resourceVersion (that is the key's revision).
pub fn for_storage(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Ok(meta) = metadata_mut(&mut obj) {
        meta.remove("resourceVersion");
    }
    obj
}

/// Everything but apiVersion, kind, metadata and status.
pub fn spec_part(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !NOT_SPEC.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A DNS-1123 subdomain, as the API server wants of names (and labels of namespaces).
fn check_name(field: &str, value: &str, max: usize) -> Result<(), StoreError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            field,
            format!(
                "{value:?} must be at most {max} lowercase letters, digits, '-' or '.', \
                 starting and ending with a letter or digit"
            ),
        ))
    }
}

/// Checks apiVersion, kind, name and namespace against the kind, and returns where the object
/// lives. A namespaced object must name its namespace; a cluster-scoped one must not.
pub fn object_name(kind: &KindInfo, obj: &Value) -> Result<ObjectName, StoreError> {
    if !obj.is_object() {
        return Err(StoreError::invalid("", "an object must be a JSON object"));
    }
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    if api_version != Some(kind.api_version.as_str()) {
        return Err(StoreError::invalid(
            "apiVersion",
            format!("must be {:?}, got {:?}", kind.api_version, api_version),
        ));
    }
    let got_kind = obj.get("kind").and_then(Value::as_str);
    if got_kind != Some(kind.kind.as_str()) {
        return Err(StoreError::invalid(
            "kind",
            format!("must be {:?}, got {:?}", kind.kind, got_kind),
        ));
    }
    let name = meta_str(obj, "name").unwrap_or_default();
    check_name("metadata.name", name, 253)?;
    let namespace = meta_str(obj, "namespace");
    let namespace = match (kind.namespaced, namespace) {
        (true, Some(ns)) => {
            check_name("metadata.namespace", ns, 63)?;
            Some(ns.to_owned())
        }
        (true, None) => {
            return Err(StoreError::invalid(
                "metadata.namespace",
                format!("{} is namespaced: a namespace is required", kind.kind),
            ));
        }
        (false, Some(_)) => {
            return Err(StoreError::invalid(
                "metadata.namespace",
                format!("{} is cluster-scoped: it has no namespace", kind.kind),
            ));
        }
        (false, None) => None,
    };
    Ok(ObjectName {
        namespace,
        name: name.to_owned(),
    })
}

/// The object as first stored: a new uid, the creation time, generation 1, no status (the
/// status subresource starts empty), not deleting.
pub fn for_create(obj: &Value, uid: &str, now: &str) -> Result<Value, StoreError> {
    if resource_version(obj).is_some() {
        return Err(StoreError::invalid(
            "metadata.resourceVersion",
            "must not be set on an object to be created",
        ));
    }
    let mut obj = obj.clone();
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    let meta = metadata_mut(&mut obj)?;
    meta.insert("uid".into(), Value::String(uid.into()));
    meta.insert("creationTimestamp".into(), Value::String(now.into()));
    meta.insert("generation".into(), Value::from(1));
    for field in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
    ] {
        meta.remove(field);
    }
    Ok(obj)
}

fn generation(obj: &Value) -> i64 {
    metadata(obj)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// Fields the API server owns: a replace cannot change them.
const SYSTEM_FIELDS: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// `current` replaced by `new`'s spec and metadata, keeping what the server owns and the status;
/// the generation goes up when the spec changed. `None` when nothing would change (no write).
pub fn for_replace(current: &Value, new: &Value) -> Result<Option<Value>, StoreError> {
    let mut next = new.clone();
    let current_status = current.get("status").cloned();
    let next_obj = next
        .as_object_mut()
        .ok_or_else(|| StoreError::invalid("", "an object must be a JSON object"))?;
    match current_status {
        Some(status) => next_obj.insert("status".into(), status),
        None => next_obj.remove("status"),
    };
    if is_deleting(current) {
        let held = finalizers(current);
        if let Some(added) = finalizers(new).into_iter().find(|f| !held.contains(f)) {
            return Err(StoreError::invalid(
                "metadata.finalizers",
                format!("cannot add {added:?} to an object that is being deleted"),
            ));
        }
    }
    let spec_changed = spec_part(current) != spec_part(new);
    let meta = metadata_mut(&mut next)?;
    meta.remove("resourceVersion");
    let current_meta = metadata(current);
    for field in SYSTEM_FIELDS {
        match current_meta.and_then(|m| m.get(field)) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if spec_changed {
        meta.insert("generation".into(), Value::from(generation(current) + 1));
    }
    Ok((next != for_storage(current)).then_some(next))
}

/// `current` with `new`'s status and nothing else of it. `None` when the status is the same.
pub fn for_status(current: &Value, new: &Value) -> Result<Option<Value>, StoreError> {
    let mut next = for_storage(current);
    let obj = next
        .as_object_mut()
        .ok_or_else(|| StoreError::invalid("", "an object must be a JSON object"))?;
    match new.get("status") {
        Some(status) if !status.is_null() => obj.insert("status".into(), status.clone()),
        _ => obj.remove("status"),
    };
    Ok((next != for_storage(current)).then_some(next))
}

/// `current` marked for deletion at `now` (kept until its finalizers are removed).
pub fn mark_deleting(current: &Value, now: &str) -> Result<Value, StoreError> {
    let mut next = for_storage(current);
    let meta = metadata_mut(&mut next)?;
    meta.insert("deletionTimestamp".into(), Value::String(now.into()));
    meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
    Ok(next)
}

/// The current time as the API server writes it (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
