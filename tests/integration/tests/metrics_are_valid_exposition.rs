//! Both daemons serve /metrics that Prometheus' own checker accepts.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use yun_integration::{BOOT_TIMEOUT, Cluster, http_get};
use yun_testkit::wait_until;

fn scrape(addr: SocketAddr) -> String {
    let mut body = None;
    wait_until(
        &format!("/metrics on {addr}"),
        Duration::from_secs(20),
        || {
            body = http_get(addr, "/metrics")
                .filter(|(code, _)| *code == 200)
                .map(|(_, b)| b);
            body.is_some()
        },
    )
    .expect("metrics endpoint answers");
    body.expect("checked above")
}

/// promtool parses the classic text format, where an OpenMetrics counter family `x` (HELP and
/// TYPE lines name `x`, samples are `x_total`) looks like a sample without help text. That one
/// lint is accepted when the family's HELP line is really there; anything else fails.
fn is_openmetrics_counter_artifact(problem: &str, text: &str) -> bool {
    problem
        .strip_suffix(" no help text")
        .and_then(|name| name.strip_suffix("_total"))
        .is_some_and(|family| {
            text.contains(&format!("# HELP {family} "))
                && text.contains(&format!("# TYPE {family} counter"))
        })
}

fn promtool_check(name: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`, installed by scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool result");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let context = format!(
        "{name} /metrics: promtool {:?}:\n{report}\n--- exposition ---\n{text}",
        out.status
    );
    match out.status.code() {
        Some(0) => {}
        // 3: parsed fine, lint problems only.
        Some(3) => {
            let problems: Vec<&str> = report
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            assert!(!problems.is_empty(), "{context}");
            for problem in problems {
                assert!(
                    is_openmetrics_counter_artifact(problem, text),
                    "lint problem {problem:?}\n{context}"
                );
            }
        }
        _ => panic!("exposition does not parse\n{context}"),
    }
}

#[test]
fn metrics_are_valid_exposition() {
    let cluster = Cluster::start();
    cluster.apply_vm("metrics-vm", "metrics-marker");
    // A running VM makes the agent's per-phase and per-op series non-empty.
    cluster.wait_running("metrics-vm", BOOT_TIMEOUT);

    let agent = scrape(cluster.agent_metrics);
    let controller = scrape(cluster.controller_metrics);
    assert!(
        agent.contains("yun_"),
        "agent exposes yun_ metrics:\n{agent}"
    );
    assert!(
        controller.contains("yun_"),
        "controller exposes yun_ metrics:\n{controller}"
    );
    promtool_check("agent", &agent);
    promtool_check("controller", &controller);
}
