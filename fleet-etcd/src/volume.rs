//! Volume claims (controller) and attachment records (agent): the etcd half of the
//! single-writer protocol described in `yun_fleet::volume`.

use crate::bus::{FleetBus, Stored, decode_as, put_op};
use crate::error::BusError;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use yun_fleet::{AttachmentRecord, VmDesired, VolumeClaim, keys};

/// What a host's records say about one volume of one VM, read at a single etcd revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentView {
    /// The VM's desired record on the host (`None`: the VM is not wanted there any more).
    pub desired: Option<VmDesired>,
    /// The host's attachment record (`None`: not attached, and no attach can be in flight if
    /// `desired` does not list the volume).
    pub attachment: Option<AttachmentRecord>,
    /// Whether the host's lease is alive.
    pub host_alive: bool,
}

/// One claim to write in [`FleetBus::grant_volume_claims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimGrant {
    pub volume_uid: String,
    /// The claim's `mod_revision` as read (0: it did not exist).
    pub expected_revision: i64,
    pub claim: VolumeClaim,
}

/// Result of a guarded claim write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimWrite {
    Written,
    /// The claim changed since it was read: re-read and decide again.
    Conflict,
}

impl FleetBus {
    pub async fn volume_claim(
        &self,
        volume_uid: &str,
    ) -> Result<Option<Stored<VolumeClaim>>, BusError> {
        self.get_one(&keys::volume_claim(volume_uid)?).await
    }

    /// Replaces the claim if it is still at `expected_revision` (0: it must not exist). `None`
    /// deletes it. The only way a claim changes, so two grants can never both succeed.
    pub async fn write_volume_claim(
        &self,
        volume_uid: &str,
        expected_revision: i64,
        claim: Option<&VolumeClaim>,
    ) -> Result<ClaimWrite, BusError> {
        let key = keys::volume_claim(volume_uid)?;
        let op = match claim {
            Some(c) => put_op(&key, c)?,
            None => TxnOp::delete(key.as_str(), None),
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then([op]);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("claim", key.as_str()))?;
        Ok(if resp.succeeded() {
            ClaimWrite::Written
        } else {
            ClaimWrite::Conflict
        })
    }

