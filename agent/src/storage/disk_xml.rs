//! Pure rendering of the libvirt `<disk>` element for an [`AttachedDisk`] (for
//! `virDomainAttachDeviceFlags` or a domain definition) and of the `<secret>` that holds an iSCSI
//! CHAP password (for `virSecretDefineXML`). Every value is validated before it is interpolated,
//! so a bad volume spec fails here, naming its field, rather than in libvirt or QEMU.
//!
//! The validation follows what libvirt's schema (`domaincommon.rng`, which the agent applies with
//! `VIR_DOMAIN_DEFINE_VALIDATE`) and QEMU accept; values are XML-escaped as well, and control
//! characters, which XML 1.0 cannot carry at all, are rejected.

use super::{AttachedDisk, ChapRef, Portal, StorageError, VolumeSource};
use crate::hypervisor::domain_xml::escape;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Component, Path};

/// virtio-blk carries at most 20 bytes of serial (`VIRTIO_BLK_ID_BYTES`); QEMU cuts longer ones.
pub const SERIAL_LEN: usize = 20;

/// Highest LUN accepted for iSCSI (the flat LUN space of SAM's single-level addressing).
pub const MAX_LUN: u32 = 16383;

/// iSCSI names are at most 223 bytes (RFC 3720 §3.2.6.1).
const MAX_IQN_LEN: usize = 223;

/// Renders one `<disk>` element, ending in a newline.
///
/// Every disk is a virtio disk with a `<serial>`. Network and block sources (iSCSI, NFS, FC) are
/// shared storage opened with `cache='none'` (O_DIRECT: no second copy in the host page cache, and
/// a guest flush reaches the storage); local files keep libvirt's default cache mode.
pub fn render_disk(disk: &AttachedDisk) -> Result<String, StorageError> {
    validate_target_dev(&disk.target_dev)?;
    validate_serial(&disk.serial)?;
    let mut x = String::with_capacity(512);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    match &disk.source {
        VolumeSource::Local { path, format } => {
            let file = abs_path("local.path", path)?;
            let _ = writeln!(x, "<disk type='file' device='disk'>");
            let _ = writeln!(x, "  <driver name='qemu' type='{}'/>", format.as_str());
            let _ = writeln!(x, "  <source file='{}'/>", escape(file));
        }
        VolumeSource::Iscsi {
            portals,
            iqn,
            lun,
            chap,
        } => {
            let portal = validate_portals(portals)?;
            validate_iqn(iqn)?;
            if *lun > MAX_LUN {
                return Err(StorageError::invalid(
                    "iscsi.lun",
                    lun.to_string(),
                    "must be in 0..=16383",
                ));
            }
            if let Some(chap) = chap {
                validate_chap(chap)?;
            }
            let _ = writeln!(x, "<disk type='network' device='disk'>");
            let _ = writeln!(x, "  <driver name='qemu' type='raw' cache='none'/>");
            // IQNs cannot contain '/', so `IQN/LUN` is unambiguous.
            let _ = writeln!(
                x,
                "  <source protocol='iscsi' name='{}/{lun}'>",
                escape(iqn)
            );
            let _ = writeln!(
                x,
                "    <host name='{}' port='{}'/>",
                escape(&portal.host),
                portal.port
            );
            if let Some(chap) = chap {
                let _ = writeln!(x, "    <auth username='{}'>", escape(&chap.username));
                let _ = writeln!(
                    x,
                    "      <secret type='iscsi' usage='{}'/>",
                    escape(&chap.secret_usage)
                );
                let _ = writeln!(x, "    </auth>");
            }
            let _ = writeln!(x, "  </source>");
        }
        VolumeSource::Nfs {
            server,
            export,
            path,
            format,
        } => {
            validate_host("nfs.server", server)?;
            let name = nfs_file(export, path)?;
            let _ = writeln!(x, "<disk type='network' device='disk'>");
            let _ = writeln!(
                x,
                "  <driver name='qemu' type='{}' cache='none'/>",
                format.as_str()
            );
            let _ = writeln!(x, "  <source protocol='nfs' name='{}'>", escape(&name));
            let _ = writeln!(x, "    <host name='{}' transport='tcp'/>", escape(server));
            // libvirt 9's schema requires the element; empty means QEMU's own uid/gid are sent.
            let _ = writeln!(x, "    <identity/>");
            let _ = writeln!(x, "  </source>");
        }
        VolumeSource::Fc { device } => {
            let dev = abs_path("fc.device", device)?;
            let _ = writeln!(x, "<disk type='block' device='disk'>");
            let _ = writeln!(x, "  <driver name='qemu' type='raw' cache='none'/>");
            let _ = writeln!(x, "  <source dev='{}'/>", escape(dev));
        }
    }
    let _ = writeln!(x, "  <target dev='{}' bus='virtio'/>", disk.target_dev);
    let _ = writeln!(x, "  <serial>{}</serial>", disk.serial);
    if disk.read_only {
        let _ = writeln!(x, "  <readonly/>");
    }
    let _ = writeln!(x, "</disk>");
    Ok(x)
}

