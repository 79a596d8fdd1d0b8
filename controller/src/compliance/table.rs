//! The report for a human: one section per tenant (counts, then one line per finding), then
//! the fleet's hosts.

use super::period::format_period;
use super::{ComplianceReport, HostVersionFinding, TenantReport, VmRef};
use std::fmt::Write;

pub fn render_table(report: &ComplianceReport) -> String {
    let mut out = String::new();
    let period = format_period(report.rotation_period_secs);
    let _ = writeln!(
        out,
        "Compliance report at {}: controller {}, credential rotation period {period}",
        report.generated_at, report.controller_version
    );
    if report.tenants.is_empty() {
        let _ = writeln!(out, "\nNo VMs on the fleet bus.");
    }
    for tenant in &report.tenants {
        tenant_section(&mut out, tenant, &period, &report.controller_version);
    }
    if let Some(fleet) = &report.fleet {
        let _ = writeln!(
            out,
            "\nFleet: {} registered hosts, {} not at the controller's version {}",
            fleet.hosts,
            fleet.hosts_behind.len(),
            report.controller_version
        );
        for h in &fleet.hosts_behind {
            host_line(&mut out, h);
        }
    }
    out
}

fn tenant_section(out: &mut String, t: &TenantReport, period: &str, controller: &str) {
    let c = &t.counts;
    let _ = writeln!(
        out,
        "\nTenant {}: {} VMs, {} findings ({} without security group, {} clear-text volumes, \
         {} stale credentials, {} hosts behind)",
        t.tenant,
        t.vms,
        c.total,
        c.no_security_group,
        c.clear_text_volumes,
        c.stale_credentials,
        c.hosts_behind
    );
    if !t.no_security_group.is_empty() {
        let _ = writeln!(out, "  VMs without a security group:");
        for v in &t.no_security_group {
            let _ = writeln!(out, "    {}", vm(v));
        }
    }
    if !t.clear_text_volumes.is_empty() {
        let _ = writeln!(out, "  Volumes attached in clear text over the network:");
        for v in &t.clear_text_volumes {
            let _ = writeln!(
                out,
                "    {}: volume {} (uid {}) {} {}: {}",
                vm(&v.at),
                v.volume,
                v.volume_uid,
                v.driver,
                v.target,
                v.reason
            );
        }
    }
    if !t.stale_credentials.is_empty() {
        let _ = writeln!(out, "  Credentials older than {period}:");
        for s in &t.stale_credentials {
            let _ = writeln!(
                out,
                "    {}: credential {} (generation {}) issued {}, age {}",
                vm(&s.at),
                s.credential_id,
                s.generation,
                s.issued_at,
                s.age
            );
        }
    }
    if !t.hosts_behind.is_empty() {
        let _ = writeln!(out, "  Hosts of this tenant not at version {controller}:");
        for h in &t.hosts_behind {
            host_line(out, h);
        }
    }
    if !t.no_network.is_empty() {
        let _ = writeln!(out, "  VMs with no NIC (nothing to filter; not a finding):");
        for v in &t.no_network {
            let _ = writeln!(out, "    {}", vm(v));
        }
    }
}

fn vm(v: &VmRef) -> String {
    format!("{} (uid {}) on {}", v.vm, v.uid, v.host)
}

fn host_line(out: &mut String, h: &HostVersionFinding) {
    let _ = writeln!(
        out,
        "    {}: agent {} {}: {}",
        h.host,
        h.agent_version.as_deref().unwrap_or("-"),
        h.status.as_str(),
        h.detail
    );
}
