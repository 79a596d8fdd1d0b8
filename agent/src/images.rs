//! Per-host template cache and per-VM qcow2 overlays.
//!
//! Cached templates are named by content (`<dir>/<sha256>.<ext>`) and only ever appear under
//! that name by an atomic rename after their checksum was verified, so a file present under its
//! final name is complete and correct. Calls block (file copies, fsync): run them on
//! tokio's blocking pool.

use crate::qcow2::render_overlay;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use yun_fleet::{Artifact, DiskFormat};

/// Prefix of files being written; never a valid final name (which starts with a hex digit).
const TMP_PREFIX: &str = ".tmp-";
const GIB: u64 = 1 << 30;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image source {source_url:?}: only file:///absolute/path sources are supported")]
    UnsupportedSource { source_url: String },
    #[error("image source {source_url:?}: sha256 {sha256:?} is not 64 lowercase hex digits")]
    InvalidChecksum { source_url: String, sha256: String },
    #[error("image extension {ext:?} must be 1-16 ASCII letters or digits")]
    InvalidExtension { ext: String },
    #[error(
        "image source {source_url:?}: checksum mismatch: expected sha256 {expected}, got {actual}"
    )]
    ChecksumMismatch {
        source_url: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {action}: {err}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        err: io::Error,
    },
    #[error("{path}: not a qcow2 image")]
    NotQcow2 { path: PathBuf },
    #[error("creating overlay {overlay}: {message}")]
    Overlay { overlay: PathBuf, message: String },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |err| ImageError::Io { path, action, err }
}

/// The directory of cached template bases.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
    /// One lock per cache file being filled: when many VMs of a new template arrive together,
    /// one worker copies and verifies it and the others wait, then hit the cache.
    filling: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>>,
    /// Templates copied into the cache since start (cache misses).
    fills: Arc<AtomicU64>,
}

impl ImageCache {
    /// Opens (creating it, mode 0755) the cache directory, and removes partial files left by an
    /// earlier agent process that died while copying.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
        // libvirt's QEMU user (not root) opens the bases read-only through the overlays.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err(&dir, "set permissions"))?;
        let own = format!("{TMP_PREFIX}{}-", std::process::id());
        for entry in fs::read_dir(&dir).map_err(io_err(&dir, "list"))? {
            let entry = entry.map_err(io_err(&dir, "list"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) && !name.contains(&own) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err(&path, "remove stale partial file"))?;
            }
        }
        Ok(ImageCache {
            dir,
            filling: Arc::default(),
            fills: Arc::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached templates: sha256 → size in bytes. Partial files are not listed.
    pub fn inventory(&self) -> Result<BTreeMap<String, u64>, ImageError> {
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir, "list"))? {
            let entry = entry.map_err(io_err(&self.dir, "list"))?;
            let name = entry.file_name();
            let Some((sha, _ext)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            if sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                let len = entry
                    .metadata()
                    .map_err(io_err(&entry.path(), "stat"))?
                    .len();
                out.insert(sha.to_owned(), len);
            }
        }
        Ok(out)
    }

    /// How many template files were copied into the cache (cache misses) since start.
    pub fn fills(&self) -> u64 {
        self.fills.load(Ordering::Relaxed)
    }

    /// Where `artifact` is (or will be) cached.
    pub fn path_for(&self, artifact: &Artifact, ext: &str) -> Result<PathBuf, ImageError> {
        validate_sha256(artifact)?;
        validate_ext(ext)?;
        Ok(self.dir.join(format!("{}.{ext}", artifact.sha256)))
    }

    /// Returns the cached copy of `artifact`, copying and verifying it first if it is not cached.
    pub fn ensure(&self, artifact: &Artifact, ext: &str) -> Result<PathBuf, ImageError> {
        let dest = self.path_for(artifact, ext)?;
        if dest.exists() {
            return Ok(dest);
        }
        let slot = {
            let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
            filling.entry(dest.clone()).or_default().clone()
        };
        let _filling = slot.lock().unwrap_or_else(|p| p.into_inner());
        if dest.exists() {
            return Ok(dest);
        }
        let source = source_path(artifact)?;
        let tmp = TmpFile(self.dir.join(format!(
            "{TMP_PREFIX}{}-{}-{}",
            artifact.sha256,
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        )));
        self.fills.fetch_add(1, Ordering::Relaxed);
        let actual = copy_hashing(&source, &tmp.0)?;
        if actual != artifact.sha256 {
            return Err(ImageError::ChecksumMismatch {
                source_url: artifact.source.clone(),
                expected: artifact.sha256.clone(),
                actual,
            });
        }
        fs::rename(&tmp.0, &dest).map_err(io_err(&dest, "rename into place"))?;
        tmp.disarm();
        // Make the rename itself durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir, "sync directory"))?;
        Ok(dest)
    }
}

