//! Engine-level unit tests: each filter, each score, bookkeeping, explanations.

use std::collections::BTreeMap;

use yun_fleet::{Qos, Resources, Scheduling, SpreadConstraint, Topology};

use crate::{Engine, EngineConfig, EngineError, HostSpec, HostState, Policy, Ratios, Request};

fn res(cpus: u32, memory_mib: u64, disk_gib: u64) -> Resources {
    Resources {
        cpus,
        memory_mib,
        disk_gib,
    }
}

fn host(name: &str, cpus: u32, mem: u64, labels: &[(&str, &str)]) -> HostSpec {
    HostSpec {
        name: name.into(),
        capacity: res(cpus, mem, 100),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ratios: Ratios::default(),
    }
}

fn engine(policy: Policy, hosts: Vec<HostSpec>) -> Engine {
    let mut e = Engine::new(EngineConfig {
        default_policy: policy,
        ..EngineConfig::default()
    });
    for h in hosts {
        e.upsert_host(h);
    }
    e
}

fn req(cpus: u32, mem: u64) -> Request {
    Request {
        resources: res(cpus, mem, 1),
        ..Request::default()
    }
}

fn with(mut r: Request, s: Scheduling) -> Request {
    r.scheduling = s;
    r
}

/// Decides and commits, as the controller does; returns the host.
fn place(e: &mut Engine, uid: &str, r: &Request) -> Option<String> {
    let d = e.decide(r).ok()?;
    e.assign(uid, &d.host, r.resources, &r.scheduling).unwrap();
    Some(d.host)
}

#[test]
fn spread_prefers_the_emptiest_and_binpack_the_fullest() {
    for (policy, want) in [(Policy::Spread, "b"), (Policy::BinPack, "a")] {
        let mut e = engine(
            policy,
            vec![host("a", 8, 8192, &[]), host("b", 8, 8192, &[])],
        );
        e.assign("x", "a", res(1, 4096, 1), &Scheduling::default())
            .unwrap();
        let d = e.decide(&req(1, 1024)).unwrap();
        assert_eq!(d.host, want, "{policy:?}");
        assert_eq!(e.decide_naive(&req(1, 1024)).unwrap().host, want);
    }
}

#[test]
fn request_policy_overrides_the_default_and_ties_go_to_the_smallest_name() {
    let e = engine(
        Policy::Spread,
        vec![host("b", 8, 8192, &[]), host("a", 8, 8192, &[])],
    );
    let d = e.decide(&req(1, 1024)).unwrap();
    assert_eq!(d.host, "a");
    let mut bin = req(1, 1024);
    bin.policy = Some(Policy::BinPack);
    assert_eq!(e.decide(&bin).unwrap().host, "a");
    // Dominant share after placement: memory 1024/8192.
    assert_eq!(e.decide(&req(1, 1024)).unwrap().score, 1.0 - 0.125);
}

