//! The shipped Grafana dashboards (docs/ops/dashboards/*.json) are importable as they are and
//! show data: every panel query parses (promtool), and against a real Prometheus scraping a real
//! controller and agent that run a VM, every panel query returns samples. The same Prometheus
//! loads docs/ops/alerts/yun.rules.yaml: every rule evaluates without error and every
//! recording rule produces samples.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use yun_integration::{BOOT_TIMEOUT, Cluster, http_get};
use yun_testkit::{PrometheusServer, wait_until, workspace_root};

const DASHBOARDS: &str = "docs/ops/dashboards";
const RULES: &str = "docs/ops/alerts/yun.rules.yaml";
const DATASOURCE: &str = "${DS_PROMETHEUS}";
/// Grafana's own variables, and what the test puts in their place. The scrape interval is 1 s,
/// so a minute holds plenty of samples.
const BUILTIN_VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
];
/// How long after the VM runs every query may take to show data (recording rules, first rates).
const DATA_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
struct PanelQuery {
    dashboard: String,
    panel: String,
    expr: String,
}

impl std::fmt::Display for PanelQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}: {}", self.dashboard, self.panel, self.expr)
    }
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = workspace_root().join(DASHBOARDS);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("read dashboard");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 4,
        "expected the four dashboards, found {out:?}"
    );
    out
}

/// Every panel, rows' nested panels (collapsed rows keep theirs inside) included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (name, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{name} / {}: a target without expr",
                    panel["title"]
                );
                out.push(PanelQuery {
                    dashboard: name.clone(),
                    panel: panel["title"].as_str().unwrap_or("?").to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    out
}

/// The query as Prometheus will run it: Grafana's variables replaced, `$host` by `host`.
fn substitute(expr: &str, host: &str) -> String {
    let mut out = expr.to_owned();
    for (variable, value) in BUILTIN_VARIABLES {
        out = out.replace(variable, value);
    }
    out.replace("${host}", host).replace("$host", host)
}

/// Template variable names the dashboard defines.
fn variables(dashboard: &Value) -> BTreeSet<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn dashboards_use_the_datasource_input_and_only_defined_variables() {
    for (name, dashboard) in dashboards() {
        let inputs = dashboard["__inputs"].as_array().expect("__inputs");
        assert!(
            inputs
                .iter()
                .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
            "{name}: no DS_PROMETHEUS input"
        );
        assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
        let defined = variables(&dashboard);
        for panel in panels(&dashboard) {
            let title = &panel["title"];
            if panel["type"] != "row" {
                assert_eq!(panel["datasource"]["uid"], DATASOURCE, "{name} / {title}");
                assert!(
                    panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
                    "{name} / {title}: no query"
                );
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert_eq!(target["datasource"]["uid"], DATASOURCE, "{name} / {title}");
                let expr = target["expr"].as_str().unwrap_or_default();
                let stripped = BUILTIN_VARIABLES
                    .iter()
                    .fold(expr.to_owned(), |e, (v, _)| e.replace(v, ""));
                for (i, _) in stripped.match_indices('$') {
                    let rest = stripped[i + 1..].trim_start_matches('{');
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        defined.contains(&used),
                        "{name} / {title}: ${used} is not a variable of the dashboard"
                    );
                }
            }
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(variable["datasource"]["uid"], DATASOURCE, "{name}");
        }
    }
    let host = dashboards()
        .into_iter()
        .find(|(n, _)| n == "yun-host.json")
        .expect("yun-host.json");
    assert!(
        variables(&host.1).contains("host"),
        "the host dashboard has $host"
    );
}

#[test]
fn every_dashboard_query_parses() {
    let queries = queries();
    let dir = tempfile::tempdir().expect("tempdir");
    // promtool parses recording rules' expressions with Prometheus' own parser.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let expr = substitute(&q.expr, "some-host");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("quote")
        ));
    }
    let path = dir.path().join("dashboards.rules.yaml");
    std::fs::write(&path, &rules).expect("write rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool is installed by scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}{}\nqueries (dashboard:query_N is the N-th):\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        queries
            .iter()
            .enumerate()
            .map(|(i, q)| format!("{i}: {q}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn recording_rules() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join(RULES)).expect("rules file");
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules YAML");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(name) = rule["record"].as_str() {
                out.push(name.to_owned());
            }
        }
    }
    assert!(!out.is_empty(), "no recording rules in {RULES}");
    out
}

fn prometheus_config(cluster: &Cluster) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - yun.rules.yaml\n\
         scrape_configs:\n\
         \x20 - job_name: yun-agent\n    static_configs:\n      - targets: ['{agent}']\n        labels:\n          host: {host}\n\
         \x20 - job_name: yun-controller\n    static_configs:\n      - targets: ['{controller}']\n",
        agent = cluster.agent_metrics,
        controller = cluster.controller_metrics,
        host = cluster.host,
    )
}

