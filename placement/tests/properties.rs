//! Property tests: random fleets and random sequences of decide+assign / unassign / state and
//! label changes, checked against an independent model kept by the test.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use yun_placement::{
    Engine, EngineConfig, HostSpec, HostState, Policy, Qos, Ratios, Request, Resources, Scheduling,
    SpreadConstraint, Topology,
};

const STATES: [HostState; 4] = [
    HostState::Ready,
    HostState::Cordoned,
    HostState::Maintenance,
    HostState::NotReady,
];
const LEVELS: [Topology; 3] = [Topology::Zone, Topology::Rack, Topology::Power];
/// Spread group `i` always uses `LEVELS[i]` and `SKEWS[i]` (members of a group agree).
const SKEWS: [u32; 3] = [1, 2, 1];

#[derive(Debug, Clone)]
struct HostGen {
    cpus: u32,
    mem: u64,
    disk: u64,
    domains: [Option<u8>; 3],
    gold: Option<bool>,
    ratios: (f64, f64, f64),
    state: usize,
}

#[derive(Debug, Clone)]
struct ReqGen {
    cpus: u32,
    mem: u64,
    disk: u64,
    guaranteed: bool,
    affinity: Option<u8>,
    anti: Option<u8>,
    spread: Option<usize>,
    gold: Option<bool>,
    image: Option<u8>,
    policy: Option<bool>,
}

#[derive(Debug, Clone)]
enum Op {
    Place(ReqGen),
    Unassign(usize),
    SetState(usize, usize),
    Relabel(usize, Option<u8>, Option<bool>),
    Images(usize, u8),
}

fn host_gen() -> impl Strategy<Value = HostGen> {
    (
        (1u32..16, 1u64..24, 1u64..40),
        [
            proptest::option::weighted(0.8, 0u8..3),
            proptest::option::weighted(0.8, 0u8..5),
            proptest::option::weighted(0.8, 0u8..2),
        ],
        proptest::option::of(any::<bool>()),
        (
            prop::sample::select(vec![0.5, 1.0, 1.5, 2.0, 4.0]),
            prop::sample::select(vec![0.8, 1.0, 1.3]),
            prop::sample::select(vec![1.0, 2.0]),
        ),
        prop::sample::select(vec![0usize, 0, 0, 0, 0, 1, 2, 3]),
    )
        .prop_map(
            |((cpus, mem, disk), domains, gold, ratios, state)| HostGen {
                cpus,
                mem: mem * 512,
                disk,
                domains,
                gold,
                ratios,
                state,
            },
        )
}

fn req_gen() -> impl Strategy<Value = ReqGen> {
    (
        (0u32..6, 0u64..12, 0u64..8, any::<bool>()),
        (
            proptest::option::weighted(0.2, 0u8..2),
            proptest::option::weighted(0.3, 0u8..2),
            proptest::option::weighted(0.4, 0usize..3),
        ),
        (
            proptest::option::weighted(0.3, any::<bool>()),
            proptest::option::weighted(0.4, 0u8..3),
            proptest::option::of(any::<bool>()),
        ),
    )
        .prop_map(
            |((cpus, mem, disk, guaranteed), (affinity, anti, spread), (gold, image, policy))| {
                ReqGen {
                    cpus,
                    mem: mem * 256,
                    disk,
                    guaranteed,
                    affinity,
                    anti,
                    spread,
                    gold,
                    image,
                    policy,
                }
            },
        )
}

fn op_gen() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => req_gen().prop_map(Op::Place),
        2 => any::<usize>().prop_map(Op::Unassign),
        1 => (any::<usize>(), 0usize..4).prop_map(|(h, s)| Op::SetState(h, s)),
        1 => (any::<usize>(), proptest::option::of(0u8..3), proptest::option::of(any::<bool>()))
            .prop_map(|(h, z, gold)| Op::Relabel(h, z, gold)),
        1 => (any::<usize>(), 0u8..8).prop_map(|(h, m)| Op::Images(h, m)),
    ]
}

