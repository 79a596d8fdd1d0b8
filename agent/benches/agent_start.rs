//! `make bench`: start overhead of the agent and per-VM disk creation, each next to the naive
//! design it replaces, measured in the same run. Prints a table and merges the numbers into
//! `target/bench/summary.json` (a flat object of numbers).
//!
//! Environment:
//! - `YUN_BENCH_TEMPLATE`: built test template dir (default `images/build/yun-test`).
//! - `YUN_BENCH_STATE_DIR`: root for the qemu run's files, 0755 so QEMU's user can traverse it
//!   (default `/var/lib/yun-bench`).
//! - `YUN_BENCH_QEMU`: `required` (fail without qemu:///system), `skip`, or unset (run it when
//!   qemu:///system answers).
//! - `YUN_BENCH_VMS`: VMs per run (default 50). `YUN_BENCH_SUMMARY`: summary file path.

#[path = "agent_start/fixture.rs"]
mod fixture;
#[path = "agent_start/overlay.rs"]
mod overlay;
#[path = "agent_start/start.rs"]
mod start;
#[path = "agent_start/summary.rs"]
mod summary;

use anyhow::Context;
use fixture::{Template, stats};
use start::{Arrival, Host, Sweep};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use summary::Results;
use yun_agent::hypervisor::VirtType;
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;

const TEST_URI: &str = "test:///default";
const QEMU_URI: &str = "qemu:///system";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_path(name: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
}

fn bench_overlays(template: &Template, n: usize, out: &mut Results) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ov = stats(&overlay::overlays(&template.disk, dir.path(), n)?)?;
    let copy = stats(&overlay::full_copies(&template.disk, dir.path(), n)?)?;
    println!(
        "overlay: qcow2 overlay p99 {:.2} ms vs full copy p99 {:.2} ms",
        ov.p99, copy.p99
    );
    out.add("overlay_create_p50_ms", ov.p50, "ms");
    out.add("overlay_create_p99_ms", ov.p99, "ms");
    out.add("overlay_create_naive_copy_p50_ms", copy.p50, "ms");
    out.add("overlay_create_naive_copy_p99_ms", copy.p99, "ms");
    let bytes = std::fs::metadata(&template.disk)?.len();
    out.add(
        "overlay_template_disk_mib",
        bytes as f64 / (1024.0 * 1024.0),
        "MiB",
    );
    Ok(())
}

fn bench_test_driver(
    rt: &tokio::runtime::Runtime,
    template: &Template,
    n: usize,
    out: &mut Results,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let host = Host {
        hv: Arc::new(LibvirtHypervisor::connect(TEST_URI)?),
        virt_type: VirtType::Qemu,
        memory_mib: 128,
        state_dir: dir.path().to_path_buf(),
        timeout: Duration::from_secs(120),
    };
    host.warm_cache(template)?;
    let workers = stats(&start::concurrent(
        rt,
        &host,
        template,
        "test",
        n,
        Arrival::Burst,
    )?)?;
    let single = stats(&start::concurrent(
        rt,
        &host,
        template,
        "test-single",
        n,
        Arrival::OneAtATime,
    )?)?;
    println!(
        "test driver: {n} VMs assigned one at a time: p99 {:.1} ms (max {:.1} ms)",
        single.p99, single.max
    );
    println!(
        "test driver: {n} VMs, per-VM workers: p99 {:.1} ms (max {:.1} ms)",
        workers.p99, workers.max
    );
    let serial = stats(&start::serial(&host, template, "test-serial", n)?)?;
    println!(
        "test driver: {n} VMs, serial loop: p99 {:.1} ms",
        serial.p99
    );
    out.add_stats("agent_start_overhead", "_test_driver", workers);
    out.add_stats("agent_start_overhead", "_test_driver_one_at_a_time", single);
    out.add_stats("agent_start_overhead", "_test_driver_serial", serial);
    Ok(())
}

fn bench_qemu(
    rt: &tokio::runtime::Runtime,
    template: &Template,
    n: usize,
    out: &mut Results,
) -> anyhow::Result<()> {
    let root = env_path("YUN_BENCH_STATE_DIR", PathBuf::from("/var/lib/yun-bench"));
    let state_dir = root.join(format!("run-{}", std::process::id()));
    for d in [&root, &state_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        // QEMU runs as libvirt's unprivileged user: it must traverse down to the overlays.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    // Removes the run's files however this function ends (the domains have their own sweeps).
    let _files = RemoveDir(state_dir.clone());
    let host = Host {
        hv: Arc::new(LibvirtHypervisor::connect(QEMU_URI)?),
        virt_type: VirtType::Qemu,
        memory_mib: 128,
        state_dir,
        timeout: Duration::from_secs(240),
    };
    drop(Sweep::leftovers(&host.hv)?);
    let fill = host.warm_cache(template)?;
    out.add("image_cache_fill_ms", fill.as_secs_f64() * 1000.0, "ms");
    let s = stats(&start::concurrent(
        rt,
        &host,
        template,
        "qemu",
        n,
        Arrival::Burst,
    )?)?;
    println!(
        "qemu (TCG): {n} VMs, per-VM workers: p99 {:.1} ms (max {:.1} ms)",
        s.p99, s.max
    );
    out.add_stats("agent_start_overhead", "_qemu", s);
    let single = stats(&start::concurrent(
        rt,
        &host,
        template,
        "qemu-single",
        n,
        Arrival::OneAtATime,
    )?)?;
    println!(
        "qemu (TCG): {n} VMs assigned one at a time: p99 {:.1} ms (max {:.1} ms)",
        single.p99, single.max
    );
    out.add_stats("agent_start_overhead", "_qemu_one_at_a_time", single);
    Ok(())
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> anyhow::Result<()> {
    let template = Template::load(&env_path(
        "YUN_BENCH_TEMPLATE",
        workspace_root().join("images/build/yun-test"),
    ))?;
    let n: usize = match std::env::var("YUN_BENCH_VMS") {
        Ok(v) => v.parse().with_context(|| format!("YUN_BENCH_VMS={v:?}"))?,
        Err(_) => 50,
    };
    let summary = env_path(
        "YUN_BENCH_SUMMARY",
        workspace_root().join("target/bench/summary.json"),
    );
    let qemu_mode = std::env::var("YUN_BENCH_QEMU").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = Results::default();
    out.add("bench_vms", n as f64, "count");

    bench_overlays(&template, n, &mut out)?;
    bench_test_driver(&rt, &template, n, &mut out)?;
    match qemu_mode.as_str() {
        "skip" => println!("qemu: skipped (YUN_BENCH_QEMU=skip)"),
        "required" => bench_qemu(&rt, &template, n, &mut out)?,
        _ => {
            if let Err(e) = bench_qemu(&rt, &template, n, &mut out) {
                println!("qemu: skipped: {e:#} (set YUN_BENCH_QEMU=required to make this fatal)");
            }
        }
    }

    out.print();
    out.write_summary(&summary)?;
    println!("\nwrote {}", summary.display());
    Ok(())
}
