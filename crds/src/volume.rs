//! `Volume`: a disk that outlives the VMs it is attached to (namespaced: the tenant is the
//! namespace). One driver per volume: `local` (a qcow2 on one host), `iscsi` (IP-SAN, through
//! QEMU's own initiator), `fc` (FC-SAN, the block device the host's HBA or multipath presents) or
//! `nfs` (a disk file on a NAS export, through QEMU's NFS client).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::validation::{
    Checker, DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN, NameRule, Scope, ValidationErrors,
};

/// Bounds of `spec.sizeGiB`.
pub const SIZE_GIB_MIN: u32 = 1;
pub const SIZE_GIB_MAX: u32 = 65_536;
/// Bounds of a LUN number (SAM-2 flat addressing).
pub const LUN_MAX: u32 = 16_383;
/// At most this many iSCSI portals / FC target ports per volume.
pub const PORTALS_MAX: usize = 4;
pub const WWNS_MAX: usize = 8;
/// Length limits: an IQN (RFC 3720), a portal (`host:port`), a path.
pub const IQN_MAX: usize = 223;
pub const PORTAL_MAX: usize = 259;
pub const PATH_MAX: usize = 1024;

/// An iSCSI qualified name: `iqn.YYYY-MM.reversed.domain[:anything]`.
pub const IQN_PATTERN: &str =
    r"^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[!-~]+)?$";
/// A portal: a host name or IPv4 address, optionally `:port` (1–65535; default 3260).
pub const PORTAL_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$";
/// An NFS server: a host name or IPv4 address.
pub const SERVER_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$";
/// A Fibre Channel port WWN: 16 hex digits, optionally `0x`-prefixed or colon-separated.
pub const WWN_PATTERN: &str = r"^((0x)?[0-9A-Fa-f]{16}|([0-9A-Fa-f]{2}:){7}[0-9A-Fa-f]{2})$";
/// An absolute path without whitespace.
pub const ABSOLUTE_PATH_PATTERN: &str = r"^/[!-~]*$";
/// A relative path without whitespace.
pub const RELATIVE_PATH_PATTERN: &str = r"^[!-.0-~][!-~]*$";

/// CEL rule on the spec: exactly one driver.
pub const DRIVER_RULE: &str =
    "[has(self.local), has(self.iscsi), has(self.fc), has(self.nfs)].filter(d, d).size() == 1";
const DRIVER_MESSAGE: &str =
    "exactly one of spec.local, spec.iscsi, spec.fc or spec.nfs must be set";
/// CEL rule on a path: no `..` (a volume never names a file outside its export).
pub const NO_DOTDOT_RULE: &str = "!self.contains('..')";
const NO_DOTDOT_MESSAGE: &str = "must not contain '..'";
/// CEL rule on `iscsi.chap`: exactly one credential source.
pub const CHAP_RULE: &str = "has(self.secretRef) != has(self.file)";
const CHAP_MESSAGE: &str = "exactly one of secretRef or file must be set";

/// Who may write: `ReadWriteOnce` (one VM on one host at a time; the default) or `ReadOnlyMany`
/// (any number of VMs, read-only).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AccessMode {
    #[default]
    ReadWriteOnce,
    ReadOnlyMany,
}

/// A persistent disk. `ReadWriteOnce` volumes are attached to one VM at a time, and never on a
/// second host before the first host confirmed the detach.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
// clippy reads the repeated `type_ = "string"` of separate printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "yun.dev",
    version = "v1alpha1",
    kind = "Volume",
    namespaced,
    shortname = "yvol",
    status = "VolumeStatus",
    derive = "PartialEq",
    doc = "A persistent disk on local storage, IP-SAN (iSCSI), FC-SAN or NAS (NFS).",
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.sizeGiB"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.accessMode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "VM", type_ = "string", json_path = ".status.vm"),
    printcolumn(name = "Host", type_ = "string", json_path = ".status.host"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new(DRIVER_RULE).message(DRIVER_MESSAGE))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Size in GiB, 1 to 65536. A `local` volume is created with this size and grown when it is
    /// raised; a SAN or NAS volume must be at least this big.
    #[serde(rename = "sizeGiB")]
    #[schemars(range(min = SIZE_GIB_MIN, max = SIZE_GIB_MAX))]
    pub size_gib: u32,
    /// `ReadWriteOnce` (default) or `ReadOnlyMany`.
    #[serde(default)]
    pub access_mode: AccessMode,
    /// A qcow2 file on the host that first attaches it; it stays on that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "LocalVolume")]
    pub local: Option<LocalVolume>,
    /// A LUN on an iSCSI target, reached by QEMU's own initiator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "IscsiVolume")]
    pub iscsi: Option<IscsiVolume>,
    /// A LUN on a Fibre Channel target, as the host's HBA (or multipath) presents it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "FcVolume")]
    pub fc: Option<FcVolume>,
    /// A disk file on an NFS export, reached by QEMU's NFS client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NfsVolume")]
    pub nfs: Option<NfsVolume>,
}

