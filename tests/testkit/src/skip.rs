//! When a test may skip, and how a skip is seen.
//!
//! Only a kernel feature this machine lacks ([`KernelFeature`], the one list) lets a test skip.
//! A missing program, package or built artifact never does under CI (`CI=true`): the test fails
//! naming what is missing. Outside CI, a developer without `scripts/install-deps.sh` sees
//! `SKIPPED` instead. Every skip is written to stderr and appended to the file named by
//! `YUN_TEST_SKIP_LOG` (set by `scripts/test.sh`, which prints the list after the suite).

use std::io::Write;

/// Kernel features a machine may lack; the only reason a test may skip under CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFeature {
    /// `br_netfilter`: bridged IPv4 seen by nftables' inet family (conntrack on a bridge).
    BrNetfilter,
    /// `8021q`: VLAN sub-interfaces.
    Vlan8021q,
}

impl KernelFeature {
    pub const ALL: [KernelFeature; 2] = [KernelFeature::BrNetfilter, KernelFeature::Vlan8021q];

    pub fn name(self) -> &'static str {
        match self {
            KernelFeature::BrNetfilter => "br_netfilter",
            KernelFeature::Vlan8021q => "8021q",
        }
    }
}

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_ENV: &str = "YUN_TEST_SKIP_LOG";

/// Whether this run is CI's (`CI=true`), where only kernel features may skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Records that `test` is skipped because this kernel lacks `feature` (`detail`: what the probe
/// saw). The caller returns right after.
pub fn skip_for_kernel(test: &str, feature: KernelFeature, detail: &str) {
    announce(&format!(
        "SKIPPED {test}: this kernel has no {} ({detail})",
        feature.name()
    ));
}

/// `test` cannot run because `what` is missing. Under CI this fails the test (panics) naming it;
/// elsewhere it prints SKIPPED and returns, and the caller returns too.
pub fn missing_dependency(test: &str, what: &str) {
    if under_ci() {
        panic!(
            "{test}: {what}. Under CI a missing dependency fails the test: run scripts/install-deps.sh"
        );
    }
    announce(&format!("SKIPPED {test}: {what} (not under CI)"));
}

/// Whether every one of `commands` is installed. When one is not: under CI the test fails here,
/// naming each with its Debian package; elsewhere it prints SKIPPED and this returns false.
pub fn have_tools(test: &str, commands: &[&str]) -> bool {
    match crate::tools::require_all(commands) {
        Ok(()) => true,
        Err(e) => {
            missing_dependency(test, &e.to_string());
            false
        }
    }
}

/// Writes straight to stderr (libtest captures `eprintln!` of passing tests) and to the skip log.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {line} ***\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_features_have_distinct_names() {
        let names: Vec<_> = KernelFeature::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["br_netfilter", "8021q"]);
    }
}
