//! `Host`: one bare-metal server (cluster-scoped).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::overcommit::{Overcommit, OvercommitRatios};
use crate::validation::{
    Checker, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN, NameRule, Scope, ValidationErrors,
};

/// Maximum length of `spec.bmc.address`.
pub const BMC_ADDRESS_MAX: usize = 255;

/// CEL rule on the Host root: a host name is an etcd key segment, so it must be a DNS-1123 label
/// (the API server only requires a DNS-1123 subdomain of object names).
pub const HOST_NAME_RULE: &str = "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";

/// A server Yun may place VMs on. Labels (zone, rack, power domain) are `metadata.labels`; the
/// name must be a DNS-1123 label and is the name the host's agent registers under.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "Host",
    shortname = "yh",
    status = "HostStatus",
    derive = "PartialEq",
    doc = "A bare-metal server that runs VMs for Yun.",
    validation = kube::core::Rule::new(HOST_NAME_RULE)
        .message("metadata.name must be a DNS-1123 label of at most 63 characters (it becomes an etcd key segment)")
        .field_path(".metadata.name"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "CPUs", type_ = "integer", json_path = ".status.capacity.cpus"),
    printcolumn(name = "Memory", type_ = "integer", json_path = ".status.capacity.memoryMiB", description = "MiB"),
    printcolumn(name = "VMs", type_ = "integer", json_path = ".status.vms"),
    printcolumn(name = "Agent", type_ = "string", json_path = ".status.agentVersion"),
    printcolumn(name = "Maintenance", type_ = "boolean", json_path = ".spec.maintenance", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// Cordon: when true, no new VM is placed here (running VMs stay).
    #[serde(default)]
    pub unschedulable: bool,
    /// Maintenance mode: cordoned and being drained. No new VM is placed here and the controller
    /// moves away what can move; in this version no VM can move, so running VMs stay and
    /// `status.vms` counts what remains.
    #[serde(default)]
    pub maintenance: bool,
    /// Overcommit ratios for `Burstable` VMs; a ratio left out takes its default (cpu 4.0,
    /// memory 1.0, disk 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Overcommit")]
    pub overcommit: Option<Overcommit>,
    /// Baseboard management controller, used to fence (power off) a host declared dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Bmc")]
    pub bmc: Option<Bmc>,
}

/// How to reach a host's BMC.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bmc {
    /// Host name, IP address or URL of the BMC.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = 1, max = BMC_ADDRESS_MAX))]
    pub address: String,
    /// Name of a Secret (in the controller's namespace) holding the BMC credentials.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub credentials_secret: Option<String>,
}

/// Compute resources of a host.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostResources {
    pub cpus: u32,
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    #[serde(rename = "diskGiB")]
    pub disk_gib: u64,
}

