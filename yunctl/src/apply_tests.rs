use std::path::PathBuf;

use super::*;
use crate::cli::GlobalArgs;
use crate::config::{ConfigFile, merge};

fn settings(namespace: Option<&str>) -> Settings {
    merge(
        ConfigFile::default(),
        &GlobalArgs {
            namespace: namespace.map(str::to_owned),
            ..GlobalArgs::default()
        },
    )
}

fn source(name: &str, text: &str) -> Source {
    Source {
        path: PathBuf::from(name),
        text: text.to_owned(),
    }
}

const VM: &str = "\
apiVersion: yun.dev/v1alpha1
kind: VirtualMachine
metadata: {name: vm1, labels: {app: web}}
spec: {image: img, cpu: 1, memoryMiB: 128}
";

const HOST: &str = "\
apiVersion: yun.dev/v1alpha1
kind: Host
metadata: {name: h1}
spec: {}
";

#[test]
fn a_document_without_namespace_goes_to_the_working_one() {
    let kinds = Kinds::builtin();
    let p = plan(&kinds, &[source("a.yaml", VM)], &settings(Some("team-a"))).unwrap();
    assert_eq!(p[0].name, ObjectName::namespaced("team-a", "vm1"));
    assert_eq!(p[0].object["metadata"]["namespace"], "team-a");
    let p = plan(&kinds, &[source("a.yaml", VM)], &settings(None)).unwrap();
    assert_eq!(p[0].name, ObjectName::namespaced("default", "vm1"));
}

#[test]
fn a_cluster_scoped_object_has_no_namespace() {
    let kinds = Kinds::builtin();
    let p = plan(&kinds, &[source("h.yaml", HOST)], &settings(Some("x"))).unwrap();
    assert_eq!(p[0].name, ObjectName::cluster("h1"));
    assert!(p[0].object["metadata"].get("namespace").is_none());
}

#[test]
fn one_invalid_document_refuses_every_file_and_names_file_and_field() {
    let kinds = Kinds::builtin();
    let bad = VM.replace("cpu: 1", "cpu: 0");
    let e = plan(
        &kinds,
        &[source("good.yaml", VM), source("bad.yaml", &bad)],
        &settings(None),
    )
    .unwrap_err();
    let lines = e.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error: bad.yaml: document 1"),
        "{lines:?}"
    );
    assert!(lines[0].contains("spec.cpu"), "{lines:?}");
}

#[test]
fn an_object_in_another_namespace_than_the_flag_is_refused() {
    let kinds = Kinds::builtin();
    let text = VM.replace("name: vm1,", "name: vm1, namespace: team-a,");
    let e = plan(
        &kinds,
        &[source("a.yaml", &text)],
        &settings(Some("team-b")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--namespace=team-a"), "{e}");
    // From the config file (no flag) the object's own namespace wins.
    let p = plan(&kinds, &[source("a.yaml", &text)], &settings(None)).unwrap();
    assert_eq!(p[0].name.namespace.as_deref(), Some("team-a"));
}
