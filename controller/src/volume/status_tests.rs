use super::*;
use yun_fleet::AttachPhase;

fn t(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn view(listed: bool, phase: Option<AttachPhase>, alive: bool) -> HolderView {
    HolderView {
        holder: ClaimHolder {
            host: "h1".into(),
            vm_uid: "u1".into(),
            vm: "team/db".into(),
            read_only: false,
            granted_at: t(0).to_string(),
        },
        listed,
        attachment: phase.map(|phase| AttachmentRecord {
            v: 1,
            volume: "team/data".into(),
            phase,
            target_dev: None,
            message: (phase == AttachPhase::Failed)
                .then(|| "iSCSI login to 127.0.0.1:3260 failed: authentication failed".into()),
            attempts: u32::from(phase == AttachPhase::Failed) * 3,
            updated_at: t(0).to_string(),
        }),
        host_alive: alive,
    }
}

fn d() -> Deadlines {
    Deadlines::default()
}

#[test]
fn every_phase_reaches_every_other_along_the_lifecycle() {
    for from in VolumePhase::ALL {
        for to in VolumePhase::ALL {
            let events = path(from, to).unwrap_or_else(|| panic!("{from:?} -> {to:?}"));
            let end = events.iter().try_fold(from, transition).unwrap();
            assert_eq!(end, to);
        }
    }
    assert_eq!(
        path(VolumePhase::Detached, VolumePhase::Attached).unwrap(),
        [VolumeEvent::AttachRequested, VolumeEvent::AttachConfirmed]
    );
}

#[test]
fn no_holder_is_detached_and_a_confirmed_attach_is_attached() {
    let st = volume_status(None, Some(1), &[], t(0), &d());
    assert_eq!(st.phase, Some(VolumePhase::Detached));
    assert_eq!((st.vm.as_deref(), st.host.as_deref()), (None, None));
    let st = volume_status(
        Some(&st),
        Some(1),
        &[view(true, Some(AttachPhase::Attached), true)],
        t(5),
        &d(),
    );
    assert_eq!(st.phase, Some(VolumePhase::Attached));
    assert_eq!(
        (st.vm.as_deref(), st.host.as_deref()),
        (Some("db"), Some("h1"))
    );
    assert_eq!(st.phase_since, Some(t(5).to_string()));
    let c = yun_crds::find_condition(&st.conditions, ATTACHED).unwrap();
    assert!(c.is_true());
}

#[test]
fn an_attach_that_overruns_its_bound_fails_then_retries_after_the_backoff() {
    let holder = [view(true, None, true)];
    let st = volume_status(None, Some(1), &holder, t(0), &d());
    assert_eq!(st.phase, Some(VolumePhase::Attaching));
    // Within the bound: still attaching.
    let st = volume_status(Some(&st), Some(1), &holder, t(119), &d());
    assert_eq!(st.phase, Some(VolumePhase::Attaching));
    let st = volume_status(Some(&st), Some(1), &holder, t(121), &d());
    assert_eq!(st.phase, Some(VolumePhase::Failed));
    assert_eq!(st.attempts, Some(1));
    let msg = st.message.clone().unwrap();
    assert!(
        msg.contains("attach to VM team/db on host h1 did not finish within 120 s"),
        "{msg}"
    );
    assert!(msg.contains("force-detach"), "{msg}");
    let c = yun_crds::find_condition(&st.conditions, ATTACHED).unwrap();
    assert_eq!(c.reason, "Failed");
    // The backoff after one failure is 10 s: the status stays Failed until it has passed.
    let held = volume_status(Some(&st), Some(1), &holder, t(126), &d());
    assert_eq!(held.phase, Some(VolumePhase::Failed));
    assert_eq!(held.message, st.message);
    let retry = volume_status(Some(&held), Some(1), &holder, t(132), &d());
    assert_eq!(retry.phase, Some(VolumePhase::Attaching));
    assert_eq!(retry.attempts, Some(1), "the count survives the retry");
    assert_eq!(retry.phase_since, Some(t(132).to_string()));
}

#[test]
fn a_host_failure_is_reported_with_its_error_and_a_silent_host_is_named() {
    let st = volume_status(
        None,
        Some(1),
        &[view(true, Some(AttachPhase::Failed), true)],
        t(0),
        &d(),
    );
    assert_eq!(st.phase, Some(VolumePhase::Failed));
    assert_eq!(st.attempts, Some(3));
    assert!(st.message.unwrap().contains("authentication failed"));
    let st = volume_status(
        None,
        Some(1),
        &[view(false, Some(AttachPhase::Attached), false)],
        t(0),
        &d(),
    );
    assert_eq!(st.phase, Some(VolumePhase::Detaching));
    let msg = st.message.unwrap();
    assert!(msg.contains("stays held until the host confirms"), "{msg}");
    assert!(msg.contains("not reporting"), "{msg}");
}

#[test]
fn only_an_unlisted_holder_without_an_attachment_record_is_released() {
    assert!(view(false, None, false).released());
    assert!(!view(false, Some(AttachPhase::Detaching), true).released());
    assert!(!view(true, None, true).released());
}
