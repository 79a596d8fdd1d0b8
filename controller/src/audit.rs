//! The controller's audit trail: every change it commits on the fleet bus (a placement, a
//! release, a volume grant) appends a record to its hash-chained log (`yun-audit`).
//!
//! A record is appended after the change committed, and `record` returns once it is durable.
//! A record that cannot be written does not undo the change (etcd already holds it): the
//! failure is logged at error level with the action and object; the log itself then refuses
//! further appends until the controller restarts and reopens it (see `yun-audit`'s
//! `Poisoned`).

/// Where a controller's trail goes, and as whom it records (`yun-controller/<identity>`);
/// [`Audit::disabled`] for tests and tools that change nothing.
pub type Audit = yun_audit::Trail;

/// `VirtualMachine namespace/name`, the object of VM records.
pub fn vm_object(namespace: &str, name: &str) -> String {
    format!("VirtualMachine {namespace}/{name}")
}
