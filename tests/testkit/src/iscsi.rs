//! A throwaway iSCSI target (tgt's userspace `tgtd`) on loopback with file-backed LUNs, one
//! per test, for QEMU's own iSCSI initiator (libiscsi).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::daemon::{
    await_exit, free_loopback_port, log_outputs, log_tail, remove_if_present, run_tool,
};
use crate::{ChildGuard, TestkitError};

const TGTD: &str = "/usr/sbin/tgtd";
const TGTADM: &str = "/usr/sbin/tgtadm";
/// tgtd's management socket for control port N is `<dir>/socket.N` (plus `socket.N.lock`).
const CONTROL_SOCKET_DIR: &str = "/var/run/tgtd";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// tgtd catches and ignores SIGTERM; after `--op delete --mode system` it exits at once.
/// This is how long it gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Fresh ports tried when another process holds the chosen control port or iSCSI port.
const START_ATTEMPTS: usize = 4;

/// A running `tgtd` serving iSCSI on `127.0.0.1:<free port>`, with its own management socket.
/// Dropping it deletes its targets and accounts, stops tgtd (reaping it) and removes the temp
/// dir with the LUN files created there.
///
/// Every method blocks the calling thread; from a tokio test use `spawn_blocking` or the
/// multi-thread runtime.
#[derive(Debug)]
pub struct IscsiTarget {
    dir: TempDir,
    /// The iSCSI TCP port.
    port: u16,
    /// tgtd's control port (`-C`): only a name suffix for the management socket.
    control_port: u16,
    process: Option<ChildGuard>,
    /// Target IQNs in tid order: the target with tid N is `targets[N - 1]`.
    targets: Vec<String>,
    /// CHAP accounts created so far: user -> password.
    accounts: BTreeMap<String, String>,
}

