//! A throwaway Prometheus on loopback (Debian's `prometheus` package), one per test: the test
//! hands it a configuration (scrape jobs, `file_sd_configs`, rule files) and queries it over the
//! HTTP API, as an SRE's Prometheus would see Yun.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{ChildGuard, TestkitError};

const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 40;

/// A real Prometheus process with its TSDB in a temp dir. Dropping it kills Prometheus and
/// removes the dir. Methods block the calling thread; from a tokio test use the multi-thread
/// runtime or `spawn_blocking`.
#[derive(Debug)]
pub struct PrometheusServer {
    dir: TempDir,
    port: u16,
    process: Option<ChildGuard>,
}

impl PrometheusServer {
    /// Writes `config_yaml` as `prometheus.yml` in a fresh temp dir and starts Prometheus on a
    /// free loopback port, waiting until `/-/ready` answers 200. Relative paths in the config
    /// (rule files, `file_sd_configs` files) resolve against [`PrometheusServer::dir`], so a
    /// test can write them there before or after starting.
    pub fn start(config_yaml: &str) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("yun-testkit-prometheus-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating prometheus temp dir", e))?;
        Self::start_in(dir, config_yaml)
    }

    /// Like [`PrometheusServer::start`], but the caller writes files into the dir first
    /// (`prepare` gets its path), e.g. rule files the configuration names.
    pub fn start_with(
        config_yaml: &str,
        prepare: impl FnOnce(&Path) -> Result<(), TestkitError>,
    ) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("yun-testkit-prometheus-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating prometheus temp dir", e))?;
        prepare(dir.path())?;
        Self::start_in(dir, config_yaml)
    }

    fn start_in(dir: TempDir, config_yaml: &str) -> Result<Self, TestkitError> {
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml)
            .map_err(|e| TestkitError::io("writing prometheus.yml", e))?;
        let mut server = Self {
            dir,
            port: free_port()?,
            process: None,
        };
        server.spawn_and_wait(&config)?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temp dir holding `prometheus.yml`, the TSDB and the log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// The last lines Prometheus logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let Ok(log) = std::fs::read_to_string(self.log_path()) else {
            return String::new();
        };
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// An instant query (`/api/v1/query`): the `data.result` array (vector results), or the
    /// error Prometheus gave, e.g. a PromQL parse error.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, TestkitError> {
        let body = self.get_json(&format!("/api/v1/query?query={}", percent_encode(promql)))?;
        match body.pointer("/data/result") {
            Some(Value::Array(items)) => Ok(items.clone()),
            // Scalars and strings come as `[time, "value"]`: one sample.
            Some(other) => Ok(vec![other.clone()]),
            None => Err(TestkitError::BadRequest(format!(
                "query `{promql}`: no data.result in {body}"
            ))),
        }
    }

    /// `/api/v1/targets`: `data.activeTargets`, each with `labels`, `scrapeUrl`, `health`
    /// (`up`, `down`, `unknown`) and `lastError`.
    pub fn active_targets(&self) -> Result<Vec<Value>, TestkitError> {
        let body = self.get_json("/api/v1/targets?state=active")?;
        match body.pointer("/data/activeTargets") {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(TestkitError::BadRequest(format!(
                "targets: no data.activeTargets in {body}"
            ))),
        }
    }

    /// GET `path_and_query` and parse the JSON body; a non-`success` status is an error
    /// carrying Prometheus's `error` text.
    pub fn get_json(&self, path_and_query: &str) -> Result<Value, TestkitError> {
        let (status, body) = http_get(self.port, path_and_query)?;
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            TestkitError::BadRequest(format!(
                "GET {path_and_query}: HTTP {status}, not JSON ({e}): {body}"
            ))
        })?;
        if value.get("status").and_then(Value::as_str) != Some("success") {
            return Err(TestkitError::BadRequest(format!(
                "GET {path_and_query}: HTTP {status}: {}",
                value.get("error").and_then(Value::as_str).unwrap_or(&body)
            )));
        }
        Ok(value)
    }

    fn spawn_and_wait(&mut self, config: &Path) -> Result<(), TestkitError> {
        let log = File::create(self.log_path())
            .map_err(|e| TestkitError::io("creating prometheus log file", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating prometheus log handle", e))?;
        let mut command = Command::new(PROMETHEUS_BINARY);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // The Debian package points these at /usr/share/prometheus; the API needs neither.
            .arg("--web.console.templates=/nonexistent")
            .arg("--web.console.libraries=/nonexistent")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut process = ChildGuard::spawn(&mut command)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait()? {
                return Err(self.start_error(format!("prometheus exited with {status}")));
            }
            if matches!(http_get(self.port, "/-/ready"), Ok((200, _))) {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                drop(process);
                return Err(self.start_error(format!("not ready within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_error(&self, reason: String) -> TestkitError {
        TestkitError::ServerStart {
            server: "prometheus",
            reason: format!("{reason} (listening on {})", self.url()),
            log_tail: self.log_tail(),
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        // Kill before the TempDir field is dropped, so the TSDB is never written into a removed dir.
        self.process = None;
    }
}

fn free_port() -> Result<u16, TestkitError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TestkitError::io("binding a free loopback port", e))
}

/// A bare HTTP/1.0 GET on loopback: (status code, body).
fn http_get(port: u16, path_and_query: &str) -> Result<(u16, String), TestkitError> {
    let context = || format!("GET http://127.0.0.1:{port}{path_and_query}");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| TestkitError::io(context(), e))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| TestkitError::io(context(), e))?;
    let request = format!("GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| TestkitError::io(context(), e))?;
    let mut response = String::new();
    // HTTP/1.0: the server closes the connection after the body.
    stream
        .read_to_string(&mut response)
        .map_err(|e| TestkitError::io(context(), e))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            TestkitError::BadRequest(format!("{}: no HTTP status in {head}", context()))
        })?;
    Ok((status, body.to_string()))
}

/// Query-string encoding of a PromQL expression: everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn promql_is_encoded_for_a_query_string() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{a="b c"}[1m])) > 0"#),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29%20%3E%200"
        );
    }
}
