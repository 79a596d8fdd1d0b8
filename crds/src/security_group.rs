//! `SecurityGroup`: stateful allow rules for the VMs that name it (namespaced: the tenant is the
//! namespace). IPv4 only in this version.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::ipv4::{self, IPV4_CIDR_MAX, IPV4_CIDR_PATTERN, NETWORK_ADDRESS_MESSAGE};
use crate::validation::{
    Checker, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN, NameRule, Scope, ValidationErrors,
};

/// Maximum number of rules in each of `spec.ingress` and `spec.egress`.
pub const RULES_MAX: usize = 200;
/// Maximum number of port ranges in one rule.
pub const PORTS_MAX: usize = 32;
/// Bounds of `port` and `endPort`.
pub const PORT_MIN: u16 = 1;
pub const PORT_MAX: u16 = 65535;
/// Maximum length of a rule's `description`.
pub const DESCRIPTION_MAX: usize = 255;

/// CEL rule on a port range: the range does not run backwards.
pub const END_PORT_RULE: &str = "!has(self.endPort) || self.endPort >= self.port";
const END_PORT_MESSAGE: &str = "must be at least port";
/// CEL rule on a rule: only TCP and UDP have ports.
pub const PORTS_NEED_TCP_OR_UDP_RULE: &str =
    "!has(self.ports) || size(self.ports) == 0 || self.protocol == 'tcp' || self.protocol == 'udp'";
const PORTS_MESSAGE: &str = "ports are only allowed with protocol tcp or udp";
/// CEL rule on a remote: it is either a CIDR block or a security group.
pub const REMOTE_RULE: &str = "has(self.cidr) != has(self.securityGroup)";
const REMOTE_MESSAGE: &str = "exactly one of cidr or securityGroup must be set";

/// CEL rule on `remote.cidr`: the block is written by its network address.
pub fn remote_cidr_rule() -> String {
    ipv4::cel_network_address_rule(IPV4_CIDR_PATTERN)
}

/// Firewall rules for the VMs that name this group in `spec.securityGroups` (its members).
///
/// Rules only allow: traffic of a member's interfaces is dropped unless a rule of one of its
/// groups allows it, and a member of several groups gets the union of their rules. Rules are
/// stateful: once a connection (or ICMP exchange) is allowed in one direction, its replies pass
/// the other way whatever that direction's rules say. An `ingress` rule matches traffic coming
/// in from its `remote`, an `egress` rule traffic going out to it; `ports` are always
/// destination ports. IPv4 only in this version.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "SecurityGroup",
    namespaced,
    shortname = "ysg",
    status = "SecurityGroupStatus",
    derive = "PartialEq",
    doc = "Stateful allow rules for the VirtualMachines that name this group.",
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Traffic members accept, by source (`remote`), protocol and destination port.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::null_as_empty"
    )]
    #[schemars(length(max = RULES_MAX))]
    pub ingress: Vec<SgRule>,
    /// Traffic members may send, by destination (`remote`), protocol and destination port.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::null_as_empty"
    )]
    #[schemars(length(max = RULES_MAX))]
    pub egress: Vec<SgRule>,
}

/// One allow rule.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[x_kube(
    validation = kube::core::Rule::new(PORTS_NEED_TCP_OR_UDP_RULE).message(PORTS_MESSAGE).field_path(".ports")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SgRule {
    /// `tcp`, `udp`, `icmp` or `any` (default).
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination ports (tcp and udp only); none means every port.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::strict::null_as_empty"
    )]
    #[schemars(length(max = PORTS_MAX))]
    pub ports: Vec<PortRange>,
    /// The other end: a CIDR block or the members of a security group. Omitted: anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Remote")]
    pub remote: Option<Remote>,
    /// Free text for people.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = DESCRIPTION_MAX))]
    pub description: Option<String>,
}

// Variant meanings are documented on the enum: per-variant doc comments would turn the schema's
// `enum` into a `oneOf` that kube flattens, losing them anyway.

