//! While etcd is down the agent leaves guests exactly as they are and reports itself unhealthy;
//! when etcd returns it reconnects and acts on changes again.

use std::time::Duration;
use yun_integration::{BOOT_TIMEOUT, Cluster, domain_exists, domain_id, domain_state, qemu_pid};
use yun_testkit::wait_until;

#[test]
fn etcd_outage_is_fail_static() {
    let mut cluster = Cluster::start();
    let manifest = cluster.apply_vm("static-vm", "static-marker");
    let vm = cluster.wait_running("static-vm", BOOT_TIMEOUT);
    cluster.wait_ready_line(&vm.uid, Duration::from_secs(90));
    let domain = vm.domain_name();
    let id_before = domain_id(&domain).expect("domain id");
    let pid_before = qemu_pid(&domain).expect("qemu pid");
    assert_eq!(cluster.agent_health(), Some(200));
    assert_eq!(cluster.controller_health(), Some(200));

    cluster.etcd.stop().expect("stop etcd");
    let unhealthy = wait_until(
        "agent /healthz 503 during the outage",
        Duration::from_secs(30),
        || cluster.agent_health() == Some(503),
    );
    assert!(
        unhealthy.is_ok(),
        "healthz: {:?}\n{}",
        cluster.agent_health(),
        cluster.diagnostics()
    );
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        cluster.agent_health(),
        Some(503),
        "still unhealthy while etcd is down"
    );
    assert!(
        cluster.agent_alive(),
        "agent keeps running without etcd\n{}",
        cluster.diagnostics()
    );
    assert_eq!(
        cluster.controller_health(),
        Some(503),
        "the controller reports the lost fleet bus too"
    );
    assert_eq!(domain_state(&domain).as_deref(), Some("running"));
    assert_eq!(domain_id(&domain), Some(id_before));
    assert_eq!(qemu_pid(&domain), Some(pid_before));

    cluster.etcd.start_again().expect("restart etcd");
    let healthy = wait_until(
        "agent /healthz 200 after etcd returns",
        Duration::from_secs(30),
        || cluster.agent_health() == Some(200),
    );
    assert!(
        healthy.is_ok(),
        "healthz: {:?}\n{}",
        cluster.agent_health(),
        cluster.diagnostics()
    );
    let controller_back = wait_until(
        "controller /healthz 200 after etcd returns",
        Duration::from_secs(30),
        || cluster.controller_health() == Some(200),
    );
    assert!(
        controller_back.is_ok(),
        "controller healthz: {:?}",
        cluster.controller_health()
    );
    let running = wait_until(
        "status Running after the outage",
        Duration::from_secs(30),
        || {
            cluster
                .vm_status("static-vm")
                .is_some_and(|v| v["status"]["phase"] == "Running")
        },
    );
    assert!(
        running.is_ok(),
        "status: {:?}\n{}",
        cluster.vm_status("static-vm"),
        cluster.diagnostics()
    );
    let status = cluster.vm_status("static-vm").expect("status");
    assert_eq!(status["status"]["domainUUID"], vm.domain_uuid.as_str());
    assert_eq!(
        domain_id(&domain),
        Some(id_before),
        "not restarted by the reconnect"
    );
    assert_eq!(qemu_pid(&domain), Some(pid_before));
    assert_eq!(cluster.ready_lines(&vm.uid).len(), 1, "guest booted once");

    // The agent acts on the bus again: deleting the manifest removes the domain.
    std::fs::remove_file(&manifest).expect("delete manifest");
    let removed = wait_until(
        "domain removed after reconnect",
        Duration::from_secs(60),
        || !domain_exists(&domain) && cluster.vm_status("static-vm").is_none(),
    );
    assert!(
        removed.is_ok(),
        "domain exists={}\n{}",
        domain_exists(&domain),
        cluster.diagnostics()
    );
}
