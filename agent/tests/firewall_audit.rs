//! The network worker records its firewall changes on a real kernel: `run_network_worker` with
//! the real nftables driver in a private network namespace applies a VM's security group
//! (`firewall.apply`, a full replace), then a new group member (`firewall.apply`, an element
//! delta), and repairs Yun's table flushed behind its back (`firewall.repair`). Drift checks
//! and passes that find nothing to do record nothing, and the chain verifies.
//!
//! Needs root, `ip netns` and nft. The namespace (and its tables) goes when it ends.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::watch;
use yun_agent::audit::AgentAudit;
use yun_agent::metrics::AgentMetrics;
use yun_agent::network::host_state::{HostNetState, LinkSettings};
use yun_agent::network::links::{HostLinks, HostNetworks, LinkChanges, LinksError};
use yun_agent::network::nft::{NftCommand, NftFirewall};
use yun_agent::network::worker::run_network_worker;
use yun_audit::AuditRecord;
use yun_fleet::network::{GroupRules, Proto, Remote, Rule};
use yun_fleet::{HostGroups, NicRecord, SCHEMA_VERSION, VmDesired};

const DRIFT_EVERY: Duration = Duration::from_millis(500);

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {}", yun_testkit::cannot_run(args[0], &e)))
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("yfwaudit{}", std::process::id());
        let out = sh(&["ip", "netns", "add", &name]);
        assert!(out.status.success(), "{out:?}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// Links are not what this test is about: none are ever wanted or changed.
struct NoLinks;

impl HostLinks for NoLinks {
    async fn apply(&mut self, _want: &HostNetworks) -> Result<LinkChanges, LinksError> {
        Ok(LinkChanges::default())
    }
}

fn web_vm() -> VmDesired {
    VmDesired {
        nics: vec![NicRecord {
            network: "t/net".into(),
            ifname: "yt00000001".into(),
            bridge: "yb00000001".into(),
            mac: "52:54:00:00:00:01".into(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            gateway: None,
            mtu: 1450,
        }],
        security_groups: vec!["t/web".into()],
        ..yun_fleet::fixtures::vm_desired("u1", "t", "web")
    }
}

/// `t/web` lets `t/lb` members reach port 443.
fn web_rules() -> HostGroups {
    let ingress = vec![Rule {
        proto: Proto::Tcp,
        ports: vec![(443, 443)],
        remote: Remote::Group("t/lb".into()),
    }];
    HostGroups {
        v: SCHEMA_VERSION,
        groups: BTreeMap::from([(
            "t/web".to_string(),
            GroupRules {
                ingress,
                egress: vec![],
            },
        )]),
    }
}

fn records(path: &Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until the log holds `n` records.
async fn wait_records(path: &Path, n: usize, what: &str) {
    for _ in 0..150 {
        if records(path).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no record of {what}: {:#?}", records(path));
}

#[tokio::test(flavor = "multi_thread")]
async fn firewall_changes_and_repairs_are_recorded_and_quiet_passes_are_not() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit").join("agent.log");
    let audit = AgentAudit::open(&log, "fw-host").unwrap();
    let (state_tx, state_rx) = watch::channel(HostNetState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(run_network_worker(
        state_rx,
        LinkSettings::default(),
        NoLinks,
        NftFirewall::new(NftCommand::in_netns(&ns.0)),
        DRIFT_EVERY,
        AgentMetrics::new(&mut Registry::default()),
        audit.clone(),
        stop_rx,
    ));

    state_tx.send_modify(|s| {
        s.set_vm(&web_vm());
        s.set_groups(Some(web_rules()));
    });
    wait_records(&log, 1, "the first apply").await;
    state_tx.send_modify(|s| {
        s.set_member_shard(
            "t/lb",
            0,
            Some(BTreeSet::from([Ipv4Addr::new(10, 0, 1, 1)])),
        );
    });
    wait_records(&log, 2, "the member delta").await;
    // Several drift checks that find nothing.
    tokio::time::sleep(DRIFT_EVERY * 4).await;
    assert_eq!(records(&log).len(), 2, "{:#?}", records(&log));
    let out = sh(&[
        "ip", "netns", "exec", &ns.0, "nft", "flush", "table", "inet", "yun",
    ]);
    assert!(out.status.success(), "{out:?}");
    wait_records(&log, 3, "the drift repair").await;
    tokio::time::sleep(DRIFT_EVERY * 3).await;

    stop_tx.send(true).unwrap();
    worker.await.unwrap();
    audit.close().await;
    assert_eq!(yun_audit::verify(&log, None).unwrap().records, 3);
    let got = records(&log);
    let summary: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|r| (r.action.as_str(), r.object.as_str(), r.outcome.result()))
        .collect();
    assert_eq!(
        summary,
        [
            ("firewall.apply", "Host fw-host", "ok"),
            ("firewall.apply", "Host fw-host", "ok"),
            ("firewall.repair", "Host fw-host", "ok"),
        ],
        "{got:#?}"
    );
    let d = |i: usize, key: &str| got[i].details.get(key).cloned().unwrap_or_default();
    assert_eq!((d(0, "mode"), d(0, "ports")), (json!("replace"), json!(1)));
    assert_eq!(d(0, "groups"), json!(1));
    assert_eq!(
        (d(1, "mode"), d(1, "elementsAdded"), d(1, "elementsDeleted")),
        (json!("delta"), json!(1), json!(0))
    );
    assert!(d(2, "drift").as_str().is_some_and(|s| !s.is_empty()));
}
