//! Typed reads and writes of fleet-bus records.

use crate::error::BusError;
use crate::lease::HostLease;
use crate::tls::{BusTls, check_endpoints};
use crate::watch::BusWatch;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::time::Duration;
use yun_fleet::records::Versioned;
use yun_fleet::{
    HostAllocation, HostImages, HostInfo, HostKey, Placement, VmDesired, VmObserved, decode,
    encode, keys,
};

/// A decoded record with the etcd revision it was last modified at (the optimistic-concurrency
/// token for guarded writes). A missing record has `mod_revision == 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// Everything the bus holds about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// `None` when the host's lease has expired (or it never registered).
    pub info: Option<HostInfo>,
    pub alloc: Stored<HostAllocation>,
    /// Templates cached on the host (`None` until its agent reports).
    pub images: Option<HostImages>,
    pub desired: BTreeMap<String, Stored<VmDesired>>,
    pub observed: BTreeMap<String, VmObserved>,
    /// Attachment records by VM uid, then volume uid.
    pub attachments: BTreeMap<String, BTreeMap<String, yun_fleet::AttachmentRecord>>,
    /// Networks, security-group rules and members for the host's ports.
    pub net: crate::net::HostNetView,
}

impl<T: Default> Default for Stored<T> {
    fn default() -> Self {
        Stored {
            value: T::default(),
            mod_revision: 0,
        }
    }
}

/// Result of a placement transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementOutcome {
    Committed,
    /// Someone else changed the host's allocation since it was read: re-read and re-score.
    AllocationChanged,
    /// The VM is already placed (possibly by another controller) on this host.
    AlreadyPlaced(Placement),
}

/// Connection to the fleet bus. Cheap to clone.
#[derive(Clone)]
pub struct FleetBus {
    client: Client,
}

impl std::fmt::Debug for FleetBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBus").finish_non_exhaustive()
    }
}

pub(crate) fn decode_as<T: DeserializeOwned + Versioned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, BusError> {
    Ok(decode(key, bytes)?)
}

pub(crate) fn put_op<T: Serialize>(key: &str, value: &T) -> Result<TxnOp, BusError> {
    Ok(TxnOp::put(key, encode(key, value)?, None))
}

impl FleetBus {
    /// Connects to etcd, over TLS with a client certificate when `tls` is given (then every
    /// endpoint must be `https://`; without it, `http://`). Operations time out after
    /// `request_timeout` so that a silent etcd is an error the caller can back off from, never a
    /// hang. The connection is made lazily: a refused certificate shows on the first operation.
    pub async fn connect(
        endpoints: &[String],
        request_timeout: Duration,
        tls: Option<&BusTls>,
    ) -> Result<FleetBus, BusError> {
        check_endpoints(endpoints, tls.is_some())?;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some(tls) = tls {
            opts = opts.with_tls(tls.load()?);
        }
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(BusError::etcd("connect", endpoints.join(",")))?;
        Ok(FleetBus { client })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) async fn get_one<T: DeserializeOwned + Versioned>(
        &self,
        key: &str,
    ) -> Result<Option<Stored<T>>, BusError> {
        let resp = self
            .client()
            .get(key, None)
            .await
            .map_err(BusError::etcd("get", key))?;
        match resp.kvs().first() {
            Some(kv) => Ok(Some(Stored {
                value: decode_as(key, kv.value())?,
                mod_revision: kv.mod_revision(),
            })),
            None => Ok(None),
        }
    }

