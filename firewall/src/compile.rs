//! The firewall compiler: a host's ports, groups and memberships → one [`Ruleset`].
//!
//! Layout (see docs/ops/firewall.md):
//! - `bridge yun`: map `bindings` (port . MAC . IPv4 → profile mark), one element per port.
//!   Chain `guard` (prerouting -200) marks a packet from a Yun port with its profile and drops
//!   it when the binding does not match (spoofed MAC or IP, or neither IPv4 nor ARP).
//!   Chain `deliver` (forward -10) marks a packet to a Yun port with the destination's
//!   profile (plus the ingress bit), so the ingress chain knows whose rules apply. Chain
//!   `routed` (output) drops IPv4 the host itself would route into a Yun port: tenant
//!   networks are never joined through a host.
//! - `inet yun` (bridged IPv4 through br_netfilter, with conntrack): chain `zones` puts each
//!   bridge in its own conntrack zone; `egress` (prerouting 0) and `ingress` (forward 0) pass
//!   replies, then jump by mark to a profile chain (`pe_*`/`pi_*`), which jumps to each of
//!   its groups' chains (`ge_*`/`gi_*`) and drops what none accepted. Group rules match
//!   member sets (`m_*`) for remote groups.
//!
//! Per port there is one element; per rule one statement; per remote member one element.

use std::collections::{BTreeMap, BTreeSet};

use nftables::expr::MetaKey;

use crate::model::{HostFirewall, ModelError, PORT_PREFIX, Proto, Remote, Rule};
use crate::names::{self, Direction, INGRESS_BIT, MARK_BASE};
use crate::ruleset::{Atom, AtomType, ChainDef, Elements, Family, Hook, RuleDef, Ruleset, SetDef};
use crate::stmts::*;

pub const BINDINGS: &str = "bindings";
const YUN_MARK_MASK: u32 = 0xff00_0000;

fn rule(stmts: Vec<Stmt>, comment: impl Into<String>) -> RuleDef {
    RuleDef {
        stmts,
        comment: Some(comment.into()),
        inline_elements: 0,
    }
}

fn chain(family: Family, name: impl Into<String>, base: Option<(Hook, i32)>) -> ChainDef {
    ChainDef {
        family,
        name: name.into(),
        base,
        rules: Vec::new(),
    }
}

/// `meta mark set 0` for packets carrying a Yun mark (other marks are not ours to clear).
fn clear_yun_mark() -> RuleDef {
    rule(
        vec![
            eq(and(meta(MetaKey::Mark), YUN_MARK_MASK), n(MARK_BASE)),
            set(meta(MetaKey::Mark), n(0)),
        ],
        "clear a Yun profile mark set earlier",
    )
}

/// `ether type <ethertype> meta mark set <port> . ether <mac> . <addr> map @bindings`: the
/// profile of the port whose binding matches; no match leaves the mark as it was.
fn mark_from_binding(
    ethertype: &'static str,
    port: MetaKey,
    mac: &'static str,
    (proto, addr): (&'static str, &'static str),
) -> Vec<Stmt> {
    vec![
        eq(payload("ether", "type"), s(ethertype)),
        set(
            meta(MetaKey::Mark),
            map_lookup(
                concat(vec![
                    meta(port),
                    payload("ether", mac),
                    payload(proto, addr),
                ]),
                BINDINGS,
            ),
        ),
    ]
}