/// Renders the definition of the libvirt secret that holds a CHAP password, referenced from a
/// disk as `<secret type='iscsi' usage='USAGE'/>`. The value is set afterwards with
/// `virSecretSetValue`.
///
/// The secret is `ephemeral` (libvirt keeps it in memory only, so the password is never written
/// to the host's disk; the agent defines it again before every attach or start) and `private`
/// (libvirt never hands the value back through its API). `usage` must satisfy the rule
/// [`render_disk`] applies to `ChapRef::secret_usage`; both values are escaped.
pub fn render_chap_secret(usage: &str, description: &str) -> String {
    let mut x = String::with_capacity(256);
    let _ = writeln!(x, "<secret ephemeral='yes' private='yes'>");
    let _ = writeln!(x, "  <description>{}</description>", escape(description));
    let _ = writeln!(x, "  <usage type='iscsi'>");
    let _ = writeln!(x, "    <target>{}</target>", escape(usage));
    let _ = writeln!(x, "  </usage>");
    let _ = writeln!(x, "</secret>");
    x
}

/// The first of `vdb`..`vdz` not in `used` (`None` when all 25 are taken). `vda` is the root disk.
/// Pass every target the domain has, including the cloud-init seed's: guests name hot-plugged
/// virtio disks in discovery order, not by this name, which is why each disk has a serial.
pub fn next_target_dev(used: &[String]) -> Option<String> {
    (b'b'..=b'z')
        .map(|c| format!("vd{}", char::from(c)))
        .find(|dev| !used.iter().any(|u| u == dev))
}

/// The serial the guest sees a volume under (`/dev/disk/by-id/virtio-<serial>`): always
/// [`SERIAL_LEN`] lowercase hex digits, the same for the same uid on every host.
///
/// - A UUID uid (every Kubernetes uid) gives its first 20 hex digits with the dashes removed:
///   `1b4e28ba-2fa1-11d2-883f-0016d3cca427` → `1b4e28ba2fa111d2883f`, which a user can compute
///   with `tr -d - | cut -c1-20`.
/// - Any other string gives the first 20 hex digits of its SHA-256.
pub fn serial_for(volume_uid: &str) -> String {
    let mut hex = match uuid_hex(volume_uid) {
        Some(hex) => hex,
        None => hex::encode(Sha256::digest(volume_uid.as_bytes())),
    };
    hex.truncate(SERIAL_LEN);
    hex
}

/// The 32 lowercase hex digits of a canonical `8-4-4-4-12` UUID.
fn uuid_hex(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = groups.iter().map(|g| g.len()).collect::<Vec<_>>();
    let all_hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    (lens == [8, 4, 4, 4, 12] && all_hex).then(|| groups.concat().to_ascii_lowercase())
}

fn validate_target_dev(dev: &str) -> Result<(), StorageError> {
    let ok = matches!(dev.as_bytes(), [b'v', b'd', b'b'..=b'z']);
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "disk.target_dev",
            dev,
            "must be one of vdb..vdz (vda is the root disk)",
        ))
    }
}

