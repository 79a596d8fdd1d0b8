//! Yun's tamper-evident audit trail.
//!
//! Every change the controller or an agent makes appends an [`AuditRecord`] to an
//! append-only JSON-lines file in which each record carries the hash of the previous one
//! (see [`chain`] for the exact bytes hashed). [`AuditLog`] appends batches durably (one write
//! and one `fdatasync` per batch); [`AuditSink`] group-commits entries from many concurrent
//! producers; [`verify()`] names the first edited, removed or reordered record; [`export()`]
//! writes the verified records as flat JSON lines for a SIEM. [`Trail`] is what a component
//! holds: a sink and the [`Actor`] it records as.
//!
//! The chain alone cannot reveal the newest records being cut off, nor a writer with file
//! access rewriting the whole chain: keep an [`Anchor`] (seq and hash of a recent record)
//! somewhere else and pass it to [`verify()`].

pub mod chain;
mod error;
mod export;
mod lines;
mod log;
mod problem;
mod record;
mod sink;
mod trail;
mod verify;

pub use chain::{GENESIS_PREV, canonical_bytes, record_hash};
pub use error::AuditError;
pub use export::{EXPORT_SCHEMA, ExportOptions, export, export_with};
pub use log::AuditLog;
pub use problem::Problem;
pub use record::{Actor, ActorKind, AuditEntry, AuditRecord, MAX_ENTRY_BYTES, Outcome};
pub use sink::{AuditSink, SinkOptions, SinkStats};
pub use trail::Trail;
pub use verify::{Anchor, VerifyReport, verify};