/// IP protocol a rule matches: `tcp`, `udp`, `icmp` (every ICMP type) or `any` (every protocol).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    #[default]
    Any,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }

    /// Whether rules of this protocol may name ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// A port, or an inclusive range `port`..=`endPort`.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[x_kube(
    validation = kube::core::Rule::new(END_PORT_RULE).message(END_PORT_MESSAGE).field_path(".endPort")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    /// First port, 1 to 65535.
    #[schemars(range(min = PORT_MIN, max = PORT_MAX))]
    pub port: u16,
    /// Last port, at least `port`. Omitted: `port` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u16", range(min = PORT_MIN, max = PORT_MAX))]
    pub end_port: Option<u16>,
}

impl PortRange {
    /// The last port of the range.
    pub fn end(&self) -> u16 {
        self.end_port.unwrap_or(self.port)
    }
}

/// The other end of a rule: exactly one of `cidr` and `securityGroup`.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new(REMOTE_RULE).message(REMOTE_MESSAGE))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Remote {
    /// An IPv4 block by its network address, any prefix length (`0.0.0.0/0` is everywhere,
    /// `192.0.2.7/32` one address).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = IPV4_CIDR_MAX), regex(pattern = IPV4_CIDR_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new(remote_cidr_rule()).message(NETWORK_ADDRESS_MESSAGE))]
    pub cidr: Option<String>,
    /// Name of a SecurityGroup in the same namespace (this one included): the interface addresses
    /// of its members. A group that does not exist (yet) has no members.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub security_group: Option<String>,
}

/// What the controller observes about a group. Conditions: `Ready`, `RulesResolved`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// VMs that name this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u32>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl SecurityGroupSpec {
    /// Checks the spec the way the CRD schema (bounds, patterns and CEL rules) does; paths start
    /// at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    fn check(&self, c: &mut Checker) {
        for (path, rules) in [
            ("spec.ingress", &self.ingress),
            ("spec.egress", &self.egress),
        ] {
            c.max_items(path, rules.len(), RULES_MAX);
            for (i, rule) in rules.iter().enumerate() {
                rule.check(c, &format!("{path}[{i}]"));
            }
        }
    }
}

impl SgRule {
    fn check(&self, c: &mut Checker, path: &str) {
        let ports = format!("{path}.ports");
        c.max_items(&ports, self.ports.len(), PORTS_MAX);
        for (i, range) in self.ports.iter().enumerate() {
            range.check(c, &format!("{ports}[{i}]"));
        }
        if !self.ports.is_empty() && !self.protocol.has_ports() {
            c.push(
                ports,
                format!("{PORTS_MESSAGE}, got {}", self.protocol.as_str()),
            );
        }
        if let Some(remote) = &self.remote {
            remote.check(c, &format!("{path}.remote"));
        }
        if let Some(description) = &self.description {
            c.chars(
                &format!("{path}.description"),
                description,
                0,
                DESCRIPTION_MAX,
            );
        }
    }
}

impl PortRange {
    fn check(&self, c: &mut Checker, path: &str) {
        let (port, end_path) = (format!("{path}.port"), format!("{path}.endPort"));
        let valid = |p: u16| (PORT_MIN..=PORT_MAX).contains(&p);
        c.range(&port, self.port, PORT_MIN, PORT_MAX);
        if let Some(end) = self.end_port {
            c.range(&end_path, end, PORT_MIN, PORT_MAX);
            // As for every CEL rule in this crate, values the schema refuses are not judged again.
            if valid(self.port) && valid(end) && end < self.port {
                c.push(
                    end_path,
                    format!("{END_PORT_MESSAGE} ({}), got {end}", self.port),
                );
            }
        }
    }
}

impl Remote {
    fn check(&self, c: &mut Checker, path: &str) {
        if self.cidr.is_some() == self.security_group.is_some() {
            c.push(path, REMOTE_MESSAGE);
        }
        if let Some(cidr) = &self.cidr {
            ipv4::check_cidr(c, &format!("{path}.cidr"), cidr, 0, 32);
        }
        if let Some(group) = &self.security_group {
            c.dns1123_subdomain(&format!("{path}.securityGroup"), group);
        }
    }
}

impl SecurityGroup {
    /// Checks metadata (name a DNS-1123 subdomain, namespace a DNS-1123 label) and spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(
            &self.metadata,
            "SecurityGroup",
            Scope::Namespaced,
            NameRule::Subdomain,
        );
        self.spec.check(&mut c);
        c.finish()
    }
}

#[cfg(test)]
mod tests;
