//! The host's seal key: the X25519 key pair whose public half the agent publishes as
//! `HostInfo.seal_key`, so the controller can seal VM credentials that only this host opens.
//!
//! Kept at `<state_dir>/keys/seal.key` (standard base64 of the 32-byte secret, one line),
//! mode 0600 in a 0700 directory. Not in `state_dir` itself: libvirt's QEMU user must traverse
//! `state_dir` to reach the VM disks, so that directory cannot be private. Created once,
//! atomically (written under a temporary name, then hard-linked into place, which never
//! replaces a key another agent process made first); a key file that group or others can read
//! is refused, not repaired: the secret may already have leaked, and the operator decides.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use yun_fleet::sealed::{KEY_LEN, SealError, SealKeyPair};
use zeroize::Zeroizing;

/// Directory of the host's keys, under `state_dir`.
pub const KEYS_DIR: &str = "keys";
/// File name of the seal key inside [`KEYS_DIR`].
pub const SEAL_KEY_FILE: &str = "seal.key";

#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    #[error("{path}: {action}: {err}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        err: io::Error,
    },
    #[error(
        "{path}: mode {mode:04o} lets group or others read the host's seal key; \
         `chmod 600` it if it never leaked, or remove it so the agent makes a new one \
         (the controller then re-seals every VM credential to the new key)"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: not a seal key: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> SealKeyError {
    let path = path.to_path_buf();
    move |err| SealKeyError::Io { path, action, err }
}

/// `<state_dir>/keys/seal.key`.
pub fn seal_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEYS_DIR).join(SEAL_KEY_FILE)
}

/// Loads the host's seal key, creating it (and its directory) on first start. Blocking.
pub fn load_or_create(state_dir: &Path) -> Result<SealKeyPair, SealKeyError> {
    let dir = state_dir.join(KEYS_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err(&dir, "create directory"))?;
    // An existing directory keeps the mode it had: make it private (it is only ours).
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(&dir, "set permissions"))?;
    let path = dir.join(SEAL_KEY_FILE);
    match load(&path) {
        Err(SealKeyError::Io { err, .. }) if err.kind() == io::ErrorKind::NotFound => {
            create(&dir, &path)?;
            load(&path)
        }
        other => other,
    }
}

fn load(path: &Path) -> Result<SealKeyPair, SealKeyError> {
    // symlink_metadata: a link planted in place of the key is not followed.
    let meta = fs::symlink_metadata(path).map_err(io_err(path, "stat"))?;
    if !meta.file_type().is_file() {
        return Err(SealKeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SealKeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_err(path, "read"))?);
    let malformed = |reason: String| SealKeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = Zeroizing::new(
        BASE64
            .decode(text.trim())
            .map_err(|e| malformed(format!("not base64 ({e})")))?,
    );
    let secret: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| malformed(format!("{} bytes, expected {KEY_LEN}", bytes.len())))?;
    SealKeyPair::from_secret_bytes(secret).map_err(|e: SealError| malformed(e.to_string()))
}

fn create(dir: &Path, path: &Path) -> Result<(), SealKeyError> {
    let key = SealKeyPair::generate();
    let line = Zeroizing::new(format!("{}\n", BASE64.encode(*key.secret_bytes())));
    let tmp = dir.join(format!(".{SEAL_KEY_FILE}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_all()
        })
        .map_err(io_err(&tmp, "write"));
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        // Another agent process made one first: that one is the key.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map_err(io_err(path, "link into place")),
    });
    let _ = fs::remove_file(&tmp);
    linked?;
    // The new name must survive a crash as well as the contents.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "sync directory"))?;
    tracing::info!(path = %path.display(), public = %key.public_b64(), "created the host's seal key");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn first_start_creates_a_private_key_then_reuses_it() {
        let state = tempfile::tempdir().unwrap();
        let first = load_or_create(state.path()).unwrap();
        let path = seal_key_path(state.path());
        assert_eq!(path, state.path().join("keys/seal.key"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let again = load_or_create(state.path()).unwrap();
        assert_eq!(again.public_b64(), first.public_b64());
        // Only the key: no temporary file left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SEAL_KEY_FILE]);
        // The stored line is the secret: a box sealed to the published key opens with it.
        let sealed = yun_fleet::sealed::seal(&first.public_b64(), b"a", b"m").unwrap();
        assert_eq!(
            yun_fleet::sealed::open(&again, b"a", &sealed)
                .unwrap()
                .as_slice(),
            b"m"
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused_naming_path_and_mode() {
        let state = tempfile::tempdir().unwrap();
        load_or_create(state.path()).unwrap();
        let path = seal_key_path(state.path());
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create(state.path()).unwrap_err();
            let shown = err.to_string();
            assert!(matches!(err, SealKeyError::Exposed { .. }), "{shown}");
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            assert!(shown.contains(&format!("{mode:04o}")), "{shown}");
        }
        // Still the same key once the operator fixes the mode: nothing was replaced.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        load_or_create(state.path()).unwrap();
    }

    #[test]
    fn a_loose_keys_directory_is_made_private() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join(KEYS_DIR);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        load_or_create(state.path()).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn garbage_and_links_are_refused() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join(KEYS_DIR);
        fs::create_dir(&dir).unwrap();
        let path = dir.join(SEAL_KEY_FILE);
        for (content, want) in [
            ("not base64!!\n", "not base64"),
            ("AAAA\n", "3 bytes, expected 32"),
        ] {
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_or_create(state.path()).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("seal.key"), "{err}");
        }
        fs::remove_file(&path).unwrap();
        let elsewhere = state.path().join("elsewhere");
        fs::write(&elsewhere, "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let err = load_or_create(state.path()).unwrap_err();
        assert!(matches!(err, SealKeyError::NotAFile { .. }), "{err}");
    }
}
