//! Fleet-bus records. Every record carries `v` (its schema version) so that a reader can refuse
//! a record from a newer writer with a clear error instead of misreading it.
//!
//! Size budget (design §4): host info ≤1 KiB, a VM record ≤2 KiB *excluding user data*, which
//! the controller caps separately (cloud-init user data is the one large, user-supplied field).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Current schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Upper bound on cloud-init user data carried in a VM record (etcd values should stay small).
pub const MAX_USER_DATA_BYTES: usize = 32 * 1024;

pub(crate) fn v1() -> u32 {
    SCHEMA_VERSION
}

/// Implemented by every record so the codec can check versions generically.
pub trait Versioned {
    fn version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(impl Versioned for $t { fn version(&self) -> u32 { self.v } })*};
}
versioned!(
    HostInfo,
    HostAllocation,
    HostImages,
    VmDesired,
    VmObserved,
    Placement
);

/// `/yun/v1/hosts/<host>/info`: what a host offers, written by its agent under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    #[serde(default = "v1")]
    pub v: u32,
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    /// The hypervisor kind the agent resolved `virt_type` to: `kvm` or `qemu`.
    pub virt_type: String,
    /// RFC 3339 time the agent process started.
    pub started_at: String,
    /// The host's VXLAN tunnel endpoint (agent config `tunnel_address`); hosts without one
    /// carry only VLAN networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_ip: Option<std::net::Ipv4Addr>,
    /// The host's public sealing key (X25519, base64): the controller seals secrets meant only
    /// for this host (a VM's Keystone credential) to it, so etcd never holds them in clear.
    /// `None`: the agent has no key, and VMs that request an identity are not placed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_key: Option<String>,
    /// Where a Prometheus reaches this agent's `/metrics` (`ip:port`; agent config
    /// `metrics_advertise`). `None`: the host is not listed for Prometheus discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// `/yun/v1/hosts/<host>/alloc`: what placement has committed to this host. Written only by the
/// controller in a transaction guarded by this key's `mod_revision`, so two placers can never
/// both commit against the same view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAllocation {
    #[serde(default = "v1")]
    pub v: u32,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub vms: u32,
    /// The part of the totals above held by `Guaranteed` VMs (never overcommitted).
    #[serde(default, skip_serializing_if = "Resources::is_zero")]
    pub guaranteed: Resources,
}

/// `/yun/v1/hosts/<host>/images`: the template files in a host's cache, by sha256, with their
/// size in bytes. Written by the agent when its cache changes (and at every registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostImages {
    #[serde(default = "v1")]
    pub v: u32,
    pub images: BTreeMap<String, u64>,
}

impl HostImages {
    pub fn new(images: BTreeMap<String, u64>) -> HostImages {
        HostImages {
            v: SCHEMA_VERSION,
            images,
        }
    }
}

/// Resources one VM takes from a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
}

impl Default for HostAllocation {
    /// Nothing allocated, at the current schema version (a derived default would write `v: 0`).
    fn default() -> Self {
        HostAllocation {
            v: SCHEMA_VERSION,
            cpus: 0,
            memory_mib: 0,
            disk_gib: 0,
            vms: 0,
            guaranteed: Resources::default(),
        }
    }
}

impl Resources {
    pub fn is_zero(&self) -> bool {
        *self == Resources::default()
    }

    pub fn plus(&self, r: Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_add(r.cpus),
            memory_mib: self.memory_mib.saturating_add(r.memory_mib),
            disk_gib: self.disk_gib.saturating_add(r.disk_gib),
        }
    }

    pub fn minus(&self, r: Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_sub(r.cpus),
            memory_mib: self.memory_mib.saturating_sub(r.memory_mib),
            disk_gib: self.disk_gib.saturating_sub(r.disk_gib),
        }
    }
}

impl HostAllocation {
    /// Totals as one `Resources`.
    pub fn total(&self) -> Resources {
        Resources {
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
        }
    }

    /// The allocation after adding one VM of class `qos`.
    pub fn with(&self, r: Resources, qos: Qos) -> HostAllocation {
        let total = self.total().plus(r);
        HostAllocation {
            v: SCHEMA_VERSION,
            cpus: total.cpus,
            memory_mib: total.memory_mib,
            disk_gib: total.disk_gib,
            vms: self.vms.saturating_add(1),
            guaranteed: match qos {
                Qos::Guaranteed => self.guaranteed.plus(r),
                Qos::Burstable => self.guaranteed,
            },
        }
    }

    /// The allocation after releasing one VM of class `qos`.
    pub fn without(&self, r: Resources, qos: Qos) -> HostAllocation {
        let total = self.total().minus(r);
        HostAllocation {
            v: SCHEMA_VERSION,
            cpus: total.cpus,
            memory_mib: total.memory_mib,
            disk_gib: total.disk_gib,
            vms: self.vms.saturating_sub(1),
            guaranteed: match qos {
                Qos::Guaranteed => self.guaranteed.minus(r),
                Qos::Burstable => self.guaranteed,
            },
        }
    }
}