#[test]
fn only_ready_hosts_take_placements_and_failures_explain_themselves() {
    let mut e = engine(
        Policy::Spread,
        vec![
            host("a", 8, 8192, &[]),
            host("b", 8, 8192, &[("zone", "z2")]),
            host("c", 8, 8192, &[]),
        ],
    );
    e.set_state("c", HostState::Cordoned).unwrap();
    let mut r = req(1, 512);
    r.selector = BTreeMap::from([("zone".into(), "z1".into())]);
    let err = e.decide(&r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 hosts fit, 1 cordoned, 2 node selector mismatch"
    );
    assert_eq!(e.decide_naive(&r).unwrap_err(), err);
    e.set_state("a", HostState::NotReady).unwrap();
    e.set_state("b", HostState::Maintenance).unwrap();
    let err = e.decide(&req(1, 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 hosts fit, 1 not ready, 1 cordoned, 1 in maintenance"
    );
    e.set_state("b", HostState::Ready).unwrap();
    assert_eq!(e.decide(&req(1, 1)).unwrap().host, "b");
    assert_eq!(e.state("b"), Some(HostState::Ready));
    assert_eq!(
        e.set_state("zz", HostState::Ready),
        Err(EngineError::UnknownHost("zz".into()))
    );
    let empty = Engine::new(EngineConfig::default());
    assert_eq!(
        empty.decide(&req(1, 1)).unwrap_err().to_string(),
        "no hosts are registered on the fleet bus"
    );
}

#[test]
fn selector_index_follows_allocations_and_labels() {
    let mut e = engine(
        Policy::BinPack,
        vec![
            host("a", 8, 4096, &[("gpu", "yes")]),
            host("b", 8, 8192, &[("gpu", "yes")]),
            host("c", 8, 8192, &[]),
        ],
    );
    let mut r = req(1, 3072);
    r.selector = BTreeMap::from([("gpu".into(), "yes".into())]);
    assert_eq!(place(&mut e, "1", &r).as_deref(), Some("a"));
    // "a" has 1024 left: the selector index must have moved it below the request.
    assert_eq!(place(&mut e, "2", &r).as_deref(), Some("b"));
    assert_eq!(place(&mut e, "3", &r).as_deref(), Some("b"));
    let err = e.decide(&r).unwrap_err();
    assert_eq!((err.memory, err.selector), (2, 1));
    // Relabelling "c" puts it in the class.
    e.upsert_host(host("c", 8, 8192, &[("gpu", "yes")]));
    assert_eq!(place(&mut e, "4", &r).as_deref(), Some("c"));
    assert_eq!(e.unassign("2").as_deref(), Some("b"));
    assert_eq!(e.decide(&r).unwrap().host, "b");
    r.selector.insert("never".into(), "seen".into());
    assert_eq!(e.decide(&r).unwrap_err().selector, 3);
}

#[test]
fn qos_classes_share_a_host_by_the_model() {
    // 4 cpus at ratio 4: 16 burstable cpus, or guaranteed cpus that leave backing for them.
    let mut e = engine(Policy::Spread, vec![host("a", 4, 65536, &[])]);
    let burst = req(10, 1);
    let guar = with(
        req(2, 1),
        Scheduling {
            qos: Qos::Guaranteed,
            ..Scheduling::default()
        },
    );
    assert!(place(&mut e, "b", &burst).is_some());
    // 10 burstable need ⌈10/4⌉ = 3 unreserved cpus: only 1 guaranteed cpu fits.
    assert_eq!(e.decide(&guar).unwrap_err().cpu, 1);
    let one = with(req(1, 1), guar.scheduling.clone());
    assert!(place(&mut e, "g", &one).is_some());
    // (4 − 1)·4 = 12 burstable: 2 more fit, 3 do not.
    assert!(e.fits_now("a", &req(2, 1)));
    assert!(!e.fits_now("a", &req(3, 1)));
    let a = e.allocation("a").unwrap();
    assert_eq!((a.total.cpus, a.guaranteed.cpus, a.vms), (11, 1, 2));
    assert_eq!(a.burstable().cpus, 10);
}

#[test]
fn affinity_follows_the_first_member() {
    let names = ["a", "b", "c"];
    let mut e = engine(
        Policy::Spread,
        names.iter().map(|n| host(n, 8, 8192, &[])).collect(),
    );
    let r = with(
        req(1, 512),
        Scheduling {
            affinity_group: Some("db".into()),
            ..Scheduling::default()
        },
    );
    let first = place(&mut e, "1", &r).unwrap();
    for uid in ["2", "3"] {
        assert_eq!(place(&mut e, uid, &r).unwrap(), first);
    }
    let big = with(req(1, 8192), r.scheduling.clone());
    let err = e.decide(&big).unwrap_err();
    assert_eq!((err.memory, err.affinity), (1, 2));
    for uid in ["1", "2", "3"] {
        e.unassign(uid);
    }
    assert!(e.decide(&big).is_ok(), "an empty group constrains nothing");
}

#[test]
fn anti_affinity_never_shares_a_host() {
    let mut e = engine(
        Policy::BinPack,
        vec![host("a", 8, 8192, &[]), host("b", 8, 8192, &[])],
    );
    let r = with(
        req(1, 512),
        Scheduling {
            anti_affinity_group: Some("etcd".into()),
            ..Scheduling::default()
        },
    );
    let h1 = place(&mut e, "1", &r).unwrap();
    let h2 = place(&mut e, "2", &r).unwrap();
    assert_ne!(h1, h2);
    let err = e.decide(&r).unwrap_err();
    assert_eq!(err.to_string(), "0/2 hosts fit, 2 anti-affinity conflict");
    e.unassign("1");
    assert_eq!(place(&mut e, "3", &r).unwrap(), h1);
}

fn zoned(zones: &[(&str, &str)]) -> Vec<HostSpec> {
    zones
        .iter()
        .map(|(name, zone)| {
            let labels: &[(&str, &str)] = if zone.is_empty() {
                &[]
            } else {
                &[(Topology::Zone.label(), zone)]
            };
            host(name, 64, 1 << 20, labels)
        })
        .collect()
}

fn spread_req(group: &str, max_skew: u32) -> Request {
    with(
        req(1, 512),
        Scheduling {
            spread: Some(SpreadConstraint {
                group: group.into(),
                topology: Topology::Zone,
                max_skew,
            }),
            ..Scheduling::default()
        },
    )
}

#[test]
fn spread_keeps_skew_over_all_known_domains() {
    let mut e = engine(
        Policy::BinPack,
        zoned(&[
            ("a1", "z1"),
            ("a2", "z1"),
            ("b1", "z2"),
            ("c1", "z3"),
            ("n", ""),
        ]),
    );
    let r = spread_req("web", 1);
    let mut zones = Vec::new();
    for i in 0..6 {
        let h = place(&mut e, &i.to_string(), &r).unwrap();
        assert_ne!(h, "n", "unlabelled hosts are in no domain");
        zones.push(h);
    }
    let counts = e.spread_counts("web", Topology::Zone);
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    // A cordoned zone still counts: with z3 out, z1 and z2 may run one ahead of it only.
    e.set_state("c1", HostState::Cordoned).unwrap();
    assert!(place(&mut e, "6", &r).is_some());
    assert!(place(&mut e, "7", &r).is_some());
    let err = e.decide(&r).unwrap_err();
    assert_eq!((err.cordoned, err.spread), (1, 4));
    assert!(e.decide(&spread_req("web", 2)).is_ok());
    assert!(
        e.decide(&spread_req("other", 0)).is_err(),
        "skew 0 never fits"
    );
}

#[test]
fn relabelling_a_host_moves_its_spread_members() {
    let mut e = engine(Policy::Spread, zoned(&[("a", "z1"), ("b", "z2")]));
    let r = spread_req("g", 1);
    e.assign("1", "a", r.resources, &r.scheduling).unwrap();
    e.upsert_host(zoned(&[("a", "z9")]).remove(0));
    let counts = e.spread_counts("g", Topology::Zone);
    assert_eq!(counts, BTreeMap::from([("z9".to_string(), 1)]));
    assert_eq!(
        e.allocation("a").unwrap().vms,
        1,
        "allocation survives the update"
    );
    assert_eq!(e.decide(&r).unwrap().host, "b");
}

#[test]
fn image_locality_adds_its_weight() {
    let mut e = engine(
        Policy::Spread,
        vec![host("a", 8, 8192, &[]), host("b", 8, 8192, &[])],
    );
    e.assign("x", "b", res(1, 512, 1), &Scheduling::default())
        .unwrap();
    let mut r = req(1, 512);
    r.image = Some("sha-1".into());
    assert_eq!(e.decide(&r).unwrap().host, "a");
    e.set_images("b", ["sha-1", "sha-2", "sha-1"]).unwrap();
    let d = e.decide(&r).unwrap();
    assert_eq!(d.host, "b");
    assert!((d.score - (1.0 - 1024.0 / 8192.0 + 0.1)).abs() < 1e-12);
    e.set_images("b", ["sha-2"]).unwrap();
    assert_eq!(e.decide(&r).unwrap().host, "a");
    assert!(e.set_images("zz", ["x"]).is_err());
}

#[test]
fn assignments_are_idempotent_and_hosts_with_vms_stay() {
    let mut e = engine(
        Policy::Spread,
        vec![host("a", 8, 8192, &[]), host("b", 8, 8192, &[])],
    );
    let s = Scheduling::default();
    e.set_state("a", HostState::NotReady).unwrap();
    e.assign("1", "a", res(2, 1024, 1), &s).unwrap();
    e.assign("1", "a", res(2, 1024, 1), &s).unwrap();
    assert_eq!(e.allocation("a").unwrap().vms, 1);
    assert_eq!(
        e.assign("1", "b", res(2, 1024, 1), &s),
        Err(EngineError::AlreadyAssigned {
            uid: "1".into(),
            host: "a".into()
        })
    );
    assert!(matches!(
        e.assign("2", "zz", res(1, 1, 1), &s),
        Err(EngineError::UnknownHost(_))
    ));
    e.assign("2", "a", res(1, 1, 1), &s).unwrap();
    e.assign("3", "a", res(1, 1, 1), &s).unwrap();
    assert_eq!((e.host_of("1"), e.vm_count()), (Some("a"), 3));
    assert_eq!(
        e.remove_host("a"),
        Err(EngineError::HostHasVms {
            host: "a".into(),
            vms: 3
        })
    );
    assert_eq!(e.unassign("1").as_deref(), Some("a"));
    assert_eq!(e.unassign("1"), None);
    let mut on_a = e.vms_on("a");
    on_a.sort();
    assert_eq!(on_a, ["2", "3"]);
    e.unassign("3");
    e.unassign("2");
    assert_eq!(e.allocation("a").unwrap(), crate::Allocation::default());
    e.remove_host("a").unwrap();
    assert_eq!((e.host_count(), e.state("a")), (1, None));
    e.upsert_host(host("c", 8, 8192, &[]));
    e.set_state("b", HostState::NotReady).unwrap();
    assert_eq!(
        e.decide(&req(1, 1)).unwrap().host,
        "c",
        "the freed slot is reused cleanly"
    );
}

#[test]
fn upsert_keeps_allocation_and_reindexes_new_capacity() {
    let mut e = engine(Policy::Spread, vec![host("a", 8, 4096, &[])]);
    e.assign("1", "a", res(1, 4096, 1), &Scheduling::default())
        .unwrap();
    assert!(e.decide(&req(1, 1024)).is_err());
    e.upsert_host(host("a", 8, 8192, &[]));
    assert_eq!(e.allocation("a").unwrap().total.memory_mib, 4096);
    assert_eq!(e.decide(&req(1, 1024)).unwrap().host, "a");
    assert!(e.approx_heap_bytes() > 0);
}

#[test]
fn selectors_beyond_the_index_cap_still_decide_correctly() {
    let hosts = (0..140)
        .map(|i| {
            let v = format!("v{i}");
            host(&format!("h{i:03}"), 8, 8192, &[("app", v.as_str())])
        })
        .collect();
    let e = engine(Policy::BinPack, hosts);
    for i in (0..140).rev() {
        let mut r = req(1, 512);
        r.selector = BTreeMap::from([("app".into(), format!("v{i}"))]);
        assert_eq!(e.decide(&r).unwrap().host, format!("h{i:03}"));
    }
    e.verify_indexes().unwrap();
}

#[test]
fn decisions_can_run_from_several_threads() {
    let hosts = (0..64)
        .map(|i| host(&format!("h{i:02}"), 8, 8192, &[("rack", ["a", "b"][i % 2])]))
        .collect();
    let e = engine(Policy::Spread, hosts);
    std::thread::scope(|s| {
        for t in 0..4 {
            let e = &e;
            s.spawn(move || {
                for i in 0..50 {
                    let mut r = req(1, 512);
                    r.selector = BTreeMap::from([("rack".into(), ["a", "b"][(t + i) % 2].into())]);
                    let d = e.decide(&r).unwrap();
                    assert!(e.fits_now(&d.host, &r));
                }
            });
        }
    });
    e.verify_indexes().unwrap();
}

#[test]
fn a_spread_constraint_allowing_few_domains_searches_only_those() {
    // 12 racks of 2 hosts; members fill every rack but one, so with skew 1 only that rack is
    // allowed: the domain search must find it whatever the capacity order says.
    let mut specs = Vec::new();
    for rack in 0..12 {
        for i in 0..2 {
            let mut h = host(&format!("r{rack:02}-{i}"), 64, 1 << 20, &[]);
            h.labels
                .insert(Topology::Rack.label().into(), format!("rack{rack:02}"));
            specs.push(h);
        }
    }
    let mut e = Engine::new(EngineConfig {
        default_policy: Policy::BinPack,
        candidates_per_decision: 1,
        ..EngineConfig::default()
    });
    for s in specs {
        e.upsert_host(s);
    }
    let s = Scheduling {
        spread: Some(SpreadConstraint {
            group: "g".into(),
            topology: Topology::Rack,
            max_skew: 1,
        }),
        ..Scheduling::default()
    };
    for rack in 0..11 {
        let name = format!("r{rack:02}-0");
        e.assign(&format!("m{rack}"), &name, res(1, 1, 1), &s)
            .unwrap();
    }
    let r = with(req(1, 512), s);
    assert_eq!(e.decide(&r).unwrap().host, "r11-0");
    assert_eq!(e.decide_naive(&r).unwrap().host, "r11-0");
}
