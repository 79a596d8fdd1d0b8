//! `make bench`: the controller at fleet scale, against a real etcd and `yun-fleetsim` (the real
//! agent fleet-bus code with a fake hypervisor) in a separate process. This process is the
//! controller: its fleet index, placement pipeline and failure detector, and nothing else, so
//! its RSS growth is the controller's.
//!
//! Phases, each printing its figures and merging them into the summary JSON:
//! 1. `--hosts` simulated hosts register; controller RSS growth per host.
//! 2. Heartbeat cost: etcd's committed writes over an idle window, per host per 10 s.
//! 3. End to end: `--rate` creates/s for `--seconds` through the placement pipeline, each timed
//!    from submission to the controller seeing the agent's `Running` (fake boot delay 0).
//!    Controller RSS growth per VM.
//! 4. Controller restart: a new index from a full scan + watch; checks no VM lost, duplicated
//!    or re-placed (etcd's revision does not move).
//! 5. Dead-host detection: 1% of hosts killed, timed to NotReady in the controller.
//!    With `--max-hosts` > `--hosts`, phases 2 and 5 run again at that size (`fleetsim_hosts`).

#[path = "fleet_scale/sim.rs"]
mod sim;
#[path = "fleet_scale/stats.rs"]
mod stats;

use anyhow::{Context, bail, ensure};
use sim::{Sim, etcd_metric, etcd_writes, rss_bytes, unix_ms};
use stats::{Figures, percentile, sorted};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use yun_controller::failure::FailureConfig;
use yun_controller::fleet_index::IndexEvent;
use yun_controller::fleet_ops::{Fleet, PlaceResult, request_for};
use yun_fleet::*;
use yun_fleet_etcd::FleetBus;
use yun_placement::EngineConfig;
use yun_testkit::EtcdServer;

