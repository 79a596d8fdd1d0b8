//! Pure rendering of a libvirt domain definition from a [`DomainSpec`], and parsing of the Yun
//! metadata element and of the volume disks back out of libvirt's answer.

use super::{DomainDisk, DomainSpec, METADATA_NAMESPACE, METADATA_PREFIX, VirtType, YunMetadata};
use crate::storage::StorageError;
use crate::storage::disk_xml::render_disk;
use std::fmt::Write as _;
use std::path::Path;

/// Escapes text for use in XML content and in attribute values (either quote style).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn path(p: &Path) -> String {
    escape(&p.to_string_lossy())
}

/// Renders the domain XML. `uuid` is the existing domain's UUID when redefining (libvirt refuses
/// a redefinition under the same name with a different UUID); `None` lets libvirt pick one.
/// Fails, naming the field, when a volume disk of `spec.disks` is invalid.
pub fn render(spec: &DomainSpec, uuid: Option<&str>) -> Result<String, StorageError> {
    let mut x = String::with_capacity(2048);
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(x, "<domain type='{}'>", spec.virt_type.as_str());
    let _ = writeln!(x, "  <name>{}</name>", escape(&spec.name));
    if let Some(uuid) = uuid {
        let _ = writeln!(x, "  <uuid>{}</uuid>", escape(uuid));
    }
    let _ = writeln!(x, "  <metadata>");
    let _ = writeln!(
        x,
        "    <{p}:vm xmlns:{p}='{ns}'>",
        p = METADATA_PREFIX,
        ns = escape(METADATA_NAMESPACE)
    );
    for (tag, value) in [
        ("uid", escape(&spec.uid)),
        ("namespace", escape(&spec.namespace)),
        ("name", escape(&spec.vm_name)),
        ("generation", spec.generation.to_string()),
    ] {
        let _ = writeln!(
            x,
            "      <{p}:{tag}>{value}</{p}:{tag}>",
            p = METADATA_PREFIX
        );
    }
    let _ = writeln!(x, "    </{METADATA_PREFIX}:vm>");
    let _ = writeln!(x, "  </metadata>");
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", spec.memory_mib);
    let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", spec.vcpus);
    let _ = writeln!(x, "  <os>");
    let _ = writeln!(x, "    <type arch='x86_64' machine='pc'>hvm</type>");
    match &spec.kernel {
        Some(kernel) => {
            let _ = writeln!(x, "    <kernel>{}</kernel>", path(kernel));
            if let Some(initrd) = &spec.initrd {
                let _ = writeln!(x, "    <initrd>{}</initrd>", path(initrd));
            }
            if let Some(cmdline) = &spec.cmdline {
                let _ = writeln!(x, "    <cmdline>{}</cmdline>", escape(cmdline));
            }
        }
        None => {
            let _ = writeln!(x, "    <boot dev='hd'/>");
        }
    }
    let _ = writeln!(x, "  </os>");
    // ACPI is what lets `shutdown` ask the guest to power off.
    let _ = writeln!(x, "  <features><acpi/><apic/></features>");
    if spec.virt_type == VirtType::Kvm {
        // TCG cannot pass the host CPU through; under KVM it gives guests the host's features.
        let _ = writeln!(x, "  <cpu mode='host-passthrough'/>");
    }
    let _ = writeln!(x, "  <clock offset='utc'/>");
    let _ = writeln!(x, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(x, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(x, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(x, "  <devices>");
    // cache='none' opens the overlay with O_DIRECT: the host page cache is not doubled with the
    // guest's, and a write the guest flushed is on the device. The filesystem holding the
    // overlays must support O_DIRECT (ext4 and xfs do; tmpfs does not).
    let _ = writeln!(x, "    <disk type='file' device='disk'>");
    let _ = writeln!(x, "      <driver name='qemu' type='qcow2' cache='none'/>");
    let _ = writeln!(x, "      <source file='{}'/>", path(&spec.root_disk));
    let _ = writeln!(x, "      <target dev='vda' bus='virtio'/>");
    let _ = writeln!(x, "    </disk>");
    let _ = writeln!(x, "    <disk type='file' device='disk'>");
    let _ = writeln!(x, "      <driver name='qemu' type='raw'/>");
    let _ = writeln!(x, "      <source file='{}'/>", path(&spec.seed_iso));
    let _ = writeln!(x, "      <target dev='vdb' bus='virtio'/>");
    let _ = writeln!(x, "      <readonly/>");
    let _ = writeln!(x, "    </disk>");
    // Volumes (cold attach) come after the root disk and the seed, which have no <serial>: the
    // serial is what tells a volume disk apart (see `parse_volume_disks`).
    for disk in &spec.disks {
        for line in render_disk(disk)?.lines() {
            let _ = writeln!(x, "    {line}");
        }
    }
    for nic in &spec.nics {
        // libvirt creates the tap under this name and enslaves it to the bridge; the agent's
        // network worker owns the bridge and the firewall rules keyed on the tap's name.
        let _ = writeln!(x, "    <interface type='bridge'>");
        let _ = writeln!(x, "      <mac address='{}'/>", escape(&nic.mac));
        let _ = writeln!(x, "      <source bridge='{}'/>", escape(&nic.bridge));
        let _ = writeln!(x, "      <target dev='{}'/>", escape(&nic.target_dev));
        let _ = writeln!(x, "      <model type='virtio'/>");
        let _ = writeln!(x, "      <mtu size='{}'/>", nic.mtu);
        let _ = writeln!(x, "    </interface>");
    }
    let _ = writeln!(x, "    <controller type='usb' model='none'/>");
    let _ = writeln!(x, "    <serial type='pty'>");
    let _ = writeln!(
        x,
        "      <log file='{}' append='off'/>",
        path(&spec.console_log)
    );
    let _ = writeln!(x, "      <target port='0'/>");
    let _ = writeln!(x, "    </serial>");
    let _ = writeln!(x, "    <console type='pty'>");
    let _ = writeln!(x, "      <target type='serial' port='0'/>");
    let _ = writeln!(x, "    </console>");
    let _ = writeln!(x, "    <memballoon model='none'/>");
    let _ = writeln!(x, "  </devices>");
    let _ = writeln!(x, "</domain>");
    Ok(x)
}

/// Reads Yun's metadata out of a whole domain description (`None` if it has none).
pub fn parse_metadata(domain_xml: &str) -> Option<YunMetadata> {
    let start = domain_xml.find(METADATA_NAMESPACE)?;
    parse_metadata_element(&domain_xml[start..])
}

/// Reads Yun's metadata out of our `vm` element as `virDomainGetMetadata` returns it: libvirt
/// answers `<vm><uid>…</uid>…</vm>` with the namespace stripped, so prefixes are ignored.
/// `None` if a field is missing or malformed.
pub fn parse_metadata_element(xml: &str) -> Option<YunMetadata> {
    let scope = &xml[..closing_tag(xml, "vm")?];
    Some(YunMetadata {
        uid: element_text(scope, "uid")?,
        namespace: element_text(scope, "namespace")?,
        vm_name: element_text(scope, "name")?,
        generation: element_text(scope, "generation")?.trim().parse().ok()?,
    })
}

/// Offset of the first `</local>` or `</prefix:local>`.
fn closing_tag(xml: &str, local: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = xml[from..].find("</") {
        let at = from + i;
        let tag = &xml[at + 2..];
        let tag = &tag[..tag.find('>')?];
        if tag.rsplit(':').next() == Some(local) {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

/// Text of the first `<local>` or `<prefix:local>` element (no attributes, no children).
fn element_text(xml: &str, local: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let tag_local = tag.rsplit(':').next().unwrap_or(tag);
        if tag_local == local && !tag.starts_with('/') {
            let body = &rest[end + 1..];
            let close = body.find('<')?;
            return unescape(&body[..close]);
        }
    }
    None
}

/// One volume disk of a domain description: a `<disk>` element with a non-empty `<serial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDiskElement {
    pub disk: DomainDisk,
    /// The element as libvirt wrote it (`<disk …>…</disk>`), what `virDomainDetachDeviceFlags`
    /// is given to name the device.
    pub xml: String,
}

/// The volume disks of a whole domain description, in document order. Yun renders the root disk
/// and the seed without a `<serial>` and every volume with one, so the serial is what tells them
/// apart. A disk without a `<target dev=…>` is skipped (libvirt always writes one).
pub fn parse_volume_disks(domain_xml: &str) -> Vec<VolumeDiskElement> {
    let mut found = Vec::new();
    let mut rest = domain_xml;
    while let Some(start) = find_start_tag(rest, "disk") {
        let element = &rest[start..];
        let Some(open_end) = element.find('>') else {
            break;
        };
        // `<disk …/>` has no children, so no serial.
        if element[..open_end].ends_with('/') {
            rest = &element[open_end + 1..];
            continue;
        }
        let Some(close) = element.find("</disk>") else {
            break;
        };
        let xml = &element[..close + "</disk>".len()];
        rest = &element[xml.len()..];
        let body = &xml[open_end + 1..close];
        let serial = element_text(body, "serial").map(|s| s.trim().to_owned());
        let target_dev = find_start_tag(body, "target")
            .and_then(|at| body[at..].find('>').map(|end| &body[at..at + end]))
            .and_then(|tag| attribute(tag, "dev"));
        if let (Some(serial), Some(target_dev)) = (serial, target_dev)
            && !serial.is_empty()
        {
            found.push(VolumeDiskElement {
                disk: DomainDisk { serial, target_dev },
                xml: xml.to_owned(),
            });
        }
    }
    found
}

/// Offset of the first start tag `<name` (followed by a blank, `>` or `/`).
fn find_start_tag(xml: &str, name: &str) -> Option<usize> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let at = from + i;
        match xml[at + open.len()..].chars().next() {
            Some(c) if c.is_ascii_whitespace() || c == '>' || c == '/' => return Some(at),
            _ => from = at + open.len(),
        }
    }
    None
}

/// The unescaped value of attribute `name` in a start tag, in either quote style.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let preceded_by_blank = tag[..at].ends_with(|c: char| c.is_ascii_whitespace());
        let after = tag[from..].trim_start();
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        if !preceded_by_blank {
            continue;
        }
        let value = value.trim_start();
        let quote = value.chars().next().filter(|q| *q == '\'' || *q == '"')?;
        let value = &value[1..];
        return unescape(&value[..value.find(quote)?]);
    }
    None
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp + 1..];
        let semi = rest.find(';')?;
        let entity = &rest[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
#[path = "domain_xml_tests.rs"]
mod tests;