/// The test's own view of the fleet, from which every invariant is recomputed from scratch.
struct Model {
    specs: Vec<HostSpec>,
    states: Vec<HostState>,
    images: Vec<Vec<String>>,
    vms: Vec<(String, usize, Resources, Scheduling)>,
}

fn spec(i: usize, g: &HostGen) -> HostSpec {
    let mut labels = BTreeMap::new();
    for (l, d) in g.domains.iter().enumerate() {
        if let Some(d) = d {
            labels.insert(LEVELS[l].label().to_string(), format!("d{d}"));
        }
    }
    if let Some(gold) = g.gold {
        labels.insert("tier".into(), if gold { "gold" } else { "silver" }.into());
    }
    HostSpec {
        name: format!("h{i}"),
        capacity: Resources {
            cpus: g.cpus,
            memory_mib: g.mem,
            disk_gib: g.disk,
        },
        labels,
        ratios: Ratios {
            cpu: g.ratios.0,
            memory: g.ratios.1,
            disk: g.ratios.2,
        },
    }
}

fn request(r: &ReqGen) -> Request {
    Request {
        resources: Resources {
            cpus: r.cpus,
            memory_mib: r.mem,
            disk_gib: r.disk,
        },
        scheduling: Scheduling {
            qos: if r.guaranteed {
                Qos::Guaranteed
            } else {
                Qos::Burstable
            },
            affinity_group: r.affinity.map(|g| format!("aff{g}")),
            anti_affinity_group: r.anti.map(|g| format!("anti{g}")),
            spread: r.spread.map(|g| SpreadConstraint {
                group: format!("spr{g}"),
                topology: LEVELS[g],
                max_skew: SKEWS[g],
            }),
        },
        selector: match r.gold {
            Some(true) => BTreeMap::from([("tier".into(), "gold".into())]),
            Some(false) => BTreeMap::from([("tier".into(), "platinum".into())]),
            None => BTreeMap::new(),
        },
        image: r.image.map(|i| format!("sha{i}")),
        policy: r
            .policy
            .map(|b| if b { Policy::BinPack } else { Policy::Spread }),
    }
}

fn dims(r: Resources) -> [u64; 3] {
    [r.cpus.into(), r.memory_mib, r.disk_gib]
}

impl Model {
    fn host_index(&self, name: &str) -> usize {
        self.specs.iter().position(|s| s.name == name).unwrap()
    }

    /// (Guaranteed, Burstable) per dimension on host `h`.
    fn used(&self, h: usize) -> ([u64; 3], [u64; 3]) {
        let (mut g, mut b) = ([0u64; 3], [0u64; 3]);
        for (_, host, r, s) in &self.vms {
            if *host == h {
                let into = if s.qos == Qos::Guaranteed {
                    &mut g
                } else {
                    &mut b
                };
                for (acc, x) in into.iter_mut().zip(dims(*r)) {
                    *acc += x;
                }
            }
        }
        (g, b)
    }

    /// The QoS model, written out again: G ≤ C and B ≤ ⌊(C − G)·r⌋ in every dimension.
    fn within_capacity(&self, h: usize) -> bool {
        let s = &self.specs[h];
        let cap = dims(s.capacity);
        let ratios = [s.ratios.cpu, s.ratios.memory, s.ratios.disk];
        let (g, b) = self.used(h);
        (0..3).all(|d| {
            g[d] <= cap[d] && (b[d] as f64) <= ((cap[d] - g[d]) as f64 * ratios[d]).floor()
        })
    }

    fn domain(&self, h: usize, t: Topology) -> Option<&str> {
        self.specs[h].labels.get(t.label()).map(String::as_str)
    }

