//! `VirtualMachine.spec.networks` and `spec.securityGroups`: a VM's network interfaces and the
//! security groups that filter them. Both name objects in the VM's namespace (the tenant).
//! IPv4 only in this version.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ipv4::{self, IPV4_MAX, IPV4_PATTERN};
use crate::validation::{
    Checker, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN, is_dns1123_subdomain, shown,
};

/// Maximum number of network interfaces of a VM.
pub const NETWORKS_MAX: usize = 8;
/// Maximum number of security groups of a VM.
pub const SECURITY_GROUPS_MAX: usize = 16;
/// A unicast MAC address in lowercase `xx:xx:xx:xx:xx:xx` form (the multicast bit, the lowest bit
/// of the first octet, is clear).
pub const MAC_PATTERN: &str = "^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$";
/// Length of a MAC address in that form.
pub const MAC_LEN: usize = 17;

/// CEL rule on `spec.networks`: a VM has at most one interface on each network.
pub const UNIQUE_NETWORKS_RULE: &str = "self.all(a, self.exists_one(b, b.network == a.network))";
pub(crate) const UNIQUE_NETWORKS_MESSAGE: &str = "must not name a network twice";
/// CEL rule on `spec.securityGroups`: each group is named once.
pub const UNIQUE_SECURITY_GROUPS_RULE: &str = "self.all(a, self.exists_one(b, b == a))";
pub(crate) const UNIQUE_SECURITY_GROUPS_MESSAGE: &str = "must not name a security group twice";

static MAC: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    // A constant of this crate (a unit test compiles it), never input.
    regex::Regex::new(MAC_PATTERN).expect("built-in MAC pattern compiles")
});

/// One network interface of a VM, on a `Network` in the VM's namespace. The controller hands it
/// an address from the network's CIDR unless `ip` fixes one, and a MAC address unless `mac` does.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkAttachment {
    /// Name of a Network in the same namespace.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub network: String,
    /// A fixed IPv4 address for the interface; it must be inside the network's CIDR and not its
    /// network, broadcast or gateway address (the controller checks that, as it needs the
    /// Network). Omitted: the controller picks a free one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = IPV4_MAX), regex(pattern = IPV4_PATTERN))]
    pub ip: Option<String>,
    /// A fixed MAC address: unicast, lowercase `xx:xx:xx:xx:xx:xx`. A locally administered one
    /// (second hex digit 2, 6, a or e) is recommended, as it cannot clash with real hardware.
    /// Omitted: the controller generates one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = MAC_LEN), regex(pattern = MAC_PATTERN))]
    pub mac: Option<String>,
}

/// An interface of a running VM as the controller assigned it.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VmInterfaceStatus {
    /// The Network the interface is on.
    pub network: String,
    /// Its IPv4 address.
    pub ip: String,
    /// Its MAC address.
    pub mac: String,
}

/// Names that occur more than once, each with the indexes it occurs at, for the message of a
/// uniqueness rule. Only names `counted` accepts take part: as for every CEL rule in this crate,
/// a value the schema already refuses is not judged again.
fn duplicates<'a>(
    names: impl Iterator<Item = &'a str>,
    counted: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut at: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, name) in names.enumerate().filter(|(_, n)| counted(n)) {
        at.entry(name).or_default().push(i);
    }
    at.into_iter()
        .filter(|(_, indexes)| indexes.len() > 1)
        .map(|(name, indexes)| format!("{} at {indexes:?}", shown(name)))
        .collect()
}

/// Checks `spec.networks` the way the CRD schema and its CEL rule do.
pub(crate) fn check_networks(c: &mut Checker, networks: &[NetworkAttachment]) {
    c.max_items("spec.networks", networks.len(), NETWORKS_MAX);
    for (i, attachment) in networks.iter().enumerate() {
        let path = format!("spec.networks[{i}]");
        c.dns1123_subdomain(&format!("{path}.network"), &attachment.network);
        if let Some(ip) = &attachment.ip {
            ipv4::check_ipv4(c, &format!("{path}.ip"), ip);
        }
        if let Some(mac) = &attachment.mac
            && !MAC.is_match(mac)
        {
            c.push(
                format!("{path}.mac"),
                format!(
                    "must be a unicast MAC address in lowercase xx:xx:xx:xx:xx:xx form (the first octet even), got {}",
                    shown(mac)
                ),
            );
        }
    }
    let twice = duplicates(
        networks.iter().map(|a| a.network.as_str()),
        is_dns1123_subdomain,
    );
    if !twice.is_empty() {
        c.push(
            "spec.networks",
            format!("{UNIQUE_NETWORKS_MESSAGE}: {}", twice.join(", ")),
        );
    }
}

