//! The attachment lifecycle of a Volume as an explicit state machine:
//!
//! ```text
//! Detached ──attach──▶ Attaching ──confirmed──▶ Attached ──detach──▶ Detaching ──confirmed──▶ Detached
//!                          │  └──cancel──▶ Detaching                      │
//!                          └──error / timeout──▶ Failed ◀──error / timeout─┘
//! Failed ──retry (after backoff)──▶ Attaching or Detaching
//! any but Detached ──force-detach (operator)──▶ Detached
//! ```
//!
//! Every transitional phase has a deadline ([`deadline`]); on expiry the volume goes `Failed`
//! with a message saying what was stuck and how often it was tried, and the retry waits a
//! doubling backoff ([`retry_backoff`]). Force-detach is the operator's way out when a host is
//! gone for good; it is dangerous, because a host that was only cut off may still write.

use std::time::Duration;

use thiserror::Error;
use yun_crds::VolumePhase;

/// What moves a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeEvent {
    /// A VM wants the volume and the single-writer rule allows it.
    AttachRequested,
    /// The host confirmed the disk on the domain.
    AttachConfirmed,
    /// The VM no longer wants it (or went away) while attaching or attached.
    DetachRequested,
    /// The host confirmed the disk is gone from the domain.
    DetachConfirmed,
    /// The host reported an error for the current operation.
    HostError(String),
    /// The current phase outlived its deadline.
    TimedOut,
    /// A retry after the backoff: back to the operation that failed.
    Retry { attach: bool },
    /// An operator forced the detach (dangerous; see the module docs).
    ForceDetach,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("volume cannot go from {from:?} on {event:?}")]
pub struct TransitionError {
    pub from: VolumePhase,
    pub event: VolumeEvent,
}

/// The checked transition function: the next phase, or an error for a move the lifecycle
/// does not have.
pub fn transition(from: VolumePhase, event: &VolumeEvent) -> Result<VolumePhase, TransitionError> {
    use VolumeEvent as E;
    use VolumePhase as P;
    let next = match (from, event) {
        (P::Detached, E::AttachRequested) => P::Attaching,
        (P::Attaching, E::AttachConfirmed) => P::Attached,
        (P::Attaching | P::Attached, E::DetachRequested) => P::Detaching,
        (P::Detaching, E::DetachConfirmed) => P::Detached,
        (P::Attaching | P::Detaching, E::HostError(_) | E::TimedOut) => P::Failed,
        (P::Failed, E::Retry { attach: true }) => P::Attaching,
        (P::Failed, E::Retry { attach: false }) => P::Detaching,
        (P::Attaching | P::Attached | P::Detaching | P::Failed, E::ForceDetach) => P::Detached,
        _ => {
            return Err(TransitionError {
                from,
                event: event.clone(),
            });
        }
    };
    Ok(next)
}

/// Bounds of the transitional phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub attach: Duration,
    pub detach: Duration,
}

impl Default for Deadlines {
    /// Two minutes each: an iSCSI login with a dead first portal takes QEMU about a minute to
    /// give up on it; a detach waits for the guest to release the device.
    fn default() -> Self {
        Deadlines {
            attach: Duration::from_secs(120),
            detach: Duration::from_secs(120),
        }
    }
}

/// How long `phase` may last; `None` for the settled phases.
pub fn deadline(phase: VolumePhase, d: &Deadlines) -> Option<Duration> {
    match phase {
        VolumePhase::Attaching => Some(d.attach),
        VolumePhase::Detaching => Some(d.detach),
        VolumePhase::Detached | VolumePhase::Attached | VolumePhase::Failed => None,
    }
}

/// Whether a volume `elapsed` into `phase` has overstayed.
pub fn is_overdue(phase: VolumePhase, elapsed: Duration, d: &Deadlines) -> bool {
    deadline(phase, d).is_some_and(|limit| elapsed > limit)
}

/// Wait before retry number `attempts + 1`: 5 s doubling per failure, at most 5 minutes.
pub fn retry_backoff(attempts: u32) -> Duration {
    Duration::from_secs(5)
        .saturating_mul(1u32 << attempts.min(16))
        .min(Duration::from_secs(300))
}

/// The message of a volume that overstayed `phase`: what was stuck, where, how often it was
/// tried, and when the next try is.
pub fn overdue_message(
    phase: VolumePhase,
    host: &str,
    vm: &str,
    attempts: u32,
    d: &Deadlines,
) -> String {
    let limit = deadline(phase, d).unwrap_or_default().as_secs();
    let what = match phase {
        VolumePhase::Attaching => "attach to",
        _ => "detach from",
    };
    format!(
        "{what} VM {vm} on host {host} did not finish within {limit} s (attempt {}); retrying in {} s. If the host is gone for good, an operator may force-detach (see docs/ops/storage.md)",
        attempts + 1,
        retry_backoff(attempts).as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use VolumeEvent as E;
    use VolumePhase as P;

    #[test]
    fn the_happy_path_attaches_and_detaches() {
        let mut p = P::Detached;
        for e in [
            E::AttachRequested,
            E::AttachConfirmed,
            E::DetachRequested,
            E::DetachConfirmed,
        ] {
            p = transition(p, &e).unwrap();
        }
        assert_eq!(p, P::Detached);
    }

    #[test]
    fn every_phase_and_event_pair_is_either_allowed_or_refused_by_name() {
        let events = [
            E::AttachRequested,
            E::AttachConfirmed,
            E::DetachRequested,
            E::DetachConfirmed,
            E::HostError("x".into()),
            E::TimedOut,
            E::Retry { attach: true },
            E::Retry { attach: false },
            E::ForceDetach,
        ];
        let mut allowed = 0;
        for from in P::ALL {
            for e in &events {
                match transition(from, e) {
                    Ok(_) => allowed += 1,
                    Err(err) => assert_eq!((err.from, &err.event), (from, e)),
                }
            }
        }
        // The table in the module docs has exactly this many arrows.
        assert_eq!(allowed, 15);
    }

    #[test]
    fn settled_phases_never_time_out_and_a_confirmed_attach_cannot_fail_later() {
        let d = Deadlines::default();
        assert!(!is_overdue(P::Attached, Duration::from_secs(86_400), &d));
        assert!(!is_overdue(P::Detached, Duration::from_secs(86_400), &d));
        assert!(is_overdue(P::Attaching, Duration::from_secs(121), &d));
        assert!(!is_overdue(P::Attaching, Duration::from_secs(120), &d));
        assert!(transition(P::Attached, &E::TimedOut).is_err());
        assert!(transition(P::Attached, &E::HostError("x".into())).is_err());
    }

    #[test]
    fn a_failed_volume_is_retried_with_backoff_or_force_detached() {
        let failed = transition(P::Attaching, &E::TimedOut).unwrap();
        assert_eq!(failed, P::Failed);
        assert_eq!(
            transition(failed, &E::Retry { attach: true }).unwrap(),
            P::Attaching
        );
        assert_eq!(transition(failed, &E::ForceDetach).unwrap(), P::Detached);
        // A failed volume is never attached again without going through Attaching.
        assert!(transition(failed, &E::AttachConfirmed).is_err());
        let secs: Vec<u64> = (0..8).map(|n| retry_backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn the_overdue_message_says_what_where_and_what_next() {
        let m = overdue_message(P::Detaching, "h7", "db-1", 2, &Deadlines::default());
        assert!(
            m.starts_with("detach from VM db-1 on host h7 did not finish within 120 s (attempt 3)"),
            "{m}"
        );
        assert!(
            m.contains("retrying in 20 s") && m.contains("force-detach"),
            "{m}"
        );
    }
}
