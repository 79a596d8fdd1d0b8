//! Group membership counts, kept incrementally on every assign/unassign so that the affinity,
//! anti-affinity and spread filters are O(1) per host.

use std::collections::BTreeMap;

use yun_fleet::Topology;

use crate::idmap::IdMap;
use crate::intern::Sym;

/// Index of a topology level in per-level arrays.
pub(crate) fn level(t: Topology) -> usize {
    match t {
        Topology::Zone => 0,
        Topology::Rack => 1,
        Topology::Power => 2,
    }
}

/// The groups one VM belongs to (interned), as stored in its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Membership {
    pub affinity: Option<Sym>,
    pub anti_affinity: Option<Sym>,
    /// (group, level); the constraint's `max_skew` does not change membership.
    pub spread: Option<(Sym, u8)>,
}

/// Members of one spread group per domain, with a histogram so the minimum is O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpreadCounts {
    /// Domains with at least one member.
    counts: IdMap<Sym, u32>,
    /// member count → how many domains have it (counts ≥ 1 only).
    histogram: BTreeMap<u32, u32>,
}

impl SpreadCounts {
    pub fn count(&self, domain: Sym) -> u32 {
        self.counts.get(&domain).copied().unwrap_or(0)
    }

    /// Smallest count over `known_domains` domains (those without members count 0).
    pub fn min(&self, known_domains: usize) -> u32 {
        if known_domains > self.counts.len() {
            return 0;
        }
        self.histogram.keys().next().copied().unwrap_or(0)
    }

    /// How many domains have at least `count` members (`count` ≥ 1).
    pub fn domains_with_at_least(&self, count: u32) -> usize {
        self.histogram
            .range(count.max(1)..)
            .map(|(_, &n)| n as usize)
            .sum()
    }

    /// Domains with members, and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Sym, u32)> + '_ {
        self.counts.iter().map(|(&d, &c)| (d, c))
    }

    fn bump(histogram: &mut BTreeMap<u32, u32>, count: u32, up: bool) {
        if count == 0 {
            return;
        }
        if up {
            *histogram.entry(count).or_insert(0) += 1;
        } else if let Some(n) = histogram.get_mut(&count) {
            *n -= 1;
            if *n == 0 {
                histogram.remove(&count);
            }
        }
    }

    fn add(&mut self, domain: Sym) {
        let c = self.counts.entry(domain).or_insert(0);
        Self::bump(&mut self.histogram, *c, false);
        *c += 1;
        Self::bump(&mut self.histogram, *c, true);
    }

    fn remove(&mut self, domain: Sym) {
        let Some(c) = self.counts.get_mut(&domain) else {
            return;
        };
        Self::bump(&mut self.histogram, *c, false);
        *c -= 1;
        Self::bump(&mut self.histogram, *c, true);
        if *c == 0 {
            self.counts.remove(&domain);
        }
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// All group counts of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Groups {
    /// affinity group → host → members on it.
    affinity: IdMap<Sym, IdMap<u32, u32>>,
    /// (anti-affinity group, host) → members on it.
    anti_affinity: IdMap<(Sym, u32), u32>,
    /// (spread group, level) → members per domain.
    spread: IdMap<(Sym, u8), SpreadCounts>,
}

impl Groups {
    /// Hosts holding members of an affinity group; `None` when the group has no members.
    pub fn affinity_hosts(&self, group: Sym) -> Option<&IdMap<u32, u32>> {
        self.affinity.get(&group)
    }

    pub fn anti_affinity_conflict(&self, group: Sym, host: u32) -> bool {
        self.anti_affinity.contains_key(&(group, host))
    }

    pub fn spread(&self, group: Sym, level: usize) -> Option<&SpreadCounts> {
        self.spread.get(&(group, u8::try_from(level).ok()?))
    }

    /// Records a member on `host`, whose domains per level are `domains`.
    pub fn add(&mut self, m: &Membership, host: u32, domains: &[Option<Sym>; 3]) {
        if let Some(g) = m.affinity {
            *self.affinity.entry(g).or_default().entry(host).or_insert(0) += 1;
        }
        if let Some(g) = m.anti_affinity {
            *self.anti_affinity.entry((g, host)).or_insert(0) += 1;
        }
        self.add_spread(m, domains);
    }

