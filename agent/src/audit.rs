//! The agent's audit trail: every change it makes on its host (a VM started, stopped or
//! destroyed, a volume attached or detached, the firewall applied or repaired) appends a
//! record to its own hash-chained log (`yun-audit`), as the component `yun-agent/<host>`.
//!
//! Records are appended where the result of a change is known and awaited there: a record is
//! durable before the worker reports the change on the fleet bus. One append costs one share
//! of a group-committed `fdatasync` on the log's writer thread, not a blocked runtime worker.
//! Only real changes are recorded, never a pass that found everything as it should be; a
//! failure that repeats on every retry is recorded once, until the same change succeeds or
//! fails differently.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use yun_audit::{Actor, AuditError, Outcome, Trail};
use yun_firewall::HostFirewall;

use crate::network::nft::Applied;

pub const VM_START: &str = "vm.start";
pub const VM_STOP: &str = "vm.stop";
/// The domain destroyed and undefined, its overlay and seed removed (the VM left this host).
pub const VM_DESTROY: &str = "vm.destroy";
pub const VOLUME_ATTACH: &str = "volume.attach";
pub const VOLUME_DETACH: &str = "volume.detach";
/// One nftables transaction changed Yun's tables.
pub const FIREWALL_APPLY: &str = "firewall.apply";
/// Drift (Yun's tables edited or flushed behind the agent's back) found and repaired.
pub const FIREWALL_REPAIR: &str = "firewall.repair";

/// Past this many remembered failures the memory is dropped (at worst a repeat is recorded
/// once more); it only grows with objects whose last change failed.
const MAX_REMEMBERED_FAILURES: usize = 4096;

/// The identity the agent on `host` records as.
pub fn agent_actor(host: &str) -> Actor {
    Actor::component(format!("yun-agent/{host}"))
}

/// `VirtualMachine namespace/name`.
pub fn vm_object(namespace: &str, name: &str) -> String {
    format!("VirtualMachine {namespace}/{name}")
}

/// `Volume namespace/name` (as the controller names it), or `Volume <uid>` when the name is
/// not known.
pub fn volume_object(id: &str, uid: &str) -> String {
    if id.is_empty() {
        format!("Volume {uid}")
    } else {
        format!("Volume {id}")
    }
}

/// `Host <name>`: the object of firewall records.
pub fn host_object(host: &str) -> String {
    format!("Host {host}")
}

/// The failure outcome with `message`.
pub fn failed(message: impl Display) -> Outcome {
    Outcome::Error {
        message: message.to_string(),
    }
}

/// `Ok` or the error's text.
pub fn outcome_of<T, E: Display>(result: &Result<T, E>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(e) => failed(e),
    }
}

/// Which attachment a volume record is about.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// `namespace/name` of the Volume (empty when not known).
    pub volume_id: &'a str,
    pub volume_uid: &'a str,
    pub vm_uid: &'a str,
    /// `namespace/name` of the VM (empty when not known).
    pub vm: &'a str,
}

impl Attachment<'_> {
    /// The record's object and the details every volume record carries.
    fn object_and_details(&self) -> (String, Vec<(&'static str, Value)>) {
        let mut details = vec![
            ("uid", Value::from(self.volume_uid)),
            ("vmUid", Value::from(self.vm_uid)),
        ];
        if !self.vm.is_empty() {
            details.push(("vm", Value::from(self.vm)));
        }
        (volume_object(self.volume_id, self.volume_uid), details)
    }
}

/// A firewall step's result for the trail, made where no trail is at hand (on the blocking
/// pool) and recorded afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct HostChange {
    pub action: &'static str,
    /// `None`: the step succeeded and changed nothing. Not recorded, but it ends a run of
    /// repeated failures (the next failure is recorded again).
    pub outcome: Option<Outcome>,
    pub details: Vec<(&'static str, Value)>,
}

impl HostChange {
    fn new(action: &'static str, outcome: Option<Outcome>) -> HostChange {
        HostChange {
            action,
            outcome,
            details: Vec::new(),
        }
    }

