//! Apply: make a stored object match what a user declared (a manifest file, `yunctl apply`),
//! creating it when absent. The declaration owns spec, labels and annotations; everything else
//! of the stored object (uid, status, finalizers, owner references) is kept.

use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::etcd::EtcdStore;
use crate::kind::KindInfo;
use crate::meta;

/// Conflicts retried before giving up (each retry re-reads the object).
const APPLY_ATTEMPTS: usize = 5;

/// What an apply did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Created(Value),
    Configured(Value),
    Unchanged(Value),
}

impl Applied {
    pub fn object(&self) -> &Value {
        match self {
            Applied::Created(v) | Applied::Configured(v) | Applied::Unchanged(v) => v,
        }
    }

    /// `created`, `configured` or `unchanged`, as kubectl prints it.
    pub fn verb(&self) -> &'static str {
        match self {
            Applied::Created(_) => "created",
            Applied::Configured(_) => "configured",
            Applied::Unchanged(_) => "unchanged",
        }
    }
}

/// The metadata fields a declaration owns.
const DECLARED_METADATA: [&str; 2] = ["labels", "annotations"];

/// `stored` with `declared`'s spec, labels and annotations.
pub fn merge_declared(stored: &Value, declared: &Value) -> Value {
    let mut next: Map<String, Value> = stored
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    next.extend(meta::spec_part(declared));
    let declared_meta = declared.get("metadata").and_then(Value::as_object);
    if let Some(Value::Object(m)) = next.get_mut("metadata") {
        for field in DECLARED_METADATA {
            match declared_meta.and_then(|d| d.get(field)) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
    }
    Value::Object(next)
}

impl EtcdStore {
    /// Creates `declared`, or makes the stored object match it (guarded by the revision read
    /// just before; a conflict re-reads and tries again).
    pub async fn apply_raw(
        &self,
        kind: &KindInfo,
        declared: &Value,
    ) -> Result<Applied, StoreError> {
        let name = meta::object_name(kind, declared)?;
        let mut last_conflict = None;
        for _ in 0..APPLY_ATTEMPTS {
            let Some(stored) = self.get_raw(kind, &name).await? else {
                let mut fresh = declared.clone();
                if let Some(Value::Object(m)) = fresh.get_mut("metadata") {
                    for field in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
                        m.remove(field);
                    }
                }
                match self.create_raw(kind, &fresh).await {
                    Ok(created) => return Ok(Applied::Created(created)),
                    Err(e @ StoreError::AlreadyExists { .. }) => {
                        last_conflict = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            let next = merge_declared(&stored, declared);
            match self.replace_raw(kind, &next).await {
                Ok(written)
                    if meta::resource_version(&written) == meta::resource_version(&stored) =>
                {
                    return Ok(Applied::Unchanged(written));
                }
                Ok(written) => return Ok(Applied::Configured(written)),
                Err(e) if e.is_conflict() => last_conflict = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_conflict.unwrap_or_else(|| StoreError::invalid("", "apply did not converge")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_declaration_owns_spec_labels_and_annotations_only() {
        let stored = json!({
            "apiVersion": "yun.dev/v1alpha1", "kind": "VirtualMachine",
            "metadata": {"name": "a", "namespace": "d", "uid": "u", "resourceVersion": "7",
                         "labels": {"old": "x"}, "finalizers": ["yun.dev/vm-cleanup"]},
            "spec": {"cpu": 1, "image": "i"},
            "status": {"phase": "Running"}
        });
        let declared = json!({
            "apiVersion": "yun.dev/v1alpha1", "kind": "VirtualMachine",
            "metadata": {"name": "a", "namespace": "d", "annotations": {"note": "y"}},
            "spec": {"cpu": 2, "image": "i"},
            "status": {"phase": "Failed"}
        });
        let next = merge_declared(&stored, &declared);
        assert_eq!(next["spec"]["cpu"], 2);
        assert_eq!(next["status"]["phase"], "Running");
        assert_eq!(next["metadata"]["uid"], "u");
        assert_eq!(
            next["metadata"]["resourceVersion"], "7",
            "the guard is the stored revision"
        );
        assert_eq!(next["metadata"]["finalizers"][0], "yun.dev/vm-cleanup");
        assert!(
            next["metadata"].get("labels").is_none(),
            "labels follow the declaration"
        );
        assert_eq!(next["metadata"]["annotations"]["note"], "y");
    }
}
