//! `spec.runStrategy` stops and starts the same VM: `Halted` powers the guest off through ACPI
//! and keeps its domain, disk and placement; `Always` boots that same domain from that same disk.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use yun_integration::{
    BOOT_TIMEOUT, Cluster, domain_exists, domain_id, domain_state, etcd_get_json,
};
use yun_testkit::wait_until;

const NAME: &str = "halt-vm";
const MARKER: &str = "run-strategy-marker-7";
/// Controller pass + agent ACPI shutdown (grace 10 s, then destroy) + status write, with room
/// for a busy machine.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes the VM manifest (always the same file, so the same object) and applies it.
fn apply_run_strategy(cluster: &Cluster, strategy: &str) {
    let text = format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {NAME}\n  namespace: default\n\
         spec:\n  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  diskGiB: 1\n  runStrategy: {strategy}\n  \
         userData: |\n    #cloud-config\n    yun-marker: {MARKER}\n"
    );
    let source = cluster.work_dir().join(format!("vm-{NAME}.yaml"));
    std::fs::write(&source, text).expect("write vm manifest");
    let out = cluster.apply(&source);
    assert!(out.status.success(), "apply {strategy} failed: {out:?}");
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// `virsh domstate --reason`, e.g. `shut off (shutdown)` after a guest power-off and
/// `shut off (destroyed)` after a hard stop.
fn domain_state_reason(domain: &str) -> String {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "domstate", "--reason", domain])
        .stdin(Stdio::null())
        .output()
        .expect("run virsh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn allocated_vms(cluster: &Cluster) -> Value {
    let key = format!("/yun/v1/hosts/{}/alloc", cluster.host);
    etcd_get_json(&cluster.etcd.endpoint(), &key).expect("alloc record")["vms"].clone()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

#[test]
fn run_strategy_stops_and_starts_the_same_vm() {
    let cluster = Cluster::start();
    apply_run_strategy(&cluster, "Always");
    let vm = cluster.wait_running(NAME, BOOT_TIMEOUT);
    let domain = vm.domain_name();
    let first_ready = cluster.wait_ready_line(&vm.uid, Duration::from_secs(90));
    assert!(
        first_ready.contains(&format!("instance-id={}", vm.uid)),
        "{first_ready}"
    );
    assert_eq!(allocated_vms(&cluster), 1, "placed VM is allocated");
    let overlay = cluster.vm_dir(&vm.uid).join("root.qcow2");
    let overlay_inode = inode(&overlay);
    let first_domain_id = domain_id(&domain).expect("running domain has an id");

    // Halted: the agent presses the power button; the guest's acpid powers it off.
    apply_run_strategy(&cluster, "Halted");
    let halted_at = Instant::now();
    let mut phases_seen: Vec<String> = Vec::new();
    let mut alloc_seen: Vec<Value> = Vec::new();
    let stopped = wait_until(&format!("{NAME} Stopped"), STOP_TIMEOUT, || {
        alloc_seen.push(allocated_vms(&cluster));
        let phase = cluster
            .vm_status(NAME)
            .map(|v| v["status"]["phase"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        if phases_seen.last() != Some(&phase) {
            phases_seen.push(phase.clone());
        }
        phase == "Stopped"
    });
    let stop_took = halted_at.elapsed();
    if let Err(e) = stopped {
        panic!(
            "{e}; phases seen {phases_seen:?}; domain {:?}\n{}",
            domain_state_reason(&domain),
            cluster.diagnostics()
        );
    }
    eprintln!("Halted -> Stopped in {stop_took:?}; phases seen {phases_seen:?}");
    assert!(
        alloc_seen.iter().all(|v| *v == 1),
        "allocation while stopping: {alloc_seen:?}"
    );

    assert!(domain_exists(&domain), "stopping keeps the domain defined");
    assert_eq!(domain_state(&domain).as_deref(), Some("shut off"));
    // libvirt records why the domain went down: `shutdown` is the guest powering off (the ACPI
    // path); `destroyed` would mean the agent gave up on ACPI after its 10 s grace period.
    assert_eq!(domain_state_reason(&domain), "shut off (shutdown)");
    assert_eq!(
        inode(&overlay),
        overlay_inode,
        "stopping keeps the overlay disk"
    );
    let status = cluster.vm_status(NAME).expect("status")["status"].clone();
    assert_eq!(status["observedGeneration"], 2, "{status}");
    assert_eq!(condition(&status, "Ready")["status"], "False", "{status}");
    assert_eq!(condition(&status, "Running")["status"], "False", "{status}");
    assert_eq!(status["host"], cluster.host.as_str(), "{status}");
    assert_eq!(status["domainUUID"], vm.domain_uuid.as_str(), "{status}");
    assert!(status["startedAt"].is_null(), "{status}");
    assert_eq!(
        allocated_vms(&cluster),
        1,
        "a stopped VM keeps its placement"
    );

    // Nothing brings it back on its own: still off a moment later.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(domain_state(&domain).as_deref(), Some("shut off"));
    let ready_before = cluster.ready_lines(&vm.uid);
    let console_before = cluster.console(&vm.uid);

    // Always again: the same domain boots from the same overlay.
    apply_run_strategy(&cluster, "Always");
    let again = cluster.wait_running(NAME, BOOT_TIMEOUT);
    assert_eq!(again.uid, vm.uid, "same VM object");
    assert_eq!(again.domain_uuid, vm.domain_uuid, "same libvirt domain");
    assert_eq!(again.host, vm.host);
    let second_id = domain_id(&domain).expect("restarted domain has an id");
    assert_ne!(second_id, first_domain_id, "the domain was started again");
    assert_eq!(
        inode(&overlay),
        overlay_inode,
        "restart reuses the overlay disk"
    );

    // The domain XML logs the console with append='off', so virtlogd may truncate console.log
    // when qemu starts again. Either way, a READY line that was not there when the VM stopped
    // proves the guest booted again: a further line appended, or one in the rewritten log (no
    // longer starting with the old content).
    let rebooted = wait_until("second guest READY line", Duration::from_secs(90), || {
        let lines = cluster.ready_lines(&vm.uid);
        let rewritten = !cluster.console(&vm.uid).starts_with(&console_before);
        lines.len() > ready_before.len() || (rewritten && !lines.is_empty())
    });
    if let Err(e) = rebooted {
        panic!(
            "{e}\n--- console ---\n{}\n{}",
            cluster.console(&vm.uid),
            cluster.diagnostics()
        );
    }
    let truncated = !cluster.console(&vm.uid).starts_with(&console_before);
    eprintln!(
        "console log {} on restart",
        if truncated { "truncated" } else { "appended" }
    );
    let second_ready = cluster.ready_lines(&vm.uid).pop().expect("checked above");
    for part in [
        format!("instance-id={}", vm.uid),
        format!("hostname={NAME}"),
        format!("marker={MARKER}"),
    ] {
        assert!(second_ready.contains(&part), "{second_ready} lacks {part}");
    }

    let status = cluster.vm_status(NAME).expect("status")["status"].clone();
    assert_eq!(status["observedGeneration"], 3, "{status}");
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    assert_eq!(allocated_vms(&cluster), 1, "still one VM on the host");
}
