use super::*;
use crate::hypervisor::DomainNic;
use crate::storage::{AttachedDisk, ImageFormat, VolumeSource};
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
    let xml = render(&spec(), None).unwrap();
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
    let xml = render(&spec(), None).unwrap();
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
    let xml = render(&spec(), None).unwrap();
    assert!(!xml.contains("<interface"), "{xml}");
}

#[test]
fn nics_are_bridged_virtio_in_order() {
    let mut s = spec();
    s.nics = vec![nic(1), nic(2)];
    s.nics[1].mtu = 9000;
    let xml = render(&s, None).unwrap();
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
    assert_eq!(without, render(&spec(), None).unwrap());
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
    let xml = render(&s, None).unwrap();
    assert!(xml.contains("<mac address='52&apos;/&gt;&lt;x a=&apos;'/>"));
    assert!(xml.contains("<source bridge='b&amp;&lt;&quot;'/>"));
    assert!(xml.contains("<target dev='t&gt;&apos;'/>"));
    assert!(!xml.contains("<x "));
}

#[test]
fn kvm_passes_host_cpu_through() {
    let mut s = spec();
    s.virt_type = VirtType::Kvm;
    let xml = render(&s, None).unwrap();
    assert!(xml.starts_with("<domain type='kvm'>"));
    assert!(xml.contains("<cpu mode='host-passthrough'/>"));
}

#[test]
fn direct_kernel_boot() {
    let mut s = spec();
    s.kernel = Some(PathBuf::from("/c/k.vmlinuz"));
    s.initrd = Some(PathBuf::from("/c/i.img"));
    s.cmdline = Some("console=ttyS0 root=/dev/vda".into());
    let os = render(&s, None).unwrap();
    let os = between(&os, "<os>", "</os>");
    assert!(os.contains("<kernel>/c/k.vmlinuz</kernel>"));
    assert!(os.contains("<initrd>/c/i.img</initrd>"));
    assert!(os.contains("<cmdline>console=ttyS0 root=/dev/vda</cmdline>"));
    assert!(!os.contains("<boot "));
}