fn bridge_chains() -> Vec<ChainDef> {
    let yun_ports = s(format!("{PORT_PREFIX}*"));
    let mut guard = chain(Family::Bridge, "guard", Some((Hook::Prerouting, -200)));
    guard.rules = vec![
        rule(
            vec![ne(meta(MetaKey::Iifname), yun_ports.clone()), accept()],
            "not from a Yun port",
        ),
        rule(
            vec![set(meta(MetaKey::Mark), n(0))],
            "no binding until one matches",
        ),
        rule(
            mark_from_binding("ip", MetaKey::Iifname, "saddr", ("ip", "saddr")),
            "IPv4 from the port's own MAC and address: mark with its profile",
        ),
        rule(
            mark_from_binding("arp", MetaKey::Iifname, "saddr", ("arp", "saddr ip")),
            "ARP for the port's own MAC and address",
        ),
        rule(
            vec![eq(meta(MetaKey::Mark), n(0)), drop()],
            "anti-spoofing: source not bound to this port, or not IPv4/ARP",
        ),
    ];
    let mut deliver = chain(Family::Bridge, "deliver", Some((Hook::Forward, -10)));
    deliver.rules = vec![
        clear_yun_mark(),
        rule(
            vec![ne(meta(MetaKey::Oifname), yun_ports), accept()],
            "not to a Yun port",
        ),
        rule(
            mark_from_binding("ip", MetaKey::Oifname, "daddr", ("ip", "daddr")),
            "IPv4 to the port's own MAC and address: mark with its profile",
        ),
        rule(
            vec![
                eq(payload("ether", "type"), s("ip")),
                eq(meta(MetaKey::Mark), n(0)),
                drop(),
            ],
            "IPv4 to a Yun port must be unicast to its bound address",
        ),
        rule(
            vec![
                eq(payload("ether", "type"), s("ip")),
                set(meta(MetaKey::Mark), or(meta(MetaKey::Mark), INGRESS_BIT)),
            ],
            "the mark names the destination's profile",
        ),
    ];
    let mut routed = chain(Family::Bridge, "routed", Some((Hook::Output, 0)));
    routed.rules = vec![rule(
        vec![
            eq(meta(MetaKey::Oifname), s(format!("{PORT_PREFIX}*"))),
            eq(payload("ether", "type"), s("ip")),
            drop(),
        ],
        "the host does not route into tenant networks: VMs are reached on their own segment only",
    )];
    vec![guard, deliver, routed]
}

/// Conntrack zone per bridge (sorted, stable hash with probing; zone 0 is the host's).
fn zones(bridges: &BTreeSet<&str>) -> Vec<(String, u32)> {
    let mut taken = BTreeSet::new();
    bridges
        .iter()
        .map(|b| {
            let mut z = (names::fnv64(b.as_bytes()) as u16).max(1);
            while !taken.insert(z) {
                z = z.wrapping_add(1).max(1);
            }
            ((*b).to_owned(), u32::from(z))
        })
        .collect()
}

