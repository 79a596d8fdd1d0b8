//! String fields that refuse non-string scalars.
//!
//! serde_yaml hands an unquoted `5` or `true` to a `String` field as the text `"5"`, but
//! `kubectl` sends it as a JSON number or boolean, which the CRD schema (`type: string`) refuses.
//! So that bootstrap mode refuses what the API server refuses, spec string fields decode through
//! these functions, which ask the decoder what the value really is (`deserialize_any`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

struct StrictString;

impl<'de> Visitor<'de> for StrictString {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (quote numbers and booleans meant as text)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

struct StrictOptString;

impl<'de> Visitor<'de> for StrictOptString {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (quote numbers and booleans meant as text) or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        string(d).map(Some)
    }
}

/// Wrapper so map values go through [`string`].
struct Text(String);

impl<'de> de::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string(d).map(Text)
    }
}

struct StrictStringMap;

impl<'de> Visitor<'de> for StrictStringMap {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((Text(k), Text(v))) = map.next_entry::<Text, Text>()? {
            out.insert(k, v);
        }
        Ok(out)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
}

struct StrictStringList;

impl<'de> Visitor<'de> for StrictStringList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Text(item)) = seq.next_element::<Text>()? {
            out.push(item);
        }
        Ok(out)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
}

pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StrictString)
}

pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(StrictOptString)
}

pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StrictStringList)
}

/// A `null` list reads as an empty one: the API server prunes a null it was sent for a
/// non-nullable field, so the field is then simply absent.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(d).map(Option::unwrap_or_default)
}

pub(crate) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_any(StrictStringMap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Probe {
        #[serde(deserialize_with = "string")]
        s: String,
        #[serde(default, deserialize_with = "opt_string")]
        o: Option<String>,
        #[serde(default, deserialize_with = "string_map")]
        m: BTreeMap<String, String>,
        #[serde(default, deserialize_with = "string_list")]
        l: Vec<String>,
        #[serde(default, deserialize_with = "null_as_empty")]
        n: Vec<u16>,
    }

    #[test]
    fn strings_pass_other_scalars_are_refused() {
        let p: Probe = serde_yaml::from_str("s: '5'\no: text\nm: {a: b}\n").unwrap();
        assert_eq!(
            p,
            Probe {
                s: "5".into(),
                o: Some("text".into()),
                m: [("a".into(), "b".into())].into(),
                l: vec![],
                n: vec![],
            }
        );
        let p: Probe = serde_yaml::from_str("s: x\nl: ['1', b]\nn: [7]\n").unwrap();
        assert_eq!((p.l, p.n), (vec!["1".to_owned(), "b".to_owned()], vec![7]));
        let p: Probe = serde_yaml::from_str("s: x\nl:\nn:\n").unwrap();
        assert!(p.l.is_empty() && p.n.is_empty());
        let p: Probe = serde_yaml::from_str("s: x\no:\n").unwrap();
        assert_eq!(p.o, None);
        for bad in [
            "s: 5\n",
            "s: true\n",
            "s: x\no: 1.5\n",
            "s: x\nm: {a: 1}\n",
            "s: [x]\n",
            "s: x\nl: [1]\n",
            "s: x\nl: a\n",
        ] {
            let e = serde_yaml::from_str::<Probe>(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected a string")
                    || e.contains("expected a map")
                    || e.contains("expected a list"),
                "{bad:?}: {e}"
            );
        }
        let p: Probe = serde_json::from_str(r#"{"s":"x","o":null}"#).unwrap();
        assert_eq!(p.o, None);
    }
}
