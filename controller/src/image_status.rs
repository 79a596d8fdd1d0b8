//! Pure VmImage status: which live hosts hold the whole template in their cache, and its size.

use std::collections::BTreeMap;
use yun_crds::{Condition, ConditionStatus, VmImageSpec, VmImageStatus, set_condition};
use yun_fleet_etcd::HostView;

/// Condition type: the template is in at least one live host's cache.
pub const CACHED: &str = "Cached";

/// The sha256s a host needs for the template to count as cached there.
fn required(spec: &VmImageSpec) -> Vec<&str> {
    let mut shas = vec![spec.disk.sha256.as_str()];
    shas.extend(
        spec.kernel
            .iter()
            .chain(spec.initrd.iter())
            .map(|a| a.sha256.as_str()),
    );
    shas
}

pub fn image_status(
    prior: Option<&VmImageStatus>,
    spec: &VmImageSpec,
    hosts: &BTreeMap<String, HostView>,
    now: &str,
) -> VmImageStatus {
    let needed = required(spec);
    let mut st = prior.cloned().unwrap_or_default();
    st.hosts = hosts
        .iter()
        .filter(|(_, h)| h.info.is_some())
        .filter(|(_, h)| {
            h.images
                .as_ref()
                .is_some_and(|i| needed.iter().all(|sha| i.images.contains_key(*sha)))
        })
        .map(|(name, _)| name.clone())
        .collect();
    st.size_bytes = hosts
        .values()
        .find_map(|h| h.images.as_ref()?.images.get(&spec.disk.sha256).copied())
        .or(st.size_bytes);
    let cond = if st.hosts.is_empty() {
        Condition::new(
            CACHED,
            ConditionStatus::False,
            "NotCached",
            "no live host has this template cached yet; the first VM using it fetches it",
        )
    } else {
        Condition::new(
            CACHED,
            ConditionStatus::True,
            "Cached",
            format!("cached on {} host(s)", st.hosts.len()),
        )
    };
    set_condition(&mut st.conditions, cond, now);
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::{Artifact, DiskArtifact, DiskFormat, find_condition};
    use yun_fleet::{HostImages, HostInfo};

    fn spec() -> VmImageSpec {
        VmImageSpec {
            os: "t".into(),
            disk: DiskArtifact {
                source: "file:///d".into(),
                format: DiskFormat::Qcow2,
                sha256: "d".repeat(64),
            },
            kernel: Some(Artifact {
                source: "file:///k".into(),
                sha256: "k".repeat(64),
            }),
            initrd: None,
            cmdline: None,
        }
    }

    fn host(alive: bool, shas: &[(&str, u64)]) -> HostView {
        HostView {
            info: alive.then(|| HostInfo {
                v: 1,
                name: "h".into(),
                cpus: 1,
                memory_mib: 1,
                disk_gib: 1,
                labels: BTreeMap::new(),
                agent_version: "t".into(),
                virt_type: "qemu".into(),
                started_at: "t".into(),
                tunnel_ip: None,
                seal_key: None,
                metrics_address: None,
            }),
            images: Some(HostImages::new(
                shas.iter().map(|(s, n)| (s.repeat(64), *n)).collect(),
            )),
            ..HostView::default()
        }
    }

    #[test]
    fn only_live_hosts_with_every_file_count() {
        let hosts = BTreeMap::from([
            ("a".to_string(), host(true, &[("d", 100), ("k", 5)])),
            ("b".to_string(), host(true, &[("d", 100)])),
            ("c".to_string(), host(false, &[("d", 100), ("k", 5)])),
        ]);
        let st = image_status(None, &spec(), &hosts, "now");
        assert_eq!(st.hosts, vec!["a".to_string()]);
        assert_eq!(st.size_bytes, Some(100));
        assert!(find_condition(&st.conditions, CACHED).unwrap().is_true());
    }

    #[test]
    fn uncached_image_explains_itself() {
        let st = image_status(None, &spec(), &BTreeMap::new(), "now");
        assert!(st.hosts.is_empty());
        let c = find_condition(&st.conditions, CACHED).unwrap();
        assert!(!c.is_true());
        assert_eq!(c.reason, "NotCached");
    }
}
