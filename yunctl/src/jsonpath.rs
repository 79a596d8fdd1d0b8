//! The JSONPath subset CRDs use in printer columns and scale paths: `.a.b`, `[n]`, `[*]`,
//! `['key.with.dots']` and one equality filter, `[?(@.type=="Ready")]`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
    /// Every element of an array (or value of an object).
    All,
    /// The array elements whose `path` equals `value`.
    Filter {
        path: Vec<String>,
        value: Value,
    },
}

/// Parses a path; kubectl's `{...}` braces around it are accepted.
pub fn parse(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("invalid JSONPath {path:?}: {why}");
    let mut rest = path.trim();
    if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        rest = inner;
    }
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix('.') {
            let end = tail.find(['.', '[']).unwrap_or(tail.len());
            if end == 0 {
                return Err(bad("empty field name"));
            }
            steps.push(Step::Field(tail[..end].to_owned()));
            rest = &tail[end..];
        } else if let Some(tail) = rest.strip_prefix('[') {
            let end = tail.find(']').ok_or_else(|| bad("unclosed ["))?;
            steps.push(bracket(&tail[..end]).ok_or_else(|| bad("unsupported [...]"))?);
            rest = &tail[end + 1..];
        } else {
            return Err(bad("expected . or ["));
        }
    }
    Ok(steps)
}

fn bracket(inside: &str) -> Option<Step> {
    let inside = inside.trim();
    if inside == "*" {
        return Some(Step::All);
    }
    if let Ok(n) = inside.parse() {
        return Some(Step::Index(n));
    }
    if let Some(key) = unquote(inside) {
        return Some(Step::Field(key.to_owned()));
    }
    let cond = inside.strip_prefix("?(")?.strip_suffix(')')?;
    let (lhs, rhs) = cond.split_once("==")?;
    let path = lhs.trim().strip_prefix("@.")?;
    let value = match unquote(rhs.trim()) {
        Some(s) => Value::String(s.to_owned()),
        None => serde_json::from_str(rhs.trim()).ok()?,
    };
    Some(Step::Filter {
        path: path.split('.').map(str::to_owned).collect(),
        value,
    })
}

fn unquote(s: &str) -> Option<&str> {
    ['"', '\'']
        .iter()
        .find_map(|q| s.strip_prefix(*q)?.strip_suffix(*q))
}

/// Every value `steps` reaches in `obj` (none when a part is missing).
pub fn eval<'a>(obj: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut current = vec![obj];
    for step in steps {
        current = current.into_iter().flat_map(|v| apply(v, step)).collect();
    }
    current
}

fn apply<'a>(v: &'a Value, step: &Step) -> Vec<&'a Value> {
    match step {
        Step::Field(f) => v.get(f).into_iter().collect(),
        Step::Index(i) => v.get(i).into_iter().collect(),
        Step::All => match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(o) => o.values().collect(),
            _ => Vec::new(),
        },
        Step::Filter { path, value } => v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| path.iter().try_fold(*e, |cur, f| cur.get(f)) == Some(value))
            .collect(),
    }
}

/// Sets the value at a path of fields (creating missing objects), as a scale does.
pub fn set(obj: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let steps = parse(path)?;
    let fields: Vec<&str> = steps
        .iter()
        .map(|s| match s {
            Step::Field(f) => Ok(f.as_str()),
            _ => Err(format!("{path:?}: only a path of fields can be set")),
        })
        .collect::<Result<_, _>>()?;
    let Some((last, parents)) = fields.split_last() else {
        return Err(format!("{path:?}: empty path"));
    };
    let mut cur = obj;
    for f in parents {
        cur = object(cur, path)?
            .entry(*f)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    object(cur, path)?.insert((*last).to_owned(), value);
    Ok(())
}

fn object<'a>(v: &'a mut Value, path: &str) -> Result<&'a mut Map<String, Value>, String> {
    v.as_object_mut()
        .ok_or_else(|| format!("{path:?}: a part of the path is not an object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
        eval(obj, &parse(path).unwrap())
    }

    #[test]
    fn dotted_paths_indexes_and_filters() {
        let obj = json!({
            "spec": {"disk": {"format": "qcow2"}, "nics": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [
                {"type": "Scheduled", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]}
        });
        assert_eq!(find(&obj, ".spec.disk.format"), [&json!("qcow2")]);
        assert_eq!(find(&obj, "{.spec.nics[1].ip}"), [&json!("10.0.0.3")]);
        assert_eq!(find(&obj, ".spec.nics[*].ip").len(), 2);
        assert_eq!(
            find(&obj, ".metadata.labels['app.kubernetes.io/name']"),
            [&json!("web")]
        );
        assert_eq!(
            find(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            [&json!("False")]
        );
        assert!(find(&obj, ".status.phase").is_empty());
        assert!(find(&obj, ".spec.nics[7].ip").is_empty());
        assert!(find(&obj, ".spec.disk.format.deeper").is_empty());
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in ["spec", ".spec..x", ".a[", ".a[?(@.x>1)]"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_creates_the_missing_objects_on_the_way() {
        let mut obj = json!({"spec": {"cpu": 1}});
        set(&mut obj, ".spec.replicas", json!(3)).unwrap();
        set(&mut obj, ".spec.pool.size", json!(2)).unwrap();
        assert_eq!(
            obj,
            json!({"spec": {"cpu": 1, "replicas": 3, "pool": {"size": 2}}})
        );
        assert!(set(&mut obj, ".spec.cpu.x", json!(1)).is_err());
        assert!(set(&mut obj, ".spec.list[0]", json!(1)).is_err());
    }
}
