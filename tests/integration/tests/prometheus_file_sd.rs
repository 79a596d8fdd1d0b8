//! Prometheus finds every agent through the controller's file_sd output, with no hand-kept
//! list: a real etcd, the `yun-controller` binary with `--prometheus-sd-file`, real `yun-agent`
//! processes (libvirt's built-in `test:///default` driver, so no libvirtd and no guests), each
//! serving /metrics on its own loopback address, and a real Prometheus scraping job `yun-agent`
//! from the generated file.
//!
//! - every agent's target is up, with its host/zone/rack/power_domain labels;
//! - a stopped agent's target goes down but stays listed (its lease expires: NotReady), also
//!   across a controller restart, so the agent-down alert can fire;
//! - an agent that joins later is scraped without touching Prometheus' configuration.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use yun_integration::random_suffix;
use yun_testkit::{ChildGuard, EtcdServer, PrometheusServer, binary, wait_until};

const TIMEOUT: Duration = Duration::from_secs(60);
const LEASE_TTL_SECS: u64 = 3;

const PROMETHEUS_CONFIG: &str = "global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: yun-agent
    file_sd_configs:
      - files: [agents.json]
        refresh_interval: 1s
";

/// One agent: its host name, loopback metrics address and failure domains.
struct Agent {
    host: String,
    metrics: SocketAddr,
    zone: &'static str,
    rack: &'static str,
    process: Option<ChildGuard>,
}

struct World {
    work: TempDir,
    etcd: EtcdServer,
    prometheus: PrometheusServer,
    controller: Option<ChildGuard>,
    sd_file: PathBuf,
}

