//! The host table (hosts in a `Vec`, addressed by `u32` index) and the failure-domain membership
//! derived from host labels.

use std::collections::HashMap;
use std::sync::Arc;

use yun_fleet::{Qos, Resources};

use crate::fit::{Dim, dims, dominant_share_after};
use crate::idmap::IdMap;
use crate::index::{Keys, share_key};
use crate::intern::Sym;
use crate::model::{Allocation, HostState, Ratios};

/// One host inside the engine.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub name: Box<str>,
    pub capacity: Resources,
    pub ratios: Ratios,
    /// Interned (key, value), sorted by key.
    pub labels: Box<[(Sym, Sym)]>,
    /// `index::label_bloom(labels)`.
    pub label_bloom: u64,
    /// The interned value of each topology label, by level (zone, rack, power).
    pub domains: [Option<Sym>; 3],
    pub state: HostState,
    pub alloc: Allocation,
    /// The keys this host is indexed under while Ready (valid only then).
    pub keys: Keys,
    /// Cached image digests (interned), sorted.
    pub images: Box<[Sym]>,
    /// Uids of the VMs here (sharing the allocation of the engine's VM table keys).
    pub vms: Vec<Arc<str>>,
}

impl Host {
    pub fn dims(&self) -> [Dim; 3] {
        dims(self.capacity, self.ratios, &self.alloc)
    }

    /// The capacity-index keys: memory headroom per QoS class, dominant used share.
    pub fn index_keys(&self) -> Keys {
        let dims = self.dims();
        [
            dims[1].headroom(Qos::Guaranteed),
            dims[1].headroom(Qos::Burstable),
            share_key(dominant_share_after(
                &dims,
                Qos::Burstable,
                Resources::default(),
            )),
        ]
    }

    pub fn has_image(&self, image: Sym) -> bool {
        self.images.binary_search(&image).is_ok()
    }

    pub fn heap_bytes(&self) -> usize {
        self.name.len()
            + self.labels.len() * size_of::<(Sym, Sym)>()
            + self.images.len() * size_of::<Sym>()
            + self.vms.capacity() * size_of::<Arc<str>>()
    }
}

/// Hosts by index, with a name lookup. Indexes of removed hosts are reused.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostTable {
    slots: Vec<Option<Host>>,
    free: Vec<u32>,
    ids: HashMap<Box<str>, u32>,
}

impl HostTable {
    pub fn find(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn get(&self, idx: u32) -> Option<&Host> {
        self.slots.get(idx as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, idx: u32) -> Option<&mut Host> {
        self.slots.get_mut(idx as usize).and_then(Option::as_mut)
    }

    pub fn by_name(&self, name: &str) -> Option<&Host> {
        self.find(name).and_then(|i| self.get(i))
    }

    pub fn insert(&mut self, host: Host) -> u32 {
        let name = host.name.clone();
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(host);
                i
            }
            None => {
                self.slots.push(Some(host));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.ids.insert(name, idx);
        idx
    }

    pub fn remove(&mut self, idx: u32) -> Option<Host> {
        let host = self.slots.get_mut(idx as usize)?.take()?;
        self.ids.remove(&host.name);
        self.free.push(idx);
        Some(host)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Live hosts with their indexes, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Host)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i as u32, h.as_ref()?)))
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<Host>>()
            + self.iter().map(|(_, h)| h.heap_bytes()).sum::<usize>()
            + self.ids.capacity() * (size_of::<(Box<str>, u32)>() + 1)
            + self.iter().map(|(_, h)| h.name.len()).sum::<usize>()
    }
}

/// Failure domains per level: which hosts (any state) carry each topology label value.
#[derive(Debug, Clone, Default)]
pub(crate) struct Domains {
    by_level: [IdMap<Sym, Vec<u32>>; 3],
    labelled_hosts: [usize; 3],
}

impl Domains {
    pub fn add(&mut self, host: u32, domains: &[Option<Sym>; 3]) {
        for (l, d) in domains.iter().enumerate() {
            if let Some(d) = d {
                self.by_level[l].entry(*d).or_default().push(host);
                self.labelled_hosts[l] += 1;
            }
        }
    }

    pub fn remove(&mut self, host: u32, domains: &[Option<Sym>; 3]) {
        for (l, d) in domains.iter().enumerate() {
            let Some(d) = d else { continue };
            let Some(hosts) = self.by_level[l].get_mut(d) else {
                continue;
            };
            if let Some(p) = hosts.iter().position(|&h| h == host) {
                hosts.swap_remove(p);
                self.labelled_hosts[l] -= 1;
            }
            if hosts.is_empty() {
                self.by_level[l].remove(d);
            }
        }
    }

    /// Number of domains at `level` (every domain that has a host, in any state).
    pub fn known(&self, level: usize) -> usize {
        self.by_level[level].len()
    }

    /// Number of hosts carrying the `level` label.
    pub fn labelled_hosts(&self, level: usize) -> usize {
        self.labelled_hosts[level]
    }

    pub fn iter(&self, level: usize) -> impl Iterator<Item = (Sym, &[u32])> {
        self.by_level[level].iter().map(|(&d, h)| (d, h.as_slice()))
    }

    pub fn heap_bytes(&self) -> usize {
        self.by_level
            .iter()
            .map(|m| m.capacity() * 33 + m.values().map(|v| v.capacity() * 4).sum::<usize>())
            .sum()
    }
}