    pub(crate) async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64, BusError> {
        let opts = lease.map(|id| PutOptions::new().with_lease(id));
        let resp = self
            .client()
            .put(key, encode(key, value)?, opts)
            .await
            .map_err(BusError::etcd("put", key))?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BusError> {
        self.client()
            .delete(key, None)
            .await
            .map_err(BusError::etcd("delete", key))?;
        Ok(())
    }

    // ----- leases -------------------------------------------------------------------------

    pub async fn grant_lease(&self, ttl_secs: i64) -> Result<HostLease, BusError> {
        let mut client = self.client();
        let granted = client
            .lease_grant(ttl_secs, None)
            .await
            .map_err(BusError::etcd("lease-grant", "lease"))?;
        let id = granted.id();
        let (keeper, stream) = client
            .lease_keep_alive(id)
            .await
            .map_err(BusError::etcd("keep-alive", format!("lease {id:x}")))?;
        Ok(HostLease {
            id,
            ttl_secs: granted.ttl(),
            keeper,
            stream,
        })
    }

    /// Opens a fresh keep-alive channel on an existing lease, for when the previous channel
    /// failed (etcd refused or dropped it) while the lease itself may still be alive. Reusing the
    /// lease keeps the host's keys in place: re-registering under a new lease would add writes
    /// exactly when etcd is already behind. Opening the channel is itself a keep-alive: `Ok`
    /// means the lease was refreshed, `LeaseExpired` that it is gone.
    pub async fn keep_alive(&self, id: i64, ttl_secs: i64) -> Result<HostLease, BusError> {
        // Opening the channel sends one keep-alive; etcd-client reports a lease etcd no longer
        // has with this message (etcd answers TTL 0).
        let (keeper, stream) = self
            .client()
            .lease_keep_alive(id)
            .await
            .map_err(|e| match e {
                etcd_client::Error::LeaseKeepAliveError(m) if m == "lease not found" => {
                    BusError::LeaseExpired { id }
                }
                e => BusError::etcd("keep-alive", format!("lease {id:x}"))(e),
            })?;
        Ok(HostLease {
            id,
            ttl_secs,
            keeper,
            stream,
        })
    }

    pub async fn revoke_lease(&self, id: i64) -> Result<(), BusError> {
        self.client()
            .lease_revoke(id)
            .await
            .map_err(BusError::etcd("lease-revoke", format!("lease {id:x}")))?;
        Ok(())
    }

    // ----- hosts --------------------------------------------------------------------------

    /// Writes a host's info attached to its lease: when the lease expires the key disappears,
    /// which is how the controller learns a host went silent.
    pub async fn put_host_info(&self, info: &HostInfo, lease: &HostLease) -> Result<(), BusError> {
        self.put(&keys::host_info(&info.name)?, info, Some(lease.id))
            .await
            .map(|_| ())
    }

    /// Publishes the host's template cache inventory.
    pub async fn put_host_images(&self, host: &str, images: &HostImages) -> Result<(), BusError> {
        self.put(&keys::host_images(host)?, images, None)
            .await
            .map(|_| ())
    }

    /// Reads everything under one host's prefix; returns the view and the etcd revision it was
    /// read at (start a watch from `revision + 1` to miss nothing).
    pub async fn host_view(&self, host: &str) -> Result<(HostView, i64), BusError> {
        let prefix = keys::host_prefix(host)?;
        let (mut hosts, rev) = self.read_hosts(&prefix).await?;
        Ok((hosts.remove(host).unwrap_or_default(), rev))
    }

    /// Reads every host (the controller's full resync).
    pub async fn fleet_view(&self) -> Result<(BTreeMap<String, HostView>, i64), BusError> {
        self.read_hosts(keys::HOSTS_PREFIX).await
    }

    async fn read_hosts(
        &self,
        prefix: &str,
    ) -> Result<(BTreeMap<String, HostView>, i64), BusError> {
        let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
        let end = crate::scan::prefix_end(prefix);
        let rev = self
            .scan_range(prefix, &end, 1000, |kv| {
                let key = kv.key;
                let Some(parsed) = HostKey::parse(key) else {
                    return Ok(());
                };
                match parsed {
                    HostKey::Info { host } => {
                        hosts.entry(host).or_default().info = Some(decode_as(key, kv.value)?);
                    }
                    HostKey::Images { host } => {
                        hosts.entry(host).or_default().images = Some(decode_as(key, kv.value)?);
                    }
                    HostKey::Alloc { host } => {
                        hosts.entry(host).or_default().alloc = Stored {
                            value: decode_as(key, kv.value)?,
                            mod_revision: kv.mod_revision,
                        };
                    }
                    HostKey::VmDesired { host, uid } => {
                        let value = decode_as(key, kv.value)?;
                        hosts.entry(host).or_default().desired.insert(
                            uid,
                            Stored {
                                value,
                                mod_revision: kv.mod_revision,
                            },
                        );
                    }
                    HostKey::VmObserved { host, uid } => {
                        hosts
                            .entry(host)
                            .or_default()
                            .observed
                            .insert(uid, decode_as(key, kv.value)?);
                    }
                    HostKey::VmVolume { host, uid, volume } => {
                        hosts
                            .entry(host)
                            .or_default()
                            .attachments
                            .entry(uid)
                            .or_default()
                            .insert(volume, decode_as(key, kv.value)?);
                    }
                    HostKey::Networks { host } => {
                        hosts.entry(host).or_default().net.networks =
                            Some(decode_as(key, kv.value)?);
                    }
                    HostKey::FwGroups { host } => {
                        hosts.entry(host).or_default().net.groups = Some(decode_as(key, kv.value)?);
                    }
                    HostKey::FwMembers { host, group, shard } => {
                        let rec: yun_fleet::MemberShard = decode_as(key, kv.value)?;
                        hosts
                            .entry(host)
                            .or_default()
                            .net
                            .members
                            .entry(group)
                            .or_default()
                            .insert(shard, rec.members);
                    }
                }
                Ok(())
            })
            .await?;
        Ok((hosts, rev))
    }

    /// Watches a prefix from `start_revision` (inclusive).
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<BusWatch, BusError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start_revision)
            .with_progress_notify();
        let stream = self
            .client()
            .watch(prefix, Some(opts))
            .await
            .map_err(BusError::etcd("watch", prefix))?;
        Ok(BusWatch {
            prefix: prefix.to_owned(),
            stream,
            last_revision: start_revision - 1,
        })
    }

    // ----- placement (controller) ---------------------------------------------------------

    /// Commits a placement in one transaction, guarded by the host allocation's revision (as
    /// read) and by the placement key not existing: two placers can never double-book a host's
    /// capacity, and a VM can never be placed twice.
    pub async fn commit_placement(
        &self,
        alloc_revision: i64,
        new_alloc: &HostAllocation,
        vm: &VmDesired,
        placement: &Placement,
    ) -> Result<PlacementOutcome, BusError> {
        let alloc_key = keys::host_alloc(&placement.host)?;
        let placement_key = keys::placement(&vm.uid)?;
        let vm_key = keys::vm_desired(&placement.host, &vm.uid)?;
        let txn = Txn::new()
            .when([
                Compare::mod_revision(alloc_key.as_str(), CompareOp::Equal, alloc_revision),
                Compare::version(placement_key.as_str(), CompareOp::Equal, 0),
            ])
            .and_then([
                put_op(&alloc_key, new_alloc)?,
                put_op(&vm_key, vm)?,
                put_op(&placement_key, placement)?,
            ])
            .or_else([TxnOp::get(placement_key.as_str(), None)]);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("place", vm_key.as_str()))?;
        if resp.succeeded() {
            return Ok(PlacementOutcome::Committed);
        }
        match self.placement(&vm.uid).await? {
            Some(existing) => Ok(PlacementOutcome::AlreadyPlaced(existing.value)),
            None => Ok(PlacementOutcome::AllocationChanged),
        }
    }

    pub async fn placement(&self, uid: &str) -> Result<Option<Stored<Placement>>, BusError> {
        self.get_one(&keys::placement(uid)?).await
    }

    /// Rewrites a VM's desired record on its host (spec change), keeping its placement.
    pub async fn put_desired(&self, host: &str, vm: &VmDesired) -> Result<(), BusError> {
        self.put(&keys::vm_desired(host, &vm.uid)?, vm, None)
            .await
            .map(|_| ())
    }

    /// Tells the host to remove the VM. The host's agent deletes the observed record when the
    /// domain and its files are gone; only then are resources released.
    pub async fn delete_desired(&self, host: &str, uid: &str) -> Result<(), BusError> {
        self.delete(&keys::vm_desired(host, uid)?).await
    }

    /// Releases a removed VM's resources: allocation decremented (guarded like placement), the
    /// placement and any leftover records deleted, in one transaction. `false` on conflict.
    pub async fn release(
        &self,
        alloc_revision: i64,
        new_alloc: &HostAllocation,
        host: &str,
        uid: &str,
    ) -> Result<bool, BusError> {
        let alloc_key = keys::host_alloc(host)?;
        let txn = Txn::new()
            .when([Compare::mod_revision(
                alloc_key.as_str(),
                CompareOp::Equal,
                alloc_revision,
            )])
            .and_then([
                put_op(&alloc_key, new_alloc)?,
                TxnOp::delete(keys::placement(uid)?, None),
                TxnOp::delete(keys::vm_desired(host, uid)?, None),
                TxnOp::delete(keys::vm_observed(host, uid)?, None),
            ]);
        let resp = self
            .client()
            .txn(txn)
            .await
            .map_err(BusError::etcd("release", keys::placement(uid)?))?;
        Ok(resp.succeeded())
    }

    pub async fn host_alloc(&self, host: &str) -> Result<Stored<HostAllocation>, BusError> {
        Ok(self
            .get_one(&keys::host_alloc(host)?)
            .await?
            .unwrap_or_default())
    }

    pub async fn host_info(&self, host: &str) -> Result<Option<HostInfo>, BusError> {
        Ok(self
            .get_one(&keys::host_info(host)?)
            .await?
            .map(|s| s.value))
    }

    pub async fn desired(&self, host: &str, uid: &str) -> Result<Option<VmDesired>, BusError> {
        Ok(self
            .get_one(&keys::vm_desired(host, uid)?)
            .await?
            .map(|s| s.value))
    }

    pub async fn observed(&self, host: &str, uid: &str) -> Result<Option<VmObserved>, BusError> {
        Ok(self
            .get_one(&keys::vm_observed(host, uid)?)
            .await?
            .map(|s| s.value))
    }

    // ----- observations (agent) -----------------------------------------------------------

    pub async fn put_observed(&self, host: &str, observed: &VmObserved) -> Result<(), BusError> {
        self.put(&keys::vm_observed(host, &observed.uid)?, observed, None)
            .await
            .map(|_| ())
    }

    pub async fn delete_observed(&self, host: &str, uid: &str) -> Result<(), BusError> {
        self.delete(&keys::vm_observed(host, uid)?).await
    }

    /// Every record under `prefix` (one read; for small prefixes), with the part of its key
    /// after the prefix.
    pub(crate) async fn list_prefix<T: DeserializeOwned + Versioned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Stored<T>)>, BusError> {
        let resp = self
            .client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(BusError::etcd("list", prefix))?;
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let value = decode_as(&key, kv.value())?;
            let rest = key.strip_prefix(prefix).unwrap_or_default().to_owned();
            out.push((
                rest,
                Stored {
                    value,
                    mod_revision: kv.mod_revision(),
                },
            ));
        }
        Ok(out)
    }
}
