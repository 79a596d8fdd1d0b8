//! From a VM's `spec.volumes` and the Volume objects of its namespace to the records a host
//! gets (pure: the sources look up objects and Secrets, this module only checks and maps).

use crate::vm_logic::Unscheduled;
use std::collections::BTreeMap;
use yun_crds::{AccessMode, VirtualMachineSpec, VolumeSpec};
use yun_fleet::{ChapRecord, VolumeRecord, VolumeSourceRecord};

/// A Volume object as a source presents it to a VM reconcile.
#[derive(Debug, Clone)]
pub struct VolumeObject<'a> {
    pub uid: String,
    pub spec: &'a VolumeSpec,
    /// The CHAP credentials of an iSCSI volume that asks for them: resolved by the source
    /// (a Secret in Kubernetes mode, a host file in bootstrap mode), or why they could not be.
    pub chap: Option<Result<ChapRecord, String>>,
    /// Being deleted: no new attachments.
    pub deleting: bool,
    /// Why the object cannot be used as it is (its spec fails validation), if it cannot.
    pub invalid: Option<String>,
}

/// One volume a VM wants, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedVolume {
    /// Position in `spec.volumes` (for messages).
    pub index: usize,
    pub mode: AccessMode,
    pub record: VolumeRecord,
}

impl WantedVolume {
    pub fn is_local(&self) -> bool {
        matches!(self.record.source, VolumeSourceRecord::Local {})
    }
}

fn waiting(reason: &'static str, message: String) -> Unscheduled {
    Unscheduled { reason, message }
}

/// The record of a Volume for the fleet bus.
pub fn source_record(
    spec: &VolumeSpec,
    chap: Option<&Result<ChapRecord, String>>,
) -> Result<VolumeSourceRecord, String> {
    if spec.local.is_some() {
        return Ok(VolumeSourceRecord::Local {});
    }
    if let Some(i) = &spec.iscsi {
        let chap = match (&i.chap, chap) {
            (None, _) => None,
            (Some(_), Some(Ok(c))) => Some(c.clone()),
            (Some(_), Some(Err(e))) => return Err(format!("spec.iscsi.chap: {e}")),
            (Some(_), None) => return Err("spec.iscsi.chap: credentials not resolved".into()),
        };
        let portals = i
            .portals
            .iter()
            .map(|p| {
                if p.contains(':') {
                    p.clone()
                } else {
                    format!("{p}:3260")
                }
            })
            .collect();
        return Ok(VolumeSourceRecord::Iscsi {
            portals,
            iqn: i.iqn.clone(),
            lun: i.lun,
            chap,
        });
    }
    if let Some(f) = &spec.fc {
        return Ok(VolumeSourceRecord::Fc {
            wwns: f.wwns.clone(),
            lun: f.lun,
        });
    }
    if let Some(n) = &spec.nfs {
        return Ok(VolumeSourceRecord::Nfs {
            server: n.server.clone(),
            export: n.export.clone(),
            path: n.path.clone(),
        });
    }
    Err("spec: exactly one of spec.local, spec.iscsi, spec.fc or spec.nfs must be set".into())
}

