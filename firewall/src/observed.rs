//! What the kernel holds in Yun's tables, read from `nft -j list table ...`, reduced to what
//! drift detection compares: the chains with their rules (handles dropped) and the elements
//! of every set and map in a canonical text form.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::ruleset::{Atom, Family, Key, Ruleset};

/// Yun's tables as the kernel reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Tables present.
    pub tables: BTreeSet<Family>,
    /// Rules per chain, in order, as JSON without handles (the kernel's own rendering).
    pub chains: BTreeMap<(Family, String), Vec<Value>>,
    /// Elements per set or map, canonical ("a . b . c" or "key : value").
    pub elements: BTreeMap<(Family, String), BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObservedError {
    #[error("nft listing is not the expected JSON: {0}")]
    Shape(String),
}

fn fam(v: &Value) -> Option<Family> {
    match v.get("family")?.as_str()? {
        "bridge" => Some(Family::Bridge),
        "inet" => Some(Family::Inet),
        _ => None,
    }
}

fn text(v: &Value) -> Result<String, ObservedError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(o) => {
            if let Some(Value::Array(parts)) = o.get("concat") {
                let parts: Result<Vec<String>, _> = parts.iter().map(text).collect();
                return Ok(parts?.join(" . "));
            }
            if let Some(inner) = o.get("elem").and_then(|e| e.get("val")) {
                return text(inner);
            }
            Err(ObservedError::Shape(format!("element {v}")))
        }
        other => Err(ObservedError::Shape(format!("element {other}"))),
    }
}

fn element_text(v: &Value) -> Result<String, ObservedError> {
    match v {
        Value::Array(pair) if pair.len() == 2 => {
            Ok(format!("{} : {}", text(&pair[0])?, text(&pair[1])?))
        }
        other => text(other),
    }
}

fn strip_handle(mut rule: Value) -> Value {
    if let Some(o) = rule.as_object_mut() {
        o.remove("handle");
        o.remove("family");
        o.remove("table");
        o.remove("chain");
    }
    rule
}

impl Observed {
    /// Parses the JSON of one or more `nft -j list table` runs (Yun's tables only are kept).
    pub fn parse(listings: &[&str]) -> Result<Observed, ObservedError> {
        let mut out = Observed::default();
        for listing in listings {
            let doc: Value =
                serde_json::from_str(listing).map_err(|e| ObservedError::Shape(e.to_string()))?;
            let objects = doc
                .get("nftables")
                .and_then(Value::as_array)
                .ok_or_else(|| ObservedError::Shape("no \"nftables\" array".into()))?;
            for obj in objects {
                let Some((kind, body)) = obj.as_object().and_then(|o| o.iter().next()) else {
                    continue;
                };
                if body.get("table").and_then(Value::as_str) != Some(crate::ruleset::TABLE)
                    && body.get("name").and_then(Value::as_str) != Some(crate::ruleset::TABLE)
                {
                    continue;
                }
                let Some(f) = fam(body) else { continue };
                let name = || {
                    body.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                match kind.as_str() {
                    "table" => {
                        out.tables.insert(f);
                    }
                    "chain" => {
                        out.chains.entry((f, name())).or_default();
                    }
                    "set" | "map" => {
                        let elems = out.elements.entry((f, name())).or_default();
                        for e in body
                            .get("elem")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            elems.insert(element_text(e)?);
                        }
                    }
                    "rule" => {
                        let chain = body
                            .get("chain")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        out.chains
                            .entry((f, chain))
                            .or_default()
                            .push(strip_handle(body.clone()));
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Same tables and chains with the same rules (elements aside).
    pub fn same_rules(&self, other: &Observed) -> bool {
        self.tables == other.tables && self.chains == other.chains
    }
}

/// Canonical text of a wanted element, as [`Observed`] renders the kernel's.
pub fn element_text_of(key: &Key, value: &Option<Atom>) -> String {
    let k = key.iter().map(atom_text).collect::<Vec<_>>().join(" . ");
    match value {
        None => k,
        Some(v) => format!("{k} : {}", atom_text(v)),
    }
}

fn atom_text(a: &Atom) -> String {
    match a {
        Atom::Mark(m) => m.to_string(),
        other => other.to_string(),
    }
}

/// Where the kernel's elements differ from the wanted ones: sets missing or with elements
/// missing or extra. Empty when they agree.
pub fn element_drift(want: &Ruleset, seen: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    for ((f, name), elems) in &want.elements {
        let Some(have) = seen.elements.get(&(*f, name.clone())) else {
            out.push(format!("{} set {name} is missing", f.as_str()));
            continue;
        };
        let wanted: BTreeSet<String> = elems.iter().map(|(k, v)| element_text_of(k, v)).collect();
        let missing = wanted.difference(have).count();
        let extra = have.difference(&wanted).count();
        if missing + extra > 0 {
            out.push(format!(
                "{} set {name}: {missing} element(s) missing, {extra} extra",
                f.as_str()
            ));
        }
    }
    out
}