impl IscsiTarget {
    /// Absolute paths of the programs this helper runs.
    pub const PROGRAMS: [&'static str; 2] = [TGTD, TGTADM];

    /// Starts tgtd on a free loopback port and waits until its management socket answers.
    /// A missing tgtd or tgtadm is named at once, not read as "no answer".
    pub fn start() -> Result<Self, TestkitError> {
        crate::tools::require_all(&Self::PROGRAMS)?;
        let dir = tempfile::Builder::new()
            .prefix("yun-testkit-tgtd-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating tgtd temp dir", e))?;
        let mut server = Self {
            dir,
            port: 0,
            control_port: 0,
            process: None,
            targets: Vec::new(),
            accounts: BTreeMap::new(),
        };
        let mut attempt = 1;
        loop {
            server.port = free_loopback_port()?;
            server.control_port = control_port_for(server.port);
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(_) if attempt < START_ATTEMPTS && server.port_was_taken() => attempt += 1,
                Err(err) => return Err(err),
            }
        }
    }

    /// `127.0.0.1:<port>`, the portal initiators connect to.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `iscsi://127.0.0.1:<port>/<iqn>/<lun>`, the URL form QEMU accepts for a LUN without CHAP.
    pub fn lun_url(&self, iqn: &str, lun: u32) -> String {
        format!("iscsi://{}/{iqn}/{lun}", self.portal())
    }

    /// tgtd's control port, for running `tgtadm -C <port> ...` by hand.
    pub fn control_port(&self) -> u16 {
        self.control_port
    }

    /// Pid of the running tgtd, `None` after [`IscsiTarget::stop`].
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// The temp dir holding the log and relative LUN files; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines tgtd logged, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path())
    }

    /// Adds LUN `lun` (1 or more: LUN 0 is the target's controller) to target `iqn`, creating
    /// the target on first use with access for every initiator. The LUN is backed by
    /// `backing_file`, a path inside this server's temp dir when relative; it is created as a
    /// sparse file of `size_bytes`, or kept with its content and grown to `size_bytes` if it
    /// exists and is smaller. Returns the backing file's path.
    pub fn add_lun(
        &mut self,
        iqn: &str,
        lun: u32,
        backing_file: impl AsRef<Path>,
        size_bytes: u64,
    ) -> Result<PathBuf, TestkitError> {
        if lun == 0 {
            return Err(TestkitError::BadRequest(format!(
                "iSCSI LUN 0 of {iqn} is the target's controller; data LUNs start at 1"
            )));
        }
        let path = self.dir.path().join(backing_file);
        create_sparse(&path, size_bytes)?;
        let tid = self.tid_or_create(iqn)?;
        let path_arg = path.to_string_lossy();
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            &lun.to_string(),
            "--backing-store",
            &path_arg,
        ])?;
        Ok(path)
    }

    /// Makes initiators of target `iqn` log in with CHAP as `user`/`password`. The target must
    /// exist (add a LUN first). An account is shared by the targets it is bound to, so a user
    /// keeps the password it was first given.
    pub fn require_chap(
        &mut self,
        iqn: &str,
        user: &str,
        password: &str,
    ) -> Result<(), TestkitError> {
        let Some(tid) = self.tid_of(iqn) else {
            return Err(TestkitError::BadRequest(format!(
                "no iSCSI target {iqn} yet: add a LUN to it before requiring CHAP"
            )));
        };
        match self.accounts.get(user) {
            Some(known) if known != password => {
                return Err(TestkitError::BadRequest(format!(
                    "CHAP user {user} already exists with another password"
                )));
            }
            Some(_) => {}
            None => {
                self.tgtadm(&[
                    "--op",
                    "new",
                    "--mode",
                    "account",
                    "--user",
                    user,
                    "--password",
                    password,
                ])?;
                self.accounts.insert(user.to_owned(), password.to_owned());
            }
        }
        self.tgtadm(&[
            "--op", "bind", "--mode", "account", "--tid", &tid, "--user", user,
        ])?;
        Ok(())
    }

    /// Deletes the targets and accounts, then stops tgtd and waits for it to exit (SIGKILL
    /// after a short grace). Also done on drop; call it to see errors.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        // Keep going after a failed step: tgtd must end and its socket go, whatever happened.
        let mut first_error = None;
        let mut note = |result: Result<String, TestkitError>| {
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        };
        for tid in (1..=self.targets.len()).rev().map(|tid| tid.to_string()) {
            note(self.tgtadm(&[
                "--op", "update", "--mode", "target", "--tid", &tid, "--name", "state", "--value",
                "offline",
            ]));
            note(self.tgtadm(&[
                "--op", "delete", "--mode", "target", "--tid", &tid, "--force",
            ]));
        }
        for user in self.accounts.keys() {
            note(self.tgtadm(&["--op", "delete", "--mode", "account", "--user", user]));
        }
        // tgtd refuses this while targets exist, and exits when it succeeds.
        note(self.tgtadm(&["--op", "delete", "--mode", "system"]));
        self.targets.clear();
        self.accounts.clear();
        await_exit(&mut process, STOP_GRACE)?;
        self.remove_control_socket()?;
        first_error.map_or(Ok(()), Err)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tgtd.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        let (stdout, stderr) = log_outputs(&self.log_path())?;
        let mut command = Command::new(TGTD);
        command
            .arg("--foreground")
            .args(["--control-port", &self.control_port.to_string()])
            .args(["--iscsi", &format!("portal={}", self.portal())])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut process = ChildGuard::spawn(&mut command)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(self.start_error(format!("tgtd exited with {status}")));
            }
            if self.tgtadm(&["--op", "show", "--mode", "target"]).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(format!("no answer within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
        // tgtd keeps running without a portal it could not bind, so check that it has one.
        let portals = self.tgtadm(&["--op", "show", "--mode", "portal"]);
        if portals.is_ok_and(|list| list.contains(&format!("Portal: {},", self.portal()))) {
            return Ok(());
        }
        let error = self.start_error(format!("no iSCSI portal on {}", self.portal()));
        self.stop()?;
        Err(error)
    }

    fn start_error(&self, reason: String) -> TestkitError {
        TestkitError::ServerStart {
            server: "tgtd",
            reason: format!("{reason} (control port {})", self.control_port),
            log_tail: self.log_tail(),
        }
    }

    /// Whether the last start failed because another process holds the control port or the
    /// iSCSI port, so that a fresh port will do.
    fn port_was_taken(&self) -> bool {
        let log = self.log_tail();
        log.contains("another tgtd is using") || log.contains("Address already in use")
    }

    fn tid_of(&self, iqn: &str) -> Option<String> {
        let index = self.targets.iter().position(|known| known == iqn)?;
        Some((index + 1).to_string())
    }

    fn tid_or_create(&mut self, iqn: &str) -> Result<String, TestkitError> {
        if let Some(tid) = self.tid_of(iqn) {
            return Ok(tid);
        }
        let tid = (self.targets.len() + 1).to_string();
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "target",
            "--tid",
            &tid,
            "--targetname",
            iqn,
        ])?;
        self.targets.push(iqn.to_owned());
        self.tgtadm(&[
            "--op",
            "bind",
            "--mode",
            "target",
            "--tid",
            &tid,
            "--initiator-address",
            "ALL",
        ])?;
        Ok(tid)
    }

    fn tgtadm(&self, args: &[&str]) -> Result<String, TestkitError> {
        let control_port = self.control_port.to_string();
        let mut full = vec!["--control-port", &control_port, "--lld", "iscsi"];
        full.extend_from_slice(args);
        run_tool(TGTADM, &full)
    }

    /// tgtd leaves its socket and lock file behind when it exits.
    fn remove_control_socket(&self) -> Result<(), TestkitError> {
        let socket = format!("socket.{}", self.control_port);
        for name in [format!("{socket}.lock"), socket] {
            remove_if_present(&Path::new(CONTROL_SOCKET_DIR).join(name))?;
        }
        Ok(())
    }
}

