//! Drives a `yun-fleetsim` child process over its stdin/stdout line protocol.

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct Sim {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub hosts: usize,
}

pub fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

impl Sim {
    /// Starts `hosts` simulated agents and waits for their `ready` line.
    pub async fn start(
        bin: &Path,
        endpoint: &str,
        hosts: usize,
        lease_ttl_secs: u64,
        timeout: Duration,
    ) -> anyhow::Result<Sim> {
        Sim::start_named(bin, endpoint, hosts, lease_ttl_secs, "sim", timeout).await
    }

    pub async fn start_named(
        bin: &Path,
        endpoint: &str,
        hosts: usize,
        lease_ttl_secs: u64,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Sim> {
        let mut child = Command::new(bin)
            .args(["--prefix", prefix])
            .args([
                "--cpus",
                "64",
                "--memory-mib",
                "262144",
                "--disk-gib",
                "4000",
            ])
            .args(["--etcd", endpoint])
            .args(["--hosts", &hosts.to_string()])
            .args(["--lease-ttl-secs", &lease_ttl_secs.to_string()])
            .args(["--boot-delay-ms", "0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take().context("fleetsim stdin")?;
        let stdout = child.stdout.take().context("fleetsim stdout")?;
        let mut sim = Sim {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            hosts,
        };
        let ready = tokio::time::timeout(timeout, sim.next_event("ready"))
            .await
            .context("fleetsim did not become ready in time")??;
        let registered = ready["hosts"].as_u64().unwrap_or(0) as usize;
        if registered != hosts {
            bail!("fleetsim registered {registered} of {hosts} hosts");
        }
        Ok(sim)
    }

    async fn next_event(&mut self, event: &str) -> anyhow::Result<Value> {
        while let Some(line) = self.lines.next_line().await? {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] == event {
                return Ok(v);
            }
        }
        bail!("fleetsim exited before sending {event:?}")
    }

    pub async fn command(&mut self, cmd: &str, answer: &str) -> anyhow::Result<Value> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        tokio::time::timeout(Duration::from_secs(120), self.next_event(answer))
            .await
            .with_context(|| format!("fleetsim did not answer {cmd:?}"))?
    }

    /// Kills `n` hosts; returns (host, kill time in unix ms).
    pub async fn kill(&mut self, n: usize) -> anyhow::Result<Vec<(String, f64)>> {
        let v = self.command(&format!("kill {n}"), "killed").await?;
        Ok(v["hosts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| {
                        Some((h["host"].as_str()?.to_owned(), h["at_unix_ms"].as_f64()?))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn quit(mut self) -> anyhow::Result<()> {
        let _ = self.stdin.write_all(b"quit\n").await;
        drop(self.stdin);
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = self.child.kill().await;
                Ok(())
            }
        }
    }
}

/// Resident set size of a process in bytes (`/proc/<pid>/status` VmRSS).
pub fn rss_bytes(pid: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sum of etcd's committed raft proposals (every write: put, delete, txn, lease grant/revoke).
pub async fn etcd_writes(endpoint: &str) -> anyhow::Result<f64> {
    etcd_metric(endpoint, "etcd_server_proposals_committed_total").await
}

/// One unlabelled sample from etcd's `/metrics`.
pub async fn etcd_metric(endpoint: &str, name: &str) -> anyhow::Result<f64> {
    let url = format!("{endpoint}/metrics");
    let prefix = format!("{name} ");
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let out = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .context("curl")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await??;
    body.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("{name} missing from etcd /metrics"))
}
