//! Placement v0: filters (alive, not cordoned, labels, capacity) then a spreading score.
//!
//! Pure: the caller hands in a snapshot of candidate hosts and commits the choice with a
//! guarded etcd transaction; a conflict means the snapshot was stale and the caller re-scores.

use std::collections::BTreeMap;
use yun_fleet::{HostAllocation, HostInfo, Resources};

/// Overcommit ratios, as in Nova's `cpu_allocation_ratio` family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub cpu: f64,
    pub memory: f64,
    pub disk: f64,
}

impl Default for Ratios {
    fn default() -> Self {
        Ratios {
            cpu: 4.0,
            memory: 1.0,
            disk: 1.0,
        }
    }
}

/// One host as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub info: &'a HostInfo,
    pub alloc: &'a HostAllocation,
    /// Cordoned by an operator (`Host.spec.unschedulable`).
    pub cordoned: bool,
}

/// Why no host fits: counts per filter, so the VM's `Scheduled` condition can explain itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoFit {
    pub hosts: usize,
    pub cordoned: usize,
    pub labels: usize,
    pub cpu: usize,
    pub memory: usize,
    pub disk: usize,
}

impl std::fmt::Display for NoFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.hosts == 0 {
            return write!(f, "no hosts are registered on the fleet bus");
        }
        write!(f, "0/{} hosts fit", self.hosts)?;
        let parts = [
            (self.cordoned, "cordoned"),
            (self.labels, "node selector mismatch"),
            (self.cpu, "insufficient cpu"),
            (self.memory, "insufficient memory"),
            (self.disk, "insufficient disk"),
        ];
        for (n, why) in parts.iter().filter(|(n, _)| *n > 0) {
            write!(f, ", {n} {why}")?;
        }
        Ok(())
    }
}

fn fits(capacity: u64, ratio: f64, allocated: u64, wanted: u64) -> bool {
    let limit = (capacity as f64 * ratio).floor() as u64;
    allocated.saturating_add(wanted) <= limit
}

/// Which filter (if any) rejects `c` for `req` with `selector`.
fn reject_reason(
    c: &Candidate<'_>,
    req: &Resources,
    selector: &BTreeMap<String, String>,
    r: &Ratios,
) -> Option<fn(&mut NoFit)> {
    if c.cordoned {
        return Some(|n| n.cordoned += 1);
    }
    if !selector
        .iter()
        .all(|(k, v)| c.info.labels.get(k) == Some(v))
    {
        return Some(|n| n.labels += 1);
    }
    if !fits(
        c.info.cpus.into(),
        r.cpu,
        c.alloc.cpus.into(),
        req.cpus.into(),
    ) {
        return Some(|n| n.cpu += 1);
    }
    if !fits(
        c.info.memory_mib,
        r.memory,
        c.alloc.memory_mib,
        req.memory_mib,
    ) {
        return Some(|n| n.memory += 1);
    }
    if !fits(c.info.disk_gib, r.disk, c.alloc.disk_gib, req.disk_gib) {
        return Some(|n| n.disk += 1);
    }
    None
}

/// Spreading score: the share of memory left free after placing (higher is better), with cpu
/// as a tie-breaker. Ties between equal hosts are broken by name for determinism.
fn score(c: &Candidate<'_>, req: &Resources) -> (u64, u64) {
    let mem_free = c
        .info
        .memory_mib
        .saturating_sub(c.alloc.memory_mib + req.memory_mib);
    let mem_share = mem_free.saturating_mul(1_000_000) / c.info.memory_mib.max(1);
    let cpu_free = u64::from(c.info.cpus).saturating_sub(u64::from(c.alloc.cpus + req.cpus));
    (mem_share, cpu_free)
}

