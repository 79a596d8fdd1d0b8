//! `VirtualMachine.spec.volumes`: the Volumes (same namespace) attached to a VM, in guest order
//! after its root disk.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{Checker, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN, shown};

/// Maximum number of volumes of a VM (virtio disks `vdb` … `vdq`).
pub const VOLUMES_MAX: usize = 16;
/// CEL rule on `spec.volumes`: a volume is attached once.
pub const UNIQUE_VOLUMES_RULE: &str = "self.all(a, self.exists_one(b, b.volume == a.volume))";
pub(crate) const UNIQUE_VOLUMES_MESSAGE: &str = "must not name a volume twice";

/// One Volume attached to the VM.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeAttachment {
    /// Name of a Volume in the same namespace.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub volume: String,
    /// Attach read-only (required for a `ReadOnlyMany` volume).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Checks `spec.volumes` the way the CRD schema and its CEL rule do.
pub(crate) fn check_volumes(c: &mut Checker, volumes: &[VolumeAttachment]) {
    c.max_items("spec.volumes", volumes.len(), VOLUMES_MAX);
    let mut seen = std::collections::BTreeMap::<&str, Vec<usize>>::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}].volume");
        let before = c.error_count();
        c.dns1123_subdomain(&path, &v.volume);
        if c.error_count() == before {
            seen.entry(v.volume.as_str()).or_default().push(i);
        }
    }
    let twice: Vec<String> = seen
        .into_iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(name, at)| format!("{} at {at:?}", shown(name)))
        .collect();
    if !twice.is_empty() {
        c.push(
            "spec.volumes",
            format!("{UNIQUE_VOLUMES_MESSAGE}: {}", twice.join(", ")),
        );
    }
}
