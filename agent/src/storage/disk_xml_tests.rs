use super::*;
use crate::storage::ImageFormat;
use std::path::PathBuf;

const IQN: &str = "iqn.2024-01.com.example.san:store-1";

fn disk(source: VolumeSource) -> AttachedDisk {
    AttachedDisk {
        source,
        target_dev: "vdc".into(),
        serial: "1b4e28ba2fa111d2883f".into(),
        read_only: false,
    }
}

fn iscsi(chap: Option<ChapRef>) -> VolumeSource {
    VolumeSource::Iscsi {
        portals: vec![
            Portal {
                host: "10.0.0.5".into(),
                port: 3260,
            },
            Portal {
                host: "san-b.example.com".into(),
                port: 3261,
            },
        ],
        iqn: IQN.into(),
        lun: 3,
        chap,
    }
}

fn nfs(export: &str, path: &str) -> VolumeSource {
    VolumeSource::Nfs {
        server: "nas.example.com".into(),
        export: export.into(),
        path: path.into(),
        format: ImageFormat::Qcow2,
    }
}

fn field_of(source: VolumeSource) -> String {
    let err = render_disk(&disk(source)).unwrap_err();
    err.field()
        .unwrap_or_else(|| panic!("not Invalid: {err}"))
        .to_owned()
}

#[test]
fn local_qcow2_file() {
    let xml = render_disk(&disk(VolumeSource::Local {
        path: PathBuf::from("/var/lib/yun/volumes/v1.qcow2"),
        format: ImageFormat::Qcow2,
    }))
    .unwrap();
    assert_eq!(
        xml,
        "<disk type='file' device='disk'>\n\
         \x20 <driver name='qemu' type='qcow2'/>\n\
         \x20 <source file='/var/lib/yun/volumes/v1.qcow2'/>\n\
         \x20 <target dev='vdc' bus='virtio'/>\n\
         \x20 <serial>1b4e28ba2fa111d2883f</serial>\n\
         </disk>\n"
    );
}

#[test]
fn iscsi_uses_first_portal_without_chap() {
    let xml = render_disk(&disk(iscsi(None))).unwrap();
    assert_eq!(
        xml,
        "<disk type='network' device='disk'>\n\
         \x20 <driver name='qemu' type='raw' cache='none'/>\n\
         \x20 <source protocol='iscsi' name='iqn.2024-01.com.example.san:store-1/3'>\n\
         \x20   <host name='10.0.0.5' port='3260'/>\n\
         \x20 </source>\n\
         \x20 <target dev='vdc' bus='virtio'/>\n\
         \x20 <serial>1b4e28ba2fa111d2883f</serial>\n\
         </disk>\n"
    );
}

#[test]
fn iscsi_with_chap_references_secret_by_usage() {
    let mut d = disk(iscsi(Some(ChapRef {
        username: "yun-initiator".into(),
        secret_usage: "yun-chap-v1".into(),
    })));
    d.read_only = true;
    let xml = render_disk(&d).unwrap();
    assert_eq!(
        xml,
        "<disk type='network' device='disk'>\n\
         \x20 <driver name='qemu' type='raw' cache='none'/>\n\
         \x20 <source protocol='iscsi' name='iqn.2024-01.com.example.san:store-1/3'>\n\
         \x20   <host name='10.0.0.5' port='3260'/>\n\
         \x20   <auth username='yun-initiator'>\n\
         \x20     <secret type='iscsi' usage='yun-chap-v1'/>\n\
         \x20   </auth>\n\
         \x20 </source>\n\
         \x20 <target dev='vdc' bus='virtio'/>\n\
         \x20 <serial>1b4e28ba2fa111d2883f</serial>\n\
         \x20 <readonly/>\n\
         </disk>\n"
    );
}

#[test]
fn nfs_joins_export_and_path() {
    let xml = render_disk(&disk(nfs("/srv/volumes/", "/team-a/v1.qcow2"))).unwrap();
    assert_eq!(
        xml,
        "<disk type='network' device='disk'>\n\
         \x20 <driver name='qemu' type='qcow2' cache='none'/>\n\
         \x20 <source protocol='nfs' name='/srv/volumes/team-a/v1.qcow2'>\n\
         \x20   <host name='nas.example.com' transport='tcp'/>\n\
         \x20   <identity/>\n\
         \x20 </source>\n\
         \x20 <target dev='vdc' bus='virtio'/>\n\
         \x20 <serial>1b4e28ba2fa111d2883f</serial>\n\
         </disk>\n"
    );
    // Root export, relative path, raw format.
    let raw = VolumeSource::Nfs {
        server: "192.0.2.7".into(),
        export: "/".into(),
        path: "v2.img".into(),
        format: ImageFormat::Raw,
    };
    let xml = render_disk(&disk(raw)).unwrap();
    assert!(
        xml.contains("<driver name='qemu' type='raw' cache='none'/>"),
        "{xml}"
    );
    assert!(
        xml.contains("<source protocol='nfs' name='/v2.img'>"),
        "{xml}"
    );
    assert!(
        xml.contains("<host name='192.0.2.7' transport='tcp'/>"),
        "{xml}"
    );
}