/// Chooses a host for `req`, or explains why none fits.
pub fn choose<'a>(
    candidates: &[Candidate<'a>],
    req: &Resources,
    selector: &BTreeMap<String, String>,
    ratios: &Ratios,
) -> Result<&'a str, NoFit> {
    let mut nofit = NoFit {
        hosts: candidates.len(),
        ..NoFit::default()
    };
    let mut best: Option<(&Candidate<'a>, (u64, u64))> = None;
    for c in candidates {
        if let Some(count) = reject_reason(c, req, selector, ratios) {
            count(&mut nofit);
            continue;
        }
        let s = score(c, req);
        let better = match &best {
            None => true,
            Some((b, bs)) => s > *bs || (s == *bs && c.info.name < b.info.name),
        };
        if better {
            best = Some((c, s));
        }
    }
    best.map(|(c, _)| c.info.name.as_str()).ok_or(nofit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, cpus: u32, mem: u64, labels: &[(&str, &str)]) -> HostInfo {
        HostInfo {
            v: 1,
            name: name.into(),
            cpus,
            memory_mib: mem,
            disk_gib: 100,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            agent_version: "t".into(),
            virt_type: "qemu".into(),
            started_at: "t".into(),
        }
    }

    fn req(cpus: u32, mem: u64) -> Resources {
        Resources {
            cpus,
            memory_mib: mem,
            disk_gib: 1,
        }
    }

    #[test]
    fn spreads_to_the_host_with_most_free_memory() {
        let (a, b) = (host("a", 8, 8192, &[]), host("b", 8, 8192, &[]));
        let (alloc_a, alloc_b) = (
            HostAllocation {
                memory_mib: 4096,
                ..Default::default()
            },
            HostAllocation::default(),
        );
        let c = [
            Candidate {
                info: &a,
                alloc: &alloc_a,
                cordoned: false,
            },
            Candidate {
                info: &b,
                alloc: &alloc_b,
                cordoned: false,
            },
        ];
        assert_eq!(
            choose(&c, &req(1, 1024), &BTreeMap::new(), &Ratios::default()),
            Ok("b")
        );
    }

    #[test]
    fn filters_explain_every_rejection() {
        let (a, b, d) = (
            host("a", 2, 1024, &[]),
            host("b", 8, 8192, &[("zone", "z2")]),
            host("d", 8, 8192, &[]),
        );
        let none = HostAllocation::default();
        let c = [
            Candidate {
                info: &a,
                alloc: &none,
                cordoned: false,
            },
            Candidate {
                info: &b,
                alloc: &none,
                cordoned: false,
            },
            Candidate {
                info: &d,
                alloc: &none,
                cordoned: true,
            },
        ];
        let sel = BTreeMap::from([("zone".to_string(), "z1".to_string())]);
        let err = choose(&c, &req(1, 512), &sel, &Ratios::default()).unwrap_err();
        assert_eq!((err.hosts, err.labels, err.cordoned), (3, 2, 1));
        let err = choose(&c[..1], &req(1, 4096), &BTreeMap::new(), &Ratios::default()).unwrap_err();
        assert_eq!(err.memory, 1);
        assert_eq!(err.to_string(), "0/1 hosts fit, 1 insufficient memory");
    }

    #[test]
    fn label_selector_must_match_all_labels() {
        let a = host("a", 8, 8192, &[("zone", "z1"), ("rack", "r1")]);
        let none = HostAllocation::default();
        let c = [Candidate {
            info: &a,
            alloc: &none,
            cordoned: false,
        }];
        let sel = BTreeMap::from([
            ("zone".to_string(), "z1".to_string()),
            ("rack".to_string(), "r1".to_string()),
        ]);
        assert_eq!(choose(&c, &req(1, 512), &sel, &Ratios::default()), Ok("a"));
        let sel = BTreeMap::from([
            ("zone".to_string(), "z1".to_string()),
            ("rack".to_string(), "r2".to_string()),
        ]);
        assert!(choose(&c, &req(1, 512), &sel, &Ratios::default()).is_err());
    }

    #[test]
    fn cpu_overcommit_ratio_applies_but_memory_does_not_overcommit() {
        let a = host("a", 2, 4096, &[]);
        let alloc = HostAllocation {
            cpus: 7,
            memory_mib: 3072,
            ..Default::default()
        };
        let c = [Candidate {
            info: &a,
            alloc: &alloc,
            cordoned: false,
        }];
        assert_eq!(
            choose(&c, &req(1, 1024), &BTreeMap::new(), &Ratios::default()),
            Ok("a")
        );
        assert_eq!(
            choose(&c, &req(2, 512), &BTreeMap::new(), &Ratios::default())
                .unwrap_err()
                .cpu,
            1
        );
        assert_eq!(
            choose(&c, &req(1, 1025), &BTreeMap::new(), &Ratios::default())
                .unwrap_err()
                .memory,
            1
        );
    }

    #[test]
    fn no_hosts_says_so() {
        let err = choose(&[], &req(1, 1), &BTreeMap::new(), &Ratios::default()).unwrap_err();
        assert_eq!(err.to_string(), "no hosts are registered on the fleet bus");
    }
}
