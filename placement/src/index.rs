//! Ordered capacity indexes over Ready hosts, so that a decision visits few hosts:
//! - for bin-packing, hosts by how much memory a request of each QoS class could still get
//!   there: the walk starts at the first host that can hold the request and goes up from the
//!   tightest fit;
//! - for spreading, hosts by the dominant share in use, emptiest first.
//!
//! One index covers the whole fleet; one more per label selector in use (an equivalence class
//! of requests), built on first use and then maintained on every change like the fleet's.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use yun_fleet::Qos;

use crate::idmap::IdMap;
use crate::intern::Sym;
use crate::model::Policy;

/// Sort keys of one host: its exact memory headroom for a Guaranteed and for a Burstable
/// request (see `fit::Dim::headroom`), and its dominant used share scaled to `u64`.
pub(crate) type Keys = [u64; 3];

/// Position of the used-share key in [`Keys`].
pub(crate) const SHARE: usize = 2;

pub(crate) fn qos_slot(q: Qos) -> usize {
    match q {
        Qos::Guaranteed => 0,
        Qos::Burstable => 1,
    }
}

/// `share` (in `[0, 1]`) as an index key.
pub(crate) fn share_key(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64
}

/// Hosts ordered by each key. Ties are broken by host index (deterministic).
#[derive(Debug, Clone, Default)]
pub(crate) struct CapacityIndex {
    by_key: [BTreeSet<(u64, u32)>; 3],
}

impl CapacityIndex {
    pub fn insert(&mut self, keys: Keys, host: u32) {
        for (set, key) in self.by_key.iter_mut().zip(keys) {
            set.insert((key, host));
        }
    }

    pub fn remove(&mut self, keys: Keys, host: u32) {
        for (set, key) in self.by_key.iter_mut().zip(keys) {
            set.remove(&(key, host));
        }
    }

    pub fn len(&self) -> usize {
        self.by_key[0].len()
    }

    /// Calls `visit` on hosts until it breaks: for `BinPack`, every host whose `qos` memory
    /// headroom is at least `min_headroom` (the others cannot hold the request), tightest
    /// first; for `Spread`, every host, emptiest first.
    pub fn scan(
        &self,
        qos: Qos,
        min_headroom: u64,
        policy: Policy,
        mut visit: impl FnMut(u32) -> ControlFlow<()>,
    ) {
        let _ = match policy {
            Policy::BinPack => self.by_key[qos_slot(qos)]
                .range((min_headroom, 0)..)
                .map(|&(_, h)| h)
                .try_for_each(&mut visit),
            Policy::Spread => self.by_key[SHARE]
                .iter()
                .map(|&(_, h)| h)
                .try_for_each(&mut visit),
        };
    }

    /// Every (key, host) entry for key `slot` (an index into [`Keys`]), in order.
    pub fn entries(&self, slot: usize) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.by_key[slot].iter().copied()
    }

    /// Rough heap use in bytes (B-tree nodes hold 11 entries of 16 bytes, about two-thirds full).
    pub fn heap_bytes(&self) -> usize {
        self.by_key.iter().map(|s| s.len() * 24).sum()
    }
}

/// Interned label selector, sorted by key (each key at most once).
pub(crate) type Selector = Box<[(Sym, Sym)]>;

