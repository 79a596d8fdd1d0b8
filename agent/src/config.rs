//! Agent configuration: a TOML file (every key optional, defaults documented in
//! docs/ops/configuration.md) overridden by command-line flags.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use thiserror::Error;
use yun_fleet_etcd::BusTls;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The agent's configuration after defaults are applied.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Name of this host on the fleet bus (DNS-1123 label). Default: the system hostname.
    pub host_name: String,
    /// etcd client URLs of the fleet bus.
    pub etcd_endpoints: Vec<String>,
    /// etcd TLS: all three of `etcd_ca`, `etcd_cert`, `etcd_key`, or none (plain http; the
    /// default). The CA bundle etcd's certificate must chain to.
    pub etcd_ca: Option<PathBuf>,
    /// This host's client certificate; its CN (`host:<host_name>`) is its etcd user.
    pub etcd_cert: Option<PathBuf>,
    /// The certificate's private key; refused unless only its owner can read it (0600).
    pub etcd_key: Option<PathBuf>,
    /// Where template images, VM overlays, seeds and console logs live.
    pub state_dir: PathBuf,
    /// libvirt connection URI.
    pub libvirt_uri: String,
    /// `auto` (kvm when /dev/kvm is usable, else qemu), `kvm`, or `qemu` (TCG).
    pub virt_type: String,
    /// Address of the /metrics and /healthz endpoint.
    pub metrics_listen: SocketAddr,
    /// Where a Prometheus scrapes this agent, published as `HostInfo.metrics_address` for the
    /// controller's file_sd output: `"ip:port"`, `"ip"` (with `metrics_listen`'s port) or
    /// `"none"`. Unset: derived, see [`AgentConfig::metrics_advertise`].
    pub metrics_advertise: Option<String>,
    /// TTL of the host lease; the heartbeat refreshes it every third of this.
    pub lease_ttl_secs: i64,
    /// Labels published with the host (placement filters match on them).
    pub labels: BTreeMap<String, String>,
    /// Seconds a guest gets to shut down gracefully before it is destroyed.
    pub shutdown_grace_secs: u64,
    /// Tenant networking (`[network]`).
    pub network: NetworkConfig,
    /// Volumes (`[storage]`).
    pub storage: StorageConfig,
    /// The agent's audit log: every change it makes on this host, hash-chained. Unset:
    /// `<state_dir>/audit/agent.log` (so `/var/lib/yun/audit/agent.log` by default).
    pub audit_log: Option<PathBuf>,
}

/// `[storage]`: where volumes are found on this host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Local volumes (qcow2 files named by volume uid). Unset: `<state_dir>/volumes`.
    pub volumes_dir: Option<PathBuf>,
    /// udev's disk links, where FC LUNs are looked up (`by-path`, `by-id`).
    pub fc_disk_dir: PathBuf,
    /// Device-mapper devices, where multipath devices of FC LUNs are preferred.
    pub fc_mapper_dir: PathBuf,
    /// Seconds a live detach waits for the guest to release the disk before it is reported
    /// as failed (and retried).
    pub detach_timeout_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            volumes_dir: None,
            fc_disk_dir: PathBuf::from("/dev/disk"),
            fc_mapper_dir: PathBuf::from("/dev/mapper"),
            detach_timeout_secs: 60,
        }
    }
}

/// `[network]`: how this host carries tenant networks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Manage tenant links and the firewall. Off: the agent never touches links or nftables
    /// (VMs with NICs then have no network on this host).
    pub enabled: bool,
    /// This host's VXLAN tunnel endpoint (an address of its underlay), published to the
    /// fleet so other hosts can reach it. Unset: the host can carry only VLAN networks.
    pub tunnel_address: Option<Ipv4Addr>,
    /// Underlay device VXLAN devices bind to (unset: routing chooses).
    pub tunnel_device: Option<String>,
    /// Trunk interface VLAN sub-interfaces are created on (unset: no VLAN networks).
    pub vlan_uplink: Option<String>,
    /// Seconds between drift checks of the firewall and re-applies of the links.
    pub drift_check_secs: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            tunnel_address: None,
            tunnel_device: None,
            vlan_uplink: None,
            drift_check_secs: 30,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            host_name: system_hostname(),
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
            state_dir: PathBuf::from("/var/lib/yun"),
            libvirt_uri: "qemu:///system".into(),
            virt_type: "auto".into(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            metrics_advertise: None,
            lease_ttl_secs: 10,
            labels: BTreeMap::new(),
            shutdown_grace_secs: 10,
            network: NetworkConfig::default(),
            storage: StorageConfig::default(),
            audit_log: None,
        }
    }
}

