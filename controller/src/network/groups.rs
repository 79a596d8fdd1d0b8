//! SecurityGroup specs as the firewall compiler's rules. Group ids are `namespace/name`; a
//! `remote.securityGroup` always names a group of the rule's own namespace.
//!
//! A rule naming a group that does not exist (yet) is kept: it matches no one until the group
//! appears (its member set is empty), and its appearance is then only a membership change. It is
//! reported so the `RulesResolved` condition can say which rule waits for which group.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;
use yun_crds::ipv4::{self, Ipv4Error};
use yun_crds::{DEFAULT_NAMESPACE, Protocol, SecurityGroup, SecurityGroupSpec, SgRule};
use yun_firewall::{GroupRules, Proto, Remote, Rule};

use super::group_id;

/// Why a rule cannot be used as written; each names the rule's field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupError {
    #[error(
        "{field}: security group {missing:?} does not exist in namespace {namespace}; the rule matches no one until it does"
    )]
    UnknownRemoteGroup {
        field: String,
        namespace: String,
        missing: String,
    },
    #[error("{field}: exactly one of cidr or securityGroup must be set")]
    BadRemote { field: String },
    #[error("{field}: {source}")]
    BadCidr { field: String, source: Ipv4Error },
    #[error("{field}: ports are only allowed with protocol tcp or udp, got {protocol}")]
    PortsNeedTcpOrUdp {
        field: String,
        protocol: &'static str,
    },
    #[error("{field}: port range {port}-{end} is empty or starts at 0")]
    BadPortRange { field: String, port: u16, end: u16 },
}

/// A group's rules, and the rules whose remote group does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedGroup {
    pub rules: GroupRules,
    /// Only [`GroupError::UnknownRemoteGroup`]s.
    pub unresolved: Vec<GroupError>,
}

/// The rules of group `namespace`/… with `spec`; `existing` holds the ids (`namespace/name`)
/// of the groups that exist (any namespaces). Fails on a rule the CRD schema refuses.
pub fn resolve_group(
    namespace: &str,
    spec: &SecurityGroupSpec,
    existing: &BTreeSet<String>,
) -> Result<ResolvedGroup, GroupError> {
    let mut out = ResolvedGroup::default();
    for (direction, rules, into) in [
        ("spec.ingress", &spec.ingress, &mut out.rules.ingress),
        ("spec.egress", &spec.egress, &mut out.rules.egress),
    ] {
        for (i, rule) in rules.iter().enumerate() {
            let field = format!("{direction}[{i}]");
            let (rule, unresolved) = convert_rule(namespace, &field, rule, existing)?;
            into.push(rule);
            out.unresolved.extend(unresolved);
        }
    }
    Ok(out)
}

/// Every group of the fleet by id, resolved against each other.
pub fn resolve_all(
    groups: &[SecurityGroup],
) -> BTreeMap<String, Result<ResolvedGroup, GroupError>> {
    let namespace_of = |g: &SecurityGroup| {
        g.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
    };
    let id_of = |g: &SecurityGroup| {
        group_id(
            &namespace_of(g),
            g.metadata.name.as_deref().unwrap_or_default(),
        )
    };
    let existing: BTreeSet<String> = groups.iter().map(id_of).collect();
    groups
        .iter()
        .map(|g| {
            (
                id_of(g),
                resolve_group(&namespace_of(g), &g.spec, &existing),
            )
        })
        .collect()
}

