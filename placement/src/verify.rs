//! Self-check of the incremental state against a recomputation from the host table, for tests
//! (the property tests call it after every operation).

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError};

use crate::engine::Engine;
use crate::groups::Groups;
use crate::idmap::IdMap;
use crate::index::{CapacityIndex, label_bloom, selector_matches};
use crate::intern::Sym;
use crate::model::HostState;

/// (key, host) in a capacity index.
type Entry = (u64, u32);

impl Engine {
    /// The index of Ready hosts matching `selector`, computed from scratch.
    fn expected_index(&self, selector: &[(Sym, Sym)]) -> CapacityIndex {
        let mut want = CapacityIndex::default();
        for (i, h) in self.hosts.iter() {
            let bloom = label_bloom(selector);
            if h.state == HostState::Ready
                && selector_matches(selector, bloom, &h.labels, h.label_bloom)
            {
                want.insert(h.index_keys(), i);
            }
        }
        want
    }

    /// Recomputes every index from the hosts and compares: capacity keys, the fleet index, each
    /// selector index, VM positions. `Err` names the first disagreement.
    #[doc(hidden)]
    pub fn verify_indexes(&self) -> Result<(), String> {
        let entries = |index: &CapacityIndex| -> Vec<BTreeSet<Entry>> {
            (0..3).map(|slot| index.entries(slot).collect()).collect()
        };
        if entries(&self.ready) != entries(&self.expected_index(&[])) {
            return Err("fleet index differs from the hosts".into());
        }
        let classes = self.classes.read().unwrap_or_else(PoisonError::into_inner);
        for (sel, index) in classes.iter() {
            if entries(index) != entries(&self.expected_index(sel)) {
                return Err(format!("selector index {sel:?} differs from the hosts"));
            }
        }
        for (i, h) in self.hosts.iter() {
            if h.label_bloom != label_bloom(&h.labels) {
                return Err(format!("host {i}: stale label bloom"));
            }
            for uid in &h.vms {
                match self.vms.get_key_value(uid) {
                    Some((key, vm)) if vm.host == i && Arc::ptr_eq(key, uid) => {}
                    other => return Err(format!("vm {uid} on host {i}: {other:?}")),
                }
            }
        }
        let on_hosts: usize = self.hosts.iter().map(|(_, h)| h.vms.len()).sum();
        if on_hosts != self.vms.len() {
            return Err(format!("{on_hosts} VMs on hosts, {} known", self.vms.len()));
        }
        let mut groups = Groups::default();
        let mut images: IdMap<u32, BTreeSet<u32>> = IdMap::default();
        for (i, h) in self.hosts.iter() {
            for uid in &h.vms {
                let shape = self.vms.get(uid).and_then(|vm| self.shapes.get(vm.shape));
                match shape {
                    Some(s) => groups.add(&s.groups, i, &h.domains),
                    None => return Err(format!("vm {uid} has no shape")),
                }
            }
            for &img in h.images.iter() {
                images.entry(img).or_default().insert(i);
            }
        }
        if groups != self.groups {
            return Err("group counts differ from the VMs".into());
        }
        if images != self.image_hosts {
            return Err("image host sets differ from the hosts".into());
        }
        Ok(())
    }
}
