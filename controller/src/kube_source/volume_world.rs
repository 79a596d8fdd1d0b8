//! The Volumes one VirtualMachine names, as the shared VM step sees them: from the Volume
//! cache, with the CHAP credentials of `secretRef` volumes read from their Secrets.

use super::chap_secrets::ChapResult;
use super::context::Ctx;
use crate::volume::resolve::VolumeObject;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use yun_crds::{VirtualMachineSpec, Volume};
use yun_fleet::ChapRecord;

/// The Volume objects a VM names (those that exist), with their credentials resolved.
#[derive(Debug, Default)]
pub(crate) struct VmVolumeObjects {
    found: Vec<(Arc<Volume>, Option<ChapResult>)>,
}

impl VmVolumeObjects {
    /// Looks up every Volume `spec.volumes` names in `namespace`; reads a Secret only for an
    /// iSCSI volume whose CHAP comes from one.
    pub(crate) async fn load(ctx: &Ctx, namespace: &str, spec: &VirtualMachineSpec) -> Self {
        let mut found = Vec::new();
        for att in &spec.volumes {
            let Some(volume) = ctx.volume(namespace, &att.volume) else {
                continue;
            };
            let chap = match volume.spec.iscsi.as_ref().and_then(|i| i.chap.as_ref()) {
                None => None,
                Some(c) => Some(match (&c.secret_ref, &c.file) {
                    (Some(r), _) => ctx.chap.get(&ctx.client, namespace, &r.name).await,
                    (None, Some(path)) => Ok(ChapRecord::File { path: path.clone() }),
                    (None, None) => Err("exactly one of secretRef or file must be set".into()),
                }),
            };
            found.push((volume, chap));
        }
        VmVolumeObjects { found }
    }

    /// The map the VM step resolves `spec.volumes` against.
    pub(crate) fn world(&self) -> BTreeMap<String, VolumeObject<'_>> {
        self.found
            .iter()
            .map(|(v, chap)| {
                let invalid = match (&v.metadata.uid, v.spec.validate()) {
                    (None, _) => Some("it has no metadata.uid".to_owned()),
                    (Some(_), Err(errors)) => Some(errors.to_string()),
                    (Some(_), Ok(())) => None,
                };
                (
                    v.name_any(),
                    VolumeObject {
                        uid: v.metadata.uid.clone().unwrap_or_default(),
                        spec: &v.spec,
                        chap: chap.clone(),
                        deleting: v.metadata.deletion_timestamp.is_some(),
                        invalid,
                    },
                )
            })
            .collect()
    }
}
