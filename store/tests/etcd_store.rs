//! The etcd store against a real etcd: what a reconciler and `yunctl` rely on — identity minted
//! once, guarded updates, the status subresource, finalizers, cascading deletion, ordered
//! watches that report compaction, Events — and the typed interface over the API kinds.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use yun_store::{
    Deleted, Deletion, EtcdStore, EventType, KindInfo, ObjectName, ObjectStore, StoreError,
    WatchEventType,
};
use yun_testkit::EtcdServer;

fn kind(kind: &str, plural: &str) -> KindInfo {
    KindInfo {
        kind: kind.into(),
        api_version: "yun.dev/v1alpha1".into(),
        plural: plural.into(),
        namespaced: true,
    }
}

fn vms() -> KindInfo {
    kind("VirtualMachine", "virtualmachines")
}

fn vm(name: &str, cpu: u32) -> Value {
    json!({
        "apiVersion": "yun.dev/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "img", "cpu": cpu, "memoryMiB": 128}
    })
}

fn owned_by(mut obj: Value, owner: &Value) -> Value {
    obj["metadata"]["ownerReferences"] = json!([{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
    }]);
    obj
}

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("every returned object carries a resourceVersion")
}

async fn store(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()], None).await.unwrap()
}

fn name(n: &str) -> ObjectName {
    ObjectName::namespaced("default", n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_replace_status_and_finalizers_behave_as_the_api_server() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store = store(&etcd).await;
    let k = vms();

    let created = store.create_raw(&k, &vm("web-1", 1)).await.unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
    assert_eq!(created["metadata"]["generation"], 1);
    let again = store.create_raw(&k, &vm("web-1", 2)).await.unwrap_err();
    assert!(matches!(again, StoreError::AlreadyExists { .. }), "{again}");

    // A spec change bumps the generation; a stale resourceVersion is a conflict.
    let mut bigger = created.clone();
    bigger["spec"]["cpu"] = json!(2);
    let replaced = store.replace_raw(&k, &bigger).await.unwrap();
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(replaced["metadata"]["uid"], uid.as_str());
    assert!(rv(&replaced) > rv(&created));
    let stale = store.replace_raw(&k, &bigger).await.unwrap_err();
    assert!(stale.is_conflict(), "{stale}");
    // Unchanged: no write, same resourceVersion.
    let same = store.replace_raw(&k, &replaced).await.unwrap();
    assert_eq!(rv(&same), rv(&replaced));

    // Status subresource: only the status changes, the generation does not.
    let mut reported = replaced.clone();
    reported["status"] = json!({"phase": "Running", "observedGeneration": 2});
    reported["spec"]["cpu"] = json!(64);
    let with_status = store.replace_status_raw(&k, &reported).await.unwrap();
    assert_eq!(with_status["status"]["phase"], "Running");
    assert_eq!(with_status["spec"]["cpu"], 2);
    assert_eq!(with_status["metadata"]["generation"], 2);
    // A spec replace keeps the status it did not send.
    let mut relabelled = with_status.clone();
    relabelled["metadata"]["labels"] = json!({"app": "web"});
    relabelled.as_object_mut().unwrap().remove("status");
    let kept = store.replace_raw(&k, &relabelled).await.unwrap();
    assert_eq!(kept["status"]["phase"], "Running");

    // Finalizers hold a deletion until they are removed.
    let mut held = kept.clone();
    held["metadata"]["finalizers"] = json!(["yun.dev/cleanup"]);
    let held = store.replace_raw(&k, &held).await.unwrap();
    let Deleted::Pending(marked) = store.delete_raw(&k, &name("web-1")).await.unwrap() else {
        panic!("an object with finalizers is only marked");
    };
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let mut sneaky = marked.clone();
    sneaky["metadata"]["finalizers"] = json!(["yun.dev/cleanup", "yun.dev/more"]);
    let refused = store.replace_raw(&k, &sneaky).await.unwrap_err();
    assert!(
        refused.to_string().contains("metadata.finalizers"),
        "{refused}"
    );
    assert!(store.get_raw(&k, &name("web-1")).await.unwrap().is_some());
    let mut released = marked.clone();
    released["metadata"]["finalizers"] = json!([]);
    store.replace_raw(&k, &released).await.unwrap();
    assert!(store.get_raw(&k, &name("web-1")).await.unwrap().is_none());
    assert!(rv(&held) > 0);

    // Events fold repeats.
    let about = yun_store::InvolvedObject {
        kind: "VirtualMachine".into(),
        namespace: Some("default".into()),
        name: "web-1".into(),
        uid: uid.clone(),
    };
    for _ in 0..3 {
        store
            .publish_event(
                &about,
                EventType::Normal,
                "Scheduled",
                "placed on host-a",
                "test",
            )
            .await
            .unwrap();
    }
    store
        .publish_event(&about, EventType::Warning, "Failed", "disk missing", "test")
        .await
        .unwrap();
    let events = store.events_for(&uid).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let scheduled = events.iter().find(|e| e.reason == "Scheduled").unwrap();
    assert_eq!(scheduled.count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_owner_cascades_to_what_it_owns() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store = store(&etcd).await;
    let pools = kind("AppServerPool", "appserverpools");
    let volumes = kind("Volume", "volumes");
    let pool = store
        .create_raw(
            &pools,
            &json!({"apiVersion": "yun.dev/v1alpha1", "kind": "AppServerPool",
                    "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2}}),
        )
        .await
        .unwrap();
    let a = store
        .create_raw(&vms(), &owned_by(vm("web-a", 1), &pool))
        .await
        .unwrap();
    let mut b = owned_by(vm("web-b", 1), &pool);
    b["metadata"]["finalizers"] = json!(["yun.dev/release"]);
    store.create_raw(&vms(), &b).await.unwrap();
    let disk = json!({"apiVersion": "yun.dev/v1alpha1", "kind": "Volume",
                      "metadata": {"name": "web-a-data", "namespace": "default"}, "spec": {}});
    store
        .create_raw(&volumes, &owned_by(disk, &a))
        .await
        .unwrap();
    store.create_raw(&vms(), &vm("unowned", 1)).await.unwrap();

    // An owner that does not exist is refused, naming the field.
    let mut ghost = pool.clone();
    ghost["metadata"]["uid"] = json!("no-such-uid");
    let err = store
        .create_raw(&vms(), &owned_by(vm("orphan", 1), &ghost))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("metadata.ownerReferences[0].uid"),
        "{err}"
    );

    assert!(matches!(
        store.delete_raw(&pools, &name("web")).await.unwrap(),
        Deleted::Gone(_)
    ));
    assert!(
        store
            .get_raw(&vms(), &name("web-a"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_raw(&volumes, &name("web-a-data"))
            .await
            .unwrap()
            .is_none(),
        "the cascade goes down: the pool's VM's volume is gone too"
    );
    let b = store
        .get_raw(&vms(), &name("web-b"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        b["metadata"]["deletionTimestamp"].is_string(),
        "a dependent with finalizers is marked, not removed"
    );
    assert!(
        store
            .get_raw(&vms(), &name("unowned"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_list_sees_every_later_change_in_order_and_reports_compaction() {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store = store(&etcd).await;
    let k = vms();
    store.create_raw(&k, &vm("before", 1)).await.unwrap();
    let listed = store.list_raw(&k, Some("default")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let mut watch = store
        .watch_raw(&k, Some("default"), listed.resource_version)
        .await
        .unwrap();

    let created = store.create_raw(&k, &vm("web-1", 1)).await.unwrap();
    let mut changed = created.clone();
    changed["spec"]["cpu"] = json!(2);
    store.replace_raw(&k, &changed).await.unwrap();
    store.delete_raw(&k, &name("web-1")).await.unwrap();
    let mut other_ns = vm("elsewhere", 1);
    other_ns["metadata"]["namespace"] = json!("team-b");
    store.create_raw(&k, &other_ns).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("events arrive")
            .unwrap();
        seen.extend(batch);
    }
    let kinds: Vec<_> = seen.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            WatchEventType::Added,
            WatchEventType::Modified,
            WatchEventType::Deleted
        ]
    );
    assert_eq!(seen[1].object["spec"]["cpu"], 2);
    assert_eq!(
        seen[2].object["metadata"]["name"], "web-1",
        "Deleted carries the last state"
    );

    // A watch from before the compaction point is Gone: list again.
    let revision = store.list_raw(&k, None).await.unwrap().resource_version;
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    client.compact(revision, None).await.unwrap();
    let mut old = store.watch_raw(&k, None, 1).await.unwrap();
    let err = old.next().await.unwrap_err();
    assert!(matches!(err, StoreError::Gone { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_kinds_go_through_the_same_store() {
    use yun_crds::VirtualMachine;
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let store = store(&etcd).await;
    let manifest = yun_crds::parse_manifests(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {name: typed}\n\
         spec: {image: img, cpu: 1, memoryMiB: 128}\n",
    )
    .unwrap();
    let Some(yun_crds::Manifest::VirtualMachine(vm)) = manifest.into_iter().next() else {
        panic!("one VirtualMachine");
    };
    let created: VirtualMachine = store.create(&vm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let mut with_status = created.clone();
    with_status.status = Some(yun_crds::VirtualMachineStatus {
        host: Some("host-a".into()),
        ..Default::default()
    });
    let written: VirtualMachine = store.replace_status(&with_status).await.unwrap();
    assert_eq!(
        written.status.and_then(|s| s.host).as_deref(),
        Some("host-a")
    );
    let listed = store.list::<VirtualMachine>(None).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(KindInfo::of::<VirtualMachine>().plural, "virtualmachines");
    let gone: Deletion<VirtualMachine> = store.delete(&ObjectName::of(&created)).await.unwrap();
    assert!(matches!(gone, Deletion::Gone(_)));
    assert!(
        store
            .get::<VirtualMachine>(&ObjectName::of(&created))
            .await
            .unwrap()
            .is_none()
    );
}
