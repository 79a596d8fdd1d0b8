//! Yun's Debian 12 template (images/debian/, built by `make image-debian`) boots under TCG through
//! the whole stack: controller → agent → libvirt. The disk boots by itself (GRUB), cloud-init
//! finds the agent's NoCloud seed and runs the VM's user data, whose `runcmd` prints a line on
//! the serial console naming a marker unique to this run, the hostname and instance id from the
//! seed, and the size of the root filesystem (grown to the VM's disk by cloud-init). The SSH
//! host keys are made on this first boot (the image ships none).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use yun_integration::{BOOT_TIMEOUT, Cluster, random_suffix};
use yun_testkit::{wait_until, workspace_root};

const IMAGE_DIR: &str = "images/build/debian-12";
const VM_NAME: &str = "debian-vm";
/// Bigger than the template's 2 GiB disk, so cloud-init has to grow the root partition.
const DISK_GIB: u64 = 4;
/// From the domain starting to the user data's line: a Debian boot with four cloud-init stages
/// takes 1-3 minutes under TCG on a busy 2-core machine.
const MARKER_TIMEOUT: Duration = Duration::from_secs(420);

/// The built template's VmImage manifest; fails the test (never skips it) when it is missing.
fn built_image() -> PathBuf {
    let dir = workspace_root().join(IMAGE_DIR);
    for file in ["vmimage.yaml", "disk.qcow2"] {
        assert!(
            dir.join(file).is_file(),
            "the Debian template is not built ({} is missing): run `make image-debian` \
             (bash images/debian/build.sh {IMAGE_DIR}) first",
            dir.join(file).display()
        );
    }
    dir.join("vmimage.yaml")
}

/// The complete console line (ending in a newline) that carries `marker`, if any.
fn marker_line(console: &str, marker: &str) -> Option<String> {
    let (complete, _partial) = console.rsplit_once('\n')?;
    complete
        .lines()
        .find(|l| l.contains(marker))
        .map(|l| l.trim().to_owned())
}

/// The value of `key=` in a line of `key=value` words.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn debian_template_boots_and_runs_user_data() {
    let image = built_image();
    let cluster = Cluster::start();
    // Under its own file name: `apply` keys manifests by file name, and the cluster's yun-test
    // image is already applied as vmimage.yaml.
    let image_manifest = std::fs::read_to_string(&image).expect("read vmimage.yaml");
    cluster.apply_manifest("vmimage-debian-12.yaml", &image_manifest);

    let marker = format!("YUN-DEBIAN-MARKER-{}", random_suffix());
    // One write to the console (kernel messages lowered first so none lands inside the line).
    let manifest = format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {VM_NAME}\n  namespace: default\n\
         spec:\n  image: debian-12\n  cpu: 1\n  memoryMiB: 512\n  diskGiB: {DISK_GIB}\n  userData: |\n    \
         #cloud-config\n    runcmd:\n      - dmesg -n 3\n      - echo \"{marker} hostname=$(hostname) \
         instance-id=$(cat /var/lib/cloud/data/instance-id) root-bytes=$(df -B1 --output=size / | tail -n 1 | tr -d ' ')\" \
         > /dev/ttyS0\n"
    );
    cluster.apply_manifest("vm-debian.yaml", &manifest);

    let vm = cluster.wait_running(VM_NAME, BOOT_TIMEOUT);
    assert_eq!(vm.host, cluster.host, "placed on the only host");
    let started = Instant::now();
    let mut line = None;
    if let Err(e) = wait_until("the user data's marker line", MARKER_TIMEOUT, || {
        line = marker_line(&cluster.console(&vm.uid), &marker);
        line.is_some()
    }) {
        panic!(
            "{e}\n--- console ---\n{}\n{}",
            cluster.console(&vm.uid),
            cluster.diagnostics()
        );
    }
    let line = line.expect("checked above");
    eprintln!(
        "debian-12: user data ran {:.0} s after the domain started: {line}",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(field(&line, "hostname"), Some(VM_NAME), "{line}");
    assert_eq!(field(&line, "instance-id"), Some(vm.uid.as_str()), "{line}");
    let root_bytes: u64 = field(&line, "root-bytes")
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no root-bytes in {line}"));
    assert!(
        root_bytes > (DISK_GIB - 1) << 30,
        "the root filesystem was not grown to the {DISK_GIB} GiB disk: {root_bytes} bytes ({line})"
    );

    // cloud-init's keys-to-console runs after the user scripts; the host keys it prints were
    // made on this boot.
    if let Err(e) = wait_until(
        "SSH host keys on the console",
        Duration::from_secs(60),
        || {
            cluster
                .console(&vm.uid)
                .contains("-----END SSH HOST KEY KEYS-----")
        },
    ) {
        panic!("{e}\n--- console ---\n{}", cluster.console(&vm.uid));
    }
    assert!(
        cluster.console(&vm.uid).contains("ssh-ed25519 "),
        "no ed25519 host key\n{}",
        cluster.console(&vm.uid)
    );
    assert_eq!(
        cluster
            .vm_status(VM_NAME)
            .map(|v| v["status"]["phase"].clone()),
        Some("Running".into()),
        "still Running after boot"
    );
}
