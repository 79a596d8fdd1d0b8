//! Volume drivers: how a `Volume` (local qcow2, iSCSI LUN, FC LUN, NFS file) becomes a disk of a
//! libvirt domain.
//!
//! This module holds the pure part: the description of a disk's source ([`VolumeSource`]), the
//! rendering of libvirt `<disk>` and `<secret>` XML with validation of every interpolated value
//! ([`disk_xml`]), and the lookup of the block device an FC LUN appears as in a `/dev`-like tree
//! ([`fc`]). Talking to libvirt (attach, detach, secret values) belongs to the host adapters.

pub mod disk_xml;
pub mod driver;
pub mod fc;

use std::path::PathBuf;

/// The image format QEMU reads from a file-backed source (`<driver type=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    /// The value libvirt expects in `<driver type=…>`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

/// One iSCSI portal: where QEMU's initiator connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Portal {
    /// A DNS name or an IPv4/IPv6 address (no brackets).
    pub host: String,
    /// Usually 3260; 0 is rejected.
    pub port: u16,
}

/// CHAP credentials for an iSCSI source, by reference: the password lives in a libvirt secret
/// (see [`disk_xml::render_chap_secret`]) whose usage name is `secret_usage`, never in the domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChapRef {
    pub username: String,
    pub secret_usage: String,
}

/// Where an attached volume's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VolumeSource {
    /// A disk image file on this host.
    Local { path: PathBuf, format: ImageFormat },
    /// A LUN reached through QEMU's own iSCSI initiator (libiscsi), not the host's.
    Iscsi {
        /// The first portal is the one given to QEMU (libvirt takes exactly one `<host>` for
        /// iSCSI); the others are alternatives a caller may rotate to the front on failure.
        portals: Vec<Portal>,
        iqn: String,
        lun: u32,
        chap: Option<ChapRef>,
    },
    /// A disk image file on an NFS export, opened by QEMU's NFS client (libnfs), not a host mount.
    Nfs {
        server: String,
        /// The exported directory, e.g. `/srv/volumes`.
        export: String,
        /// The file, relative to the export (a leading `/` is tolerated).
        path: String,
        format: ImageFormat,
    },
    /// The host block device an FC LUN appears as, see [`fc::resolve_fc`].
    Fc { device: PathBuf },
}

/// A volume as one disk of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachedDisk {
    pub source: VolumeSource,
    /// `vdb`..`vdz`, see [`disk_xml::next_target_dev`].
    pub target_dev: String,
    /// What the guest sees as `/dev/disk/by-id/virtio-<serial>`, see [`disk_xml::serial_for`].
    pub serial: String,
    pub read_only: bool,
}

/// Why a disk could not be described or found. `field` names the input at fault, with the
/// driver as prefix (`iscsi.lun`, `nfs.export`, `fc.wwns[1]`, `disk.serial`, …).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: &'static str,
    },
    #[error(
        "no block device for FC target WWN(s) {} LUN {lun} under {}",
        wwns.join(", "),
        dir.display()
    )]
    FcNotFound {
        wwns: Vec<String>,
        lun: u32,
        dir: PathBuf,
    },
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: &'static str,
    ) -> Self {
        StorageError::Invalid {
            field: field.into(),
            value: value.into(),
            reason,
        }
    }

    /// The input at fault, for `Invalid`.
    pub fn field(&self) -> Option<&str> {
        match self {
            StorageError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