fn convert_rule(
    namespace: &str,
    field: &str,
    rule: &SgRule,
    existing: &BTreeSet<String>,
) -> Result<(Rule, Option<GroupError>), GroupError> {
    let proto = match rule.protocol {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
        Protocol::Icmp => Proto::Icmp,
        Protocol::Any => Proto::Any,
    };
    if !rule.ports.is_empty() && !rule.protocol.has_ports() {
        return Err(GroupError::PortsNeedTcpOrUdp {
            field: format!("{field}.ports"),
            protocol: rule.protocol.as_str(),
        });
    }
    let mut ports = Vec::with_capacity(rule.ports.len());
    for (i, range) in rule.ports.iter().enumerate() {
        let (port, end) = (range.port, range.end());
        if port == 0 || end < port {
            return Err(GroupError::BadPortRange {
                field: format!("{field}.ports[{i}]"),
                port,
                end,
            });
        }
        ports.push((port, end));
    }
    let field = format!("{field}.remote");
    let mut unresolved = None;
    let remote = match &rule.remote {
        None => Remote::Any,
        Some(r) => match (&r.cidr, &r.security_group) {
            (Some(cidr), None) => {
                let bad = |source| GroupError::BadCidr {
                    field: format!("{field}.cidr"),
                    source,
                };
                let (addr, prefix) = ipv4::parse_ipv4_cidr(cidr).map_err(bad)?;
                ipv4::check_network_address(addr, prefix).map_err(bad)?;
                Remote::Cidr { addr, prefix }
            }
            (None, Some(name)) => {
                let id = group_id(namespace, name);
                if !existing.contains(&id) {
                    unresolved = Some(GroupError::UnknownRemoteGroup {
                        field: format!("{field}.securityGroup"),
                        namespace: namespace.to_owned(),
                        missing: name.clone(),
                    });
                }
                Remote::Group(id)
            }
            _ => return Err(GroupError::BadRemote { field }),
        },
    };
    Ok((
        Rule {
            proto,
            ports,
            remote,
        },
        unresolved,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use yun_crds::{PortRange, Remote as SgRemote};

    fn rule(protocol: Protocol, ports: &[(u16, Option<u16>)], remote: Option<SgRemote>) -> SgRule {
        SgRule {
            protocol,
            ports: ports
                .iter()
                .map(|&(port, end_port)| PortRange { port, end_port })
                .collect(),
            remote,
            description: None,
        }
    }

    fn cidr(c: &str) -> Option<SgRemote> {
        Some(SgRemote {
            cidr: Some(c.into()),
            security_group: None,
        })
    }

    fn group(g: &str) -> Option<SgRemote> {
        Some(SgRemote {
            cidr: None,
            security_group: Some(g.into()),
        })
    }

    fn existing(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_rule_shape_maps_to_the_firewall_model() {
        let spec = SecurityGroupSpec {
            ingress: vec![
                rule(
                    Protocol::Tcp,
                    &[(22, None), (8000, Some(8080))],
                    cidr("192.0.2.0/24"),
                ),
                rule(Protocol::Udp, &[(53, None)], group("dns")),
                rule(Protocol::Icmp, &[], None),
            ],
            egress: vec![rule(Protocol::Any, &[], None)],
        };
        let r = resolve_group("t", &spec, &existing(&["t/dns"])).unwrap();
        assert!(r.unresolved.is_empty());
        assert_eq!(
            r.rules.ingress,
            [
                Rule {
                    proto: Proto::Tcp,
                    ports: vec![(22, 22), (8000, 8080)],
                    remote: Remote::Cidr {
                        addr: Ipv4Addr::new(192, 0, 2, 0),
                        prefix: 24
                    },
                },
                Rule {
                    proto: Proto::Udp,
                    ports: vec![(53, 53)],
                    remote: Remote::Group("t/dns".into()),
                },
                Rule {
                    proto: Proto::Icmp,
                    ports: vec![],
                    remote: Remote::Any,
                },
            ]
        );
        assert_eq!(
            r.rules.egress,
            [Rule {
                proto: Proto::Any,
                ports: vec![],
                remote: Remote::Any
            }]
        );
    }

    #[test]
    fn an_unknown_remote_group_is_kept_and_reported_by_field() {
        let spec = SecurityGroupSpec {
            ingress: vec![
                rule(Protocol::Any, &[], None),
                rule(Protocol::Any, &[], None),
                rule(Protocol::Any, &[], None),
                rule(Protocol::Tcp, &[(5432, None)], group("db")),
            ],
            egress: vec![],
        };
        // A group of the same name in another tenant does not count.
        let r = resolve_group("t", &spec, &existing(&["other/db"])).unwrap();
        assert_eq!(r.rules.ingress[3].remote, Remote::Group("t/db".into()));
        assert_eq!(r.unresolved.len(), 1);
        assert_eq!(
            r.unresolved[0].to_string(),
            "spec.ingress[3].remote.securityGroup: security group \"db\" does not exist in namespace t; the rule matches no one until it does"
        );
    }

    #[test]
    fn rules_the_schema_refuses_name_their_field() {
        let cases = [
            (
                rule(Protocol::Icmp, &[(1, None)], None),
                "spec.egress[0].ports: ports are only allowed with protocol tcp or udp, got icmp",
            ),
            (
                rule(Protocol::Tcp, &[(80, None), (90, Some(89))], None),
                "spec.egress[0].ports[1]: port range 90-89",
            ),
            (
                rule(Protocol::Tcp, &[], cidr("10.0.0.1/8")),
                "spec.egress[0].remote.cidr: ",
            ),
            (
                rule(
                    Protocol::Tcp,
                    &[],
                    Some(SgRemote {
                        cidr: None,
                        security_group: None,
                    }),
                ),
                "spec.egress[0].remote: exactly one of",
            ),
        ];
        for (r, msg) in cases {
            let spec = SecurityGroupSpec {
                ingress: vec![],
                egress: vec![r],
            };
            let err = resolve_group("t", &spec, &existing(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(msg), "{err} !~ {msg}");
        }
    }

    #[test]
    fn resolve_all_resolves_groups_against_their_own_namespace() {
        let mk = |ns: &str, name: &str, remote: &str| {
            let mut g = SecurityGroup::new(
                name,
                SecurityGroupSpec {
                    ingress: vec![rule(Protocol::Tcp, &[(80, None)], group(remote))],
                    egress: vec![],
                },
            );
            g.metadata.namespace = Some(ns.into());
            g
        };
        let all = resolve_all(&[
            mk("a", "web", "lb"),
            mk("a", "lb", "web"),
            mk("b", "web", "lb"),
        ]);
        assert_eq!(all.len(), 3);
        assert!(all["a/web"].as_ref().unwrap().unresolved.is_empty());
        assert!(all["a/lb"].as_ref().unwrap().unresolved.is_empty());
        assert_eq!(all["b/web"].as_ref().unwrap().unresolved.len(), 1);
    }
}
