//! A throwaway NFS server (nfs-ganesha with FSAL VFS, registered with rpcbind) exporting a
//! temp directory to 127.0.0.1, for QEMU's own NFS client (libnfs).

use std::fs::{File, OpenOptions, TryLockError};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::daemon::{log_outputs, log_tail, remove_if_present, run_tool};
use crate::{ChildGuard, TestkitError, wait_until};

const GANESHA: &str = "/usr/bin/ganesha.nfsd";
const RPCBIND: &str = "/usr/sbin/rpcbind";
const RPCINFO: &str = "/usr/sbin/rpcinfo";
/// rpcbind has to be on the well-known port 111 and ganesha registers the NFS and MOUNT
/// programs there, so only one NfsServer can run per machine: starting one takes this lock.
const LOCK_PATH: &str = "/var/lib/yun-it/.nfs-server.lock";
/// How long `start` waits for another test's NfsServer to go away.
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);
const RPCBIND_PORT: u16 = 111;
const RPCBIND_SOCKET: &str = "/run/rpcbind.sock";
const RPCBIND_READY_TIMEOUT: Duration = Duration::from_secs(5);
const GANESHA_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// ganesha logs this once its listeners run and its programs are registered.
const GANESHA_READY_LINE: &str = "NFS SERVER INITIALIZED";
/// RPC program numbers, as `rpcinfo -t` takes them.
const NFS_PROGRAM: &str = "100003";
const MOUNT_PROGRAM: &str = "100005";

/// A running nfs-ganesha exporting [`NfsServer::export_path`] over NFSv3 and NFSv4 to
/// 127.0.0.1, read-write, with root not squashed, and without a grace period. It uses the
/// machine's rpcbind if one runs, and otherwise starts (and later stops) its own.
///
/// Dropping it stops ganesha (and rpcbind if it started it), waits for them, removes the temp
/// dir with the export, and lets the next NfsServer start. `start` blocks the calling thread,
/// also while another NfsServer exists; from a tokio test use `spawn_blocking`.
#[derive(Debug)]
pub struct NfsServer {
    dir: TempDir,
    export: PathBuf,
    ganesha: Option<ChildGuard>,
    rpcbind: Option<ChildGuard>,
    /// Declared last so it is released only after everything else is gone.
    _lock: File,
}

impl NfsServer {
    /// Absolute paths of the programs this helper runs.
    pub const PROGRAMS: [&'static str; 3] = [GANESHA, RPCBIND, RPCINFO];

    /// Takes the machine-wide NFS lock (waiting up to 10 min for another NfsServer to be
    /// dropped), makes sure rpcbind runs, and starts ganesha; returns once the NFS and MOUNT
    /// programs answer on 127.0.0.1.
    /// A missing program is named at once, not read as "no answer".
    pub fn start() -> Result<Self, TestkitError> {
        crate::tools::require_all(&Self::PROGRAMS)?;
        let lock = take_lock()?;
        let dir = tempfile::Builder::new()
            .prefix("yun-testkit-nfs-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating NFS temp dir", e))?;
        let mut server = Self {
            export: dir.path().join("export"),
            dir,
            ganesha: None,
            rpcbind: None,
            _lock: lock,
        };
        for sub in ["export", "recovery", "ccache"] {
            let path = server.dir.path().join(sub);
            std::fs::create_dir(&path)
                .map_err(|e| TestkitError::io(format!("creating {}", path.display()), e))?;
        }
        server.ensure_rpcbind()?;
        server.start_ganesha()?;
        Ok(server)
    }

    /// The exported directory on disk; files put here are visible over NFS and vice versa.
    pub fn export_path(&self) -> &Path {
        &self.export
    }

    /// `nfs://127.0.0.1/<export>/<file>`, the URL form QEMU's nfs driver takes.
    pub fn url(&self, file: &str) -> String {
        format!(
            "nfs://127.0.0.1{}/{}",
            self.export.display(),
            file.trim_start_matches('/')
        )
    }

    /// Pid of the running ganesha, `None` after [`NfsServer::stop`].
    pub fn pid(&self) -> Option<u32> {
        self.ganesha.as_ref().map(ChildGuard::pid)
    }

    /// Pid of the rpcbind this server started, `None` when it uses one that was running.
    pub fn rpcbind_pid(&self) -> Option<u32> {
        self.rpcbind.as_ref().map(ChildGuard::pid)
    }

