//! The compiled form of a host's firewall, before it is rendered for `nft`: chains with their
//! rules, set and map definitions, and their elements kept apart, so that two rulesets whose
//! structure is equal differ only by elements and can be moved between with element commands.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use nftables::stmt::Statement;

use crate::model::Mac;

/// Name of both Yun tables (`bridge yun` and `inet yun`).
pub const TABLE: &str = "yun";

/// The two table families Yun owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Port bindings (anti-spoofing) and the profile marks, where the bridge port is known.
    Bridge,
    /// Stateful filtering (conntrack) of bridged IPv4 through br_netfilter.
    Inet,
}

impl Family {
    /// Both of Yun's tables, in the order they are created and listed.
    pub const ALL: [Family; 2] = [Family::Bridge, Family::Inet];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Bridge => "bridge",
            Family::Inet => "inet",
        }
    }
}

/// Where a base chain hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Forward,
    Output,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleDef {
    pub stmts: Vec<Statement<'static>>,
    /// Says why the rule is there; shown by `nft list table`.
    pub comment: Option<String>,
    /// Elements of anonymous sets inside the rule (counted with the set elements).
    pub inline_elements: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChainDef {
    pub family: Family,
    pub name: String,
    /// `Some` for base chains (hook, priority); base chains' policy is always accept: Yun
    /// decides only for its own ports and leaves every other packet alone.
    pub base: Option<(Hook, i32)>,
    pub rules: Vec<RuleDef>,
}

/// One component of a set key or a map value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    Ifname(String),
    Ether(Mac),
    Ip(Ipv4Addr),
    Mark(u32),
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Ifname(s) => write!(f, "{s}"),
            Atom::Ether(m) => write!(f, "{m}"),
            Atom::Ip(ip) => write!(f, "{ip}"),
            Atom::Mark(m) => write!(f, "{m:#010x}"),
        }
    }
}

/// A set element's key (one atom, or a concatenation).
pub type Key = Vec<Atom>;

/// Key type of a set, or value type of a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomType {
    Ifname,
    Ether,
    Ip,
    Mark,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDef {
    pub family: Family,
    pub name: String,
    pub key: Vec<AtomType>,
    /// `Some` for a map: the value type.
    pub value: Option<AtomType>,
    pub comment: String,
}

/// Elements of one set (value `None`) or map.
pub type Elements = BTreeMap<Key, Option<Atom>>;

/// A compiled host firewall.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ruleset {
    pub chains: Vec<ChainDef>,
    pub sets: Vec<SetDef>,
    /// Elements per (family, set name); every set in `sets` has an entry.
    pub elements: BTreeMap<(Family, String), Elements>,
}

impl Ruleset {
    /// Equal structure: the same chains, rules and set definitions (elements aside).
    pub fn same_structure(&self, other: &Ruleset) -> bool {
        self.chains == other.chains && self.sets == other.sets
    }

    /// Rule statements plus set elements (named and inline): the size that grows with
    /// rules + members, never rules × ports.
    pub fn size(&self) -> RulesetSize {
        let rules = self.chains.iter().map(|c| c.rules.len()).sum();
        let inline: usize = self
            .chains
            .iter()
            .flat_map(|c| &c.rules)
            .map(|r| r.inline_elements)
            .sum();
        let elements: usize = self.elements.values().map(BTreeMap::len).sum();
        RulesetSize {
            chains: self.chains.len(),
            rules,
            set_elements: elements + inline,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulesetSize {
    pub chains: usize,
    pub rules: usize,
    pub set_elements: usize,
}

impl RulesetSize {
    pub fn total(&self) -> usize {
        self.rules + self.set_elements
    }
}
