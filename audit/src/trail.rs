//! A component's audit trail: an [`AuditSink`] together with the [`Actor`] it records as, or
//! nothing at all (tests and tools that change nothing). The controller, the agent and the
//! operator CLIs each hold one.
//!
//! A record is appended after its change happened, and [`Trail::record`] returns once it is
//! durable. A record that cannot be written does not undo the change: the failure is logged
//! at error level with the action and object, and the log then refuses further appends until
//! the component reopens it (see [`AuditError::Poisoned`]).

use std::path::Path;

use serde_json::Value;

use crate::error::AuditError;
use crate::log::AuditLog;
use crate::record::{Actor, AuditEntry, Outcome};
use crate::sink::AuditSink;

/// Where a component's records go, and as whom it records.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    /// The log and who records in it; `None`: no trail.
    inner: Option<(AuditSink, Actor)>,
}

impl Trail {
    /// No trail: `record` does nothing.
    pub fn disabled() -> Trail {
        Trail::default()
    }

    /// Opens (or creates: directory 0700, file 0600) the log at `path`, continuing its chain,
    /// locks it, and records as `actor`.
    pub fn open(path: &Path, actor: Actor) -> Result<Trail, AuditError> {
        let log = AuditLog::open(path)?;
        Ok(Trail::from_sink(AuditSink::spawn(log)?, actor))
    }

    /// Records as `actor` into an already running sink.
    pub fn from_sink(sink: AuditSink, actor: Actor) -> Trail {
        Trail {
            inner: Some((sink, actor)),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Who records, when there is a trail.
    pub fn actor(&self) -> Option<&Actor> {
        self.inner.as_ref().map(|(_, actor)| actor)
    }

    /// The log's path, when there is a trail.
    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|(sink, _)| sink.path())
    }

    /// Records that the actor did `action` on `object` (e.g. `vm.place`,
    /// `VirtualMachine default/web`) with `outcome` and `details`; returns once the record is
    /// durable. A failure to record is logged, never returned: the change already happened.
    pub async fn record(
        &self,
        action: &str,
        object: String,
        outcome: Outcome,
        details: &[(&str, Value)],
    ) {
        let Some((sink, actor)) = &self.inner else {
            return;
        };
        let mut entry =
            AuditEntry::new(actor.clone(), action, object.clone()).with_outcome(outcome);
        for (k, v) in details {
            entry = entry.with_detail(*k, v.clone());
        }
        if let Err(e) = sink.record(entry).await {
            tracing::error!(action, object = %object, error = %e, "could not append to the audit trail");
        }
    }

    /// Writes what is queued, then closes and unlocks the log (clean shutdown).
    pub async fn close(&self) {
        if let Some((sink, _)) = &self.inner {
            sink.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn records_as_its_actor_into_a_private_file_that_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("agent.log");
        let trail = Trail::open(&path, Actor::component("yun-agent/h1")).unwrap();
        assert_eq!(trail.path(), Some(path.as_path()));
        trail
            .record(
                "vm.start",
                "VirtualMachine t/web".into(),
                Outcome::Ok,
                &[("uid", Value::from("u1"))],
            )
            .await;
        let failed = Outcome::Error {
            message: "boom".into(),
        };
        trail
            .record("vm.stop", "VirtualMachine t/web".into(), failed, &[])
            .await;
        trail.close().await;

        assert_eq!(crate::verify(&path, None).unwrap().records, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(r#""actor":{"kind":"component","id":"yun-agent/h1"}"#));
        assert!(lines[0].contains(r#""details":{"uid":"u1"}"#));
        assert!(lines[1].contains(r#""outcome":{"result":"error","message":"boom"}"#));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[tokio::test]
    async fn a_second_writer_is_refused_and_a_disabled_trail_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let first = Trail::open(&path, Actor::component("c")).unwrap();
        let err = Trail::open(&path, Actor::component("c")).unwrap_err();
        assert!(matches!(err, AuditError::Locked { .. }), "{err}");
        first.close().await;

        let off = Trail::disabled();
        assert!(!off.is_enabled() && off.path().is_none());
        off.record("vm.start", "VirtualMachine t/x".into(), Outcome::Ok, &[])
            .await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
