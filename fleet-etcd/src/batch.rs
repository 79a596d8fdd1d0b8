//! Several placements committed in one transaction (Omega-style batch commit).
//!
//! Each host in the batch is guarded once by its allocation revision and written once with the
//! allocation of every VM the batch puts there; each VM by its placement key not existing. The
//! batch therefore commits exactly when the same placements, committed one after another against
//! the same snapshot, would have. If any guard fails nothing is written and the caller retries
//! the placements one by one to learn which one lost its race.

use crate::bus::FleetBus;
use crate::error::BusError;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use std::collections::BTreeSet;
use yun_fleet::{HostAllocation, Placement, VmDesired, encode, keys};

/// etcd's default `--max-txn-ops` is 128: a batch holds at most 32 VMs (two writes each) and
/// the allocation writes of their hosts.
pub const MAX_BATCH: usize = 32;

/// A host's new allocation, guarded by the revision the decisions were made against.
#[derive(Debug, Clone)]
pub struct HostCommit {
    pub host: String,
    /// `mod_revision` of the host's `alloc` key as read (0 = absent).
    pub alloc_revision: i64,
    /// The allocation with every VM of this batch on this host added.
    pub new_alloc: HostAllocation,
}

/// Placements committed together: every host they touch, and every VM.
#[derive(Debug, Clone, Default)]
pub struct PlacementBatch {
    pub hosts: Vec<HostCommit>,
    pub vms: Vec<(VmDesired, Placement)>,
}

/// Outcome of a batch commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every placement was written; the etcd revision of the write.
    Committed { revision: i64 },
    /// A guard failed: nothing was written.
    Conflict,
}

impl FleetBus {
    /// Commits all of `batch` or nothing: each host's allocation guarded by its revision, each
    /// VM's placement key by not existing. Every VM must be on a host listed once in `hosts`.
    pub async fn commit_placements(
        &self,
        batch: &PlacementBatch,
    ) -> Result<BatchOutcome, BusError> {
        if batch.vms.is_empty() {
            return Ok(BatchOutcome::Committed { revision: 0 });
        }
        if batch.vms.len() > MAX_BATCH {
            return Err(BusError::BatchNotDisjoint {
                reason: format!(
                    "{} placements exceed the batch limit {MAX_BATCH}",
                    batch.vms.len()
                ),
            });
        }
        let mut hosts = BTreeSet::new();
        let mut guards = Vec::with_capacity(batch.hosts.len() + batch.vms.len());
        let mut writes = Vec::with_capacity(batch.hosts.len() + batch.vms.len() * 2);
        for h in &batch.hosts {
            if !hosts.insert(h.host.as_str()) {
                return Err(BusError::BatchNotDisjoint {
                    reason: format!("host {} appears twice", h.host),
                });
            }
            let alloc_key = keys::host_alloc(&h.host)?;
            guards.push(Compare::mod_revision(
                alloc_key.as_str(),
                CompareOp::Equal,
                h.alloc_revision,
            ));
            writes.push(TxnOp::put(
                alloc_key.as_str(),
                encode(&alloc_key, &h.new_alloc)?,
                None,
            ));
        }
        let mut uids = BTreeSet::new();
        for (vm, placement) in &batch.vms {
            if !hosts.contains(placement.host.as_str()) || !uids.insert(vm.uid.as_str()) {
                return Err(BusError::BatchNotDisjoint {
                    reason: format!(
                        "VM {} appears twice or its host {} has no allocation",
                        vm.uid, placement.host
                    ),
                });
            }
            let placement_key = keys::placement(&vm.uid)?;
            let vm_key = keys::vm_desired(&placement.host, &vm.uid)?;
            guards.push(Compare::version(
                placement_key.as_str(),
                CompareOp::Equal,
                0,
            ));
            writes.push(TxnOp::put(vm_key.as_str(), encode(&vm_key, vm)?, None));
            writes.push(TxnOp::put(
                placement_key.as_str(),
                encode(&placement_key, placement)?,
                None,
            ));
        }
        let resp = self
            .client()
            .txn(Txn::new().when(guards).and_then(writes))
            .await
            .map_err(BusError::etcd("place batch", keys::PLACEMENTS_PREFIX))?;
        if resp.succeeded() {
            let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            Ok(BatchOutcome::Committed { revision })
        } else {
            Ok(BatchOutcome::Conflict)
        }
    }
}
