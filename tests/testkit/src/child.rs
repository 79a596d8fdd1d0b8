//! Owning a process a test started, so it never outlives the test.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// How long [`ChildGuard::terminate`] waits after SIGTERM before it sends SIGKILL.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(10);

/// A child process (e.g. a yun-agent under test) that is killed with SIGKILL and reaped when
/// the guard is dropped, also when the test panics.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        Self {
            child,
            exited: None,
        }
    }

    /// Spawns `command` and guards the result.
    pub fn spawn(command: &mut Command) -> Result<Self, TestkitError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {program}"), e))?;
        Ok(Self::new(child))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The guarded child, e.g. to take its stdout pipe.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, TestkitError> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .map_err(|e| TestkitError::io(format!("polling pid {}", self.pid()), e))?;
        }
        Ok(self.exited)
    }

    /// SIGKILL, as when a node's process is killed without warning; waits for the exit.
    pub fn kill_hard(&mut self) -> Result<ExitStatus, TestkitError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        send_signal(self.pid(), "KILL")?;
        self.wait()
    }

    /// SIGTERM, then waits up to [`TERMINATE_GRACE`] for a clean exit; SIGKILL after that.
    pub fn terminate(&mut self) -> Result<ExitStatus, TestkitError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        send_signal(self.pid(), "TERM")?;
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_hard()
    }

    fn wait(&mut self) -> Result<ExitStatus, TestkitError> {
        let status = self
            .child
            .wait()
            .map_err(|e| TestkitError::io(format!("waiting for pid {}", self.pid()), e))?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(None)) {
            // Drop cannot report errors; a failed kill leaves nothing better to do.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGname (e.g. "TERM") to `pid` with kill(1): the workspace forbids unsafe, so no libc.
pub(crate) fn send_signal(pid: u32, signal: &'static str) -> Result<(), TestkitError> {
    let output = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestkitError::Signal {
            pid,
            signal,
            detail: format!("cannot run kill: {e}"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestkitError::Signal {
            pid,
            signal,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