/// What the controller observes about a host (from its agent's records on the fleet bus).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The agent holds its lease and has registered.
    #[serde(default)]
    pub ready: bool,
    /// What the host offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<HostResources>,
    /// What placement has committed to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<HostResources>,
    /// VMs placed on the host.
    #[serde(default)]
    pub vms: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The hypervisor kind the agent resolved: `kvm` or `qemu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virt_type: Option<String>,
    /// RFC 3339 time the controller last saw the agent alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl HostSpec {
    /// Checks the spec the way the CRD schema does; paths start at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    /// The overcommit ratios placement uses for this host (defaults when `overcommit` is absent).
    pub fn overcommit_ratios(&self) -> OvercommitRatios {
        self.overcommit
            .as_ref()
            .map(Overcommit::ratios)
            .unwrap_or_default()
    }

    /// Whether new VMs may be placed here: neither cordoned nor in maintenance.
    pub fn schedulable(&self) -> bool {
        !self.unschedulable && !self.maintenance
    }

    fn check(&self, c: &mut Checker) {
        if let Some(overcommit) = &self.overcommit {
            overcommit.check(c, "spec.overcommit");
        }
        if let Some(bmc) = &self.bmc {
            c.chars("spec.bmc.address", &bmc.address, 1, BMC_ADDRESS_MAX);
            if let Some(secret) = &bmc.credentials_secret {
                c.dns1123_subdomain("spec.bmc.credentialsSecret", secret);
            }
        }
    }
}

impl Host {
    /// Checks metadata (name a DNS-1123 label, no namespace, label syntax) and spec: everything
    /// the API server would check, so bootstrap mode refuses what Kubernetes would refuse.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(&self.metadata, "Host", Scope::Cluster, NameRule::Label);
        self.spec.check(&mut c);
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overcommit::{OVERCOMMIT_CPU_DEFAULT, OVERCOMMIT_DISK_DEFAULT};
    use crate::validation::{DNS1123_LABEL_MAX, DNS1123_LABEL_PATTERN};

    fn host(name: &str, spec: HostSpec) -> Host {
        Host::new(name, spec)
    }

    #[test]
    fn cel_name_rule_spells_out_the_pure_rule() {
        assert!(HOST_NAME_RULE.contains(DNS1123_LABEL_PATTERN));
        assert!(HOST_NAME_RULE.contains(&format!("size() <= {DNS1123_LABEL_MAX}")));
    }

    #[test]
    fn minimal_host_is_valid() {
        assert_eq!(host("rack1-node07", HostSpec::default()).validate(), Ok(()));
    }

    #[test]
    fn host_name_must_be_a_label() {
        let e = host("node.example.com", HostSpec::default())
            .validate()
            .unwrap_err();
        assert!(e.has_path("metadata.name"), "{e}");
        let e = host(&"a".repeat(64), HostSpec::default())
            .validate()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("metadata.name: must be 1 to 63 characters long, got 64"),
            "{e}"
        );
    }

    #[test]
    fn cluster_scoped_host_has_no_namespace() {
        let mut h = host("n1", HostSpec::default());
        h.metadata.namespace = Some("default".into());
        assert!(h.validate().unwrap_err().has_path("metadata.namespace"));
    }

    #[test]
    fn bmc_fields_are_checked_with_all_problems_reported() {
        let spec = HostSpec {
            unschedulable: true,
            bmc: Some(Bmc {
                address: String::new(),
                credentials_secret: Some("Bad_Secret".into()),
            }),
            ..Default::default()
        };
        let e = spec.validate().unwrap_err();
        assert_eq!(e.errors().len(), 2, "{e}");
        assert!(
            e.has_path("spec.bmc.address") && e.has_path("spec.bmc.credentialsSecret"),
            "{e}"
        );
    }

    #[test]
    fn status_wire_names() {
        let s = HostStatus {
            capacity: Some(HostResources {
                cpus: 8,
                memory_mib: 1024,
                disk_gib: 10,
            }),
            agent_version: Some("0.1.0".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["capacity"]["memoryMiB"], 1024);
        assert_eq!(v["capacity"]["diskGiB"], 10);
        assert_eq!(v["agentVersion"], "0.1.0");
    }

    #[test]
    fn maintenance_and_overcommit_default_off_and_absent() {
        let s: HostSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(!s.maintenance && s.overcommit.is_none() && s.schedulable());
        assert_eq!(
            s.overcommit_ratios(),
            OvercommitRatios {
                cpu: 4.0,
                memory: 1.0,
                disk: 1.0
            }
        );
        let partial: HostSpec =
            serde_json::from_value(serde_json::json!({"overcommit": {"memory": 1.5}})).unwrap();
        assert_eq!(
            partial.overcommit_ratios(),
            OvercommitRatios {
                cpu: OVERCOMMIT_CPU_DEFAULT,
                memory: 1.5,
                disk: OVERCOMMIT_DISK_DEFAULT
            }
        );
        assert!(
            !HostSpec {
                maintenance: true,
                ..s.clone()
            }
            .schedulable()
        );
        assert!(
            !HostSpec {
                unschedulable: true,
                ..s
            }
            .schedulable()
        );
    }

    #[test]
    fn host_spec_round_trips_with_wire_names() {
        let s = HostSpec {
            maintenance: true,
            overcommit: Some(Overcommit {
                cpu: Some(8.0),
                memory: None,
                disk: Some(2.5),
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"unschedulable": false, "maintenance": true,
                "overcommit": {"cpu": 8.0, "disk": 2.5}})
        );
        let back: HostSpec = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // Integers are numbers too, as in JSON.
        let int: Overcommit = serde_yaml::from_str("cpu: 2\n").unwrap();
        assert_eq!(int.cpu, Some(2.0));
    }
}
