//! `VirtualMachine`: a VM booted from a `VmImage` (namespaced).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::scheduling::{QosClass, VmScheduling};
use crate::validation::{
    Checker, DNS1123_LABEL_MAX, DNS1123_LABEL_PATTERN, DNS1123_SUBDOMAIN_MAX,
    DNS1123_SUBDOMAIN_PATTERN, NameRule, Scope, ValidationErrors, is_dns1123_label,
    is_dns1123_subdomain,
};

pub const CPU_MIN: u32 = 1;
pub const CPU_MAX: u32 = 256;
pub const MEMORY_MIB_MIN: u64 = 64;
pub const MEMORY_MIB_MAX: u64 = 4 * 1024 * 1024;
pub const DISK_GIB_MIN: u32 = 1;
pub const DISK_GIB_MAX: u32 = 65536;
/// Virtual size of the root overlay when `diskGiB` is not given.
pub const DISK_GIB_DEFAULT: u32 = 2;
/// Cloud-init user data travels in the VM's fleet-bus record; etcd values must stay small.
pub const USER_DATA_MAX_BYTES: usize = 32 * 1024;

/// CEL rule on `spec.userData`: the schema's `maxLength` counts characters, the limit is bytes.
pub const USER_DATA_BYTES_RULE: &str = "size(bytes(self)) <= 32768";
/// CEL rule on the VirtualMachine root: the guest hostname defaults to `metadata.name`, which
/// must then be a DNS-1123 label (object names may be subdomains, hostnames may not).
pub const HOSTNAME_DEFAULT_RULE: &str = "has(self.spec.hostname) || (self.metadata.name.size() <= 63 && !self.metadata.name.contains('.'))";
const HOSTNAME_DEFAULT_MESSAGE: &str =
    "is required when metadata.name is not a DNS-1123 label (the hostname defaults to the name)";

fn default_disk_gib() -> u32 {
    DISK_GIB_DEFAULT
}

/// A virtual machine. The controller places it on a `Host`; that host's agent runs it with
/// libvirt/QEMU from a copy-on-write overlay of the image's disk, seeded with cloud-init data.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "VirtualMachine",
    namespaced,
    shortname = "vm",
    shortname = "yvm",
    status = "VirtualMachineStatus",
    derive = "PartialEq",
    doc = "A virtual machine run by Yun on a bare-metal Host.",
    validation = kube::core::Rule::new(HOSTNAME_DEFAULT_RULE)
        .message("spec.hostname is required when metadata.name is not a DNS-1123 label (the hostname defaults to the name)")
        .field_path(".spec.hostname"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Host", type_ = "string", json_path = ".status.host"),
    printcolumn(name = "CPU", type_ = "integer", json_path = ".spec.cpu"),
    printcolumn(name = "Memory", type_ = "integer", json_path = ".spec.memoryMiB", description = "MiB"),
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "QoS", type_ = "string", json_path = ".spec.scheduling.qosClass", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualMachineSpec {
    /// Name of a VmImage in the same namespace.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub image: String,
    /// Virtual CPUs.
    #[schemars(range(min = CPU_MIN, max = CPU_MAX))]
    pub cpu: u32,
    /// Guest memory in MiB.
    #[serde(rename = "memoryMiB")]
    #[schemars(range(min = MEMORY_MIB_MIN, max = MEMORY_MIB_MAX))]
    pub memory_mib: u64,
    /// Virtual size of the root disk (a copy-on-write overlay on the image) in GiB.
    #[serde(rename = "diskGiB", default = "default_disk_gib")]
    #[schemars(range(min = DISK_GIB_MIN, max = DISK_GIB_MAX))]
    pub disk_gib: u32,
    /// Guest hostname (a DNS-1123 label); defaults to `metadata.name`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(min = 1, max = DNS1123_LABEL_MAX), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub hostname: Option<String>,
    /// Cloud-init user data (e.g. a `#cloud-config` document), at most 32768 bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = USER_DATA_MAX_BYTES))]
    #[x_kube(validation = kube::core::Rule::new(USER_DATA_BYTES_RULE).message("must be at most 32768 bytes"))]
    pub user_data: Option<String>,
    /// `Always` (default) or `Halted`.
    #[serde(default)]
    pub run_strategy: RunStrategy,
    /// Only hosts whose labels include all of these are candidates.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::strict::string_map"
    )]
    pub node_selector: BTreeMap<String, String>,
    /// QoS class, affinity/anti-affinity groups, spreading over failure domains, placement
    /// policy. Omitted: `Burstable`, no constraints, the controller's default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "VmScheduling")]
    pub scheduling: Option<VmScheduling>,
}