#[test]
fn fc_block_device() {
    let xml = render_disk(&disk(VolumeSource::Fc {
        device: PathBuf::from("/dev/mapper/3600a098038303053453f463045727175"),
    }))
    .unwrap();
    assert_eq!(
        xml,
        "<disk type='block' device='disk'>\n\
         \x20 <driver name='qemu' type='raw' cache='none'/>\n\
         \x20 <source dev='/dev/mapper/3600a098038303053453f463045727175'/>\n\
         \x20 <target dev='vdc' bus='virtio'/>\n\
         \x20 <serial>1b4e28ba2fa111d2883f</serial>\n\
         </disk>\n"
    );
}

#[test]
fn hostile_values_are_escaped() {
    let local = render_disk(&disk(VolumeSource::Local {
        path: PathBuf::from("/v/a'b&<c>\".qcow2"),
        format: ImageFormat::Raw,
    }))
    .unwrap();
    assert!(
        local.contains("<source file='/v/a&apos;b&amp;&lt;c&gt;&quot;.qcow2'/>"),
        "{local}"
    );
    let fc = render_disk(&disk(VolumeSource::Fc {
        device: PathBuf::from("/dev/x'/><evil/>"),
    }))
    .unwrap();
    assert!(
        fc.contains("<source dev='/dev/x&apos;/&gt;&lt;evil/&gt;'/>"),
        "{fc}"
    );
    let nfs = render_disk(&disk(nfs("/e'x", "a&b<'>.qcow2"))).unwrap();
    assert!(
        nfs.contains("name='/e&apos;x/a&amp;b&lt;&apos;&gt;.qcow2'"),
        "{nfs}"
    );
    let chap = render_disk(&disk(iscsi(Some(ChapRef {
        username: "u".into(),
        secret_usage: "s'><x a='&\"".into(),
    }))))
    .unwrap();
    assert!(
        chap.contains("usage='s&apos;&gt;&lt;x a=&apos;&amp;&quot;'/>"),
        "{chap}"
    );
    for xml in [&local, &fc, &nfs, &chap] {
        assert!(!xml.contains("<evil") && !xml.contains("<x "), "{xml}");
        // Every element opened is closed: one <disk> in, one </disk> out.
        assert_eq!(xml.matches("<disk ").count(), 1);
        assert_eq!(xml.matches("</disk>").count(), 1);
    }
}

#[test]
fn chap_secret_definition() {
    assert_eq!(
        render_chap_secret("yun-chap-v1", "CHAP for volume team-a/db"),
        "<secret ephemeral='yes' private='yes'>\n\
         \x20 <description>CHAP for volume team-a/db</description>\n\
         \x20 <usage type='iscsi'>\n\
         \x20   <target>yun-chap-v1</target>\n\
         \x20 </usage>\n\
         </secret>\n"
    );
    let hostile = render_chap_secret("u</target><x>", "a & <b>");
    assert!(hostile.contains("<description>a &amp; &lt;b&gt;</description>"));
    assert!(hostile.contains("<target>u&lt;/target&gt;&lt;x&gt;</target>"));
    assert!(!hostile.contains("<x>"));
}

