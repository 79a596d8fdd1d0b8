//! The `yunctl` binary against a real etcd: what a user of the CLI relies on — apply's
//! created/unchanged/configured, all-or-nothing validation, get's table, formats and names,
//! describe, delete waiting for finalizers, watch, config files, and one-line errors that never
//! show a panic. One etcd for every case; each case works in its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yun_store::{EtcdStore, EventType, InvolvedObject, KindInfo, ObjectName};
use yun_testkit::EtcdServer;

mod support;

use support::{Ctl, failed, image, one_line, succeeded, vm};

fn vms() -> KindInfo {
    KindInfo::of::<yun_crds::VirtualMachine>()
}

/// The store, for what the controller would do (status, finalizers, events).
struct Store {
    rt: tokio::runtime::Runtime,
    store: EtcdStore,
}

impl Store {
    fn connect(endpoint: &str) -> Store {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = rt
            .block_on(EtcdStore::connect(&[endpoint.to_owned()], None))
            .unwrap();
        Store { rt, store }
    }

    fn get(&self, ns: &str, name: &str) -> Option<Value> {
        let name = ObjectName::namespaced(ns, name);
        self.rt.block_on(self.store.get_raw(&vms(), &name)).unwrap()
    }

    fn edit(&self, ns: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut obj = self.get(ns, name).expect("the object exists");
        change(&mut obj);
        self.rt
            .block_on(self.store.replace_raw(&vms(), &obj))
            .unwrap();
    }
}

#[test]
fn yunctl_against_a_real_etcd() {
    let etcd = EtcdServer::start().expect("etcd starts");
    let ctl = Ctl {
        endpoint: etcd.endpoint(),
        home: tempfile::tempdir().unwrap(),
    };
    let store = Store::connect(&etcd.endpoint());
    apply_creates_then_reports_unchanged_then_configured(&ctl);
    get_shows_the_printer_columns_and_every_name_of_the_kind(&ctl, &store);
    describe_shows_identity_conditions_and_events(&ctl, &store);
    an_invalid_document_stops_the_whole_apply(&ctl, &store);
    delete_waits_for_finalizers_and_times_out_naming_them(&ctl, &store);
    watch_prints_a_row_for_each_change(&ctl);
    errors_are_one_line_with_exit_1_and_no_panic(&ctl);
    a_config_file_supplies_endpoint_and_namespace(&ctl);
}

fn apply_creates_then_reports_unchanged_then_configured(ctl: &Ctl) {
    let ns = "apply";
    let file = ctl.file(
        "apply.yaml",
        &format!("{}---\n{}", image(ns), vm("demo-vm", Some(ns), 1)),
    );
    let f = file.to_str().unwrap();
    assert_eq!(
        ctl.ok(&["apply", "-f", f]),
        "vmimage.yun.dev/yun-test created\nvirtualmachine.yun.dev/demo-vm created\n"
    );
    assert_eq!(
        ctl.ok(&["apply", "-f", f]),
        "vmimage.yun.dev/yun-test unchanged\nvirtualmachine.yun.dev/demo-vm unchanged\n"
    );
    ctl.file(
        "apply.yaml",
        &format!("{}---\n{}", image(ns), vm("demo-vm", Some(ns), 2)),
    );
    assert_eq!(
        ctl.ok(&["apply", "-f", f]),
        "vmimage.yun.dev/yun-test unchanged\nvirtualmachine.yun.dev/demo-vm configured\n"
    );
    let json: Value =
        serde_json::from_str(&ctl.ok(&["get", "vm", "demo-vm", "-n", ns, "-o", "json"])).unwrap();
    assert_eq!(json["metadata"]["generation"], 2);
    assert_eq!(json["spec"]["cpu"], 2);
}

/// The cell of `row` under `column` of `header` (columns start where their header does).
fn cell<'a>(header: &str, row: &'a str, column: &str) -> &'a str {
    let start = header
        .match_indices(column)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || header[..i].ends_with(' '))
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    row.get(start..)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
}

