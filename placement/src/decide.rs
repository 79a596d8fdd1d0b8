//! The indexed decision. Every path is complete (it finds a host whenever one fits), so a
//! failure is real; only then is the fleet scanned, to explain it.
//!
//! Candidate sources, first applicable wins:
//! 1. affinity group with members: only the hosts holding members;
//! 2. spread constraint allowing few hosts: only the hosts of the allowed domains;
//! 3. capacity index (the selector's own index when the request has a selector): walk in
//!    policy order (see `index`), stop after `candidates_per_decision` feasible hosts; then a
//!    bounded number of feasible hosts that cache the request's image.

use std::ops::ControlFlow;
use std::sync::PoisonError;

use crate::engine::Engine;
use crate::filter::{Best, Resolved, SelectorReq, SpreadReq};
use crate::index::{CapacityIndex, selector_matches};
use crate::model::{Decision, HostState, Request};
use crate::nofit::NoFit;

impl Engine {
    /// Chooses a host for `req`, or explains why none fits. Cost is about
    /// `candidates_per_decision` host checks plus O(log hosts) on success.
    pub fn decide(&self, req: &Request) -> Result<Decision, NoFit> {
        let r = self.resolve(req);
        let mut best = Best::default();
        self.search(&r, &mut best);
        best.decision().ok_or_else(|| self.explain(&r))
    }

    /// Whether `req` fits on `host` now (to re-check a decision made on an older view).
    pub fn fits_now(&self, host: &str, req: &Request) -> bool {
        let r = self.resolve(req);
        self.hosts
            .find(host)
            .and_then(|idx| Some((idx, self.hosts.get(idx)?)))
            .is_some_and(|(idx, h)| self.check(&r, idx, h, false).is_ok())
    }

    fn k(&self) -> usize {
        self.cfg.candidates_per_decision.max(1)
    }

    fn search<'e>(&'e self, r: &Resolved<'e>, best: &mut Best<'e>) {
        if matches!(r.selector, SelectorReq::Impossible) {
            return;
        }
        if let Some(members) = r.affinity {
            for &h in members.keys() {
                self.consider(r, h, false, best);
            }
            return;
        }
        if let Some(s) = &r.spread
            && self.search_domains(r, s, best)
        {
            return;
        }
        self.search_index(r, best);
    }

    /// Checks and scores one host; `true` if it is feasible.
    fn consider<'e>(
        &'e self,
        r: &Resolved<'e>,
        idx: u32,
        selector_checked: bool,
        best: &mut Best<'e>,
    ) -> bool {
        let Some(host) = self.hosts.get(idx) else {
            return false;
        };
        if self.check(r, idx, host, selector_checked).is_err() {
            return false;
        }
        best.offer(self.score(r, host), &host.name);
        true
    }

    /// Searches only the domains the spread constraint allows, when their hosts are fewer than
    /// what a capacity walk would likely visit (about `k·ready/allowed`, i.e. when
    /// `allowed² < k·ready`). Returns `false` (nothing done) when the walk is cheaper.
    fn search_domains<'e>(
        &'e self,
        r: &Resolved<'e>,
        s: &SpreadReq<'e>,
        best: &mut Best<'e>,
    ) -> bool {
        let known = self.domains.known(s.level);
        if known == 0 || s.limit == 0 {
            return true; // no domain can take a member
        }
        let blocked = match (s.counts, u32::try_from(s.limit)) {
            (Some(c), Ok(limit)) => c.domains_with_at_least(limit),
            _ => 0,
        };
        let allowed = known.saturating_sub(blocked);
        if allowed == 0 {
            return true;
        }
        let hosts = self.domains.labelled_hosts(s.level) * allowed / known;
        if hosts.saturating_mul(hosts) >= self.k().saturating_mul(self.ready.len()) {
            return false;
        }
        for (d, members) in self.domains.iter(s.level) {
            if s.allows(d) {
                for &h in members {
                    self.consider(r, h, false, best);
                }
            }
        }
        true
    }

    fn search_index<'e>(&'e self, r: &Resolved<'e>, best: &mut Best<'e>) {
        let mut picked = Vec::with_capacity(self.k());
        match &r.selector {
            SelectorReq::Match(sel, bloom) => {
                let classes = self.classes.read().unwrap_or_else(PoisonError::into_inner);
                if let Some(index) = classes.get(sel) {
                    self.walk(index, r, true, best, &mut picked);
                } else if classes.is_full() {
                    self.walk(&self.ready, r, false, best, &mut picked);
                } else {
                    drop(classes);
                    let mut classes = self.classes.write().unwrap_or_else(PoisonError::into_inner);
                    if classes.get(sel).is_none() {
                        let members = self.hosts.iter().filter(|(_, h)| {
                            h.state == HostState::Ready
                                && selector_matches(sel, *bloom, &h.labels, h.label_bloom)
                        });
                        classes.add(sel.clone(), members.map(|(i, h)| (h.keys, i)));
                    }
                    if let Some(index) = classes.get(sel) {
                        self.walk(index, r, true, best, &mut picked);
                    }
                }
            }
            _ => self.walk(&self.ready, r, true, best, &mut picked),
        }
        self.search_image(r, best, &picked);
    }

    /// Walks `index` in policy order until `k` feasible hosts are found.
    fn walk<'e>(
        &'e self,
        index: &CapacityIndex,
        r: &Resolved<'e>,
        selector_checked: bool,
        best: &mut Best<'e>,
        picked: &mut Vec<u32>,
    ) {
        let k = self.k();
        index.scan(r.qos, r.resources.memory_mib, r.policy, |h| {
            if self.consider(r, h, selector_checked, best) {
                picked.push(h);
                if picked.len() >= k {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
    }

    /// Also offers up to `k/2` feasible hosts caching the request's image, visiting at most
    /// `4k` of them from a start that rotates with the fleet's state (so that successive
    /// decisions do not all look at the same few hosts).
    fn search_image<'e>(&'e self, r: &Resolved<'e>, best: &mut Best<'e>, picked: &[u32]) {
        let Some(image) = r.image else { return };
        if self.cfg.image_locality_weight <= 0.0 {
            return;
        }
        let Some(set) = self.image_hosts.get(&image) else {
            return;
        };
        let k = self.k();
        if picked.len() < k {
            return; // the walk was exhaustive: every feasible host was offered already
        }
        let (mut wanted, mut budget) = ((k / 2).max(1), 4 * k);
        let span = set.last().map_or(1, |&last| u64::from(last) + 1);
        let spin = (self.vms.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let start = u32::try_from(spin % span).unwrap_or(0);
        for &h in set.range(start..).chain(set.range(..start)) {
            if budget == 0 || wanted == 0 {
                break;
            }
            budget -= 1;
            if !picked.contains(&h) && self.consider(r, h, false, best) {
                wanted -= 1;
            }
        }
    }
}
