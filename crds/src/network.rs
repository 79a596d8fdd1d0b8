//! `Network`: a tenant's L2 segment (VLAN or VXLAN) with an IPv4 subnet (namespaced: the tenant
//! is the namespace). IPv4 only in this version.

use std::net::Ipv4Addr;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::condition::Condition;
use crate::ipv4::{
    self, IPV4_CIDR_MAX, IPV4_MAX, IPV4_PATTERN, Ipv4Error, NETWORK_ADDRESS_MESSAGE, dotted_quad,
};
use crate::validation::{Checker, NameRule, Scope, ValidationErrors};

/// Bounds of `spec.vlan.id` (0 and 4095 are reserved by 802.1Q).
pub const VLAN_ID_MIN: u16 = 1;
pub const VLAN_ID_MAX: u16 = 4094;
/// Bounds of `spec.vxlan.vni` (24 bits).
pub const VNI_MIN: u32 = 1;
pub const VNI_MAX: u32 = 16_777_215;
/// Bounds of the prefix length of `spec.cidr`: at most a /8, at least a /30 (two host addresses).
pub const PREFIX_MIN: u8 = 8;
pub const PREFIX_MAX: u8 = 30;
/// Bounds of `spec.mtu` (576: the IPv4 minimum datagram every host must accept; 9000: jumbo).
pub const MTU_MIN: u32 = 576;
pub const MTU_MAX: u32 = 9000;
/// MTU of a VLAN network whose `mtu` is not given.
pub const VLAN_MTU_DEFAULT: u32 = 1500;
/// Bytes a VXLAN encapsulation adds to each frame (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;
/// MTU of a VXLAN network whose `mtu` is not given: fits a 1500-byte underlay.
pub const VXLAN_MTU_DEFAULT: u32 = VLAN_MTU_DEFAULT - VXLAN_OVERHEAD;
/// Maximum number of `spec.reserved` addresses.
pub const RESERVED_MAX: usize = 256;

/// `spec.cidr`: an IPv4 block with a prefix length from 8 to 30.
pub const NETWORK_CIDR_PATTERN: &str = concat!("^", dotted_quad!(), "/([89]|[12][0-9]|30)$");

/// CEL rule on the spec: a network is either a VLAN or a VXLAN segment.
pub const SEGMENT_RULE: &str = "has(self.vlan) != has(self.vxlan)";
const SEGMENT_MESSAGE: &str = "exactly one of spec.vlan or spec.vxlan must be set";
const GATEWAY_MESSAGE: &str =
    "must be an address inside spec.cidr other than its network and broadcast addresses";
const RESERVED_MESSAGE: &str = "every address must be inside spec.cidr";

/// CEL rule on `spec.cidr`: the block is written by its network address.
pub fn cidr_rule() -> String {
    ipv4::cel_network_address_rule(NETWORK_CIDR_PATTERN)
}

/// CEL rule on the spec: the gateway is a host address of the block. Binding `[[g, n, size]]`
/// to `v` with `all` stands in for a `let`, which Kubernetes' CEL lacks.
pub fn gateway_rule() -> String {
    format!(
        "!has(self.gateway) || !self.cidr.matches('{NETWORK_CIDR_PATTERN}') || !self.gateway.matches('{IPV4_PATTERN}') || [[{g}, {n}, {s}]].all(v, v[0] / v[2] == v[1] / v[2] && v[0] % v[2] != 0 && v[0] % v[2] != v[2] - 1)",
        g = ipv4::cel_value("self.gateway"),
        n = ipv4::cel_cidr_address("self.cidr"),
        s = ipv4::cel_cidr_size("self.cidr"),
    )
}

/// CEL rule on the spec: every reserved address is inside the block.
pub fn reserved_rule() -> String {
    format!(
        "!has(self.reserved) || !self.cidr.matches('{NETWORK_CIDR_PATTERN}') || [[{n}, {s}]].all(b, self.reserved.all(r, !r.matches('{IPV4_PATTERN}') || {r} / b[1] == b[0] / b[1]))",
        n = ipv4::cel_cidr_address("self.cidr"),
        s = ipv4::cel_cidr_size("self.cidr"),
        r = ipv4::cel_value("r"),
    )
}

