//! A real etcd (the fleet bus) with hosts registered the way agents register.

use etcd_client::GetOptions;
use std::collections::BTreeMap;
use std::time::Duration;
use yun_fleet::{HostInfo, VmObserved, VmPhase};
use yun_fleet_etcd::{FleetBus, HostLease};
use yun_testkit::EtcdServer;

pub struct TestFleet {
    pub bus: FleetBus,
    /// Keeps the host leases granted (their keys vanish when a lease is revoked or expires).
    _leases: Vec<HostLease>,
    _etcd: EtcdServer,
}

/// Starts etcd and registers `hosts` as `(name, cpus, memory MiB)`.
pub async fn start_fleet(hosts: &[(&str, u32, u64)]) -> TestFleet {
    start_fleet_sealed(hosts, None).await
}

/// [`start_fleet`] with every host publishing `seal_key` (`HostInfo.seal_key`).
#[allow(dead_code)] // not every test binary seals
pub async fn start_fleet_sealed(hosts: &[(&str, u32, u64)], seal_key: Option<String>) -> TestFleet {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .unwrap()
        .unwrap();
    let bus = FleetBus::connect(&[etcd.endpoint()], Duration::from_secs(5), None)
        .await
        .unwrap();
    let mut leases = Vec::new();
    for &(name, cpus, memory_mib) in hosts {
        let lease = bus.grant_lease(60).await.unwrap();
        let info = HostInfo {
            v: yun_fleet::SCHEMA_VERSION,
            name: name.into(),
            cpus,
            memory_mib,
            disk_gib: 100,
            labels: BTreeMap::new(),
            agent_version: "test".into(),
            virt_type: "qemu".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            tunnel_ip: None,
            seal_key: seal_key.clone(),
            metrics_address: None,
        };
        bus.put_host_info(&info, &lease).await.unwrap();
        leases.push(lease);
    }
    TestFleet {
        bus,
        _leases: leases,
        _etcd: etcd,
    }
}

impl TestFleet {
    /// Every key under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let resp = self
            .bus
            .client()
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .unwrap();
        let mut keys: Vec<String> = resp
            .kvs()
            .iter()
            .map(|kv| kv.key_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    }

    /// What the host's agent reports for a VM.
    pub async fn report(&self, host: &str, uid: &str, phase: VmPhase, generation: u64) {
        let observed = VmObserved {
            v: yun_fleet::SCHEMA_VERSION,
            uid: uid.into(),
            phase,
            observed_generation: generation,
            domain_uuid: Some("5d1c0000-0000-4000-8000-00000000d0d0".into()),
            started_at: (phase == VmPhase::Running).then(|| "2025-01-01T00:01:00Z".into()),
            message: None,
            updated_at: "2025-01-01T00:01:00Z".into(),
            identity_generation: None,
        };
        self.bus.put_observed(host, &observed).await.unwrap();
    }
}
