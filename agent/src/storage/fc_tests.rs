use super::*;
use std::fs;
use std::os::unix::fs::symlink;

const WWPN_A: &str = "500a098280feeba5";
const WWPN_B: &str = "500a098290feeba5";
const WWID: &str = "600a098038303053453f463045727175";

/// A `/dev`-like tree: `dev/sdc`, `dev/sdd`, `dev/dm-0` (plain files standing in for device
/// nodes), `dev/disk/{by-path,by-id}` and `dev/mapper`, with links added by each test.
struct Fixture {
    _tmp: tempfile::TempDir,
    dev: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dev = tmp.path().join("dev");
        for d in ["disk/by-path", "disk/by-id", "mapper"] {
            fs::create_dir_all(dev.join(d)).unwrap();
        }
        for node in ["sdc", "sdd", "sde", "dm-0"] {
            fs::write(dev.join(node), b"").unwrap();
        }
        Fixture { _tmp: tmp, dev }
    }

    fn disk(&self) -> PathBuf {
        self.dev.join("disk")
    }

    fn mapper(&self) -> PathBuf {
        self.dev.join("mapper")
    }

    /// `disk/by-path/pci-0000:05:00.<fn>-fc-0x<wwpn>-lun-<lun>` → `../../<node>`.
    fn path_link(&self, pci_fn: u8, wwpn: &str, lun: &str, node: &str) {
        let name = format!("pci-0000:05:00.{pci_fn}-fc-0x{wwpn}-lun-{lun}");
        symlink(
            format!("../../{node}"),
            self.disk().join("by-path").join(name),
        )
        .unwrap();
    }

    fn id_link(&self, name: &str, node: &str) {
        symlink(
            format!("../../{node}"),
            self.disk().join("by-id").join(name),
        )
        .unwrap();
    }

    fn mapper_link(&self, name: &str, node: &str) {
        symlink(format!("../{node}"), self.mapper().join(name)).unwrap();
    }

    /// Two paths (one per HBA port and target port) to LUN 3, the WWID link on one of them, plus
    /// a path to another LUN and a partition of LUN 3 that must not be picked.
    fn two_paths_to_lun3(&self) {
        self.path_link(0, WWPN_A, "3", "sdc");
        self.path_link(1, WWPN_B, "3", "sdd");
        self.path_link(0, WWPN_A, "30", "sde");
        let part = format!("pci-0000:05:00.0-fc-0x{WWPN_A}-lun-3-part1");
        symlink("../../sde", self.disk().join("by-path").join(part)).unwrap();
        self.id_link(&format!("wwn-0x{WWID}"), "sdc");
        self.id_link(&format!("wwn-0x{WWID}-part1"), "sde");
    }

    fn resolve(&self, wwns: &[&str], lun: u32) -> Result<PathBuf, StorageError> {
        let wwns: Vec<String> = wwns.iter().map(|s| s.to_string()).collect();
        resolve_fc(&self.disk(), &self.mapper(), &wwns, lun)
    }

    fn node(&self, name: &str) -> PathBuf {
        self.dev.join(name).canonicalize().unwrap()
    }
}

#[test]
fn multipath_map_named_by_wwid_is_preferred() {
    let f = Fixture::new();
    f.two_paths_to_lun3();
    f.mapper_link(&format!("3{WWID}"), "dm-0");
    fs::write(f.mapper().join("control"), b"").unwrap();
    assert_eq!(
        f.resolve(&[WWPN_A, WWPN_B], 3).unwrap(),
        f.mapper().join(format!("3{WWID}"))
    );
    assert_eq!(
        f.resolve(&[WWPN_B, WWPN_A], 3).unwrap(),
        f.mapper().join(format!("3{WWID}"))
    );
    // The documented limit of a /sys-less rule: through target port B alone the only path is
    // sdd, which no wwn-0x link points at, so its WWID (and the map) is unknown.
    assert_eq!(f.resolve(&[WWPN_B], 3).unwrap(), f.node("sdd"));
}

