//! The `yun-fleetsim` control protocol: one command per line on stdin, one JSON object per line
//! on stdout (see docs/ops/fleetsim.md).

use crate::fleet::{HostEvent, SimFleet};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SimCommand {
    Kill(usize),
    Partition(f64),
    Heal,
    Restart(usize),
    Stats,
    Quit,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    #[error(
        "unknown command {0:?} (kill <n>, partition <fraction>, heal, restart <n>, stats, quit)"
    )]
    Unknown(String),
    #[error("{command} needs one argument: {what}")]
    Argument {
        command: &'static str,
        what: &'static str,
    },
}

impl SimCommand {
    /// Parses one line; `Ok(None)` for a blank line.
    pub fn parse(line: &str) -> Result<Option<SimCommand>, CommandError> {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else {
            return Ok(None);
        };
        let arg = words.next();
        let extra = words.next().is_some();
        let count = |command, arg: Option<&str>| match (arg.map(str::parse::<usize>), extra) {
            (Some(Ok(n)), false) => Ok(n),
            _ => Err(CommandError::Argument {
                command,
                what: "a host count",
            }),
        };
        let bare = |cmd| match (arg, extra) {
            (None, false) => Ok(cmd),
            _ => Err(CommandError::Unknown(line.trim().to_owned())),
        };
        let cmd = match verb {
            "kill" => SimCommand::Kill(count("kill", arg)?),
            "restart" => SimCommand::Restart(count("restart", arg)?),
            "partition" => match (arg.map(str::parse::<f64>), extra) {
                (Some(Ok(f)), false) if (0.0..=1.0).contains(&f) => SimCommand::Partition(f),
                _ => {
                    return Err(CommandError::Argument {
                        command: "partition",
                        what: "a fraction of the running hosts in 0..=1",
                    });
                }
            },
            "heal" => bare(SimCommand::Heal)?,
            "stats" => bare(SimCommand::Stats)?,
            "quit" => bare(SimCommand::Quit)?,
            _ => return Err(CommandError::Unknown(line.trim().to_owned())),
        };
        Ok(Some(cmd))
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn hosts_event(event: &str, hosts: &[HostEvent]) -> Value {
    let hosts: Vec<Value> = hosts
        .iter()
        .map(|(host, at)| json!({"host": host, "at_unix_ms": unix_ms(*at)}))
        .collect();
    json!({"event": event, "count": hosts.len(), "hosts": hosts})
}

pub fn error_event(message: &str) -> Value {
    json!({"event": "error", "message": message})
}

/// Runs a command (other than `quit`) and returns its answer.
pub fn execute(fleet: &mut SimFleet, cmd: SimCommand) -> Value {
    match cmd {
        SimCommand::Kill(n) => hosts_event("killed", &fleet.kill(n)),
        SimCommand::Partition(f) => match fleet.partition(f) {
            Ok(hosts) => hosts_event("partitioned", &hosts),
            Err(e) => error_event(&e.to_string()),
        },
        SimCommand::Heal => hosts_event("healed", &fleet.heal()),
        SimCommand::Restart(n) => hosts_event("restarted", &fleet.restart(n)),
        SimCommand::Stats => stats_event(fleet),
        SimCommand::Quit => json!({"event": "quitting"}),
    }
}

pub fn stats_event(fleet: &SimFleet) -> Value {
    let mut v = json!({"event": "stats", "at_unix_ms": unix_ms(SystemTime::now())});
    if let (Some(obj), Ok(Value::Object(stats))) =
        (v.as_object_mut(), serde_json::to_value(fleet.stats()))
    {
        obj.extend(stats);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let p = |s| SimCommand::parse(s).unwrap();
        assert_eq!(p("kill 5"), Some(SimCommand::Kill(5)));
        assert_eq!(p("  restart 2 "), Some(SimCommand::Restart(2)));
        assert_eq!(p("partition 0.25"), Some(SimCommand::Partition(0.25)));
        assert_eq!(p("heal"), Some(SimCommand::Heal));
        assert_eq!(p("stats"), Some(SimCommand::Stats));
        assert_eq!(p("quit"), Some(SimCommand::Quit));
        assert_eq!(p("   "), None);
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(SimCommand::parse("kill").is_err());
        assert!(SimCommand::parse("kill -1").is_err());
        assert!(SimCommand::parse("kill 1 2").is_err());
        assert!(SimCommand::parse("partition 1.5").is_err());
        assert!(SimCommand::parse("heal now").is_err());
        assert!(matches!(
            SimCommand::parse("explode"),
            Err(CommandError::Unknown(_))
        ));
    }

    #[test]
    fn host_events_carry_names_and_times() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1234);
        let v = hosts_event("killed", &[("sim-00001".into(), at)]);
        assert_eq!(
            v,
            json!({"event": "killed", "count": 1,
                   "hosts": [{"host": "sim-00001", "at_unix_ms": 1234}]})
        );
    }
}
