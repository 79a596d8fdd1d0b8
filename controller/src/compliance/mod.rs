//! The compliance report (`yun-controller compliance report`): per tenant (a VM's namespace),
//! the VMs that no security group filters, the volumes that cross the network in clear text,
//! the Keystone credentials older than the rotation period, and the hosts whose agent is behind
//! the controller. Pure: it reads a fleet view (as `FleetBus::fleet_view` returns it) and a
//! clock, so every finding is testable without etcd.
//!
//! A VM with no NIC has no tenant network to filter: it is listed under `no_network` for
//! completeness and is *not* a "no security group" finding.

mod findings;
mod period;
mod table;
mod version;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use yun_fleet_etcd::HostView;

pub use findings::{ClearTextVolume, StaleCredential, VmRef};
pub use period::{format_age, format_period, parse_period};
pub use table::render_table;
pub use version::{AgentVersion, HostStatus, HostVersionFinding};

/// The `schema` field of the JSON report.
pub const SCHEMA: &str = "yun.compliance/v1";

/// Default credential rotation period (`--rotation-period`).
pub const DEFAULT_ROTATION_PERIOD: &str = "30d";

#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error("version {version:?} is not MAJOR.MINOR.PATCH (e.g. 0.1.0): {why}")]
    Version { version: String, why: &'static str },
    #[error("expected a duration like 30d, 12h or 90m, got {input:?}: {why}")]
    Period { input: String, why: String },
}

/// What the report is measured against.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The controller's own version: agents behind it are reported.
    pub controller_version: AgentVersion,
    /// Credentials strictly older than this are stale (exactly this old is still fine).
    pub rotation_period: Duration,
}

/// The whole report. Tenants sorted by name; every list inside sorted by VM, host, volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceReport {
    pub schema: String,
    /// RFC 3339 time the report was computed for.
    pub generated_at: String,
    pub controller_version: String,
    pub rotation_period_secs: u64,
    pub tenants: Vec<TenantReport>,
    /// Fleet-wide host section; absent in a report narrowed to one tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSection>,
}

/// One tenant's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReport {
    pub tenant: String,
    /// VM desired records of this tenant on the bus (one per VM and host).
    pub vms: usize,
    pub counts: Counts,
    /// VMs with NICs and no security group.
    pub no_security_group: Vec<VmRef>,
    /// iSCSI and NFS volumes: their data crosses the network unencrypted.
    pub clear_text_volumes: Vec<ClearTextVolume>,
    /// Credentials older than the rotation period (or whose age cannot be read).
    pub stale_credentials: Vec<StaleCredential>,
    /// Hosts running this tenant's VMs whose agent is behind the controller.
    pub hosts_behind: Vec<HostVersionFinding>,
    /// VMs with no NIC: nothing to filter, so not a finding (listed for completeness).
    pub no_network: Vec<VmRef>,
}

/// Finding counts of one tenant (`no_network` is informational and not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub no_security_group: usize,
    pub clear_text_volumes: usize,
    pub stale_credentials: usize,
    pub hosts_behind: usize,
    pub total: usize,
}

/// Every host of the fleet whose agent is behind the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSection {
    /// Hosts with a registered agent.
    pub hosts: usize,
    pub hosts_behind: Vec<HostVersionFinding>,
}

/// Computes the report for every tenant with at least one VM on the bus.
pub fn report(
    hosts: &BTreeMap<String, HostView>,
    policy: &Policy,
    now: jiff::Timestamp,
) -> ComplianceReport {
    let host_findings: BTreeMap<&str, HostVersionFinding> = hosts
        .iter()
        .filter_map(|(name, view)| {
            version::host_finding(name, view, &policy.controller_version)
                .map(|f| (name.as_str(), f))
        })
        .collect();
    let mut tenants: BTreeMap<&str, TenantReport> = BTreeMap::new();
    let mut tenant_hosts: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (host, view) in hosts {
        for stored in view.desired.values() {
            let vm = &stored.value;
            let tenant = tenants
                .entry(vm.namespace.as_str())
                .or_insert_with(|| TenantReport::empty(&vm.namespace));
            tenant.vms += 1;
            tenant_hosts
                .entry(vm.namespace.as_str())
                .or_default()
                .insert(host.as_str());
            let at = VmRef::new(vm, host);
            if vm.nics.is_empty() {
                tenant.no_network.push(at.clone());
            } else if vm.security_groups.is_empty() {
                tenant.no_security_group.push(at.clone());
            }
            tenant
                .clear_text_volumes
                .extend(findings::clear_text_volumes(vm, &at));
            if let Some(stale) = findings::stale_credential(vm, &at, policy.rotation_period, now) {
                tenant.stale_credentials.push(stale);
            }
        }
    }
    for (name, tenant) in &mut tenants {
        let on = tenant_hosts.get(name).into_iter().flatten();
        tenant.hosts_behind = on.filter_map(|h| host_findings.get(h).cloned()).collect();
        tenant.finish();
    }
    ComplianceReport {
        schema: SCHEMA.to_owned(),
        generated_at: now.to_string(),
        controller_version: policy.controller_version.to_string(),
        rotation_period_secs: policy.rotation_period.as_secs(),
        tenants: tenants.into_values().collect(),
        fleet: Some(FleetSection {
            hosts: hosts.values().filter(|v| v.info.is_some()).count(),
            hosts_behind: host_findings.into_values().collect(),
        }),
    }
}

impl ComplianceReport {
    /// The report narrowed to one tenant, without the fleet-wide section (other tenants' hosts
    /// are not that tenant's business). A tenant with no VM gets an empty section, so "no VMs"
    /// is visible rather than an empty report.
    pub fn for_tenant(mut self, tenant: &str) -> ComplianceReport {
        let section = self
            .tenants
            .into_iter()
            .find(|t| t.tenant == tenant)
            .unwrap_or_else(|| {
                let mut empty = TenantReport::empty(tenant);
                empty.finish();
                empty
            });
        self.tenants = vec![section];
        self.fleet = None;
        self
    }

    /// All findings of all tenants.
    pub fn total_findings(&self) -> usize {
        self.tenants.iter().map(|t| t.counts.total).sum()
    }
}

impl TenantReport {
    fn empty(tenant: &str) -> TenantReport {
        TenantReport {
            tenant: tenant.to_owned(),
            vms: 0,
            counts: Counts::default(),
            no_security_group: Vec::new(),
            clear_text_volumes: Vec::new(),
            stale_credentials: Vec::new(),
            hosts_behind: Vec::new(),
            no_network: Vec::new(),
        }
    }

    /// Sorts every list and fills in the counts.
    fn finish(&mut self) {
        self.no_security_group.sort();
        self.no_network.sort();
        self.clear_text_volumes.sort();
        self.stale_credentials.sort();
        self.hosts_behind.sort();
        self.counts = Counts {
            no_security_group: self.no_security_group.len(),
            clear_text_volumes: self.clear_text_volumes.len(),
            stale_credentials: self.stale_credentials.len(),
            hosts_behind: self.hosts_behind.len(),
            total: self.no_security_group.len()
                + self.clear_text_volumes.len()
                + self.stale_credentials.len()
                + self.hosts_behind.len(),
        };
    }
}

#[cfg(test)]
mod tests;
