use super::*;
use serde_json::json;

fn network(name: &str, deleting: bool) -> Arc<Network> {
    let mut n: Network = serde_json::from_value(json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "Network",
        "metadata": {"name": name, "namespace": "t", "generation": 1,
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"vxlan": {"vni": 100}, "cidr": "10.0.0.0/24"},
    }))
    .unwrap();
    if deleting {
        n.metadata.deletion_timestamp = n.metadata.creation_timestamp.clone();
    }
    Arc::new(n)
}

fn group(name: &str) -> Arc<SecurityGroup> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "yun.dev/v1alpha1", "kind": "SecurityGroup",
            "metadata": {"name": name, "namespace": "t", "generation": 4},
            "spec": {"egress": [{}]},
        }))
        .unwrap(),
    )
}

/// A VM created at minute `created` on network `a` in group `web`.
fn vm(name: &str, created: u32) -> VirtualMachine {
    serde_json::from_value(json!({
        "apiVersion": "yun.dev/v1alpha1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "t", "uid": format!("uid-{name}"),
                     "generation": 1,
                     "creationTimestamp": format!("2025-01-01T00:{created:02}:00Z")},
        "spec": {"image": "img", "cpu": 1, "memoryMiB": 128,
                 "networks": [{"network": "a"}], "securityGroups": ["web"]},
    }))
    .unwrap()
}

fn ip_of(snap: &NetSnapshot, name: &str) -> Ipv4Addr {
    let (nics, groups) = snap
        .assignment(&format!("uid-{name}"), Some(1))
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert_eq!(groups, ["t/web"]);
    assert_eq!(nics.len(), 1);
    nics[0].ip
}

fn compute(vms: &[VirtualMachine], last: Option<&NetSnapshot>, deleting_net: bool) -> NetSnapshot {
    let vms: Vec<Arc<VirtualMachine>> = vms.iter().cloned().map(Arc::new).collect();
    NetSnapshot::compute(
        &[network("a", deleting_net)],
        &[group("web")],
        &vms,
        &BTreeMap::new(),
        last,
    )
}

#[test]
fn vms_get_distinct_addresses_that_stay_across_passes() {
    let first = compute(&[vm("a1", 1), vm("a2", 2)], None, false);
    let (a1, a2) = (ip_of(&first, "a1"), ip_of(&first, "a2"));
    assert_eq!((a1, a2), ([10, 0, 0, 2].into(), [10, 0, 0, 3].into()));
    let second = compute(&[vm("a2", 2), vm("a1", 1)], Some(&first), false);
    assert_eq!((ip_of(&second, "a1"), ip_of(&second, "a2")), (a1, a2));
    assert_eq!(second.pass.held_addresses("t/a").len(), 2);
    assert_eq!(second.pass.group_member_count("t/web"), 2);
}

#[test]
fn a_new_older_vm_never_takes_an_address_promised_to_an_unplaced_one() {
    // `late` got .2 in the first pass and is not placed yet; `early` is older by creation
    // time but new to the pass, so it must not take .2.
    let first = compute(&[vm("late", 5)], None, false);
    assert_eq!(ip_of(&first, "late"), Ipv4Addr::from([10, 0, 0, 2]));
    let second = compute(&[vm("early", 1), vm("late", 5)], Some(&first), false);
    assert_eq!(ip_of(&second, "late"), Ipv4Addr::from([10, 0, 0, 2]));
    assert_eq!(ip_of(&second, "early"), Ipv4Addr::from([10, 0, 0, 3]));
}

#[test]
fn the_address_in_a_vms_status_is_kept_when_the_controller_restarts() {
    let mut v = vm("web", 1);
    v.status = Some(
        serde_json::from_value(json!({"interfaces": [
            {"network": "a", "ip": "10.0.0.9", "mac": "52:54:00:00:00:01"}]}))
        .unwrap(),
    );
    let snap = compute(&[vm("new", 0), v], None, false);
    assert_eq!(ip_of(&snap, "web"), Ipv4Addr::from([10, 0, 0, 9]));
    assert_eq!(ip_of(&snap, "new"), Ipv4Addr::from([10, 0, 0, 2]));
}

#[test]
fn a_spec_change_waits_for_the_pass_that_sees_it() {
    let snap = compute(&[vm("web", 1)], None, false);
    let err = snap.assignment("uid-web", Some(2)).unwrap_err();
    assert_eq!(err.reason, NETWORK_NOT_READY);
    assert!(err.message.contains("waiting"), "{}", err.message);
    assert!(snap.assignment("uid-other", Some(1)).is_err());
    let handle = NetHandle::default();
    assert_eq!(
        handle.assignment("uid-web", Some(1)).unwrap_err().reason,
        NETWORK_NOT_READY
    );
    handle.set(snap);
    assert!(handle.assignment("uid-web", Some(1)).is_ok());
}

#[test]
fn users_include_deleting_vms_which_get_no_new_addresses() {
    let mut gone = vm("gone", 1);
    gone.metadata.deletion_timestamp = gone.metadata.creation_timestamp.clone();
    let snap = compute(&[gone, vm("web", 2)], None, false);
    assert_eq!(snap.users("t/a"), ["gone", "web"]);
    assert_eq!(snap.users("t/web"), ["gone", "web"]);
    assert!(snap.users("t/other").is_empty());
    assert!(snap.assignment("uid-gone", Some(1)).is_err());
    assert_eq!(ip_of(&snap, "web"), Ipv4Addr::from([10, 0, 0, 2]));
    assert!(snap.saw("t/a", Some(1)) && snap.saw("t/web", Some(4)));
    assert!(!snap.saw("t/a", Some(2)) && !snap.saw("t/nope", Some(1)));
}

#[test]
fn a_network_being_deleted_serves_its_holders_and_no_one_new() {
    let first = compute(&[vm("old", 1)], None, false);
    let held = ip_of(&first, "old");
    let snap = compute(&[vm("old", 1), vm("new", 2)], Some(&first), true);
    assert_eq!(ip_of(&snap, "old"), held);
    let err = snap.assignment("uid-new", Some(1)).unwrap_err();
    assert_eq!(err.reason, NETWORK_NOT_READY);
    assert!(err.message.contains("being deleted"), "{}", err.message);
    assert!(snap.pass.catalog.networks.contains_key("t/a"));
}

#[test]
fn a_vm_that_cannot_get_all_its_nics_holds_none_of_their_addresses() {
    // `x` is older, so it goes first; its second network does not exist.
    let mut x = vm("x", 1);
    x.spec.networks =
        serde_json::from_value(json!([{"network": "a"}, {"network": "missing"}])).unwrap();
    let snap = compute(&[x, vm("y", 2)], None, false);
    let err = snap.assignment("uid-x", Some(1)).unwrap_err();
    assert!(
        err.message.contains("missing does not exist"),
        "{}",
        err.message
    );
    assert_eq!(ip_of(&snap, "y"), Ipv4Addr::from([10, 0, 0, 2]));
    assert_eq!(snap.pass.held_addresses("t/a").len(), 1);
}
