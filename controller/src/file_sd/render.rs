//! Pure rendering of Prometheus `file_sd` target files: which labels a host's target carries,
//! the JSON text, and which shard a host goes to. No I/O here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use yun_fleet::Topology;

/// The target label naming the host (its fleet-bus name).
pub const HOST_LABEL: &str = "host";
/// Prefix of the target labels copied from the host's other labels (as Kubernetes service
/// discovery's `__meta_kubernetes_node_label_`): it keeps them clear of `host`, `zone`, `job`,
/// `instance` and of Prometheus' reserved `__` names.
pub const HOST_LABEL_PREFIX: &str = "label_";

/// One agent as Prometheus scrapes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub address: SocketAddr,
    /// Prometheus label name → value; always holds [`HOST_LABEL`].
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// The target of `host`, published at `address` with the agent's `host_labels`.
    pub fn new(host: &str, address: SocketAddr, host_labels: &BTreeMap<String, String>) -> Target {
        Target {
            host: host.to_owned(),
            address,
            labels: target_labels(host, host_labels),
        }
    }
}

/// The target label a failure-domain level is exposed as.
pub fn topology_label(level: Topology) -> &'static str {
    match level {
        Topology::Zone => "zone",
        Topology::Rack => "rack",
        Topology::Power => "power_domain",
    }
}

/// `name` made a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): every other character
/// becomes `_`, and a leading digit (or an empty name) gets a `_` in front.
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => c,
        _ => '_',
    }));
    out
}

/// The target labels of `host`: `host`, the failure domains (`topology.yun.dev/zone` → `zone`,
/// `…/rack` → `rack`, `…/power` → `power_domain`), and every other host label as
/// `label_<sanitized name>`. Two host labels that sanitize to one name: the first in name
/// order wins. Empty values are left out (Prometheus treats them as absent anyway).
pub fn target_labels(
    host: &str,
    host_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(HOST_LABEL.to_owned(), host.to_owned());
    for (name, value) in host_labels {
        if value.is_empty() {
            continue;
        }
        let label = match Topology::ALL.into_iter().find(|t| t.label() == name) {
            Some(level) => topology_label(level).to_owned(),
            None => format!("{HOST_LABEL_PREFIX}{}", sanitize_label_name(name)),
        };
        out.entry(label).or_insert_with(|| value.clone());
    }
    out
}

/// Appends `text` as a JSON string literal (RFC 8259 escaping), without allocating: rendering
/// 20,000 targets is mostly this.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(text);
    } else {
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// The `file_sd` JSON for `targets`: one target group per host, sorted by host name, one group
/// per line (a change shows as a one-line diff). The same targets always give the same bytes.
pub fn render<'a>(targets: impl IntoIterator<Item = &'a Target>) -> String {
    let mut sorted: Vec<&Target> = targets.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.host.cmp(&b.host).then(a.address.cmp(&b.address)));
    render_sorted(&sorted)
}

/// [`render`] for targets already in host order.
pub fn render_sorted(targets: &[&Target]) -> String {
    if targets.is_empty() {
        return "[]\n".to_owned();
    }
    let mut out = String::with_capacity(targets.len() * 160);
    out.push_str("[\n");
    for (i, t) in targets.iter().enumerate() {
        // Writing into a String cannot fail.
        let _ = write!(out, "{{\"targets\":[\"{}\"],\"labels\":{{", t.address);
        for (j, (name, value)) in t.labels.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_json_string(&mut out, name);
            out.push(':');
            push_json_string(&mut out, value);
        }
        out.push_str("}}");
        out.push_str(if i + 1 < targets.len() { ",\n" } else { "\n" });
    }
    out.push_str("]\n");
    out
}

/// The shard (of `shards`) `host` is written to: FNV-1a of the name, so a host stays in its
/// shard across restarts, versions and machines, and shards are even in size.
pub fn shard_of(host: &str, shards: usize) -> usize {
    let hash = host.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    match u64::try_from(shards.max(1)) {
        Ok(n) => usize::try_from(hash % n).unwrap_or(0),
        Err(_) => 0,
    }
}

/// `targets` rendered into `shards` files: entry `i` is shard `i`'s text (an empty shard is
/// `[]`, so a host leaving its shard empties it).
pub fn render_shards<'a>(
    targets: impl IntoIterator<Item = &'a Target>,
    shards: usize,
) -> Vec<String> {
    let shards = shards.max(1);
    let mut sorted: Vec<&Target> = targets.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.host.cmp(&b.host).then(a.address.cmp(&b.address)));
    if shards == 1 {
        return vec![render_sorted(&sorted)];
    }
    let mut buckets: Vec<Vec<&Target>> = vec![Vec::new(); shards];
    for t in sorted {
        buckets[shard_of(&t.host, shards)].push(t);
    }
    buckets.iter().map(|b| render_sorted(b)).collect()
}

/// Shard `index`'s text alone (of `shards`): after a change, only the shards it touched are
/// rendered and written.
pub fn render_shard<'a>(
    targets: impl IntoIterator<Item = &'a Target>,
    shards: usize,
    index: usize,
) -> String {
    let mut mine: Vec<&Target> = targets
        .into_iter()
        .filter(|t| shard_of(&t.host, shards) == index)
        .collect();
    mine.sort_unstable_by(|a, b| a.host.cmp(&b.host).then(a.address.cmp(&b.address)));
    render_sorted(&mine)
}

/// Reads targets back from a `file_sd` file this module wrote (the controller's memory of
/// silent hosts across a restart). Groups without a `host` label or a parsable address are
/// skipped; `None` when the text is not a JSON array at all.
pub fn parse_targets(text: &str) -> Option<Vec<Target>> {
    #[derive(serde::Deserialize)]
    struct Group {
        #[serde(default)]
        targets: Vec<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    let groups: Vec<Group> = serde_json::from_str(text).ok()?;
    Some(
        groups
            .into_iter()
            .filter_map(|g| {
                let host = g.labels.get(HOST_LABEL)?.clone();
                let address = g.targets.first()?.parse().ok()?;
                Some(Target {
                    host,
                    address,
                    labels: g.labels,
                })
            })
            .collect(),
    )
}
