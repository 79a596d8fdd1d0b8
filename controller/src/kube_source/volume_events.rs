//! Which Volume changes deserve a Kubernetes Event (pure): a holder released after its host
//! confirmed the detach, and entering `Attached`, `Detached` or `Failed`.

use super::events::{Transition, transition};
use kube::runtime::events::EventType;
use yun_crds::{VolumePhase, VolumeStatus};

/// The Events of one Volume step: `released` names the holders (`VM x on host h`) whose claim
/// was released in it.
pub fn volume_transitions(
    prior: Option<&VolumeStatus>,
    next: &VolumeStatus,
    released: &[String],
) -> Vec<Transition> {
    let mut out: Vec<Transition> = released
        .iter()
        .map(|who| {
            transition(
                EventType::Normal,
                "Released",
                "Detach",
                format!("{who} confirmed the detach; the volume may be attached elsewhere"),
            )
        })
        .collect();
    let before = prior.and_then(|p| p.phase).unwrap_or(VolumePhase::Detached);
    let after = next.phase.unwrap_or(VolumePhase::Detached);
    if before != after {
        let message = next.message.clone().unwrap_or_default();
        match after {
            VolumePhase::Attached => {
                out.push(transition(EventType::Normal, "Attached", "Attach", message))
            }
            VolumePhase::Detached => out.push(transition(
                EventType::Normal,
                "Detached",
                "Detach",
                "not attached to any VM".into(),
            )),
            VolumePhase::Failed => {
                out.push(transition(EventType::Warning, "Failed", "Attach", message))
            }
            VolumePhase::Attaching | VolumePhase::Detaching => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(phase: VolumePhase, message: &str) -> VolumeStatus {
        VolumeStatus {
            phase: Some(phase),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    fn reasons(ts: &[Transition]) -> Vec<(EventType, &str)> {
        ts.iter().map(|t| (t.type_, t.reason.as_str())).collect()
    }

    #[test]
    fn attach_failure_and_release_are_reported_once() {
        let attaching = st(VolumePhase::Attaching, "host h1 is attaching it");
        assert!(volume_transitions(None, &attaching, &[]).is_empty());
        let attached = st(VolumePhase::Attached, "attached to VM t/a on host h1");
        let t = volume_transitions(Some(&attaching), &attached, &[]);
        assert_eq!(reasons(&t), [(EventType::Normal, "Attached")]);
        assert_eq!(t[0].note, "attached to VM t/a on host h1");
        assert!(volume_transitions(Some(&attached), &attached, &[]).is_empty());

        let failed = st(VolumePhase::Failed, "host h1, VM t/a: CHAP login refused");
        let t = volume_transitions(Some(&attaching), &failed, &[]);
        assert_eq!(reasons(&t), [(EventType::Warning, "Failed")]);
        assert!(t[0].note.contains("CHAP login refused"));

        let detached = st(VolumePhase::Detached, "not attached");
        let t = volume_transitions(Some(&attached), &detached, &["VM t/a on host h1".into()]);
        assert_eq!(
            reasons(&t),
            [
                (EventType::Normal, "Released"),
                (EventType::Normal, "Detached")
            ]
        );
        assert!(
            t[0].note
                .starts_with("VM t/a on host h1 confirmed the detach")
        );
    }
}
