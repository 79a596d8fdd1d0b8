//! `make bench`: the Prometheus file_sd output at fleet scale, against naive baselines measured
//! in the same run.
//!
//! `cargo bench -p yun-controller --bench file_sd -- [--hosts N] [--dir DIR] [--summary PATH]`
//!
//! 1. `file_sd_render_20k_ms`: render the file for N hosts (sorted, one group per line), median
//!    of 20; baseline `file_sd_render_20k_ms_baseline_pretty`: `serde_json::to_string_pretty`
//!    of the groups with hash-map labels in hash-map order. `file_sd_baseline_changed_renders`:
//!    of 10 renders of the same fleet, how many differ from the one before (every one that
//!    differs would be rewritten, and re-read by Prometheus, for nothing); ours is always 0.
//! 2. `file_sd_write_20k_ms`: render + atomic replace (temp file, fsync, rename, directory
//!    fsync), median of 10. `file_sd_bytes_20k`: the file's size.
//! 3. One host changes: `file_sd_one_change_ms` (render and write the one file) vs
//!    `file_sd_one_change_16_shards_ms` (render and write only the shard it falls in), as the
//!    controller's writer does; medians of 10.
//! 4. A join storm: N registrations arriving at 2,000/s (the fleet reconnecting after an etcd
//!    outage), fed to the registry in watch-sized batches every 100 ms of simulated time.
//!    `file_sd_join_20k_busy_ms` / `file_sd_join_20k_writes`: the debounced writer (at most one
//!    write per second); `file_sd_join_2k_busy_ms` vs `file_sd_join_2k_busy_ms_baseline_per_change`:
//!    the first 2,000 registrations, debounced vs one rewrite per change (the full N per change
//!    would take minutes: every rewrite is the whole file).
//!
//! Files go under `target/file-sd-bench` (a real disk: fsync costs what it costs) and are
//! removed afterwards.

use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use yun_benchkit::merge_summary;
use yun_controller::file_sd::{
    SdFiles, SdRegistry, Target, render, render_shard, render_shards, shard_of,
};
use yun_fleet::{HostInfo, SCHEMA_VERSION, encode, keys};

const ARRIVALS_PER_SEC: usize = 2_000;
const BATCH_EVERY: Duration = Duration::from_millis(100);
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const NAIVE_HOSTS: usize = 2_000;

struct Args {
    hosts: usize,
    dir: PathBuf,
    summary: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        hosts: 20_000,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/file-sd-bench"),
        summary: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--hosts" => args.hosts = value()?.parse()?,
            "--dir" => args.dir = value()?.into(),
            "--summary" => args.summary = Some(value()?.into()),
            // cargo bench passes --bench to harness=false targets.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.hosts < NAIVE_HOSTS {
        bail!("--hosts must be at least {NAIVE_HOSTS}");
    }
    Ok(args)
}