    /// max − min members of a spread group over every domain any host has at that level.
    fn skew(&self, group: &str, t: Topology) -> u32 {
        let mut counts: BTreeMap<&str, u32> = (0..self.specs.len())
            .filter_map(|h| self.domain(h, t))
            .map(|d| (d, 0))
            .collect();
        for (_, h, _, s) in &self.vms {
            if let Some(sp) = &s.spread
                && sp.group == group
                && sp.topology == t
                && let Some(d) = self.domain(*h, t)
            {
                *counts.entry(d).or_default() += 1;
            }
        }
        let max = counts.values().max().copied().unwrap_or(0);
        let min = counts.values().min().copied().unwrap_or(0);
        max - min
    }

    fn members_on(&self, h: usize, pick: impl Fn(&Scheduling) -> bool) -> usize {
        self.vms
            .iter()
            .filter(|(_, host, _, s)| *host == h && pick(s))
            .count()
    }
}

/// An engine built from scratch from the model's current facts.
fn rebuild(cfg: &EngineConfig, m: &Model) -> Engine {
    let mut e = Engine::new(cfg.clone());
    for (i, s) in m.specs.iter().enumerate() {
        e.upsert_host(s.clone());
        e.set_state(&s.name, m.states[i]).unwrap();
        e.set_images(&s.name, m.images[i].iter().map(String::as_str))
            .unwrap();
    }
    for (uid, h, r, s) in &m.vms {
        e.assign(uid, &m.specs[*h].name, *r, s).unwrap();
    }
    e
}

fn run(
    cfg: EngineConfig,
    fleet: Vec<HostGen>,
    ops: Vec<Op>,
    probes: Vec<ReqGen>,
) -> Result<(), TestCaseError> {
    let mut e = Engine::new(cfg.clone());
    let mut m = Model {
        specs: fleet.iter().enumerate().map(|(i, g)| spec(i, g)).collect(),
        states: fleet.iter().map(|g| STATES[g.state]).collect(),
        images: vec![Vec::new(); fleet.len()],
        vms: Vec::new(),
    };
    for (i, s) in m.specs.iter().enumerate() {
        e.upsert_host(s.clone());
        e.set_state(&s.name, m.states[i]).unwrap();
    }
    let mut next_uid = 0;
    for op in ops {
        match op {
            Op::Place(rg) => {
                let req = request(&rg);
                place(&mut e, &mut m, &req, &mut next_uid)?;
            }
            Op::Unassign(i) if !m.vms.is_empty() => {
                let (uid, h, _, _) = m.vms.remove(i % m.vms.len());
                prop_assert_eq!(e.unassign(&uid), Some(m.specs[h].name.clone()));
            }
            Op::Unassign(_) => {}
            Op::SetState(h, s) => {
                let h = h % m.specs.len();
                m.states[h] = STATES[s];
                e.set_state(&m.specs[h].name, STATES[s]).unwrap();
            }
            Op::Relabel(h, zone, gold) => {
                let h = h % m.specs.len();
                let labels = &mut m.specs[h].labels;
                match zone {
                    Some(z) => labels.insert(Topology::Zone.label().into(), format!("d{z}")),
                    None => labels.remove(Topology::Zone.label()),
                };
                match gold {
                    Some(g) => {
                        labels.insert("tier".into(), if g { "gold" } else { "silver" }.into())
                    }
                    None => labels.remove("tier"),
                };
                e.upsert_host(m.specs[h].clone());
            }
            Op::Images(h, mask) => {
                let h = h % m.specs.len();
                m.images[h] = (0..3)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| format!("sha{i}"))
                    .collect();
                e.set_images(&m.specs[h].name, m.images[h].iter().map(String::as_str))
                    .unwrap();
            }
        }
        if let Err(why) = e.verify_indexes() {
            prop_assert!(false, "{}", why);
        }
        for h in 0..m.specs.len() {
            let a = e.allocation(&m.specs[h].name).unwrap();
            let (g, b) = m.used(h);
            prop_assert_eq!(dims(a.guaranteed), g);
            prop_assert_eq!(dims(a.burstable()), b);
        }
    }
    // (7) incremental state agrees with a fresh engine built from the same facts.
    let fresh = rebuild(&cfg, &m);
    prop_assert_eq!(fresh.vm_count(), e.vm_count());
    for s in &m.specs {
        prop_assert_eq!(fresh.allocation(&s.name), e.allocation(&s.name));
        let (mut a, mut b) = (fresh.vms_on(&s.name), e.vms_on(&s.name));
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
    for (g, t) in LEVELS.iter().enumerate() {
        let group = format!("spr{g}");
        prop_assert_eq!(fresh.spread_counts(&group, *t), e.spread_counts(&group, *t));
    }
    for p in probes {
        let req = request(&p);
        prop_assert_eq!(fresh.decide(&req), e.decide(&req), "probe {:?}", p);
    }
    Ok(())
}