// Variant meanings are documented on the enum: per-variant doc comments would turn the schema's
// `enum` into a `oneOf` that kube flattens, losing them anyway.

/// Whether the VM should be running: `Always` keeps it running (restarting it if it stops),
/// `Halted` keeps it stopped (its disk and placement are kept).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunStrategy {
    #[default]
    Always,
    Halted,
}

/// Lifecycle phase of a VM: `Pending` (accepted, not placed), `Preparing` (placed; the host is
/// fetching the image, building the disk and seed), `Starting`, `Running`, `Stopping`, `Stopped`,
/// `Deleting` (being torn down), `Failed` (cannot make progress; see `message`).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmPhase {
    Pending,
    Preparing,
    Starting,
    Running,
    Stopping,
    Stopped,
    Deleting,
    Failed,
}

impl VmPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            VmPhase::Pending => "Pending",
            VmPhase::Preparing => "Preparing",
            VmPhase::Starting => "Starting",
            VmPhase::Running => "Running",
            VmPhase::Stopping => "Stopping",
            VmPhase::Stopped => "Stopped",
            VmPhase::Deleting => "Deleting",
            VmPhase::Failed => "Failed",
        }
    }
}

/// What the controller observes about a VM. Conditions: `Scheduled`, `Running`, `Ready`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VmPhase>,
    /// The Host the VM is placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// libvirt domain UUID.
    #[serde(
        default,
        rename = "domainUUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub domain_uuid: Option<String>,
    /// RFC 3339 time the domain was last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Human-readable detail about the phase (always set when `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl VirtualMachineSpec {
    /// Checks the spec the way the CRD schema (bounds, patterns and CEL rules) does; paths start
    /// at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    fn check(&self, c: &mut Checker) {
        c.dns1123_subdomain("spec.image", &self.image);
        c.range("spec.cpu", self.cpu, CPU_MIN, CPU_MAX);
        c.range(
            "spec.memoryMiB",
            self.memory_mib,
            MEMORY_MIB_MIN,
            MEMORY_MIB_MAX,
        );
        c.range("spec.diskGiB", self.disk_gib, DISK_GIB_MIN, DISK_GIB_MAX);
        if let Some(hostname) = &self.hostname {
            c.dns1123_label("spec.hostname", hostname);
        }
        if let Some(user_data) = &self.user_data {
            // Bytes ≤ 32768 implies characters ≤ 32768, so this also covers the schema's maxLength.
            c.max_bytes("spec.userData", user_data, USER_DATA_MAX_BYTES);
        }
        if let Some(scheduling) = &self.scheduling {
            scheduling.check(c, "spec.scheduling");
        }
    }

    /// The VM's QoS class (`Burstable` when `scheduling` or its `qosClass` is omitted).
    pub fn qos_class(&self) -> QosClass {
        self.scheduling
            .as_ref()
            .map(|s| s.qos_class)
            .unwrap_or_default()
    }
}

