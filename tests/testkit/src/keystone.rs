//! A throwaway OpenStack Keystone on loopback, one per test: PyPI's keystone (installed by
//! `scripts/install-keystone.sh`) with SQLite in WAL mode and fernet tokens, served by gunicorn.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::child::send_signal;
use crate::daemon::{await_exit, free_loopback_port, log_outputs, log_tail};
use crate::{ChildGuard, TestkitError};

const DEFAULT_VENV: &str = "/opt/yun-keystone";
/// Overrides [`DEFAULT_VENV`], as it does for the install script.
const VENV_ENV: &str = "YUN_KEYSTONE_VENV";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long gunicorn gets to exit after SIGQUIT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Fresh ports tried when another process takes the chosen one before gunicorn binds it.
const START_ATTEMPTS: usize = 3;
const ADMIN: &str = "admin";
/// Keystone's own default token lifetime.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const REGION: &str = "RegionOne";
/// gunicorn imports this instead of `keystone.wsgi.api` directly: keystone's config parser
/// reads `sys.argv` and rejects gunicorn's own arguments.
const WSGI_SHIM: &str = "import sys\n\nsys.argv = sys.argv[:1]\n\
                         from keystone.wsgi.api import application  # noqa: E402,F401\n";

/// A real Keystone (identity v3) with its database, keys and logs in a temp dir, bootstrapped
/// with an `admin` user holding the `admin` role on the `admin` project (domain `default`), a
/// `RegionOne` region and a public identity endpoint at [`KeystoneServer::url`]. Dropping it
/// kills gunicorn and removes the dir.
///
/// One gunicorn process with threads, not several workers: keystone's memory cache is per
/// process, and a second process would keep serving what the first one revoked.
///
/// `start` blocks the calling thread for ~5-8 s; from a tokio test use `spawn_blocking`.
#[derive(Debug)]
pub struct KeystoneServer {
    dir: TempDir,
    venv: PathBuf,
    port: u16,
    admin_password: String,
    token_lifetime: Duration,
    startup: Duration,
    process: Option<ChildGuard>,
}

impl KeystoneServer {
    /// The venv holding keystone and gunicorn: `$YUN_KEYSTONE_VENV` or `/opt/yun-keystone`.
    pub fn venv() -> PathBuf {
        std::env::var_os(VENV_ENV).map_or_else(|| PathBuf::from(DEFAULT_VENV), PathBuf::from)
    }

    /// Whether `test` can run Keystone: true when `scripts/install-keystone.sh` has run.
    /// Otherwise under CI the test fails here; elsewhere it prints SKIPPED and this is false.
    pub fn installed_for(test: &str) -> bool {
        let installed = Self::is_installed();
        if !installed {
            crate::missing_dependency(
                test,
                &format!(
                    "Keystone is not installed in {} (run scripts/install-keystone.sh)",
                    Self::venv().display()
                ),
            );
        }
        installed
    }

    /// Whether `scripts/install-keystone.sh` has run.
    pub fn is_installed() -> bool {
        let venv = Self::venv();
        ["keystone-manage", "gunicorn"]
            .iter()
            .all(|program| venv.join("bin").join(program).is_file())
    }

