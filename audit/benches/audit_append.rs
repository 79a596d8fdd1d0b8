//! Audit append throughput with durability on return.
//!
//! `cargo bench -p yun-audit --bench audit_append -- [--records N] [--producers P]
//!  [--baseline-records N] [--dir DIR] [--summary PATH]`
//!
//! 1. `audit_append_per_s`: P concurrent producers (default 16) call `AuditSink::record` in a
//!    loop; every call returns only after the batch holding its record is fsynced.
//!    `audit_record_p99_ms` is the p99 of that call's latency, `audit_mean_batch` the records
//!    per fsync.
//! 2. `audit_append_per_s_baseline_fsync_each`: one `append` (one fsync) per record.
//! 3. `audit_append_per_s_direct_batch1024` / `audit_batch_p99_ms`: one thread calling
//!    `append_batch` with 1024 entries; p99 duration of one such call (write + fsync).
//!
//! The files go under `target/audit-bench` (a real disk, not tmpfs; the filesystem type is
//! printed) unless `--dir` says otherwise, and are removed afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use yun_audit::{Actor, AuditEntry, AuditLog, AuditSink, Outcome, verify};
use yun_benchkit::merge_summary;

struct Args {
    records: u64,
    producers: u64,
    baseline_records: u64,
    dir: PathBuf,
    summary: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        records: 100_000,
        producers: 16,
        baseline_records: 2_000,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/audit-bench"),
        summary: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value()?.parse()?,
            "--producers" => args.producers = value()?.parse()?,
            "--baseline-records" => args.baseline_records = value()?.parse()?,
            "--dir" => args.dir = value()?.into(),
            "--summary" => args.summary = Some(value()?.into()),
            // cargo bench passes --bench to harness=false targets.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.records == 0 || args.producers == 0 || args.baseline_records == 0 {
        bail!("--records, --producers and --baseline-records must be positive");
    }
    Ok(args)
}

fn sample_entry(n: u64) -> AuditEntry {
    let entry = AuditEntry::new(
        Actor::user(
            format!("user-{}", n % 50),
            Some(format!("project-{}", n % 7)),
        ),
        "vm.place",
        format!("VirtualMachine tenant-{}/web-{n}", n % 7),
    )
    .with_detail("host", format!("node-{}", n % 40))
    .with_detail("cpus", 4)
    .with_detail("memoryMiB", 8192);
    if n.is_multiple_of(10) {
        entry.with_outcome(Outcome::Error {
            message: "no host has 4 free cpus".into(),
        })
    } else {
        entry
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct SinkRun {
    per_s: f64,
    p99: Duration,
    mean_batch: f64,
}

async fn run_sink(path: &Path, records: u64, producers: u64) -> anyhow::Result<SinkRun> {
    let sink = AuditSink::spawn(AuditLog::open(path)?)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let sink = sink.clone();
        let mine = records / producers + u64::from(p < records % producers);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(mine as usize);
            for i in 0..mine {
                let entry = sample_entry(p * 1_000_000 + i);
                let t = Instant::now();
                sink.record(entry).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(records as usize);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    let stats = sink.stats();
    sink.close().await;
    latencies.sort_unstable();
    Ok(SinkRun {
        per_s: records as f64 / elapsed.as_secs_f64(),
        p99: percentile(&latencies, 0.99),
        mean_batch: stats.records as f64 / stats.batches.max(1) as f64,
    })
}

fn run_fsync_each(path: &Path, records: u64) -> anyhow::Result<f64> {
    let mut log = AuditLog::open(path)?;
    let start = Instant::now();
    for n in 0..records {
        log.append(&sample_entry(n))?;
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

fn run_direct_batches(path: &Path, records: u64) -> anyhow::Result<(f64, Duration)> {
    let mut log = AuditLog::open(path)?;
    let entries: Vec<_> = (0..records).map(sample_entry).collect();
    let mut durations = Vec::new();
    let start = Instant::now();
    for chunk in entries.chunks(1024) {
        let t = Instant::now();
        log.append_batch(chunk)?;
        durations.push(t.elapsed());
    }
    let per_s = records as f64 / start.elapsed().as_secs_f64();
    durations.sort_unstable();
    Ok((per_s, percentile(&durations, 0.99)))
}

/// The filesystem type holding `dir`, from /proc/self/mountinfo (longest mount-point prefix).
fn filesystem_of(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "unknown".into();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mount_point) = fields.get(4) else {
            continue;
        };
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(fstype), Some(source)) = (fields.get(dash + 1), fields.get(dash + 2)) else {
            continue;
        };
        if dir.starts_with(mount_point)
            && best
                .as_ref()
                .is_none_or(|(len, _)| mount_point.len() > *len)
        {
            best = Some((
                mount_point.len(),
                format!("{fstype} on {source}, mounted at {mount_point}"),
            ));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

fn main() -> anyhow::Result<()> {
    let mut args = parse_args()?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    args.dir = args.dir.canonicalize()?;
    let tag = std::process::id();
    let sink_path = args.dir.join(format!("sink-{tag}.log"));
    let each_path = args.dir.join(format!("fsync-each-{tag}.log"));
    let batch_path = args.dir.join(format!("batch-{tag}.log"));
    println!(
        "audit_append: files in {} ({})",
        args.dir.display(),
        filesystem_of(&args.dir)
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sink = runtime.block_on(run_sink(&sink_path, args.records, args.producers))?;
    let report = verify(&sink_path, None)?;
    if report.records != args.records {
        bail!(
            "sink run wrote {} records, expected {}",
            report.records,
            args.records
        );
    }
    let fsync_each = run_fsync_each(&each_path, args.baseline_records)?;
    let (direct, batch_p99) = run_direct_batches(&batch_path, args.records)?;
    verify(&batch_path, None)?;
    for path in [&sink_path, &each_path, &batch_path] {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }

    let rows = [
        (
            "audit_append_per_s",
            sink.per_s,
            format!(
                "AuditSink, {} producers, {} records",
                args.producers, args.records
            ),
        ),
        (
            "audit_record_p99_ms",
            ms(sink.p99),
            "record() call to durable return, p99".to_string(),
        ),
        (
            "audit_mean_batch",
            sink.mean_batch,
            "records per fsync in the AuditSink run".to_string(),
        ),
        (
            "audit_append_per_s_baseline_fsync_each",
            fsync_each,
            format!("one fsync per record, {} records", args.baseline_records),
        ),
        (
            "audit_append_per_s_direct_batch1024",
            direct,
            "append_batch(1024), one thread".to_string(),
        ),
        (
            "audit_batch_p99_ms",
            ms(batch_p99),
            "one append_batch(1024): write + fsync, p99".to_string(),
        ),
    ];
    println!("{:<40} {:>12}  what", "metric", "value");
    for (key, value, what) in &rows {
        println!("{key:<40} {value:>12.2}  {what}");
    }
    if let Some(path) = &args.summary {
        let values: Vec<(&str, f64)> = rows.iter().map(|(k, v, _)| (*k, *v)).collect();
        merge_summary(path, &values)?;
        println!("summary: {}", path.display());
    }
    Ok(())
}