/// A tenant network: an isolated L2 segment (a VLAN on the hosts' trunk, or a VXLAN overlay)
/// carrying one IPv4 subnet. VMs in the same namespace attach to it by name; the controller
/// hands each attachment an address from `cidr` (never the network, broadcast, gateway or
/// `reserved` addresses) unless the attachment fixes one. IPv4 only in this version.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
// clippy reads the repeated `type_ = "integer"` of separate printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "Network",
    namespaced,
    shortname = "ynet",
    status = "NetworkStatus",
    derive = "PartialEq",
    doc = "A tenant L2 network (VLAN or VXLAN) with an IPv4 subnet.",
    printcolumn(name = "VLAN", type_ = "integer", json_path = ".spec.vlan.id"),
    printcolumn(name = "VNI", type_ = "integer", json_path = ".spec.vxlan.vni"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Allocated", type_ = "integer", json_path = ".status.allocated"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new(SEGMENT_RULE).message(SEGMENT_MESSAGE),
    validation = kube::core::Rule::new(gateway_rule()).message(GATEWAY_MESSAGE).field_path(".gateway"),
    validation = kube::core::Rule::new(reserved_rule()).message(RESERVED_MESSAGE).field_path(".reserved")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// An 802.1Q VLAN on the hosts' trunk. Exactly one of `vlan` and `vxlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vlan")]
    pub vlan: Option<Vlan>,
    /// A VXLAN overlay between the hosts. Exactly one of `vlan` and `vxlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vxlan")]
    pub vxlan: Option<Vxlan>,
    /// The IPv4 subnet, by its network address: `a.b.c.d/prefix`, prefix length 8 to 30.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = IPV4_CIDR_MAX), regex(pattern = NETWORK_CIDR_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new(cidr_rule()).message(NETWORK_ADDRESS_MESSAGE))]
    pub cidr: String,
    /// The router's address, inside `cidr` and neither its network nor its broadcast address.
    /// Defaults to the first host address (`10.0.0.1` for `10.0.0.0/24`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = IPV4_MAX), regex(pattern = IPV4_PATTERN))]
    pub gateway: Option<String>,
    /// MTU of the VMs' interfaces, 576 to 9000. Defaults to 1500 on a VLAN and 1450 on a VXLAN
    /// (the encapsulation takes 50 bytes of a 1500-byte underlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = MTU_MIN, max = MTU_MAX))]
    pub mtu: Option<u32>,
    /// Addresses inside `cidr` the controller must never hand out (e.g. taken by machines
    /// outside Yun). Attachments may still fix one of them explicitly.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::string_list"
    )]
    #[schemars(length(max = RESERVED_MAX), inner(length(max = IPV4_MAX), regex(pattern = IPV4_PATTERN)))]
    pub reserved: Vec<String>,
}

/// An 802.1Q VLAN.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vlan {
    /// VLAN id, 1 to 4094.
    #[schemars(range(min = VLAN_ID_MIN, max = VLAN_ID_MAX))]
    pub id: u16,
}

/// A VXLAN overlay.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vxlan {
    /// VXLAN network identifier, 1 to 16777215.
    #[schemars(range(min = VNI_MIN, max = VNI_MAX))]
    pub vni: u32,
}

/// The segment a network is, read from `spec.vlan` / `spec.vxlan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An 802.1Q VLAN id.
    Vlan(u16),
    /// A VXLAN network identifier.
    Vxlan(u32),
}

impl Segment {
    /// MTU of a network of this kind whose `mtu` is not given.
    pub fn default_mtu(self) -> u32 {
        match self {
            Segment::Vlan(_) => VLAN_MTU_DEFAULT,
            Segment::Vxlan(_) => VXLAN_MTU_DEFAULT,
        }
    }
}

/// What the controller observes about a network. Conditions: `Ready`, `AddressesAvailable`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Addresses handed out to VM interfaces (fixed ones included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<u32>,
    /// Addresses still free to hand out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why a network spec cannot be used (a spec that passed `validate()` never yields one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetworkError {
    #[error("{SEGMENT_MESSAGE}")]
    Segment,
    #[error("spec.cidr: {0}")]
    Cidr(Ipv4Error),
    #[error("spec.gateway: {0}")]
    Gateway(Ipv4Error),
    #[error("spec.gateway: {gateway} is not a host address of {network}/{prefix}")]
    GatewayOutside {
        gateway: Ipv4Addr,
        network: Ipv4Addr,
        prefix: u8,
    },
}

/// Whether `ip` is a host address of the block: inside it, neither network nor broadcast.
fn is_host_of(network: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    ipv4::block_contains(network, prefix, ip)
        && ip != ipv4::network_address(network, prefix)
        && ip != ipv4::broadcast_address(network, prefix)
}