    /// Sets up a fresh database and key repositories, bootstraps the admin identity and
    /// serves keystone on a free loopback port; returns once `GET /v3` answers. Tokens live
    /// for Keystone's default hour.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with_token_lifetime(DEFAULT_TOKEN_LIFETIME)
    }

    /// Like [`KeystoneServer::start`], with tokens that expire `lifetime` (whole seconds,
    /// at least 1) after they are issued, to test renewal and expiry.
    pub fn start_with_token_lifetime(lifetime: Duration) -> Result<Self, TestkitError> {
        let began = Instant::now();
        let venv = Self::venv();
        if !Self::is_installed() {
            return Err(TestkitError::ServerStart {
                server: "keystone",
                reason: format!(
                    "not installed in {} (no bin/keystone-manage or bin/gunicorn); \
                     run `scripts/install-keystone.sh` as root",
                    venv.display()
                ),
                log_tail: String::new(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("yun-testkit-keystone-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating keystone temp dir", e))?;
        let mut server = Self {
            dir,
            venv,
            port: free_loopback_port()?,
            admin_password: random_hex(16)?,
            token_lifetime: lifetime.max(Duration::from_secs(1)),
            startup: Duration::ZERO,
            process: None,
        };
        server.write_files()?;
        server.set_up_database_and_keys()?;
        let mut attempt = 1;
        loop {
            // gunicorn spends ~1.5 s importing keystone, which needs the database schema and
            // the keys but not the bootstrapped rows: it starts while bootstrap runs.
            let gunicorn = server.spawn_gunicorn()?;
            server.bootstrap()?;
            match server.wait_until_answering(gunicorn) {
                Ok(()) => break,
                Err(_) if attempt < START_ATTEMPTS && server.port_was_busy() => {
                    server.port = free_loopback_port()?;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
        server.startup = began.elapsed();
        Ok(server)
    }

    /// The identity v3 endpoint, e.g. `http://127.0.0.1:40123/v3`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    /// The bootstrap admin's user name, project and role: `admin`, in domain `default`.
    pub fn admin_user(&self) -> &str {
        ADMIN
    }

    /// The bootstrap admin's password, random per server.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// Writes the admin's credentials as the TOML file a Yun component reads
    /// (`yun_identity::Credentials::from_file`: password form, project `admin`) to `path`,
    /// mode 0600.
    pub fn write_admin_credentials(&self, path: &Path) -> Result<(), TestkitError> {
        write_file(
            path,
            &format!(
                "auth_url = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nproject = \"{ADMIN}\"\n",
                self.url(),
                ADMIN,
                self.admin_password
            ),
        )?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| TestkitError::io(format!("chmod 600 {}", path.display()), e))
    }

    /// The region the bootstrap created: `RegionOne`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// How long [`KeystoneServer::start`] took, from nothing to an answering API.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Pid of the gunicorn master, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// The temp dir with the config, database, keys and logs; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines gunicorn and keystone logged, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.server_log())
    }

    /// Stops gunicorn to simulate an outage: SIGQUIT (its quick shutdown, which also stops
    /// the worker), SIGKILL after a grace period. The database and keys stay, so tokens
    /// issued before still validate after [`KeystoneServer::start_again`].
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        if let Some(mut process) = self.process.take() {
            if process.try_wait()?.is_none() {
                send_signal(process.pid(), "QUIT")?;
            }
            await_exit(&mut process, STOP_GRACE)?;
        }
        Ok(())
    }

    /// Serves the same database again on the same port, after [`KeystoneServer::stop`].
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        let gunicorn = self.spawn_gunicorn()?;
        self.wait_until_answering(gunicorn)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("keystone.conf")
    }

    fn server_log(&self) -> PathBuf {
        self.dir.path().join("keystone.log")
    }

    fn write_files(&self) -> Result<(), TestkitError> {
        let dir = self.dir.path().display();
        let lifetime = self.token_lifetime.as_secs();
        // No debug logging: keystone would log request bodies. bcrypt's minimum cost (4)
        // keeps password checks ~1 ms instead of ~200 ms.
        let conf = format!(
            "[DEFAULT]\ndebug = false\ninsecure_debug = false\nuse_stderr = true\n\
             [database]\nconnection = sqlite:///{dir}/keystone.db\n\
             [token]\nprovider = fernet\nexpiration = {lifetime}\n\
             [fernet_tokens]\nkey_repository = {dir}/fernet-keys\n\
             [fernet_receipts]\nkey_repository = {dir}/fernet-keys\n\
             [credential]\nkey_repository = {dir}/credential-keys\n\
             [identity]\npassword_hash_algorithm = bcrypt\npassword_hash_rounds = 4\n\
             [cache]\nenabled = true\nbackend = oslo_cache.dict\n"
        );
        write_file(&self.conf_path(), &conf)?;
        write_file(&self.dir.path().join("keystone_wsgi.py"), WSGI_SHIM)
    }

    /// `db_sync`, `fernet_setup` and `credential_setup` touch different files, so they run
    /// side by side (each is ~2 s, nearly all of it Python importing keystone).
    fn set_up_database_and_keys(&self) -> Result<(), TestkitError> {
        let steps = ["db_sync", "fernet_setup", "credential_setup"];
        let mut running = Vec::new();
        // The key repositories are made for whoever runs the tests: the owner of our dir.
        let owner = std::fs::metadata(self.dir.path())
            .map_err(|e| TestkitError::io("reading keystone temp dir owner", e))?;
        let (uid, gid) = (owner.uid().to_string(), owner.gid().to_string());
        for step in steps {
            let log = self.dir.path().join(format!("{step}.log"));
            let (stdout, stderr) = log_outputs(&log)?;
            let mut command = self.keystone_manage(step);
            if step != "db_sync" {
                command.args(["--keystone-user", &uid, "--keystone-group", &gid]);
            }
            command.stdout(stdout).stderr(stderr);
            running.push((step, log, ChildGuard::spawn(&mut command)?));
        }
        for (step, log, mut process) in running {
            self.wait_step(step, &log, &mut process)?;
        }
        self.enable_wal()
    }

    /// WAL lets keystone's request threads read while another one writes; the mode is stored
    /// in the database file, so setting it once is enough.
    fn enable_wal(&self) -> Result<(), TestkitError> {
        let db = self.dir.path().join("keystone.db");
        let script = "import sqlite3, sys\n\
                      mode = sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')\n\
                      assert mode.fetchone()[0] == 'wal'\n";
        let log = self.dir.path().join("wal.log");
        let (stdout, stderr) = log_outputs(&log)?;
        let mut command = Command::new(self.venv.join("bin/python"));
        command
            .args(["-c", script])
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut process = ChildGuard::spawn(&mut command)?;
        self.wait_step("PRAGMA journal_mode=WAL", &log, &mut process)
    }

    /// Creates (or, after a port change, updates) the admin identity, region and endpoint.
    fn bootstrap(&self) -> Result<(), TestkitError> {
        let log = self.dir.path().join("bootstrap.log");
        let (stdout, stderr) = log_outputs(&log)?;
        let mut command = self.keystone_manage("bootstrap");
        command
            .args(["--bootstrap-username", ADMIN])
            .args(["--bootstrap-project-name", ADMIN])
            .args(["--bootstrap-role-name", ADMIN])
            .args(["--bootstrap-region-id", REGION])
            .args(["--bootstrap-public-url", &self.url()])
            // From the environment, not argv, so `ps` does not show it.
            .env("OS_BOOTSTRAP_PASSWORD", &self.admin_password)
            .stdout(stdout)
            .stderr(stderr);
        let mut process = ChildGuard::spawn(&mut command)?;
        self.wait_step("bootstrap", &log, &mut process)
    }

    fn spawn_gunicorn(&self) -> Result<ChildGuard, TestkitError> {
        let (stdout, stderr) = log_outputs(&self.server_log())?;
        let mut command = Command::new(self.venv.join("bin/gunicorn"));
        command
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .args([
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                "4",
            ])
            .args(["--graceful-timeout", "2", "--chdir"])
            .arg(self.dir.path())
            .arg("keystone_wsgi:application")
            .env("OS_KEYSTONE_CONFIG_DIR", self.dir.path())
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        ChildGuard::spawn(&mut command)
    }

    fn wait_until_answering(&mut self, mut process: ChildGuard) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(self.start_error(format!("gunicorn exited with {status}")));
            }
            if self.answers() {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                drop(process);
                return Err(self.start_error(format!("no answer within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keystone_manage(&self, step: &str) -> Command {
        let mut command = Command::new(self.venv.join("bin/keystone-manage"));
        command
            .arg("--config-file")
            .arg(self.conf_path())
            .arg(step)
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null());
        command
    }

    fn wait_step(
        &self,
        step: &str,
        log: &Path,
        process: &mut ChildGuard,
    ) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(TestkitError::CommandFailed {
                    command: format!("keystone-manage {step}"),
                    detail: format!("{status}\n--- log tail ---\n{}", log_tail(log)),
                });
            }
            if Instant::now() >= deadline {
                process.kill_hard()?;
                return Err(TestkitError::Timeout {
                    what: format!("keystone-manage {step}"),
                    timeout: READY_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_error(&self, reason: String) -> TestkitError {
        TestkitError::ServerStart {
            server: "keystone",
            reason: format!("{reason} (endpoint {})", self.url()),
            log_tail: self.log_tail(),
        }
    }

    fn port_was_busy(&self) -> bool {
        self.log_tail().contains("Connection in use")
    }

    /// `GET /v3` over a bare HTTP/1.0 connection; keystone answers with its version document.
    fn answers(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let timeout = Some(Duration::from_secs(5));
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            return false;
        }
        if stream
            .write_all(b"GET /v3 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        if stream.read_to_string(&mut response).is_err() {
            return false;
        }
        let status_ok = response
            .lines()
            .next()
            .is_some_and(|status| status.starts_with("HTTP/1.") && status.contains(" 200 "));
        status_ok && response.contains("\"id\": \"v3.")
    }
}

impl Drop for KeystoneServer {
    fn drop(&mut self) {
        // Stopped before the TempDir field is dropped, so keystone never writes into a removed
        // dir. A plain SIGKILL of the master would leave its worker running for a while.
        if self.stop().is_err() {
            self.process = None;
        }
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), TestkitError> {
    std::fs::write(path, contents)
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
}

/// `bytes` random bytes from the kernel, hex-encoded (the workspace has no rand dependency
/// in the testkit and needs none for one password).
fn random_hex(bytes: usize) -> Result<String, TestkitError> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut buf))
        .map_err(|e| TestkitError::io("reading /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// POSTs a password authentication for the admin and returns the raw HTTP response.
    fn admin_token_response(server: &KeystoneServer) -> String {
        let body = format!(
            r#"{{"auth":{{"identity":{{"methods":["password"],"password":{{"user":{{"name":"admin","domain":{{"id":"default"}},"password":"{}"}}}}}},"scope":{{"project":{{"name":"admin","domain":{{"id":"default"}}}}}}}}}}"#,
            server.admin_password()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST /v3/auth/tokens HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn keystone_issues_an_admin_token_survives_a_restart_and_stops_cleanly() {
        if !KeystoneServer::installed_for("keystone_issues_an_admin_token") {
            return;
        }
        let mut server = KeystoneServer::start().unwrap();
        let _ = writeln!(
            std::io::stderr(),
            "keystone started in {:?}",
            server.startup_time()
        );
        let response = admin_token_response(&server);
        assert!(response.starts_with("HTTP/1.0 201"), "{response}");
        assert!(response.contains("X-Subject-Token: gAAAA"), "{response}");
        assert!(
            response.contains(&server.url()),
            "catalog names the endpoint: {response}"
        );

        server.stop().unwrap();
        assert!(server.pid().is_none());
        assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err());
        server.start_again().unwrap();
        assert!(admin_token_response(&server).starts_with("HTTP/1.0 201"));

        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!dir.exists());
    }
}
