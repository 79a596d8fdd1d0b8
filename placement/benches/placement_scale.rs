//! Placement at fleet scale: indexed `decide` + `assign` against the naive baseline, on one
//! synthetic fleet with existing load, in one run.
//!
//! `cargo bench -p yun-placement --bench placement_scale -- --hosts 50000 --vms 500000
//!  --decisions 20000 [--naive-decisions 1000] [--candidates 16] [--out file.json]`

use std::collections::BTreeMap;
use std::time::Instant;

use yun_placement::{
    Engine, EngineConfig, HostSpec, HostState, Policy, Qos, Ratios, Request, Resources,
    SpreadConstraint, Topology,
};

/// splitmix64: small, deterministic, good enough for workload generation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(1000) < percent * 10
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// A Kubernetes-style uid (36 characters), so that memory figures are realistic.
    fn uid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Roughly Zipf-distributed index in `0..n` (popular images are popular).
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n) + 1;
        self.below(a)
    }
}

struct Args {
    hosts: usize,
    vms: usize,
    decisions: usize,
    naive_decisions: usize,
    candidates: usize,
    out: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        hosts: 50_000,
        vms: 500_000,
        decisions: 20_000,
        naive_decisions: 1_000,
        candidates: EngineConfig::default().candidates_per_decision,
        out: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        let number = value.parse().unwrap_or(0);
        match argv[i].as_str() {
            "--hosts" => a.hosts = number,
            "--vms" => a.vms = number,
            "--decisions" => a.decisions = number,
            "--naive-decisions" => a.naive_decisions = number,
            "--candidates" => a.candidates = number,
            "--out" => a.out = Some(value),
            _ => {
                i += 1; // `--bench` from cargo, or anything unknown
                continue;
            }
        }
        i += 2;
    }
    a
}

const ZONES: usize = 5;
const RACK_SIZE: usize = 40;
const RACKS_PER_POWER: usize = 4;
const IMAGES: u64 = 60;

fn fleet(n: usize, rng: &mut Rng) -> Vec<(HostSpec, HostState, Vec<String>)> {
    let per_zone = n.div_ceil(ZONES);
    (0..n)
        .map(|i| {
            let zone = i / per_zone;
            let rack = (i % per_zone) / RACK_SIZE;
            let power = rack / RACKS_PER_POWER;
            let mut labels = BTreeMap::from([
                (Topology::Zone.label().to_string(), format!("z{zone}")),
                (
                    Topology::Rack.label().to_string(),
                    format!("z{zone}-r{rack}"),
                ),
                (
                    Topology::Power.label().to_string(),
                    format!("z{zone}-p{power}"),
                ),
            ]);
            match rng.below(100) {
                0..10 => labels.insert("tier".into(), "gold".into()),
                10..40 => labels.insert("tier".into(), "silver".into()),
                _ => None,
            };
            if rng.chance(50) {
                labels.insert("ssd".into(), "nvme".into());
            }
            if rng.chance(3) {
                labels.insert("gpu".into(), "a100".into());
            }
            let cpus = rng.pick(&[32, 48, 64, 96, 128]);
            let spec = HostSpec {
                name: format!("host-{i:05}"),
                capacity: Resources {
                    cpus,
                    memory_mib: u64::from(cpus) * rng.pick(&[4, 6, 8]) * 1024,
                    disk_gib: rng.pick(&[2_000, 4_000, 8_000]),
                },
                labels,
                ratios: Ratios {
                    cpu: rng.pick(&[2.0, 4.0, 4.0, 8.0]),
                    ..Ratios::default()
                },
            };
            let state = match rng.below(1000) {
                0..10 => HostState::Cordoned,
                10..15 => HostState::NotReady,
                15..20 => HostState::Maintenance,
                _ => HostState::Ready,
            };
            let images = (0..rng.below(6))
                .map(|_| format!("sha256-{:04}", rng.skewed(IMAGES)))
                .collect();
            (spec, state, images)
        })
        .collect()
}

