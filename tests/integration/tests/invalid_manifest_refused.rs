//! An invalid VirtualMachine is refused by `apply` and skipped by the running controller, with
//! the offending field named, and nothing of it reaches the fleet bus.

use std::time::Duration;
use yun_integration::{Cluster, etcd_keys};

const INVALID_VM: &str = "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: broken-vm\n  namespace: default\nspec:\n  image: yun-test\n  cpu: 0\n  memoryMiB: 256\n";

#[test]
fn invalid_manifest_refused() {
    let mut cluster = Cluster::start();
    let source = cluster.work_dir().join("broken.yaml");
    std::fs::write(&source, INVALID_VM).expect("write invalid manifest");

    let out = cluster.apply(&source);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply of cpu: 0 must fail");
    assert!(
        stderr.contains("spec.cpu"),
        "error names the field: {stderr}"
    );
    assert!(
        !cluster.manifests.path().join("broken.yaml").exists(),
        "refused file not copied"
    );
    let leftovers: Vec<_> = std::fs::read_dir(cluster.manifests.path())
        .expect("read manifests dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        leftovers,
        vec!["vmimage.yaml".to_owned()],
        "only the image manifest is there"
    );

    // Bypass apply: drop the file straight into the watched directory.
    std::fs::write(cluster.manifests.path().join("broken.yaml"), INVALID_VM)
        .expect("write into manifests dir");
    // Passes run every 0.5 s; give the controller many of them.
    std::thread::sleep(Duration::from_secs(5));
    let endpoint = cluster.etcd.endpoint();
    let stored = etcd_keys(&endpoint, "/yun/store/v1/objects/virtualmachines/");
    assert!(
        stored.is_empty(),
        "an invalid manifest never reaches the store: {stored:?}"
    );
    let placements = etcd_keys(&endpoint, "/yun/v1/placements/");
    assert!(placements.is_empty(), "nothing placed: {placements:?}");
    let desired = etcd_keys(&endpoint, &format!("/yun/v1/hosts/{}/vms/", cluster.host));
    assert!(desired.is_empty(), "nothing sent to the agent: {desired:?}");
    assert!(
        cluster.controller_alive(),
        "controller survives a bad manifest\n{}",
        cluster.diagnostics()
    );
    let log = std::fs::read_to_string(cluster.controller_log()).expect("controller log");
    assert!(
        log.lines()
            .any(|l| l.contains("broken.yaml") && l.contains("spec.cpu")),
        "controller log names file and field:\n{}",
        cluster.diagnostics()
    );
}