    /// The last lines ganesha logged, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.ganesha_log())
    }

    /// Stops ganesha (SIGTERM, SIGKILL after a grace period), then the rpcbind this server
    /// started, waiting for each. Also done on drop; call it to see errors.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        let ganesha = self.ganesha.take().map(|mut process| process.terminate());
        let rpcbind = self.rpcbind.take().map(|mut process| {
            process.terminate()?;
            // rpcbind leaves its socket behind; nothing listens on it any more.
            remove_if_present(Path::new(RPCBIND_SOCKET))
        });
        ganesha.transpose()?;
        rpcbind.transpose()?;
        Ok(())
    }

    fn ganesha_log(&self) -> PathBuf {
        self.dir.path().join("ganesha.log")
    }

    fn ensure_rpcbind(&mut self) -> Result<(), TestkitError> {
        if rpcbind_answers() {
            return Ok(());
        }
        let log = self.dir.path().join("rpcbind.log");
        let (stdout, stderr) = log_outputs(&log)?;
        let mut command = Command::new(RPCBIND);
        // -f: stay in the foreground, so the guard owns the daemon itself.
        command
            .arg("-f")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut process = ChildGuard::spawn(&mut command)?;
        let deadline = Instant::now() + RPCBIND_READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(start_error(
                    "rpcbind",
                    format!("exited with {status}"),
                    &log,
                ));
            }
            if rpcbind_answers() {
                self.rpcbind = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let reason =
                    format!("no answer on port {RPCBIND_PORT} within {RPCBIND_READY_TIMEOUT:?}");
                return Err(start_error("rpcbind", reason, &log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_ganesha(&mut self) -> Result<(), TestkitError> {
        let config = self.dir.path().join("ganesha.conf");
        std::fs::write(&config, self.ganesha_config())
            .map_err(|e| TestkitError::io("writing ganesha.conf", e))?;
        let log = self.ganesha_log();
        // ganesha writes its log itself (-L); stdout and stderr only carry early failures.
        let (stdout, stderr) = log_outputs(&self.dir.path().join("ganesha.stderr"))?;
        let mut command = Command::new(GANESHA);
        command
            .arg("-F")
            .arg("-f")
            .arg(&config)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(self.dir.path().join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut process = ChildGuard::spawn(&mut command)?;
        let deadline = Instant::now() + GANESHA_READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(self.ganesha_error(format!("exited with {status}")));
            }
            if log_tail(&log).contains(GANESHA_READY_LINE) && nfs_answers() {
                self.ganesha = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let reason =
                    format!("NFS and MOUNT did not answer within {GANESHA_READY_TIMEOUT:?}");
                return Err(self.ganesha_error(reason));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ganesha_error(&self, reason: String) -> TestkitError {
        let stderr = log_tail(&self.dir.path().join("ganesha.stderr"));
        TestkitError::ServerStart {
            server: "nfs-ganesha",
            reason: format!("{reason}; see also the lock {LOCK_PATH} and port 2049"),
            log_tail: format!("{}\n{stderr}", self.log_tail()),
        }
    }

    /// NFSv3 and v4 over TCP on 127.0.0.1 (ports 2049 and a MOUNT port from rpcbind). Grace is
    /// off so clients are served at once; recovery state and the Kerberos credential cache go
    /// to the temp dir instead of /var/lib/nfs/ganesha and /run/ganesha.
    fn ganesha_config(&self) -> String {
        let dir = self.dir.path().display();
        let export = self.export.display();
        format!(
            r#"NFS_CORE_PARAM {{
    Protocols = 3, 4;
    Bind_addr = 127.0.0.1;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFS_KRB5 {{
    Active_krb5 = false;
    CCacheDir = "{dir}/ccache";
}}
NFSv4 {{
    Graceless = true;
    Lease_Lifetime = 10;
    RecoveryBackend = fs;
    RecoveryRoot = "{dir}/recovery";
}}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{export}";
    Protocols = 3, 4;
    Transports = TCP;
    SecType = sys;
    Squash = No_Root_Squash;
    # Files changed on disk by a test show up over NFS at once.
    Attr_Expiration_Time = 0;
    Access_Type = None;
    CLIENT {{
        Clients = 127.0.0.1;
        Access_Type = RW;
    }}
    FSAL {{
        Name = VFS;
    }}
}}
"#
        )
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        // Drop cannot report errors; ChildGuard's own drop still kills what stop() could not.
        let _ = self.stop();
    }
}

/// Opens and exclusively locks [`LOCK_PATH`], polling so that a stuck holder becomes an error.
fn take_lock() -> Result<File, TestkitError> {
    let path = Path::new(LOCK_PATH);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| TestkitError::io(format!("creating {}", parent.display()), e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| TestkitError::io(format!("opening {LOCK_PATH}"), e))?;
    let mut failure = None;
    let what = format!("the NFS server lock {LOCK_PATH} (held by another test's NfsServer)");
    wait_until(&what, LOCK_TIMEOUT, || match file.try_lock() {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(e)) => {
            failure = Some(e);
            true
        }
    })?;
    match failure {
        Some(e) => Err(TestkitError::io(format!("locking {LOCK_PATH}"), e)),
        None => Ok(file),
    }
}

/// Whether something accepts connections on 127.0.0.1:111 and answers `rpcinfo -p`.
fn rpcbind_answers() -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, RPCBIND_PORT));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        && run_tool(RPCINFO, &["-p", "127.0.0.1"]).is_ok()
}

/// Whether NFSv3, NFSv4 and MOUNTv3 answer a NULL call over TCP, found through rpcbind.
fn nfs_answers() -> bool {
    [(NFS_PROGRAM, "3"), (NFS_PROGRAM, "4"), (MOUNT_PROGRAM, "3")]
        .into_iter()
        .all(|(program, version)| run_tool(RPCINFO, &["-t", "127.0.0.1", program, version]).is_ok())
}

fn start_error(server: &'static str, reason: String, log: &Path) -> TestkitError {
    TestkitError::ServerStart {
        server,
        reason,
        log_tail: log_tail(log),
    }
}