/// Resolves every entry of `spec.volumes` against the namespace's Volumes, or says which entry
/// cannot be attached and why. A `ReadOnlyMany` volume must be asked for read-only.
pub fn resolve(
    namespace: &str,
    spec: &VirtualMachineSpec,
    volumes: &BTreeMap<String, VolumeObject<'_>>,
) -> Result<Vec<WantedVolume>, Unscheduled> {
    let mut out = Vec::with_capacity(spec.volumes.len());
    for (index, att) in spec.volumes.iter().enumerate() {
        let field = format!("spec.volumes[{index}].volume");
        let Some(obj) = volumes.get(&att.volume) else {
            return Err(waiting(
                "VolumeNotFound",
                format!("{field}: Volume {namespace}/{} does not exist", att.volume),
            ));
        };
        if let Some(why) = &obj.invalid {
            return Err(waiting(
                "VolumeNotReady",
                format!(
                    "{field}: Volume {namespace}/{} is invalid: {why}",
                    att.volume
                ),
            ));
        }
        if obj.deleting {
            return Err(waiting(
                "VolumeDeleting",
                format!(
                    "{field}: Volume {namespace}/{} is being deleted",
                    att.volume
                ),
            ));
        }
        if obj.spec.access_mode == AccessMode::ReadOnlyMany && !att.read_only {
            return Err(waiting(
                "VolumeReadOnly",
                format!(
                    "spec.volumes[{index}].readOnly: Volume {namespace}/{} is ReadOnlyMany, so it must be attached with readOnly: true",
                    att.volume
                ),
            ));
        }
        let source = source_record(obj.spec, obj.chap.as_ref()).map_err(|e| {
            waiting(
                "VolumeNotReady",
                format!("Volume {namespace}/{}: {e}", att.volume),
            )
        })?;
        out.push(WantedVolume {
            index,
            mode: obj.spec.access_mode,
            record: VolumeRecord {
                id: format!("{namespace}/{}", att.volume),
                uid: obj.uid.clone(),
                size_gib: obj.spec.size_gib,
                read_only: att.read_only,
                source,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::{
        Chap, IscsiVolume, LocalVolume, SecretRef, VolumeAttachment as VmVolumeAttachment,
    };

    fn local(mode: AccessMode) -> VolumeSpec {
        VolumeSpec {
            size_gib: 2,
            access_mode: mode,
            local: Some(LocalVolume {}),
            iscsi: None,
            fc: None,
            nfs: None,
        }
    }

    fn vm(vols: &[(&str, bool)]) -> VirtualMachineSpec {
        let mut spec: VirtualMachineSpec =
            serde_json::from_value(serde_json::json!({"image": "i", "cpu": 1, "memoryMiB": 256}))
                .unwrap();
        spec.volumes = vols
            .iter()
            .map(|(v, ro)| VmVolumeAttachment {
                volume: (*v).into(),
                read_only: *ro,
            })
            .collect();
        spec
    }

    #[test]
    fn volumes_resolve_in_order_with_their_uids() {
        let (a, b) = (
            local(AccessMode::ReadWriteOnce),
            local(AccessMode::ReadOnlyMany),
        );
        let objs = BTreeMap::from([
            (
                "a".to_owned(),
                VolumeObject {
                    uid: "ua".into(),
                    spec: &a,
                    chap: None,
                    deleting: false,
                    invalid: None,
                },
            ),
            (
                "b".to_owned(),
                VolumeObject {
                    uid: "ub".into(),
                    spec: &b,
                    chap: None,
                    deleting: false,
                    invalid: None,
                },
            ),
        ]);
        let got = resolve("t", &vm(&[("b", true), ("a", false)]), &objs).unwrap();
        assert_eq!(
            got.iter()
                .map(|w| (
                    w.record.id.as_str(),
                    w.record.uid.as_str(),
                    w.record.read_only
                ))
                .collect::<Vec<_>>(),
            [("t/b", "ub", true), ("t/a", "ua", false)]
        );
        assert!(got[0].is_local());
    }

    #[test]
    fn refusals_name_the_entry() {
        let ro = local(AccessMode::ReadOnlyMany);
        let objs = BTreeMap::from([(
            "ro".to_owned(),
            VolumeObject {
                uid: "u".into(),
                spec: &ro,
                chap: None,
                deleting: false,
                invalid: None,
            },
        )]);
        let e = resolve("t", &vm(&[("ro", true), ("gone", false)]), &objs).unwrap_err();
        assert_eq!(e.reason, "VolumeNotFound");
        assert!(
            e.message.starts_with("spec.volumes[1].volume:"),
            "{}",
            e.message
        );
        let e = resolve("t", &vm(&[("ro", false)]), &objs).unwrap_err();
        assert_eq!(e.reason, "VolumeReadOnly");
        assert!(
            e.message.starts_with("spec.volumes[0].readOnly:"),
            "{}",
            e.message
        );
    }

    #[test]
    fn iscsi_portals_get_the_default_port_and_chap_errors_surface() {
        let spec = VolumeSpec {
            size_gib: 1,
            access_mode: AccessMode::ReadWriteOnce,
            local: None,
            iscsi: Some(IscsiVolume {
                portals: vec!["10.0.0.5".into(), "san:3261".into()],
                iqn: "iqn.2024-01.dev.yun:t".into(),
                lun: 1,
                chap: Some(Chap {
                    secret_ref: Some(SecretRef { name: "s".into() }),
                    file: None,
                }),
            }),
            fc: None,
            nfs: None,
        };
        let err = Err("Secret t/s has no key password".to_owned());
        assert_eq!(
            source_record(&spec, Some(&err)).unwrap_err(),
            "spec.iscsi.chap: Secret t/s has no key password"
        );
        let ok = Ok(ChapRecord::File {
            path: "/etc/yun/chap".into(),
        });
        match source_record(&spec, Some(&ok)).unwrap() {
            VolumeSourceRecord::Iscsi { portals, chap, .. } => {
                assert_eq!(portals, ["10.0.0.5:3260", "san:3261"]);
                assert_eq!(
                    chap,
                    Some(ChapRecord::File {
                        path: "/etc/yun/chap".into()
                    })
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
