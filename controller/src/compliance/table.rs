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
            let _ = writeln!(out, "    {}", host_line(h));
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
    section(
        out,
        "VMs without a security group",
        &t.no_security_group,
        vm,
    );
    section(
        out,
        "Volumes attached in clear text over the network",
        &t.clear_text_volumes,
        |v| {
            format!(
                "{}: volume {} (uid {}) {} {}: {}",
                vm(&v.at),
                v.volume,
                v.volume_uid,
                v.driver,
                v.target,
                v.reason
            )
        },
    );
    section(
        out,
        &format!("Credentials older than {period}"),
        &t.stale_credentials,
        |s| {
            format!(
                "{}: credential {} (generation {}) issued {}, age {}",
                vm(&s.at),
                s.credential_id,
                s.generation,
                s.issued_at,
                s.age
            )
        },
    );
    section(
        out,
        &format!("Hosts of this tenant not at version {controller}"),
        &t.hosts_behind,
        host_line,
    );
    section(
        out,
        "VMs with no NIC (nothing to filter; not a finding)",
        &t.no_network,
        vm,
    );
}

/// A titled list, one indented line per item; nothing at all when there are no items.
fn section<T>(out: &mut String, title: &str, items: &[T], line: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for item in items {
        let _ = writeln!(out, "    {}", line(item));
    }
}

fn vm(v: &VmRef) -> String {
    format!("{} (uid {}) on {}", v.vm, v.uid, v.host)
}

fn host_line(h: &HostVersionFinding) -> String {
    format!(
        "{}: agent {} {}: {}",
        h.host,
        h.agent_version.as_deref().unwrap_or("-"),
        h.status.as_str(),
        h.detail
    )
}