fn validate_serial(serial: &str) -> Result<(), StorageError> {
    let bad = |reason| Err(StorageError::invalid("disk.serial", serial, reason));
    if serial.is_empty() || serial.len() > SERIAL_LEN {
        return bad("must be 1 to 20 characters (virtio-blk's limit)");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-' | ' ');
    if !serial.chars().all(allowed) {
        return bad("may only contain A-Z a-z 0-9 _ . + - and space");
    }
    Ok(())
}

/// Checks every portal and returns the one QEMU is given.
fn validate_portals(portals: &[Portal]) -> Result<&Portal, StorageError> {
    for (i, portal) in portals.iter().enumerate() {
        validate_host(&format!("iscsi.portals[{i}].host"), &portal.host)?;
        if portal.port == 0 {
            return Err(StorageError::invalid(
                format!("iscsi.portals[{i}].port"),
                "0",
                "must be in 1..=65535",
            ));
        }
    }
    portals
        .first()
        .ok_or_else(|| StorageError::invalid("iscsi.portals", "", "at least one portal is needed"))
}

/// `iqn.YYYY-MM.reverse.domain[:unique-id]`, lowercase, as RFC 3720 §3.2.6.3.1 defines it.
fn validate_iqn(iqn: &str) -> Result<(), StorageError> {
    let bad = |reason| Err(StorageError::invalid("iscsi.iqn", iqn, reason));
    const SHAPE: &str = "must look like iqn.YYYY-MM.reverse.domain[:identifier]";
    if iqn.len() > MAX_IQN_LEN {
        return bad("longer than 223 bytes");
    }
    if iqn.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("must be lowercase (iSCSI names are normalized to lowercase)");
    }
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':');
    if !iqn.bytes().all(allowed) {
        return bad("may only contain a-z 0-9 - . :");
    }
    let Some(rest) = iqn.strip_prefix("iqn.") else {
        return bad(SHAPE);
    };
    let Some((date, rest)) = rest.split_once('.') else {
        return bad(SHAPE);
    };
    let (authority, id) = match rest.split_once(':') {
        Some((authority, id)) => (authority, Some(id)),
        None => (rest, None),
    };
    let date_ok = match date.split_once('-') {
        Some((year, month)) if year.len() == 4 && month.len() == 2 => {
            year.bytes().all(|b| b.is_ascii_digit())
                && month.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
        }
        _ => false,
    };
    if !date_ok {
        return bad("the date after iqn. must be YYYY-MM with a month 01..12");
    }
    // The character check above leaves only a-z 0-9 - in each label.
    if authority.split('.').any(str::is_empty) {
        return bad("the naming authority must be a reversed domain name");
    }
    if id == Some("") {
        return bad("the identifier after ':' must not be empty");
    }
    Ok(())
}

fn validate_chap(chap: &ChapRef) -> Result<(), StorageError> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-');
    if chap.username.is_empty() || !chap.username.chars().all(name_char) {
        // libvirt's schema (genericName) is narrower than CHAP: no '.' or ':'.
        return Err(StorageError::invalid(
            "iscsi.chap.username",
            &chap.username,
            "must be non-empty and contain only A-Z a-z 0-9 _ + -",
        ));
    }
    let usage = &chap.secret_usage;
    if usage.is_empty() || usage.contains('/') || usage.chars().any(char::is_control) {
        return Err(StorageError::invalid(
            "iscsi.chap.secret_usage",
            usage,
            "must be non-empty, without '/' or control characters",
        ));
    }
    Ok(())
}

/// An IP address or a DNS name (libvirt's `ipAddr | dnsName`).
fn validate_host(field: &str, host: &str) -> Result<(), StorageError> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(StorageError::invalid(
            field,
            host,
            "must be an IP address or a DNS name",
        ))
    }
}

/// The file's full path on the server (`EXPORT/PATH`), which is what QEMU's NFS client opens.
fn nfs_file(export: &str, path: &str) -> Result<String, StorageError> {
    if !export.starts_with('/') {
        return Err(StorageError::invalid(
            "nfs.export",
            export,
            "must start with '/'",
        ));
    }
    check_no_traversal("nfs.export", export)?;
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.ends_with('/') {
        return Err(StorageError::invalid("nfs.path", path, "must name a file"));
    }
    check_no_traversal("nfs.path", path)?;
    Ok(format!("{}/{rel}", export.trim_end_matches('/')))
}

fn check_no_traversal(field: &str, value: &str) -> Result<(), StorageError> {
    if value.split('/').any(|c| c == "..") {
        return Err(StorageError::invalid(field, value, "must not contain '..'"));
    }
    if value.chars().any(char::is_control) {
        return Err(StorageError::invalid(
            field,
            value,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// An absolute path as UTF-8 (a lossy conversion would name another file).
fn abs_path<'a>(field: &str, path: &'a Path) -> Result<&'a str, StorageError> {
    let shown = || path.to_string_lossy().into_owned();
    let s = path
        .to_str()
        .ok_or_else(|| StorageError::invalid(field, shown(), "must be UTF-8"))?;
    if !path.is_absolute() {
        return Err(StorageError::invalid(field, s, "must be an absolute path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(StorageError::invalid(field, s, "must not contain '..'"));
    }
    if s.chars().any(char::is_control) {
        return Err(StorageError::invalid(
            field,
            s,
            "must not contain control characters",
        ));
    }
    Ok(s)
}

#[cfg(test)]
#[path = "disk_xml_tests.rs"]
mod tests;
