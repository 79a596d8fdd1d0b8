use super::*;
use std::os::unix::fs::symlink;
use yun_fleet::Secret;

const UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

fn record(size_gib: u32, source: VolumeSourceRecord) -> VolumeRecord {
    VolumeRecord {
        id: "team-a/data".into(),
        uid: UID.into(),
        size_gib,
        read_only: false,
        source,
    }
}

fn iscsi(portals: &[&str], chap: Option<ChapRecord>) -> VolumeRecord {
    record(
        1,
        VolumeSourceRecord::Iscsi {
            portals: portals.iter().map(|p| p.to_string()).collect(),
            iqn: "iqn.2024-01.dev.yun:store".into(),
            lun: 2,
            chap,
        },
    )
}

fn host(dir: &Path) -> HostVolumes {
    HostVolumes {
        volumes_dir: dir.join("volumes"),
        fc_disk_dir: dir.join("dev/disk"),
        fc_mapper_dir: dir.join("dev/mapper"),
        sys_block_dir: dir.join("sys/block"),
    }
}

/// `qemu-img info`'s virtual size of a qcow2.
fn qemu_img_virtual_size(path: &Path) -> u64 {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["virtual-size"].as_u64().unwrap()
}

#[test]
fn a_local_volume_is_created_once_grown_and_never_shrunk() {
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path());
    let prepared = h.prepare(&record(1, VolumeSourceRecord::Local {})).unwrap();
    let path = h.volumes_dir.join(format!("{UID}.qcow2"));
    assert_eq!(
        prepared,
        PreparedVolume {
            source: VolumeSource::Local {
                path: path.clone(),
                format: ImageFormat::Qcow2
            },
            chap: None,
        }
    );
    assert_eq!(qemu_img_virtual_size(&path), GIB);
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&h.volumes_dir), 0o711);
    // Nothing left behind by the create-and-rename.
    let names: Vec<String> = fs::read_dir(&h.volumes_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [format!("{UID}.qcow2")]);

    // Data written by the guest survives a second prepare.
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 0 4k"])
        .arg(&path)
        .output();
    let wrote = out.is_ok_and(|o| o.status.success());
    h.prepare(&record(1, VolumeSourceRecord::Local {})).unwrap();
    assert_eq!(qemu_img_virtual_size(&path), GIB);
    if wrote {
        let read = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", "read -P 0x5a 0 4k"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&read.stdout);
        assert!(!text.contains("Pattern verification failed"), "{text}");
    }

    // Grown to a larger record size.
    h.prepare(&record(3, VolumeSourceRecord::Local {})).unwrap();
    assert_eq!(qemu_img_virtual_size(&path), 3 * GIB);

    // Never shrunk.
    let err = h
        .prepare(&record(2, VolumeSourceRecord::Local {}))
        .unwrap_err();
    assert_eq!(err.field(), Some("sizeGiB"), "{err}");
    assert_eq!(qemu_img_virtual_size(&path), 3 * GIB);
}

#[test]
fn local_volume_inputs_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path());
    let err = h
        .prepare(&record(0, VolumeSourceRecord::Local {}))
        .unwrap_err();
    assert_eq!(err.field(), Some("sizeGiB"), "{err}");
    for uid in ["", "../x", "a/b", ".hidden", "a b"] {
        let mut r = record(1, VolumeSourceRecord::Local {});
        r.uid = uid.into();
        assert_eq!(h.prepare(&r).unwrap_err().field(), Some("uid"), "{uid:?}");
    }
    // A file that is not a qcow2 is reported, not overwritten.
    fs::create_dir_all(&h.volumes_dir).unwrap();
    let path = h.local_path(UID).unwrap();
    fs::write(&path, b"not an image").unwrap();
    let err = h
        .prepare(&record(1, VolumeSourceRecord::Local {}))
        .unwrap_err();
    assert!(err.to_string().contains(UID), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"not an image");
}

