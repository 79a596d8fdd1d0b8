//! A crashed agent comes back and adopts the running guest instead of restarting it. The VM is
//! created with `yunctl` and, at the end, deleted with it: its domain goes, then the object.

use std::time::Duration;
use yun_integration::{BOOT_TIMEOUT, Cluster, domain_id, domain_state, qemu_pid};
use yun_testkit::wait_until;

#[test]
fn agent_restart_readopts() {
    let mut cluster = Cluster::start();
    cluster.yunctl_apply_vm("adopt-vm", "adopt-marker");
    let vm = cluster.wait_running("adopt-vm", BOOT_TIMEOUT);
    cluster.wait_ready_line(&vm.uid, Duration::from_secs(90));
    let domain = vm.domain_name();
    let started_before =
        cluster.vm_status("adopt-vm").expect("status")["status"]["startedAt"].clone();
    assert!(started_before.is_string(), "startedAt set while Running");
    let id_before = domain_id(&domain).expect("domain id while running");
    let pid_before = qemu_pid(&domain).expect("qemu pid while running");

    cluster.kill_agent();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        domain_state(&domain).as_deref(),
        Some("running"),
        "guest survives the agent"
    );
    cluster.start_agent();

    // The restarted agent reports the adopted domain: a fresh observation, still Running.
    let agent_back = wait_until("restarted agent healthy", Duration::from_secs(15), || {
        cluster.agent_health() == Some(200)
    });
    assert!(
        agent_back.is_ok(),
        "agent /healthz: {:?}\n{}",
        cluster.agent_health(),
        cluster.diagnostics()
    );
    let still = wait_until(
        "VM Running after agent restart",
        Duration::from_secs(10),
        || {
            cluster
                .vm_status("adopt-vm")
                .is_some_and(|v| v["status"]["phase"] == "Running")
        },
    );
    assert!(
        still.is_ok(),
        "status: {:?}\n{}",
        cluster.vm_status("adopt-vm"),
        cluster.diagnostics()
    );
    // Give the new agent a few reconcile passes in which it could (wrongly) restart the guest.
    std::thread::sleep(Duration::from_secs(5));
    let status = cluster.vm_status("adopt-vm").expect("status after restart");
    assert_eq!(status["status"]["phase"], "Running", "{status}");
    assert_eq!(status["uid"], vm.uid.as_str());
    assert_eq!(
        status["status"]["domainUUID"],
        vm.domain_uuid.as_str(),
        "same domain"
    );
    assert_eq!(
        status["status"]["startedAt"], started_before,
        "an adopted guest keeps its original start time"
    );
    assert_eq!(
        domain_id(&domain),
        Some(id_before),
        "libvirt domain id unchanged (not restarted)"
    );
    assert_eq!(qemu_pid(&domain), Some(pid_before), "same qemu process");
    let ready = cluster.ready_lines(&vm.uid);
    assert_eq!(ready.len(), 1, "guest booted exactly once: {ready:?}");
    assert!(
        cluster.agent_alive(),
        "agent still running\n{}",
        cluster.diagnostics()
    );

    // yunctl shows it, with the Events of its life so far, and deletes it for real.
    let get = cluster.yunctl(&["get", "vm", "adopt-vm"]);
    let table = String::from_utf8_lossy(&get.stdout);
    assert!(
        get.status.success() && table.contains("Running") && table.contains(&cluster.host),
        "{get:?}"
    );
    let describe = cluster.yunctl(&["describe", "vm", "adopt-vm"]);
    let text = String::from_utf8_lossy(&describe.stdout);
    for want in ["Scheduled", "Started", vm.uid.as_str()] {
        assert!(text.contains(want), "describe lacks {want}:\n{text}");
    }
    let deleted = cluster.yunctl(&["delete", "vm", "adopt-vm", "--timeout", "90s"]);
    assert!(
        deleted.status.success(),
        "{deleted:?}\n{}",
        cluster.diagnostics()
    );
    assert!(
        !yun_integration::domain_exists(&domain),
        "the libvirt domain is gone"
    );
    let after = cluster.yunctl(&["get", "vm", "adopt-vm"]);
    assert!(
        !after.status.success() && String::from_utf8_lossy(&after.stderr).contains("NotFound"),
        "{after:?}"
    );
}
