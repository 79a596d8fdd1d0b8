//! Volumes on the fleet bus: what a host must attach (inside [`crate::VmDesired`]), who holds a
//! volume ([`VolumeClaim`]), and what the host did about it ([`AttachmentRecord`]).
//!
//! The single-writer protocol, in three records:
//! 1. the controller grants a claim in `/yun/v1/volumes/<uid>/claim` with a transaction that
//!    compares the claim's `mod_revision`, so two grants can never both succeed;
//! 2. only then does it list the volume in the VM's desired record on that host;
//! 3. the agent writes `/yun/v1/hosts/<host>/vms/<vm>/volumes/<uid>` *before* it attaches, in a
//!    transaction that compares the desired record's `mod_revision` with the one it acted on,
//!    and deletes it only after libvirt confirmed the detach.
//!
//! The controller releases a claim only when the host's attachment record is absent *and* the
//! desired record it reads in the same revision no longer lists the volume. Because step 3 fails
//! once the desired record changed, no attach can start after that read: a released volume is
//! detached, or never was attached.

use serde::{Deserialize, Serialize};

/// A password that never shows up in `Debug` output (and so never in a log line).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where an iSCSI volume's CHAP credentials come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChapRecord {
    /// A file on the host holding `username:password` (bootstrap mode): the agent reads it, and
    /// the password never travels on the bus.
    File { path: String },
    /// Resolved by the controller from a Kubernetes Secret. It lives only under the host's own
    /// prefix, and only while the host is granted the volume.
    Inline { username: String, password: Secret },
}

/// A volume's driver and its address, resolved by the controller from the `Volume` spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "driver")]
pub enum VolumeSourceRecord {
    /// A qcow2 the agent creates (and grows) in its volume directory, named by the volume uid.
    Local {},
    Iscsi {
        /// `host:port`, in preference order.
        portals: Vec<String>,
        iqn: String,
        lun: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chap: Option<ChapRecord>,
    },
    Fc {
        wwns: Vec<String>,
        lun: u32,
    },
    Nfs {
        server: String,
        export: String,
        /// The disk file, relative to the export.
        path: String,
    },
}

impl VolumeSourceRecord {
    /// `local`, `iscsi`, `fc` or `nfs`, for logs, metrics and messages.
    pub fn driver(&self) -> &'static str {
        match self {
            VolumeSourceRecord::Local {} => "local",
            VolumeSourceRecord::Iscsi { .. } => "iscsi",
            VolumeSourceRecord::Fc { .. } => "fc",
            VolumeSourceRecord::Nfs { .. } => "nfs",
        }
    }
}

/// One volume a VM must have, in [`crate::VmDesired::volumes`] (attachment order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// `namespace/name` of the Volume.
    pub id: String,
    /// The Volume's uid: the attachment key, the local file name and the guest's disk serial.
    pub uid: String,
    pub size_gib: u32,
    #[serde(default)]
    pub read_only: bool,
    pub source: VolumeSourceRecord,
}

/// One VM that holds a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimHolder {
    pub host: String,
    pub vm_uid: String,
    /// `namespace/name` of the VM, for messages.
    pub vm: String,
    #[serde(default)]
    pub read_only: bool,
    /// RFC 3339 time of the grant: the start of the attach bound.
    pub granted_at: String,
}

/// `/yun/v1/volumes/<uid>/claim`: who may attach the volume. Written only by the controller, in
/// a transaction on this key's `mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaim {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    /// `namespace/name` of the Volume.
    pub volume: String,
    /// For a `local` volume: the host its file lives on (set by the first grant, kept after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default)]
    pub holders: Vec<ClaimHolder>,
}

impl VolumeClaim {
    /// Nobody holds the volume and it has no home host to remember: the claim may be deleted
    /// rather than written (a local volume's claim stays, it records where the file lives).
    pub fn is_vacant(&self) -> bool {
        self.holders.is_empty() && self.home.is_none()
    }
}

/// What the host is doing with one volume of one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttachPhase {
    Attaching,
    Attached,
    Detaching,
    Failed,
}

impl AttachPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachPhase::Attaching => "Attaching",
            AttachPhase::Attached => "Attached",
            AttachPhase::Detaching => "Detaching",
            AttachPhase::Failed => "Failed",
        }
    }
}

/// `/yun/v1/hosts/<host>/report/vms/<vm uid>/volumes/<volume uid>`: written by the agent before it
/// attaches, deleted after libvirt confirmed the detach. Its presence is the host's claim that
/// the disk may be connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    #[serde(default = "crate::records::v1")]
    pub v: u32,
    /// `namespace/name` of the Volume.
    pub volume: String,
    pub phase: AttachPhase,
    /// The guest disk (`vdc`…) once attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dev: Option<String>,
    /// Why the phase is `Failed` (the driver's or libvirt's error), or what is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many attach or detach attempts this phase has seen.
    #[serde(default)]
    pub attempts: u32,
    pub updated_at: String,
}

impl crate::records::Versioned for VolumeClaim {
    fn version(&self) -> u32 {
        self.v
    }
}

impl crate::records::Versioned for AttachmentRecord {
    fn version(&self) -> u32 {
        self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_redacted_in_debug_output_but_kept_on_the_wire() {
        let chap = ChapRecord::Inline {
            username: "alice".into(),
            password: Secret("hunter2hunter2".into()),
        };
        let dbg = format!("{chap:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("alice"), "{dbg}");
        let json = serde_json::to_string(&chap).unwrap();
        assert!(json.contains("hunter2hunter2"), "{json}");
        let back: ChapRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, chap);
    }

    #[test]
    fn sources_are_tagged_by_driver() {
        let s = VolumeSourceRecord::Nfs {
            server: "127.0.0.1".into(),
            export: "/srv".into(),
            path: "a.raw".into(),
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["driver"], "nfs");
        assert_eq!(s.driver(), "nfs");
        let local: VolumeSourceRecord = serde_json::from_str(r#"{"driver":"local"}"#).unwrap();
        assert_eq!(local, VolumeSourceRecord::Local {});
        assert!(serde_json::from_str::<VolumeSourceRecord>(r#"{"driver":"ceph"}"#).is_err());
    }
}
