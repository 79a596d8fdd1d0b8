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
use crate::vm_identity::{VmIdentityRequest, check_identity};
use crate::vm_network::{
    NETWORKS_MAX, NetworkAttachment, SECURITY_GROUPS_MAX, UNIQUE_NETWORKS_MESSAGE,
    UNIQUE_NETWORKS_RULE, UNIQUE_SECURITY_GROUPS_MESSAGE, UNIQUE_SECURITY_GROUPS_RULE,
    VmInterfaceStatus, check_networks, check_security_groups,
};
use crate::vm_volume::{
    UNIQUE_VOLUMES_MESSAGE, UNIQUE_VOLUMES_RULE, VOLUMES_MAX, VolumeAttachment, check_volumes,
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
    /// Network interfaces in guest order (the first is the guest's first NIC), each on a Network
    /// in the same namespace, at most one per network; at most 8. IPv4 only in this version.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::null_as_empty"
    )]
    #[schemars(length(max = NETWORKS_MAX))]
    #[x_kube(validation = kube::core::Rule::new(UNIQUE_NETWORKS_RULE).message(UNIQUE_NETWORKS_MESSAGE))]
    pub networks: Vec<NetworkAttachment>,
    /// Names of SecurityGroups in the same namespace, each at most once; at most 16. The union of
    /// their rules filters every interface of the VM.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::string_list"
    )]
    #[schemars(
        length(max = SECURITY_GROUPS_MAX),
        inner(length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))
    )]
    #[x_kube(validation = kube::core::Rule::new(UNIQUE_SECURITY_GROUPS_RULE).message(UNIQUE_SECURITY_GROUPS_MESSAGE))]
    pub security_groups: Vec<String>,
    /// Volumes in the same namespace, each at most once; at most 16. They appear in the guest
    /// after the root disk, in this order, as virtio disks with serial `yun-<volume uid prefix>`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::null_as_empty"
    )]
    #[schemars(length(max = VOLUMES_MAX))]
    #[x_kube(validation = kube::core::Rule::new(UNIQUE_VOLUMES_RULE).message(UNIQUE_VOLUMES_MESSAGE))]
    pub volumes: Vec<VolumeAttachment>,
    /// A Keystone identity for the guest: an application credential on the VM's project with
    /// these roles, delivered as `/etc/openstack/clouds.yaml` (cloud `yun`), rotated, and
    /// revoked when the VM is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<VmIdentityRequest>,
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
    /// The interfaces as assigned, in `spec.networks` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<VmInterfaceStatus>,
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
        check_networks(c, &self.networks);
        check_security_groups(c, &self.security_groups);
        check_volumes(c, &self.volumes);
        if let Some(identity) = &self.identity {
            check_identity(c, identity);
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
mod tests;
