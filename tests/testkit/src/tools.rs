//! Every external program the tests and the test harness run, with the Debian package that
//! provides it, and the one way a test asks for one.
//!
//! [`TOOLS`] is the list `scripts/install-deps.sh` is checked against
//! (`tests/tools_installed.rs`): each program must be on `PATH` after it ran, and each package
//! must be in its `PACKAGES`. A helper that runs a program calls [`require`] first, so a missing
//! one fails at once with its name and package, never later as an unrelated `NotFound`.

use std::path::{Path, PathBuf};

use crate::TestkitError;

/// A program and the Debian 12 package it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
}

const fn tool(command: &'static str, package: &'static str) -> Tool {
    Tool { command, package }
}

/// Every program a test, a test helper, `scripts/test.sh` or a script it calls runs, beyond
/// the shell's own utilities (coreutils, findutils, grep, sed, awk) and the Rust toolchain.
pub const TOOLS: &[Tool] = &[
    // Build
    tool("gcc", "gcc"),
    tool("pkg-config", "pkg-config"),
    tool("protoc", "protobuf-compiler"),
    // Fleet bus and monitoring
    tool("etcd", "etcd-server"),
    tool("etcdctl", "etcd-client"),
    tool("prometheus", "prometheus"),
    tool("promtool", "prometheus"),
    // Hypervisor and images
    tool("libvirtd", "libvirt-daemon"),
    tool("virtlogd", "libvirt-daemon"),
    tool("virsh", "libvirt-clients"),
    tool("qemu-system-x86_64", "qemu-system-x86"),
    tool("qemu-img", "qemu-utils"),
    tool("qemu-io", "qemu-utils"),
    tool("genisoimage", "genisoimage"),
    tool("isoinfo", "genisoimage"),
    tool("xorriso", "xorriso"),
    tool("busybox", "busybox-static"),
    tool("cpio", "cpio"),
    tool("mke2fs", "e2fsprogs"),
    tool("debugfs", "e2fsprogs"),
    tool("e2fsck", "e2fsprogs"),
    tool("losetup", "mount"),
    tool("flock", "util-linux"),
    tool("debootstrap", "debootstrap"),
    // Storage servers
    tool("tgtd", "tgt"),
    tool("tgtadm", "tgt"),
    tool("ganesha.nfsd", "nfs-ganesha"),
    tool("rpcbind", "rpcbind"),
    tool("rpcinfo", "rpcbind"),
    // Network and firewall
    tool("nft", "nftables"),
    tool("ip", "iproute2"),
    tool("bridge", "iproute2"),
    tool("sysctl", "procps"),
    tool("pgrep", "procps"),
    tool("kill", "procps"),
    tool("modprobe", "kmod"),
    // Scripts, certificates, Ansible
    tool("python3", "python3"),
    tool("curl", "curl"),
    tool("openssl", "openssl"),
    tool("ansible-playbook", "ansible-core"),
    tool("ansible-lint", "ansible-lint"),
];

/// The package that provides `command` (a name or an absolute path), if it is in [`TOOLS`].
pub fn package_of(command: &str) -> Option<&'static str> {
    let name = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(command);
    TOOLS.iter().find(|t| t.command == name).map(|t| t.package)
}

/// Where `command` is: an absolute path that exists, or the first match on `PATH`.
pub fn find(command: &str) -> Option<PathBuf> {
    let path = Path::new(command);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .map(|dir| dir.join(command))
        .find(|candidate| candidate.is_file())
}

/// The path of `command`, or an error naming it and its Debian package.
pub fn require(command: &str) -> Result<PathBuf, TestkitError> {
    find(command).ok_or_else(|| missing(&[command]))
}

/// Checks every one of `commands` at once; the error names all that are missing.
pub fn require_all(commands: &[&str]) -> Result<(), TestkitError> {
    let absent: Vec<&str> = commands
        .iter()
        .copied()
        .filter(|c| find(c).is_none())
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(missing(&absent))
    }
}

/// Why `program` could not be started: its name and package when it is not installed,
/// otherwise the spawn error itself. For a helper's panic message.
pub fn cannot_run(program: &str, err: &std::io::Error) -> String {
    match require(program) {
        Err(missing) => missing.to_string(),
        Ok(path) => format!("cannot run {}: {err}", path.display()),
    }
}

fn missing(commands: &[&str]) -> TestkitError {
    TestkitError::ToolMissing {
        tools: commands
            .iter()
            .map(|c| match package_of(c) {
                Some(package) => format!("`{c}` (Debian package {package})"),
                None => format!("`{c}`"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let err = require_all(&["sh", "/usr/sbin/yun-no-such-tgtadm", "yun-no-such-tool"])
            .expect_err("neither exists");
        let message = err.to_string();
        assert!(message.contains("yun-no-such-tool"), "{message}");
        assert!(!message.contains("`sh`"), "{message}");
        assert!(
            message.contains("scripts/install-deps.sh"),
            "says how to fix it: {message}"
        );
        let known = missing(&["/usr/sbin/tgtadm"]).to_string();
        assert!(known.contains("Debian package tgt"), "{known}");
    }

    #[test]
    fn a_present_tool_is_found_by_name_and_by_path() {
        let sh = require("sh").expect("every machine has sh");
        assert!(sh.is_absolute());
        assert_eq!(require(&sh.display().to_string()).ok(), Some(sh));
    }

    #[test]
    fn every_tool_is_listed_once() {
        for (i, t) in TOOLS.iter().enumerate() {
            assert!(
                !TOOLS[..i].iter().any(|u| u.command == t.command),
                "{} is listed twice",
                t.command
            );
        }
    }
}