fn rule_statements(r: &Rule, dir: Direction) -> (Vec<Stmt>, usize) {
    let remote_field = match dir {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let mut out = Vec::new();
    let mut inline = 0;
    match &r.remote {
        Remote::Any => {}
        Remote::Cidr { addr, prefix: p } => {
            out.push(eq(payload("ip", remote_field), prefix(*addr, *p)))
        }
        Remote::Group(g) => out.push(eq(
            payload("ip", remote_field),
            set_ref(&names::group_name("m", g)),
        )),
    }
    let proto = match r.proto {
        Proto::Any => None,
        Proto::Tcp => Some("tcp"),
        Proto::Udp => Some("udp"),
        Proto::Icmp => Some("icmp"),
    };
    if let Some(p) = proto {
        out.push(eq(meta(MetaKey::L4proto), s(p)));
    }
    if !r.ports.is_empty() {
        let l4 = if r.proto == Proto::Udp { "udp" } else { "tcp" };
        out.push(eq(payload(l4, "dport"), port_set(&r.ports)));
        inline = r.ports.len();
    }
    out.push(accept());
    (out, inline)
}

fn group_chain(group: &str, rules: &[Rule], dir: Direction) -> ChainDef {
    let mut c = chain(
        Family::Inet,
        names::group_name(dir.group_prefix(), group),
        None,
    );
    for (i, r) in rules.iter().enumerate() {
        let (stmts, inline) = rule_statements(r, dir);
        c.rules.push(RuleDef {
            stmts,
            comment: Some(format!("{group} {}[{i}]", dir.as_str())),
            inline_elements: inline,
        });
    }
    c
}

fn profile_chain(groups: &[&str], mark: u32, dir: Direction) -> ChainDef {
    let mut c = chain(Family::Inet, names::profile_chain(dir, mark), None);
    if groups.is_empty() {
        c.rules.push(match dir {
            Direction::Egress => rule(
                vec![accept()],
                "default policy (no security group): all egress",
            ),
            Direction::Ingress => rule(
                vec![drop()],
                "default policy (no security group): no ingress but replies",
            ),
        });
        return c;
    }
    c.rules.push(rule(
        vec![has_flags(ct("state"), &["invalid"]), drop()],
        "invalid connection state",
    ));
    for g in groups {
        c.rules.push(rule(
            vec![jump(&names::group_name(dir.group_prefix(), g))],
            format!("group {g}"),
        ));
    }
    c.rules.push(rule(
        vec![drop()],
        format!("{} not allowed by {}", dir.as_str(), groups.join(", ")),
    ));
    c
}

fn dispatch(name: &str, hook: Hook, marks: &[(u32, String)]) -> ChainDef {
    let mut c = chain(Family::Inet, name, Some((hook, 0)));
    c.rules.push(rule(
        vec![
            has_flags(ct("state"), &["established", "related"]),
            accept(),
        ],
        "replies to allowed flows",
    ));
    if !marks.is_empty() {
        let mut r = rule(
            vec![vmap(meta(MetaKey::Mark), jump_map(marks))],
            "profile of the Yun port",
        );
        r.inline_elements = marks.len();
        c.rules.push(r);
    }
    c
}

/// Compiles a host's firewall. Invalid input is refused whole.
pub fn compile(fw: &HostFirewall) -> Result<Ruleset, ModelError> {
    fw.validate()?;
    let profiles: BTreeMap<String, Vec<&str>> = fw
        .ports
        .iter()
        .map(|p| {
            (
                names::profile_key(&p.groups),
                p.groups.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let marks: BTreeMap<String, u32> = names::profile_marks(profiles.keys().map(String::as_str))
        .into_iter()
        .collect();

    let mut rs = Ruleset::default();
    rs.chains.extend(bridge_chains());
    rs.sets.push(SetDef {
        family: Family::Bridge,
        name: BINDINGS.into(),
        key: vec![AtomType::Ifname, AtomType::Ether, AtomType::Ip],
        value: Some(AtomType::Mark),
        comment: "port . MAC . IPv4 the port may use -> its profile mark".into(),
    });
    let bindings: Elements = fw
        .ports
        .iter()
        .map(|p| {
            let mark = marks
                .get(&names::profile_key(&p.groups))
                .copied()
                .unwrap_or(MARK_BASE);
            (
                vec![
                    Atom::Ifname(p.ifname.clone()),
                    Atom::Ether(p.mac),
                    Atom::Ip(p.ip),
                ],
                Some(Atom::Mark(mark)),
            )
        })
        .collect();
    rs.elements
        .insert((Family::Bridge, BINDINGS.into()), bindings);

    let bridges: BTreeSet<&str> = fw.ports.iter().map(|p| p.bridge.as_str()).collect();
    let mut zone_chain = chain(Family::Inet, "zones", Some((Hook::Prerouting, -300)));
    if !bridges.is_empty() {
        let z = zones(&bridges);
        let mut r = rule(
            vec![set(
                ct("zone"),
                map_lookup_inline(meta(MetaKey::Iifname), &z),
            )],
            "one conntrack zone per network bridge: tenants may reuse addresses",
        );
        r.inline_elements = z.len();
        zone_chain.rules.push(r);
    }
    rs.chains.push(zone_chain);

    let by_dir = |dir: Direction| -> Vec<(u32, String)> {
        let bit = if dir == Direction::Ingress {
            INGRESS_BIT
        } else {
            0
        };
        marks
            .values()
            .map(|m| (*m | bit, names::profile_chain(dir, *m)))
            .collect()
    };
    rs.chains.push(dispatch(
        "egress",
        Hook::Prerouting,
        &by_dir(Direction::Egress),
    ));
    rs.chains.push(dispatch(
        "ingress",
        Hook::Forward,
        &by_dir(Direction::Ingress),
    ));
    for (key, groups) in &profiles {
        let mark = marks.get(key).copied().unwrap_or(MARK_BASE);
        rs.chains
            .push(profile_chain(groups, mark, Direction::Egress));
        rs.chains
            .push(profile_chain(groups, mark, Direction::Ingress));
    }
    let used: BTreeSet<&str> = profiles.values().flatten().copied().collect();
    let mut remotes = BTreeSet::new();
    for g in &used {
        let Some(rules) = fw.groups.get(*g) else {
            continue;
        };
        rs.chains
            .push(group_chain(g, &rules.egress, Direction::Egress));
        rs.chains
            .push(group_chain(g, &rules.ingress, Direction::Ingress));
        remotes.extend(rules.remote_groups());
    }
    for g in remotes {
        let name = names::group_name("m", g);
        rs.sets.push(SetDef {
            family: Family::Inet,
            name: name.clone(),
            key: vec![AtomType::Ip],
            value: None,
            comment: format!("members of security group {g}"),
        });
        let members: Elements = fw
            .members
            .get(g)
            .into_iter()
            .flatten()
            .map(|ip| (vec![Atom::Ip(*ip)], None))
            .collect();
        rs.elements.insert((Family::Inet, name), members);
    }
    Ok(rs)
}

fn map_lookup_inline(key: Expr, entries: &[(String, u32)]) -> Expr {
    nftables::expr::Expression::Named(nftables::expr::NamedExpression::Map(Box::new(
        nftables::expr::Map {
            key,
            data: value_map(entries),
        },
    )))
}
