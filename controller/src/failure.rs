//! Failure detection from lease expiry, with a partition guard and a fencing hook.
//!
//! Pure: the fleet index feeds lease losses and returns in, [`FailureDetector::tick`] says what
//! to do. A host whose lease expired is `Silent` (NotReady) at once. It may only be fenced (and,
//! in a later version, evacuated) after a grace period, at a capped rate, and never while
//! *many* hosts are silent at the same time: mass silence means the control plane lost the
//! network, not that the fleet died, and fencing then would take down healthy hosts.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Liveness of one host as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Holds its lease.
    Ready,
    /// Lease expired: NotReady. Its VMs are reported as not reporting; nothing is moved.
    Silent,
    /// A fence (BMC power-off or storage fence) was requested.
    Fencing,
    /// Fenced: known to be off. Evacuation may start from here (a later version).
    Fenced,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("host liveness cannot go from {from:?} to {to:?}")]
pub struct BadTransition {
    pub from: Liveness,
    pub to: Liveness,
}

impl Liveness {
    /// The checked transition function.
    pub fn to(self, next: Liveness) -> Result<Liveness, BadTransition> {
        use Liveness::*;
        let ok = matches!(
            (self, next),
            (Ready, Silent)
                | (Silent, Ready)
                | (Silent, Fencing)
                | (Fencing, Fenced)
                | (Fencing, Silent)
                | (Fencing, Ready)
                | (Fenced, Ready)
        );
        if ok {
            Ok(next)
        } else {
            Err(BadTransition {
                from: self,
                to: next,
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailureConfig {
    /// More than this fraction of known hosts silent at once = control-plane partition.
    pub partition_fraction: f64,
    /// Partition clears when the silent fraction falls below this (hysteresis).
    pub partition_clear_fraction: f64,
    /// How long a host must stay silent before it may be fenced.
    pub fence_grace: Duration,
    /// At most this many fences per minute, fleet-wide.
    pub max_fences_per_minute: usize,
}

impl Default for FailureConfig {
    fn default() -> Self {
        FailureConfig {
            partition_fraction: 0.10,
            partition_clear_fraction: 0.05,
            fence_grace: Duration::from_secs(60),
            max_fences_per_minute: 10,
        }
    }
}

/// What the caller should do after a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Ask the fencing hook to fence this host.
    Fence(String),
    /// Mass silence began: raise the alert; no host will be fenced while it lasts.
    PartitionSuspected { silent: usize, known: usize },
    /// Mass silence ended.
    PartitionCleared { silent: usize, known: usize },
}

#[derive(Debug, Clone)]
struct Silence {
    state: Liveness,
    since: Instant,
}

/// Tracks only hosts that are not Ready, so its memory follows failures, not fleet size.
#[derive(Debug)]
pub struct FailureDetector {
    cfg: FailureConfig,
    silent: HashMap<Box<str>, Silence>,
    known: usize,
    partition: bool,
    recent_fences: VecDeque<Instant>,
}

impl FailureDetector {
    pub fn new(cfg: FailureConfig) -> FailureDetector {
        FailureDetector {
            cfg,
            silent: HashMap::new(),
            known: 0,
            partition: false,
            recent_fences: VecDeque::new(),
        }
    }

    /// Number of hosts the fleet knows (Ready or not); the partition fraction's denominator.
    pub fn set_known_hosts(&mut self, known: usize) {
        self.known = known;
    }

    pub fn liveness(&self, host: &str) -> Liveness {
        self.silent.get(host).map_or(Liveness::Ready, |s| s.state)
    }

    pub fn silent_count(&self) -> usize {
        self.silent.len()
    }

    pub fn partition_suspected(&self) -> bool {
        self.partition
    }

    /// The host's lease expired (its `info` key was deleted).
    pub fn lease_lost(&mut self, host: &str, now: Instant) {
        self.silent.entry(host.into()).or_insert(Silence {
            state: Liveness::Silent,
            since: now,
        });
    }

    /// The host registered again. Returns how long it was silent, if it was.
    pub fn lease_back(&mut self, host: &str, now: Instant) -> Option<Duration> {
        self.silent
            .remove(host)
            .map(|s| now.saturating_duration_since(s.since))
    }

    /// The fencing hook's answer for a host in `Fencing`.
    pub fn fence_result(&mut self, host: &str, fenced: bool) -> Result<(), BadTransition> {
        if let Some(s) = self.silent.get_mut(host) {
            let next = if fenced {
                Liveness::Fenced
            } else {
                Liveness::Silent
            };
            s.state = s.state.to(next)?;
        }
        Ok(())
    }

    fn silent_fraction(&self) -> f64 {
        if self.known == 0 {
            0.0
        } else {
            self.silent.len() as f64 / self.known as f64
        }
    }

    /// Re-evaluates partition state and picks hosts to fence (oldest silence first).
    pub fn tick(&mut self, now: Instant) -> Vec<FailureAction> {
        let mut actions = Vec::new();
        let fraction = self.silent_fraction();
        let (silent, known) = (self.silent.len(), self.known);
        if !self.partition && fraction > self.cfg.partition_fraction {
            self.partition = true;
            actions.push(FailureAction::PartitionSuspected { silent, known });
        } else if self.partition && fraction < self.cfg.partition_clear_fraction {
            self.partition = false;
            actions.push(FailureAction::PartitionCleared { silent, known });
        }
        if self.partition {
            return actions;
        }
        let minute = Duration::from_secs(60);
        while self
            .recent_fences
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= minute)
        {
            self.recent_fences.pop_front();
        }
        let budget = self
            .cfg
            .max_fences_per_minute
            .saturating_sub(self.recent_fences.len());
        let mut due: Vec<(&Box<str>, Instant)> = self
            .silent
            .iter()
            .filter(|(_, s)| {
                s.state == Liveness::Silent
                    && now.saturating_duration_since(s.since) >= self.cfg.fence_grace
            })
            .map(|(h, s)| (h, s.since))
            .collect();
        due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        let chosen: Vec<String> = due
            .into_iter()
            .take(budget)
            .map(|(h, _)| h.to_string())
            .collect();
        for host in chosen {
            if let Some(s) = self.silent.get_mut(host.as_str()) {
                s.state = Liveness::Fencing;
            }
            self.recent_fences.push_back(now);
            actions.push(FailureAction::Fence(host));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(known: usize) -> FailureDetector {
        let mut d = FailureDetector::new(FailureConfig {
            fence_grace: Duration::from_secs(10),
            max_fences_per_minute: 2,
            ..FailureConfig::default()
        });
        d.set_known_hosts(known);
        d
    }

    #[test]
    fn a_lost_lease_is_not_ready_at_once_and_fenced_only_after_grace() {
        let t0 = Instant::now();
        let mut d = detector(100);
        d.lease_lost("h1", t0);
        assert_eq!(d.liveness("h1"), Liveness::Silent);
        assert!(d.tick(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(
            d.tick(t0 + Duration::from_secs(10)),
            vec![FailureAction::Fence("h1".into())]
        );
        assert_eq!(d.liveness("h1"), Liveness::Fencing);
        d.fence_result("h1", true).unwrap();
        assert_eq!(d.liveness("h1"), Liveness::Fenced);
        assert!(d.lease_back("h1", t0 + Duration::from_secs(20)).is_some());
        assert_eq!(d.liveness("h1"), Liveness::Ready);
    }

    #[test]
    fn mass_silence_is_a_partition_and_nothing_is_fenced() {
        let t0 = Instant::now();
        let mut d = detector(100);
        for i in 0..30 {
            d.lease_lost(&format!("h{i}"), t0);
        }
        let acts = d.tick(t0 + Duration::from_secs(3600));
        assert_eq!(
            acts,
            vec![FailureAction::PartitionSuspected {
                silent: 30,
                known: 100
            }]
        );
        assert!(d.partition_suspected());
        // Hosts return: below the clear fraction the partition ends, then fencing may resume.
        for i in 0..27 {
            d.lease_back(&format!("h{i}"), t0);
        }
        let acts = d.tick(t0 + Duration::from_secs(3601));
        assert_eq!(
            acts[0],
            FailureAction::PartitionCleared {
                silent: 3,
                known: 100
            }
        );
        assert_eq!(
            acts.len(),
            3,
            "2 fences (rate cap) after the clear: {acts:?}"
        );
    }

    #[test]
    fn fencing_is_rate_capped_oldest_first() {
        let t0 = Instant::now();
        let mut d = detector(1000);
        for i in 0..5u64 {
            d.lease_lost(&format!("h{i}"), t0 + Duration::from_secs(i));
        }
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            d.tick(later),
            vec![
                FailureAction::Fence("h0".into()),
                FailureAction::Fence("h1".into())
            ]
        );
        assert!(d.tick(later + Duration::from_secs(1)).is_empty());
        assert_eq!(d.tick(later + Duration::from_secs(61)).len(), 2);
    }

    #[test]
    fn transitions_are_checked() {
        assert!(Liveness::Ready.to(Liveness::Fenced).is_err());
        assert!(Liveness::Ready.to(Liveness::Fencing).is_err());
        assert_eq!(
            Liveness::Silent.to(Liveness::Fencing),
            Ok(Liveness::Fencing)
        );
        let mut d = detector(10);
        d.lease_lost("h", Instant::now());
        assert!(
            d.fence_result("h", true).is_err(),
            "Silent cannot jump to Fenced"
        );
    }
}
