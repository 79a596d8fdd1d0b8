//! Volume drivers on the host: what it takes before a volume can become a disk of a domain, and
//! where QEMU then finds it ([`VolumeSource`]).
//!
//! - `local`: a qcow2 in the agent's volume directory named by the volume uid, created on first
//!   use and grown (never shrunk) to the record's size;
//! - `iscsi`: nothing on the host (QEMU's own initiator logs in); the portals are parsed and the
//!   CHAP password is read from its file or taken from the record, for a libvirt secret;
//! - `nfs`: nothing on the host (QEMU's own NFS client); the format follows the file name;
//! - `fc`: the LUN's block device found from udev's links ([`resolve_fc`]), replaced by the
//!   multipath map holding it when there is one ([`multipath_holder`]).

use super::fc::{multipath_holder, resolve_fc};
use super::{ChapRef, ImageFormat, Portal, StorageError, VolumeSource};
use crate::hypervisor::ChapSecret;
use crate::images::virtual_size;
use std::fs;
use std::io;
use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use yun_fleet::{ChapRecord, DiskFormat, VolumeRecord, VolumeSourceRecord};

/// The port of an iSCSI portal written without one.
pub const ISCSI_DEFAULT_PORT: u16 = 3260;

const GIB: u64 = 1 << 30;

/// Prefix of a local volume being created; never a final name (which is a volume uid).
const TMP_PREFIX: &str = ".tmp-";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A volume made usable on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub source: VolumeSource,
    /// The CHAP password to put in the libvirt secret that `source` names, before attaching.
    pub chap: Option<ChapSecret>,
}

pub trait VolumeDriver: Send + Sync + 'static {
    /// Blocking. Makes the volume usable on this host and says how QEMU reaches it.
    fn prepare(&self, volume: &VolumeRecord) -> Result<PreparedVolume, StorageError>;
}

/// The volume drivers of a real host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolumes {
    /// Where local volumes live (`<state_dir>/volumes`).
    pub volumes_dir: PathBuf,
    /// udev's disk links (`/dev/disk`), for FC.
    pub fc_disk_dir: PathBuf,
    /// Device-mapper names (`/dev/mapper`), for FC multipath.
    pub fc_mapper_dir: PathBuf,
    /// sysfs block devices (`/sys/block`), to find the multipath map holding an FC path.
    pub sys_block_dir: PathBuf,
}

impl HostVolumes {
    /// Local volumes in `volumes_dir`; FC devices from `/dev/disk`, `/dev/mapper`, `/sys/block`.
    pub fn new(volumes_dir: impl Into<PathBuf>) -> HostVolumes {
        HostVolumes {
            volumes_dir: volumes_dir.into(),
            fc_disk_dir: PathBuf::from("/dev/disk"),
            fc_mapper_dir: PathBuf::from("/dev/mapper"),
            sys_block_dir: PathBuf::from("/sys/block"),
        }
    }

    /// The file of the local volume with this uid.
    pub fn local_path(&self, volume_uid: &str) -> Result<PathBuf, StorageError> {
        validate_uid(volume_uid)?;
        Ok(self.volumes_dir.join(format!("{volume_uid}.qcow2")))
    }

