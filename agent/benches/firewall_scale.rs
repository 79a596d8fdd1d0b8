//! `make bench`: the host firewall at scale, in a network namespace this bench creates and
//! removes. A host whose ruleset holds 100,000 set elements (members of a remote group) takes
//! one membership change as an element delta (the agent's path: compile, diff, one `nft`
//! transaction), measured next to the naive alternative, a full atomic reload of the table,
//! in the same run. Also the compiled size for 10 rules × 300 ports.
//!
//! Flags: `--members N` (default 100000), `--updates N` (default 50), `--reloads N` (default 5),
//! `--summary PATH` (default target/bench/summary.json).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde_json::{Map, Value};
use yun_agent::network::nft::{Applied, HostFirewallDriver, NftCommand, NftFirewall};
use yun_firewall::*;

struct Args {
    members: u32,
    updates: usize,
    reloads: usize,
    summary: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        members: 100_000,
        updates: 50,
        reloads: 5,
        summary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/summary.json"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().context(format!("{flag} needs a value"));
        match flag.as_str() {
            "--members" => a.members = val()?.parse()?,
            "--updates" => a.updates = val()?.parse()?,
            "--reloads" => a.reloads = val()?.parse()?,
            "--summary" => a.summary = val()?.into(),
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn port(i: u32, group: &str) -> Port {
    Port {
        ifname: format!("yt{i:08x}"),
        bridge: "ybbench".into(),
        mac: Mac([0x52, 0x54, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        ip: Ipv4Addr::from(0x0a00_0000 + i + 10),
        groups: BTreeSet::from([group.to_owned()]),
    }
}

fn tcp(port: u16, remote: Remote) -> Rule {
    Rule {
        proto: Proto::Tcp,
        ports: vec![(port, port)],
        remote,
    }
}

/// `ports` ports in t/web, whose 10 ingress rules are 9 CIDR rules and one from group t/peers.
fn host(ports: u32, peers: u32) -> HostFirewall {
    let mut ingress: Vec<Rule> = (0..9u8)
        .map(|i| {
            tcp(
                8000 + u16::from(i),
                Remote::Cidr {
                    addr: Ipv4Addr::new(192, 168, i, 0),
                    prefix: 24,
                },
            )
        })
        .collect();
    ingress.push(tcp(443, Remote::Group("t/peers".into())));
    HostFirewall {
        ports: (0..ports).map(|i| port(i, "t/web")).collect(),
        groups: BTreeMap::from([(
            "t/web".into(),
            GroupRules {
                ingress,
                egress: vec![],
            },
        )]),
        members: BTreeMap::from([(
            "t/peers".into(),
            (0..peers)
                .map(|i| Ipv4Addr::from(0x6400_0000 + i))
                .collect(),
        )]),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let mut fig: Vec<(&str, f64)> = Vec::new();

    let small = compile(&host(300, 20))?.size();
    fig.push(("nft_rules_10rules_300ports", small.total() as f64));
    // The per-port design (a rule per rule per port, as iptables-style firewalls do).
    fig.push(("nft_rules_naive_10rules_300ports", (10 * 300) as f64));

    let ns = Netns(format!("yfwbench{}", std::process::id()));
    let st = Command::new("ip").args(["netns", "add", &ns.0]).status()?;
    ensure!(st.success(), "ip netns add {} failed (root needed)", ns.0);
    let cmd = NftCommand::in_netns(&ns.0);
    let mut fw = host(50, a.members);
    let rs = compile(&fw)?;
    let elements = rs.size().set_elements;
    fig.push(("sg_table_set_elements", elements as f64));

    // Naive: full atomic reload of the whole table.
    let mut reload_ms = Vec::new();
    for _ in 0..a.reloads {
        let t = Instant::now();
        cmd.run(&full_replace(&rs), "bench reload")?;
        reload_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let reload_ms = sorted(reload_ms);

    // Delta: the agent's path for one membership change.
    let mut nft = NftFirewall::new(cmd.clone());
    ensure!(nft.apply(&fw)? == Applied::Replaced);
    let mut update_ms = Vec::new();
    for i in 0..a.updates {
        let peers = fw.members.get_mut("t/peers").context("peers")?;
        let ip = Ipv4Addr::from(0x6500_0000 + i as u32);
        peers.insert(ip);
        if i % 2 == 1 {
            peers.remove(&Ipv4Addr::from(0x6500_0000 + i as u32 - 1));
        }
        let t = Instant::now();
        let applied = nft.apply(&fw)?;
        update_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            matches!(applied, Applied::Delta { .. }),
            "membership change was not a delta: {applied:?}"
        );
    }
    ensure!(
        nft.repair_drift()?.is_none(),
        "the kernel disagrees after the deltas"
    );
    let update_ms = sorted(update_ms);

    let p99 = percentile(&update_ms, 99.0);
    let reload = percentile(&reload_ms, 50.0);
    fig.push(("sg_member_update_p50_ms_100k", percentile(&update_ms, 50.0)));
    fig.push(("sg_member_update_p99_ms_100k", p99));
    fig.push(("sg_full_reload_ms_100k", reload));
    fig.push(("sg_full_reload_max_ms_100k", percentile(&reload_ms, 100.0)));
    fig.push((
        "sg_update_speedup_vs_reload_100k",
        reload / percentile(&update_ms, 50.0),
    ));

    println!(
        "firewall: {elements} set elements, {} updates, {} reloads",
        a.updates, a.reloads
    );
    let mut summary: Map<String, Value> = std::fs::read_to_string(&a.summary)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    for (k, v) in &fig {
        println!("  {k:<45} {v:>12.3}");
        summary.insert(
            (*k).to_owned(),
            serde_json::json!((v * 1000.0).round() / 1000.0),
        );
    }
    if let Some(dir) = a.summary.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.summary, serde_json::to_string_pretty(&summary)? + "\n")?;
    Ok(())
}
