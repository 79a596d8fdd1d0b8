//! Rendering a [`Ruleset`] as one `nft` transaction (the `nftables` crate's JSON schema): a
//! full atomic replace of Yun's tables, or, between rulesets of equal structure, just the
//! element adds and deletes.

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::schema::{self, NfListObject, Nftables, SetFlag, SetType, SetTypeValue};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::ruleset::{
    Atom, AtomType, ChainDef, Elements, Family, Hook, Key, Ruleset, SetDef, TABLE,
};
use crate::stmts::{n, s};

fn family(f: Family) -> NfFamily {
    match f {
        Family::Bridge => NfFamily::Bridge,
        Family::Inet => NfFamily::INet,
    }
}

fn table(f: Family) -> schema::Table<'static> {
    schema::Table {
        family: family(f),
        name: Cow::Borrowed(TABLE),
        handle: None,
    }
}

fn set_type(t: AtomType) -> SetType {
    match t {
        AtomType::Ifname => SetType::Ifname,
        AtomType::Ether => SetType::EtherAddr,
        AtomType::Ip => SetType::Ipv4Addr,
        AtomType::Mark => SetType::Mark,
    }
}

fn key_type(types: &[AtomType]) -> SetTypeValue<'static> {
    match types {
        [one] => SetTypeValue::Single(set_type(*one)),
        many => {
            SetTypeValue::Concatenated(many.iter().map(|t| set_type(*t)).collect::<Vec<_>>().into())
        }
    }
}

fn atom(a: &Atom) -> Expression<'static> {
    match a {
        Atom::Mark(m) => n(*m),
        other => s(other.to_string()),
    }
}

pub(crate) fn key_expr(key: &Key) -> Expression<'static> {
    match key.as_slice() {
        [one] => atom(one),
        many => crate::stmts::concat(many.iter().map(atom).collect()),
    }
}

fn elem_expr(key: &Key, value: &Option<Atom>) -> Expression<'static> {
    match value {
        None => key_expr(key),
        Some(v) => Expression::List(vec![key_expr(key), atom(v)]),
    }
}

fn chain_obj(c: &ChainDef) -> schema::Chain<'static> {
    let (hook, prio) = match c.base {
        Some((Hook::Prerouting, p)) => (Some(NfHook::Prerouting), Some(p)),
        Some((Hook::Forward, p)) => (Some(NfHook::Forward), Some(p)),
        Some((Hook::Output, p)) => (Some(NfHook::Output), Some(p)),
        None => (None, None),
    };
    schema::Chain {
        family: family(c.family),
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(c.name.clone()),
        _type: hook.map(|_| NfChainType::Filter),
        hook,
        prio,
        policy: hook.map(|_| NfChainPolicy::Accept),
        ..schema::Chain::default()
    }
}

fn set_obj(d: &SetDef) -> NfListObject<'static> {
    let flags: Option<HashSet<SetFlag>> = None;
    match d.value {
        None => NfListObject::Set(Box::new(schema::Set {
            family: family(d.family),
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(d.name.clone()),
            set_type: key_type(&d.key),
            flags,
            comment: Some(Cow::Owned(d.comment.clone())),
            ..schema::Set::default()
        })),
        Some(v) => NfListObject::Map(Box::new(schema::Map {
            family: family(d.family),
            table: Cow::Borrowed(TABLE),
            name: Cow::Owned(d.name.clone()),
            set_type: key_type(&d.key),
            map: SetTypeValue::Single(set_type(v)),
            flags,
            comment: Some(Cow::Owned(d.comment.clone())),
            ..schema::Map::default()
        })),
    }
}

pub(crate) fn element_obj(
    f: Family,
    set: &str,
    elems: Vec<Expression<'static>>,
) -> NfListObject<'static> {
    NfListObject::Element(schema::Element {
        family: family(f),
        table: Cow::Borrowed(TABLE),
        name: Cow::Owned(set.to_owned()),
        elem: elems.into(),
    })
}

/// One transaction that replaces both Yun tables with `rs`: created if missing, deleted and
/// rebuilt otherwise, all or nothing. Nothing outside Yun's tables is touched.
pub fn full_replace(rs: &Ruleset) -> Nftables<'static> {
    let mut b = Batch::new();
    for f in Family::ALL {
        // `add table` is a no-op when it exists; it makes the `delete` valid on a fresh host.
        b.add(NfListObject::Table(table(f)));
        b.delete(NfListObject::Table(table(f)));
        b.add(NfListObject::Table(table(f)));
    }
    for c in &rs.chains {
        b.add(NfListObject::Chain(chain_obj(c)));
    }
    for d in &rs.sets {
        b.add(set_obj(d));
    }
    for c in &rs.chains {
        for r in &c.rules {
            b.add(NfListObject::Rule(schema::Rule {
                family: family(c.family),
                table: Cow::Borrowed(TABLE),
                chain: Cow::Owned(c.name.clone()),
                expr: r.stmts.clone().into(),
                comment: r.comment.clone().map(Cow::Owned),
                ..schema::Rule::default()
            }));
        }
    }
    for ((f, name), elems) in &rs.elements {
        if !elems.is_empty() {
            b.add(element_obj(
                *f,
                name,
                elems.iter().map(|(k, v)| elem_expr(k, v)).collect(),
            ));
        }
    }
    b.to_nftables()
}

/// Element changes from `old` to `new` for one set: (deletes, adds). A changed map value is
/// a delete and an add of that key, in one transaction.
pub fn element_changes<'a>(
    old: &'a Elements,
    new: &'a Elements,
) -> (Vec<&'a Key>, Vec<(&'a Key, &'a Option<Atom>)>) {
    let deletes = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let adds = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .collect();
    (deletes, adds)
}

/// The element-only transaction from `old` to `new`, or `None` when the structure differs
/// (then only a [`full_replace`] is correct). An empty transaction means nothing to do.
pub fn element_delta(old: &Ruleset, new: &Ruleset) -> Option<Delta> {
    if !old.same_structure(new) {
        return None;
    }
    let empty = Elements::new();
    let mut b = Batch::new();
    let (mut added, mut deleted) = (0, 0);
    for ((f, name), new_elems) in &new.elements {
        let old_elems = old.elements.get(&(*f, name.clone())).unwrap_or(&empty);
        let (dels, adds) = element_changes(old_elems, new_elems);
        if !dels.is_empty() {
            deleted += dels.len();
            b.delete(element_obj(
                *f,
                name,
                dels.into_iter().map(key_expr).collect(),
            ));
        }
        if !adds.is_empty() {
            added += adds.len();
            b.add(element_obj(
                *f,
                name,
                adds.into_iter().map(|(k, v)| elem_expr(k, v)).collect(),
            ));
        }
    }
    Some(Delta {
        batch: b.to_nftables(),
        added,
        deleted,
    })
}

/// An element-only transaction.
#[derive(Debug, Clone)]
pub struct Delta {
    pub batch: Nftables<'static>,
    pub added: usize,
    pub deleted: usize,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.deleted == 0
    }
}
