//! String fields that refuse non-string scalars.
//!
//! serde_yaml hands an unquoted `5` or `true` to a `String` field as the text `"5"`, but
//! `kubectl` sends it as a JSON number or boolean, which the CRD schema (`type: string`) refuses.
//! So that bootstrap mode refuses what the API server refuses, spec string fields decode through
//! these functions, which ask the decoder what the value really is (`deserialize_any`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, MapAccess, Visitor};

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

pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StrictString)
}

pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(StrictOptString)
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
    }

    #[test]
    fn strings_pass_other_scalars_are_refused() {
        let p: Probe = serde_yaml::from_str("s: '5'\no: text\nm: {a: b}\n").unwrap();
        assert_eq!(
            p,
            Probe {
                s: "5".into(),
                o: Some("text".into()),
                m: [("a".into(), "b".into())].into()
            }
        );
        let p: Probe = serde_yaml::from_str("s: x\no:\n").unwrap();
        assert_eq!(p.o, None);
        for bad in [
            "s: 5\n",
            "s: true\n",
            "s: x\no: 1.5\n",
            "s: x\nm: {a: 1}\n",
            "s: [x]\n",
        ] {
            let e = serde_yaml::from_str::<Probe>(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected a string") || e.contains("expected a map"),
                "{bad:?}: {e}"
            );
        }
        let p: Probe = serde_json::from_str(r#"{"s":"x","o":null}"#).unwrap();
        assert_eq!(p.o, None);
    }
}
