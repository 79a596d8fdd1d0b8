//! The engine's state and its host-side operations (register, state, images, removal).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use yun_fleet::Topology;

use crate::groups::{Groups, level};
use crate::hosts::{Domains, Host, HostTable};
use crate::idmap::IdMap;
use crate::index::{CapacityIndex, SelectorClasses, label_bloom};
use crate::intern::{Interner, Sym};
use crate::model::{Allocation, EngineConfig, HostSpec, HostState};
use crate::shapes::Shapes;

/// Errors of the engine's mutating operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown host {0:?}")]
    UnknownHost(String),
    #[error("VM {uid} is already assigned to host {host}")]
    AlreadyAssigned { uid: String, host: String },
    #[error("host {host} still has {vms} VMs assigned")]
    HostHasVms { host: String, vms: usize },
}

/// Where a VM is and what it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VmEntry {
    pub host: u32,
    pub shape: u32,
}

/// The placement engine: hosts, their allocations and group memberships, and the indexes that
/// keep a decision far below O(hosts). See the crate docs.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) hosts: HostTable,
    pub(crate) domains: Domains,
    /// Label keys and values (domains are label values). Append-only: selector indexes keep
    /// these ids, so an id must never be reused for another string.
    pub(crate) labels: Interner,
    pub(crate) group_names: Interner,
    pub(crate) image_names: Interner,
    pub(crate) image_hosts: IdMap<Sym, BTreeSet<u32>>,
    /// Ready hosts of the whole fleet.
    pub(crate) ready: CapacityIndex,
    /// Ready hosts per label selector, built lazily by `decide` (hence the lock; `&mut self`
    /// methods reach it without locking through `get_mut`).
    pub(crate) classes: RwLock<SelectorClasses>,
    pub(crate) groups: Groups,
    pub(crate) shapes: Shapes,
    pub(crate) vms: HashMap<Arc<str>, VmEntry>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            cfg,
            hosts: HostTable::default(),
            domains: Domains::default(),
            labels: Interner::default(),
            group_names: Interner::default(),
            image_names: Interner::default(),
            image_hosts: IdMap::default(),
            ready: CapacityIndex::default(),
            classes: RwLock::new(SelectorClasses::default()),
            groups: Groups::default(),
            shapes: Shapes::default(),
            vms: HashMap::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub(crate) fn find(&self, host: &str) -> Result<u32, EngineError> {
        self.hosts
            .find(host)
            .ok_or_else(|| EngineError::UnknownHost(host.to_string()))
    }

    /// Puts a Ready host into the capacity indexes under its current headroom.
    pub(crate) fn index(&mut self, idx: u32) {
        let Some(host) = self.hosts.get_mut(idx) else {
            return;
        };
        if host.state != HostState::Ready {
            return;
        }
        host.keys = host.index_keys();
        self.ready.insert(host.keys, idx);
        let classes = self
            .classes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        classes.insert(&host.labels, host.label_bloom, host.keys, idx);
    }

    /// Takes a host out of the capacity indexes (before anything that changes its keys).
    pub(crate) fn unindex(&mut self, idx: u32) {
        let Some(host) = self.hosts.get(idx) else {
            return;
        };
        if host.state != HostState::Ready {
            return;
        }
        self.ready.remove(host.keys, idx);
        let classes = self
            .classes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        classes.remove(&host.labels, host.label_bloom, host.keys, idx);
    }

    /// Registers a host (Ready, nothing allocated) or updates one, keeping its state, VMs and
    /// allocation. Changed topology labels move its VMs' spread counts to the new domains.
    pub fn upsert_host(&mut self, spec: HostSpec) {
        let mut labels: Vec<(Sym, Sym)> = spec
            .labels
            .iter()
            .map(|(k, v)| (self.labels.intern(k), self.labels.intern(v)))
            .collect();
        labels.sort_unstable();
        let domains =
            Topology::ALL.map(|t| spec.labels.get(t.label()).and_then(|v| self.labels.get(v)));
        let Some(idx) = self.hosts.find(&spec.name) else {
            let host = Host {
                name: spec.name.into(),
                capacity: spec.capacity,
                ratios: spec.ratios.sanitized(),
                label_bloom: label_bloom(&labels),
                labels: labels.into(),
                domains,
                state: HostState::Ready,
                alloc: Allocation::default(),
                keys: [0; 3],
                images: Box::default(),
                vms: Vec::new(),
            };
            let idx = self.hosts.insert(host);
            self.domains.add(idx, &domains);
            self.index(idx);
            return;
        };
        self.unindex(idx);
        let Some(host) = self.hosts.get_mut(idx) else {
            return;
        };
        host.capacity = spec.capacity;
        host.ratios = spec.ratios.sanitized();
        host.label_bloom = label_bloom(&labels);
        host.labels = labels.into();
        if host.domains != domains {
            let old = std::mem::replace(&mut host.domains, domains);
            self.domains.remove(idx, &old);
            self.domains.add(idx, &domains);
            for uid in &host.vms {
                let shape = self.vms.get(uid).and_then(|vm| self.shapes.get(vm.shape));
                if let Some(shape) = shape {
                    self.groups.remove_spread(&shape.groups, &old);
                    self.groups.add_spread(&shape.groups, &domains);
                }
            }
        }
        self.index(idx);
    }

    pub fn set_state(&mut self, host: &str, state: HostState) -> Result<(), EngineError> {
        let idx = self.find(host)?;
        self.unindex(idx);
        if let Some(h) = self.hosts.get_mut(idx) {
            h.state = state;
        }
        self.index(idx);
        Ok(())
    }

    pub fn state(&self, host: &str) -> Option<HostState> {
        self.hosts.by_name(host).map(|h| h.state)
    }

    /// Forgets a host; refused while VMs are assigned to it (unassign or move them first).
    pub fn remove_host(&mut self, host: &str) -> Result<(), EngineError> {
        let idx = self.find(host)?;
        let vms = self.hosts.get(idx).map_or(0, |h| h.vms.len());
        if vms > 0 {
            return Err(EngineError::HostHasVms {
                host: host.to_string(),
                vms,
            });
        }
        self.unindex(idx);
        self.replace_images(idx, Vec::new());
        if let Some(h) = self.hosts.remove(idx) {
            self.domains.remove(idx, &h.domains);
        }
        Ok(())
    }

    /// Replaces the set of image digests cached on a host.
    pub fn set_images<'a>(
        &mut self,
        host: &str,
        sha256s: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), EngineError> {
        let idx = self.find(host)?;
        let unique: BTreeSet<&str> = sha256s.into_iter().collect();
        let syms = unique
            .into_iter()
            .map(|s| self.image_names.intern(s))
            .collect();
        self.replace_images(idx, syms);
        Ok(())
    }

    fn replace_images(&mut self, idx: u32, mut syms: Vec<Sym>) {
        let Some(host) = self.hosts.get_mut(idx) else {
            return;
        };
        syms.sort_unstable();
        for &s in &syms {
            self.image_hosts.entry(s).or_default().insert(idx);
        }
        let old = std::mem::replace(&mut host.images, syms.into());
        for &s in old.iter() {
            // Still cached if the new set has it: only the interner reference goes.
            if !host.has_image(s)
                && let Some(set) = self.image_hosts.get_mut(&s)
            {
                set.remove(&idx);
                if set.is_empty() {
                    self.image_hosts.remove(&s);
                }
            }
            self.image_names.release(s);
        }
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    pub fn allocation(&self, host: &str) -> Option<Allocation> {
        self.hosts.by_name(host).map(|h| h.alloc)
    }

    pub fn host_of(&self, uid: &str) -> Option<&str> {
        let vm = self.vms.get(uid)?;
        self.hosts.get(vm.host).map(|h| &*h.name)
    }

    pub fn vms_on(&self, host: &str) -> Vec<String> {
        self.hosts
            .by_name(host)
            .map(|h| h.vms.iter().map(|u| u.to_string()).collect())
            .unwrap_or_default()
    }

    /// Names of all hosts (in no particular order).
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|(_, h)| h.name.to_string()).collect()
    }

    /// Members of a spread group per domain (domains with members only).
    pub fn spread_counts(&self, group: &str, topology: Topology) -> BTreeMap<String, u32> {
        self.group_names
            .get(group)
            .and_then(|g| self.groups.spread(g, level(topology)))
            .map(|s| {
                s.iter()
                    .map(|(d, c)| (self.labels.name(d).to_string(), c))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rough heap use of the engine in bytes (tables, indexes, interned strings).
    pub fn approx_heap_bytes(&self) -> usize {
        let classes = self.classes.read().unwrap_or_else(PoisonError::into_inner);
        let vm_strings: usize = self
            .vms
            .keys()
            .map(|u| (16 + u.len()).next_multiple_of(8))
            .sum();
        self.hosts.heap_bytes()
            + self.domains.heap_bytes()
            + self.labels.heap_bytes()
            + self.group_names.heap_bytes()
            + self.image_names.heap_bytes()
            + self.image_hosts.capacity() * 33
            + self
                .image_hosts
                .values()
                .map(|s| s.len() * 6)
                .sum::<usize>()
            + self.ready.heap_bytes()
            + classes.heap_bytes()
            + self.groups.heap_bytes()
            + self.shapes.heap_bytes()
            + self.vms.capacity() * (size_of::<(Arc<str>, VmEntry)>() + 1)
            + vm_strings
    }
}

impl Clone for Engine {
    fn clone(&self) -> Self {
        let classes = self
            .classes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Engine {
            cfg: self.cfg.clone(),
            hosts: self.hosts.clone(),
            domains: self.domains.clone(),
            labels: self.labels.clone(),
            group_names: self.group_names.clone(),
            image_names: self.image_names.clone(),
            image_hosts: self.image_hosts.clone(),
            ready: self.ready.clone(),
            classes: RwLock::new(classes),
            groups: self.groups.clone(),
            shapes: self.shapes.clone(),
            vms: self.vms.clone(),
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .field("hosts", &self.hosts.len())
            .field("ready", &self.ready.len())
            .field("vms", &self.vms.len())
            .field("shapes", &self.shapes.live())
            .finish_non_exhaustive()
    }
}