/// The address this agent publishes for Prometheus discovery (`HostInfo.metrics_address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAdvertise {
    At(SocketAddr),
    /// `metrics_advertise = "none"`: the operator keeps this host out of discovery.
    Disabled,
    /// Nothing to derive an address from; the reason, for the start-up warning.
    Unknown(&'static str),
}

/// `"ip:port"` or `"ip"` (taking `default_port`), refused when no Prometheus could reach it.
fn parse_advertise(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let addr = match (text.parse::<SocketAddr>(), text.parse::<IpAddr>()) {
        (Ok(addr), _) => addr,
        (_, Ok(ip)) => SocketAddr::new(ip, default_port),
        _ => return Err(format!("{text:?} is not \"ip:port\", \"ip\" or \"none\"")),
    };
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!(
            "{text:?} is not an address a Prometheus can scrape: give this host's own IP"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("{text:?}: the port must not be 0"));
    }
    Ok(addr)
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AgentConfig {
    /// Reads `path` (a missing file is an error: the operator named it).
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        yun_fleet::names::check_host_name(&self.host_name).map_err(|e| ConfigError::Invalid {
            key: "host_name",
            message: e.to_string(),
        })?;
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::Invalid {
                key: "etcd_endpoints",
                message: "at least one endpoint is needed".into(),
            });
        }
        if let Some(bad) = self
            .etcd_endpoints
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(ConfigError::Invalid {
                key: "etcd_endpoints",
                message: format!("{bad:?} must start with http:// or https://"),
            });
        }
        let tls = self.etcd_tls()?.is_some();
        if let Some(bad) = self
            .etcd_endpoints
            .iter()
            .find(|e| e.starts_with("https://") != tls)
        {
            return Err(ConfigError::Invalid {
                key: "etcd_endpoints",
                message: match tls {
                    true => format!("{bad:?} must be https:// when etcd_cert is set"),
                    false => format!("{bad:?} is https://: set etcd_ca, etcd_cert and etcd_key"),
                },
            });
        }
        if !self.state_dir.is_absolute() {
            return Err(ConfigError::Invalid {
                key: "state_dir",
                message: "must be an absolute path".into(),
            });
        }
        if self.audit_log.as_ref().is_some_and(|p| !p.is_absolute()) {
            return Err(ConfigError::Invalid {
                key: "audit_log",
                message: "must be an absolute path".into(),
            });
        }
        if !matches!(self.virt_type.as_str(), "auto" | "kvm" | "qemu") {
            return Err(ConfigError::Invalid {
                key: "virt_type",
                message: format!("{:?} is not one of auto, kvm, qemu", self.virt_type),
            });
        }
        if !(3..=300).contains(&self.lease_ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "lease_ttl_secs",
                message: "must be between 3 and 300".into(),
            });
        }
        if !(1..=3600).contains(&self.network.drift_check_secs) {
            return Err(ConfigError::Invalid {
                key: "network.drift_check_secs",
                message: "must be between 1 and 3600".into(),
            });
        }
        if let Some(text) = self.metrics_advertise.as_deref().filter(|t| *t != "none") {
            parse_advertise(text, self.metrics_listen.port()).map_err(|message| {
                ConfigError::Invalid {
                    key: "metrics_advertise",
                    message,
                }
            })?;
        }
        for (key, dev) in [
            ("network.tunnel_device", &self.network.tunnel_device),
            ("network.vlan_uplink", &self.network.vlan_uplink),
        ] {
            if let Some(d) = dev
                && !is_ifname(d)
            {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!(
                        "{d:?} is not a Linux interface name (1-15 of [a-zA-Z0-9._-])"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The fleet bus's TLS files (`None`: plain http).
    pub fn etcd_tls(&self) -> Result<Option<BusTls>, ConfigError> {
        BusTls::from_parts(
            self.etcd_ca.clone(),
            self.etcd_cert.clone(),
            self.etcd_key.clone(),
        )
        .map_err(|e| ConfigError::Invalid {
            key: "etcd_ca/etcd_cert/etcd_key",
            message: e.to_string(),
        })
    }

    /// The address published for Prometheus discovery. Unset `metrics_advertise`: a specific,
    /// non-loopback `metrics_listen` is used as is; a wildcard one (`0.0.0.0`, `[::]`) listens
    /// on every address, so `[network] tunnel_address` (the host's underlay IP, which the
    /// fleet already routes to) with the listen port; a loopback one is never published (a
    /// Prometheus elsewhere would scrape its own machine under this host's name).
    pub fn metrics_advertise(&self) -> MetricsAdvertise {
        let listen = self.metrics_listen;
        match self.metrics_advertise.as_deref() {
            Some("none") => MetricsAdvertise::Disabled,
            Some(text) => match parse_advertise(text, listen.port()) {
                Ok(addr) => MetricsAdvertise::At(addr),
                Err(_) => MetricsAdvertise::Unknown("metrics_advertise is invalid"),
            },
            None if listen.ip().is_loopback() => MetricsAdvertise::Unknown(
                "metrics_listen is a loopback address, which no Prometheus on another machine can reach",
            ),
            None if listen.ip().is_unspecified() => match self.network.tunnel_address {
                Some(ip) => MetricsAdvertise::At(SocketAddr::new(ip.into(), listen.port())),
                None => MetricsAdvertise::Unknown(
                    "metrics_listen is a wildcard address and [network] tunnel_address is unset",
                ),
            },
            None => MetricsAdvertise::At(listen),
        }
    }

    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Where local volumes live.
    pub fn volumes_dir(&self) -> PathBuf {
        self.storage
            .volumes_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("volumes"))
    }

    /// Where the agent's audit log is.
    pub fn audit_log_path(&self) -> PathBuf {
        self.audit_log
            .clone()
            .unwrap_or_else(|| self.state_dir.join("audit").join("agent.log"))
    }

    pub fn vm_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("vms").join(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_documented_defaults() {
        let cfg = AgentConfig::parse(Path::new("a.toml"), "host_name = \"n1\"").unwrap();
        assert_eq!(
            cfg.etcd_endpoints,
            vec!["http://127.0.0.1:2379".to_string()]
        );
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/yun"));
        assert_eq!(cfg.virt_type, "auto");
        assert_eq!(cfg.lease_ttl_secs, 10);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\nvirt_type = \"xen\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("virt_type"), "{err}");
        let err = AgentConfig::parse(Path::new("a.toml"), "host_name = \"N_1\"").unwrap_err();
        assert!(err.to_string().contains("host_name"), "{err}");
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\nstate_dir = \"rel\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("state_dir"), "{err}");
    }

    #[test]
    fn etcd_tls_is_all_three_files_and_https() {
        let base = "host_name = \"n1\"\netcd_endpoints = [\"https://10.0.0.1:2379\"]\n";
        let files = "etcd_ca = \"/etc/yun/pki/ca.crt\"\netcd_cert = \"/etc/yun/pki/host-n1.crt\"\n";
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            &format!("{base}{files}etcd_key = \"/etc/yun/pki/host-n1.key\""),
        )
        .unwrap();
        let tls = cfg.etcd_tls().unwrap().unwrap();
        assert_eq!(tls.key, PathBuf::from("/etc/yun/pki/host-n1.key"));
        let err = AgentConfig::parse(Path::new("a.toml"), &format!("{base}{files}")).unwrap_err();
        assert!(err.to_string().contains("the key"), "{err}");
        let err = AgentConfig::parse(Path::new("a.toml"), base).unwrap_err();
        assert!(err.to_string().contains("etcd_endpoints"), "{err}");
        assert_eq!(AgentConfig::default().etcd_tls().unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\nvirt_tpye = \"qemu\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("virt_tpye"), "{err}");
    }

    #[test]
    fn network_section_is_read_and_checked() {
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\n[network]\ntunnel_address = \"192.0.2.1\"\nvlan_uplink = \"bond0\"",
        )
        .unwrap();
        assert_eq!(
            cfg.network.tunnel_address,
            Some(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert_eq!(cfg.network.vlan_uplink.as_deref(), Some("bond0"));
        assert_eq!(cfg.network.drift_check_secs, 30);
        assert!(cfg.network.enabled);
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\n[network]\nvlan_uplink = \"eth0; rm -rf\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("network.vlan_uplink"), "{err}");
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\n[network]\ntunnel_address = \"not-ip\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("tunnel_address"), "{err}");
    }

    #[test]
    fn audit_log_defaults_under_the_state_dir_and_must_be_absolute() {
        let cfg = AgentConfig::parse(Path::new("a.toml"), "host_name = \"n1\"").unwrap();
        assert_eq!(
            cfg.audit_log_path(),
            PathBuf::from("/var/lib/yun/audit/agent.log")
        );
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\nstate_dir = \"/srv/yun\"",
        )
        .unwrap();
        assert_eq!(
            cfg.audit_log_path(),
            PathBuf::from("/srv/yun/audit/agent.log")
        );
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\naudit_log = \"/var/log/yun/agent-audit.log\"",
        )
        .unwrap();
        assert_eq!(
            cfg.audit_log_path(),
            PathBuf::from("/var/log/yun/agent-audit.log")
        );
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\naudit_log = \"audit.log\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("audit_log"), "{err}");
    }

    fn advertise(extra: &str) -> MetricsAdvertise {
        AgentConfig::parse(Path::new("a.toml"), &format!("host_name = \"n1\"\n{extra}"))
            .unwrap()
            .metrics_advertise()
    }

    #[test]
    fn metrics_advertise_is_explicit_or_derived_from_the_listen_address() {
        let at = |s: &str| MetricsAdvertise::At(s.parse().unwrap());
        assert_eq!(
            advertise("metrics_advertise = \"10.0.0.7:9100\""),
            at("10.0.0.7:9100")
        );
        // A bare IP takes the listen port.
        assert_eq!(
            advertise("metrics_listen = \"0.0.0.0:9500\"\nmetrics_advertise = \"fd00::7\""),
            at("[fd00::7]:9500")
        );
        assert_eq!(
            advertise("metrics_advertise = \"none\""),
            MetricsAdvertise::Disabled
        );
        assert_eq!(
            advertise("metrics_listen = \"10.1.2.3:9464\""),
            at("10.1.2.3:9464")
        );
        assert_eq!(
            advertise(
                "metrics_listen = \"0.0.0.0:9464\"\n[network]\ntunnel_address = \"192.0.2.5\""
            ),
            at("192.0.2.5:9464")
        );
        assert!(matches!(
            advertise("metrics_listen = \"[::]:9464\""),
            MetricsAdvertise::Unknown(why) if why.contains("tunnel_address")
        ));
        // The default listen address is loopback: nothing a remote Prometheus could use.
        assert!(matches!(
            advertise(""),
            MetricsAdvertise::Unknown(why) if why.contains("loopback")
        ));
    }

    #[test]
    fn unreachable_metrics_advertise_is_refused_by_name() {
        for bad in [
            "0.0.0.0:9464",
            "[::]:9464",
            "10.0.0.7:0",
            "224.0.0.1",
            "host-a:9464",
        ] {
            let err = AgentConfig::parse(
                Path::new("a.toml"),
                &format!("host_name = \"n1\"\nmetrics_advertise = \"{bad}\""),
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("metrics_advertise"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn labels_are_read() {
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            "host_name = \"n1\"\n[labels]\nzone = \"z1\"",
        )
        .unwrap();
        assert_eq!(cfg.labels.get("zone").map(String::as_str), Some("z1"));
    }
}
