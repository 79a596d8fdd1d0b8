//! `yun-controller force-detach`'s audit trail. The command runs as an operator's CLI while the
//! running controller holds its own log locked, so it records in a log of its own (the CLI
//! log), as the operator (`--as`, else `$SUDO_USER`, else `$USER`) rather than a component.
//!
//! The log is opened before anything is changed: a force-detach that cannot be recorded is
//! not done. The record is durable before the command reports the result.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use yun_audit::{Actor, AuditError, Outcome, Trail};
use yun_controller::volume::force::{ForceDetached, force_detach};
use yun_fleet_etcd::FleetBus;

/// Default place of the operator CLI's audit log.
pub const DEFAULT_CLI_AUDIT_LOG: &str = "/var/lib/yun/audit/cli.log";
/// What a force-detach is recorded as.
pub const FORCE_DETACH: &str = "volume.force_detach";
/// How long to wait for another operator's command that holds the CLI log.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Where an operator command records, and as whom.
#[derive(Debug, Clone, Args)]
pub struct OperatorAudit {
    /// The operator CLI's audit log (hash-chained; check it with `yun-controller audit verify
    /// --audit-log PATH`).
    #[arg(long, env = "YUN_CLI_AUDIT_LOG", default_value = DEFAULT_CLI_AUDIT_LOG)]
    pub audit_log: PathBuf,
    /// Who is running this, as recorded (default: $SUDO_USER, else $USER).
    #[arg(long = "as", value_name = "NAME")]
    pub operator: Option<String>,
}

/// `--as`, else the user `sudo` was run by, else the login user; blank values do not count.
pub fn operator_name(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let named = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    named(explicit.map(str::to_owned))
        .or_else(|| named(env("SUDO_USER")))
        .or_else(|| named(env("USER")))
}

/// Opens the CLI log (directory 0700, file 0600), recording as the operator. Another
/// operator's command holding it is waited for a little.
pub async fn open_trail(args: &OperatorAudit) -> anyhow::Result<Trail> {
    let Some(name) = operator_name(args.operator.as_deref(), |k| std::env::var(k).ok()) else {
        bail!("cannot tell who is running this (no $SUDO_USER or $USER): pass --as <name>");
    };
    let actor = Actor::user(name, None);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Trail::open(&args.audit_log, actor.clone()) {
            Err(AuditError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => {
                return other.with_context(|| {
                    format!(
                        "opening the audit log {} (--audit-log); nothing was changed",
                        args.audit_log.display()
                    )
                });
            }
        }
    }
}

/// Force-detaches `volume` (holders on `host`, or all), records the outcome in `trail`, and
/// closes it.
pub async fn run(
    bus: &FleetBus,
    trail: Trail,
    volume: &str,
    host: Option<&str>,
) -> anyhow::Result<ForceDetached> {
    let result = force_detach(bus, volume, host).await;
    let mut details: Vec<(&str, Value)> = Vec::new();
    if let Some(h) = host {
        details.push(("host", h.into()));
    }
    let outcome = match &result {
        Ok(done) => {
            details.push(("uid", done.uid.as_str().into()));
            details.push(("released", done.released.clone().into()));
            Outcome::Ok
        }
        Err(e) => Outcome::Error {
            message: e.to_string(),
        },
    };
    trail
        .record(FORCE_DETACH, format!("Volume {volume}"), outcome, &details)
        .await;
    trail.close().await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_the_named_one_then_the_sudo_user_then_the_user() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let both = env(&[("SUDO_USER", "alice"), ("USER", "root")]);
        assert_eq!(operator_name(Some("carol"), both).as_deref(), Some("carol"));
        assert_eq!(operator_name(None, both).as_deref(), Some("alice"));
        assert_eq!(operator_name(Some("  "), both).as_deref(), Some("alice"));
        let user = env(&[("SUDO_USER", ""), ("USER", "bob")]);
        assert_eq!(operator_name(None, user).as_deref(), Some("bob"));
        assert_eq!(operator_name(None, env(&[])), None);
    }
}
