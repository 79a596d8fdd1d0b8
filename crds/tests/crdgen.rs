//! `crdgen`: the committed CRD YAML is current; `--out`, `--check` and stdout modes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::path::Path;
use std::process::Command;

fn crdgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crdgen"))
}

const FILES: [&str; 5] = [
    "hosts.yun.dev.yaml",
    "vmimages.yun.dev.yaml",
    "networks.yun.dev.yaml",
    "securitygroups.yun.dev.yaml",
    "virtualmachines.yun.dev.yaml",
];

#[test]
fn committed_manifests_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let out = crdgen().arg("--check").arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "crds/manifests is stale; run `cargo run -p yun-crds --bin crdgen -- --out crds/manifests`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn crdgen_out_then_check_and_detects_drift() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        crdgen()
            .arg("--out")
            .arg(dir.path())
            .status()
            .unwrap()
            .success()
    );
    for f in FILES {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    assert!(
        crdgen()
            .arg("--check")
            .arg(dir.path())
            .status()
            .unwrap()
            .success()
    );

    let stale = dir.path().join("vmimages.yun.dev.yaml");
    let text = std::fs::read_to_string(&stale)
        .unwrap()
        .replace("shortNames:\n    - vmi", "shortNames:\n    - img");
    std::fs::write(&stale, text).unwrap();
    std::fs::remove_file(dir.path().join("hosts.yun.dev.yaml")).unwrap();
    let out = crdgen().arg("--check").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vmimages.yun.dev.yaml is out of date"),
        "{stderr}"
    );
    assert!(stderr.contains("+     - img"), "{stderr}");
    assert!(
        stderr.contains("hosts.yun.dev.yaml: cannot read"),
        "{stderr}"
    );
    assert!(!stderr.contains("virtualmachines.yun.dev.yaml"), "{stderr}");
}

#[test]
fn crdgen_prints_every_crd_as_multi_document_yaml() {
    let out = crdgen().output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "hosts.yun.dev",
            "vmimages.yun.dev",
            "networks.yun.dev",
            "securitygroups.yun.dev",
            "volumes.yun.dev",
            "virtualmachines.yun.dev",
            "deviceidentities.yun.dev"
        ]
    );
}
