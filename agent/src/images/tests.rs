//! Tests of the template cache and overlays, with real files and the real `qemu-img`.

use super::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn artifact_for(path: &Path, bytes: &[u8]) -> Artifact {
    fs::write(path, bytes).unwrap();
    Artifact {
        source: format!("file://{}", path.display()),
        sha256: hex::encode(Sha256::digest(bytes)),
    }
}

fn qemu_img_info(path: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn ensure_copies_verifies_and_then_hits_the_cache() {
    let src = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(cache_dir.path().join("images")).unwrap();
    let art = artifact_for(&src.path().join("base.img"), &vec![7u8; 3 << 20]);

    let first = cache.ensure(&art, "raw").unwrap();
    assert_eq!(first, cache.dir().join(format!("{}.raw", art.sha256)));
    assert_eq!(fs::read(&first).unwrap(), vec![7u8; 3 << 20]);
    let meta = fs::metadata(&first).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o644);
    assert_eq!(fs::metadata(cache.dir()).unwrap().mode() & 0o777, 0o755);

    // A hit returns the same file without copying again: same inode, same mtime, even once
    // the source is gone.
    fs::remove_file(src.path().join("base.img")).unwrap();
    let second = cache.ensure(&art, "raw").unwrap();
    assert_eq!(second, first);
    let again = fs::metadata(&second).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec()),
        (meta.ino(), meta.mtime_nsec())
    );
    assert_eq!(names_in(cache.dir()), vec![format!("{}.raw", art.sha256)]);
}

#[test]
fn checksum_mismatch_is_refused_and_leaves_nothing() {
    let src = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(tmp.path()).unwrap();
    let mut art = artifact_for(&src.path().join("t.qcow2"), b"not what was promised");
    let actual = art.sha256.clone();
    art.sha256 = "ab".repeat(32);
    let err = cache.ensure(&art, "qcow2").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::ChecksumMismatch { .. }));
    assert!(msg.contains(&art.sha256) && msg.contains(&actual), "{msg}");
    assert!(msg.contains(&art.source), "{msg}");
    assert!(
        names_in(cache.dir()).is_empty(),
        "{:?}",
        names_in(cache.dir())
    );
}

#[test]
fn only_local_file_urls_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(tmp.path()).unwrap();
    for source in [
        "http://x/y.img",
        "file://host/y.img",
        "file:relative",
        "/plain/path",
    ] {
        let art = Artifact {
            source: source.into(),
            sha256: "0".repeat(64),
        };
        let err = cache.ensure(&art, "raw").unwrap_err();
        assert!(
            matches!(err, ImageError::UnsupportedSource { .. }),
            "{source}: {err}"
        );
        assert!(err.to_string().contains(source));
    }
}

#[test]
fn checksum_and_extension_cannot_escape_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(tmp.path()).unwrap();
    let art = Artifact {
        source: "file:///x".into(),
        sha256: "../../etc/passwd".into(),
    };
    assert!(matches!(
        cache.ensure(&art, "raw"),
        Err(ImageError::InvalidChecksum { .. })
    ));
    let upper = Artifact {
        source: "file:///x".into(),
        sha256: "A".repeat(64),
    };
    assert!(matches!(
        cache.ensure(&upper, "raw"),
        Err(ImageError::InvalidChecksum { .. })
    ));
    let ok = Artifact {
        source: "file:///x".into(),
        sha256: "a".repeat(64),
    };
    assert!(matches!(
        cache.ensure(&ok, "../x"),
        Err(ImageError::InvalidExtension { .. })
    ));
}

#[test]
fn open_sweeps_partial_files_of_dead_processes() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir
        .path()
        .join(format!("{TMP_PREFIX}{}-999999999-0", "a".repeat(64)));
    let kept = dir.path().join(format!("{}.raw", "b".repeat(64)));
    fs::write(&stale, b"partial").unwrap();
    fs::write(&kept, b"complete").unwrap();
    ImageCache::open(dir.path()).unwrap();
    assert!(!stale.exists());
    assert!(kept.exists());
}

