//! `yunctl describe KIND [NAME...]`: an object's metadata, spec and status for a person to read,
//! with its conditions and recent Events as tables.

use jiff::Timestamp;
use serde_json::Value;
use yun_store::{Event, EventType};

use crate::ctx::{self, Ctx};
use crate::error::CtlError;
use crate::output::print;
use crate::table::{Widths, age_since};

/// Values start in this column, past the longest key (`Deletion Timestamp:`).
const KEY_WIDTH: usize = 21;

pub async fn run(ctx: &Ctx, kind: &str, names: &[String]) -> Result<(), CtlError> {
    let kind = ctx.kinds.resolve(kind)?;
    let mut objects = Vec::new();
    let mut missing = Vec::new();
    if names.is_empty() {
        let namespace = Some(ctx.settings.namespace.as_str());
        objects = ctx.store.list_raw(&kind.info, namespace).await?.items;
    }
    for name in names {
        match ctx
            .store
            .get_raw(&kind.info, &ctx.object_name(kind, name))
            .await?
        {
            Some(obj) => objects.push(obj),
            None => missing.push(ctx::not_found(kind, name)),
        }
    }
    let mut texts = Vec::with_capacity(objects.len());
    for obj in &objects {
        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
        let events = match uid {
            Some(uid) => ctx.store.events_for(uid).await?,
            None => Vec::new(),
        };
        texts.push(render(obj, &events, Timestamp::now()));
    }
    print(&texts.join("\n\n"));
    match missing.len() {
        0 => Ok(()),
        _ => Err(CtlError::Many(missing)),
    }
}

/// The whole description of one object.
pub fn render(obj: &Value, events: &[Event], now: Timestamp) -> String {
    let mut out = String::new();
    metadata(&mut out, obj);
    section(&mut out, "Spec", obj.get("spec"));
    let mut status = obj.get("status").cloned().unwrap_or(Value::Null);
    let conditions = status
        .as_object_mut()
        .and_then(|s| s.remove("conditions"))
        .and_then(|c| c.as_array().cloned())
        .unwrap_or_default();
    section(&mut out, "Status", Some(&status));
    if !conditions.is_empty() {
        out.push_str("Conditions:\n");
        out.push_str(&conditions_table(&conditions));
    }
    events_section(&mut out, events, now);
    out
}

fn field(out: &mut String, key: &str, lines: &[String]) {
    let key = format!("{key}:");
    match lines {
        [] => out.push_str(&format!("{key:<KEY_WIDTH$}<none>\n")),
        [first, rest @ ..] => {
            out.push_str(&format!("{key:<KEY_WIDTH$}{first}\n"));
            for line in rest {
                out.push_str(&format!("{:KEY_WIDTH$}{line}\n", ""));
            }
        }
    }
}

/// A scalar as the value lines of a field (none when absent).
fn text(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.to_string()],
    }
}

/// A string map (labels, annotations) as one `key<sep>value` line per entry.
fn entries(map: Option<&Value>, sep: &str) -> Vec<String> {
    let map = map.and_then(Value::as_object).into_iter().flatten();
    map.map(|(k, v)| format!("{k}{sep}{}", v.as_str().unwrap_or_default()))
        .collect()
}

fn items(list: Option<&Value>, each: impl Fn(&Value) -> String) -> Vec<String> {
    let list = list.and_then(Value::as_array).into_iter().flatten();
    list.map(each).collect()
}

fn metadata(out: &mut String, obj: &Value) {
    let meta = |key: &str| obj.get("metadata").and_then(|m| m.get(key));
    field(out, "Name", &text(meta("name")));
    if meta("namespace").is_some() {
        field(out, "Namespace", &text(meta("namespace")));
    }
    field(out, "Labels", &entries(meta("labels"), "="));
    field(out, "Annotations", &entries(meta("annotations"), ": "));
    field(out, "API Version", &text(obj.get("apiVersion")));
    field(out, "Kind", &text(obj.get("kind")));
    for (title, key) in [
        ("UID", "uid"),
        ("Generation", "generation"),
        ("Resource Version", "resourceVersion"),
        ("Creation Timestamp", "creationTimestamp"),
    ] {
        field(out, title, &text(meta(key)));
    }
    if meta("deletionTimestamp").is_some() {
        field(out, "Deletion Timestamp", &text(meta("deletionTimestamp")));
    }
    let finalizers = items(meta("finalizers"), |f| text(Some(f)).concat());
    field(out, "Finalizers", &finalizers);
    field(
        out,
        "Owner References",
        &items(meta("ownerReferences"), owner),
    );
}

/// `VmImage/debian (uid 1234, controller)`.
fn owner(r: &Value) -> String {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
    let controller = r.get("controller").and_then(Value::as_bool) == Some(true);
    format!(
        "{}/{} (uid {}{})",
        s("kind"),
        s("name"),
        s("uid"),
        if controller { ", controller" } else { "" }
    )
}

/// `Spec:` or `Status:` and the value as YAML indented under it (`<none>` when absent or empty).
fn section(out: &mut String, title: &str, value: Option<&Value>) {
    let empty = match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        _ => false,
    };
    if empty {
        field(out, title, &[]);
        return;
    }
    out.push_str(&format!("{title}:\n"));
    let yaml = value.map(crate::output::yaml).unwrap_or_default();
    for line in yaml.lines() {
        out.push_str(&format!("  {line}\n"));
    }
}