impl NetworkSpec {
    /// Checks the spec the way the CRD schema (bounds, patterns and CEL rules) does; paths start
    /// at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    fn check(&self, c: &mut Checker) {
        if self.vlan.is_some() == self.vxlan.is_some() {
            c.push("spec", SEGMENT_MESSAGE);
        }
        if let Some(vlan) = self.vlan {
            c.range("spec.vlan.id", vlan.id, VLAN_ID_MIN, VLAN_ID_MAX);
        }
        if let Some(vxlan) = self.vxlan {
            c.range("spec.vxlan.vni", vxlan.vni, VNI_MIN, VNI_MAX);
        }
        let block = ipv4::check_cidr(c, "spec.cidr", &self.cidr, PREFIX_MIN, PREFIX_MAX);
        if let Some(gateway) = &self.gateway {
            let ip = ipv4::check_ipv4(c, "spec.gateway", gateway);
            if let (Some((network, prefix)), Some(ip)) = (block, ip)
                && !is_host_of(network, prefix, ip)
            {
                let network = ipv4::network_address(network, prefix);
                c.push(
                    "spec.gateway",
                    format!("{GATEWAY_MESSAGE} {network}/{prefix}, got {ip}"),
                );
            }
        }
        if let Some(mtu) = self.mtu {
            c.range("spec.mtu", mtu, MTU_MIN, MTU_MAX);
        }
        c.max_items("spec.reserved", self.reserved.len(), RESERVED_MAX);
        let reserved: Vec<_> = self
            .reserved
            .iter()
            .enumerate()
            .map(|(i, r)| ipv4::check_ipv4(c, &format!("spec.reserved[{i}]"), r))
            .collect();
        if let Some((network, prefix)) = block {
            let outside: Vec<String> = reserved
                .iter()
                .enumerate()
                .filter_map(|(i, ip)| ip.map(|ip| (i, ip)))
                .filter(|&(_, ip)| !ipv4::block_contains(network, prefix, ip))
                .map(|(i, ip)| format!("[{i}] {ip}"))
                .collect();
            if !outside.is_empty() {
                let network = ipv4::network_address(network, prefix);
                c.push(
                    "spec.reserved",
                    format!(
                        "{RESERVED_MESSAGE} {network}/{prefix}; outside it: {}",
                        outside.join(", ")
                    ),
                );
            }
        }
    }

    /// The segment: a VLAN id or a VXLAN VNI.
    pub fn segment(&self) -> Result<Segment, NetworkError> {
        match (self.vlan, self.vxlan) {
            (Some(vlan), None) => Ok(Segment::Vlan(vlan.id)),
            (None, Some(vxlan)) => Ok(Segment::Vxlan(vxlan.vni)),
            _ => Err(NetworkError::Segment),
        }
    }

    /// `spec.cidr` as (network address, prefix length), refusing what `validate()` refuses.
    pub fn parsed_cidr(&self) -> Result<(Ipv4Addr, u8), NetworkError> {
        let (addr, prefix) = ipv4::parse_ipv4_cidr(&self.cidr).map_err(NetworkError::Cidr)?;
        if !(PREFIX_MIN..=PREFIX_MAX).contains(&prefix) {
            return Err(NetworkError::Cidr(Ipv4Error::PrefixLength {
                prefix,
                min: PREFIX_MIN,
                max: PREFIX_MAX,
            }));
        }
        ipv4::check_network_address(addr, prefix).map_err(NetworkError::Cidr)?;
        Ok((addr, prefix))
    }

    /// The gateway: `spec.gateway`, or the first host address of the block.
    pub fn gateway_addr(&self) -> Result<Ipv4Addr, NetworkError> {
        let (network, prefix) = self.parsed_cidr()?;
        let Some(gateway) = &self.gateway else {
            // The prefix is at most 30, so network + 1 is a host address.
            return Ok(Ipv4Addr::from(u32::from(network) + 1));
        };
        let ip = ipv4::parse_ipv4(gateway).map_err(NetworkError::Gateway)?;
        if is_host_of(network, prefix, ip) {
            Ok(ip)
        } else {
            Err(NetworkError::GatewayOutside {
                gateway: ip,
                network,
                prefix,
            })
        }
    }

    /// The interfaces' MTU: `spec.mtu`, or the segment kind's default (1500 VLAN, 1450 VXLAN).
    pub fn effective_mtu(&self) -> Result<u32, NetworkError> {
        match self.mtu {
            Some(mtu) => Ok(mtu),
            None => self.segment().map(Segment::default_mtu),
        }
    }
}

impl Network {
    /// Checks metadata (name a DNS-1123 subdomain, namespace a DNS-1123 label) and spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(
            &self.metadata,
            "Network",
            Scope::Namespaced,
            NameRule::Subdomain,
        );
        self.spec.check(&mut c);
        c.finish()
    }

    /// See [`NetworkSpec::segment`].
    pub fn segment(&self) -> Result<Segment, NetworkError> {
        self.spec.segment()
    }

    /// See [`NetworkSpec::parsed_cidr`].
    pub fn parsed_cidr(&self) -> Result<(Ipv4Addr, u8), NetworkError> {
        self.spec.parsed_cidr()
    }

    /// See [`NetworkSpec::gateway_addr`].
    pub fn gateway_addr(&self) -> Result<Ipv4Addr, NetworkError> {
        self.spec.gateway_addr()
    }

    /// See [`NetworkSpec::effective_mtu`].
    pub fn effective_mtu(&self) -> Result<u32, NetworkError> {
        self.spec.effective_mtu()
    }
}

#[cfg(test)]
mod tests;