/// A 64-bit Bloom filter of label pairs (one bit per pair). Hosts keep theirs inline, so a
/// selector usually rejects a host without reading its label list (a cache miss per host when
/// scanning the fleet).
pub(crate) fn label_bloom(pairs: &[(Sym, Sym)]) -> u64 {
    pairs.iter().fold(0, |acc, &(k, v)| {
        let h = ((u64::from(k) << 32) | u64::from(v)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        acc | 1 << (h >> 58)
    })
}

/// Whether every pair of `selector` is among `labels` (both sorted by key). `host_bloom` is
/// `label_bloom(labels)`, `selector_bloom` is `label_bloom(selector)`.
pub(crate) fn selector_matches(
    selector: &[(Sym, Sym)],
    selector_bloom: u64,
    labels: &[(Sym, Sym)],
    host_bloom: u64,
) -> bool {
    host_bloom & selector_bloom == selector_bloom && selector_contained(selector, labels)
}

fn selector_contained(selector: &[(Sym, Sym)], labels: &[(Sym, Sym)]) -> bool {
    selector.iter().all(|&(k, v)| {
        labels
            .binary_search_by_key(&k, |&(lk, _)| lk)
            .is_ok_and(|i| labels[i].1 == v)
    })
}

/// At most this many selector indexes are kept; requests with further selectors scan the fleet
/// index and filter by labels (correct, slower). Bounds memory against selector churn.
pub(crate) const MAX_SELECTOR_CLASSES: usize = 128;

/// The per-selector indexes.
#[derive(Debug, Clone, Default)]
pub(crate) struct SelectorClasses {
    ids: IdMap<Selector, usize>,
    /// (selector, its bloom, its index)
    classes: Vec<(Selector, u64, CapacityIndex)>,
}

impl SelectorClasses {
    pub fn get(&self, selector: &[(Sym, Sym)]) -> Option<&CapacityIndex> {
        self.ids.get(selector).map(|&i| &self.classes[i].2)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[(Sym, Sym)], &CapacityIndex)> {
        self.classes.iter().map(|(s, _, i)| (&**s, i))
    }

    pub fn is_full(&self) -> bool {
        self.classes.len() >= MAX_SELECTOR_CLASSES
    }

    /// Adds a class whose members `members` yields as `(keys, host)`.
    pub fn add(
        &mut self,
        selector: Selector,
        members: impl IntoIterator<Item = (Keys, u32)>,
    ) -> &CapacityIndex {
        let mut index = CapacityIndex::default();
        for (keys, host) in members {
            index.insert(keys, host);
        }
        let i = self.classes.len();
        self.ids.insert(selector.clone(), i);
        let bloom = label_bloom(&selector);
        self.classes.push((selector, bloom, index));
        &self.classes[i].2
    }

    /// Adds a Ready host with `labels` (and their `bloom`) to every class it matches.
    pub fn insert(&mut self, labels: &[(Sym, Sym)], bloom: u64, keys: Keys, host: u32) {
        for (sel, sel_bloom, index) in &mut self.classes {
            if selector_matches(sel, *sel_bloom, labels, bloom) {
                index.insert(keys, host);
            }
        }
    }

    /// Undoes [`SelectorClasses::insert`] with the same arguments.
    pub fn remove(&mut self, labels: &[(Sym, Sym)], bloom: u64, keys: Keys, host: u32) {
        for (sel, sel_bloom, index) in &mut self.classes {
            if selector_matches(sel, *sel_bloom, labels, bloom) {
                index.remove(keys, host);
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.classes
            .iter()
            .map(|(s, _, i)| s.len() * 8 + i.heap_bytes() + 64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(index: &CapacityIndex, qos: Qos, min: u64, policy: Policy) -> Vec<u32> {
        let mut seen = Vec::new();
        index.scan(qos, min, policy, |h| {
            seen.push(h);
            ControlFlow::Continue(())
        });
        seen
    }

    #[test]
    fn binpack_starts_at_the_first_host_with_room_and_spread_at_the_emptiest() {
        let mut i = CapacityIndex::default();
        i.insert([10, 40, 7], 0);
        i.insert([30, 5, 1], 1);
        i.insert([20, 20, 9], 2);
        i.insert([20, 1, 3], 3);
        assert_eq!(order(&i, Qos::Guaranteed, 15, Policy::BinPack), [2, 3, 1]);
        assert_eq!(order(&i, Qos::Burstable, 6, Policy::BinPack), [2, 0]);
        assert_eq!(order(&i, Qos::Guaranteed, 15, Policy::Spread), [1, 3, 0, 2]);
        i.remove([20, 20, 9], 2);
        assert_eq!(order(&i, Qos::Burstable, 0, Policy::Spread), [1, 3, 0]);
        let mut first = None;
        i.scan(Qos::Burstable, 0, Policy::Spread, |h| {
            first = Some(h);
            ControlFlow::Break(())
        });
        assert_eq!((first, i.len()), (Some(1), 3));
        assert_eq!((share_key(0.0), share_key(2.0)), (0, u64::from(u32::MAX)));
    }

    fn matches(selector: &[(Sym, Sym)], labels: &[(Sym, Sym)]) -> bool {
        let m = selector_matches(selector, label_bloom(selector), labels, label_bloom(labels));
        assert_eq!(
            m,
            selector_contained(selector, labels),
            "the bloom never decides alone"
        );
        m
    }

    #[test]
    fn selectors_match_subsets_of_labels() {
        let labels = [(1, 10), (2, 20), (5, 50)];
        assert!(matches(&[], &labels));
        assert!(matches(&[(1, 10), (5, 50)], &labels));
        assert!(!matches(&[(1, 10), (5, 51)], &labels));
        assert!(!matches(&[(3, 10)], &labels));
        assert!(!matches(&[(1, 10)], &[]));
        // A selector pair sharing a bloom bit with a host pair is still checked exactly.
        let collide = (0u32..10_000)
            .map(|v| (7, v))
            .find(|&p| label_bloom(&[p]) == label_bloom(&[(1, 10)]) && p != (1, 10))
            .unwrap();
        assert!(!matches(&[collide], &labels));
    }

    #[test]
    fn classes_follow_their_members() {
        let mut c = SelectorClasses::default();
        let sel: Selector = vec![(1, 10)].into();
        c.add(sel.clone(), [([5, 5, 5], 0)]);
        let (l1, l2) = ([(1, 10), (2, 20)], [(1, 11)]);
        c.insert(&l1, label_bloom(&l1), [7, 7, 7], 1);
        c.insert(&l2, label_bloom(&l2), [9, 9, 9], 2);
        assert_eq!(
            order(c.get(&sel).unwrap(), Qos::Burstable, 0, Policy::BinPack),
            [0, 1]
        );
        c.remove(&l1, label_bloom(&l1), [7, 7, 7], 1);
        assert_eq!(
            order(c.get(&sel).unwrap(), Qos::Burstable, 0, Policy::BinPack),
            [0]
        );
        assert!(c.get(&[(1, 11)]).is_none());
    }
}