/// A local qcow2 volume (no settings).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalVolume {}

/// An iSCSI LUN.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IscsiVolume {
    /// `host[:port]` of the target's portals (port 3260 when omitted), 1 to 4; QEMU uses the
    /// first that answers.
    #[serde(deserialize_with = "crate::strict::string_list")]
    #[schemars(length(min = 1, max = PORTALS_MAX), inner(length(max = PORTAL_MAX), regex(pattern = PORTAL_PATTERN)))]
    pub portals: Vec<String>,
    /// Target IQN, e.g. `iqn.2024-01.com.example:storage.lun1`.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = IQN_MAX), regex(pattern = IQN_PATTERN))]
    pub iqn: String,
    /// LUN number, 0 to 16383.
    #[schemars(range(max = LUN_MAX))]
    pub lun: u32,
    /// CHAP credentials; omitted: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Chap")]
    pub chap: Option<Chap>,
}

/// Where the CHAP user name and password come from: a Secret (Kubernetes mode; the controller
/// reads it and hands the credentials to the one host granted the volume) or a file on the
/// hosts (either mode; the password then never leaves the hosts).
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new(CHAP_RULE).message(CHAP_MESSAGE))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Chap {
    /// Kubernetes mode: a Secret in the volume's namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SecretRef")]
    pub secret_ref: Option<SecretRef>,
    /// An absolute path, on every host that may attach the volume, of a file holding
    /// `username:password` (mode 0600, owned by the agent's user).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::strict::opt_string"
    )]
    #[schemars(with = "String", length(max = PATH_MAX), regex(pattern = ABSOLUTE_PATH_PATTERN))]
    pub file: Option<String>,
}

/// A Secret by name, in the object's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(min = 1, max = DNS1123_SUBDOMAIN_MAX), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// A Fibre Channel LUN.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FcVolume {
    /// Target port WWNs, 1 to 8 (16 hex digits, `0x`-prefixed or colon-separated accepted).
    #[serde(deserialize_with = "crate::strict::string_list")]
    #[schemars(length(min = 1, max = WWNS_MAX), inner(regex(pattern = WWN_PATTERN)))]
    pub wwns: Vec<String>,
    /// LUN number, 0 to 16383.
    #[schemars(range(max = LUN_MAX))]
    pub lun: u32,
}

/// A disk file on an NFS export.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NfsVolume {
    /// The NFS server's host name or IPv4 address.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = PORTAL_MAX), regex(pattern = SERVER_PATTERN))]
    pub server: String,
    /// The exported directory, absolute.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = PATH_MAX), regex(pattern = ABSOLUTE_PATH_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new(NO_DOTDOT_RULE).message(NO_DOTDOT_MESSAGE))]
    pub export: String,
    /// The disk file (raw), relative to the export.
    #[serde(deserialize_with = "crate::strict::string")]
    #[schemars(length(max = PATH_MAX), regex(pattern = RELATIVE_PATH_PATTERN))]
    #[x_kube(validation = kube::core::Rule::new(NO_DOTDOT_RULE).message(NO_DOTDOT_MESSAGE))]
    pub path: String,
}

/// The driver a volume uses, read from its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    Local,
    Iscsi,
    Fc,
    Nfs,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Local => "local",
            Driver::Iscsi => "iscsi",
            Driver::Fc => "fc",
            Driver::Nfs => "nfs",
        }
    }
}

// Variant meanings are documented on the enum (see RunStrategy for why).

/// Attachment phase: `Detached`, `Attaching` (the host is connecting the disk to the VM),
/// `Attached`, `Detaching` (the host is disconnecting it), `Failed` (an attach or detach did not
/// finish in time or was refused; `message` and the `Attached` condition say why; retried with
/// backoff).
#[derive(
    Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum VolumePhase {
    Detached,
    Attaching,
    Attached,
    Detaching,
    Failed,
}

impl VolumePhase {
    pub const ALL: [VolumePhase; 5] = [
        VolumePhase::Detached,
        VolumePhase::Attaching,
        VolumePhase::Attached,
        VolumePhase::Detaching,
        VolumePhase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumePhase::Detached => "Detached",
            VolumePhase::Attaching => "Attaching",
            VolumePhase::Attached => "Attached",
            VolumePhase::Detaching => "Detaching",
            VolumePhase::Failed => "Failed",
        }
    }
}