/// Removes its file on drop unless disarmed: no partial file survives an error.
struct TmpFile(PathBuf);

impl TmpFile {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn validate_sha256(artifact: &Artifact) -> Result<(), ImageError> {
    let s = &artifact.sha256;
    // It becomes a file name: this check is also what keeps it from naming another path.
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ImageError::InvalidChecksum {
            source_url: artifact.source.clone(),
            sha256: s.clone(),
        })
    }
}

fn validate_ext(ext: &str) -> Result<(), ImageError> {
    if (1..=16).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(ImageError::InvalidExtension {
            ext: ext.to_owned(),
        })
    }
}

/// `file:///abs/path` → `/abs/path`. The path is taken literally (no percent-decoding).
fn source_path(artifact: &Artifact) -> Result<PathBuf, ImageError> {
    match artifact.source.strip_prefix("file://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        _ => Err(ImageError::UnsupportedSource {
            source_url: artifact.source.clone(),
        }),
    }
}

/// Copies `from` to a new file `to` (mode 0644), fsyncs it, and returns the hex SHA-256 of
/// the bytes copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<String, ImageError> {
    let mut src = File::open(from).map_err(io_err(from, "open source"))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(to)
        .map_err(io_err(to, "create"))?;
    // The umask may have cleared bits of the mode above.
    dst.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_err(to, "set permissions"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(from, "read source")(e)),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io_err(to, "write"))?;
    }
    dst.sync_all().map_err(io_err(to, "sync"))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Virtual size in bytes of a disk image: a raw image's file length, or the size field of a
/// qcow2 header (big-endian u64 at offset 24, after the "QFI\xfb" magic). Read directly rather
/// than through `qemu-img info`, which would cost a process per VM.
pub fn virtual_size(image: &Path, format: DiskFormat) -> Result<u64, ImageError> {
    match format {
        DiskFormat::Raw => Ok(fs::metadata(image).map_err(io_err(image, "stat"))?.len()),
        DiskFormat::Qcow2 => {
            let mut header = [0u8; 32];
            File::open(image)
                .and_then(|mut f| f.read_exact(&mut header))
                .map_err(io_err(image, "read qcow2 header"))?;
            if header[..4] != *b"QFI\xfb" {
                return Err(ImageError::NotQcow2 {
                    path: image.to_path_buf(),
                });
            }
            let mut size = [0u8; 8];
            size.copy_from_slice(&header[24..32]);
            Ok(u64::from_be_bytes(size))
        }
    }
}

/// Creates the qcow2 overlay `overlay` backed by `base`. Its virtual size is `size_gib`, or the
/// base's own virtual size when that is larger (a smaller overlay would cut off the end of the
/// template's filesystem). An existing overlay is left untouched: it may hold guest data. The
/// overlay is created under a temporary name and renamed, so a present overlay is complete.
pub fn create_overlay(
    base: &Path,
    base_format: DiskFormat,
    overlay: &Path,
    size_gib: u64,
) -> Result<(), ImageError> {
    if overlay.exists() {
        return Ok(());
    }
    // QEMU resolves a relative backing path against the overlay's directory: store it absolute.
    let base = std::path::absolute(base).map_err(io_err(base, "resolve path"))?;
    let base = base.as_path();
    let size = virtual_size(base, base_format)?.max(size_gib.saturating_mul(GIB));
    let file_name = overlay
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = TmpFile(overlay.with_file_name(format!(
        "{TMP_PREFIX}{file_name}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )));
    let base_name = base.to_str().ok_or_else(|| ImageError::Overlay {
        overlay: overlay.to_path_buf(),
        message: format!("backing path {} is not UTF-8", base.display()),
    })?;
    let bytes =
        render_overlay(base_name, base_format.as_str(), size.div_ceil(512) * 512).map_err(|e| {
            ImageError::Overlay {
                overlay: overlay.to_path_buf(),
                message: e.to_string(),
            }
        })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp.0)
        .map_err(io_err(&tmp.0, "create overlay"))?;
    file.write_all(&bytes)
        .map_err(io_err(&tmp.0, "write overlay"))?;
    file.sync_all().map_err(io_err(&tmp.0, "sync overlay"))?;
    fs::rename(&tmp.0, overlay).map_err(io_err(overlay, "rename into place"))?;
    tmp.disarm();
    Ok(())
}

/// Creates a VM's directory with mode 0755: libvirt's QEMU user must be able to reach the
/// overlay and seed inside it.
pub fn create_vm_dir(dir: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(io_err(dir, "set permissions"))
}

/// Removes a VM's directory (overlay, seed, console log); Ok if it is already gone.
pub fn remove_vm_files(dir: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(dir, "remove")(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
