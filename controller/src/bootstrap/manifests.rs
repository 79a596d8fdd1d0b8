//! Reads the manifests directory. Each file is all-or-nothing: a file with any invalid document
//! contributes nothing (and nothing from it reaches etcd), and the error names file and field.

use super::objects::Objects;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yun_crds::{Manifest, parse_manifests};

#[derive(Debug, Default)]
pub struct DirContents {
    /// The objects of the accepted files.
    pub objects: Objects,
    /// Refused files with the reason.
    pub errors: BTreeMap<PathBuf, String>,
    /// The file each accepted object came from, by (kind, namespace or "", name).
    pub sources: BTreeMap<(String, String, String), PathBuf>,
}

fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let ext = path.extension().and_then(|e| e.to_str());
    !hidden && matches!(ext, Some("yaml" | "yml"))
}

/// Parses and validates one file's text.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Manifest>, String> {
    parse_manifests(text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads every `*.yaml`/`*.yml` file in `dir` (not recursive, sorted by name). A missing or
/// unreadable directory is an error: the controller would otherwise delete everything.
pub fn read_dir(dir: &Path) -> std::io::Result<DirContents> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_manifest(p))
        .collect();
    paths.sort();
    let mut out = DirContents::default();
    let mut seen: BTreeMap<(String, String, String), PathBuf> = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        let docs = match parse_file(&path, &text) {
            Ok(d) => d,
            Err(e) => {
                out.errors.insert(path, e);
                continue;
            }
        };
        let dup = docs.iter().find_map(|m| {
            let key = (
                m.kind().to_owned(),
                m.namespace().unwrap_or("").to_owned(),
                m.name().to_owned(),
            );
            seen.get(&key).map(|first| (key, first.clone()))
        });
        if let Some(((kind, ns, name), first)) = dup {
            out.errors.insert(
                path.clone(),
                format!(
                    "{}: {kind} {ns}/{name} is already defined in {}",
                    path.display(),
                    first.display()
                ),
            );
            continue;
        }
        for m in docs {
            seen.insert(
                (
                    m.kind().to_owned(),
                    m.namespace().unwrap_or("").to_owned(),
                    m.name().to_owned(),
                ),
                path.clone(),
            );
            let o = &mut out.objects;
            match m {
                Manifest::VirtualMachine(vm) => o.vms.push(vm),
                Manifest::VmImage(img) => o.images.push(img),
                Manifest::Host(h) => o.hosts.push(h),
                Manifest::Network(n) => o.networks.push(n),
                Manifest::SecurityGroup(g) => o.security_groups.push(g),
                Manifest::Volume(v) => o.volumes.push(v),
                Manifest::DeviceIdentity(d) => o.devices.push(d),
            }
        }
    }
    out.sources = seen;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "apiVersion: yun.dev/v1alpha1\nkind: VmImage\nmetadata: {name: img}\nspec:\n  os: t\n  disk: {source: 'file:///x.qcow2', format: qcow2, sha256: '0000000000000000000000000000000000000000000000000000000000000000'}\n";
    const VM: &str = "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vm1}\nspec: {image: img, cpu: 1, memoryMiB: 128}\n";
    const BAD_VM: &str = "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vm2}\nspec: {image: img, cpu: 0, memoryMiB: 128}\n";

    #[test]
    fn valid_files_are_read_and_invalid_files_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), format!("{IMAGE}---\n{VM}")).unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            format!("{}---\n{BAD_VM}", VM.replace("vm1", "vm3")),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let c = read_dir(dir.path()).unwrap();
        assert_eq!(c.objects.images.len(), 1);
        assert_eq!(
            c.objects.vms.len(),
            1,
            "vm3 shares a file with an invalid document and must not be applied"
        );
        let err = &c.errors[&dir.path().join("b.yaml")];
        assert!(err.contains("b.yaml") && err.contains("spec.cpu"), "{err}");
    }

    #[test]
    fn duplicate_objects_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), VM).unwrap();
        std::fs::write(dir.path().join("b.yaml"), VM).unwrap();
        let c = read_dir(dir.path()).unwrap();
        assert_eq!(c.objects.vms.len(), 1);
        assert!(c.errors[&dir.path().join("b.yaml")].contains("already defined in"));
    }

    #[test]
    fn missing_directory_is_an_error_not_an_empty_fleet() {
        assert!(read_dir(Path::new("/nonexistent/yun-manifests")).is_err());
    }
}
