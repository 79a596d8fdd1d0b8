//! Writing to stdout: objects as YAML/JSON/names, and a closed pipe (`yunctl get vm | head`)
//! ending the program quietly instead of panicking in `println!`.

use std::io::Write;

use serde_json::{Value, json};

use crate::kinds::KindDef;

/// Writes `text` to stdout; when the reader has gone, exits as a piped kubectl does.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Several objects as the API server lists them for `-o yaml|json`.
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    })
}

pub fn yaml(value: &Value) -> String {
    // A serde_json::Value always serializes.
    serde_yaml::to_string(value).unwrap_or_default()
}

pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// `virtualmachine.yun.dev/demo-vm`, as `-o name` prints.
pub fn name(kind: &KindDef, obj: &Value) -> String {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{}/{name}", kind.qualified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;

    #[test]
    fn names_and_lists_look_like_kubectls() {
        let kinds = Kinds::builtin();
        let obj = json!({"metadata": {"name": "demo-vm"}});
        assert_eq!(
            name(kinds.resolve("vm").unwrap(), &obj),
            "virtualmachine.yun.dev/demo-vm"
        );
        let l = list(vec![obj.clone()]);
        assert_eq!(l["kind"], "List");
        assert_eq!(l["items"][0], obj);
        assert!(yaml(&l).starts_with("apiVersion: v1\n"));
        assert!(json(&obj).ends_with("}\n"));
    }
}
