//! The Yun agent: one per server. It registers the host on the fleet bus, watches only its own
//! prefix, and turns desired VM records into libvirt guests built from cached template images.
//!
//! Layout, by dependency direction: pure logic (`lifecycle`, `config`, `hypervisor::domain_xml`,
//! `seed` rendering) → host adapters (`hypervisor::libvirt`, `images`, `seed` ISO writing) →
//! orchestration (`prepare`, `vm_worker`, `reporter`, `bus_session`, `host_loop`) → `main`.

pub mod audit;
pub mod bus_session;
pub mod config;
pub mod guest_identity;
pub mod host_facts;
pub mod host_loop;
pub mod hypervisor;
pub mod images;
pub mod lifecycle;
pub mod metrics;
pub mod network;
pub mod prepare;
pub mod qcow2;
pub mod reporter;
pub mod seal_key;
pub mod seed;
pub mod storage;
pub mod vm_worker;
pub mod volume_sync;
