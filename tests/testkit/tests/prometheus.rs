//! The throwaway Prometheus really discovers targets from a file, scrapes them, evaluates
//! PromQL and reports parse errors.

use std::time::Duration;

use yun_testkit::{PrometheusServer, wait_until};

#[test]
fn discovers_a_file_sd_target_scrapes_it_and_answers_queries() {
    let server = PrometheusServer::start(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    file_sd_configs:\n      - files: [targets.json]\n        refresh_interval: 1s\n",
    )
    .unwrap();
    // Prometheus's own /metrics is the simplest real target there is.
    let me = server.url().trim_start_matches("http://").to_string();
    std::fs::write(
        server.dir().join("targets.json"),
        format!(r#"[{{"targets":["{me}"],"labels":{{"zone":"z1"}}}}]"#),
    )
    .unwrap();
    wait_until("the file_sd target is up", Duration::from_secs(30), || {
        server
            .query(r#"up{job="self",zone="z1"} == 1"#)
            .map(|r| r.len() == 1)
            .unwrap_or(false)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log_tail()));
    let targets = server.active_targets().unwrap();
    assert!(targets.iter().any(|t| t["health"] == "up"), "{targets:?}");
    let err = server.query("sum(").unwrap_err().to_string();
    assert!(err.contains("parse error"), "{err}");
}
