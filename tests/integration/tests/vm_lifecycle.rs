//! A VM manifest becomes a running guest on our host, and deleting the manifest removes the
//! domain, its files, its status and its resource allocation. The controller's audit trail
//! records the placement and the release, verifies, exports, and names an edited record.

use std::time::Duration;
use yun_integration::{Cluster, domain_exists, etcd_get_json, etcd_keys};
use yun_testkit::wait_until;

#[test]
fn vm_lifecycle() {
    let cluster = Cluster::start();
    let marker = "lifecycle-marker-42";
    let manifest = cluster.apply_vm("life-vm", marker);

    let vm = cluster.wait_running("life-vm", yun_integration::BOOT_TIMEOUT);
    assert_eq!(vm.host, cluster.host, "placed on the only host");
    let domain = vm.domain_name();
    assert!(domain_exists(&domain), "{domain} defined in libvirt");

    let ready = cluster.wait_ready_line(&vm.uid, Duration::from_secs(90));
    assert!(
        ready.contains(&format!("instance-id={}", vm.uid)),
        "READY line names the VM uid {}: {ready}",
        vm.uid
    );
    assert!(ready.contains("hostname=life-vm"), "{ready}");
    assert!(ready.contains(&format!("marker={marker}")), "{ready}");

    let alloc_key = format!("/yun/v1/hosts/{}/alloc", cluster.host);
    let alloc = etcd_get_json(&cluster.etcd.endpoint(), &alloc_key).expect("alloc record");
    assert_eq!(alloc["vms"], 1, "{alloc}");
    assert_eq!(alloc["memory_mib"], 256, "{alloc}");

    // The template is now in our host's cache, and the VmImage status says so.
    let image_key = &yun_integration::store_key("vmimages", "yun-test");
    let cached = wait_until(
        "VmImage status lists our host",
        Duration::from_secs(15),
        || {
            etcd_get_json(&cluster.etcd.endpoint(), image_key).is_some_and(|r| {
                r["status"]["hosts"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|h| h == cluster.host.as_str()))
            })
        },
    );
    assert!(
        cached.is_ok(),
        "image status: {:?}",
        etcd_get_json(&cluster.etcd.endpoint(), image_key)
    );
    let image = etcd_get_json(&cluster.etcd.endpoint(), image_key).expect("image status");
    assert!(
        image["status"]["sizeBytes"].as_u64().is_some_and(|n| n > 0),
        "{image}"
    );

    std::fs::remove_file(&manifest).expect("delete manifest");
    let gone = wait_until("VM fully removed", Duration::from_secs(60), || {
        !domain_exists(&domain)
            && !cluster.vm_dir(&vm.uid).exists()
            && cluster.vm_status("life-vm").is_none()
    });
    if let Err(e) = gone {
        panic!(
            "{e}: domain exists={}, dir exists={}, status={:?}\n{}",
            domain_exists(&domain),
            cluster.vm_dir(&vm.uid).exists(),
            cluster.vm_status("life-vm"),
            cluster.diagnostics()
        );
    }
    let released = wait_until("allocation released", Duration::from_secs(20), || {
        etcd_get_json(&cluster.etcd.endpoint(), &alloc_key)
            .is_some_and(|a| a["vms"] == 0 && a["memory_mib"] == 0 && a["cpus"] == 0)
    });
    assert!(
        released.is_ok(),
        "alloc after delete: {:?}",
        etcd_get_json(&cluster.etcd.endpoint(), &alloc_key)
    );
    let endpoint = cluster.etcd.endpoint();
    assert!(etcd_keys(&endpoint, "/yun/v1/placements/").is_empty());
    assert!(etcd_keys(&endpoint, &format!("/yun/v1/hosts/{}/vms/", cluster.host)).is_empty());
    let report = format!("/yun/v1/hosts/{}/report/", cluster.host);
    assert!(
        etcd_keys(&endpoint, &report).is_empty(),
        "observed records left"
    );

    audit_trail_records_and_detects_tampering(&cluster, &vm.uid);
}

fn audit_trail_records_and_detects_tampering(cluster: &Cluster, uid: &str) {
    let verify = cluster.audit(&["verify"]);
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(out.contains("records verified"), "{out}");
    let export = cluster.audit(&["export"]);
    assert!(export.status.success());
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("export is JSON lines"))
        .collect();
    let of_vm = |action: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["details"]["uid"] == uid)
            .unwrap_or_else(|| panic!("no {action} record for {uid} in {records:?}"))
    };
    for action in ["vm.place", "vm.release"] {
        let r = of_vm(action);
        assert_eq!(r["object"], "VirtualMachine default/life-vm", "{r}");
        assert_eq!(r["actorKind"], "component", "{r}");
        assert_eq!(r["result"], "ok", "{r}");
        assert_eq!(r["details"]["host"], cluster.host.as_str(), "{r}");
    }

    // Someone rewrites the placement's host: verify fails naming that record.
    let text = std::fs::read_to_string(cluster.audit_log()).expect("read audit log");
    let line = text
        .lines()
        .position(|l| l.contains("\"vm.place\"") && l.contains(uid))
        .expect("placement line");
    let forged = text.replacen(
        &format!("\"host\":\"{}\"", cluster.host),
        "\"host\":\"elsewhere\"",
        1,
    );
    assert_ne!(forged, text);
    std::fs::write(cluster.audit_log(), forged).expect("write audit log");
    let verify = cluster.audit(&["verify"]);
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success(), "a forged log verified");
    assert!(err.contains(&format!("line {}", line + 1)), "{err}");
    assert!(
        cluster.audit(&["export"]).stdout.is_empty(),
        "a forged log was exported"
    );
}
