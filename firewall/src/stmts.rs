//! Small builders over the `nftables` crate's expression and statement types, so the compiler
//! reads like the rules it writes.

use std::borrow::Cow;

use nftables::expr::{
    BinaryOperation, CT, Expression, Map, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, Range, SetItem,
};
use nftables::stmt::{JumpTarget, Mangle, Match, Operator, Statement};

pub type Expr = Expression<'static>;
pub type Stmt = Statement<'static>;

pub fn s(v: impl Into<String>) -> Expr {
    Expression::String(Cow::Owned(v.into()))
}

pub fn n(v: u32) -> Expr {
    Expression::Number(v)
}

pub fn meta(key: MetaKey) -> Expr {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub fn payload(protocol: &'static str, field: &'static str) -> Expr {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

pub fn ct(key: &'static str) -> Expr {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

pub fn concat(parts: Vec<Expr>) -> Expr {
    Expression::Named(NamedExpression::Concat(parts))
}

pub fn prefix(addr: std::net::Ipv4Addr, len: u8) -> Expr {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr.to_string())),
        len: u32::from(len),
    }))
}

/// A named set or map reference, `@name`.
pub fn set_ref(name: &str) -> Expr {
    s(format!("@{name}"))
}

/// `key map @name` (a lookup that yields the mapped value).
pub fn map_lookup(key: Expr, name: &str) -> Expr {
    Expression::Named(NamedExpression::Map(Box::new(Map {
        key,
        data: set_ref(name),
    })))
}

/// An anonymous set of numbers and inclusive ranges, e.g. `{ 22, 8000-8080 }`.
pub fn port_set(ranges: &[(u16, u16)]) -> Expr {
    let items = ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                SetItem::Element(n(u32::from(lo)))
            } else {
                SetItem::Element(Expression::Range(Box::new(Range {
                    range: [n(u32::from(lo)), n(u32::from(hi))],
                })))
            }
        })
        .collect();
    Expression::Named(NamedExpression::Set(items))
}

/// An anonymous verdict map, `{ key: jump chain, ... }`.
pub fn jump_map(entries: &[(u32, String)]) -> Expr {
    let items = entries
        .iter()
        .map(|(k, chain)| SetItem::MappingStatement(n(*k), jump(chain)))
        .collect();
    Expression::Named(NamedExpression::Set(items))
}

/// An anonymous data map, `{ "key": value, ... }`.
pub fn value_map(entries: &[(String, u32)]) -> Expr {
    let items = entries
        .iter()
        .map(|(k, v)| SetItem::Mapping(s(k.clone()), n(*v)))
        .collect();
    Expression::Named(NamedExpression::Set(items))
}

pub fn or(left: Expr, bits: u32) -> Expr {
    Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![left, n(bits)])))
}

pub fn and(left: Expr, mask: u32) -> Expr {
    Expression::BinaryOperation(Box::new(BinaryOperation::AND(left, n(mask))))
}

fn matching(left: Expr, right: Expr, op: Operator) -> Stmt {
    Statement::Match(Match { left, right, op })
}

pub fn eq(left: Expr, right: Expr) -> Stmt {
    matching(left, right, Operator::EQ)
}

pub fn ne(left: Expr, right: Expr) -> Stmt {
    matching(left, right, Operator::NEQ)
}

/// `left in { flags }`, e.g. `ct state established,related`.
pub fn has_flags(left: Expr, flags: &[&'static str]) -> Stmt {
    let list = flags
        .iter()
        .map(|f| Expression::String(Cow::Borrowed(*f)))
        .collect();
    matching(left, Expression::List(list), Operator::IN)
}

pub fn set(key: Expr, value: Expr) -> Stmt {
    Statement::Mangle(Mangle { key, value })
}

pub fn vmap(key: Expr, data: Expr) -> Stmt {
    Statement::VerdictMap(nftables::stmt::VerdictMap { key, data })
}

pub fn jump(chain: &str) -> Stmt {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(chain.to_owned()),
    })
}

pub fn accept() -> Stmt {
    Statement::Accept(None)
}

pub fn drop() -> Stmt {
    Statement::Drop(None)
}
