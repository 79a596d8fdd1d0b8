//! Pure rendering of a libvirt domain definition from a [`DomainSpec`], and parsing of the Yun
//! metadata element back out of libvirt's answer.

use super::{DomainSpec, METADATA_NAMESPACE, METADATA_PREFIX, VirtType, YunMetadata};
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
pub fn render(spec: &DomainSpec, uuid: Option<&str>) -> String {
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
    x
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
mod tests {
    use super::*;
    use crate::hypervisor::DomainNic;
    use std::path::PathBuf;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "yun-u1".into(),
            uid: "u1".into(),
            namespace: "team-a".into(),
            vm_name: "web-0".into(),
            generation: 7,
            virt_type: VirtType::Qemu,
            vcpus: 2,
            memory_mib: 512,
            root_disk: PathBuf::from("/var/lib/yun/vms/u1/disk.qcow2"),
            seed_iso: PathBuf::from("/var/lib/yun/vms/u1/seed.iso"),
            kernel: None,
            initrd: None,
            cmdline: None,
            console_log: PathBuf::from("/var/lib/yun/vms/u1/console.log"),
            nics: Vec::new(),
            disks: Vec::new(),
        }
    }

    fn nic(i: u8) -> DomainNic {
        DomainNic {
            mac: format!("52:54:00:00:00:0{i}"),
            bridge: format!("yb000000000000{i}"),
            target_dev: format!("yt000000000000{i}"),
            mtu: 1450,
        }
    }

    /// The text between `open` and the next `close`.
    fn between<'a>(xml: &'a str, open: &str, close: &str) -> &'a str {
        let start = xml.find(open).map(|i| i + open.len()).unwrap();
        let len = xml[start..].find(close).unwrap();
        &xml[start..start + len]
    }

    #[test]
    fn qemu_disk_boot() {
        let xml = render(&spec(), None);
        assert!(xml.starts_with("<domain type='qemu'>\n"));
        assert!(xml.trim_end().ends_with("</domain>"));
        assert_eq!(between(&xml, "<name>", "</name>"), "yun-u1");
        assert!(!xml.contains("<uuid>"));
        assert!(xml.contains("<memory unit='MiB'>512</memory>"));
        assert!(xml.contains(">2</vcpu>"));
        let os = between(&xml, "<os>", "</os>");
        assert!(os.contains("<type arch='x86_64' machine='pc'>hvm</type>"));
        assert!(os.contains("<boot dev='hd'/>"));
        assert!(!os.contains("<kernel>"));
        assert!(
            !xml.contains("host-passthrough"),
            "TCG cannot pass the CPU through"
        );
        assert!(xml.contains("<on_poweroff>destroy</on_poweroff>"));
        assert!(xml.contains("<on_reboot>restart</on_reboot>"));
        assert!(xml.contains("<on_crash>destroy</on_crash>"));
        assert!(xml.contains("<acpi/>"));
        assert!(!xml.contains("<graphics"));
        assert!(xml.contains("<memballoon model='none'/>"));
    }

    #[test]
    fn disks_serial_and_console() {
        let xml = render(&spec(), None);
        let devices = between(&xml, "<devices>", "</devices>");
        let disks: Vec<&str> = devices.split("<disk ").skip(1).collect();
        assert_eq!(disks.len(), 2);
        let root = disks[0];
        assert!(root.contains("<driver name='qemu' type='qcow2' cache='none'/>"));
        assert!(root.contains("<source file='/var/lib/yun/vms/u1/disk.qcow2'/>"));
        assert!(root.contains("<target dev='vda' bus='virtio'/>"));
        assert!(!root.contains("<readonly/>"));
        let seed = disks[1];
        assert!(seed.contains("type='raw'"));
        assert!(seed.contains("<source file='/var/lib/yun/vms/u1/seed.iso'/>"));
        assert!(seed.contains("<target dev='vdb' bus='virtio'/>"));
        assert!(seed.contains("<readonly/>"));
        let serial = between(devices, "<serial type='pty'>", "</serial>");
        assert!(serial.contains("<log file='/var/lib/yun/vms/u1/console.log' append='off'/>"));
        assert!(devices.contains("<console type='pty'>"));
    }

    #[test]
    fn no_nics_no_interface() {
        let xml = render(&spec(), None);
        assert!(!xml.contains("<interface"), "{xml}");
    }

    #[test]
    fn nics_are_bridged_virtio_in_order() {
        let mut s = spec();
        s.nics = vec![nic(1), nic(2)];
        s.nics[1].mtu = 9000;
        let xml = render(&s, None);
        let devices = between(&xml, "<devices>", "</devices>");
        let ifaces: Vec<&str> = devices
            .split("<interface type='bridge'>")
            .skip(1)
            .map(|rest| &rest[..rest.find("</interface>").unwrap()])
            .collect();
        assert_eq!(ifaces.len(), 2);
        let lines = |i: &str| -> Vec<String> { i.lines().map(|l| l.trim().to_owned()).collect() };
        assert_eq!(
            lines(ifaces[0]),
            [
                "",
                "<mac address='52:54:00:00:00:01'/>",
                "<source bridge='yb0000000000001'/>",
                "<target dev='yt0000000000001'/>",
                "<model type='virtio'/>",
                "<mtu size='1450'/>",
                "",
            ]
        );
        assert!(ifaces[1].contains("<mac address='52:54:00:00:00:02'/>"));
        assert!(ifaces[1].contains("<target dev='yt0000000000002'/>"));
        assert!(ifaces[1].contains("<mtu size='9000'/>"));
        // Everything outside the interfaces is what a NIC-less VM gets.
        let mut without = xml.clone();
        for i in &ifaces {
            without = without.replacen(
                &format!("    <interface type='bridge'>{i}</interface>\n"),
                "",
                1,
            );
        }
        assert_eq!(without, render(&spec(), None));
    }

    #[test]
    fn nic_values_are_escaped() {
        let mut s = spec();
        s.nics = vec![DomainNic {
            mac: "52'/><x a='".into(),
            bridge: "b&<\"".into(),
            target_dev: "t>'".into(),
            mtu: 1500,
        }];
        let xml = render(&s, None);
        assert!(xml.contains("<mac address='52&apos;/&gt;&lt;x a=&apos;'/>"));
        assert!(xml.contains("<source bridge='b&amp;&lt;&quot;'/>"));
        assert!(xml.contains("<target dev='t&gt;&apos;'/>"));
        assert!(!xml.contains("<x "));
    }

    #[test]
    fn kvm_passes_host_cpu_through() {
        let mut s = spec();
        s.virt_type = VirtType::Kvm;
        let xml = render(&s, None);
        assert!(xml.starts_with("<domain type='kvm'>"));
        assert!(xml.contains("<cpu mode='host-passthrough'/>"));
    }

    #[test]
    fn direct_kernel_boot() {
        let mut s = spec();
        s.kernel = Some(PathBuf::from("/c/k.vmlinuz"));
        s.initrd = Some(PathBuf::from("/c/i.img"));
        s.cmdline = Some("console=ttyS0 root=/dev/vda".into());
        let os = render(&s, None);
        let os = between(&os, "<os>", "</os>");
        assert!(os.contains("<kernel>/c/k.vmlinuz</kernel>"));
        assert!(os.contains("<initrd>/c/i.img</initrd>"));
        assert!(os.contains("<cmdline>console=ttyS0 root=/dev/vda</cmdline>"));
        assert!(!os.contains("<boot "));
    }

    #[test]
    fn uuid_is_kept_on_redefinition() {
        let xml = render(&spec(), Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427"));
        assert_eq!(
            between(&xml, "<uuid>", "</uuid>"),
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        );
    }

    #[test]
    fn interpolated_values_are_escaped() {
        let mut s = spec();
        s.kernel = Some(PathBuf::from("/k'<&\">"));
        s.cmdline = Some("a=<b> & c='d' \"e\"".into());
        s.root_disk = PathBuf::from("/d/it's.qcow2");
        s.console_log = PathBuf::from("/l/a&b'.log");
        s.vm_name = "<x>".into();
        let xml = render(&s, None);
        assert!(xml.contains("<kernel>/k&apos;&lt;&amp;&quot;&gt;</kernel>"));
        assert!(xml.contains("<cmdline>a=&lt;b&gt; &amp; c=&apos;d&apos; &quot;e&quot;</cmdline>"));
        assert!(xml.contains("<source file='/d/it&apos;s.qcow2'/>"));
        assert!(xml.contains("<log file='/l/a&amp;b&apos;.log' append='off'/>"));
        assert!(xml.contains("<yun:name>&lt;x&gt;</yun:name>"));
        // No raw special character survives inside any interpolated value.
        assert!(!xml.contains("it's") && !xml.contains("a&b") && !xml.contains("<x>"));
    }

    #[test]
    fn metadata_round_trips() {
        let mut s = spec();
        s.vm_name = "a&b<c>".into();
        let xml = render(&s, None);
        let meta = between(&xml, "<metadata>", "</metadata>");
        assert!(meta.contains(&format!("<yun:vm xmlns:yun='{METADATA_NAMESPACE}'>")));
        let parsed = parse_metadata(&xml).unwrap();
        assert_eq!(
            parsed,
            YunMetadata {
                uid: "u1".into(),
                namespace: "team-a".into(),
                vm_name: "a&b<c>".into(),
                generation: 7,
            }
        );
    }

    #[test]
    fn metadata_as_libvirt_returns_it() {
        // virDomainGetMetadata's answer (libvirt 9): the element with its namespace stripped.
        let fragment = "<vm>\n  <uid>u9</uid>\n  <namespace>default</namespace>\n  \
                        <name>x&amp;y&#x3c;&#38;</name>\n  <generation>12</generation>\n</vm>\n";
        let m = parse_metadata_element(fragment).unwrap();
        assert_eq!(m.uid, "u9");
        assert_eq!(m.namespace, "default");
        assert_eq!(m.vm_name, "x&y<&");
        assert_eq!(m.generation, 12);
        // A prefixed element (as in a domain description) reads the same.
        let prefixed = "<ns0:vm xmlns:ns0='x'><ns0:uid>u9</ns0:uid><ns0:namespace>d</ns0:namespace>\
                        <ns0:name>n</ns0:name><ns0:generation>3</ns0:generation></ns0:vm>";
        assert_eq!(parse_metadata_element(prefixed).unwrap().generation, 3);
    }

    #[test]
    fn foreign_or_broken_metadata_is_not_ours() {
        assert_eq!(parse_metadata("<domain><name>test</name></domain>"), None);
        let no_gen = format!(
            "<v xmlns='{METADATA_NAMESPACE}'><uid>a</uid><namespace>n</namespace><name>m</name></v>"
        );
        assert_eq!(parse_metadata(&no_gen), None);
        let bad_gen = format!(
            "<v xmlns='{METADATA_NAMESPACE}'><uid>a</uid><namespace>n</namespace><name>m</name><generation>x</generation></v>"
        );
        assert_eq!(parse_metadata(&bad_gen), None);
    }
}