#[test]
fn multipath_friendly_name_is_found_through_dm_uuid() {
    let f = Fixture::new();
    f.two_paths_to_lun3();
    f.mapper_link("mpatha", "dm-0");
    f.id_link(&format!("dm-uuid-mpath-3{WWID}"), "dm-0");
    assert_eq!(f.resolve(&[WWPN_A], 3).unwrap(), f.mapper().join("mpatha"));
}

#[test]
fn without_multipath_the_first_path_device_is_used() {
    let f = Fixture::new();
    f.two_paths_to_lun3();
    // A map for another LUN does not count.
    f.mapper_link("3600a0980000000000000000000000000", "dm-0");
    assert_eq!(f.resolve(&[WWPN_A, WWPN_B], 3).unwrap(), f.node("sdc"));
    // Only the second target port listed: its own path.
    assert_eq!(f.resolve(&[WWPN_B], 3).unwrap(), f.node("sdd"));
    // No mapper directory at all.
    fs::remove_dir_all(f.mapper()).unwrap();
    assert_eq!(f.resolve(&[WWPN_A], 3).unwrap(), f.node("sdc"));
}

#[test]
fn wwn_spellings_are_equivalent() {
    let f = Fixture::new();
    f.two_paths_to_lun3();
    for wwn in [
        "0x500a098280feeba5",
        "0X500A098280FEEBA5",
        "50:0a:09:82:80:fe:eb:a5",
        "0x50:0A:09:82:80:FE:EB:A5",
        " 500a098280feeba5 ",
    ] {
        assert_eq!(f.resolve(&[wwn], 3).unwrap(), f.node("sdc"), "{wwn:?}");
    }
}