#[test]
fn iqn_validation_names_iqn() {
    for good in [
        "iqn.2024-01.com.example",
        "iqn.1992-08.com.netapp:sn.1234",
        "iqn.2003-01.org.linux-iscsi.host:sn.0a1b:x",
        IQN,
    ] {
        let src = VolumeSource::Iscsi {
            portals: vec![Portal {
                host: "h".into(),
                port: 3260,
            }],
            iqn: good.into(),
            lun: 0,
            chap: None,
        };
        render_disk(&disk(src)).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "",
        "eui.02004567a425678d",
        "iqn.",
        "iqn.2024-01",
        "iqn.2024-01.",
        "iqn.2024-13.com.example",
        "iqn.2024-00.com.example",
        "iqn.24-01.com.example",
        "iqn.2024-1.com.example",
        "iqn.2024-01.com..example",
        "iqn.2024-01.com.example:",
        "iqn.2024-01.Com.Example",
        "iqn.2024-01.com.example:a/b",
        "iqn.2024-01.com.example:a b",
        "iqn.2024-01.com.example'",
    ] {
        let src = VolumeSource::Iscsi {
            portals: vec![Portal {
                host: "h".into(),
                port: 3260,
            }],
            iqn: bad.into(),
            lun: 0,
            chap: None,
        };
        assert_eq!(field_of(src), "iscsi.iqn", "{bad:?}");
    }
    let long = format!("iqn.2024-01.com.example:{}", "a".repeat(200));
    let src = VolumeSource::Iscsi {
        portals: vec![Portal {
            host: "h".into(),
            port: 3260,
        }],
        iqn: long,
        lun: 0,
        chap: None,
    };
    assert_eq!(field_of(src), "iscsi.iqn");
}

fn portal(host: &str, port: u16) -> Portal {
    Portal {
        host: host.into(),
        port,
    }
}

fn iscsi_with(portals: Vec<Portal>, lun: u32, username: &str, usage: &str) -> VolumeSource {
    VolumeSource::Iscsi {
        portals,
        iqn: IQN.into(),
        lun,
        chap: Some(ChapRef {
            username: username.into(),
            secret_usage: usage.into(),
        }),
    }
}