fn get_shows_the_printer_columns_and_every_name_of_the_kind(ctl: &Ctl, store: &Store) {
    let ns = "apply";
    let vm = store.get(ns, "demo-vm").unwrap();
    let mut with_status = vm.clone();
    with_status["status"] = json!({"phase": "Running", "host": "host-a"});
    store
        .rt
        .block_on(store.store.replace_status_raw(&vms(), &with_status))
        .unwrap();

    let table = ctl.ok(&["get", "vm", "-n", ns]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "HOST", "CPU", "MEMORY", "IMAGE", "AGE"]
    );
    for (column, want) in [
        ("NAME", "demo-vm"),
        ("PHASE", "Running"),
        ("HOST", "host-a"),
        ("CPU", "2"),
        ("MEMORY", "256"),
        ("IMAGE", "yun-test"),
    ] {
        assert_eq!(
            cell(lines[0], lines[1], column),
            want,
            "{column} in\n{table}"
        );
    }
    assert!(cell(lines[0], lines[1], "AGE").ends_with('s'), "{table}");

    // The same table by every name of the kind (but AGE, which may tick between two runs).
    let without_age = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| {
                l.rsplit_once("   ")
                    .map_or(l, |(rest, _)| rest)
                    .trim_end()
                    .to_owned()
            })
            .collect()
    };
    for name in ["vms", "virtualmachine", "VirtualMachines", "vm.yun.dev"] {
        let other = ctl.ok(&["get", name, "-n", ns]);
        assert_eq!(without_age(&other), without_age(&table), "get {name}");
    }
    let yaml: Value =
        serde_yaml::from_str(&ctl.ok(&["get", "vm", "-n", ns, "-o", "yaml"])).unwrap();
    assert_eq!(yaml["kind"], "List");
    assert_eq!(yaml["items"][0]["metadata"]["name"], "demo-vm");
    assert_eq!(yaml["items"][0]["status"]["host"], "host-a");
    assert_eq!(
        ctl.ok(&["get", "vmi", "-n", ns, "-o", "name"]),
        "vmimage.yun.dev/yun-test\n"
    );
    let wide = ctl.ok(&["get", "vm", "-n", ns, "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("QOS"), "{wide}");
    let all = ctl.ok(&["get", "vm", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("apply ") && l.contains("demo-vm")),
        "{all}"
    );

    let out = ctl.run(&["get", "vm", "-n", "empty"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "No resources found in empty namespace.\n"
    );
}

fn describe_shows_identity_conditions_and_events(ctl: &Ctl, store: &Store) {
    let ns = "apply";
    let vm = store.get(ns, "demo-vm").unwrap();
    let uid = vm["metadata"]["uid"].as_str().unwrap().to_owned();
    let mut with_status = vm.clone();
    with_status["status"]["conditions"] = json!([{
        "type": "Scheduled", "status": "True", "reason": "Placed",
        "message": "on host-a", "lastTransitionTime": "2025-06-01T11:00:00Z"
    }]);
    let involved = InvolvedObject {
        kind: "VirtualMachine".into(),
        namespace: Some(ns.into()),
        name: "demo-vm".into(),
        uid: uid.clone(),
    };
    store.rt.block_on(async {
        store
            .store
            .replace_status_raw(&vms(), &with_status)
            .await
            .unwrap();
        for _ in 0..3 {
            let placed = "placed on host-a";
            let ev = store.store.publish_event(
                &involved,
                EventType::Normal,
                "Scheduled",
                placed,
                "yun-controller",
            );
            ev.await.unwrap();
        }
    });
    let text = ctl.ok(&["describe", "vm", "demo-vm", "-n", ns]);
    for want in [
        format!("UID:                 {uid}"),
        "Name:                demo-vm".to_owned(),
        "Namespace:           apply".to_owned(),
        "Generation:          2".to_owned(),
        "Kind:                VirtualMachine".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == want), "{want:?} not in\n{text}");
    }
    let spec = text.split("Spec:\n").nth(1).unwrap();
    let spec: Vec<&str> = spec.lines().take_while(|l| l.starts_with("  ")).collect();
    assert!(
        spec.contains(&"  image: yun-test") && spec.contains(&"  cpu: 2"),
        "{text}"
    );
    let status = text.split("Status:\n").nth(1).unwrap();
    let status: Vec<&str> = status.lines().take_while(|l| l.starts_with("  ")).collect();
    assert!(status.contains(&"  phase: Running"), "{text}");
    assert!(!status.iter().any(|l| l.contains("conditions")), "{text}");
    let conditions = text.split("Conditions:\n").nth(1).unwrap();
    assert!(
        conditions.lines().nth(2).unwrap().contains("Scheduled"),
        "{text}"
    );
    let events = text.split("Events:\n").nth(1).expect("an Events table");
    let row = events.lines().nth(2).unwrap();
    assert!(
        row.contains("Normal") && row.contains("Scheduled"),
        "{text}"
    );
    assert!(
        row.contains("(x3 over") && row.contains("yun-controller"),
        "{text}"
    );
    assert!(row.ends_with("placed on host-a"), "{text}");

    let image = ctl.ok(&["describe", "vmi", "yun-test", "-n", ns]);
    assert!(image.contains("Events:  <none>"), "{image}");
}

