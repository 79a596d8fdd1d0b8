//! Token validation latency: the controller's cached path against a real Keystone round trip.
//!
//! `cargo bench -p yun-identity --bench token_validate -- [--cached N] [--uncached N]
//!  [--summary PATH]`
//!
//! 1. `keystone_token_validate_p99_ms_cached`: N (default 10,000) validations of one token
//!    through `TokenCache::validate`, primed by one Keystone round trip; p99 of one call.
//! 2. `keystone_token_validate_p99_ms_uncached`: N (default 200) `Keystone::validate_token`
//!    calls against a throwaway Keystone (PyPI keystone under gunicorn, SQLite) on loopback.
//!
//! `--summary PATH` merges these flat keys into the JSON object in PATH (created if absent).
//! Without Keystone installed (`scripts/install-keystone.sh`) it says so and exits non-zero.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use yun_benchkit::merge_summary;
use yun_identity::{Credentials, Keystone, Secret, TokenCache};
use yun_testkit::KeystoneServer;

struct Args {
    cached: usize,
    uncached: usize,
    summary: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        cached: 10_000,
        uncached: 200,
        summary: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--cached" => args.cached = value()?.parse()?,
            "--uncached" => args.uncached = value()?.parse()?,
            "--summary" => args.summary = Some(value()?.into()),
            // cargo bench passes --bench to harness=false targets.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if args.cached == 0 || args.uncached == 0 {
        bail!("--cached and --uncached must be positive");
    }
    Ok(args)
}

/// The p-th percentile (0..=100) of `samples`, nearest rank.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn measure(args: &Args, server: &KeystoneServer) -> anyhow::Result<(f64, f64)> {
    let admin = Keystone::connect(&Credentials::password(
        server.url(),
        server.admin_user(),
        Secret::new(server.admin_password()),
        "admin",
    ))
    .await?;
    let token = admin.current_token().context("no token after connecting")?;

    let mut uncached = Vec::with_capacity(args.uncached);
    for _ in 0..args.uncached {
        let started = Instant::now();
        admin.validate_token(token.expose()).await?;
        uncached.push(started.elapsed());
    }

    let cache = TokenCache::default();
    cache.validate(&admin, token.expose()).await?;
    let mut cached = Vec::with_capacity(args.cached);
    for _ in 0..args.cached {
        let started = Instant::now();
        cache.validate(&admin, token.expose()).await?;
        cached.push(started.elapsed());
    }
    let (hits, misses) = cache.stats();
    if hits != args.cached as u64 || misses != 1 {
        bail!(
            "expected {} hits and 1 miss, saw {hits} and {misses}",
            args.cached
        );
    }
    Ok((
        ms(percentile(&mut cached, 99.0)),
        ms(percentile(&mut uncached, 99.0)),
    ))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if !KeystoneServer::is_installed() {
        bail!(
            "Keystone is not installed in {}: run scripts/install-keystone.sh as root",
            KeystoneServer::venv().display()
        );
    }
    let server = KeystoneServer::start()?;
    println!(
        "keystone up in {:.1} s at {}",
        server.startup_time().as_secs_f64(),
        server.url()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (cached_p99, uncached_p99) = runtime.block_on(measure(&args, &server))?;
    drop(runtime);
    drop(server);

    println!("{:<44} {:>12}", "metric", "value");
    println!(
        "{:<44} {:>12.4}   ({} validations through TokenCache)",
        "keystone_token_validate_p99_ms_cached", cached_p99, args.cached
    );
    println!(
        "{:<44} {:>12.4}   ({} round trips to Keystone)",
        "keystone_token_validate_p99_ms_uncached", uncached_p99, args.uncached
    );
    if let Some(path) = &args.summary {
        merge_summary(
            path,
            &[
                ("keystone_token_validate_p99_ms_cached", cached_p99),
                ("keystone_token_validate_p99_ms_uncached", uncached_p99),
            ],
        )?;
        println!("summary merged into {}", path.display());
    }
    Ok(())
}
