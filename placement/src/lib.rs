//! Yun's placement engine: which host a VM goes to. Pure (no I/O, no async): the controller
//! feeds it hosts and committed placements from the fleet bus, asks for decisions, and commits
//! them with a guarded etcd transaction (a conflict means re-deciding, never double-booking).
//!
//! # QoS model
//!
//! Per resource dimension (cpu, memory, disk) a host has capacity `C` and an overcommit ratio
//! `r` ([`Ratios`], default cpu 4, memory 1, disk 1). `Guaranteed` VMs are backed one to one
//! and never overcommitted; `Burstable` VMs share what Guaranteed ones leave, times `r`. With
//! `G` allocated to Guaranteed and `B` to Burstable VMs:
//! - a Guaranteed request `x` fits iff `G + x ≤ C` and `B ≤ ⌊(C − G − x)·r⌋`
//!   (it must not take the backing the Burstable VMs already have);
//! - a Burstable request `x` fits iff `B + x ≤ ⌊(C − G)·r⌋`.
//!
//! # Filters (in this order; [`NoFit`] counts each host under the first that rejects it)
//!
//! state (only [`HostState::Ready`] hosts take placements) · label selector (every pair must
//! be a host label) · cpu · memory · disk · affinity (if the group has members, only hosts
//! holding one) · anti-affinity (never a host holding a member) · spread.
//!
//! Spread follows Kubernetes' topology spread with `DoNotSchedule`: members of a group are VMs
//! whose own spread constraint names the same group and topology level; a host's domain is the
//! value of its [`yun_fleet::Topology::label`] label (a host without it is in no domain and
//! cannot take a spread member). Placing into domain `d` is allowed iff
//! `count(d) + 1 − min ≤ max_skew`, where `min` is taken over **every domain known at that
//! level: the domains of all registered hosts, in any state, including domains with no
//! members**. This is cheap to maintain exactly (a histogram of counts per group) and
//! conservative: a domain whose hosts are all cordoned holds the minimum down, so the group
//! cannot pile up elsewhere. A `max_skew` of 0 can never be satisfied.
//!
//! # Scores
//!
//! The measure is the dominant share of the host in use after placement, Burstable
//! allocations weighted by `1/r`. [`Policy::BinPack`] scores it, [`Policy::Spread`] scores
//! one minus it (both in `[0, 1]`); a host caching the request's image adds
//! [`EngineConfig::image_locality_weight`]. Highest score wins, ties go to the smallest name.
//!
//! # Data structures
//!
//! Hosts live in a `Vec` addressed by `u32`; labels, domains, groups and image digests are
//! interned to `u32` ids. A VM is its uid plus (host index, shape id): a shape is the
//! resources and interned scheduling of a VM, refcounted and shared by every VM of that shape.
//!
//! Ready hosts sit in ordered indexes (`BTreeSet<(key, host)>`), one set of them for the fleet
//! and one per label selector in use (built on first use, then maintained on every change):
//! keyed by exact memory headroom per QoS class, and by dominant used share. A bin-packing
//! decision walks the headroom index up from the first host that can hold the request (the
//! tightest fit first); a spreading decision walks the share index from the emptiest host.
//! Either runs every filter on each host it visits and stops after
//! [`EngineConfig::candidates_per_decision`] feasible hosts, which it scores; it also scores a
//! few feasible hosts that cache the image. Affinity groups with members search only their
//! hosts; a spread constraint that allows few domains searches only those domains' hosts.
//! Group counts (per host for affinity and anti-affinity, per domain with a count histogram
//! for spread) change incrementally on assign/unassign; an assign or unassign costs a few
//! B-tree updates per index the host is in.
//!
//! Every search is complete: a decision fails only if no host fits, and only then is the fleet
//! scanned, to explain the failure. The decision is the best of the candidates visited, not
//! necessarily the global best [`Engine::decide_naive`] finds (the baseline, O(hosts)).
//! The walk is slow only when most hosts it meets are rejected by a filter its order does not
//! capture (cpu or disk for bin-packing, any size for spreading, anti-affinity...); its cost
//! is then the number of such hosts.
//!
//! Memory: label strings are interned for good (selector indexes hold their ids); group
//! names and image digests are released with their last holder. At most
//! 128 selector indexes are kept; requests with further selectors walk the fleet index.

mod decide;
mod engine;
#[cfg(test)]
mod engine_tests;
mod filter;
mod fit;
mod groups;
mod hosts;
mod idmap;
mod index;
mod intern;
mod model;
mod naive;
mod nofit;
mod shapes;
mod verify;
mod vms;

pub use engine::{Engine, EngineError};
pub use model::{Allocation, Decision, EngineConfig, HostSpec, HostState, Policy, Ratios, Request};
pub use nofit::NoFit;
pub use yun_fleet::{Qos, Resources, Scheduling, SpreadConstraint, Topology};