fn place(
    e: &mut Engine,
    m: &mut Model,
    req: &Request,
    next_uid: &mut u32,
) -> Result<(), TestCaseError> {
    let decided = e.decide(req);
    let naive = e.decide_naive(req);
    // (6) same feasibility, and the same explanation when nothing fits.
    match (&decided, &naive) {
        (Err(a), Err(b)) => {
            prop_assert_eq!(a, b);
            return Ok(());
        }
        (Ok(d), Ok(n)) => prop_assert!(n.score >= d.score, "naive is the global best"),
        _ => prop_assert!(false, "indexed {:?} vs naive {:?}", decided, naive),
    }
    let Ok(d) = decided else { return Ok(()) };
    let h = m.host_index(&d.host);
    prop_assert!(e.fits_now(&d.host, req));
    // (5) only Ready hosts; the selector holds.
    prop_assert_eq!(m.states[h], HostState::Ready);
    for (k, v) in &req.selector {
        prop_assert_eq!(m.specs[h].labels.get(k), Some(v));
    }
    let s = &req.scheduling;
    // (4) affinity: with members, only a host holding one.
    if let Some(g) = &s.affinity_group {
        let members = m
            .vms
            .iter()
            .filter(|(_, _, _, v)| v.affinity_group.as_ref() == Some(g));
        let hosts: BTreeSet<usize> = members.map(|(_, h, _, _)| *h).collect();
        prop_assert!(
            hosts.is_empty() || hosts.contains(&h),
            "affinity {g} on {hosts:?}, chose {h}"
        );
    }
    let before = s.spread.as_ref().map(|sp| m.skew(&sp.group, sp.topology));
    let uid = format!("vm{next_uid}");
    *next_uid += 1;
    e.assign(&uid, &d.host, req.resources, s).unwrap();
    m.vms.push((uid, h, req.resources, s.clone()));
    // (1) within capacity everywhere (only this host changed, but check all).
    for host in 0..m.specs.len() {
        prop_assert!(m.within_capacity(host), "host {host} over capacity");
    }
    // (2) anti-affinity: at most one member per host.
    if let Some(g) = &s.anti_affinity_group {
        let n = m.members_on(h, |v| v.anti_affinity_group.as_ref() == Some(g));
        prop_assert_eq!(n, 1);
    }
    // (3) spread: the member went into a domain, and the skew still holds if it held.
    if let (Some(sp), Some(before)) = (&s.spread, before) {
        prop_assert!(m.domain(h, sp.topology).is_some());
        let after = m.skew(&sp.group, sp.topology);
        prop_assert!(
            before > sp.max_skew || after <= sp.max_skew,
            "skew {before} -> {after}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn placements_respect_every_constraint_and_match_the_baseline(
        fleet in prop::collection::vec(host_gen(), 1..24),
        ops in prop::collection::vec(op_gen(), 1..60),
        probes in prop::collection::vec(req_gen(), 4),
        k in 1usize..5,
        bin_default in any::<bool>(),
    ) {
        let cfg = EngineConfig {
            default_policy: if bin_default { Policy::BinPack } else { Policy::Spread },
            candidates_per_decision: k,
            image_locality_weight: 0.3,
        };
        run(cfg, fleet, ops, probes)?;
    }
}