fn an_invalid_document_stops_the_whole_apply(ctl: &Ctl, store: &Store) {
    let ns = "invalid";
    let file = ctl.file(
        "invalid.yaml",
        &format!("{}---\n{}", image(ns), vm("broken", Some(ns), 0)),
    );
    let f = file.to_str().unwrap();
    let stderr = ctl.fails(&["apply", "-f", f]);
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!("error: {f}: document 2")),
        "{stderr}"
    );
    assert!(line.contains("spec.cpu"), "{stderr}");
    // The valid image in the same file was not created either.
    let out = ctl.run(&["get", "vmi", "-n", ns]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(store.get(ns, "broken").is_none());

    // A directory is validated as a whole: one bad file refuses the good one.
    let dir = ctl.home.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a-image.yaml"), image(ns)).unwrap();
    std::fs::write(dir.join("b-vm.yml"), vm("broken", Some(ns), 0)).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    let stderr = ctl.fails(&["apply", "-f", dir.to_str().unwrap()]);
    assert!(
        one_line(&stderr).contains("b-vm.yml: document 1"),
        "{stderr}"
    );
    assert!(ctl.run(&["get", "vmi", "-n", ns]).stdout.is_empty());
    std::fs::write(dir.join("b-vm.yml"), vm("fixed", Some(ns), 1)).unwrap();
    assert_eq!(
        ctl.ok(&["apply", "-f", dir.to_str().unwrap()]),
        "vmimage.yun.dev/yun-test created\nvirtualmachine.yun.dev/fixed created\n"
    );
}