#[test]
fn portals_get_the_default_port_and_bad_ones_are_named() {
    let got = parse_portals(&[
        "10.0.0.5:3261".into(),
        "storage.example".into(),
        "[fd00::5]:3262".into(),
        "[fd00::6]".into(),
        "fd00::7".into(),
    ])
    .unwrap();
    let want = [
        ("10.0.0.5", 3261),
        ("storage.example", 3260),
        ("fd00::5", 3262),
        ("fd00::6", 3260),
        ("fd00::7", 3260),
    ];
    let got: Vec<(&str, u16)> = got.iter().map(|p| (p.host.as_str(), p.port)).collect();
    assert_eq!(got, want);
    for bad in [
        "10.0.0.5:0",
        "10.0.0.5:",
        "10.0.0.5:70000",
        "10.0.0.5:32x",
        ":3260",
        "[fd00::5",
        "[fd00::5]3260",
        "[not-v6]:3260",
        "a b:3260",
        "",
    ] {
        let err = parse_portals(&["10.0.0.1".into(), bad.into()]).unwrap_err();
        assert_eq!(err.field(), Some("iscsi.portals[1]"), "{bad:?}: {err}");
    }
    let err = parse_portals(&[]).unwrap_err();
    assert_eq!(err.field(), Some("iscsi.portals"));
}

#[test]
fn iscsi_without_chap_needs_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let prepared = host(tmp.path())
        .prepare(&iscsi(&["127.0.0.1:3260"], None))
        .unwrap();
    assert_eq!(
        prepared.source,
        VolumeSource::Iscsi {
            portals: vec![Portal {
                host: "127.0.0.1".into(),
                port: 3260
            }],
            iqn: "iqn.2024-01.dev.yun:store".into(),
            lun: 2,
            chap: None,
        }
    );
    assert_eq!(prepared.chap, None);
}

#[test]
fn inline_chap_becomes_a_secret_named_by_the_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let chap = ChapRecord::Inline {
        username: "alice".into(),
        password: Secret("s3cret-pass".into()),
    };
    let prepared = host(tmp.path())
        .prepare(&iscsi(&["127.0.0.1"], Some(chap)))
        .unwrap();
    let usage = format!("yun-chap-{UID}");
    let VolumeSource::Iscsi { chap: Some(r), .. } = &prepared.source else {
        panic!("{prepared:?}");
    };
    assert_eq!(r.username, "alice");
    assert_eq!(r.secret_usage, usage);
    let secret = prepared.chap.clone().unwrap();
    assert_eq!(secret.usage, usage);
    assert_eq!(secret.password, "s3cret-pass");
    assert!(!format!("{prepared:?}").contains("s3cret"), "{prepared:?}");
}

