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

use anyhow::Context;
use fixture::{Stats, Template, stats};
use serde_json::{Map, Value};
use start::{Arrival, Host, Sweep};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
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

/// Rows of the printed table, and the summary keys.
#[derive(Default)]
struct Results {
    rows: Vec<(String, f64, &'static str)>,
}

impl Results {
    fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.rows.push((name.into(), value, unit));
    }

    fn add_stats(&mut self, prefix: &str, suffix: &str, s: Stats) {
        self.add(format!("{prefix}_p50_ms{suffix}"), s.p50, "ms");
        self.add(format!("{prefix}_p99_ms{suffix}"), s.p99, "ms");
        self.add(format!("{prefix}_mean_ms{suffix}"), s.mean, "ms");
    }

    fn print(&self) {
        let width = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(4);
        println!("\n{:<width$}  {:>12}  unit", "name", "value");
        for (name, value, unit) in &self.rows {
            println!("{name:<width$}  {value:>12.3}  {unit}");
        }
    }

    /// Merges into the existing summary (other benchmarks' keys are kept) and writes it atomically.
    fn write_summary(&self, path: &Path) -> anyhow::Result<()> {
        let mut summary = match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    eprintln!(
                        "bench: {} is not a JSON object; replacing it",
                        path.display()
                    );
                    Map::new()
                }
            },
            Err(_) => Map::new(),
        };
        for (name, value, _) in &self.rows {
            let rounded = (value * 1000.0).round() / 1000.0;
            summary.insert(name.clone(), serde_json::json!(rounded));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        Ok(())
    }
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