impl Drop for IscsiTarget {
    fn drop(&mut self) {
        // Drop cannot report errors; stop() still ends tgtd (by SIGKILL if need be).
        let _ = self.stop();
    }
}

/// A control port number for the tgtd serving iSCSI `port`. tgtd takes numbers up to 32767;
/// deriving it from the (free) iSCSI port keeps concurrent servers apart, and a clash with
/// another tgtd only costs a retry. Low numbers (0 is tgtd's default) are left to others.
fn control_port_for(port: u16) -> u16 {
    const FIRST: u16 = 1024;
    const LAST: u16 = 32767;
    FIRST + port % (LAST - FIRST + 1)
}

/// Creates `path` as a sparse file of `size_bytes`, or grows an existing smaller one.
fn create_sparse(path: &Path, size_bytes: u64) -> Result<(), TestkitError> {
    let context = || format!("creating LUN backing file {}", path.display());
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| TestkitError::io(context(), e))?;
    let length = file
        .metadata()
        .map_err(|e| TestkitError::io(context(), e))?
        .len();
    if length < size_bytes {
        file.set_len(size_bytes)
            .map_err(|e| TestkitError::io(context(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ports_stay_in_the_range_tgtd_takes_and_off_its_default() {
        for port in [0, 1, 1023, 1024, 32767, 32768, 40000, 65535] {
            let control = control_port_for(port);
            assert!((1024..=32767).contains(&control), "{port} -> {control}");
        }
        assert_ne!(control_port_for(40000), control_port_for(40001));
    }

    #[test]
    fn lun_zero_is_refused_before_tgtd_is_asked() {
        let mut server = IscsiTarget {
            dir: tempfile::tempdir().expect("temp dir"),
            port: 0,
            control_port: 0,
            process: None,
            targets: Vec::new(),
            accounts: BTreeMap::new(),
        };
        let err = server
            .add_lun("iqn.2024-01.dev.yun.test:zero", 0, "zero.img", 1024)
            .expect_err("LUN 0 is the controller");
        assert!(err.to_string().contains("LUNs start at 1"), "{err}");
    }
}
