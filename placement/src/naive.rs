//! The baseline: check and score every host, best score wins. Same filters and scores as the
//! indexed decision, so it is the reference for feasibility and the yardstick for speed.

use crate::engine::Engine;
use crate::filter::Best;
use crate::model::{Decision, Request};
use crate::nofit::NoFit;

impl Engine {
    /// Scans every host (O(hosts) per decision): the global best score, ties by name.
    pub fn decide_naive(&self, req: &Request) -> Result<Decision, NoFit> {
        let r = self.resolve(req);
        let mut best = Best::default();
        let mut nofit = NoFit {
            hosts: self.hosts.len(),
            ..NoFit::default()
        };
        for (idx, host) in self.hosts.iter() {
            match self.check(&r, idx, host, false) {
                Ok(()) => best.offer(self.score(&r, host), &host.name),
                Err(why) => nofit.count(why),
            }
        }
        best.decision().ok_or(nofit)
    }
}
