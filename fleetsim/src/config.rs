//! What to simulate: how many hosts, how they are named and labelled, what they offer, and how
//! they talk to etcd.

use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;
use yun_fleet::names::{NameError, check_host_name};
use yun_fleet::{Resources, Topology};

/// Label every simulated host carries, so tools can tell simulated hosts from real ones.
pub const SIM_LABEL: &str = "yun.dev/sim";

/// How hosts are laid out over failure domains. Racks are runs of `rack_size` consecutive hosts;
/// racks are dealt round-robin over the zones; within a zone, racks are dealt round-robin over
/// its `power_domains_per_zone` power domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologyConfig {
    pub zones: u32,
    pub rack_size: u32,
    pub power_domains_per_zone: u32,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            zones: 3,
            rack_size: 40,
            power_domains_per_zone: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub etcd_endpoints: Vec<String>,
    pub hosts: u32,
    /// Host `i` is named `<prefix>-<i>`, `i` zero-padded to at least 5 digits (`sim-00042`).
    pub prefix: String,
    pub lease_ttl_secs: i64,
    /// How long the fake hypervisor takes to start (or stop) a VM.
    pub boot_delay: Duration,
    /// etcd connections shared round-robin by the hosts; `None`: one per 1,000 hosts.
    pub connections: Option<u32>,
    /// Sessions that may be registering at once (lease grant, info put, list, watch): bounds
    /// the burst at start and after a heal.
    pub register_concurrency: usize,
    /// How long `SimFleet::start` waits for every host to register.
    pub ready_timeout: Duration,
    /// What each host offers.
    pub capacity: Resources,
    pub topology: TopologyConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            hosts: 1000,
            prefix: "sim".into(),
            lease_ttl_secs: 10,
            boot_delay: Duration::from_secs(2),
            connections: None,
            register_concurrency: 16,
            ready_timeout: Duration::from_secs(600),
            capacity: Resources {
                cpus: 64,
                memory_mib: 256 * 1024,
                disk_gib: 2000,
            },
            topology: TopologyConfig::default(),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("at least one etcd endpoint is required")]
    NoEndpoints,
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("lease TTL {0} s is outside 1..=3600")]
    LeaseTtl(i64),
    #[error("host name prefix {prefix:?} does not give valid host names: {source}")]
    Prefix { prefix: String, source: NameError },
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        let counts = [
            ("hosts", self.hosts),
            ("connections", self.connections.unwrap_or(1)),
            ("zones", self.topology.zones),
            ("rack size", self.topology.rack_size),
            (
                "power domains per zone",
                self.topology.power_domains_per_zone,
            ),
            (
                "register concurrency",
                u32::from(self.register_concurrency > 0),
            ),
        ];
        if let Some((field, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::Zero { field });
        }
        if !(1..=3600).contains(&self.lease_ttl_secs) {
            return Err(ConfigError::LeaseTtl(self.lease_ttl_secs));
        }
        // The longest name is the last one; the first catches a bad leading character.
        for index in [0, self.hosts - 1] {
            check_host_name(&self.host_name(index)).map_err(|source| ConfigError::Prefix {
                prefix: self.prefix.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The number of etcd connections the hosts share.
    pub fn connection_count(&self) -> u32 {
        self.connections
            .unwrap_or_else(|| self.hosts.div_ceil(1000))
            .clamp(1, self.hosts.max(1))
    }

    pub fn host_name(&self, index: u32) -> String {
        let width = self.hosts.saturating_sub(1).to_string().len().max(5);
        format!("{}-{index:0width$}", self.prefix)
    }

    /// The labels host `index` registers with: its zone, rack and power domain, and [`SIM_LABEL`].
    pub fn labels(&self, index: u32) -> BTreeMap<String, String> {
        let t = self.topology;
        let rack = index / t.rack_size.max(1);
        let zone = rack % t.zones.max(1);
        let power = (rack / t.zones.max(1)) % t.power_domains_per_zone.max(1);
        BTreeMap::from([
            (Topology::Zone.label().to_owned(), format!("zone-{zone}")),
            (Topology::Rack.label().to_owned(), format!("rack-{rack}")),
            (
                Topology::Power.label().to_owned(),
                format!("zone-{zone}-power-{power}"),
            ),
            (SIM_LABEL.to_owned(), "true".to_owned()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_zero_padded_and_widen_for_big_fleets() {
        let mut cfg = SimConfig::default();
        assert_eq!(cfg.host_name(42), "sim-00042");
        cfg.hosts = 200_000;
        assert_eq!(cfg.host_name(42), "sim-000042");
    }

    #[test]
    fn racks_are_dealt_over_zones_and_power_domains() {
        let cfg = SimConfig {
            topology: TopologyConfig {
                zones: 2,
                rack_size: 10,
                power_domains_per_zone: 2,
            },
            ..SimConfig::default()
        };
        let at = |i: u32, t: Topology| cfg.labels(i)[t.label()].clone();
        // Hosts 0..10 share rack 0 in zone 0; rack 1 is in zone 1; rack 2 back in zone 0 but on
        // the zone's second power domain.
        assert_eq!(at(9, Topology::Rack), "rack-0");
        assert_eq!(at(10, Topology::Rack), "rack-1");
        assert_eq!(at(10, Topology::Zone), "zone-1");
        assert_eq!(at(20, Topology::Zone), "zone-0");
        assert_eq!(at(0, Topology::Power), "zone-0-power-0");
        assert_eq!(at(20, Topology::Power), "zone-0-power-1");
        assert_eq!(at(40, Topology::Power), "zone-0-power-0");
        assert_eq!(cfg.labels(3)[SIM_LABEL], "true");
    }

    #[test]
    fn one_connection_per_thousand_hosts_by_default() {
        let mut cfg = SimConfig {
            hosts: 20,
            ..SimConfig::default()
        };
        assert_eq!(cfg.connection_count(), 1);
        cfg.hosts = 10_001;
        assert_eq!(cfg.connection_count(), 11);
        cfg.connections = Some(4);
        assert_eq!(cfg.connection_count(), 4);
    }

    #[test]
    fn refuses_what_cannot_run() {
        let ok = SimConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad_prefix = SimConfig {
            prefix: "Sim".into(),
            ..ok.clone()
        };
        assert!(matches!(
            bad_prefix.validate(),
            Err(ConfigError::Prefix { .. })
        ));
        let no_hosts = SimConfig {
            hosts: 0,
            ..ok.clone()
        };
        assert_eq!(
            no_hosts.validate(),
            Err(ConfigError::Zero { field: "hosts" })
        );
        let ttl = SimConfig {
            lease_ttl_secs: 0,
            ..ok
        };
        assert_eq!(ttl.validate(), Err(ConfigError::LeaseTtl(0)));
    }
}
