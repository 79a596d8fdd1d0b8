//! A throwaway single-member etcd on loopback, one per test: plain, or secure (TLS, client
//! certificates, authentication on; see [`EtcdServer::start_secure`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use yun_fleet_etcd::BusTls;
use yun_fleet_etcd::roles::{CONTROLLER_USER, ROOT_USER};

use crate::etcd_tls::{TestPki, enable_auth, etcdctl_flags};
use crate::{ChildGuard, TestkitError};

const ETCD_BINARY: &str = "/usr/bin/etcd";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh port pairs tried when another process grabs a port between picking and binding.
const START_ATTEMPTS: usize = 4;
/// How long `start_again` keeps retrying while the old ports are still briefly held.
const RESTART_PORT_RETRY: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 40;

/// A real etcd process with its data in a temp dir. Dropping it kills etcd and removes the dir.
///
/// `start`, `stop` and `start_again` block the calling thread (up to ~20 s); from a tokio test
/// use the multi-thread runtime or `spawn_blocking`.
#[derive(Debug)]
pub struct EtcdServer {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    /// Secure mode: certificates, and a plain-HTTP port for `/health` (the client port wants
    /// a client certificate).
    pki: Option<TestPki>,
    metrics_port: u16,
    process: Option<ChildGuard>,
}

impl EtcdServer {
    /// Starts etcd on two free loopback ports and waits until it reports healthy.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(false)
    }

    /// Starts etcd as production runs it: https only, every client must present a certificate
    /// of the test CA, the root user exists and authentication is on. Users other than root
    /// (controller, hosts) are the test's to provision (`yun_fleet_etcd::roles`).
    pub fn start_secure() -> Result<Self, TestkitError> {
        let server = Self::start_with(true)?;
        enable_auth(&server.endpoint(), &server.root_tls()?)?;
        Ok(server)
    }

    /// Like [`EtcdServer::start_secure`] but with authentication still off (any certificate
    /// of the CA may do anything), for testing the provisioning itself.
    pub fn start_tls_only() -> Result<Self, TestkitError> {
        Self::start_with(true)
    }

    fn start_with(secure: bool) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("yun-testkit-etcd-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating etcd temp dir", e))?;
        let pki = if secure {
            Some(TestPki::create(dir.path().join("pki"))?)
        } else {
            None
        };
        let mut server = Self {
            dir,
            client_port: 0,
            peer_port: 0,
            pki,
            metrics_port: 0,
            process: None,
        };
        let mut attempt = 1;
        loop {
            (server.client_port, server.peer_port, server.metrics_port) = free_ports()?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(_) if attempt < START_ATTEMPTS && server.port_was_busy() => {
                    // The failed member may have written its identity for the old ports.
                    server.remove_data_dir()?;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Client URL, e.g. `http://127.0.0.1:40123` (`https://` in secure mode).
    pub fn endpoint(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// A client certificate (issued by this etcd's CA) whose CN, and so etcd user, is `cn`.
    /// Secure mode only.
    pub fn tls_for(&self, cn: &str) -> Result<BusTls, TestkitError> {
        match &self.pki {
            Some(pki) => pki.client(cn),
            None => Err(TestkitError::BadRequest(
                "tls_for: this etcd was started without TLS (use start_secure)".into(),
            )),
        }
    }

    /// etcd's root user: may provision users and roles.
    pub fn root_tls(&self) -> Result<BusTls, TestkitError> {
        self.tls_for(ROOT_USER)
    }

    /// The controller's certificate (its user must be provisioned before it can do anything).
    pub fn controller_tls(&self) -> Result<BusTls, TestkitError> {
        self.tls_for(CONTROLLER_USER)
    }

    /// Where the CA, etcd's certificate and the client certificates are (secure mode).
    pub fn pki_dir(&self) -> Option<&Path> {
        self.pki.as_ref().map(TestPki::dir)
    }

    /// `etcdctl` flags for this etcd: endpoint, plus root's certificate in secure mode.
    pub fn etcdctl_flags(&self) -> Result<Vec<String>, TestkitError> {
        match &self.pki {
            Some(_) => Ok(etcdctl_flags(&self.endpoint(), &self.root_tls()?)),
            None => Ok(vec![format!("--endpoints={}", self.endpoint())]),
        }
    }

    /// Pid of the running etcd, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// The temp dir holding the data dir and the log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The last lines etcd logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let Ok(log) = std::fs::read_to_string(self.log_path()) else {
            return String::new();
        };
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Stops etcd (SIGTERM, SIGKILL after a grace period) to simulate an outage. Data stays.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        if let Some(mut process) = self.process.take() {
            process.terminate()?;
        }
        Ok(())
    }

    /// Starts etcd again on the same ports with the same data, after [`EtcdServer::stop`].
    pub fn start_again(&mut self) -> Result<(), TestkitError> {
        self.stop()?;
        let deadline = Instant::now() + RESTART_PORT_RETRY;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline && self.port_was_busy() => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        let log = File::create(self.log_path())
            .map_err(|e| TestkitError::io("creating etcd log file", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating etcd log handle", e))?;
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(ETCD_BINARY);
        command
            .arg("--name")
            .arg("t")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .arg("--initial-cluster")
            .arg(format!("t={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(pki) = &self.pki {
            command
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(pki.ca())
                .arg("--cert-file")
                .arg(pki.server_cert())
                .arg("--key-file")
                .arg(pki.server_key())
                .arg("--listen-metrics-urls")
                .arg(format!("http://127.0.0.1:{}", self.metrics_port));
        }
        // Settings from the developer's environment (ETCD_*) would override the flags above.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let mut process = ChildGuard::spawn(&mut command)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(self.start_error(format!("etcd exited with {status}")));
            }
            if self.is_healthy() {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                drop(process);
                return Err(self.start_error(format!("not healthy within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_error(&self, reason: String) -> TestkitError {
        TestkitError::EtcdStart {
            reason: format!("{reason} (endpoint {})", self.endpoint()),
            log_tail: self.log_tail(),
        }
    }

    fn port_was_busy(&self) -> bool {
        self.log_tail().contains("address already in use")
    }

    /// `GET /health` over a bare HTTP/1.0 connection; etcd answers `{"health":"true"}`.
    fn is_healthy(&self) -> bool {
        let port = match self.pki {
            Some(_) => self.metrics_port,
            None => self.client_port,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let timeout = Some(Duration::from_secs(2));
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            return false;
        }
        if stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        // HTTP/1.0: the server closes the connection after the body.
        if stream.read_to_string(&mut response).is_err() {
            return false;
        }
        response.starts_with("HTTP/1.") && response.contains("\"health\":\"true\"")
    }

    fn remove_data_dir(&self) -> Result<(), TestkitError> {
        match std::fs::remove_dir_all(self.data_dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(TestkitError::io("removing etcd data dir", e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Kill before the TempDir field is dropped, so etcd never writes into a removed dir.
        self.process = None;
    }
}

/// Three distinct free loopback ports (client, peer, metrics). The listeners are held at once
/// so the kernel cannot hand out the same port twice; they are released just before etcd binds
/// them.
fn free_ports() -> Result<(u16, u16, u16), TestkitError> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| Ok((l.local_addr()?.port(), l)))
            .map_err(|e| TestkitError::io("binding a free loopback port", e))
    };
    let (client, _client_listener) = bind()?;
    let (peer, _peer_listener) = bind()?;
    let (metrics, _metrics_listener) = bind()?;
    Ok((client, peer, metrics))
}