fn empty_queries(prometheus: &PrometheusServer, queries: &[(String, String)]) -> Vec<String> {
    queries
        .iter()
        .filter_map(|(what, expr)| match prometheus.query(expr) {
            Ok(result) if !result.is_empty() => None,
            Ok(_) => Some(format!("{what}\n    ran: {expr}\n    no data")),
            Err(e) => Some(format!("{what}\n    ran: {expr}\n    {e}")),
        })
        .collect()
}

fn metrics_dump(cluster: &Cluster) -> String {
    let body = |addr| {
        http_get(addr, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    format!(
        "--- controller /metrics ---\n{}\n--- agent /metrics ---\n{}",
        body(cluster.controller_metrics),
        body(cluster.agent_metrics)
    )
}

/// `/api/v1/rules`: (group/rule name, health, lastError) of every rule.
fn rule_health(prometheus: &PrometheusServer) -> Vec<(String, String, String)> {
    let body = prometheus.get_json("/api/v1/rules").expect("rules API");
    let mut out = Vec::new();
    for group in body["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            out.push((
                format!("{}/{}", group["name"].as_str().unwrap_or("?"), rule["name"]),
                rule["health"].as_str().unwrap_or("?").to_owned(),
                rule["lastError"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn dashboard_queries_and_recording_rules_return_data_from_a_real_cluster() {
    let cluster = Cluster::start();
    let rules_source = workspace_root().join(RULES);
    let prometheus = PrometheusServer::start_with(&prometheus_config(&cluster), |dir: &Path| {
        std::fs::copy(&rules_source, dir.join("yun.rules.yaml")).expect("copy rules");
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Both daemons are scraped before anything happens, so the VM's start is in the data.
    let both_up = wait_until("both targets up", Duration::from_secs(30), || {
        prometheus
            .query(r#"up{job=~"yun-agent|yun-controller"} == 1"#)
            .is_ok_and(|r| r.len() == 2)
    });
    if let Err(e) = both_up {
        panic!(
            "{e}: {:?}\n{}",
            prometheus.active_targets(),
            prometheus.log_tail()
        );
    }
    cluster.apply_vm("dash-vm", "dashboards");
    let vm = cluster.wait_running("dash-vm", BOOT_TIMEOUT);
    assert_eq!(vm.host, cluster.host);

    let mut checks: Vec<(String, String)> = queries()
        .into_iter()
        .map(|q| (q.to_string(), substitute(&q.expr, &cluster.host)))
        .collect();
    // The host dashboard's variable lists the host from this series.
    checks.push((
        "yun-host.json / $host variable".into(),
        format!(r#"up{{job="yun-agent",host="{}"}}"#, cluster.host),
    ));
    checks.extend(
        recording_rules()
            .into_iter()
            .map(|r| (format!("recording rule {r}"), r.clone())),
    );
    let mut missing = Vec::new();
    let settled = wait_until("every query returns data", DATA_TIMEOUT, || {
        missing = empty_queries(&prometheus, &checks);
        missing.is_empty()
    });
    if settled.is_err() {
        panic!(
            "{} of {} queries returned no data:\n{}\n{}\n--- prometheus ---\n{}",
            missing.len(),
            checks.len(),
            missing.join("\n"),
            metrics_dump(&cluster),
            prometheus.log_tail()
        );
    }

    // Every rule, alerting ones included, has been evaluated and none failed (e.g. a
    // many-to-many match that only shows with real label sets).
    let mut health = Vec::new();
    wait_until("every rule evaluated", Duration::from_secs(20), || {
        health = rule_health(&prometheus);
        !health.is_empty() && health.iter().all(|(_, h, _)| h != "unknown")
    })
    .unwrap_or_else(|e| panic!("{e}: {health:?}"));
    let broken: Vec<_> = health.iter().filter(|(_, h, _)| h != "ok").collect();
    assert!(
        broken.is_empty(),
        "rules that failed to evaluate: {broken:?}"
    );
    // A healthy cluster with its VM running has no alert, not even pending: every alert's
    // condition is false on real, healthy series (not only on the unit tests' made-up ones).
    // The phase gauges lag the VM by a scrape and an evaluation, hence the short wait.
    let mut alerts = Vec::new();
    let quiet = wait_until(
        "no alert pending or firing",
        Duration::from_secs(20),
        || {
            alerts = prometheus.query("ALERTS").expect("ALERTS query");
            alerts.is_empty()
        },
    );
    assert!(
        quiet.is_ok(),
        "alerts pending or firing on a healthy cluster: {alerts:?}"
    );
}
