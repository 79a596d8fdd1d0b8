//! The Yun controller: turns VirtualMachine (and VmImage, Host) objects into placements and
//! desired records on the fleet bus, and reports status back.
//!
//! Dependency direction: pure logic (`failure`, `vm_logic`, `status_table`; placement itself is the
//! `yun-placement` crate) → the fleet index and fleet-bus operations (`fleet_index`, `fleet_ops`) → the source-agnostic step (`vm_reconcile`) → the two desired-state
//! sources (`bootstrap` for a manifests directory, `kube_source` for Kubernetes) → `main`.

pub mod audit;
pub mod bootstrap;
pub mod compliance;
pub mod devices;
pub mod failure;
pub mod fencing;
pub mod file_sd;
pub mod fleet_index;
pub mod fleet_ops;
pub mod host_schedulable;
pub mod host_status;
pub mod identity;
pub mod image_status;
pub mod kube_source;
pub mod metrics;
pub mod net_pass;
pub mod network;
pub mod object;
pub mod sched_map;
pub mod status_table;
pub mod vm_events;
pub mod vm_logic;
pub mod vm_reconcile;
pub mod volume;
