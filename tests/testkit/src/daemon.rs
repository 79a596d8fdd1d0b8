//! Pieces shared by the helpers that run storage daemons: log files, tool calls and a bounded
//! wait for a daemon to exit.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, TestkitError, wait_until};

const LOG_TAIL_LINES: usize = 40;

/// Stdout and stderr handles that both append to a fresh log file at `path`.
pub(crate) fn log_outputs(path: &Path) -> Result<(Stdio, Stdio), TestkitError> {
    let context = || format!("creating log file {}", path.display());
    let log = File::create(path).map_err(|e| TestkitError::io(context(), e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| TestkitError::io(context(), e))?;
    Ok((Stdio::from(log), Stdio::from(log_err)))
}

/// The last lines of a log file, or an empty string when it cannot be read.
pub(crate) fn log_tail(path: &Path) -> String {
    let Ok(log) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Runs `program args...` to completion and returns its stdout; a non-zero exit becomes
/// [`TestkitError::CommandFailed`] carrying stderr.
pub(crate) fn run_tool(program: &str, args: &[&str]) -> Result<String, TestkitError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::io(format!("running {command}"), e))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(TestkitError::CommandFailed {
        command,
        detail: format!("{} ({})", stderr.trim(), output.status),
    })
}

/// Waits up to `grace` for `process` to exit by itself (reaping it), then SIGKILLs it and
/// waits for that.
pub(crate) fn await_exit(process: &mut ChildGuard, grace: Duration) -> Result<(), TestkitError> {
    let exited = wait_until("the daemon to exit", grace, || {
        !matches!(process.try_wait(), Ok(None))
    });
    if exited.is_err() {
        process.kill_hard()?;
    }
    // Surfaces a failed poll that ended the wait early; a reaped child answers Ok(Some).
    process.try_wait().map(|_| ())
}

/// A loopback TCP port that was free a moment ago. The daemon that gets it may still lose a
/// race for it, so callers retry with a fresh port when binding fails.
pub(crate) fn free_loopback_port() -> Result<u16, TestkitError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| TestkitError::io("binding a free loopback port", e))
}

/// Removes a file a daemon left behind; one that is already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), TestkitError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(TestkitError::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}