#[test]
fn iscsi_lun_port_host_and_chap_validation() {
    let two = |second: Portal| vec![portal("10.0.0.5", 3260), second];
    let ok = two(portal("fd00::5", 65535));
    assert!(render_disk(&disk(iscsi_with(ok.clone(), 16383, "u", "s"))).is_ok());

    assert_eq!(
        field_of(iscsi_with(ok.clone(), 16384, "u", "s")),
        "iscsi.lun"
    );
    let err = render_disk(&disk(iscsi_with(ok.clone(), 70000, "u", "s"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid iscsi.lun \"70000\": must be in 0..=16383"
    );

    let first_bad = vec![portal("10.0.0.5", 0)];
    assert_eq!(
        field_of(iscsi_with(first_bad, 0, "u", "s")),
        "iscsi.portals[0].port"
    );
    let second_bad = two(portal("h", 0));
    assert_eq!(
        field_of(iscsi_with(second_bad, 0, "u", "s")),
        "iscsi.portals[1].port"
    );
    for bad_host in ["", "a b", "h'", "-h", "h..x", "[fd00::5]", "h:3260"] {
        let src = iscsi_with(two(portal(bad_host, 3260)), 0, "u", "s");
        assert_eq!(field_of(src), "iscsi.portals[1].host", "{bad_host:?}");
    }
    assert_eq!(
        field_of(iscsi_with(Vec::new(), 0, "u", "s")),
        "iscsi.portals"
    );

    for bad in ["", "iqn.2024-01.com.x:init", "a b", "u'"] {
        let src = iscsi_with(ok.clone(), 0, bad, "s");
        assert_eq!(field_of(src), "iscsi.chap.username", "{bad:?}");
    }
    for bad in ["", "a/b", "a\nb"] {
        let src = iscsi_with(ok.clone(), 0, "u", bad);
        assert_eq!(field_of(src), "iscsi.chap.secret_usage", "{bad:?}");
    }
}

#[test]
fn nfs_validation_names_field() {
    assert_eq!(field_of(nfs("srv/volumes", "v.qcow2")), "nfs.export");
    assert_eq!(field_of(nfs("/srv/../etc", "v.qcow2")), "nfs.export");
    assert_eq!(field_of(nfs("/srv", "../etc/shadow")), "nfs.path");
    assert_eq!(field_of(nfs("/srv", "a/../../b")), "nfs.path");
    assert_eq!(field_of(nfs("/srv", "a/..")), "nfs.path");
    assert_eq!(field_of(nfs("/srv", "")), "nfs.path");
    assert_eq!(field_of(nfs("/srv", "/")), "nfs.path");
    assert_eq!(field_of(nfs("/srv", "dir/")), "nfs.path");
    assert_eq!(field_of(nfs("/srv", "a\u{0}b")), "nfs.path");
    // Dots inside a name are not traversal.
    assert!(render_disk(&disk(nfs("/srv", "a..b/v..qcow2"))).is_ok());
    let bad_server = VolumeSource::Nfs {
        server: "nas example".into(),
        export: "/srv".into(),
        path: "v".into(),
        format: ImageFormat::Raw,
    };
    assert_eq!(field_of(bad_server), "nfs.server");
}

#[test]
fn paths_must_be_absolute() {
    let local = |p: &str| VolumeSource::Local {
        path: PathBuf::from(p),
        format: ImageFormat::Qcow2,
    };
    let fc = |p: &str| VolumeSource::Fc {
        device: PathBuf::from(p),
    };
    assert_eq!(field_of(local("v.qcow2")), "local.path");
    assert_eq!(field_of(local("/var/../etc/v.qcow2")), "local.path");
    assert_eq!(field_of(fc("dev/sdc")), "fc.device");
    assert_eq!(field_of(fc("")), "fc.device");
    assert_eq!(field_of(fc("/dev/../etc/passwd")), "fc.device");
    assert_eq!(field_of(fc("/dev/sd\tc")), "fc.device");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let non_utf8 = PathBuf::from(std::ffi::OsStr::from_bytes(b"/dev/\xff"));
        assert_eq!(field_of(VolumeSource::Fc { device: non_utf8 }), "fc.device");
    }
}

#[test]
fn target_dev_and_serial_are_checked() {
    let local = VolumeSource::Local {
        path: PathBuf::from("/v.qcow2"),
        format: ImageFormat::Qcow2,
    };
    for bad in ["vda", "vd", "sdb", "vdaa", "vd{", "vdB", "vdc'"] {
        let mut d = disk(local.clone());
        d.target_dev = bad.into();
        let err = render_disk(&d).unwrap_err();
        assert_eq!(err.field(), Some("disk.target_dev"), "{bad:?}");
    }
    for bad in ["", "123456789012345678901", "a/b", "a'b", "é"] {
        let mut d = disk(local.clone());
        d.serial = bad.into();
        let err = render_disk(&d).unwrap_err();
        assert_eq!(err.field(), Some("disk.serial"), "{bad:?}");
    }
    let mut d = disk(local);
    d.serial = "A.b_c+d-e f".into();
    assert!(
        render_disk(&d)
            .unwrap()
            .contains("<serial>A.b_c+d-e f</serial>")
    );
}

#[test]
fn next_target_dev_skips_used_and_stops_at_vdz() {
    let used = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(next_target_dev(&[]).as_deref(), Some("vdb"));
    assert_eq!(next_target_dev(&used(&["vda"])).as_deref(), Some("vdb"));
    assert_eq!(
        next_target_dev(&used(&["vda", "vdb", "vdd"])).as_deref(),
        Some("vdc")
    );
    let all: Vec<String> = (b'a'..=b'z').map(|c| format!("vd{}", c as char)).collect();
    assert_eq!(next_target_dev(&all), None);
    assert_eq!(next_target_dev(&all[..25]).as_deref(), Some("vdz"));
    // Every answer renders.
    let d = AttachedDisk {
        target_dev: next_target_dev(&all[..25]).unwrap(),
        ..disk(VolumeSource::Fc {
            device: PathBuf::from("/dev/sdc"),
        })
    };
    assert!(render_disk(&d).is_ok());
}

#[test]
fn serial_is_stable_20_hex_and_valid() {
    let uid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    assert_eq!(serial_for(uid), "1b4e28ba2fa111d2883f");
    assert_eq!(serial_for(&uid.to_uppercase()), "1b4e28ba2fa111d2883f");
    // Not a UUID: a hash prefix, same every time, different per input.
    let a = serial_for("volume-a");
    assert_eq!(a, serial_for("volume-a"));
    assert_eq!(a, hex::encode(Sha256::digest(b"volume-a"))[..20]);
    assert_ne!(a, serial_for("volume-b"));
    assert_ne!(
        serial_for("1b4e28ba2fa111d2883f0016d3cca427"),
        serial_for(uid)
    );
    for input in [
        uid,
        "",
        "x",
        "ünïcode",
        &"z".repeat(500),
        "1b4e28ba-2fa1-11d2-883f",
    ] {
        let s = serial_for(input);
        assert_eq!(s.len(), SERIAL_LEN, "{input:?}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let mut d = disk(VolumeSource::Fc {
            device: PathBuf::from("/dev/sdc"),
        });
        d.serial = s;
        assert!(render_disk(&d).is_ok());
    }
}