struct Args {
    hosts: usize,
    max_hosts: usize,
    rate: usize,
    seconds: usize,
    lease_ttl: u64,
    idle_secs: u64,
    summary: PathBuf,
    fleetsim: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        hosts: 10_000,
        max_hosts: 10_000,
        rate: 100,
        seconds: 60,
        lease_ttl: 10,
        idle_secs: 20,
        summary: root.join("target/bench/summary.json"),
        fleetsim: root.join("target/release/yun-fleetsim"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().context(format!("{flag} needs a value"));
        match flag.as_str() {
            "--hosts" => a.hosts = val()?.parse()?,
            "--max-hosts" => a.max_hosts = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--lease-ttl" => a.lease_ttl = val()?.parse()?,
            "--idle-secs" => a.idle_secs = val()?.parse()?,
            "--summary" => a.summary = val()?.into(),
            "--fleetsim" => a.fleetsim = val()?.into(),
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn vm(i: usize) -> VmDesired {
    VmDesired {
        v: SCHEMA_VERSION,
        uid: format!("00000000-0000-4000-8000-{i:012}"),
        namespace: "bench".into(),
        name: format!("vm-{i}"),
        generation: 1,
        resources: Resources {
            cpus: 1 + (i % 4) as u32,
            memory_mib: 512 << (i % 3),
            disk_gib: 10,
        },
        image: ImageSpec {
            name: "bench/tiny".into(),
            disk: Artifact {
                source: "file:///nonexistent/disk.qcow2".into(),
                sha256: "a".repeat(64),
            },
            format: DiskFormat::Qcow2,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
        hostname: format!("vm-{i}"),
        user_data: None,
        run_strategy: RunStrategy::Always,
        nics: Vec::new(),
        security_groups: Vec::new(),
        volumes: Vec::new(),
        hold: None,
        identity: None,
    }
}

/// Mixed requests: most plain, some anti-affinity, some spread over racks, some guaranteed.
fn scheduling(i: usize) -> Scheduling {
    let mut s = Scheduling::default();
    match i % 10 {
        0 => s.anti_affinity_group = Some(format!("bench/aa-{}", i % 50)),
        1 => {
            s.spread = Some(SpreadConstraint {
                group: format!("bench/sp-{}", i % 20),
                topology: Topology::Rack,
                max_skew: 1,
            })
        }
        2 => s.qos = Qos::Guaranteed,
        _ => {}
    }
    s
}

fn start_fleet(bus: &FleetBus) -> Fleet {
    Fleet::start_with(
        bus.clone(),
        None,
        EngineConfig::default(),
        FailureConfig::default(),
    )
}

async fn wait_ready_hosts(fleet: &Fleet, want: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ready = fleet.index.lock().ready_hosts();
        if ready >= want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {ready}/{want} hosts ready in the controller"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Phase 2: etcd writes per host per 10 s while the fleet is idle (heartbeats only).
async fn heartbeat(endpoint: &str, hosts: usize, idle: Duration) -> anyhow::Result<f64> {
    let w0 = etcd_writes(endpoint).await?;
    tokio::time::sleep(idle).await;
    let w1 = etcd_writes(endpoint).await?;
    Ok((w1 - w0) / hosts as f64 / (idle.as_secs_f64() / 10.0))
}

/// Phase 5: kill 1% of hosts; seconds from kill to NotReady in the controller, per host.
async fn detect(fleet: &Fleet, sim: &mut Sim, lease_ttl: u64) -> anyhow::Result<Vec<f64>> {
    let mut events = fleet.index.subscribe();
    let killed = sim.kill((sim.hosts / 100).max(1)).await?;
    let mut pending: HashMap<String, f64> = killed.into_iter().collect();
    let n = pending.len();
    let mut out = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(lease_ttl * 4 + 30);
    while !pending.is_empty() {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .with_context(|| {
                format!("{} of {n} killed hosts never went NotReady", pending.len())
            })?;
        if let Ok(IndexEvent::HostLost(h)) = ev
            && let Some(killed_at) = pending.remove(&h)
        {
            out.push((unix_ms(SystemTime::now()) - killed_at) / 1000.0);
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    ensure!(
        a.fleetsim.exists(),
        "{} missing: cargo build --release -p yun-fleetsim",
        a.fleetsim.display()
    );
    let mut fig = Figures::default();
    let etcd = tokio::task::spawn_blocking(EtcdServer::start).await??;
    let endpoint = etcd.endpoint();
    let bus = FleetBus::connect(
        std::slice::from_ref(&endpoint),
        Duration::from_secs(30),
        None,
    )
    .await?;
    let fleet = start_fleet(&bus);
    fleet.index.wait_synced().await;
    let rss0 = rss_bytes("self");

    // 1. hosts
    println!("fleet scale: {} simulated hosts", a.hosts);
    let started = Instant::now();
    let mut sim = Sim::start(
        &a.fleetsim,
        &endpoint,
        a.hosts,
        a.lease_ttl,
        Duration::from_secs(900),
    )
    .await?;
    wait_ready_hosts(&fleet, a.hosts, Duration::from_secs(120)).await?;
    fig.add("fleetsim_register_s", started.elapsed().as_secs_f64());
    let rss_hosts = rss_bytes("self");
    fig.add(
        "controller_bytes_per_host",
        rss_hosts.saturating_sub(rss0) as f64 / a.hosts as f64,
    );

    // 2. heartbeats at this size
    let idle = Duration::from_secs(a.idle_secs);
    let hb = heartbeat(&endpoint, a.hosts, idle).await?;

    // 3. create → running
    let total = a.rate * a.seconds;
    let collector = tokio::spawn(collect_running(fleet.index.subscribe(), total));
    let submitted = e2e_submit(&fleet, a.rate, total).await?;
    let running = collector.await??;
    let lat = sorted(
        running
            .iter()
            .filter_map(|(u, t)| Some(t.duration_since(*submitted.get(u)?).as_secs_f64() * 1000.0))
            .collect(),
    );
    fig.add("e2e_create_to_running_p50_ms_10k", percentile(&lat, 50.0));
    fig.add("e2e_create_to_running_p99_ms_10k", percentile(&lat, 99.0));
    fig.add("e2e_vms", total as f64);
    let rss_vms = rss_bytes("self");
    fig.add(
        "controller_bytes_per_vm",
        rss_vms.saturating_sub(rss_hosts) as f64 / total as f64,
    );

    // 4. controller restart: a new index from scratch, nothing written meanwhile
    let placements_before: BTreeMap<String, String> = {
        let idx = fleet.index.lock();
        submitted
            .keys()
            .filter_map(|u| Some((u.clone(), idx.engine().host_of(u)?.to_owned())))
            .collect()
    };
    ensure!(
        placements_before.len() == total,
        "placements missing before restart"
    );
    let rev_before = bus
        .client()
        .get("/", None)
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or_default();
    drop(fleet);
    let started = Instant::now();
    let fleet = start_fleet(&bus);
    fleet.index.wait_synced().await;
    let resync = started.elapsed().as_secs_f64();
    {
        let idx = fleet.index.lock();
        ensure!(
            idx.vm_count() == total,
            "after restart the index holds {} VMs, want {total}",
            idx.vm_count()
        );
        for (uid, host) in &placements_before {
            ensure!(
                idx.engine().host_of(uid) == Some(host.as_str()),
                "VM {uid} moved or vanished across the restart"
            );
        }
        ensure!(idx.host_count() >= a.hosts, "hosts missing after restart");
    }
    let rev_after = bus
        .client()
        .get("/", None)
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or_default();
    ensure!(
        rev_after == rev_before,
        "etcd was written during the resync (revision {rev_before} -> {rev_after})"
    );
    fig.add("resync_s", resync);
    fig.add("resync_s_per_10k_hosts", resync * 10_000.0 / a.hosts as f64);
    fig.add("resync_vms_lost_or_duplicated", 0.0);

    // 5. dead hosts (at this size)
    let det = sorted(detect(&fleet, &mut sim, a.lease_ttl).await?);
    let (mut hb_hosts, mut hb_final, mut det_final) = (a.hosts, hb, det);
    sim.quit().await?;
    drop(fleet);

    if a.max_hosts > a.hosts {
        println!(
            "fleet scale: {} simulated hosts (heartbeat + detection)",
            a.max_hosts
        );
        let fleet = start_fleet(&bus);
        fleet.index.wait_synced().await;
        let known = fleet.index.lock().ready_hosts();
        let started = Instant::now();
        let mut big = Sim::start_named(
            &a.fleetsim,
            &endpoint,
            a.max_hosts,
            a.lease_ttl,
            "big",
            Duration::from_secs(1200),
        )
        .await?;
        wait_ready_hosts(&fleet, known + a.max_hosts, Duration::from_secs(300)).await?;
        fig.add("fleetsim_register_s_max", started.elapsed().as_secs_f64());
        hb_final = heartbeat(&endpoint, a.max_hosts, idle).await?;
        if let Some(pid) = etcd.pid() {
            fig.add(
                "etcd_rss_mib_max_hosts",
                rss_bytes(&pid.to_string()) as f64 / 1048576.0,
            );
        }
        fig.add(
            "etcd_db_mib_max_hosts",
            etcd_metric(&endpoint, "etcd_mvcc_db_total_size_in_bytes").await? / 1048576.0,
        );
        det_final = sorted(detect(&fleet, &mut big, a.lease_ttl).await?);
        hb_hosts = a.max_hosts;
        big.quit().await?;
    }
    fig.add("fleetsim_hosts", hb_hosts as f64);
    fig.add("heartbeat_etcd_writes_per_host_per_10s", hb_final);
    fig.add("dead_host_detect_p50_s", percentile(&det_final, 50.0));
    fig.add("dead_host_detect_p99_s", percentile(&det_final, 99.0));
    fig.add("lease_ttl_s", a.lease_ttl as f64);
    fig.merge_into(&a.summary)?;
    drop(etcd);
    Ok(())
}

/// Submits `total` creates at `rate`/s; returns each VM's submission instant. Finished
/// placements are collected as they complete (not held until the end), so the harness's own
/// memory does not count as the controller's RSS growth per VM.
async fn e2e_submit(
    fleet: &Fleet,
    rate: usize,
    total: usize,
) -> anyhow::Result<HashMap<String, Instant>> {
    let t0 = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = HashMap::with_capacity(total);
    let mut collect =
        |done: Result<(String, Instant, _), tokio::task::JoinError>| -> anyhow::Result<()> {
            let (uid, at, r) = done?;
            match r? {
                PlaceResult::Placed { .. } => {
                    out.insert(uid, at);
                    Ok(())
                }
                PlaceResult::NoFit(n) => bail!("VM {uid} did not fit: {n}"),
            }
        };
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => break,
                Some(done) = tasks.join_next() => collect(done)?,
            }
        }
        let fleet = fleet.clone();
        tasks.spawn(async move {
            let desired = vm(i);
            let request = request_for(&desired, &BTreeMap::new(), scheduling(i));
            let at = Instant::now();
            let r = fleet.place(&desired, request).await;
            (desired.uid, at, r)
        });
    }
    while let Some(done) = tasks.join_next().await {
        collect(done)?;
    }
    Ok(out)
}

/// Records when the controller sees each VM Running, until `total` have.
async fn collect_running(
    mut events: tokio::sync::broadcast::Receiver<IndexEvent>,
    total: usize,
) -> anyhow::Result<HashMap<String, Instant>> {
    let mut running = HashMap::with_capacity(total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while running.len() < total {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(IndexEvent::Observed {
                uid,
                phase: VmPhase::Running,
            })) => {
                running.entry(uid).or_insert_with(Instant::now);
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                bail!("event collector lagged by {n} events")
            }
            Ok(_) => {}
            Err(_) => bail!("only {}/{total} VMs reported Running", running.len()),
        }
    }
    Ok(running)
}
