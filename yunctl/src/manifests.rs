//! Manifest files for `apply -f` and `delete -f`: which files a path means, which namespace each
//! document goes to, and the JSON the store keeps of a validated object.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use yun_crds::Manifest;

use crate::error::CtlError;

/// A file and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// The files `-f` paths name (a directory: its `*.yaml`/`*.yml` files, sorted, not recursive),
/// read.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, CtlError> {
    let mut sources = Vec::new();
    for path in paths {
        for file in expand(path)? {
            let text = std::fs::read_to_string(&file).map_err(|cause| CtlError::Read {
                path: file.clone(),
                cause,
            })?;
            sources.push(Source { path: file, text });
        }
    }
    Ok(sources)
}

fn expand(path: &Path) -> Result<Vec<PathBuf>, CtlError> {
    let read_err = |cause| CtlError::Read {
        path: path.to_owned(),
        cause,
    };
    if !path.metadata().map_err(read_err)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_manifest(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_manifest(path: &Path) -> bool {
    path.is_file()
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

/// What identifies a document's object, read leniently (for `delete -f`, which must work on a
/// manifest that no longer validates, and to see which documents name no namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// The object of every non-empty document, or what is wrong with the first that has none.
pub fn scan(text: &str) -> Result<Vec<DocRef>, String> {
    let mut refs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| format!("document {document}: invalid YAML: {e}"))?;
        if value.is_null() {
            continue;
        }
        let s = |v: Option<&serde_yaml::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
        let meta = value.get("metadata");
        let missing = |what: &str| format!("document {document}: {what} is missing");
        refs.push(DocRef {
            api_version: s(value.get("apiVersion")).ok_or_else(|| missing("apiVersion"))?,
            kind: s(value.get("kind")).ok_or_else(|| missing("kind"))?,
            name: s(meta.and_then(|m| m.get("name"))).ok_or_else(|| missing("metadata.name"))?,
            namespace: s(meta.and_then(|m| m.get("namespace"))),
        });
    }
    Ok(refs)
}

/// `(kind, name)` of the documents that name no namespace: they go to the working namespace
/// (the parser defaults them to `default`, which is only right without `-n` or a config).
pub fn without_namespace(text: &str) -> BTreeSet<(String, String)> {
    scan(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.namespace.is_none())
        .map(|d| (d.kind, d.name))
        .collect()
}

/// The namespace of a namespaced object: its own, else the working one. As kubectl, an object
/// naming a namespace other than the one `-n` asked for is refused rather than silently moved.
pub fn namespace_for(own: Option<&str>, working: &str, from_flag: bool) -> Result<String, String> {
    match own {
        None => Ok(working.to_owned()),
        Some(ns) if from_flag && ns != working => Err(format!(
            "the namespace from the provided object {ns:?} does not match the namespace \
             {working:?}. You must pass '--namespace={ns}' to perform this operation."
        )),
        Some(ns) => Ok(ns.to_owned()),
    }
}

/// The validated object as JSON, with its apiVersion and kind.
pub fn manifest_json(m: &Manifest) -> Result<Value, serde_json::Error> {
    let mut value = match m {
        Manifest::Host(o) => serde_json::to_value(o),
        Manifest::VmImage(o) => serde_json::to_value(o),
        Manifest::Network(o) => serde_json::to_value(o),
        Manifest::SecurityGroup(o) => serde_json::to_value(o),
        Manifest::Volume(o) => serde_json::to_value(o),
        Manifest::VirtualMachine(o) => serde_json::to_value(o),
        Manifest::DeviceIdentity(o) => serde_json::to_value(o),
    }?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("apiVersion".into(), yun_crds::API_VERSION.into());
        obj.insert("kind".into(), m.kind().into());
        if obj.get("status").is_some_and(Value::is_null) {
            obj.remove("status");
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: yun.dev/v1alpha1
kind: VmImage
metadata: {name: img, namespace: team-a}
spec: {os: x, disk: {source: 'file:///x', format: qcow2, sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}
---
---
apiVersion: yun.dev/v1alpha1
kind: VirtualMachine
metadata: {name: vm1}
spec: {image: img, cpu: 1, memoryMiB: 128}
";

    #[test]
    fn scan_reads_identities_and_skips_empty_documents() {
        let refs = scan(TWO).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].namespace.as_deref(), Some("team-a"));
        assert_eq!(
            (refs[1].kind.as_str(), refs[1].name.as_str()),
            ("VirtualMachine", "vm1")
        );
        assert_eq!(
            without_namespace(TWO),
            BTreeSet::from([("VirtualMachine".to_owned(), "vm1".to_owned())])
        );
        let e = scan("kind: VirtualMachine\napiVersion: v\nmetadata: {}\n").unwrap_err();
        assert_eq!(e, "document 1: metadata.name is missing");
    }

    #[test]
    fn namespaces_follow_kubectl() {
        assert_eq!(namespace_for(None, "team-b", false).unwrap(), "team-b");
        assert_eq!(
            namespace_for(Some("team-a"), "team-b", false).unwrap(),
            "team-a"
        );
        assert_eq!(
            namespace_for(Some("team-b"), "team-b", true).unwrap(),
            "team-b"
        );
        let e = namespace_for(Some("team-a"), "team-b", true).unwrap_err();
        assert!(e.contains("--namespace=team-a"), "{e}");
    }

    #[test]
    fn a_validated_manifest_becomes_the_stores_json() {
        let ms = yun_crds::parse_manifests(TWO).unwrap();
        let vm = manifest_json(&ms[1]).unwrap();
        assert_eq!(vm["apiVersion"], "yun.dev/v1alpha1");
        assert_eq!(vm["kind"], "VirtualMachine");
        assert_eq!(vm["metadata"]["name"], "vm1");
        assert_eq!(vm["spec"]["cpu"], 1);
        assert!(vm.get("status").is_none());
    }

    #[test]
    fn a_directory_means_its_yaml_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.yaml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let files = expand(dir.path()).unwrap();
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        assert!(expand(&dir.path().join("missing.yaml")).is_err());
    }
}