/// Host `i`'s registration: 4 zones, 40 hosts a rack, 2 power feeds a rack, and one more label.
fn host_info(i: usize) -> HostInfo {
    let rack = i / 40;
    HostInfo {
        v: SCHEMA_VERSION,
        name: format!("node-{i:05}"),
        cpus: 64,
        memory_mib: 256 * 1024,
        disk_gib: 2000,
        labels: BTreeMap::from([
            ("topology.yun.dev/zone".into(), format!("zone-{}", i % 4)),
            ("topology.yun.dev/rack".into(), format!("rack-{rack:04}")),
            (
                "topology.yun.dev/power".into(),
                format!("pdu-{rack:04}-{}", i % 2),
            ),
            ("hw-class".into(), "gen3".into()),
        ]),
        agent_version: "0.1.0".into(),
        virt_type: "kvm".into(),
        started_at: "2026-11-24T06:00:00Z".into(),
        tunnel_ip: None,
        seal_key: None,
        metrics_address: Some(std::net::SocketAddr::from((
            [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            9464,
        ))),
    }
}

/// (info key, encoded record) of each host, in a scrambled (not name) order.
fn registrations(n: usize) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut order: Vec<usize> = (0..n).collect();
    // Agents reconnect in no particular order: a fixed scramble (by a multiplicative hash).
    order.sort_by_key(|i| i.wrapping_mul(2_654_435_761) % 1_000_003);
    order
        .into_iter()
        .map(|i| {
            let info = host_info(i);
            Ok((keys::host_info(&info.name)?, encode("bench", &info)?))
        })
        .collect()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn time_ms(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64() * 1000.0
}

/// The naive baseline's groups: labels in a hash map, serialized in its iteration order.
#[derive(serde::Serialize)]
struct NaiveGroup {
    targets: Vec<String>,
    labels: HashMap<String, String>,
}

fn naive_render(targets: &[Target]) -> anyhow::Result<String> {
    let by_host: HashMap<&str, &Target> = targets.iter().map(|t| (t.host.as_str(), t)).collect();
    let groups: Vec<NaiveGroup> = by_host
        .values()
        .map(|t| NaiveGroup {
            targets: vec![t.address.to_string()],
            labels: t.labels.clone().into_iter().collect(),
        })
        .collect();
    Ok(serde_json::to_string_pretty(&groups)?)
}

/// Feeds `events` arriving at [`ARRIVALS_PER_SEC`] to a registry in batches every
/// [`BATCH_EVERY`] of simulated time, writing through `files` when due: with `debounce`, at
/// most once per [`MIN_INTERVAL`] (the controller's writer); without, after every change.
/// Returns (busy ms: apply + render + write, files written).
fn join_storm(
    events: &[(String, Vec<u8>)],
    files: &mut SdFiles,
    debounce: bool,
) -> anyhow::Result<(f64, usize)> {
    let mut registry = SdRegistry::new();
    let per_batch = ARRIVALS_PER_SEC * BATCH_EVERY.as_millis() as usize / 1000;
    let (mut busy, mut writes) = (Duration::ZERO, 0);
    let mut now = Duration::ZERO;
    let mut next_write = Duration::ZERO;
    let mut dirty = false;
    let mut batches = events.chunks(per_batch).peekable();
    while batches.peek().is_some() || dirty {
        let started = Instant::now();
        if let Some(batch) = batches.next() {
            for (key, value) in batch {
                let changed = registry.apply(key, Some(value))?.is_some();
                dirty |= changed;
                if changed && !debounce {
                    writes += files.write(&render_shards(registry.targets(), 1))?;
                    dirty = false;
                }
            }
        }
        if debounce && dirty && now >= next_write {
            writes += files.write(&render_shards(registry.targets(), 1))?;
            dirty = false;
            next_write = now + MIN_INTERVAL;
        }
        busy += started.elapsed();
        now += BATCH_EVERY;
    }
    Ok((busy.as_secs_f64() * 1000.0, writes))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let n = args.hosts;
    let k = n / 1000;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&args.dir)?;
    let events = registrations(n)?;
    let mut registry = SdRegistry::new();
    for (key, value) in &events {
        registry.apply(key, Some(value))?;
    }
    registry.finish_scan();
    let targets: Vec<Target> = registry.targets().cloned().collect();
    anyhow::ensure!(targets.len() == n, "{} of {n} hosts listed", targets.len());

    // 1. Rendering, and whether equal input gives equal bytes.
    let text = render(&targets);
    let render_ms = median(
        (0..20)
            .map(|_| {
                time_ms(|| {
                    std::hint::black_box(render(&targets));
                })
            })
            .collect(),
    );
    let mut naive_ms = Vec::new();
    let mut naive_changed = 0;
    let mut previous = naive_render(&targets)?;
    for _ in 0..10 {
        let started = Instant::now();
        let next = naive_render(&targets)?;
        naive_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        naive_changed += usize::from(next != previous);
        previous = next;
    }
    let ours_changed = (0..10).filter(|_| render(&targets) != text).count();
    let naive_ms = median(naive_ms);

    // 2. Render + atomic write of the whole file.
    let path = work.path().join("agents.json");
    let mut write_ms = Vec::new();
    for i in 0..10 {
        let mut files = SdFiles::open(&path, 1);
        // Alternate the content so every round really writes.
        let subset = &targets[i % 2..];
        write_ms.push(time_ms(|| {
            let written = files.write(&render_shards(subset, 1));
            assert!(matches!(written, Ok(1)), "{written:?}");
        }));
    }
    let write_ms = median(write_ms);
    let bytes = std::fs::metadata(&path)?.len() as f64;

    // 3. One host changes its address: one file vs 16 shards.
    let one_change = |shards: usize, name: &str| -> anyhow::Result<f64> {
        let base = work.path().join(name);
        let mut files = SdFiles::open(&base, shards);
        files.write(&render_shards(&targets, shards))?;
        let mut moved = targets.clone();
        let mut samples = Vec::new();
        for i in 0..10 {
            let changed = i * 97 % n;
            moved[changed].address.set_port(9500 + i as u16);
            let started = Instant::now();
            // As the controller's writer: only the shard the change falls in is rendered.
            let shard = shard_of(&moved[changed].host, shards);
            let text = match shards {
                1 => render(&moved),
                _ => render_shard(&moved, shards, shard),
            };
            let written = files.write_shard(shard, &text)?;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(written, "the change was not written");
        }
        Ok(median(samples))
    };
    let one_file_ms = one_change(1, "one.json")?;
    let sharded_ms = one_change(16, "sharded.json")?;

    // 4. The join storm.
    let mut files = SdFiles::open(&work.path().join("join.json"), 1);
    let (join_busy, join_writes) = join_storm(&events, &mut files, true)?;
    let mut files = SdFiles::open(&work.path().join("join2k.json"), 1);
    let (join2k_busy, join2k_writes) = join_storm(&events[..NAIVE_HOSTS], &mut files, true)?;
    let mut files = SdFiles::open(&work.path().join("naive2k.json"), 1);
    let (naive2k_busy, naive2k_writes) = join_storm(&events[..NAIVE_HOSTS], &mut files, false)?;

    println!("file_sd: {n} hosts, files in {}", work.path().display());
    println!("{:<58} {:>12}", "figure", "value");
    let figures: Vec<(String, f64)> = vec![
        (format!("file_sd_render_{k}k_ms"), render_ms),
        (format!("file_sd_render_{k}k_ms_baseline_pretty"), naive_ms),
        ("file_sd_changed_renders".into(), ours_changed as f64),
        (
            "file_sd_baseline_changed_renders".into(),
            naive_changed as f64,
        ),
        (format!("file_sd_write_{k}k_ms"), write_ms),
        (format!("file_sd_bytes_{k}k"), bytes),
        ("file_sd_one_change_ms".into(), one_file_ms),
        ("file_sd_one_change_16_shards_ms".into(), sharded_ms),
        (format!("file_sd_join_{k}k_busy_ms"), join_busy),
        (format!("file_sd_join_{k}k_writes"), join_writes as f64),
        ("file_sd_join_2k_busy_ms".into(), join2k_busy),
        ("file_sd_join_2k_writes".into(), join2k_writes as f64),
        (
            "file_sd_join_2k_busy_ms_baseline_per_change".into(),
            naive2k_busy,
        ),
        (
            "file_sd_join_2k_writes_baseline_per_change".into(),
            naive2k_writes as f64,
        ),
    ];
    for (name, value) in &figures {
        println!("{name:<58} {value:>12.2}");
    }
    if let Some(summary) = &args.summary {
        let values: Vec<(&str, f64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        merge_summary(summary, &values)?;
    }
    Ok(())
}
