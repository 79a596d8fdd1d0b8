//! `make bench`: volume attach latency on a running guest, per driver, through the agent's own
//! code path, next to the naive baseline measured in the same run. Prints a table and merges
//! the numbers into `target/bench/summary.json` (a flat object of numbers).
//!
//! One TCG guest of the test template runs on qemu:///system; a real etcd holds the fleet bus,
//! tgtd serves an iSCSI LUN behind CHAP and nfs-ganesha an export of qcow2 files. Per driver
//! (local, iscsi, nfs), `YUN_BENCH_VOLUME_ROUNDS` rounds (default 20) each:
//! - publish a desired record listing a new volume and time `VmVolumes::sync` from the call
//!   until it returns with the attachment recorded `Attached` (libvirt accepted the hot plug
//!   into the live description): `volume_attach_{p50,p99,mean,max}_ms_<driver>`;
//! - wait for the guest to report the disk on its console (`volume_attach_guest_seen_*`, from
//!   the same start; includes the template's 0.5 s disk poll);
//! - remove the volume from the desired record and time the sync that detaches it (the guest
//!   must let go: ACPI PCI hotplug): `volume_detach_*_ms_<driver>`;
//! - for local and nfs, interleaved, the naive baseline: the same disk XML handed to
//!   `virsh attach-device --live --config` (local: after `qemu-img create`),
//!   `volume_attach_*_ms_<driver>_virsh_baseline`.
//!
//! Environment: `YUN_BENCH_TEMPLATE`, `YUN_BENCH_STATE_DIR`, `YUN_BENCH_SUMMARY` and
//! `YUN_BENCH_QEMU` (`required`, `skip` or unset: run when qemu:///system, tgtd and ganesha are
//! there) as for agent_start; `YUN_BENCH_VOLUME_ROUNDS`; `YUN_BENCH_DETACH_TIMEOUT_S` (how long
//! one detach pass waits for the guest, default 60). Like agent_start it does not take the
//! libvirt lock shared with the integration tests: scripts/bench.sh holds it.

#[path = "volume_attach/backends.rs"]
mod backends;
#[path = "agent_start/fixture.rs"]
mod fixture;
#[path = "volume_attach/lab.rs"]
mod lab;
#[path = "volume_attach/rounds.rs"]
mod rounds;
#[path = "agent_start/summary.rs"]
mod summary;

use anyhow::{Context, bail};
use backends::{Backends, Driver, volume_uid};
use fixture::{Stats, Template, stats};
use lab::{Guest, RunDir, Secrets, UID_PREFIX};
use rounds::{AgentVolumes, NaiveSource, virsh_attach};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use summary::Results;
use yun_agent::hypervisor::Hypervisor;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::storage::disk_xml::serial_for;
use yun_agent::storage::driver::HostVolumes;
use yun_fleet::VolumeRecord;
use yun_fleet_etcd::FleetBus;
use yun_testkit::EtcdServer;