/// QoS class of a VM. `Guaranteed` resources are backed one to one by the host and never
/// overcommitted; `Burstable` VMs share what is left, multiplied by the host's overcommit ratios.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Qos {
    Guaranteed,
    #[default]
    Burstable,
}

/// A failure-domain level, read from a host label (see [`Topology::label`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    Zone,
    Rack,
    Power,
}

impl Topology {
    pub const ALL: [Topology; 3] = [Topology::Zone, Topology::Rack, Topology::Power];

    /// The host label naming this host's domain at this level.
    pub fn label(self) -> &'static str {
        match self {
            Topology::Zone => "topology.yun.dev/zone",
            Topology::Rack => "topology.yun.dev/rack",
            Topology::Power => "topology.yun.dev/power",
        }
    }
}

/// Members of `group` spread over the domains of `topology`: the member count of any domain may
/// exceed the smallest domain's by at most `max_skew` (as Kubernetes' topology spread).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpreadConstraint {
    pub group: String,
    pub topology: Topology,
    pub max_skew: u32,
}

/// The placement-relevant facts about a VM that must survive a controller restart (they are
/// kept in its `Placement` record so group counts can be rebuilt from etcd alone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scheduling {
    #[serde(default)]
    pub qos: Qos,
    /// Members of one affinity group share a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_group: Option<String>,
    /// Members of one anti-affinity group never share a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<SpreadConstraint>,
}

/// Disk format of a template artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// One file of a template, identified by content: the agent caches by `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `file:///absolute/path` in this version.
    pub source: String,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The template a VM boots from, resolved by the controller from a `VmImage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// `<namespace>/<name>` of the VmImage, for logs and status only.
    pub name: String,
    pub disk: Artifact,
    pub format: DiskFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// Whether the VM should be running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStrategy {
    #[default]
    Always,
    Halted,
}

/// `/yun/v1/hosts/<host>/vms/<uid>`: a VM this host must run, written by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDesired {
    #[serde(default = "v1")]
    pub v: u32,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Bumped by the controller whenever the spec changes; echoed in `VmObserved`.
    pub generation: u64,
    pub resources: Resources,
    pub image: ImageSpec,
    /// Guest hostname (cloud-init `local-hostname`).
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default)]
    pub run_strategy: RunStrategy,
    /// NICs in guest order (empty: no tenant network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<crate::network::NicRecord>,
    /// Security group ids (`namespace/name`) every NIC of the VM is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Volumes to attach, in order; each one's claim was granted to this host first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::volume::VolumeRecord>,
    /// Set while the controller holds the VM back (its volumes are not granted yet): the agent
    /// does not start a VM that is not running, and leaves a running one as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The VM's Keystone application credential, sealed to the host's `seal_key`: the agent
    /// opens it and hands it to the guest through the seed's vendor data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::identity::VmIdentityRecord>,
}

/// The per-VM lifecycle phase, as reported by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    pub const ALL: [VmPhase; 8] = [
        VmPhase::Pending,
        VmPhase::Preparing,
        VmPhase::Starting,
        VmPhase::Running,
        VmPhase::Stopping,
        VmPhase::Stopped,
        VmPhase::Deleting,
        VmPhase::Failed,
    ];

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

/// `/yun/v1/hosts/<host>/report/vms/<uid>`: what the agent observes. The agent deletes it after
/// the VM's domain, overlay and seed are gone; that deletion tells the controller the host's
/// resources may be released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmObserved {
    #[serde(default = "v1")]
    pub v: u32,
    pub uid: String,
    pub phase: VmPhase,
    /// The `VmDesired.generation` this observation is about.
    pub observed_generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_uuid: Option<String>,
    /// RFC 3339 time libvirt reported the domain running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Human-readable reason for the phase (always set for `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time of this observation.
    pub updated_at: String,
    /// The `VmIdentityRecord.generation` whose credential is in the VM's seed: the controller
    /// revokes an older credential only once a newer one is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_generation: Option<u64>,
}

/// `/yun/v1/placements/<uid>`: the one host a VM was placed on (created once, in the placement
/// transaction, and deleted when the VM's resources are released).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default = "v1")]
    pub v: u32,
    pub host: String,
    pub resources: Resources,
    #[serde(default)]
    pub scheduling: Scheduling,
}

/// One status condition, Kubernetes style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionRecord {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

#[cfg(test)]
mod tests {
    use super::HostInfo;

    #[test]
    fn host_info_without_metrics_address_still_parses_and_round_trips() {
        // A record written before `metrics_address` existed.
        let old = r#"{"v":1,"name":"n1","cpus":2,"memory_mib":1024,"disk_gib":10,
            "agent_version":"0.1.0","virt_type":"qemu","started_at":"t"}"#;
        let info: HostInfo = serde_json::from_str(old).unwrap();
        assert_eq!(info.metrics_address, None);
        assert!(
            !serde_json::to_string(&info)
                .unwrap()
                .contains("metrics_address")
        );
        let new = HostInfo {
            metrics_address: Some("10.0.0.7:9464".parse().unwrap()),
            ..info
        };
        let text = serde_json::to_string(&new).unwrap();
        assert!(
            text.contains(r#""metrics_address":"10.0.0.7:9464""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<HostInfo>(&text).unwrap(), new);
    }
}
