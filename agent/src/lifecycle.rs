//! The per-VM lifecycle as an explicit state machine with a checked transition function.
//!
//! ```text
//! Pending → Preparing → Starting → Running → Stopping → Stopped
//!              │            │         │                    │
//!              └────────────┴─────────┴──→ Failed ──→ Preparing (retry)
//! any state ──→ Deleting (desired record removed)
//! Stopped ──→ Preparing (run strategy back to Always)
//! ```
//! A restarted agent re-adopts a running domain straight into `Running` (from `Pending`).

use thiserror::Error;
use yun_fleet::VmPhase;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("illegal VM phase transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub from: VmPhase,
    pub to: VmPhase,
}

/// Returns `Ok(to)` when the lifecycle allows moving from `from` to `to`.
pub fn transition(from: VmPhase, to: VmPhase) -> Result<VmPhase, IllegalTransition> {
    use VmPhase::*;
    let allowed = match (from, to) {
        (_, Deleting) => from != Deleting,
        (_, Failed) => !matches!(from, Deleting | Failed),
        (Pending, Preparing | Running | Stopped | Stopping) => true,
        (Preparing, Starting | Stopped) => true,
        (Starting, Running) => true,
        (Running, Stopping | Preparing) => true,
        (Stopping, Stopped) => true,
        (Stopped, Preparing) => true,
        (Failed, Preparing | Stopping | Stopped) => true,
        _ => false,
    };
    if allowed {
        Ok(to)
    } else {
        Err(IllegalTransition { from, to })
    }
}

/// Tracks the phase of one VM; every change goes through [`transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    phase: VmPhase,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: VmPhase::Pending,
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> VmPhase {
        self.phase
    }

    /// Moves to `to`; staying in the same phase is a no-op, not an error.
    pub fn go(&mut self, to: VmPhase) -> Result<VmPhase, IllegalTransition> {
        if self.phase != to {
            self.phase = transition(self.phase, to)?;
        }
        Ok(self.phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VmPhase::*;

    #[test]
    fn happy_path_is_allowed() {
        let mut l = Lifecycle::default();
        for p in [
            Preparing, Starting, Running, Stopping, Stopped, Preparing, Starting, Running, Deleting,
        ] {
            l.go(p).unwrap();
        }
        assert_eq!(l.phase(), Deleting);
    }

    #[test]
    fn adoption_goes_straight_to_running() {
        let mut l = Lifecycle::default();
        assert_eq!(l.go(Running), Ok(Running));
    }

    #[test]
    fn skipping_steps_is_refused() {
        assert_eq!(
            transition(Preparing, Running),
            Err(IllegalTransition {
                from: Preparing,
                to: Running
            })
        );
        assert!(transition(Stopped, Running).is_err());
        assert!(transition(Starting, Stopped).is_err());
    }

    #[test]
    fn deleting_is_terminal() {
        for to in VmPhase::ALL {
            assert!(
                transition(Deleting, to).is_err(),
                "Deleting -> {to:?} must be refused"
            );
        }
    }

    #[test]
    fn failure_can_be_retried_but_not_from_deleting() {
        assert!(transition(Starting, Failed).is_ok());
        assert!(transition(Failed, Preparing).is_ok());
        assert!(transition(Deleting, Failed).is_err());
    }

    #[test]
    fn same_phase_is_a_no_op() {
        let mut l = Lifecycle::default();
        l.go(Pending).unwrap();
        assert_eq!(l.phase(), Pending);
    }
}
