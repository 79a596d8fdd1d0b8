//! Helpers shared by the CRD test binaries.

#![allow(clippy::unwrap_used, dead_code)]

use serde_json::Value;
use yun_crds::all_crds;

/// The generated CRD named `name` (e.g. `hosts.yun.dev`) as JSON.
pub fn crd_json(name: &str) -> Value {
    let crd = all_crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD {name}"));
    serde_json::to_value(crd).unwrap()
}

/// The CRD's openAPIV3Schema (its only version).
pub fn schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}