#[test]
fn uuid_is_kept_on_redefinition() {
    let xml = render(&spec(), Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427")).unwrap();
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
    let xml = render(&s, None).unwrap();
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
    let xml = render(&s, None).unwrap();
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

fn volume(dev: &str, serial: &str) -> AttachedDisk {
    AttachedDisk {
        source: VolumeSource::Local {
            path: PathBuf::from(format!("/var/lib/yun/volumes/{serial}.qcow2")),
            format: ImageFormat::Qcow2,
        },
        target_dev: dev.into(),
        serial: serial.into(),
        read_only: false,
    }
}

#[test]
fn root_and_seed_have_no_serial() {
    // `parse_volume_disks` relies on it: only volumes carry a <serial>.
    let xml = render(&spec(), None).unwrap();
    assert!(!xml.contains("<serial>"), "{xml}");
    assert_eq!(parse_volume_disks(&xml), vec![]);
}

#[test]
fn cold_attached_volumes_follow_the_seed_in_order() {
    let mut s = spec();
    s.disks = vec![volume("vdc", "aaaa0000aaaa0000aaaa"), volume("vdd", "bbbb")];
    let xml = render(&s, None).unwrap();
    let devices = between(&xml, "<devices>", "</devices>");
    let disks: Vec<&str> = devices.split("<disk ").skip(1).collect();
    assert_eq!(disks.len(), 4);
    assert!(
        disks[1].contains("<target dev='vdb' bus='virtio'/>"),
        "seed second"
    );
    let want = render_disk(&s.disks[0]).unwrap();
    let got: String = want.lines().map(|l| format!("    {l}\n")).collect();
    assert!(xml.contains(&got), "{xml}");
    assert!(disks[2].contains("<serial>aaaa0000aaaa0000aaaa</serial>"));
    assert!(disks[3].contains("<target dev='vdd' bus='virtio'/>"));
    let parsed: Vec<DomainDisk> = parse_volume_disks(&xml)
        .into_iter()
        .map(|d| d.disk)
        .collect();
    assert_eq!(
        parsed,
        [
            DomainDisk {
                serial: "aaaa0000aaaa0000aaaa".into(),
                target_dev: "vdc".into()
            },
            DomainDisk {
                serial: "bbbb".into(),
                target_dev: "vdd".into()
            },
        ]
    );
}

#[test]
fn an_invalid_volume_fails_the_render_naming_its_field() {
    let mut s = spec();
    s.disks = vec![volume("vda", "x")];
    let err = render(&s, None).unwrap_err();
    assert_eq!(err.field(), Some("disk.target_dev"), "{err}");
}

/// A running domain as `virsh dumpxml` shows it (libvirt 9): aliases, addresses, a console
/// `<serial>` outside the disks, and attributes in double quotes on one disk.
const LIVE_XML: &str = r#"<domain type='qemu' id='7'>
  <name>yun-u1</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/yun/vms/u1/root.qcow2' index='3'/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/var/lib/yun/vms/u1/seed.iso' index='2'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='iscsi' name='iqn.2024-01.dev.yun:t/1' index='4'>
        <host name='127.0.0.1' port='3260'/>
        <auth username='alice'>
          <secret type='iscsi' usage='yun-chap-v1'/>
        </auth>
      </source>
      <target dev='vdc' bus='virtio'/>
      <serial>1b4e28ba2fa111d2883f</serial>
      <alias name='virtio-disk2'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </disk>
    <disk type="block" device="disk">
      <source dev="/dev/loop3"/>
      <target bus="virtio" dev = "vdd"/>
      <serial> fc&amp;1 </serial>
    </disk>
    <disk type='file' device='disk'>
      <source file='/x'/>
      <target dev='vde' bus='virtio'/>
      <serial></serial>
    </disk>
    <disk type='file' device='cdrom'/>
    <serial type='pty'>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"#;

#[test]
fn volume_disks_are_parsed_from_libvirts_description() {
    let disks = parse_volume_disks(LIVE_XML);
    let found: Vec<(&str, &str)> = disks
        .iter()
        .map(|d| (d.disk.serial.as_str(), d.disk.target_dev.as_str()))
        .collect();
    assert_eq!(found, [("1b4e28ba2fa111d2883f", "vdc"), ("fc&1", "vdd")]);
    // The element is handed back whole, for the detach call.
    assert!(
        disks[0]
            .xml
            .starts_with("<disk type='network' device='disk'>")
    );
    assert!(disks[0].xml.ends_with("</disk>"));
    assert!(disks[0].xml.contains("<alias name='virtio-disk2'/>"));
    assert!(disks[1].xml.contains("<source dev=\"/dev/loop3\"/>"));
}

#[test]
fn attributes_are_found_by_whole_name_in_either_quote_style() {
    assert_eq!(
        attribute("<target bus='virtio' dev='vdc'/", "dev").as_deref(),
        Some("vdc")
    );
    assert_eq!(
        attribute("<target xdev='no' dev=\"vdq\"", "dev").as_deref(),
        Some("vdq")
    );
    assert_eq!(attribute("<target dev=vdc", "dev"), None);
    assert_eq!(attribute("<target devx='a'", "dev"), None);
    assert_eq!(
        attribute("<target dev='a&apos;b'", "dev").as_deref(),
        Some("a'b")
    );
    // A tag named like an element ("<disks>") is not a <disk>.
    assert_eq!(find_start_tag("<disks><disk/>", "disk"), Some(7));
}

#[test]
fn truncated_descriptions_give_what_is_complete() {
    let cut = &LIVE_XML[..LIVE_XML.find("<disk type=\"block\"").unwrap() + 30];
    let found: Vec<String> = parse_volume_disks(cut)
        .into_iter()
        .map(|d| d.disk.target_dev)
        .collect();
    assert_eq!(found, ["vdc"]);
    assert_eq!(parse_volume_disks(""), vec![]);
    assert_eq!(parse_volume_disks("<disk"), vec![]);
}