    fn prepare_local(&self, volume: &VolumeRecord) -> Result<VolumeSource, StorageError> {
        let path = self.local_path(&volume.uid)?;
        if volume.size_gib == 0 {
            return Err(StorageError::invalid("sizeGiB", "0", "must be at least 1"));
        }
        let want = u64::from(volume.size_gib) * GIB;
        fs::create_dir_all(&self.volumes_dir).map_err(io_at(&self.volumes_dir))?;
        // libvirt's QEMU user must get through to the files (libvirt hands it each file when
        // it attaches it); nobody needs to list which volumes this host holds.
        fs::set_permissions(&self.volumes_dir, fs::Permissions::from_mode(0o711))
            .map_err(io_at(&self.volumes_dir))?;
        if path.exists() {
            let have = virtual_size(&path, DiskFormat::Qcow2).map_err(|e| StorageError::Io {
                path: path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            if want < have {
                return Err(StorageError::invalid(
                    "sizeGiB",
                    volume.size_gib.to_string(),
                    "is smaller than the local volume's file; volumes are never shrunk",
                ));
            }
            if want > have {
                // qemu-img takes the image lock: growing a volume a running QEMU holds fails.
                qemu_img(&path, &["resize", "-f", "qcow2"], volume.size_gib)?;
            }
        } else {
            create_qcow2(&path, volume.size_gib)?;
        }
        Ok(VolumeSource::Local {
            path,
            format: ImageFormat::Qcow2,
        })
    }

    fn prepare_fc(&self, wwns: &[String], lun: u32) -> Result<VolumeSource, StorageError> {
        let device = resolve_fc(&self.fc_disk_dir, &self.fc_mapper_dir, wwns, lun)?;
        let device = if device.starts_with(&self.fc_mapper_dir) {
            device
        } else {
            multipath_holder(&self.sys_block_dir, &self.fc_mapper_dir, &device)?.unwrap_or(device)
        };
        Ok(VolumeSource::Fc { device })
    }
}

impl VolumeDriver for HostVolumes {
    fn prepare(&self, volume: &VolumeRecord) -> Result<PreparedVolume, StorageError> {
        match &volume.source {
            VolumeSourceRecord::Local {} => Ok(PreparedVolume {
                source: self.prepare_local(volume)?,
                chap: None,
            }),
            VolumeSourceRecord::Iscsi {
                portals,
                iqn,
                lun,
                chap,
            } => {
                let (chap_ref, secret) = match chap {
                    Some(record) => {
                        let (username, password) = chap_credentials(record)?;
                        let usage = chap_secret_usage(&volume.uid);
                        let chap_ref = ChapRef {
                            username,
                            secret_usage: usage.clone(),
                        };
                        (Some(chap_ref), Some(ChapSecret { usage, password }))
                    }
                    None => (None, None),
                };
                Ok(PreparedVolume {
                    source: VolumeSource::Iscsi {
                        portals: parse_portals(portals)?,
                        iqn: iqn.clone(),
                        lun: *lun,
                        chap: chap_ref,
                    },
                    chap: secret,
                })
            }
            VolumeSourceRecord::Nfs {
                server,
                export,
                path,
            } => Ok(PreparedVolume {
                source: VolumeSource::Nfs {
                    server: server.clone(),
                    export: export.clone(),
                    path: path.clone(),
                    format: nfs_format(path),
                },
                chap: None,
            }),
            VolumeSourceRecord::Fc { wwns, lun } => Ok(PreparedVolume {
                source: self.prepare_fc(wwns, *lun)?,
                chap: None,
            }),
        }
    }
}

/// The usage name of the libvirt secret holding the CHAP password of this volume.
pub fn chap_secret_usage(volume_uid: &str) -> String {
    format!("yun-chap-{volume_uid}")
}

/// A file on an NFS export is read as qcow2 when its name says so, else as raw.
pub fn nfs_format(path: &str) -> ImageFormat {
    if path.ends_with(".qcow2") {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw
    }
}

/// `host:port`, `host` (port 3260), `[v6]:port`, `[v6]` or a bare IPv6 address, each checked.
pub fn parse_portals(portals: &[String]) -> Result<Vec<Portal>, StorageError> {
    if portals.is_empty() {
        return Err(StorageError::invalid(
            "iscsi.portals",
            "",
            "at least one portal is needed",
        ));
    }
    portals
        .iter()
        .enumerate()
        .map(|(i, p)| {
            parse_portal(p).ok_or_else(|| {
                StorageError::invalid(
                    format!("iscsi.portals[{i}]"),
                    p,
                    "must be host, host:port, [IPv6] or [IPv6]:port with a port in 1..=65535",
                )
            })
        })
        .collect()
}

fn parse_portal(portal: &str) -> Option<Portal> {
    let (host, port) = if let Some(rest) = portal.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else if portal.parse::<Ipv6Addr>().is_ok() {
        (portal, None)
    } else {
        match portal.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (portal, None),
        }
    };
    let port = match port {
        None => ISCSI_DEFAULT_PORT,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    let host_ok = (!host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == ':'))
        || host.parse::<Ipv6Addr>().is_ok();
    (host_ok && port != 0).then(|| Portal {
        host: host.to_owned(),
        port,
    })
}

/// `(username, password)` from the record, or from a `username:password` file that only its
/// owner may read (one trailing newline tolerated).
fn chap_credentials(record: &ChapRecord) -> Result<(String, String), StorageError> {
    match record {
        ChapRecord::Inline { username, password } => {
            if password.0.is_empty() {
                return Err(StorageError::invalid(
                    "iscsi.chap.password",
                    "",
                    "must not be empty",
                ));
            }
            Ok((username.clone(), password.0.clone()))
        }
        ChapRecord::File { path } => {
            const FIELD: &str = "iscsi.chap.file";
            let file = Path::new(path);
            if !file.is_absolute() {
                return Err(StorageError::invalid(
                    FIELD,
                    path,
                    "must be an absolute path",
                ));
            }
            let meta = fs::metadata(file).map_err(io_at(file))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(StorageError::invalid(
                    FIELD,
                    path,
                    "must not be accessible by group or others (chmod 600)",
                ));
            }
            let bytes = fs::read(file).map_err(io_at(file))?;
            // Messages name the file, never its content.
            let text = String::from_utf8(bytes)
                .map_err(|_| StorageError::invalid(FIELD, path, "must be UTF-8"))?;
            let line = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            match line.split_once(':') {
                Some((user, password))
                    if !user.is_empty() && !password.is_empty() && !line.contains('\n') =>
                {
                    Ok((user.to_owned(), password.to_owned()))
                }
                _ => Err(StorageError::invalid(
                    FIELD,
                    path,
                    "must hold one line username:password",
                )),
            }
        }
    }
}

/// A volume uid becomes a file name: it must be one path component of safe characters.
fn validate_uid(uid: &str) -> Result<(), StorageError> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && !uid.starts_with('.')
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "uid",
            uid,
            "must be 1-128 of A-Z a-z 0-9 - _ . and not start with '.'",
        ))
    }
}

/// Creates the qcow2 under a temporary name and renames it, so a volume file under its final
/// name is complete; only its owner (and libvirt's QEMU user, once libvirt hands it over) may
/// read it.
fn create_qcow2(path: &Path, size_gib: u32) -> Result<(), StorageError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        "{TMP_PREFIX}{name}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = qemu_img(&tmp, &["create", "-q", "-f", "qcow2"], size_gib)
        .and_then(|()| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io_at(&tmp))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(io_at(path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Runs `qemu-img <args> <file> <size_gib>G`.
fn qemu_img(file: &Path, args: &[&str], size_gib: u32) -> Result<(), StorageError> {
    let out = Command::new("qemu-img")
        .args(args)
        .arg(file)
        .arg(format!("{size_gib}G"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StorageError::Io {
            path: file.to_path_buf(),
            source: io::Error::new(e.kind(), format!("cannot run qemu-img: {e}")),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(StorageError::Io {
        path: file.to_path_buf(),
        source: io::Error::other(format!(
            "qemu-img {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    })
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { path, source }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
