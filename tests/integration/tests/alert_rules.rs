//! The shipped Prometheus alert rules parse and behave as their unit tests say (promtool).

use std::process::Command;
use yun_testkit::workspace_root;

#[test]
fn alert_rules_pass_promtool() {
    let dir = workspace_root().join("docs/ops/alerts");
    for args in [
        vec!["check", "rules", "yun.rules.yaml"],
        vec!["test", "rules", "yun.rules.test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool is installed by scripts/install-deps.sh");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