    /// Grants claims and publishes the VM's desired record that lists the volumes, in one
    /// transaction: it succeeds only if every claim is still at the revision it was read at, so
    /// a volume is listed for a host exactly when that host holds its claim.
    pub async fn grant_volume_claims(
        &self,
        host: &str,
        desired: &VmDesired,
        grants: &[ClaimGrant],
    ) -> Result<ClaimWrite, BusError> {
        let desired_key = keys::vm_desired(host, &desired.uid)?;
        let mut compares = Vec::with_capacity(grants.len());
        let mut ops = Vec::with_capacity(grants.len() + 1);
        for g in grants {
            let key = keys::volume_claim(&g.volume_uid)?;
            compares.push(Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                g.expected_revision,
            ));
            ops.push(put_op(&key, &g.claim)?);
        }
        ops.push(put_op(&desired_key, desired)?);
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("grant", desired_key.as_str()))?;
        Ok(if resp.succeeded() {
            ClaimWrite::Written
        } else {
            ClaimWrite::Conflict
        })
    }

    /// Operator's force-detach: writes the claim without the holders on `host` (or deletes it)
    /// and, when the host still has `desired` for a VM, rewrites it without the volume, in one
    /// transaction guarded by both revisions.
    pub async fn force_detach(
        &self,
        volume_uid: &str,
        expected_revision: i64,
        claim: Option<&VolumeClaim>,
        rewrites: &[(String, Stored<VmDesired>)],
    ) -> Result<ClaimWrite, BusError> {
        let key = keys::volume_claim(volume_uid)?;
        let mut compares = vec![Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            expected_revision,
        )];
        let mut ops = vec![match claim {
            Some(c) => put_op(&key, c)?,
            None => TxnOp::delete(key.as_str(), None),
        }];
        for (host, stored) in rewrites {
            let dk = keys::vm_desired(host, &stored.value.uid)?;
            compares.push(Compare::mod_revision(
                dk.as_str(),
                CompareOp::Equal,
                stored.mod_revision,
            ));
            ops.push(put_op(&dk, &stored.value)?);
        }
        let resp = self
            .client()
            .txn(Txn::new().when(compares).and_then(ops))
            .await
            .map_err(BusError::etcd("force-detach", key.as_str()))?;
        Ok(if resp.succeeded() {
            ClaimWrite::Written
        } else {
            ClaimWrite::Conflict
        })
    }

    /// Every claim (operators' tools; the prefix holds one small key per attached volume).
    pub async fn list_volume_claims(&self) -> Result<Vec<(String, Stored<VolumeClaim>)>, BusError> {
        Ok(self
            .list_prefix(keys::VOLUMES_PREFIX)
            .await?
            .into_iter()
            .filter_map(|(rest, stored)| {
                let uid = rest.strip_suffix("/claim")?;
                Some((uid.to_owned(), stored))
            })
            .collect())
    }

    /// The desired record of a VM on a host with its revision.
    pub async fn desired_stored(
        &self,
        host: &str,
        uid: &str,
    ) -> Result<Option<Stored<VmDesired>>, BusError> {
        self.get_one(&keys::vm_desired(host, uid)?).await
    }

    /// Agent: records that it is about to attach, but only if the VM's desired record is still
    /// at `desired_revision` (the one that listed the volume). `false`: the desired record
    /// changed or is gone, so the attach must not start.
    pub async fn begin_attachment(
        &self,
        host: &str,
        vm_uid: &str,
        volume_uid: &str,
        desired_revision: i64,
        record: &AttachmentRecord,
    ) -> Result<bool, BusError> {
        let desired_key = keys::vm_desired(host, vm_uid)?;
        let key = keys::vm_volume(host, vm_uid, volume_uid)?;
        let txn = Txn::new()
            .when([Compare::mod_revision(
                desired_key.as_str(),
                CompareOp::Equal,
                desired_revision,
            )])
            .and_then([put_op(&key, record)?]);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("begin-attach", key.as_str()))?;
        Ok(resp.succeeded())
    }

    /// Agent: updates an attachment record it already holds (phase, device, error).
    pub async fn put_attachment(
        &self,
        host: &str,
        vm_uid: &str,
        volume_uid: &str,
        record: &AttachmentRecord,
    ) -> Result<(), BusError> {
        self.put(&keys::vm_volume(host, vm_uid, volume_uid)?, record, None)
            .await
            .map(|_| ())
    }

    /// Agent: every attachment record of one VM on this host, by volume uid.
    pub async fn vm_attachments(
        &self,
        host: &str,
        vm_uid: &str,
    ) -> Result<std::collections::BTreeMap<String, AttachmentRecord>, BusError> {
        let prefix = keys::vm_volumes_prefix(host, vm_uid)?;
        Ok(self
            .list_prefix(&prefix)
            .await?
            .into_iter()
            .map(|(uid, stored)| (uid, stored.value))
            .collect())
    }

    /// Agent: the disk is gone from the domain (or the domain is gone).
    pub async fn delete_attachment(
        &self,
        host: &str,
        vm_uid: &str,
        volume_uid: &str,
    ) -> Result<(), BusError> {
        self.delete(&keys::vm_volume(host, vm_uid, volume_uid)?)
            .await
    }

    /// Controller: the VM's desired record, the attachment record and the host's liveness, in
    /// one read (one revision), so "not listed and not attached" is never a torn observation.
    pub async fn attachment_view(
        &self,
        host: &str,
        vm_uid: &str,
        volume_uid: &str,
    ) -> Result<AttachmentView, BusError> {
        let desired_key = keys::vm_desired(host, vm_uid)?;
        let key = keys::vm_volume(host, vm_uid, volume_uid)?;
        let info_key = keys::host_info(host)?;
        let txn = Txn::new().and_then([
            TxnOp::get(desired_key.as_str(), None),
            TxnOp::get(key.as_str(), None),
            TxnOp::get(info_key.as_str(), None),
        ]);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("read-attachment", key.as_str()))?;
        let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(3);
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                values.push(get.kvs().first().map(|kv| kv.value().to_vec()));
            }
        }
        let mut values = values.into_iter();
        let desired = match values.next().flatten() {
            Some(bytes) => Some(decode_as(&desired_key, &bytes)?),
            None => None,
        };
        let attachment = match values.next().flatten() {
            Some(bytes) => Some(decode_as(&key, &bytes)?),
            None => None,
        };
        let host_alive = values.next().flatten().is_some();
        Ok(AttachmentView {
            desired,
            attachment,
            host_alive,
        })
    }
}
