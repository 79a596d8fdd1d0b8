//! A Volume's status, computed purely from its claim and its holders' host records. The phase
//! moves only along the lifecycle's checked transitions (several in one step when the
//! controller observed a jump), every transitional phase is bounded, and a phase that overran
//! its bound turns `Failed` with a message that says what was stuck and what was tried.

use super::attach::holder_phase;
use super::lifecycle::{
    Deadlines, VolumeEvent, deadline, overdue_message, retry_backoff, transition,
};
use std::time::Duration;
use yun_crds::{Condition, ConditionStatus, VolumePhase, VolumeStatus, set_condition};
use yun_fleet::{AttachmentRecord, ClaimHolder};

/// Condition type on a Volume.
pub const ATTACHED: &str = "Attached";

/// One holder of a volume with what its host's records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderView {
    pub holder: ClaimHolder,
    /// The VM's desired record on the host still lists the volume.
    pub listed: bool,
    pub attachment: Option<AttachmentRecord>,
    pub host_alive: bool,
}

impl HolderView {
    pub fn phase(&self) -> VolumePhase {
        holder_phase(self.listed, self.attachment.as_ref().map(|a| a.phase))
    }

    /// The host confirmed the detach (or never attached): the holder may leave the claim.
    pub fn released(&self) -> bool {
        !self.listed && self.attachment.is_none()
    }
}

/// The holder the status reports: the one in the most urgent phase.
fn primary(views: &[HolderView]) -> Option<&HolderView> {
    let rank = |p: VolumePhase| match p {
        VolumePhase::Failed => 0,
        VolumePhase::Attaching | VolumePhase::Detaching => 1,
        VolumePhase::Attached => 2,
        VolumePhase::Detached => 3,
    };
    views.iter().min_by_key(|v| rank(v.phase()))
}

/// The events that lead from `from` to `to` along the lifecycle (shortest path), or `None`.
pub fn path(from: VolumePhase, to: VolumePhase) -> Option<Vec<VolumeEvent>> {
    let candidates = [
        VolumeEvent::AttachRequested,
        VolumeEvent::AttachConfirmed,
        VolumeEvent::DetachRequested,
        VolumeEvent::DetachConfirmed,
        VolumeEvent::HostError(String::new()),
        VolumeEvent::Retry { attach: true },
        VolumeEvent::Retry { attach: false },
    ];
    let mut frontier = vec![(from, Vec::new())];
    let mut seen = vec![from];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for (phase, events) in frontier {
            if phase == to {
                return Some(events);
            }
            for ev in &candidates {
                if let Ok(p) = transition(phase, ev)
                    && !seen.contains(&p)
                {
                    seen.push(p);
                    let mut e = events.clone();
                    e.push(ev.clone());
                    next.push((p, e));
                }
            }
        }
        frontier = next;
    }
    None
}

fn elapsed_since(since: Option<&str>, now: jiff::Timestamp) -> Duration {
    since
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or_default()
}

fn describe(v: &HolderView, phase: VolumePhase) -> String {
    let (vm, host) = (&v.holder.vm, &v.holder.host);
    let silent = if v.host_alive {
        ""
    } else {
        "; the host is not reporting (force-detach only a host that is powered off or fenced)"
    };
    match phase {
        VolumePhase::Attaching => format!("host {host} is attaching it to VM {vm}{silent}"),
        VolumePhase::Attached => format!("attached to VM {vm} on host {host}"),
        VolumePhase::Detaching => format!(
            "host {host} is detaching it from VM {vm}; it stays held until the host confirms{silent}"
        ),
        VolumePhase::Failed => {
            let why = v
                .attachment
                .as_ref()
                .and_then(|a| a.message.clone())
                .unwrap_or_else(|| "the host reported a failure".into());
            format!("host {host}, VM {vm}: {why}")
        }
        VolumePhase::Detached => "not attached".into(),
    }
}

/// The status for `views` (the claim's holders; empty: detached), given the prior status.
pub fn volume_status(
    prior: Option<&VolumeStatus>,
    generation: Option<i64>,
    views: &[HolderView],
    now: jiff::Timestamp,
    deadlines: &Deadlines,
) -> VolumeStatus {
    let mut st = prior.cloned().unwrap_or_default();
    let from = st.phase.unwrap_or(VolumePhase::Detached);
    let main = primary(views);
    let observed = main.map_or(VolumePhase::Detached, HolderView::phase);
    // The host's own count of failed tries of the current operation.
    let attempts = main
        .and_then(|v| v.attachment.as_ref())
        .map_or(0, |a| a.attempts);
    let since = elapsed_since(st.phase_since.as_deref(), now);
    // A failure waits out its backoff before the status shows the retry in progress.
    let backing_off = from == VolumePhase::Failed
        && matches!(observed, VolumePhase::Attaching | VolumePhase::Detaching)
        && since < retry_backoff(st.attempts.unwrap_or(0));
    let mut to = if backing_off { from } else { observed };
    let mut message = main.map(|v| describe(v, to));
    // A transitional phase that outlived its bound (counted from when it was entered).
    if to == from
        && let (Some(v), Some(_)) = (main, deadline(to, deadlines))
        && since > deadline(to, deadlines).unwrap_or_default()
        && transition(to, &VolumeEvent::TimedOut).is_ok()
    {
        message = Some(overdue_message(
            to,
            &v.holder.host,
            &v.holder.vm,
            st.attempts.unwrap_or(0),
            deadlines,
        ));
        st.attempts = Some(st.attempts.unwrap_or(0) + 1);
        to = VolumePhase::Failed;
    } else if !backing_off && path(from, to).is_none() {
        // Cannot happen with the lifecycle as it is (every phase reaches every other); kept
        // loud rather than silent if the table ever changes.
        tracing::error!(
            from = from.as_str(),
            to = to.as_str(),
            "volume lifecycle has no path"
        );
    }
    if backing_off {
        message = st.message.clone();
    }
    if to != from || st.phase.is_none() {
        st.phase_since = Some(now.to_string());
    }
    match to {
        VolumePhase::Attached | VolumePhase::Detached => st.attempts = None,
        VolumePhase::Failed if attempts > st.attempts.unwrap_or(0) => st.attempts = Some(attempts),
        _ => {}
    }
    st.phase = Some(to);
    st.vm = main.map(|v| {
        v.holder
            .vm
            .split_once('/')
            .map_or(v.holder.vm.as_str(), |(_, n)| n)
            .to_owned()
    });
    st.host = main.map(|v| v.holder.host.clone());
    st.message = message;
    st.observed_generation = generation;
    let (ok, reason) = match to {
        VolumePhase::Attached => (ConditionStatus::True, "Attached"),
        p => (ConditionStatus::False, p.as_str()),
    };
    let msg = st.message.clone().unwrap_or_else(|| "not attached".into());
    set_condition(
        &mut st.conditions,
        Condition::new(ATTACHED, ok, reason, msg).with_observed_generation(generation),
        &now.to_string(),
    );
    st
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