    /// What an `apply` that succeeded changed (counts, not rules).
    pub fn firewall_applied(applied: &Applied, input: &HostFirewall) -> HostChange {
        let mut details: Vec<(&'static str, Value)> = match applied {
            Applied::Unchanged => return HostChange::new(FIREWALL_APPLY, None),
            Applied::Delta { added, deleted } => vec![
                ("mode", "delta".into()),
                ("elementsAdded", (*added).into()),
                ("elementsDeleted", (*deleted).into()),
            ],
            Applied::Replaced => vec![("mode", "replace".into())],
        };
        details.extend([
            ("ports", input.ports.len().into()),
            ("groups", input.groups.len().into()),
            ("memberSets", input.members.len().into()),
        ]);
        HostChange {
            details,
            ..HostChange::new(FIREWALL_APPLY, Some(Outcome::Ok))
        }
    }

    /// An apply that failed or was refused (the kernel keeps its rules).
    pub fn firewall_failed(error: impl Display) -> HostChange {
        HostChange::new(FIREWALL_APPLY, Some(failed(error)))
    }

    /// A drift check: `Ok(Some(what was wrong))` when it repaired, `Ok(None)` when there was
    /// no drift, or why the check or the repair failed.
    pub fn firewall_repair(result: Result<Option<&str>, String>) -> HostChange {
        match result {
            Ok(Some(drift)) => HostChange {
                details: vec![("drift", drift.into())],
                ..HostChange::new(FIREWALL_REPAIR, Some(Outcome::Ok))
            },
            Ok(None) => HostChange::new(FIREWALL_REPAIR, None),
            Err(e) => HostChange::new(FIREWALL_REPAIR, Some(failed(e))),
        }
    }
}

