//! What a host's firewall is compiled from: the VM ports on this host, the rules of every
//! security group those ports use, and the member addresses of every group a rule names as
//! its remote. Group ids are `namespace/name` (a security group belongs to one tenant).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Every VM port a Yun agent creates starts with this; the ruleset matches Yun's ports by the
/// prefix (`iifname "yt*"`) so it needs no per-port element beyond the port's binding.
pub const PORT_PREFIX: &str = "yt";
/// Linux interface names are at most 15 bytes.
pub const IFNAME_MAX: usize = 15;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

// The rule types are the fleet contract's: the controller writes them to etcd and the agent
// compiles them as they arrive, with no translation layer to drift.
pub use yun_fleet::network::{GroupRules, Proto, Remote, Rule};

/// A VM NIC on this host: the bridge port the agent created for it, and the one MAC and IPv4
/// address the guest may send from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub ifname: String,
    /// The bridge the port is enslaved to (one per network); its conntrack zone keeps
    /// tenants with overlapping addresses apart.
    pub bridge: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Group ids; empty = the default policy (all egress, no ingress but replies).
    pub groups: BTreeSet<String>,
}

/// Everything the firewall of one host is compiled from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFirewall {
    pub ports: Vec<Port>,
    /// Rules of every group a port uses.
    pub groups: BTreeMap<String, GroupRules>,
    /// Member addresses of every group a rule names as its remote.
    pub members: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

/// Input the compiler refuses; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("MAC address {0:?} is not six colon-separated hex bytes")]
    BadMac(String),
    #[error(
        "port {ifname:?}: interface name must start with {PORT_PREFIX:?} and be at most {IFNAME_MAX} bytes of [a-zA-Z0-9_-]"
    )]
    BadIfname { ifname: String },
    #[error("port {ifname:?}: bridge name {bridge:?} is not a Linux interface name")]
    BadBridge { ifname: String, bridge: String },
    #[error("port {ifname:?} appears twice")]
    DuplicatePort { ifname: String },
    #[error("port {ifname:?} uses security group {group:?}, which has no rules here")]
    UnknownGroup { ifname: String, group: String },
    #[error(
        "security group {group:?} {direction}[{index}] names remote group {remote:?}, whose members are not known here"
    )]
    UnknownRemoteGroup {
        group: String,
        direction: &'static str,
        index: usize,
        remote: String,
    },
    #[error("security group {group:?} {direction}[{index}]: {reason}")]
    BadRule {
        group: String,
        direction: &'static str,
        index: usize,
        reason: String,
    },
}

fn check_rule(
    group: &str,
    direction: &'static str,
    index: usize,
    r: &Rule,
    fw: &HostFirewall,
) -> Result<(), ModelError> {
    let bad = |reason: String| ModelError::BadRule {
        group: group.to_owned(),
        direction,
        index,
        reason,
    };
    if !r.ports.is_empty() && !matches!(r.proto, Proto::Tcp | Proto::Udp) {
        return Err(bad("ports are only allowed with tcp or udp".into()));
    }
    for &(lo, hi) in &r.ports {
        if lo == 0 || lo > hi {
            return Err(bad(format!("port range {lo}-{hi} is empty or starts at 0")));
        }
    }
    match &r.remote {
        Remote::Cidr { addr, prefix } => {
            if *prefix > 32 {
                return Err(bad(format!("prefix /{prefix} is longer than 32")));
            }
            let mask = if *prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            if u32::from(*addr) & !mask != 0 {
                return Err(bad(format!("{addr}/{prefix} has host bits set")));
            }
        }
        Remote::Group(g) if !fw.members.contains_key(g) => {
            return Err(ModelError::UnknownRemoteGroup {
                group: group.to_owned(),
                direction,
                index,
                remote: g.clone(),
            });
        }
        _ => {}
    }
    Ok(())
}

fn ifname_ok(s: &str) -> bool {
    s.len() <= IFNAME_MAX
        && s.len() > PORT_PREFIX.len()
        && s.starts_with(PORT_PREFIX)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl HostFirewall {
    /// Checks everything the compiler relies on; nothing is rendered from invalid input.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut names = BTreeSet::new();
        for p in &self.ports {
            if !ifname_ok(&p.ifname) {
                return Err(ModelError::BadIfname {
                    ifname: p.ifname.clone(),
                });
            }
            let bridge_ok = !p.bridge.is_empty()
                && p.bridge.len() <= IFNAME_MAX
                && p.bridge
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !bridge_ok {
                return Err(ModelError::BadBridge {
                    ifname: p.ifname.clone(),
                    bridge: p.bridge.clone(),
                });
            }
            if !names.insert(p.ifname.as_str()) {
                return Err(ModelError::DuplicatePort {
                    ifname: p.ifname.clone(),
                });
            }
            if let Some(g) = p.groups.iter().find(|g| !self.groups.contains_key(*g)) {
                return Err(ModelError::UnknownGroup {
                    ifname: p.ifname.clone(),
                    group: g.clone(),
                });
            }
        }
        for (g, rules) in &self.groups {
            for (i, r) in rules.ingress.iter().enumerate() {
                check_rule(g, "ingress", i, r, self)?;
            }
            for (i, r) in rules.egress.iter().enumerate() {
                check_rule(g, "egress", i, r, self)?;
            }
        }
        Ok(())
    }
}