    /// Forgets a member recorded by [`Groups::add`] with the same arguments.
    pub fn remove(&mut self, m: &Membership, host: u32, domains: &[Option<Sym>; 3]) {
        if let Some(g) = m.affinity
            && let Some(hosts) = self.affinity.get_mut(&g)
        {
            if let Some(n) = hosts.get_mut(&host) {
                *n -= 1;
                if *n == 0 {
                    hosts.remove(&host);
                }
            }
            if hosts.is_empty() {
                self.affinity.remove(&g);
            }
        }
        if let Some(g) = m.anti_affinity
            && let Some(n) = self.anti_affinity.get_mut(&(g, host))
        {
            *n -= 1;
            if *n == 0 {
                self.anti_affinity.remove(&(g, host));
            }
        }
        self.remove_spread(m, domains);
    }

    /// The spread part of [`Groups::add`] alone (a host changing domains moves only this).
    pub fn add_spread(&mut self, m: &Membership, domains: &[Option<Sym>; 3]) {
        if let Some((g, l)) = m.spread
            && let Some(d) = domains[usize::from(l)]
        {
            self.spread.entry((g, l)).or_default().add(d);
        }
    }

    pub fn remove_spread(&mut self, m: &Membership, domains: &[Option<Sym>; 3]) {
        if let Some((g, l)) = m.spread
            && let Some(d) = domains[usize::from(l)]
            && let Some(counts) = self.spread.get_mut(&(g, l))
        {
            counts.remove(d);
            if counts.is_empty() {
                self.spread.remove(&(g, l));
            }
        }
    }

    /// Rough heap use in bytes.
    pub fn heap_bytes(&self) -> usize {
        let inner: usize = self
            .affinity
            .values()
            .map(|h| h.capacity() * 9)
            .sum::<usize>()
            + self
                .spread
                .values()
                .map(|s| s.counts.capacity() * 9 + s.histogram.len() * 16)
                .sum::<usize>();
        self.affinity.capacity() * 57
            + self.anti_affinity.capacity() * 13
            + self.spread.capacity() * 65
            + inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RACK: u8 = 1;

    fn member(spread: Option<(Sym, u8)>) -> Membership {
        Membership {
            affinity: Some(7),
            anti_affinity: Some(8),
            spread,
        }
    }

    #[test]
    fn spread_min_counts_empty_known_domains_as_zero() {
        let mut g = Groups::default();
        let m = member(Some((1, RACK)));
        let on = |d: Sym| [None, Some(d), None];
        g.add(&m, 0, &on(10));
        g.add(&m, 1, &on(10));
        g.add(&m, 2, &on(11));
        let s = g.spread(1, usize::from(RACK)).unwrap();
        assert_eq!((s.count(10), s.count(11), s.count(12)), (2, 1, 0));
        assert_eq!(s.min(3), 0, "a third known domain has no members");
        assert_eq!(s.min(2), 1);
        assert_eq!(s.domains_with_at_least(2), 1);
        assert_eq!(s.domains_with_at_least(1), 2);
        g.remove(&m, 2, &on(11));
        assert_eq!(g.spread(1, usize::from(RACK)).unwrap().min(1), 2);
        g.remove(&m, 0, &on(10));
        g.remove(&m, 1, &on(10));
        assert!(
            g.spread(1, usize::from(RACK)).is_none(),
            "empty groups are dropped"
        );
    }

    #[test]
    fn hosts_without_the_domain_label_hold_no_spread_members() {
        let mut g = Groups::default();
        let m = member(Some((1, RACK)));
        g.add(&m, 0, &[Some(3), None, None]);
        assert!(g.spread(1, usize::from(RACK)).is_none());
        assert!(g.anti_affinity_conflict(8, 0));
        g.remove(&m, 0, &[Some(3), None, None]);
        assert!(!g.anti_affinity_conflict(8, 0));
    }

    #[test]
    fn affinity_and_anti_affinity_count_per_host() {
        let mut g = Groups::default();
        let m = member(None);
        let none = [None; 3];
        g.add(&m, 4, &none);
        g.add(&m, 4, &none);
        g.add(&m, 5, &none);
        assert_eq!(g.affinity_hosts(7).unwrap().len(), 2);
        g.remove(&m, 4, &none);
        assert!(g.anti_affinity_conflict(8, 4), "one member left on host 4");
        g.remove(&m, 4, &none);
        assert!(!g.anti_affinity_conflict(8, 4));
        assert_eq!(
            g.affinity_hosts(7).unwrap().keys().collect::<Vec<_>>(),
            [&5]
        );
        g.remove(&m, 5, &none);
        assert!(g.affinity_hosts(7).is_none());
    }
}