/// The agent's trail (cheap to clone; every clone writes the same log).
#[derive(Debug, Clone, Default)]
pub struct AgentAudit {
    trail: Trail,
    host: String,
    /// The last failure recorded per (action, object), so a retry that fails the same way is
    /// not recorded again.
    failures: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl AgentAudit {
    /// Records nothing (tests, benches).
    pub fn disabled() -> AgentAudit {
        AgentAudit::default()
    }

    /// Opens (creating it: directory 0700, file 0600) and locks the log at `path`, recording
    /// as `yun-agent/<host>`. Fails when the log cannot be created, written or locked (another
    /// agent writes it), or its last record is damaged.
    pub fn open(path: &Path, host: &str) -> Result<AgentAudit, AuditError> {
        Ok(AgentAudit {
            trail: Trail::open(path, agent_actor(host))?,
            host: host.to_owned(),
            failures: Arc::default(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.trail.is_enabled()
    }

    pub fn path(&self) -> Option<&Path> {
        self.trail.path()
    }

    /// Records `action` on `object`; returns once durable. A failure identical to the last
    /// one recorded for the same action and object is not recorded again.
    pub async fn record(
        &self,
        action: &str,
        object: String,
        outcome: Outcome,
        details: &[(&str, Value)],
    ) {
        if !self.trail.is_enabled() || !self.is_news(action, &object, &outcome) {
            return;
        }
        self.trail.record(action, object, outcome, details).await;
    }

    /// Records `action` on the volume of `at` (`uid`, `vmUid`, `vm` first in the details).
    pub async fn record_volume(
        &self,
        action: &str,
        at: Attachment<'_>,
        outcome: Outcome,
        details: &[(&str, Value)],
    ) {
        let (object, mut all) = at.object_and_details();
        all.extend_from_slice(details);
        self.record(action, object, outcome, &all).await;
    }

    /// Records a `volume.attach` through `driver`: at `Ok(target)`, or why it failed. `cold`:
    /// the disk was part of the domain's definition when it started.
    pub async fn record_attach(
        &self,
        at: Attachment<'_>,
        driver: &str,
        result: Result<&str, &str>,
        cold: bool,
    ) {
        let mut details = vec![("driver", Value::from(driver))];
        if cold {
            details.push(("cold", Value::from(true)));
        }
        let outcome = match result {
            Ok(target) => {
                details.push(("target", Value::from(target)));
                Outcome::Ok
            }
            Err(e) => failed(e),
        };
        self.record_volume(VOLUME_ATTACH, at, outcome, &details)
            .await;
    }

    /// Records a change of this host (object `Host <name>`); one that changed nothing only
    /// ends a run of repeated failures.
    pub async fn record_host(&self, change: HostChange) {
        let object = host_object(&self.host);
        match change.outcome {
            Some(outcome) => {
                self.record(change.action, object, outcome, &change.details)
                    .await
            }
            None => {
                self.is_news(change.action, &object, &Outcome::Ok);
            }
        }
    }

    /// Flushes and closes the log (clean shutdown).
    pub async fn close(&self) {
        self.trail.close().await;
    }

    /// False for a failure that repeats the last one recorded for this action and object.
    fn is_news(&self, action: &str, object: &str, outcome: &Outcome) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (action.to_owned(), object.to_owned());
        match outcome.message() {
            None => {
                failures.remove(&key);
                if action == VM_DESTROY {
                    failures.retain(|(_, o), _| o != object);
                }
                true
            }
            Some(message) => {
                if failures.get(&key).is_some_and(|m| m == message) {
                    tracing::debug!(
                        action,
                        object,
                        "same failure as last recorded; not recorded again"
                    );
                    return false;
                }
                if failures.len() >= MAX_REMEMBERED_FAILURES {
                    failures.clear();
                }
                failures.insert(key, message.to_owned());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_audit::AuditRecord;

    fn records(path: &Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn objects_are_named_as_the_controller_names_them() {
        assert_eq!(vm_object("t", "web"), "VirtualMachine t/web");
        assert_eq!(volume_object("t/data", "u-1"), "Volume t/data");
        assert_eq!(volume_object("", "u-1"), "Volume u-1");
        assert_eq!(host_object("n1"), "Host n1");
        assert_eq!(agent_actor("n1").id, "yun-agent/n1");
    }

    #[test]
    fn firewall_changes_carry_counts_and_no_change_is_no_record() {
        let fw = HostFirewall::default();
        let c = HostChange::firewall_applied(&Applied::Unchanged, &fw);
        assert_eq!((c.action, c.outcome), (FIREWALL_APPLY, None));
        let delta = Applied::Delta {
            added: 3,
            deleted: 1,
        };
        let c = HostChange::firewall_applied(&delta, &fw);
        assert_eq!(c.outcome, Some(Outcome::Ok));
        assert!(c.details.contains(&("elementsAdded", 3.into())));
        assert!(c.details.contains(&("elementsDeleted", 1.into())));
        assert!(c.details.contains(&("ports", 0.into())));
        let c = HostChange::firewall_applied(&Applied::Replaced, &fw);
        assert!(c.details.contains(&("mode", "replace".into())));
        let c = HostChange::firewall_repair(Ok(Some("rule deleted")));
        assert_eq!((c.action, c.outcome), (FIREWALL_REPAIR, Some(Outcome::Ok)));
        assert_eq!(HostChange::firewall_repair(Ok(None)).outcome, None);
        let c = HostChange::firewall_failed("nft: Operation not permitted");
        assert_eq!(c.outcome, Some(failed("nft: Operation not permitted")));
    }

    #[tokio::test]
    async fn a_repeated_failure_is_recorded_once_until_the_change_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("agent.log");
        let audit = AgentAudit::open(&path, "n1").unwrap();
        let vm = vm_object("t", "web");
        for _ in 0..3 {
            audit
                .record(VM_START, vm.clone(), failed("no image"), &[])
                .await;
        }
        audit
            .record(VM_START, vm.clone(), failed("disk full"), &[])
            .await;
        audit.record(VM_START, vm.clone(), Outcome::Ok, &[]).await;
        audit
            .record(VM_START, vm.clone(), failed("disk full"), &[])
            .await;
        // A firewall failure, a pass that changed nothing, then the same failure: both
        // failures are recorded (the quiet success ended the run).
        let nft_failed = || HostChange::firewall_failed("nft: busy");
        let unchanged = HostChange::firewall_applied(&Applied::Unchanged, &HostFirewall::default());
        for change in [nft_failed(), nft_failed(), unchanged, nft_failed()] {
            audit.record_host(change).await;
        }
        audit.close().await;

        yun_audit::verify(&path, None).unwrap();
        let got: Vec<(String, String, Option<String>)> = records(&path)
            .into_iter()
            .map(|r| {
                assert_eq!(r.actor, agent_actor("n1"));
                (r.action, r.object, r.outcome.message().map(str::to_owned))
            })
            .collect();
        let start = |m: Option<&str>| (VM_START.to_owned(), vm.clone(), m.map(str::to_owned));
        let fw_failed = (
            FIREWALL_APPLY.to_owned(),
            "Host n1".to_owned(),
            Some("nft: busy".to_owned()),
        );
        assert_eq!(
            got,
            vec![
                start(Some("no image")),
                start(Some("disk full")),
                start(None),
                start(Some("disk full")),
                fw_failed.clone(),
                fw_failed,
            ]
        );
    }

    #[test]
    fn an_unwritable_log_fails_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let path = file.join("agent.log");
        let err = AgentAudit::open(&path, "n1").unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
