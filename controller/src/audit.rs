//! The controller's audit trail: every change it commits on the fleet bus (a placement, a
//! release, a volume grant) appends a record to its hash-chained log (`yun-audit`).
//!
//! A record is appended after the change committed, and `record` returns once it is durable.
//! A record that cannot be written does not undo the change (etcd already holds it): the
//! failure is logged at error level with the action and object; the log itself then refuses
//! further appends until the controller restarts and reopens it (see `yun-audit`'s
//! `Poisoned`).

use std::path::Path;

use serde_json::Value;
use yun_audit::{Actor, AuditEntry, AuditError, AuditLog, AuditSink, Outcome};

/// Where a controller's trail goes, and as whom it records.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// The log and who records in it; `None`: no trail.
    trail: Option<(AuditSink, Actor)>,
}

impl Audit {
    /// No trail (tests and tools that change nothing).
    pub fn disabled() -> Audit {
        Audit::default()
    }

    /// Opens (or creates, mode 0600) the log at `path`, continuing its chain, and records as
    /// `actor`.
    pub fn open(path: &Path, actor: Actor) -> Result<Audit, AuditError> {
        let log = AuditLog::open(path)?;
        Ok(Audit {
            trail: Some((AuditSink::spawn(log)?, actor)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.trail.is_some()
    }

    /// Records that working as the controller did `action` on `object` (e.g. `vm.place`,
    /// `VirtualMachine default/web`), with `details`.
    pub async fn record(
        &self,
        action: &str,
        object: String,
        outcome: Outcome,
        details: &[(&str, Value)],
    ) {
        let Some((sink, actor)) = &self.trail else {
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

    /// Flushes and closes the log (clean shutdown).
    pub async fn close(&self) {
        if let Some((sink, _)) = &self.trail {
            sink.close().await;
        }
    }
}

/// `VirtualMachine namespace/name`, the object of VM records.
pub fn vm_object(namespace: &str, name: &str) -> String {
    format!("VirtualMachine {namespace}/{name}")
}