impl VirtualMachine {
    /// Checks metadata (name a DNS-1123 subdomain, namespace a DNS-1123 label), the spec, and
    /// that the hostname can default to the name.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(
            &self.metadata,
            "VirtualMachine",
            Scope::Namespaced,
            NameRule::Subdomain,
        );
        self.spec.check(&mut c);
        if let (None, Some(name)) = (&self.spec.hostname, &self.metadata.name) {
            // Only meaningful for a valid name; an invalid one is already reported.
            if is_dns1123_subdomain(name) && !is_dns1123_label(name) {
                c.push("spec.hostname", HOSTNAME_DEFAULT_MESSAGE);
            }
        }
        c.finish()
    }

    /// The guest hostname: `spec.hostname`, or the object name.
    pub fn hostname(&self) -> &str {
        self.spec
            .hostname
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VirtualMachineSpec {
        VirtualMachineSpec {
            image: "yun-test".into(),
            cpu: 1,
            memory_mib: 256,
            disk_gib: 1,
            hostname: None,
            user_data: None,
            run_strategy: RunStrategy::Always,
            node_selector: BTreeMap::new(),
            scheduling: None,
        }
    }

    #[test]
    fn rules_spell_out_the_constants() {
        assert!(USER_DATA_BYTES_RULE.ends_with(&USER_DATA_MAX_BYTES.to_string()));
        assert!(HOSTNAME_DEFAULT_RULE.contains(&format!("size() <= {DNS1123_LABEL_MAX}")));
    }

    #[test]
    fn every_bound_names_its_field() {
        let cases: [(&str, VirtualMachineSpec, &str); 8] = [
            (
                "spec.cpu",
                VirtualMachineSpec { cpu: 0, ..spec() },
                "spec.cpu: must be between 1 and 256, got 0",
            ),
            (
                "spec.cpu",
                VirtualMachineSpec { cpu: 257, ..spec() },
                "spec.cpu: must be between 1 and 256, got 257",
            ),
            (
                "spec.memoryMiB",
                VirtualMachineSpec {
                    memory_mib: 63,
                    ..spec()
                },
                "spec.memoryMiB: must be between 64 and 4194304, got 63",
            ),
            (
                "spec.memoryMiB",
                VirtualMachineSpec {
                    memory_mib: MEMORY_MIB_MAX + 1,
                    ..spec()
                },
                "spec.memoryMiB: must be between 64 and 4194304, got 4194305",
            ),
            (
                "spec.diskGiB",
                VirtualMachineSpec {
                    disk_gib: 0,
                    ..spec()
                },
                "spec.diskGiB: must be between 1 and 65536, got 0",
            ),
            (
                "spec.diskGiB",
                VirtualMachineSpec {
                    disk_gib: 65537,
                    ..spec()
                },
                "spec.diskGiB: must be between 1 and 65536, got 65537",
            ),
            (
                "spec.image",
                VirtualMachineSpec {
                    image: "Bad_Image".into(),
                    ..spec()
                },
                "spec.image: must be a DNS-1123",
            ),
            (
                "spec.userData",
                VirtualMachineSpec {
                    user_data: Some("é".repeat(USER_DATA_MAX_BYTES / 2 + 1)),
                    ..spec()
                },
                "spec.userData: must be at most 32768 bytes, got 32770",
            ),
        ];
        for (path, s, msg) in cases {
            let e = s.validate().unwrap_err();
            assert_eq!(e.errors().len(), 1, "{e}");
            assert!(e.has_path(path), "{e}");
            assert!(e.to_string().starts_with(msg), "{e} !~ {msg}");
        }
        assert_eq!(
            VirtualMachineSpec {
                cpu: 256,
                memory_mib: 64,
                disk_gib: 65536,
                ..spec()
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let e = VirtualMachineSpec {
            cpu: 0,
            memory_mib: 8,
            hostname: Some("a.b".into()),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.errors().len(), 3, "{e}");
    }

    #[test]
    fn hostname_defaults_to_a_label_name() {
        assert_eq!(VirtualMachine::new("web-1", spec()).validate(), Ok(()));
        assert_eq!(VirtualMachine::new("web-1", spec()).hostname(), "web-1");
        let e = VirtualMachine::new("web.prod", spec())
            .validate()
            .unwrap_err();
        assert!(e.has_path("spec.hostname"), "{e}");
        let named = VirtualMachine::new(
            "web.prod",
            VirtualMachineSpec {
                hostname: Some("web".into()),
                ..spec()
            },
        );
        assert_eq!(named.validate(), Ok(()));
        assert_eq!(named.hostname(), "web");
    }

    #[test]
    fn spec_defaults_and_wire_names() {
        let s: VirtualMachineSpec =
            serde_json::from_value(serde_json::json!({"image": "i", "cpu": 1, "memoryMiB": 64}))
                .unwrap();
        assert_eq!(s.disk_gib, DISK_GIB_DEFAULT);
        assert_eq!(s.run_strategy, RunStrategy::Always);
        assert!(s.node_selector.is_empty() && s.hostname.is_none());
        assert_eq!(
            (s.scheduling.as_ref(), s.qos_class()),
            (None, QosClass::Burstable)
        );
        assert!(
            !serde_json::to_value(&s)
                .unwrap()
                .as_object()
                .unwrap()
                .contains_key("scheduling")
        );
        let v = serde_json::to_value(VirtualMachineStatus {
            phase: Some(VmPhase::Running),
            domain_uuid: Some("u".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v["phase"], "Running");
        assert_eq!(v["domainUUID"], "u");
    }

    #[test]
    fn scheduling_is_checked_under_spec_scheduling() {
        use crate::scheduling::{SpreadConstraint, Topology};
        let s = VirtualMachineSpec {
            scheduling: Some(VmScheduling {
                qos_class: QosClass::Guaranteed,
                affinity_group: Some("web".into()),
                anti_affinity_group: Some("web".into()),
                spread: Some(SpreadConstraint {
                    group: "web".into(),
                    topology: Topology::Zone,
                    max_skew: 0,
                }),
                policy: None,
            }),
            ..spec()
        };
        assert_eq!(s.qos_class(), QosClass::Guaranteed);
        let e = s.validate().unwrap_err();
        assert_eq!(e.errors().len(), 2, "{e}");
        assert!(
            e.has_path("spec.scheduling.antiAffinityGroup")
                && e.has_path("spec.scheduling.spread.maxSkew"),
            "{e}"
        );
    }
}
