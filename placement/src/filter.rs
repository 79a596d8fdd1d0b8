//! The filters and the score of one host for one request: shared by the indexed search, the
//! naive baseline and the failure explanation, so all three agree on what fits.

use yun_fleet::{Qos, Resources};

use crate::engine::Engine;
use crate::fit::{dominant_share_after, first_short_dim};
use crate::groups::{SpreadCounts, level};
use crate::hosts::Host;
use crate::idmap::IdMap;
use crate::index::{Selector, label_bloom, selector_matches};
use crate::intern::Sym;
use crate::model::{Decision, HostState, Policy, Request};

/// Why a host was rejected (the first failing filter, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    NotReady,
    Cordoned,
    Maintenance,
    Selector,
    Cpu,
    Memory,
    Disk,
    Affinity,
    AntiAffinity,
    Spread,
}

#[derive(Debug)]
pub(crate) enum SelectorReq {
    Any,
    /// The pairs and their bloom.
    Match(Selector, u64),
    /// Names a label key or value no host has.
    Impossible,
}

/// A spread constraint against current counts: a domain is allowed iff its count `< limit`
/// (`count + 1 − min ≤ max_skew` ⇔ `count < min + max_skew`).
#[derive(Debug)]
pub(crate) struct SpreadReq<'e> {
    pub level: usize,
    /// `None` when the group has no members yet.
    pub counts: Option<&'e SpreadCounts>,
    pub limit: u64,
}

impl SpreadReq<'_> {
    pub fn allows(&self, domain: Sym) -> bool {
        u64::from(self.counts.map_or(0, |c| c.count(domain))) < self.limit
    }
}

/// A request with its strings resolved to interned ids and its group state looked up once.
#[derive(Debug)]
pub(crate) struct Resolved<'e> {
    pub resources: Resources,
    pub qos: Qos,
    pub policy: Policy,
    pub selector: SelectorReq,
    /// Hosts holding members; `None` when the request has no affinity group or it is empty.
    pub affinity: Option<&'e IdMap<u32, u32>>,
    /// `None` when the request has no anti-affinity group or nobody ever joined it.
    pub anti_affinity: Option<Sym>,
    pub spread: Option<SpreadReq<'e>>,
    pub image: Option<Sym>,
}

impl Engine {
    /// Lookups only: a name the engine has never seen means "no host has it" / "no members".
    pub(crate) fn resolve(&self, req: &Request) -> Resolved<'_> {
        let selector = if req.selector.is_empty() {
            SelectorReq::Any
        } else {
            let pairs: Option<Vec<(Sym, Sym)>> = req
                .selector
                .iter()
                .map(|(k, v)| Some((self.labels.get(k)?, self.labels.get(v)?)))
                .collect();
            match pairs {
                Some(mut pairs) => {
                    pairs.sort_unstable();
                    let bloom = label_bloom(&pairs);
                    SelectorReq::Match(pairs.into(), bloom)
                }
                None => SelectorReq::Impossible,
            }
        };
        let group = |name: &Option<String>| name.as_deref().and_then(|g| self.group_names.get(g));
        let spread = req.scheduling.spread.as_ref().map(|s| {
            let level = level(s.topology);
            let counts = self
                .group_names
                .get(&s.group)
                .and_then(|g| self.groups.spread(g, level));
            let min = counts.map_or(0, |c| c.min(self.domains.known(level)));
            SpreadReq {
                level,
                counts,
                limit: u64::from(min) + u64::from(s.max_skew),
            }
        });
        Resolved {
            resources: req.resources,
            qos: req.scheduling.qos,
            policy: req.policy.unwrap_or(self.cfg.default_policy),
            selector,
            affinity: group(&req.scheduling.affinity_group)
                .and_then(|g| self.groups.affinity_hosts(g)),
            anti_affinity: group(&req.scheduling.anti_affinity_group),
            spread,
            image: req.image.as_deref().and_then(|i| self.image_names.get(i)),
        }
    }

    /// Runs every filter on `host` (index `idx`). `selector_checked` skips the label filter for
    /// hosts that come from the request's selector index.
    pub(crate) fn check(
        &self,
        r: &Resolved<'_>,
        idx: u32,
        host: &Host,
        selector_checked: bool,
    ) -> Result<(), Reason> {
        match host.state {
            HostState::Ready => {}
            HostState::NotReady => return Err(Reason::NotReady),
            HostState::Cordoned => return Err(Reason::Cordoned),
            HostState::Maintenance => return Err(Reason::Maintenance),
        }
        if !selector_checked {
            match &r.selector {
                SelectorReq::Any => {}
                SelectorReq::Impossible => return Err(Reason::Selector),
                SelectorReq::Match(s, bloom)
                    if !selector_matches(s, *bloom, &host.labels, host.label_bloom) =>
                {
                    return Err(Reason::Selector);
                }
                SelectorReq::Match(..) => {}
            }
        }
        if let Some(d) = first_short_dim(&host.dims(), r.qos, r.resources) {
            return Err([Reason::Cpu, Reason::Memory, Reason::Disk][d]);
        }
        if r.affinity
            .is_some_and(|members| !members.contains_key(&idx))
        {
            return Err(Reason::Affinity);
        }
        if r.anti_affinity
            .is_some_and(|g| self.groups.anti_affinity_conflict(g, idx))
        {
            return Err(Reason::AntiAffinity);
        }
        if let Some(s) = &r.spread
            && !host.domains[s.level].is_some_and(|d| s.allows(d))
        {
            return Err(Reason::Spread);
        }
        Ok(())
    }

    /// Policy score in `[0, 1]` plus the image-locality bonus.
    pub(crate) fn score(&self, r: &Resolved<'_>, host: &Host) -> f64 {
        let share = dominant_share_after(&host.dims(), r.qos, r.resources);
        let policy = match r.policy {
            Policy::BinPack => share,
            Policy::Spread => 1.0 - share,
        };
        let cached = r.image.is_some_and(|i| host.has_image(i));
        policy
            + if cached {
                self.cfg.image_locality_weight
            } else {
                0.0
            }
    }
}

/// The best host seen so far: highest score, then smallest name (deterministic).
#[derive(Debug, Default)]
pub(crate) struct Best<'e> {
    pick: Option<(f64, &'e str)>,
}

impl<'e> Best<'e> {
    pub fn offer(&mut self, score: f64, name: &'e str) {
        let better = match self.pick {
            None => true,
            Some((s, n)) => score > s || (score == s && name < n),
        };
        if better {
            self.pick = Some((score, name));
        }
    }

    pub fn decision(&self) -> Option<Decision> {
        self.pick.map(|(score, host)| Decision {
            host: host.to_string(),
            score,
        })
    }
}
