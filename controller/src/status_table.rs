//! kubectl-like tables for the `status` subcommand (pure rendering).

use std::collections::BTreeMap;
use yun_crds::{VirtualMachineStatus, VmImageStatus, find_condition};
use yun_fleet_etcd::HostView;

/// One stored object as the tables show it (from the object store, in bootstrap mode).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStatus {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub deleting: bool,
    pub status: serde_json::Value,
}

impl StoredStatus {
    /// From an object's JSON (`metadata` and `status`).
    pub fn of(obj: &serde_json::Value) -> StoredStatus {
        let meta = |field: &str| {
            obj["metadata"][field]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        StoredStatus {
            namespace: meta("namespace"),
            name: meta("name"),
            uid: meta("uid"),
            deleting: obj["metadata"]["deletionTimestamp"].is_string(),
            status: obj.get("status").cloned().unwrap_or_default(),
        }
    }
}

/// Left-aligned columns separated by three spaces, as kubectl prints.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// The HOSTS table from the fleet view.
pub fn hosts_table(hosts: &BTreeMap<String, HostView>) -> String {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|(name, h)| {
            let a = &h.alloc.value;
            match &h.info {
                Some(i) => vec![
                    name.clone(),
                    "True".into(),
                    format!("{}/{}", a.cpus, i.cpus),
                    format!("{}/{}Mi", a.memory_mib, i.memory_mib),
                    a.vms.to_string(),
                    i.virt_type.clone(),
                    i.agent_version.clone(),
                ],
                None => vec![
                    name.clone(),
                    "False".into(),
                    format!("{}/?", a.cpus),
                    format!("{}/?", a.memory_mib),
                    a.vms.to_string(),
                    "-".into(),
                    "-".into(),
                ],
            }
        })
        .collect();
    render(
        &[
            "HOST",
            "READY",
            "CPU(ALLOC/CAP)",
            "MEMORY(ALLOC/CAP)",
            "VMS",
            "VIRT",
            "AGENT",
        ],
        &rows,
    )
}

/// The VIRTUALMACHINES table from the object store.
pub fn vms_table(records: &[StoredStatus]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let st: VirtualMachineStatus =
                serde_json::from_value(r.status.clone()).unwrap_or_default();
            let ready = find_condition(&st.conditions, "Ready")
                .map(|c| c.status.as_str())
                .unwrap_or("Unknown");
            let phase = if r.deleting {
                "Deleting"
            } else {
                st.phase.map(|p| p.as_str()).unwrap_or("Pending")
            };
            vec![
                r.namespace.clone(),
                r.name.clone(),
                phase.to_owned(),
                ready.to_owned(),
                dash(st.host.as_deref()),
                dash(st.domain_uuid.as_deref()),
                dash(st.message.as_deref()),
            ]
        })
        .collect();
    render(
        &[
            "NAMESPACE",
            "NAME",
            "PHASE",
            "READY",
            "HOST",
            "DOMAIN-UUID",
            "MESSAGE",
        ],
        &rows,
    )
}

/// The VMIMAGES table from the object store.
pub fn images_table(records: &[StoredStatus]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let st: VmImageStatus = serde_json::from_value(r.status.clone()).unwrap_or_default();
            vec![
                r.namespace.clone(),
                r.name.clone(),
                if st.hosts.is_empty() {
                    "-".into()
                } else {
                    st.hosts.join(",")
                },
                st.size_bytes
                    .map(|b| format!("{:.1}Mi", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    render(&["NAMESPACE", "NAME", "CACHED-ON", "SIZE"], &rows)
}

/// Bootstrap-mode Volumes, like `kubectl get yvol`.
pub fn volumes_table(records: &[StoredStatus]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let st: yun_crds::VolumeStatus =
                serde_json::from_value(r.status.clone()).unwrap_or_default();
            let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            vec![
                r.namespace.clone(),
                r.name.clone(),
                dash(st.phase.map(|p| p.as_str().to_owned())),
                dash(st.vm),
                dash(st.host),
                dash(st.message),
            ]
        })
        .collect();
    render(
        &["NAMESPACE", "NAME", "PHASE", "VM", "HOST", "MESSAGE"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_like_kubectl() {
        let out = render(
            &["NAME", "PHASE"],
            &[
                vec!["a-long-name".into(), "Running".into()],
                vec!["b".into(), "Pending".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME          PHASE\na-long-name   Running\nb             Pending\n"
        );
    }

    #[test]
    fn vm_rows_show_phase_host_and_ready() {
        let status = serde_json::json!({
            "phase": "Running", "host": "n1", "domainUUID": "d-1",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "", "lastTransitionTime": "t"}]
        });
        let rec = StoredStatus::of(&serde_json::json!({
            "metadata": {"namespace": "default", "name": "vm1", "uid": "u"},
            "status": status,
        }));
        let out = vms_table(&[rec]);
        let row = out.lines().nth(1).unwrap();
        for want in ["default", "vm1", "Running", "True", "n1", "d-1"] {
            assert!(row.contains(want), "{row}");
        }
    }
}
