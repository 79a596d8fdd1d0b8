//! Volume disks and CHAP secrets over libvirt: the disk half of [`super::libvirt::LibvirtHypervisor`].
//!
//! A volume disk is found by its `<serial>` (see `domain_xml::parse_volume_disks`). A running
//! domain has two descriptions, the live one and the persistent one, and each call looks at both:
//! after an interrupted attach or detach they can disagree, and the retry then only does the half
//! that is missing.

use super::domain_xml::{VolumeDiskElement, parse_volume_disks};
use super::libvirt::{failed, find_existing};
use super::{ChapSecret, DomainDisk, HypervisorError};
use crate::storage::AttachedDisk;
use crate::storage::disk_xml::{render_chap_secret, render_disk};
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::secret::Secret;
use virt::sys;

/// How often the live description is read while waiting for the guest to release a disk.
const DETACH_POLL: Duration = Duration::from_millis(200);

/// Both descriptions of a domain, as far as its volume disks go.
struct DiskViews {
    /// Whether a QEMU process runs (only then is there a live description).
    active: bool,
    /// Volume disks of the running guest; empty when inactive.
    live: Vec<VolumeDiskElement>,
    /// Volume disks of the persistent definition.
    config: Vec<VolumeDiskElement>,
}

impl DiskViews {
    fn read(dom: &Domain, name: &str) -> Result<DiskViews, HypervisorError> {
        let active = dom.is_active().map_err(failed(name, "read state"))?;
        let live = if active {
            parse_volume_disks(&live_xml(dom, name)?)
        } else {
            Vec::new()
        };
        let config_xml = dom
            .get_xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(failed(name, "read definition"))?;
        Ok(DiskViews {
            active,
            live,
            config: parse_volume_disks(&config_xml),
        })
    }
}

fn live_xml(dom: &Domain, name: &str) -> Result<String, HypervisorError> {
    dom.get_xml_desc(0)
        .map_err(failed(name, "read live description"))
}

fn by_serial<'a>(disks: &'a [VolumeDiskElement], serial: &str) -> Option<&'a VolumeDiskElement> {
    disks.iter().find(|d| d.disk.serial == serial)
}

pub(super) fn disks(conn: &Connect, name: &str) -> Result<Vec<DomainDisk>, HypervisorError> {
    let dom = find_existing(conn, name)?;
    // Flags 0: the live description of an active domain, else the persistent one.
    let xml = dom
        .get_xml_desc(0)
        .map_err(failed(name, "read description"))?;
    Ok(parse_volume_disks(&xml)
        .into_iter()
        .map(|d| d.disk)
        .collect())
}

pub(super) fn attach(
    conn: &Connect,
    name: &str,
    disk: &AttachedDisk,
) -> Result<(), HypervisorError> {
    let xml = render_disk(disk).map_err(|e| HypervisorError::Libvirt {
        domain: name.to_owned(),
        op: "render disk",
        message: e.to_string(),
    })?;
    let dom = find_existing(conn, name)?;
    let views = DiskViews::read(&dom, name)?;
    let mut flags = 0;
    if views.active && by_serial(&views.live, &disk.serial).is_none() {
        flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    if by_serial(&views.config, &disk.serial).is_none() {
        flags |= sys::VIR_DOMAIN_AFFECT_CONFIG;
    }
    if flags == 0 {
        return Ok(());
    }
    // With LIVE|CONFIG libvirt saves the definition only after the hot plug succeeded, so a
    // refused plug (wrong CHAP password, unreachable portal) leaves both descriptions unchanged.
    dom.attach_device_flags(&xml, flags).map_err(|e| {
        let message = format!(
            "disk {} ({}): {}",
            disk.serial,
            disk.target_dev,
            e.message()
        );
        HypervisorError::Libvirt {
            domain: name.to_owned(),
            op: "attach disk",
            message,
        }
    })?;
    Ok(())
}

pub(super) fn detach(
    conn: &Connect,
    name: &str,
    serial: &str,
    timeout: Duration,
) -> Result<(), HypervisorError> {
    let dom = find_existing(conn, name)?;
    let views = DiskViews::read(&dom, name)?;
    let detach_failed = |e: VirtError| HypervisorError::Libvirt {
        domain: name.to_owned(),
        op: "detach disk",
        message: format!("disk {serial}: {}", e.message()),
    };
    // The definition first: whatever the guest does, the disk is not there after a restart.
    if let Some(disk) = by_serial(&views.config, serial) {
        dom.detach_device_flags(&disk.xml, sys::VIR_DOMAIN_AFFECT_CONFIG)
            .map_err(detach_failed)?;
    }
    let Some(disk) = by_serial(&views.live, serial) else {
        return Ok(());
    };
    // libvirt asks QEMU to unplug, waits a few seconds for the guest's ACPI acknowledgement, and
    // returns success either way; the device leaves the live description once the guest let go.
    if let Err(e) = dom.detach_device_flags(&disk.xml, sys::VIR_DOMAIN_AFFECT_LIVE)
        && still_attached(&dom, name, serial)?
    {
        return Err(detach_failed(e));
    }
    let deadline = Instant::now() + timeout;
    loop {
        if !still_attached(&dom, name, serial)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HypervisorError::Libvirt {
                domain: name.to_owned(),
                op: "detach disk",
                message: format!(
                    "the guest did not release disk {serial} ({}) within {timeout:?}: a live \
                     unplug needs the guest's cooperation (ACPI PCI hotplug); the disk is \
                     already gone from the persistent definition",
                    disk.disk.target_dev
                ),
            });
        }
        std::thread::sleep(DETACH_POLL);
    }
}