/// A request from the mix: sizes, QoS, ~20% selectors, ~10% anti-affinity, ~10% spread, ~5%
/// affinity, ~70% with an image, policies mixed.
fn request(rng: &mut Rng) -> Request {
    let cpus = rng.pick(&[1, 1, 2, 2, 4, 4, 8, 16]);
    let mut r = Request {
        resources: Resources {
            cpus,
            memory_mib: u64::from(cpus) * rng.pick(&[1, 2, 4, 8]) * 1024,
            disk_gib: rng.pick(&[10, 20, 50, 100]),
        },
        ..Request::default()
    };
    if rng.chance(30) {
        r.scheduling.qos = Qos::Guaranteed;
    }
    if rng.chance(20) {
        let sel: &[(&str, &str)] = match rng.below(5) {
            0 => &[("tier", "gold")],
            1 => &[("tier", "silver")],
            2 => &[("ssd", "nvme")],
            3 => &[("gpu", "a100")],
            _ => &[("tier", "gold"), ("ssd", "nvme")],
        };
        r.selector = sel
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    if rng.chance(10) {
        r.scheduling.anti_affinity_group = Some(format!("anti-{}", rng.below(5_000)));
    }
    if rng.chance(10) {
        let (topology, max_skew) = rng.pick(&[
            (Topology::Zone, 1),
            (Topology::Rack, 1),
            (Topology::Power, 2),
        ]);
        r.scheduling.spread = Some(SpreadConstraint {
            group: format!("spread-{}", rng.below(2_000)),
            topology,
            max_skew,
        });
    }
    if rng.chance(5) {
        // Members of an affinity group share one profile: no selector of their own.
        r.scheduling.affinity_group = Some(format!("aff-{}", rng.below(20_000)));
        r.selector.clear();
    }
    if rng.chance(70) {
        r.image = Some(format!("sha256-{:04}", rng.skewed(IMAGES)));
    }
    r.policy = rng.pick(&[None, Some(Policy::BinPack), Some(Policy::Spread)]);
    r
}

#[derive(Default)]
struct Run {
    /// decide + assign, every decision.
    nanos: Vec<u64>,
    /// decide + assign, successful decisions only.
    ok_nanos: Vec<u64>,
    failed: usize,
    placed: Vec<String>,
    /// The slowest decisions, described.
    slowest: Vec<(u64, String)>,
}

fn percentile_ms(nanos: &[u64], p: f64) -> f64 {
    let mut v = nanos.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied().unwrap_or(0) as f64 / 1e6
}

impl Run {
    fn note(&mut self, nanos: u64, req: &Request, outcome: &str) {
        if self.slowest.len() < 5 || nanos > self.slowest[4].0 {
            let s = &req.scheduling;
            let what = format!(
                "{:.3} ms {:?} {:?} sel={:?} anti={:?} spread={:?} aff={:?} img={} policy={:?} -> {outcome}",
                nanos as f64 / 1e6,
                req.resources,
                s.qos,
                req.selector,
                s.anti_affinity_group,
                s.spread.as_ref().map(|c| (c.topology, c.max_skew)),
                s.affinity_group,
                req.image.is_some(),
                req.policy,
            );
            self.slowest.push((nanos, what));
            self.slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
            self.slowest.truncate(5);
        }
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.nanos, p)
    }

    fn per_second(&self) -> f64 {
        let total: u64 = self.nanos.iter().sum();
        self.nanos.len() as f64 / (total.max(1) as f64 / 1e9)
    }
}

