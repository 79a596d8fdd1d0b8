use super::*;

fn iscsi() -> VolumeSpec {
    serde_json::from_value(serde_json::json!({
        "sizeGiB": 10,
        "iscsi": {"portals": ["10.0.0.5", "san-b.example:3261"],
                  "iqn": "iqn.2024-01.com.example:storage.lun1", "lun": 1,
                  "chap": {"secretRef": {"name": "san-chap"}}},
    }))
    .unwrap()
}

fn errors(spec: &VolumeSpec) -> Vec<String> {
    spec.validate()
        .err()
        .map(|e| e.errors().iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn every_pattern_compiles() {
    for p in [
        IQN_PATTERN,
        PORTAL_PATTERN,
        SERVER_PATTERN,
        WWN_PATTERN,
        ABSOLUTE_PATH_PATTERN,
        RELATIVE_PATH_PATTERN,
    ] {
        assert!(regex::Regex::new(p).is_ok(), "{p}");
    }
}

#[test]
fn typical_volumes_of_each_driver_are_valid() {
    let specs = [
        serde_json::json!({"sizeGiB": 20, "local": {}}),
        serde_json::json!({"sizeGiB": 5, "accessMode": "ReadOnlyMany",
            "fc": {"wwns": ["0x500a098280feeba5", "50:0a:09:82:80:fe:eb:a6"], "lun": 3}}),
        serde_json::json!({"sizeGiB": 1, "nfs": {"server": "nas1", "export": "/srv/vols",
            "path": "tenant-a/db.raw"}}),
    ];
    for s in specs {
        let spec: VolumeSpec = serde_json::from_value(s.clone()).unwrap();
        assert!(errors(&spec).is_empty(), "{s}: {:?}", errors(&spec));
        assert!(spec.driver().is_some());
    }
    assert_eq!(iscsi().driver(), Some(Driver::Iscsi));
    assert!(errors(&iscsi()).is_empty(), "{:?}", errors(&iscsi()));
    assert_eq!(iscsi().access_mode, AccessMode::ReadWriteOnce);
}

#[test]
fn exactly_one_driver() {
    let none: VolumeSpec = serde_json::from_value(serde_json::json!({"sizeGiB": 1})).unwrap();
    assert_eq!(errors(&none), [format!("spec: {DRIVER_MESSAGE}")]);
    assert_eq!(none.driver(), None);
    let mut two = iscsi();
    two.local = Some(LocalVolume {});
    assert_eq!(errors(&two), [format!("spec: {DRIVER_MESSAGE}")]);
}

#[test]
fn every_bad_field_names_its_path() {
    let mut v = iscsi();
    let s = v.iscsi.as_mut().unwrap();
    s.portals = vec!["10.0.0.5:0".into(), "ok".into()];
    s.iqn = "iqn.24-01.com.example".into();
    s.lun = LUN_MAX + 1;
    s.chap = Some(Chap {
        secret_ref: Some(SecretRef { name: "x".into() }),
        file: Some("relative".into()),
    });
    v.size_gib = 0;
    let errs = errors(&v);
    for path in [
        "spec.sizeGiB:",
        "spec.iscsi.portals[0]:",
        "spec.iscsi.iqn:",
        "spec.iscsi.lun:",
        "spec.iscsi.chap:",
        "spec.iscsi.chap.file:",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(path)),
            "{path} not in {errs:?}"
        );
    }
    assert!(
        !errs.iter().any(|e| e.starts_with("spec.iscsi.portals[1]")),
        "{errs:?}"
    );

    let nfs: VolumeSpec = serde_json::from_value(serde_json::json!({"sizeGiB": 1,
        "nfs": {"server": "nas 1", "export": "srv", "path": "a/../../etc/shadow"}}))
    .unwrap();
    let errs = errors(&nfs);
    assert!(
        errs.iter().any(|e| e.starts_with("spec.nfs.server:")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("spec.nfs.export:")),
        "{errs:?}"
    );
    assert!(
        errs.contains(&format!("spec.nfs.path: {NO_DOTDOT_MESSAGE}")),
        "{errs:?}"
    );

    let fc: VolumeSpec =
        serde_json::from_value(serde_json::json!({"sizeGiB": 1, "fc": {"wwns": [], "lun": 0}}))
            .unwrap();
    assert_eq!(errors(&fc), ["spec.fc.wwns: must have at least 1 item"]);
    let fc: VolumeSpec = serde_json::from_value(
        serde_json::json!({"sizeGiB": 1, "fc": {"wwns": ["500a0982"], "lun": 0}}),
    )
    .unwrap();
    assert!(
        errors(&fc)[0].starts_with("spec.fc.wwns[0]:"),
        "{:?}",
        errors(&fc)
    );
}

#[test]
fn unknown_fields_are_refused() {
    let r: Result<VolumeSpec, _> =
        serde_json::from_value(serde_json::json!({"sizeGiB": 1, "local": {}, "iscsi_typo": {}}));
    assert!(r.unwrap_err().to_string().contains("iscsi_typo"));
}

#[test]
fn phases_round_trip() {
    for p in VolumePhase::ALL {
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json, p.as_str());
    }
}
