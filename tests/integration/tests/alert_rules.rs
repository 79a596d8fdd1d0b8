//! The shipped Prometheus rules parse and behave as their unit tests say (promtool); every
//! alert carries what an on-call engineer needs (severity, summary, description, a runbook that
//! exists and has every section), and every alert is unit-tested both firing and quiet, with a
//! quiet evaluation just before its `for:` elapses.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_yaml::Value;
use yun_testkit::workspace_root;

const RULES: &str = "docs/ops/alerts/yun.rules.yaml";
const RULE_TESTS: &str = "docs/ops/alerts/yun.rules.test.yaml";
const RUNBOOK_SECTIONS: [&str; 5] = [
    "## What it means",
    "## Impact",
    "## How to confirm",
    "## How to fix",
    "## When to escalate",
];
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn load(relative: &str) -> Value {
    let path = workspace_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every alerting rule of the rules file, by name.
fn alerts() -> BTreeMap<String, Value> {
    let rules = load(RULES);
    let mut out = BTreeMap::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(name) = rule["alert"].as_str() {
                assert!(
                    out.insert(name.to_owned(), rule.clone()).is_none(),
                    "alert {name} defined twice"
                );
            }
        }
    }
    assert!(!out.is_empty(), "no alerts in {RULES}");
    out
}

/// Prometheus durations as the rules and tests use them: `1h30m`, `4m30s`, `90s`.
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in duration.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {duration}"));
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => panic!("unit {c} in {duration}"),
        };
    }
    assert!(number.is_empty(), "duration {duration} lacks a unit");
    total
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(workspace_root().join("docs/ops/alerts"))
        .output()
        .expect("promtool is installed by scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool() {
    promtool(&["check", "rules", "yun.rules.yaml"]);
    promtool(&["test", "rules", "yun.rules.test.yaml"]);
}

#[test]
fn every_alert_has_severity_text_and_a_runbook_with_every_section() {
    let root = workspace_root();
    let index = std::fs::read_to_string(root.join("docs/ops/runbooks/README.md"))
        .expect("docs/ops/runbooks/README.md");
    for (name, rule) in alerts() {
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            SEVERITIES.contains(&severity),
            "{name}: severity {severity:?}"
        );
        let annotations = &rule["annotations"];
        for key in ["summary", "description"] {
            let text = annotations[key].as_str().unwrap_or_default();
            assert!(
                text.trim().len() > 10,
                "{name}: annotation {key} is {text:?}"
            );
        }
        let url = annotations["runbook_url"].as_str().unwrap_or_default();
        assert_eq!(url, format!("docs/ops/runbooks/{name}.md"), "{name}");
        let runbook = std::fs::read_to_string(root.join(url))
            .unwrap_or_else(|e| panic!("{name}: runbook {url}: {e}"));
        assert!(
            runbook.starts_with(&format!("# {name}\n")),
            "{url} does not start with `# {name}`"
        );
        for section in RUNBOOK_SECTIONS {
            let body = section_body(&runbook, section)
                .unwrap_or_else(|| panic!("{url} has no `{section}` section"));
            assert!(!body.trim().is_empty(), "{url}: `{section}` is empty");
        }
        assert!(
            index.contains(&format!("({name}.md)")),
            "docs/ops/runbooks/README.md does not link {name}.md"
        );
    }
}

/// The text between heading `section` and the next `## ` heading.
fn section_body<'a>(doc: &'a str, section: &str) -> Option<&'a str> {
    let start = doc.find(&format!("\n{section}\n"))? + section.len() + 2;
    let rest = &doc[start..];
    Some(rest.find("\n## ").map_or(rest, |end| &rest[..end]))
}

/// Every runbook in the directory belongs to an alert (no stale runbooks), and links inside the
/// runbooks to other docs resolve.
#[test]
fn runbooks_match_the_alerts_and_their_links_resolve() {
    let dir = workspace_root().join("docs/ops/runbooks");
    let alerts = alerts();
    for entry in std::fs::read_dir(&dir).expect("runbooks dir") {
        let path = entry.expect("dir entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if file == "README.md" {
            check_links(&path);
            continue;
        }
        let name = file.strip_suffix(".md").unwrap_or(file);
        assert!(
            alerts.contains_key(name),
            "{file} is not the runbook of any alert"
        );
        check_links(&path);
    }
}

/// Relative Markdown links `](path)` / `](path#anchor)` point at files that exist.
fn check_links(doc: &Path) {
    let text = std::fs::read_to_string(doc).expect("read runbook");
    let base = doc.parent().expect("parent");
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let file = target.split('#').next().unwrap_or(target);
        assert!(
            base.join(file).exists(),
            "{}: link to {target} does not resolve",
            doc.display()
        );
    }
}

#[derive(Default, Debug)]
struct Coverage {
    /// (group index, eval time in seconds) of cases expecting the alert.
    firing: Vec<(usize, u64)>,
    /// (group index, eval time in seconds) of cases expecting no alert.
    quiet: Vec<(usize, u64)>,
}

#[test]
fn every_alert_is_unit_tested_firing_and_quiet_at_its_for_boundary() {
    let tests = load(RULE_TESTS);
    let mut coverage: BTreeMap<String, Coverage> = BTreeMap::new();
    for (group, test) in tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .enumerate()
    {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            let at = seconds(case["eval_time"].as_str().expect("eval_time"));
            let fires = case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty());
            let entry = coverage.entry(name).or_default();
            if fires {
                entry.firing.push((group, at));
            } else {
                entry.quiet.push((group, at));
            }
        }
    }
    for (name, rule) in alerts() {
        let cases = coverage
            .get(&name)
            .unwrap_or_else(|| panic!("{name} has no promtool test case in {RULE_TESTS}"));
        assert!(!cases.firing.is_empty(), "{name}: no case where it fires");
        assert!(
            !cases.quiet.is_empty(),
            "{name}: no case where it stays quiet"
        );
        let hold = rule["for"].as_str().map_or(0, seconds);
        if hold == 0 {
            continue;
        }
        // The `for:` boundary: in one input, a quiet evaluation at most a minute before a
        // firing one, the firing one at least `for` into the series.
        let bracketed = cases.firing.iter().any(|&(group, fired)| {
            fired >= hold
                && cases
                    .quiet
                    .iter()
                    .any(|&(g, quiet)| g == group && quiet < fired && fired - quiet <= 60)
        });
        assert!(
            bracketed,
            "{name} (for: {hold}s): no quiet case within a minute before a firing case: {cases:?}"
        );
    }
}

#[test]
fn durations_parse_as_prometheus_writes_them() {
    assert_eq!(seconds("30s"), 30);
    assert_eq!(seconds("4m30s"), 270);
    assert_eq!(seconds("1h"), 3600);
}