#[test]
fn overlay_on_qcow2_base_keeps_the_larger_size() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("3G")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(virtual_size(&base, DiskFormat::Qcow2).unwrap(), 3 * GIB);

    // Requested 1 GiB < base 3 GiB: the overlay keeps the base's size.
    let small = dir.path().join("small.qcow2");
    create_overlay(&base, DiskFormat::Qcow2, &small, 1).unwrap();
    let info = qemu_img_info(&small);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["backing-filename"], base.to_str().unwrap());
    assert_eq!(info["backing-filename-format"], "qcow2");
    assert_eq!(info["virtual-size"], 3 * GIB);

    // Requested 5 GiB > base: the overlay grows.
    let big = dir.path().join("big.qcow2");
    create_overlay(&base, DiskFormat::Qcow2, &big, 5).unwrap();
    assert_eq!(qemu_img_info(&big)["virtual-size"], 5 * GIB);
    assert_eq!(virtual_size(&big, DiskFormat::Qcow2).unwrap(), 5 * GIB);
    let mut names = names_in(dir.path());
    names.retain(|n| n.starts_with(TMP_PREFIX));
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn overlay_on_raw_base_and_existing_overlay_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    File::create(&base).unwrap().set_len(GIB + 4096).unwrap();
    let overlay = dir.path().join("vm").join("disk.qcow2");
    create_vm_dir(overlay.parent().unwrap()).unwrap();
    create_overlay(&base, DiskFormat::Raw, &overlay, 2).unwrap();
    let info = qemu_img_info(&overlay);
    assert_eq!(info["backing-filename-format"], "raw");
    assert_eq!(info["virtual-size"], 2 * GIB);

    let before = fs::metadata(&overlay).unwrap();
    create_overlay(&base, DiskFormat::Raw, &overlay, 8).unwrap();
    let after = fs::metadata(&overlay).unwrap();
    assert_eq!((after.ino(), after.len()), (before.ino(), before.len()));
    assert_eq!(qemu_img_info(&overlay)["virtual-size"], 2 * GIB);

    remove_vm_files(overlay.parent().unwrap()).unwrap();
    assert!(!overlay.parent().unwrap().exists());
    remove_vm_files(overlay.parent().unwrap()).unwrap();
}

fn qemu_img(args: &[&str], path: &Path) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .arg(path)
        .output()
        .unwrap()
}

/// The natively written overlay is a valid qcow2 that QEMU reads through to its base and
/// accepts writes into, leaving the base untouched.
#[test]
fn native_overlay_is_consistent_readable_and_writable() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let mut data = vec![0u8; 4 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    fs::write(&base, &data).unwrap();
    let overlay = dir.path().join("root.qcow2");
    create_overlay(&base, DiskFormat::Raw, &overlay, 1).unwrap();

    let check = qemu_img(&["check"], &overlay);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // Reads fall through to the base: same content over the base's length.
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw", "--strict"])
        .arg(&overlay)
        .arg(&base)
        .output()
        .unwrap();
    // --strict fails only on the size difference (1 GiB vs 4 MiB), never on content.
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Content mismatch"), "{text}");
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw"])
        .arg(&overlay)
        .arg(&base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Writes land in the overlay; the base stays as it was and the image stays consistent.
    let st = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 0 64k",
            "-c",
            "write -P 0xcd 600M 64k",
        ])
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(fs::read(&base).unwrap(), data);
    let check = qemu_img(&["check"], &overlay);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let read = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "read -P 0xab 0 64k",
            "-c",
            "read -P 0xcd 600M 64k",
        ])
        .arg(&overlay)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success() && !text.contains("Pattern verification failed"),
        "{text}"
    );
}

#[test]
fn overlay_errors_name_the_paths() {
    let dir = tempfile::tempdir().unwrap();
    let not_qcow2 = dir.path().join("plain.bin");
    fs::write(&not_qcow2, vec![0u8; 64]).unwrap();
    let err = create_overlay(
        &not_qcow2,
        DiskFormat::Qcow2,
        &dir.path().join("o.qcow2"),
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("plain.bin"), "{err}");
    let missing = dir.path().join("missing.raw");
    let err =
        create_overlay(&missing, DiskFormat::Raw, &dir.path().join("o.qcow2"), 1).unwrap_err();
    assert!(err.to_string().contains("missing.raw"), "{err}");
}

#[test]
fn concurrent_fills_of_one_template_copy_it_once() {
    let src_dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let artifact = artifact_for(&src_dir.path().join("t.raw"), &vec![7u8; 8 << 20]);
    let cache = ImageCache::open(cache_dir.path()).unwrap();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| cache.ensure(&artifact, "raw").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        cache.fills(),
        1,
        "the template must be copied once, not once per waiting VM"
    );
    let inventory = cache.inventory().unwrap();
    assert_eq!(
        inventory.get(&artifact.sha256),
        Some(&(8 << 20)),
        "{inventory:?}"
    );
    assert_eq!(inventory.len(), 1, "partial files are never listed");
    assert_eq!(
        names_in(cache_dir.path()).len(),
        1,
        "{:?}",
        names_in(cache_dir.path())
    );
}