/// Decides and assigns `n` requests from `rng` (timed together), with churn between them
/// (untimed): every other decision releases a random VM placed earlier in this run.
fn stream(e: &mut Engine, n: usize, rng: &mut Rng, naive: bool) -> Run {
    let mut run = Run::default();
    for i in 0..n {
        let req = request(rng);
        let uid = rng.uid();
        let mut retimed = None;
        let start = Instant::now();
        let decided = if naive {
            e.decide_naive(&req)
        } else {
            e.decide(&req)
        };
        let decide_ns = start.elapsed().as_nanos() as u64;
        let outcome = match decided {
            Ok(d) => {
                if decide_ns > 1_000_000 {
                    // Slow success: time it again on the same state (untimed) to tell an
                    // expensive decision from the process being descheduled.
                    let again = Instant::now();
                    let _ = e.decide(&req);
                    retimed = Some(again.elapsed().as_nanos() as u64);
                }
                let ok = e
                    .assign(&uid, &d.host, req.resources, &req.scheduling)
                    .is_ok();
                if ok {
                    run.placed.push(uid);
                }
                None
            }
            Err(nofit) => Some(nofit.to_string()),
        };
        let nanos = (start.elapsed().as_nanos() as u64).saturating_sub(retimed.unwrap_or(0));
        run.nanos.push(nanos);
        match &outcome {
            None => run.ok_nanos.push(nanos),
            Some(_) => run.failed += 1,
        }
        if run.slowest.len() < 5 || nanos > run.slowest[4].0 {
            let what = outcome.unwrap_or_else(|| {
                let again = retimed.map_or(String::new(), |n| {
                    format!(", same decision again: {:.3} ms", n as f64 / 1e6)
                });
                format!("ok, decide {:.3} ms{again}", decide_ns as f64 / 1e6)
            });
            run.note(nanos, &req, &what);
        }
        if i % 2 == 1 && !run.placed.is_empty() {
            let victim = rng.below(run.placed.len() as u64) as usize;
            let uid = run.placed.swap_remove(victim);
            e.unassign(&uid);
        }
    }
    run
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let a = args();
    let mut rng = Rng(0x5EED);
    let cfg = EngineConfig {
        candidates_per_decision: a.candidates,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg);
    let t = Instant::now();
    for (spec, state, images) in fleet(a.hosts, &mut rng) {
        let name = spec.name.clone();
        e.upsert_host(spec);
        let _ = e.set_state(&name, state);
        let _ = e.set_images(&name, images.iter().map(String::as_str));
    }
    let hosts_bytes = e.approx_heap_bytes();
    println!(
        "fleet: {} hosts in {:.2}s, ~{} B/host",
        a.hosts,
        t.elapsed().as_secs_f64(),
        hosts_bytes / a.hosts.max(1)
    );

    // Existing load, committed the way a controller rebuilds it from etcd: assign directly,
    // spread round-robin over hosts where it fits (no decision is timed here).
    let t = Instant::now();
    let names = e.host_names();
    let mut existing = 0;
    let mut cursor = 0usize;
    for _ in 0..a.vms {
        let req = request(&mut rng);
        let mut host = None;
        for _ in 0..8 {
            cursor = (cursor + 1 + rng.below(7) as usize) % names.len().max(1);
            if e.fits_now(&names[cursor], &req) {
                host = Some(names[cursor].clone());
                break;
            }
        }
        // Constrained requests (selectors, groups) rarely hit by chance: ask the engine.
        let host = host.or_else(|| e.decide(&req).ok().map(|d| d.host));
        if let Some(host) = host {
            let uid = rng.uid();
            if e.assign(&uid, &host, req.resources, &req.scheduling)
                .is_ok()
            {
                existing += 1;
            }
        }
    }
    let vm_bytes = e.approx_heap_bytes().saturating_sub(hosts_bytes);
    println!(
        "existing: {existing} VMs in {:.2}s, ~{} B/VM, rss {:.0} MiB",
        t.elapsed().as_secs_f64(),
        vm_bytes / existing.max(1),
        rss_mib()
    );

    let mut naive_engine = e.clone();
    let mut stream_rng = Rng(0xDEC1DE);
    let indexed = stream(&mut e, a.decisions, &mut stream_rng, false);
    println!(
        "indexed: {} decisions, {:.0}/s, p50 {:.4} ms, p99 {:.4} ms, max {:.3} ms, {} failed; \
         successes only: p99 {:.4} ms, p99.9 {:.4} ms",
        indexed.nanos.len(),
        indexed.per_second(),
        indexed.percentile_ms(0.50),
        indexed.percentile_ms(0.99),
        indexed.percentile_ms(1.0),
        indexed.failed,
        percentile_ms(&indexed.ok_nanos, 0.99),
        percentile_ms(&indexed.ok_nanos, 0.999),
    );
    for (_, what) in &indexed.slowest {
        println!("  slow: {what}");
    }

    // Quality: on the same state, how far the indexed choice's score is from the global best.
    let mut gap_rng = Rng(0xDEC1DE);
    let mut gaps = Vec::new();
    for _ in 0..a.naive_decisions.min(200) {
        let req = request(&mut gap_rng);
        if let (Ok(d), Ok(n)) = (naive_engine.decide(&req), naive_engine.decide_naive(&req)) {
            gaps.push(n.score - d.score);
        }
    }
    let mean_gap = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;

    let mut naive_rng = Rng(0xDEC1DE);
    let naive = stream(&mut naive_engine, a.naive_decisions, &mut naive_rng, true);
    println!(
        "naive:   {} decisions, {:.0}/s, p50 {:.3} ms, p99 {:.3} ms, {} failed",
        naive.nanos.len(),
        naive.per_second(),
        naive.percentile_ms(0.50),
        naive.percentile_ms(0.99),
        naive.failed
    );
    let speedup = indexed.per_second() / naive.per_second().max(f64::MIN_POSITIVE);
    println!("speedup {speedup:.0}x, mean score gap to the global best {mean_gap:.4}");

    let json = format!(
        "{{\n  \"placement_hosts\": {},\n  \"placement_existing_vms\": {},\n  \
         \"placement_decisions\": {},\n  \"placement_failed_decisions\": {},\n  \
         \"placement_decisions_per_s_50k\": {:.1},\n  \"placement_p50_ms_50k\": {:.5},\n  \
         \"placement_p99_ms_50k\": {:.5},\n  \"placement_max_ms_50k\": {:.4},\n  \
         \"placement_success_p99_ms_50k\": {:.5},\n  \
         \"placement_naive_decisions\": {},\n  \
         \"placement_naive_decisions_per_s_50k\": {:.1},\n  \
         \"placement_naive_p99_ms_50k\": {:.4},\n  \
         \"placement_speedup_vs_naive_50k\": {:.1},\n  \
         \"placement_mean_score_gap_vs_naive\": {:.5},\n  \
         \"placement_candidates_per_decision\": {},\n  \
         \"placement_engine_bytes_per_host\": {},\n  \"placement_engine_bytes_per_vm\": {}\n}}\n",
        a.hosts,
        existing,
        indexed.nanos.len(),
        indexed.failed,
        indexed.per_second(),
        indexed.percentile_ms(0.50),
        indexed.percentile_ms(0.99),
        indexed.percentile_ms(1.0),
        percentile_ms(&indexed.ok_nanos, 0.99),
        naive.nanos.len(),
        naive.per_second(),
        naive.percentile_ms(0.99),
        speedup,
        mean_gap,
        a.candidates,
        hosts_bytes / a.hosts.max(1),
        vm_bytes / existing.max(1),
    );
    print!("{json}");
    if let Some(out) = a.out
        && let Err(err) = std::fs::write(&out, &json)
    {
        eprintln!("cannot write {out}: {err}");
        std::process::exit(1);
    }
}
