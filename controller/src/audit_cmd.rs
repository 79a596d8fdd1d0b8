//! `yun-controller audit verify|export`: checks the controller's hash-chained audit log and
//! ships it to a SIEM as JSON lines.

use anyhow::Context;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use yun_audit::{Anchor, ExportOptions};

/// Default place of the controller's audit log.
pub const DEFAULT_AUDIT_LOG: &str = "/var/lib/yun/audit/controller.log";

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash and the chain; names the first edited, removed or reordered
    /// record and exits 1.
    Verify {
        #[arg(long, env = "YUN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
        audit_log: PathBuf,
        /// `SEQ:HASH` of a record kept elsewhere (e.g. from an earlier verify): also detects a
        /// truncated or rebuilt chain.
        #[arg(long)]
        anchor: Option<Anchor>,
    },
    /// Write the records as flat JSON lines (schema `yun.audit/v1`) to stdout, after verifying
    /// the log; nothing is written from a log that fails verification.
    Export {
        #[arg(long, env = "YUN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
        audit_log: PathBuf,
        #[arg(long)]
        anchor: Option<Anchor>,
        /// Only records after this seq (incremental shipping).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { audit_log, anchor } => {
            let report = yun_audit::verify(&audit_log, anchor.as_ref()).with_context(|| {
                format!("audit log {} failed verification", audit_log.display())
            })?;
            println!(
                "{}: {} records verified; anchor {}",
                audit_log.display(),
                report.records,
                report.anchor()
            );
            Ok(())
        }
        AuditCommand::Export {
            audit_log,
            anchor,
            after,
        } => {
            let options = ExportOptions {
                anchor,
                after_seq: after,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = yun_audit::export_with(&audit_log, &options, &mut out)
                .with_context(|| format!("exporting {}", audit_log.display()))?;
            out.flush()?;
            eprintln!("{n} records exported");
            Ok(())
        }
    }
}
