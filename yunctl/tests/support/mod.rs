//! Running the built `yunctl` as a user would, shared by the test files (each uses a part).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Runs yunctl as a user would, with a HOME of its own (no stray config file is read) and
/// RUST_BACKTRACE=1 (so a panic would show, and the error checks would catch it).
pub struct Ctl {
    pub endpoint: String,
    pub home: tempfile::TempDir,
}

impl Ctl {
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_yunctl"));
        c.env("RUST_BACKTRACE", "1")
            .env("HOME", self.home.path())
            .env_remove("YUNCTL_CONFIG");
        c
    }

    /// yunctl with `args` and the test etcd's endpoint.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command();
        c.args(args).args(["--etcd-endpoints", &self.endpoint]);
        c.output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(self.run(args), args)
    }

    /// Fails with exit 1 and returns stderr, checked to be error lines and no panic.
    pub fn fails(&self, args: &[&str]) -> String {
        failed(self.run(args), args)
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

pub fn succeeded(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "yunctl {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

pub fn failed(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "yunctl {args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "yunctl {args:?} panicked: {stderr}"
    );
    assert!(!stderr.is_empty(), "yunctl {args:?} failed silently");
    stderr
}

pub fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    lines[0]
}

pub fn image(ns: &str) -> String {
    format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VmImage\nmetadata:\n  name: yun-test\n  namespace: {ns}\n\
         spec:\n  os: busybox\n  disk:\n    source: file:///var/lib/yun/yun-test.qcow2\n    \
         format: qcow2\n    sha256: {SHA}\n"
    )
}

/// A VM manifest; `ns: None` leaves the namespace out.
pub fn vm(name: &str, ns: Option<&str>, cpu: u32) -> String {
    let ns = ns
        .map(|n| format!("  namespace: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n{ns}\
         spec:\n  image: yun-test\n  cpu: {cpu}\n  memoryMiB: 256\n"
    )
}