#[test]
fn lun_must_match_exactly() {
    let f = Fixture::new();
    f.two_paths_to_lun3();
    // lun-30 exists, but it is not LUN 3's path and LUN 3 is not LUN 30's.
    assert_eq!(f.resolve(&[WWPN_A], 30).unwrap(), f.node("sde"));
    let err = f
        .resolve(&[WWPN_A, "50:0a:09:82:80:fe:eb:a6"], 4)
        .unwrap_err();
    match &err {
        StorageError::FcNotFound { wwns, lun, dir } => {
            assert_eq!(
                wwns,
                &[WWPN_A.to_string(), "50:0a:09:82:80:fe:eb:a6".into()]
            );
            assert_eq!(*lun, 4);
            assert_eq!(dir, &f.disk().join("by-path"));
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(WWPN_A) && msg.contains("50:0a:09:82:80:fe:eb:a6"),
        "{msg}"
    );
    assert!(msg.contains("LUN 4") && msg.contains("by-path"), "{msg}");
}

#[test]
fn unknown_target_and_dangling_links_are_not_found() {
    let f = Fixture::new();
    f.two_paths_to_lun3();
    assert!(matches!(
        f.resolve(&["0x1111111111111111"], 3),
        Err(StorageError::FcNotFound { .. })
    ));
    f.path_link(2, "2222222222222222", "5", "sdz");
    assert!(matches!(
        f.resolve(&["2222222222222222"], 5),
        Err(StorageError::FcNotFound { .. })
    ));
    // No by-path directory (no FC disk seen yet): not found, not an I/O error.
    fs::remove_dir_all(f.disk().join("by-path")).unwrap();
    assert!(matches!(
        f.resolve(&[WWPN_A], 3),
        Err(StorageError::FcNotFound { .. })
    ));
}

#[test]
fn malformed_wwns_name_their_index() {
    let f = Fixture::new();
    assert_eq!(f.resolve(&[], 3).unwrap_err().field(), Some("fc.wwns"));
    for bad in [
        "",
        "0x",
        "500a098280feeba",
        "500a098280feeba5a",
        "500a098280feebag",
    ] {
        let err = f.resolve(&[WWPN_A, bad], 3).unwrap_err();
        assert_eq!(err.field(), Some("fc.wwns[1]"), "{bad:?}");
    }
}

#[test]
fn by_path_names_are_parsed_strictly() {
    assert_eq!(
        parse_fc_path_name("pci-0000:05:00.0-fc-0x500a098280feeba5-lun-3"),
        Some((WWPN_A.into(), 3))
    );
    assert_eq!(
        parse_fc_path_name("pci-0000:05:00.0-fc-0x500A098280FEEBA5-lun-16384"),
        Some((WWPN_A.into(), 16384))
    );
    for not_fc in [
        "pci-0000:05:00.0-fc-0x500a098280feeba5-lun-3-part1",
        "pci-0000:05:00.0-fc-500a098280feeba5-lun-3",
        "pci-0000:05:00.0-fc-0x500a098280feeba5-lun-",
        "pci-0000:00:1f.2-ata-1",
        "ip-10.0.0.5:3260-iscsi-iqn.2024-01.com.example:store-lun-3",
    ] {
        assert_eq!(parse_fc_path_name(not_fc), None, "{not_fc}");
    }
}

/// `<tmp>/sys/block` with `sdc/holders/<holder>` and `<holder>/dm/{uuid,name}` as sysfs has them.
fn sys_block(f: &Fixture, holder: &str, uuid: &str, name: &str) -> PathBuf {
    let sys = f.dev.parent().unwrap().join("sys/block");
    fs::create_dir_all(sys.join("sdc/holders")).unwrap();
    fs::create_dir_all(sys.join("sdd/holders")).unwrap();
    fs::create_dir_all(sys.join(holder).join("dm")).unwrap();
    symlink(
        format!("../../{holder}"),
        sys.join("sdc/holders").join(holder),
    )
    .unwrap();
    fs::write(sys.join(holder).join("dm/uuid"), format!("{uuid}\n")).unwrap();
    fs::write(sys.join(holder).join("dm/name"), format!("{name}\n")).unwrap();
    sys
}

#[test]
fn a_path_claimed_by_multipath_is_replaced_by_its_map() {
    // The known gap of the link-only rule: wwn-0x points at the map, not at a path.
    let f = Fixture::new();
    f.path_link(0, WWPN_A, "3", "sdc");
    f.id_link(&format!("wwn-0x{WWID}"), "dm-0");
    f.mapper_link("mpatha", "dm-0");
    let path = f.resolve(&[WWPN_A], 3).unwrap();
    assert_eq!(path, f.node("sdc"));
    let sys = sys_block(&f, "dm-0", &format!("mpath-3{WWID}"), "mpatha");
    assert_eq!(
        multipath_holder(&sys, &f.mapper(), &path).unwrap(),
        Some(f.mapper().join("mpatha"))
    );
    // Without the mapper entry, the dm node next to the path device.
    fs::remove_file(f.mapper().join("mpatha")).unwrap();
    assert_eq!(
        multipath_holder(&sys, &f.mapper(), &path).unwrap(),
        Some(f.node("dm-0"))
    );
    // A path nothing holds stays itself.
    assert_eq!(
        multipath_holder(&sys, &f.mapper(), &f.node("sdd")).unwrap(),
        None
    );
    // No sysfs entry for the device at all (not a block device here).
    assert_eq!(
        multipath_holder(&sys, &f.mapper(), &f.node("sde")).unwrap(),
        None
    );
}

#[test]
fn holders_that_are_not_multipath_are_ignored() {
    let f = Fixture::new();
    f.mapper_link("vg-data", "dm-0");
    let sys = sys_block(&f, "dm-0", "LVM-Zx3kqT0p", "vg-data");
    assert_eq!(
        multipath_holder(&sys, &f.mapper(), &f.node("sdc")).unwrap(),
        None
    );
}