#[test]
fn chap_from_a_private_file() {
    let tmp = tempfile::tempdir().unwrap();
    let h = host(tmp.path());
    let file = tmp.path().join("chap");
    let from_file = |content: &str, mode: u32| {
        fs::write(&file, content).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let chap = ChapRecord::File {
            path: file.to_string_lossy().into_owned(),
        };
        h.prepare(&iscsi(&["127.0.0.1"], Some(chap)))
    };
    for content in ["bob:pa:ss\n", "bob:pa:ss", "bob:pa:ss\r\n"] {
        let secret = from_file(content, 0o600).unwrap().chap.unwrap();
        assert_eq!(secret.password, "pa:ss", "{content:?}");
    }
    for mode in [0o640, 0o604, 0o660] {
        let err = from_file("bob:pass\n", mode).unwrap_err();
        assert_eq!(err.field(), Some("iscsi.chap.file"), "{mode:o}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    for bad in ["bob\n", ":hunter2", "bob:", "bob:hunter2\nmore\n", ""] {
        let err = from_file(bad, 0o400).unwrap_err();
        assert_eq!(err.field(), Some("iscsi.chap.file"), "{bad:?}");
        // The message names the file, never what is in it.
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let missing = ChapRecord::File {
        path: tmp.path().join("nope").to_string_lossy().into_owned(),
    };
    let err = h
        .prepare(&iscsi(&["127.0.0.1"], Some(missing)))
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    let relative = ChapRecord::File {
        path: "chap".into(),
    };
    let err = h
        .prepare(&iscsi(&["127.0.0.1"], Some(relative)))
        .unwrap_err();
    assert_eq!(err.field(), Some("iscsi.chap.file"));
}

#[test]
fn nfs_format_follows_the_file_name() {
    let tmp = tempfile::tempdir().unwrap();
    let nfs = |path: &str| {
        host(tmp.path())
            .prepare(&record(
                1,
                VolumeSourceRecord::Nfs {
                    server: "10.0.0.9".into(),
                    export: "/srv/volumes".into(),
                    path: path.into(),
                },
            ))
            .unwrap()
            .source
    };
    assert_eq!(
        nfs("a/disk.qcow2"),
        VolumeSource::Nfs {
            server: "10.0.0.9".into(),
            export: "/srv/volumes".into(),
            path: "a/disk.qcow2".into(),
            format: ImageFormat::Qcow2,
        }
    );
    for raw in ["disk.img", "disk", "disk.qcow2.bak"] {
        let VolumeSource::Nfs { format, .. } = nfs(raw) else {
            panic!("not nfs");
        };
        assert_eq!(format, ImageFormat::Raw, "{raw}");
    }
}

const WWPN: &str = "500a098280feeba5";

/// `dev/{sdc,dm-0}`, an FC path link to sdc for LUN 3, and sysfs with sdc held by `dm-0`.
fn fc_fixture(dir: &Path, dm_uuid: &str) {
    let dev = dir.join("dev");
    fs::create_dir_all(dev.join("disk/by-path")).unwrap();
    fs::create_dir_all(dev.join("mapper")).unwrap();
    fs::write(dev.join("sdc"), b"").unwrap();
    fs::write(dev.join("dm-0"), b"").unwrap();
    symlink(
        "../../sdc",
        dev.join(format!("disk/by-path/pci-0000:05:00.0-fc-0x{WWPN}-lun-3")),
    )
    .unwrap();
    symlink("../dm-0", dev.join("mapper/mpatha")).unwrap();
    let sys = dir.join("sys/block");
    fs::create_dir_all(sys.join("sdc/holders")).unwrap();
    fs::create_dir_all(sys.join("dm-0/dm")).unwrap();
    symlink("../../dm-0", sys.join("sdc/holders/dm-0")).unwrap();
    fs::write(sys.join("dm-0/dm/uuid"), dm_uuid).unwrap();
    fs::write(sys.join("dm-0/dm/name"), "mpatha\n").unwrap();
}

fn fc(dir: &Path) -> Result<VolumeSource, StorageError> {
    let r = record(
        1,
        VolumeSourceRecord::Fc {
            wwns: vec![format!("0x{WWPN}")],
            lun: 3,
        },
    );
    host(dir).prepare(&r).map(|p| p.source)
}

#[test]
fn fc_prefers_the_multipath_map_holding_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    fc_fixture(tmp.path(), "mpath-3600a098038303053453f463045727175\n");
    assert_eq!(
        fc(tmp.path()).unwrap(),
        VolumeSource::Fc {
            device: tmp.path().join("dev/mapper/mpatha")
        }
    );
}

#[test]
fn fc_uses_the_path_when_no_multipath_map_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    fc_fixture(tmp.path(), "LVM-abc\n");
    let sdc = tmp.path().join("dev/sdc").canonicalize().unwrap();
    assert_eq!(fc(tmp.path()).unwrap(), VolumeSource::Fc { device: sdc });
    // And an unknown LUN is an error naming the WWN.
    let r = record(
        1,
        VolumeSourceRecord::Fc {
            wwns: vec![WWPN.into()],
            lun: 4,
        },
    );
    let err = host(tmp.path()).prepare(&r).unwrap_err();
    assert!(
        matches!(err, StorageError::FcNotFound { lun: 4, .. }),
        "{err}"
    );
}