const QEMU_URI: &str = "qemu:///system";
/// The host the agent under test records its attachments for.
const HOST: &str = "bench-va-host";
const GUEST_MEMORY_MIB: u64 = 256;
/// One TCG guest booting on a busy 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// From a hot plug to the guest's disk watcher reporting it.
const GUEST_DISK_TIMEOUT: Duration = Duration::from_secs(60);
const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The targets for the attach p99, in ms.
fn target_ms(driver: Driver) -> f64 {
    match driver {
        Driver::Local => 1000.0,
        Driver::Iscsi | Driver::Nfs => 2000.0,
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_path(name: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

/// What the run needs from the machine; the reason it cannot run here.
fn preconditions() -> anyhow::Result<()> {
    let mut missing = Backends::missing_programs();
    if !Path::new("/usr/bin/etcd").exists() {
        missing.push("/usr/bin/etcd");
    }
    if !missing.is_empty() {
        bail!("missing {missing:?} (install tgt, nfs-ganesha-vfs, rpcbind, etcd-server)");
    }
    yun_testkit::require_libvirt_system()?;
    Ok(())
}

/// The volumes of one driver's rounds: the agent's and, where there is one, the baseline's.
struct Series {
    driver: Driver,
    agent: Vec<VolumeRecord>,
    /// Volume uid and source of each baseline round.
    baseline: Vec<(String, NaiveSource)>,
}

fn series(backends: &Backends, naive_dir: &Path, n: usize) -> anyhow::Result<Vec<Series>> {
    Driver::ALL
        .into_iter()
        .map(|driver| {
            let mut agent = Vec::with_capacity(n);
            let mut baseline = Vec::new();
            for round in 0..n {
                let uid = volume_uid(driver, false, round);
                let naive_uid = volume_uid(driver, true, round);
                if driver == Driver::Nfs {
                    backends.create_nfs_file(&uid)?;
                    backends.create_nfs_file(&naive_uid)?;
                }
                agent.push(backends.record(driver, uid)?);
                match driver {
                    Driver::Local => {
                        let path = naive_dir.join(format!("{naive_uid}.qcow2"));
                        baseline.push((naive_uid, NaiveSource::CreateLocal(path)));
                    }
                    Driver::Nfs => {
                        let record = backends.record(driver, naive_uid.clone())?;
                        baseline.push((naive_uid, NaiveSource::Described(record)));
                    }
                    Driver::Iscsi => {}
                }
            }
            Ok(Series {
                driver,
                agent,
                baseline,
            })
        })
        .collect()
}

fn print_stats(what: &str, s: Stats) {
    println!(
        "{what}: p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms, max {:.1} ms",
        s.p50, s.p99, s.mean, s.max
    );
}

fn run(template: &Template, n: usize, out: &mut Results) -> anyhow::Result<()> {
    let started = Instant::now();
    let detach_timeout = Duration::from_secs(env_number("YUN_BENCH_DETACH_TIMEOUT_S", 60)?);
    // Guards drop in reverse order: the guest first, then the secrets, the storage servers,
    // etcd and last the files.
    let run_dir = RunDir::create(&env_path(
        "YUN_BENCH_STATE_DIR",
        PathBuf::from("/var/lib/yun-bench"),
    ))?;
    let naive_dir = run_dir.0.join("naive");
    std::fs::create_dir_all(&naive_dir)?;
    let hv: Arc<dyn Hypervisor> = Arc::new(LibvirtHypervisor::connect(QEMU_URI)?);
    lab::remove_leftovers(&hv)?;
    let etcd = EtcdServer::start()?;
    let backends = Backends::start()?;
    let all = series(&backends, &naive_dir, n)?;
    let _secrets = Secrets::new(
        &hv,
        Backends::secret_usages(all.iter().flat_map(|s| &s.agent)),
    );
    let vm = template.vm(
        &format!("{UID_PREFIX}{}", std::process::id()),
        GUEST_MEMORY_MIB,
    );
    let (guest, boot) = Guest::boot(&hv, &run_dir.0, template, &vm, BOOT_TIMEOUT)?;
    println!("guest {} booted in {:.1} s", guest.name, boot.as_secs_f64());
    out.add(
        "volume_attach_guest_boot_ms",
        boot.as_secs_f64() * 1000.0,
        "ms",
    );
    out.add("volume_attach_rounds", n as f64, "count");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bus = rt.block_on(FleetBus::connect(
        &[etcd.endpoint()],
        ETCD_REQUEST_TIMEOUT,
        None,
    ))?;
    let driver = Arc::new(HostVolumes::new(run_dir.0.join("volumes")));
    let mut agent = AgentVolumes::new(HOST, bus, hv.clone(), driver, vm, detach_timeout);

    for s in all {
        let name = s.driver.name();
        let (mut attach, mut seen) = (Vec::new(), Vec::new());
        let (mut detach, mut naive) = (Vec::new(), Vec::new());
        let mut extra_passes = 0;
        let mut baseline = s.baseline.into_iter();
        for vol in &s.agent {
            let took = rt
                .block_on(agent.attach(vol))
                .with_context(|| format!("{name}: agent attach"))?;
            attach.push(took);
            // The guest must have the disk before it is taken away again, as a guest using
            // its volume would (and this shows the hot plug reached it).
            let wait = guest
                .wait_disk(&serial_for(&vol.uid), GUEST_DISK_TIMEOUT)
                .with_context(|| format!("{name}: guest"))?;
            seen.push(took + wait);
            let d = rt
                .block_on(agent.detach(vol))
                .with_context(|| format!("{name}: agent detach"))?;
            detach.push(d.took);
            extra_passes += d.passes - 1;
            // Interleaved, so both see the same guest and host load.
            if let Some((uid, source)) = baseline.next() {
                let serial = serial_for(&uid);
                naive.push(
                    virsh_attach(&hv, &guest.name, &naive_dir, serial, source, detach_timeout)
                        .with_context(|| format!("{name}: virsh baseline"))?,
                );
            }
        }
        let (a, d) = (stats(&attach)?, stats(&detach)?);
        let target = target_ms(s.driver);
        print_stats(&format!("{name}: {n} attaches through the agent"), a);
        println!(
            "{name}: attach p99 target <= {target:.0} ms: {}",
            if a.p99 <= target { "met" } else { "MISSED" }
        );
        print_stats(&format!("{name}: {n} detaches through the agent"), d);
        out.add_stats_with_max("volume_attach", &format!("_{name}"), a);
        out.add_stats_with_max("volume_detach", &format!("_{name}"), d);
        out.add_stats_with_max(
            "volume_attach_guest_seen",
            &format!("_{name}"),
            stats(&seen)?,
        );
        out.add(
            format!("volume_detach_extra_passes_{name}"),
            f64::from(extra_passes),
            "count",
        );
        if !naive.is_empty() {
            let b = stats(&naive)?;
            print_stats(
                &format!("{name}: {} attaches by virsh attach-device", naive.len()),
                b,
            );
            out.add_stats_with_max("volume_attach", &format!("_{name}_virsh_baseline"), b);
        }
    }
    drop(guest);
    out.add(
        "volume_attach_bench_runtime_s",
        started.elapsed().as_secs_f64(),
        "s",
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let template = Template::load(&env_path(
        "YUN_BENCH_TEMPLATE",
        workspace_root().join("images/build/yun-test"),
    ))?;
    let n = usize::try_from(env_number("YUN_BENCH_VOLUME_ROUNDS", 20)?)?;
    if n == 0 {
        bail!("YUN_BENCH_VOLUME_ROUNDS must be at least 1");
    }
    let summary = env_path(
        "YUN_BENCH_SUMMARY",
        workspace_root().join("target/bench/summary.json"),
    );
    match std::env::var("YUN_BENCH_QEMU").unwrap_or_default().as_str() {
        "skip" => {
            println!("volume attach: skipped (YUN_BENCH_QEMU=skip)");
            return Ok(());
        }
        "required" => preconditions()?,
        _ => {
            if let Err(e) = preconditions() {
                println!(
                    "volume attach: skipped: {e:#} (set YUN_BENCH_QEMU=required to make this fatal)"
                );
                return Ok(());
            }
        }
    }
    let mut out = Results::default();
    run(&template, n, &mut out)?;
    out.print();
    out.write_summary(&summary)?;
    println!("\nwrote {}", summary.display());
    Ok(())
}
