//! Real guests for network tests: the test template built into a private directory, VMs
//! prepared and defined the way the agent does it (`VmFilePreparer` + `LibvirtHypervisor` on
//! `qemu:///system`, TCG), a bridge in the root network namespace, and guards that remove
//! every domain, bridge, nft table, sysctl change and file the test made.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{Hypervisor, VirtType};
use yun_agent::images::ImageCache;
use yun_agent::prepare::VmFilePreparer;
use yun_fleet::{Artifact, DiskFormat, ImageSpec, VmDesired};

pub const SYSTEM_URI: &str = "qemu:///system";
/// Shared with tests/integration: agents sharing one libvirtd adopt (and remove) each other's
/// domains and, with tenant networking, Yun's bridges and nft tables in the root namespace.
/// Holding this lock keeps those tests' clusters away while guests of this one run.
const LIBVIRT_LOCK_DIR: &str = "/var/lib/yun-it";
/// Parent of the state directory: libvirt's QEMU user must traverse every component.
const STATE_ROOT: &str = "/var/lib/yun-it";
const CMDLINE: &str = "console=ttyS0 root=/dev/vda rw panic=-1";

pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

pub fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `probe` every 200 ms until it yields a value; panics after `timeout` with `what`
/// and the context `on_timeout` gives.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    on_timeout: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                on_timeout()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Panics (with how to fix it) when `qemu:///system` does not answer.
pub fn require_libvirt() {
    let out = run(&["virsh", "-c", SYSTEM_URI, "version"]);
    assert!(
        out.status.success(),
        "libvirt {SYSTEM_URI} does not answer ({}); start it with `scripts/libvirt.sh up <dir>`",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Exclusive lock shared with tests/integration's clusters (blocks until they are done).
pub fn lock_libvirt() -> File {
    std::fs::create_dir_all(LIBVIRT_LOCK_DIR).unwrap();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(LIBVIRT_LOCK_DIR).join(".libvirt-tests.lock"))
        .unwrap();
    file.lock().unwrap();
    file
}

/// A directory removed (with everything in it) on drop.
#[derive(Debug)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn new(tag: &str) -> StateDir {
        let root = Path::new(STATE_ROOT);
        std::fs::create_dir_all(root).unwrap();
        let dir = root.join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for d in [root, dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        StateDir(dir)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the test template into `<dir>/template`. When this machine cannot build it (no cloud
/// kernel, no busybox-static...): under CI the test fails with the build's reason; elsewhere
/// `None` (the caller skips) after printing it.
pub fn build_template(dir: &Path) -> Option<ImageSpec> {
    let out_dir = dir.join("template");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/test-template/build.sh");
    let out = run(&["bash", script.to_str().unwrap(), out_dir.to_str().unwrap()]);
    if !out.status.success() {
        yun_testkit::missing_dependency(
            "the test template",
            &format!(
                "images/test-template/build.sh failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
        return None;
    }
    let sums = std::fs::read_to_string(out_dir.join("SHA256SUMS")).unwrap();
    let artifact = |file: &str| Artifact {
        source: format!("file://{}", out_dir.join(file).display()),
        sha256: sums
            .lines()
            .filter_map(|l| l.split_once("  "))
            .find(|(_, name)| name.trim() == file)
            .map(|(sha, _)| sha.to_owned())
            .unwrap(),
    };
    Some(ImageSpec {
        name: "default/yun-test".into(),
        disk: artifact("disk.qcow2"),
        format: DiskFormat::Qcow2,
        kernel: Some(artifact("vmlinuz")),
        initrd: Some(artifact("initrd.img")),
        cmdline: Some(CMDLINE.into()),
    })
}

/// Guests prepared and run as the agent does; destroyed and undefined on drop.
pub struct Guests {
    hv: LibvirtHypervisor,
    preparer: VmFilePreparer,
    domains: Vec<String>,
}

impl std::fmt::Debug for Guests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guests")
            .field("domains", &self.domains)
            .finish()
    }
}

impl Guests {
    pub fn new(state: &Path) -> Guests {
        Guests {
            hv: LibvirtHypervisor::connect(SYSTEM_URI).unwrap(),
            preparer: VmFilePreparer::new(
                ImageCache::open(state.join("images")).unwrap(),
                state.join("vms"),
            ),
            domains: Vec::new(),
        }
    }

    /// Prepares (overlay, seed), defines and starts `vm`; returns its console log path.
    pub fn start(&mut self, vm: &VmDesired) -> PathBuf {
        let spec = self.preparer.prepare(vm, VirtType::Qemu).unwrap();
        self.domains.push(spec.name.clone());
        self.hv.define(&spec).unwrap();
        self.hv.start(&spec.name).unwrap();
        spec.console_log
    }
}

impl Drop for Guests {
    fn drop(&mut self) {
        for name in &self.domains {
            let _ = self.hv.destroy(name);
            let _ = self.hv.undefine(name);
        }
    }
}

/// The guest's serial console so far (carriage returns removed).
pub fn console(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .replace('\r', "")
}

/// The last `lines` lines of a console, for failure messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Linux bridge in the root network namespace, deleted on drop.
#[derive(Debug)]
pub struct Bridge(pub String);

impl Bridge {
    pub fn new(name: &str) -> Bridge {
        assert!(name.len() <= 15, "{name} is longer than IFNAMSIZ");
        must(&["ip", "link", "add", name, "type", "bridge"]);
        let bridge = Bridge(name.to_owned());
        must(&["ip", "link", "set", name, "up"]);
        bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.0]);
    }
}

/// A sysctl set for the test's lifetime, restored on drop.
#[derive(Debug)]
pub struct Sysctl {
    key: String,
    old: String,
}

impl Sysctl {
    pub fn set(key: &str, value: &str) -> Sysctl {
        let old = must(&["sysctl", "-n", key]).trim().to_owned();
        must(&["sysctl", "-qw", &format!("{key}={value}")]);
        Sysctl {
            key: key.to_owned(),
            old,
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = run(&["sysctl", "-qw", &format!("{}={}", self.key, self.old)]);
    }
}

/// True when the root namespace holds any of Yun's nft tables.
pub fn yun_tables_present() -> bool {
    ["bridge", "inet"].iter().any(|family| {
        run(&["nft", "list", "table", family, "yun"])
            .status
            .success()
    })
}

/// Deletes Yun's nft tables from the root namespace on drop.
#[derive(Debug)]
pub struct YunTables;

impl Drop for YunTables {
    fn drop(&mut self) {
        for family in ["bridge", "inet"] {
            let _ = run(&["nft", "delete", "table", family, "yun"]);
        }
    }
}