fn delete_waits_for_finalizers_and_times_out_naming_them(ctl: &Ctl, store: &Store) {
    let ns = "delete";
    let file = ctl.file(
        "delete.yaml",
        &format!(
            "{}---\n{}",
            vm("plain", Some(ns), 1),
            vm("held", Some(ns), 1)
        ),
    );
    ctl.ok(&["apply", "-f", file.to_str().unwrap()]);

    let started = Instant::now();
    assert_eq!(
        ctl.ok(&["delete", "vm", "plain", "-n", ns]),
        "virtualmachine.yun.dev \"plain\" deleted\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(store.get(ns, "plain").is_none());

    let finalizer = "yun.dev/test-cleanup";
    store.edit(ns, "held", |o| {
        o["metadata"]["finalizers"] = json!([finalizer])
    });
    let started = Instant::now();
    let stderr = ctl.fails(&["delete", "vm", "held", "-n", ns, "--timeout", "1s"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    let line = one_line(&stderr);
    assert!(
        line.starts_with("error: timed out waiting for virtualmachines \"held\""),
        "{stderr}"
    );
    assert!(line.contains(finalizer), "{stderr}");
    let held = store.get(ns, "held").expect("held by its finalizer");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    // --wait=false returns at once; the controller's removing the finalizer ends the deletion.
    let started = Instant::now();
    ctl.ok(&["delete", "vm", "held", "-n", ns, "--wait=false"]);
    assert!(started.elapsed() < Duration::from_secs(1));
    store.edit(ns, "held", |o| o["metadata"]["finalizers"] = json!([]));
    assert!(store.get(ns, "held").is_none());

    let stderr = ctl.fails(&["delete", "vm", "held", "-n", ns]);
    assert_eq!(
        one_line(&stderr),
        "Error from server (NotFound): virtualmachines \"held\" not found"
    );
    assert_eq!(
        ctl.ok(&["delete", "vm", "held", "-n", ns, "--ignore-not-found"]),
        ""
    );
    // By manifest: the objects it names go.
    ctl.ok(&["apply", "-f", file.to_str().unwrap()]);
    let out = ctl.ok(&["delete", "-f", file.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(store.get(ns, "plain").is_none() && store.get(ns, "held").is_none());
}

fn watch_prints_a_row_for_each_change(ctl: &Ctl) {
    let ns = "watch";
    let file = ctl.file("watch.yaml", &vm("w1", Some(ns), 1));
    ctl.ok(&["apply", "-f", file.to_str().unwrap()]);
    let mut child = ctl
        .command()
        .args([
            "get",
            "vm",
            "-n",
            ns,
            "--watch",
            "--etcd-endpoints",
            &ctl.endpoint,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a line from the watch")
    };
    let header = next();
    assert!(header.starts_with("NAME"), "{header}");
    let first = next();
    assert_eq!(cell(&header, &first, "CPU"), "1", "{first}");

    ctl.file("watch.yaml", &vm("w1", Some(ns), 3));
    ctl.ok(&["apply", "-f", file.to_str().unwrap()]);
    let changed = next();
    assert_eq!(cell(&header, &changed, "NAME"), "w1", "{changed}");
    assert_eq!(cell(&header, &changed, "CPU"), "3", "{changed}");
    ctl.ok(&["delete", "vm", "w1", "-n", ns]);
    let deleted = next();
    assert_eq!(cell(&header, &deleted, "NAME"), "w1", "{deleted}");

    child.kill().unwrap();
    child.wait().unwrap();
}

fn errors_are_one_line_with_exit_1_and_no_panic(ctl: &Ctl) {
    let stderr = ctl.fails(&["get", "foo"]);
    let line = one_line(&stderr);
    assert!(
        line.starts_with("error: the server doesn't have a resource type \"foo\""),
        "{line}"
    );
    assert!(line.contains("virtualmachines (vm, yvm)"), "{line}");
    let stderr = ctl.fails(&["get", "vm", "nope", "-n", "apply"]);
    assert_eq!(
        one_line(&stderr),
        "Error from server (NotFound): virtualmachines \"nope\" not found"
    );
    let stderr = ctl.fails(&["describe", "vm", "nope", "-n", "apply"]);
    assert_eq!(
        one_line(&stderr),
        "Error from server (NotFound): virtualmachines \"nope\" not found"
    );
    let stderr = ctl.fails(&["scale", "vm", "demo-vm", "-n", "apply", "--replicas", "3"]);
    assert_eq!(
        one_line(&stderr),
        "error: VirtualMachine has no scale subresource"
    );
    let stderr = ctl.fails(&["apply", "-f", "/nonexistent/x.yaml"]);
    assert!(
        one_line(&stderr).starts_with("error: cannot read /nonexistent/x.yaml"),
        "{stderr}"
    );

    // Nothing listening: still one line.
    let mut c = ctl.command();
    c.args(["get", "vm", "--etcd-endpoints", "http://127.0.0.1:1"]);
    one_line(&failed(c.output().unwrap(), &["get", "vm", "(dead etcd)"]));

    // Bad usage is clap's, exit 2.
    let out = ctl.run(&["get"]);
    assert_eq!(out.status.code(), Some(2));
}

fn a_config_file_supplies_endpoint_and_namespace(ctl: &Ctl) {
    let config = ctl.file(
        "yunctl.yaml",
        &format!("endpoints: [{}]\nnamespace: from-config\n", ctl.endpoint),
    );
    let manifest = ctl.file("cfg.yaml", &vm("cfg-vm", None, 1));
    let with_config = |args: &[&str]| {
        let mut c = ctl.command();
        c.arg("--config").arg(&config).args(args);
        c.output().unwrap()
    };
    let out = with_config(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(
        succeeded(out, &["apply"]),
        "virtualmachine.yun.dev/cfg-vm created\n"
    );
    let listed = succeeded(with_config(&["get", "vm", "-o", "name"]), &["get"]);
    assert_eq!(listed, "virtualmachine.yun.dev/cfg-vm\n");
    // -n beats the config's namespace.
    let other = with_config(&["get", "vm", "-n", "default", "-o", "name"]);
    assert_eq!(succeeded(other, &["get -n default"]), "");

    let mut c = ctl.command();
    c.env("YUNCTL_CONFIG", &config)
        .args(["get", "vm", "cfg-vm", "-o", "name"]);
    assert_eq!(succeeded(c.output().unwrap(), &["YUNCTL_CONFIG"]), listed);

    let broken = ctl.file("broken.yaml", "endpoints: 5\n");
    let mut c = ctl.command();
    c.arg("--config").arg(&broken).args(["get", "vm"]);
    let stderr = failed(c.output().unwrap(), &["--config broken.yaml"]);
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!("error: config file {}: endpoints:", path(&broken))),
        "{line}"
    );
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