/// Checks `spec.securityGroups` the way the CRD schema and its CEL rule do.
pub(crate) fn check_security_groups(c: &mut Checker, groups: &[String]) {
    c.max_items("spec.securityGroups", groups.len(), SECURITY_GROUPS_MAX);
    for (i, group) in groups.iter().enumerate() {
        c.dns1123_subdomain(&format!("spec.securityGroups[{i}]"), group);
    }
    let twice = duplicates(groups.iter().map(String::as_str), is_dns1123_subdomain);
    if !twice.is_empty() {
        c.push(
            "spec.securityGroups",
            format!("{UNIQUE_SECURITY_GROUPS_MESSAGE}: {}", twice.join(", ")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(network: &str, ip: Option<&str>, mac: Option<&str>) -> NetworkAttachment {
        NetworkAttachment {
            network: network.into(),
            ip: ip.map(Into::into),
            mac: mac.map(Into::into),
        }
    }

    fn errors(networks: &[NetworkAttachment], groups: &[&str]) -> Vec<String> {
        let mut c = Checker::new();
        check_networks(&mut c, networks);
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        check_security_groups(&mut c, &groups);
        c.finish()
            .err()
            .map(|e| e.errors().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn typical_attachments_are_valid() {
        let networks = [
            attach("frontend", None, None),
            attach("backend.db", Some("10.0.0.5"), Some("02:00:0a:00:00:05")),
            attach("mgmt", None, Some("52:54:00:12:34:56")),
        ];
        assert!(errors(&networks, &["web", "ssh.admin"]).is_empty());
        assert!(errors(&[], &[]).is_empty());
        assert!(regex::Regex::new(MAC_PATTERN).is_ok());
    }

    #[test]
    fn every_bad_field_names_its_path() {
        let cases: [(&[NetworkAttachment], &[&str], &str); 9] = [
            (
                &[attach("a", None, None), attach("Bad_Net", None, None)],
                &[],
                "spec.networks[1].network: must be a DNS-1123 subdomain",
            ),
            (
                &[attach("a", None, None), attach("", None, None)],
                &[],
                "spec.networks[1].network: must not be empty",
            ),
            (
                &[attach("a", Some("10.0.0.256"), None)],
                &[],
                "spec.networks[0].ip: must be an IPv4 address",
            ),
            (
                &[attach("a", None, Some("03:00:00:00:00:01"))],
                &[],
                "spec.networks[0].mac: must be a unicast MAC address",
            ),
            (
                &[attach("a", None, Some("02:00:00:00:00:0A"))],
                &[],
                "spec.networks[0].mac: must be a unicast MAC address",
            ),
            (
                &[attach("a", None, Some("02-00-00-00-00-0a"))],
                &[],
                "spec.networks[0].mac: must be a unicast MAC address",
            ),
            (
                &[
                    attach("a", None, None),
                    attach("b", None, None),
                    attach("a", None, None),
                ],
                &[],
                "spec.networks: must not name a network twice: \"a\" at [0, 2]",
            ),
            (
                &[],
                &["web", "Web"],
                "spec.securityGroups[1]: must be a DNS-1123 subdomain",
            ),
            (
                &[],
                &["web", "db", "db"],
                "spec.securityGroups: must not name a security group twice: \"db\" at [1, 2]",
            ),
        ];
        for (networks, groups, msg) in cases {
            let e = errors(networks, groups);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].starts_with(msg), "{e:?} !~ {msg}");
        }
    }

    #[test]
    fn list_limits() {
        let nine: Vec<_> = (0..=NETWORKS_MAX)
            .map(|i| attach(&format!("n{i}"), None, None))
            .collect();
        assert_eq!(
            errors(&nine, &[]),
            ["spec.networks: must have at most 8 items, got 9"]
        );
        assert!(errors(&nine[..NETWORKS_MAX], &[]).is_empty());
        let names: Vec<String> = (0..=SECURITY_GROUPS_MAX).map(|i| format!("g{i}")).collect();
        let groups: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            errors(&[], &groups),
            ["spec.securityGroups: must have at most 16 items, got 17"]
        );
        assert!(errors(&[], &groups[..SECURITY_GROUPS_MAX]).is_empty());
    }

    #[test]
    fn duplicate_invalid_names_are_reported_once_as_invalid() {
        // A name the schema refuses is reported as such, not again as a duplicate.
        let e = errors(&[attach("A", None, None), attach("A", None, None)], &[]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .all(|m| m.contains("].network: must be a DNS-1123")),
            "{e:?}"
        );
    }
}