/// Whether the running guest still has the disk (false once the domain stopped).
fn still_attached(dom: &Domain, name: &str, serial: &str) -> Result<bool, HypervisorError> {
    if !dom.is_active().map_err(failed(name, "read state"))? {
        return Ok(false);
    }
    Ok(by_serial(&parse_volume_disks(&live_xml(dom, name)?), serial).is_some())
}

fn secret_failed(usage: &str, op: &'static str) -> impl FnOnce(VirtError) -> HypervisorError {
    // libvirt's messages name the secret at most by UUID or usage, never by value.
    let usage = usage.to_owned();
    move |e| HypervisorError::Host {
        op,
        message: format!("secret {usage}: {}", e.message()),
    }
}

fn find_secret(conn: &Connect, usage: &str) -> Result<Option<Secret>, HypervisorError> {
    let kind = sys::VIR_SECRET_USAGE_TYPE_ISCSI as i32;
    match Secret::lookup_by_usage(conn, kind, usage) {
        Ok(secret) => Ok(Some(secret)),
        Err(e) if e.code() == ErrorNumber::NoSecret => Ok(None),
        Err(e) => Err(secret_failed(usage, "look up secret")(e)),
    }
}

/// The secret's definition, with `uuid` when redefining (libvirt refuses a second secret for
/// the same usage).
fn secret_xml(usage: &str, uuid: Option<&str>) -> String {
    let xml = render_chap_secret(usage, &format!("Yun iSCSI CHAP password ({usage})"));
    match (uuid, xml.split_once('\n')) {
        (Some(uuid), Some((first, rest))) => format!(
            "{first}\n  <uuid>{}</uuid>\n{rest}",
            super::domain_xml::escape(uuid)
        ),
        _ => xml,
    }
}

pub(super) fn set_chap_secret(conn: &Connect, secret: &ChapSecret) -> Result<(), HypervisorError> {
    let usage = secret.usage.as_str();
    // Two attempts: another caller may define the same usage between the lookup and the define.
    let mut attempt = 0;
    let defined = loop {
        attempt += 1;
        let uuid = match find_secret(conn, usage)? {
            Some(existing) => Some(
                existing
                    .get_uuid_string()
                    .map_err(secret_failed(usage, "read secret uuid"))?,
            ),
            None => None,
        };
        match Secret::define_xml(conn, &secret_xml(usage, uuid.as_deref()), 0) {
            Ok(defined) => break defined,
            Err(_) if attempt == 1 && uuid.is_none() && find_secret(conn, usage)?.is_some() => {}
            Err(e) => return Err(secret_failed(usage, "define secret")(e)),
        }
    };
    defined
        .set_value(secret.password.as_bytes(), 0)
        .map_err(secret_failed(usage, "set secret value"))
}

pub(super) fn remove_chap_secret(conn: &Connect, usage: &str) -> Result<(), HypervisorError> {
    let Some(secret) = find_secret(conn, usage)? else {
        return Ok(());
    };
    match secret.undefine() {
        Err(e) if e.code() != ErrorNumber::NoSecret => {
            Err(secret_failed(usage, "undefine secret")(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redefinition_carries_the_existing_uuid() {
        let fresh = secret_xml("yun-chap-v1", None);
        assert!(!fresh.contains("<uuid>"), "{fresh}");
        assert!(fresh.contains("<target>yun-chap-v1</target>"));
        let again = secret_xml("yun-chap-v1", Some("0b6c1e4a-0000-4000-8000-000000000001"));
        let lines: Vec<&str> = again.lines().collect();
        assert_eq!(lines[0], "<secret ephemeral='yes' private='yes'>");
        assert_eq!(
            lines[1],
            "  <uuid>0b6c1e4a-0000-4000-8000-000000000001</uuid>"
        );
        assert_eq!(again.replace(lines[1], "").replace("\n\n", "\n"), fresh);
    }
}