/// What the controller observes about a volume. Conditions: `Attached`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<VolumePhase>,
    /// The VirtualMachine (same namespace) the volume is attached to or moving to or from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// The Host that holds the attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// RFC 3339 time the phase was entered; bounds the time spent in a transitional phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<String>,
    /// Consecutive failed attempts of the current operation (drives the retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Human-readable detail (always set when `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl VolumeSpec {
    /// Checks the spec the way the CRD schema (bounds, patterns and CEL rules) does; paths start
    /// at `spec.`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        self.check(&mut c);
        c.finish()
    }

    pub(crate) fn check(&self, c: &mut Checker) {
        c.range("spec.sizeGiB", self.size_gib, SIZE_GIB_MIN, SIZE_GIB_MAX);
        let set = [
            self.local.is_some(),
            self.iscsi.is_some(),
            self.fc.is_some(),
            self.nfs.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            c.push("spec", DRIVER_MESSAGE);
        }
        if let Some(iscsi) = &self.iscsi {
            check_list(
                c,
                "spec.iscsi.portals",
                &iscsi.portals,
                PORTALS_MAX,
                |c, p, v| {
                    c.chars(p, v, 0, PORTAL_MAX);
                    c.matches(
                        p,
                        v,
                        PORTAL_PATTERN,
                        "host[:port] with a port from 1 to 65535",
                    );
                },
            );
            c.chars("spec.iscsi.iqn", &iscsi.iqn, 0, IQN_MAX);
            c.matches(
                "spec.iscsi.iqn",
                &iscsi.iqn,
                IQN_PATTERN,
                "an iSCSI qualified name",
            );
            c.range("spec.iscsi.lun", iscsi.lun, 0, LUN_MAX);
            if let Some(chap) = &iscsi.chap {
                if chap.secret_ref.is_some() == chap.file.is_some() {
                    c.push("spec.iscsi.chap", CHAP_MESSAGE);
                }
                if let Some(r) = &chap.secret_ref {
                    c.dns1123_subdomain("spec.iscsi.chap.secretRef.name", &r.name);
                }
                if let Some(f) = &chap.file {
                    c.chars("spec.iscsi.chap.file", f, 0, PATH_MAX);
                    c.matches(
                        "spec.iscsi.chap.file",
                        f,
                        ABSOLUTE_PATH_PATTERN,
                        "an absolute path",
                    );
                }
            }
        }
        if let Some(fc) = &self.fc {
            check_list(c, "spec.fc.wwns", &fc.wwns, WWNS_MAX, |c, p, v| {
                c.matches(p, v, WWN_PATTERN, "a WWN of 16 hex digits");
            });
            c.range("spec.fc.lun", fc.lun, 0, LUN_MAX);
        }
        if let Some(nfs) = &self.nfs {
            c.chars("spec.nfs.server", &nfs.server, 0, PORTAL_MAX);
            c.matches(
                "spec.nfs.server",
                &nfs.server,
                SERVER_PATTERN,
                "a host name or IPv4 address",
            );
            for (path, value, pattern, what) in [
                (
                    "spec.nfs.export",
                    &nfs.export,
                    ABSOLUTE_PATH_PATTERN,
                    "an absolute path",
                ),
                (
                    "spec.nfs.path",
                    &nfs.path,
                    RELATIVE_PATH_PATTERN,
                    "a relative path",
                ),
            ] {
                c.chars(path, value, 0, PATH_MAX);
                c.matches(path, value, pattern, what);
                if value.contains("..") {
                    c.push(path, NO_DOTDOT_MESSAGE);
                }
            }
        }
    }

    /// The driver (`None` unless exactly one is set).
    pub fn driver(&self) -> Option<Driver> {
        match (&self.local, &self.iscsi, &self.fc, &self.nfs) {
            (Some(_), None, None, None) => Some(Driver::Local),
            (None, Some(_), None, None) => Some(Driver::Iscsi),
            (None, None, Some(_), None) => Some(Driver::Fc),
            (None, None, None, Some(_)) => Some(Driver::Nfs),
            _ => None,
        }
    }
}

/// A non-empty list of at most `max` items, each checked by `item`.
fn check_list(
    c: &mut Checker,
    path: &str,
    items: &[String],
    max: usize,
    item: impl Fn(&mut Checker, &str, &str),
) {
    if items.is_empty() {
        c.push(path, "must have at least 1 item");
    }
    c.max_items(path, items.len(), max);
    for (i, v) in items.iter().enumerate() {
        item(c, &format!("{path}[{i}]"), v);
    }
}

impl Volume {
    /// Checks metadata (name a DNS-1123 subdomain, namespace a DNS-1123 label) and spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Checker::new();
        c.metadata(
            &self.metadata,
            "Volume",
            Scope::Namespaced,
            NameRule::Subdomain,
        );
        self.spec.check(&mut c);
        c.finish()
    }
}

#[cfg(test)]
#[path = "volume/tests.rs"]
mod tests;