/// A port free on `ip` a moment ago.
fn free_port_on(ip: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A private copy of a workspace binary (parallel builds may replace the one in target/).
fn copy_binary(name: &str, dir: &Path) -> PathBuf {
    let mut source = None;
    wait_until(&format!("binary {name} built"), TIMEOUT, || {
        source = binary(name).ok();
        source.is_some()
    })
    .unwrap_or_else(|e| panic!("{e} (cargo build -p yun-controller -p yun-agent)"));
    let target = dir.join(name);
    std::fs::copy(source.expect("checked above"), &target).expect("copy binary");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    target
}

fn log_file(path: &Path) -> (File, File) {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    let clone = file.try_clone().expect("clone log handle");
    (file, clone)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl World {
    fn start() -> World {
        let work = tempfile::Builder::new()
            .prefix("yun-it-file-sd-")
            .tempdir()
            .expect("tempdir");
        copy_binary("yun-controller", work.path());
        copy_binary("yun-agent", work.path());
        std::fs::create_dir(work.path().join("manifests")).expect("manifests dir");
        let etcd = EtcdServer::start().expect("etcd");
        let prometheus = PrometheusServer::start(PROMETHEUS_CONFIG).expect("prometheus");
        let sd_file = prometheus.dir().join("agents.json");
        let mut world = World {
            work,
            etcd,
            prometheus,
            controller: None,
            sd_file,
        };
        world.start_controller();
        world
    }

    fn start_controller(&mut self) {
        let dir = self.work.path();
        let (out, err) = log_file(&dir.join("controller.log"));
        let mut cmd = Command::new(dir.join("yun-controller"));
        cmd.arg("run")
            .args(["--etcd-endpoints", &self.etcd.endpoint()])
            .arg("--manifests")
            .arg(dir.join("manifests"))
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", free_port_on(Ipv4Addr::LOCALHOST)),
            ])
            .arg("--audit-log")
            .arg(dir.join("controller-audit.log"))
            .arg("--devices-dir")
            .arg(dir.join("devices"))
            .arg("--prometheus-sd-file")
            .arg(&self.sd_file)
            .args(["--prometheus-sd-interval-secs", "0.2"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.controller = Some(ChildGuard::spawn(&mut cmd).expect("spawn controller"));
    }

    fn agent(&self, n: u8, zone: &'static str, rack: &'static str) -> Agent {
        let ip = Ipv4Addr::new(127, 0, 0, 10 + n);
        Agent {
            host: format!("sd-{n}-{}", random_suffix()),
            metrics: SocketAddr::from((ip, free_port_on(ip))),
            zone,
            rack,
            process: None,
        }
    }

    fn start_agent(&self, agent: &mut Agent) {
        let dir = self.work.path().join(&agent.host);
        std::fs::create_dir_all(&dir).expect("agent dir");
        // The metrics address is loopback, which the agent never publishes on its own (a
        // remote Prometheus would scrape itself): the bare IP form takes the listen port.
        let config = format!(
            "host_name = \"{host}\"\netcd_endpoints = [\"{etcd}\"]\nstate_dir = \"{state}\"\n\
             libvirt_uri = \"test:///default\"\nvirt_type = \"qemu\"\n\
             metrics_listen = \"{metrics}\"\nmetrics_advertise = \"{ip}\"\n\
             lease_ttl_secs = {LEASE_TTL_SECS}\n\
             [labels]\n\"topology.yun.dev/zone\" = \"{zone}\"\n\"topology.yun.dev/rack\" = \"{rack}\"\n\
             \"topology.yun.dev/power\" = \"pdu-{rack}\"\n\
             [network]\nenabled = false\n",
            host = agent.host,
            etcd = self.etcd.endpoint(),
            state = dir.join("state").display(),
            metrics = agent.metrics,
            ip = agent.metrics.ip(),
            zone = agent.zone,
            rack = agent.rack,
        );
        std::fs::write(dir.join("agent.toml"), config).expect("agent.toml");
        let (out, err) = log_file(&dir.join("agent.log"));
        let mut cmd = Command::new(self.work.path().join("yun-agent"));
        cmd.arg("--config")
            .arg(dir.join("agent.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        agent.process = Some(ChildGuard::spawn(&mut cmd).expect("spawn agent"));
    }

    fn logs(&self) -> String {
        let mut text = format!(
            "--- controller ---\n{}\n--- prometheus ---\n{}\n--- {} ---\n{}",
            tail(&self.work.path().join("controller.log")),
            self.prometheus.log_tail(),
            self.sd_file.display(),
            std::fs::read_to_string(&self.sd_file).unwrap_or_default(),
        );
        if let Ok(entries) = std::fs::read_dir(self.work.path()) {
            for e in entries.flatten() {
                let log = e.path().join("agent.log");
                if log.is_file() {
                    text.push_str(&format!("\n--- {} ---\n{}", log.display(), tail(&log)));
                }
            }
        }
        text
    }

    /// `up` of `agent`'s target as Prometheus last scraped it, with its labels checked.
    fn up(&self, agent: &Agent) -> Option<f64> {
        let query = format!(
            r#"up{{job="yun-agent",host="{}",zone="{}",rack="{}",power_domain="pdu-{}",instance="{}"}}"#,
            agent.host, agent.zone, agent.rack, agent.rack, agent.metrics
        );
        let result = self.prometheus.query(&query).ok()?;
        let sample = result.first()?;
        sample.pointer("/value/1")?.as_str()?.parse().ok()
    }

    fn wait_up(&self, agent: &Agent, value: f64, what: &str) {
        wait_until(what, TIMEOUT, || self.up(agent) == Some(value))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// The hosts Prometheus currently has as `yun-agent` targets, with their health.
    fn targets(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .prometheus
            .active_targets()
            .expect("targets")
            .iter()
            .filter(|t| t.pointer("/labels/job") == Some(&Value::from("yun-agent")))
            .map(|t| {
                let host = t.pointer("/labels/host").and_then(Value::as_str);
                let health = t.get("health").and_then(Value::as_str);
                (
                    host.unwrap_or_default().to_owned(),
                    health.unwrap_or_default().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn file_lists(&self, agent: &Agent) -> bool {
        std::fs::read_to_string(&self.sd_file)
            .is_ok_and(|t| t.contains(&format!("\"host\":\"{}\"", agent.host)))
    }

    /// Whether `agent`'s `info` record (its lease) is on the bus.
    fn registered(&self, agent: &Agent) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let bus = yun_fleet_etcd::FleetBus::connect(
                &[self.etcd.endpoint()],
                Duration::from_secs(5),
                None,
            )
            .await
            .expect("connect to etcd");
            bus.host_info(&agent.host)
                .await
                .expect("read host info")
                .is_some()
        })
    }
}

#[test]
fn prometheus_discovers_agents_from_the_controllers_file_sd_output() {
    let mut world = World::start();
    let mut a = world.agent(1, "z-a", "r1");
    let mut b = world.agent(2, "z-b", "r2");
    world.start_agent(&mut a);
    world.start_agent(&mut b);

    // Both discovered and scraped, labelled with their failure domains.
    world.wait_up(&a, 1.0, "agent a's target up");
    world.wait_up(&b, 1.0, "agent b's target up");
    assert_eq!(
        world.targets(),
        vec![
            (a.host.clone(), "up".to_owned()),
            (b.host.clone(), "up".to_owned())
        ]
    );

    // b stops: its target goes down and stays listed once its lease is gone (NotReady).
    b.process
        .as_mut()
        .expect("b runs")
        .kill_hard()
        .expect("kill b");
    world.wait_up(&b, 0.0, "agent b's target down");
    wait_until(
        "b's lease expired",
        Duration::from_secs(LEASE_TTL_SECS * 4 + 10),
        || !world.registered(&b),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        world.file_lists(&b),
        "NotReady b left the file\n{}",
        world.logs()
    );
    assert_eq!(world.up(&b), Some(0.0), "{}", world.logs());

    // A restarted controller keeps the silent host (it remembers the address from its file).
    world.controller = None;
    world.start_controller();
    let mut c = world.agent(3, "z-a", "r3");
    world.start_agent(&mut c);
    // c joins with Prometheus' configuration untouched.
    world.wait_up(&c, 1.0, "new agent c's target up");
    assert!(
        world.file_lists(&b),
        "restart dropped NotReady b\n{}",
        world.logs()
    );
    assert_eq!(
        world.targets(),
        vec![
            (a.host.clone(), "up".to_owned()),
            (b.host.clone(), "down".to_owned()),
            (c.host.clone(), "up".to_owned()),
        ],
        "{}",
        world.logs()
    );
    assert_eq!(world.up(&a), Some(1.0));
}
