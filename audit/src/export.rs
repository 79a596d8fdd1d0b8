//! Export for a SIEM: the verified chain as flat JSON lines.
//!
//! Each output line is one object with camelCase keys, flattened so SIEM field mappings need
//! no nesting: `schema` (`yun.audit/v1`), `seq`, `time`, `actorKind`, `actorId`,
//! `actorProject` (absent if none), `action`, `object`, `result` (`ok`/`error`/`denied`),
//! `message` (absent on `ok`), `details` (absent if empty), `prev`, `hash`. `prev`/`hash` let
//! the SIEM side re-check continuity between successive exports.
//!
//! A tampered log is refused, not exported: the chain is verified in full before the first
//! byte is written, so a SIEM never ingests records from a log that fails verification.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::AuditError;
use crate::record::AuditRecord;
use crate::verify::{Anchor, verify, walk};

/// The `schema` value of every exported line.
pub const EXPORT_SCHEMA: &str = "yun.audit/v1";

/// Which records to export and what to check first.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Checked as in [`verify`].
    pub anchor: Option<Anchor>,
    /// Export only records with a greater seq (for incremental shipping); 0 exports all.
    pub after_seq: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SiemLine<'a> {
    schema: &'static str,
    seq: u64,
    time: &'a jiff::Timestamp,
    actor_kind: &'static str,
    actor_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_project: Option<&'a str>,
    action: &'a str,
    object: &'a str,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "is_empty")]
    details: &'a Map<String, Value>,
    prev: &'a str,
    hash: &'a str,
}

fn is_empty(details: &&Map<String, Value>) -> bool {
    details.is_empty()
}

/// Verifies the log at `path` and writes all its records to `out`; returns how many.
pub fn export(path: &Path, out: impl Write) -> Result<u64, AuditError> {
    export_with(path, &ExportOptions::default(), out)
}

/// Verifies the log at `path` and writes the records selected by `options` to `out`; returns
/// how many were written. Nothing is written if verification fails.
pub fn export_with(
    path: &Path,
    options: &ExportOptions,
    out: impl Write,
) -> Result<u64, AuditError> {
    let report = verify(path, options.anchor.as_ref())?;
    // Second pass over exactly the verified bytes; the chain is re-checked as it is read, in
    // case the file was rewritten between the passes.
    let file = File::open(path).map_err(AuditError::io(path, "open"))?;
    let reader = BufReader::with_capacity(256 * 1024, file.take(report.verified_bytes));
    let mut out = BufWriter::new(out);
    let mut written = 0;
    walk(path, reader, None, |record| {
        if record.seq > options.after_seq {
            write_line(&mut out, record)?;
            written += 1;
        }
        Ok(())
    })?;
    out.flush().map_err(AuditError::Export)?;
    Ok(written)
}

fn write_line(out: &mut impl Write, record: &AuditRecord) -> Result<(), AuditError> {
    let line = SiemLine {
        schema: EXPORT_SCHEMA,
        seq: record.seq,
        time: &record.time,
        actor_kind: record.actor.kind.as_str(),
        actor_id: &record.actor.id,
        actor_project: record.actor.project.as_deref(),
        action: &record.action,
        object: &record.object,
        result: record.outcome.result(),
        message: record.outcome.message(),
        details: &record.details,
        prev: &record.prev,
        hash: &record.hash,
    };
    serde_json::to_writer(&mut *out, &line).map_err(|e| AuditError::Export(e.into()))?;
    out.write_all(b"\n").map_err(AuditError::Export)
}