/// An indented table, kubectl's describe style: header, dashes, rows.
fn indented_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all = vec![
        header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
        header.iter().map(|h| "-".repeat(h.len())).collect(),
    ];
    all.extend(rows);
    crate::table::render(&all, &mut Widths::default())
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

fn conditions_table(conditions: &[Value]) -> String {
    let s = |c: &Value, k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let rows = conditions
        .iter()
        .map(|c| {
            ["type", "status", "reason", "message", "lastTransitionTime"]
                .iter()
                .map(|k| s(c, k))
                .collect()
        })
        .collect();
    indented_table(
        &["Type", "Status", "Reason", "Message", "Last Transition"],
        rows,
    )
}

fn events_section(out: &mut String, events: &[Event], now: Timestamp) {
    if events.is_empty() {
        out.push_str("Events:  <none>\n");
        return;
    }
    out.push_str("Events:\n");
    let rows = events.iter().map(|e| event_row(e, now)).collect();
    out.push_str(&indented_table(
        &["Type", "Reason", "Age", "From", "Message"],
        rows,
    ));
}

/// One Event: a repeated one shows its count and how long it has been repeating.
fn event_row(e: &Event, now: Timestamp) -> Vec<String> {
    let mut age = age_since(&e.last_timestamp, now);
    if e.count > 1 {
        let first = age_since(&e.first_timestamp, now);
        age = format!("{age} (x{} over {first})", e.count);
    }
    let type_ = match e.type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    };
    vec![
        type_.to_owned(),
        e.reason.clone(),
        age,
        e.source.clone(),
        e.message.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use yun_store::InvolvedObject;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn vm() -> Value {
        json!({
            "apiVersion": "yun.dev/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {
                "name": "web-1", "namespace": "team-a", "uid": "u-1", "generation": 2,
                "resourceVersion": "41", "creationTimestamp": "2025-06-01T11:00:00Z",
                "labels": {"app": "web", "tier": "front"},
                "finalizers": ["yun.dev/placement"],
                "ownerReferences": [{"kind": "VmPool", "name": "p", "uid": "u-0", "controller": true}]
            },
            "spec": {"cpu": 2, "image": "debian"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Scheduled", "status": "True", "reason": "Placed",
                                "message": "on rack1-h3", "lastTransitionTime": "2025-06-01T11:01:00Z"}]
            }
        })
    }

    fn event(count: u32) -> Event {
        Event {
            involved: InvolvedObject {
                kind: "VirtualMachine".into(),
                namespace: Some("team-a".into()),
                name: "web-1".into(),
                uid: "u-1".into(),
            },
            type_: EventType::Warning,
            reason: "ImagePullFailed".into(),
            message: "checksum mismatch".into(),
            source: "yun-agent".into(),
            count,
            first_timestamp: "2025-06-01T11:50:00Z".into(),
            last_timestamp: "2025-06-01T11:59:00Z".into(),
        }
    }

    #[test]
    fn metadata_spec_and_status_read_like_kubectl_describe() {
        let text = render(&vm(), &[], now());
        for line in [
            "Name:                web-1",
            "Namespace:           team-a",
            "Labels:              app=web",
            "                     tier=front",
            "Annotations:         <none>",
            "API Version:         yun.dev/v1alpha1",
            "UID:                 u-1",
            "Generation:          2",
            "Resource Version:    41",
            "Finalizers:          yun.dev/placement",
            "Owner References:    VmPool/p (uid u-0, controller)",
            "Spec:",
            "  cpu: 2",
            "Status:",
            "  phase: Running",
            "Events:  <none>",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("Deletion Timestamp"), "{text}");
        // Conditions get their own table, not the status YAML.
        assert!(!text.contains("  conditions:"), "{text}");
        let conditions = text.split("Conditions:\n").nth(1).unwrap();
        let mut rows = conditions.lines();
        let header: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Type", "Status", "Reason", "Message", "Last", "Transition"]
        );
        assert!(rows.next().unwrap().trim_start().starts_with("----"));
        let row: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
        assert_eq!(row[..3], ["Scheduled", "True", "Placed"]);
    }

    #[test]
    fn events_show_age_source_and_repeats() {
        let text = render(&vm(), &[event(1)], now());
        let events = text.split("Events:\n").nth(1).unwrap();
        let row = events.lines().nth(2).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[..4],
            ["Warning", "ImagePullFailed", "60s", "yun-agent"]
        );
        let text = render(&vm(), &[event(5)], now());
        assert!(text.contains("60s (x5 over 10m)"), "{text}");
    }

    #[test]
    fn a_deleting_object_shows_when_and_a_bare_one_shows_none() {
        let mut obj = vm();
        obj["metadata"]["deletionTimestamp"] = json!("2025-06-01T11:59:00Z");
        let text = render(&obj, &[], now());
        assert!(
            text.contains("Deletion Timestamp:  2025-06-01T11:59:00Z"),
            "{text}"
        );
        let bare = json!({"kind": "Host", "metadata": {"name": "h1"}});
        let text = render(&bare, &[], now());
        assert!(!text.contains("Namespace:"), "{text}");
        assert!(text.contains("Spec:                <none>"), "{text}");
        assert!(text.contains("Status:              <none>"), "{text}");
    }
}
