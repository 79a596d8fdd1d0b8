//! Explaining a failed decision: how many hosts each filter rejected, so the VM's `Scheduled`
//! condition can say why. Computing it scans every host, which is done only on failure.

use std::fmt;

use crate::engine::Engine;
use crate::filter::{Reason, Resolved};

/// Why no host fits: the number of hosts rejected by each filter. A host is counted once, under
/// the first filter that rejects it, in the order of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoFit {
    /// Registered hosts, in any state.
    pub hosts: usize,
    pub not_ready: usize,
    pub cordoned: usize,
    pub maintenance: usize,
    pub selector: usize,
    pub cpu: usize,
    pub memory: usize,
    pub disk: usize,
    /// Not holding a member of the request's (non-empty) affinity group.
    pub affinity: usize,
    /// Holding a member of the request's anti-affinity group.
    pub anti_affinity: usize,
    /// In a domain that would exceed the spread skew, or with no label for that topology level.
    pub spread: usize,
}

impl NoFit {
    pub(crate) fn count(&mut self, why: Reason) {
        let n = match why {
            Reason::NotReady => &mut self.not_ready,
            Reason::Cordoned => &mut self.cordoned,
            Reason::Maintenance => &mut self.maintenance,
            Reason::Selector => &mut self.selector,
            Reason::Cpu => &mut self.cpu,
            Reason::Memory => &mut self.memory,
            Reason::Disk => &mut self.disk,
            Reason::Affinity => &mut self.affinity,
            Reason::AntiAffinity => &mut self.anti_affinity,
            Reason::Spread => &mut self.spread,
        };
        *n += 1;
    }
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hosts == 0 {
            return write!(f, "no hosts are registered on the fleet bus");
        }
        write!(f, "0/{} hosts fit", self.hosts)?;
        let parts = [
            (self.not_ready, "not ready"),
            (self.cordoned, "cordoned"),
            (self.maintenance, "in maintenance"),
            (self.selector, "node selector mismatch"),
            (self.cpu, "insufficient cpu"),
            (self.memory, "insufficient memory"),
            (self.disk, "insufficient disk"),
            (self.affinity, "not holding the affinity group"),
            (self.anti_affinity, "anti-affinity conflict"),
            (self.spread, "spread constraint"),
        ];
        for (n, why) in parts.iter().filter(|(n, _)| *n > 0) {
            write!(f, ", {n} {why}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoFit {}

impl Engine {
    /// Counts, over every host, the first filter rejecting it.
    pub(crate) fn explain(&self, r: &Resolved<'_>) -> NoFit {
        let mut nofit = NoFit {
            hosts: self.hosts.len(),
            ..NoFit::default()
        };
        for (idx, host) in self.hosts.iter() {
            if let Err(why) = self.check(r, idx, host, false) {
                nofit.count(why);
            }
        }
        nofit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_list_only_nonzero_reasons_in_order() {
        let n = NoFit {
            hosts: 3,
            cordoned: 1,
            selector: 2,
            ..NoFit::default()
        };
        assert_eq!(
            n.to_string(),
            "0/3 hosts fit, 1 cordoned, 2 node selector mismatch"
        );
        let n = NoFit {
            hosts: 9,
            not_ready: 1,
            maintenance: 1,
            cpu: 1,
            memory: 1,
            disk: 1,
            affinity: 1,
            anti_affinity: 1,
            spread: 2,
            ..NoFit::default()
        };
        assert_eq!(
            n.to_string(),
            "0/9 hosts fit, 1 not ready, 1 in maintenance, 1 insufficient cpu, \
             1 insufficient memory, 1 insufficient disk, 1 not holding the affinity group, \
             1 anti-affinity conflict, 2 spread constraint"
        );
    }

    #[test]
    fn an_empty_fleet_says_so() {
        assert_eq!(
            NoFit::default().to_string(),
            "no hosts are registered on the fleet bus"
        );
    }
}
