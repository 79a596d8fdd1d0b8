use super::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use yun_fleet::fixtures::host_info;
use yun_fleet::{HostAllocation, HostImages, encode, keys};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn info_bytes(host: &str, metrics: Option<&str>, host_labels: &[(&str, &str)]) -> Vec<u8> {
    let info = yun_fleet::HostInfo {
        metrics_address: metrics.map(addr),
        labels: labels(host_labels),
        ..host_info(host)
    };
    encode("k", &info).unwrap()
}

fn put_info(r: &mut SdRegistry, host: &str, metrics: Option<&str>) -> bool {
    let key = keys::host_info(host).unwrap();
    r.apply(&key, Some(&info_bytes(host, metrics, &[])))
        .unwrap()
        .is_some()
}

fn put_images(r: &mut SdRegistry, host: &str) -> bool {
    let bytes = encode("k", &HostImages::new(BTreeMap::new())).unwrap();
    r.apply(&keys::host_images(host).unwrap(), Some(&bytes))
        .unwrap()
        .is_some()
}

fn listed(r: &SdRegistry) -> Vec<(String, String)> {
    let mut out: Vec<_> = r
        .targets()
        .map(|t| (t.host.clone(), t.address.to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn label_names_are_sanitized_to_prometheus_syntax() {
    assert_eq!(sanitize_label_name("hw-class"), "hw_class");
    assert_eq!(sanitize_label_name("example.com/gpu"), "example_com_gpu");
    assert_eq!(sanitize_label_name("9lives"), "_9lives");
    assert_eq!(sanitize_label_name(""), "_");
    assert_eq!(sanitize_label_name("zoné"), "zon_");
    for name in ["hw-class", "9lives", "", "a.b/c", "ünï"] {
        let s = sanitize_label_name(name);
        let mut chars = s.chars();
        let first = chars.next().unwrap();
        assert!(first.is_ascii_alphabetic() || first == '_', "{s}");
        assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{s}");
    }
}

#[test]
fn topology_labels_become_zone_rack_power_domain_and_others_are_prefixed() {
    let got = target_labels(
        "n1",
        &labels(&[
            ("topology.yun.dev/zone", "eu-1a"),
            ("topology.yun.dev/rack", "r12"),
            ("topology.yun.dev/power", "pdu-3"),
            ("hw-class", "gpu"),
            ("zone", "legacy"),
            ("empty", ""),
        ]),
    );
    assert_eq!(
        got,
        labels(&[
            ("host", "n1"),
            ("zone", "eu-1a"),
            ("rack", "r12"),
            ("power_domain", "pdu-3"),
            ("label_hw_class", "gpu"),
            // A plain `zone` label never overrides the topology one.
            ("label_zone", "legacy"),
        ])
    );
    // Two names that sanitize alike: the first in name order wins, every time.
    let got = target_labels("n1", &labels(&[("a-b", "dash"), ("a.b", "dot")]));
    assert_eq!(got.get("label_a_b").map(String::as_str), Some("dash"));
}

#[test]
fn rendering_is_sorted_deterministic_valid_json() {
    let a = Target::new("node-b", addr("10.0.0.2:9464"), &labels(&[]));
    let b = Target::new(
        "node-a",
        addr("[fd00::1]:9464"),
        &labels(&[("topology.yun.dev/zone", "z\"1")]),
    );
    let text = render([&a, &b]);
    assert_eq!(text, render([&b, &a]), "input order must not matter");
    assert_eq!(
        text,
        "[\n{\"targets\":[\"[fd00::1]:9464\"],\"labels\":{\"host\":\"node-a\",\"zone\":\"z\\\"1\"}},\n{\"targets\":[\"10.0.0.2:9464\"],\"labels\":{\"host\":\"node-b\"}}\n]\n"
    );
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed[0]["labels"]["zone"], "z\"1");
    assert_eq!(parse_targets(&text).unwrap(), vec![b, a]);
    assert_eq!(render(std::iter::empty()), "[]\n");
}

#[test]
fn hosts_without_an_address_are_left_out_and_counted() {
    let mut r = SdRegistry::new();
    assert!(put_info(&mut r, "n1", Some("10.0.0.1:9464")));
    // Nothing to list, but a change of the counts the writer warns about.
    assert!(put_info(&mut r, "n2", None));
    assert!(!put_info(&mut r, "n2", None));
    assert_eq!(listed(&r), vec![("n1".into(), "10.0.0.1:9464".into())]);
    let c = r.counts();
    assert_eq!((c.listed, c.without_address), (1, 1));
    assert_eq!(r.sample_without_address(5), vec!["n2"]);
    // Re-registering with the same facts changes nothing; a new address does.
    assert!(!put_info(&mut r, "n1", Some("10.0.0.1:9464")));
    assert!(put_info(&mut r, "n1", Some("10.0.0.9:9464")));
    // An agent that stops publishing an address is taken out.
    assert!(put_info(&mut r, "n1", None));
    assert!(listed(&r).is_empty());
}

#[test]
fn not_ready_hosts_stay_listed_until_their_records_are_gone() {
    let mut r = SdRegistry::new();
    put_info(&mut r, "n1", Some("10.0.0.1:9464"));
    put_images(&mut r, "n1");
    let info_key = keys::host_info("n1").unwrap();
    // Lease expired: still listed (Prometheus must see it down), counted as NotReady.
    assert_eq!(r.apply(&info_key, None).unwrap(), None);
    assert_eq!(listed(&r), vec![("n1".into(), "10.0.0.1:9464".into())]);
    assert_eq!(r.counts().listed_not_ready, 1);
    // VM records and unknown keys are not host records.
    let vm_key = format!("{}report/vms/u1", keys::host_prefix("n1").unwrap());
    assert_eq!(r.apply(&vm_key, None).unwrap(), None);
    assert_eq!(r.apply("/yun/v1/hosts/n1/whatever", None).unwrap(), None);
    // Decommissioned: all of its records deleted.
    assert_eq!(
        r.apply(&keys::host_images("n1").unwrap(), None).unwrap(),
        Some("n1".to_owned())
    );
    assert!(listed(&r).is_empty());
    // A host whose only record was `info` leaves with its lease.
    put_info(&mut r, "n2", Some("10.0.0.2:9464"));
    assert!(
        r.apply(&keys::host_info("n2").unwrap(), None)
            .unwrap()
            .is_some()
    );
    assert!(listed(&r).is_empty());
}

#[test]
fn remembered_addresses_cover_silent_hosts_after_a_restart_only() {
    let old = [
        Target::new("silent", addr("10.0.0.1:9464"), &labels(&[])),
        Target::new("gone", addr("10.0.0.2:9464"), &labels(&[])),
        Target::new("moved", addr("10.0.0.3:9464"), &labels(&[])),
    ];
    let mut r = SdRegistry::new();
    r.remember(old);
    // The scan: `silent` has only its alloc record, `moved` registered at a new address,
    // `gone` has no record at all.
    let alloc = encode("k", &HostAllocation::default()).unwrap();
    r.apply(&keys::host_alloc("silent").unwrap(), Some(&alloc))
        .unwrap();
    put_info(&mut r, "moved", Some("10.0.0.33:9464"));
    r.finish_scan();
    assert_eq!(
        listed(&r),
        vec![
            ("moved".into(), "10.0.0.33:9464".into()),
            ("silent".into(), "10.0.0.1:9464".into()),
        ]
    );
}

#[test]
fn shards_split_by_a_stable_hash_and_cover_every_host() {
    let targets: Vec<Target> = (0..1000)
        .map(|i| Target::new(&format!("node-{i:04}"), addr("10.0.0.1:9464"), &labels(&[])))
        .collect();
    let shards = render_shards(&targets, 4);
    assert_eq!(shards.len(), 4);
    let mut seen = 0;
    for (i, text) in shards.iter().enumerate() {
        let in_shard = parse_targets(text).unwrap();
        // Even enough (FNV-1a over 1000 names), and each host where shard_of says.
        assert!((150..350).contains(&in_shard.len()), "{}", in_shard.len());
        assert!(in_shard.iter().all(|t| shard_of(&t.host, 4) == i));
        let hosts: Vec<_> = in_shard.iter().map(|t| t.host.clone()).collect();
        assert!(hosts.is_sorted(), "shard {i} is not sorted");
        seen += in_shard.len();
    }
    assert_eq!(seen, 1000);
    // Stable across runs and machines: a fixed value.
    assert_eq!(shard_of("node-0001", 4), shard_of("node-0001", 4));
    assert_eq!(shard_of("a", 1000), 0xaf63dc4c8601ec8c_u64 as usize % 1000);
    assert_eq!(render_shards(&targets, 1), vec![render(&targets)]);
    for (i, text) in shards.iter().enumerate() {
        assert_eq!(&render_shard(&targets, 4, i), text);
    }
}

#[test]
fn label_values_are_escaped_as_json() {
    let odd = "quote\" back\\slash\nnew\tline\u{1}ctl ünicode";
    let t = Target::new("n1", addr("10.0.0.1:9464"), &labels(&[("note", odd)]));
    let parsed: serde_json::Value = serde_json::from_str(&render([&t])).unwrap();
    assert_eq!(parsed[0]["labels"]["label_note"], odd);
}

#[test]
fn shard_names_and_stale_shards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.json");
    assert_eq!(shard_paths(&path, 1), vec![path.clone()]);
    assert_eq!(
        shard_paths(&path, 3)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        ["agents.0.json", "agents.1.json", "agents.2.json"]
    );
    let t = Target::new("n1", addr("10.0.0.1:9464"), &labels(&[]));
    // Left by a run with one file and one with 5 shards; plus files that are not ours.
    for name in [
        "agents.json",
        "agents.4.json",
        "agents.x.json",
        "other.0.json",
    ] {
        std::fs::write(dir.path().join(name), render([&t])).unwrap();
    }
    let files = SdFiles::open(&path, 3);
    assert_eq!(files.previous_targets(), vec![t.clone(), t.clone()]);
    let mut removed = files.remove_stale().unwrap();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            dir.path().join("agents.4.json"),
            dir.path().join("agents.json")
        ]
    );
    assert!(dir.path().join("agents.x.json").exists());
    assert!(dir.path().join("other.0.json").exists());
}

#[test]
fn files_are_replaced_atomically_and_only_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.json");
    let mut files = SdFiles::open(&path, 1);
    assert_eq!(files.write(&["[]\n".to_owned()]).unwrap(), 1);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    assert_eq!(files.write(&["[]\n".to_owned()]).unwrap(), 0, "unchanged");
    // A controller restarted on an unchanged fleet does not rewrite either.
    let mut reopened = SdFiles::open(&path, 1);
    assert_eq!(reopened.write(&["[]\n".to_owned()]).unwrap(), 0);
    let t = Target::new("n1", addr("10.0.0.1:9464"), &labels(&[]));
    assert_eq!(reopened.write(&[render([&t])]).unwrap(), 1);
    // Replaced by rename (a new inode), never rewritten in place; no temp file left.
    let after = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    assert_ne!(inode, after);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), render([&t]));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("agents.json")]);
    // An unwritable directory is an error naming the file, not a panic.
    let err = write_atomically(&dir.path().join("missing/agents.json"), b"[]").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
