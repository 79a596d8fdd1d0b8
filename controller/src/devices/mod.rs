//! Third-party devices (`DeviceIdentity`): a firewall appliance or an IDS gets a Keystone
//! credential of its own, delivered to the operator as a credentials file, and with a token of
//! that credential a read-only view of its tenant from the controller (`GET
//! /v1/security-groups` on `--device-view-listen`).
//!
//! - [`reconcile`]: one device's credential brought in line with its spec (both modes);
//! - [`delivery`]: where the credential goes: a file (bootstrap mode) or a Secret (Kubernetes);
//! - [`file`]: the credentials file (`<devices dir>/<namespace>/<name>.toml`, 0600 in a 0700
//!   directory, yun-identity's format);
//! - [`snapshot`]: what the view serves, compiled by each reconcile pass;
//! - [`view`]: the HTTP endpoint.
//!
//! The passes: `crate::bootstrap::devices` (records in etcd) and
//! `crate::kube_source::device` (the DeviceIdentity controller).

pub mod delivery;
pub mod file;
pub mod reconcile;
pub mod snapshot;
pub mod view;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use yun_crds::DeviceView;
use yun_fleet::network::Rule;

/// Bootstrap status records of devices are kept under this kind.
pub const DEVICE_KIND: &str = "DeviceIdentity";
/// Where device credentials files go unless `--devices-dir` says otherwise.
pub const DEFAULT_DEVICES_DIR: &str = "/var/lib/yun/devices";
/// Where the device view listens unless `--device-view-listen` says otherwise.
pub const DEFAULT_VIEW_LISTEN: &str = "127.0.0.1:9466";
/// Roles a device may ask for unless configured otherwise.
pub const DEFAULT_DEVICE_ROLES: &[&str] = &["reader"];
/// How long a rotated-out device credential stays valid unless configured otherwise.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(3600);

/// How devices are served.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Credentials files go to `<dir>/<namespace>/<name>.toml`.
    pub dir: PathBuf,
    /// The roles a device may ask for; anything else is refused (`admin` never is allowed).
    pub allowed_roles: Vec<String>,
    /// Credentials older than this are rotated (`None`: never).
    pub rotation: Option<Duration>,
    /// How long a rotated-out credential stays valid, for the device to pick up the new one.
    pub rotation_overlap: Duration,
}

impl DeviceConfig {
    pub fn new(dir: PathBuf) -> DeviceConfig {
        DeviceConfig {
            dir,
            allowed_roles: DEFAULT_DEVICE_ROLES.iter().map(|r| r.to_string()).collect(),
            rotation: Some(crate::identity::DEFAULT_ROTATION),
            rotation_overlap: DEFAULT_ROTATION_OVERLAP,
        }
    }
}

/// A device whose credential is issued, as the view checks tokens against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub namespace: String,
    pub name: String,
    pub user_id: String,
    pub project_id: String,
    pub credential_id: String,
    pub views: Vec<DeviceView>,
}

/// One security group as the controller compiled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub name: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// Addresses of the VM interfaces in the group.
    pub members: Vec<Ipv4Addr>,
    /// Rules naming a group that does not exist (they match no one until it does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
    /// Why the group's rules could not be compiled at all (nothing is published for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the view serves, as of the last reconcile pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Whether a pass has filled it (a standby controller's is empty and says so).
    pub ready: bool,
    /// Issued devices by Keystone user id.
    pub devices: BTreeMap<String, DeviceEntry>,
    /// Security groups by namespace, for the namespaces of devices that may see them.
    pub security_groups: BTreeMap<String, Vec<GroupView>>,
}

/// The directory shared by the reconcile pass (writer) and the view (reader); a request reads
/// one whole snapshot.
#[derive(Debug, Clone, Default)]
pub struct DeviceDirectory(Arc<RwLock<Arc<Directory>>>);

impl DeviceDirectory {
    pub fn snapshot(&self) -> Arc<Directory> {
        // A panic while holding the lock leaves a whole directory behind: it is replaced, not
        // edited in place.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, directory: Directory) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
    }
}

/// The devices part of a controller: configuration and what the view serves.
#[derive(Debug, Clone)]
pub struct Devices {
    pub config: DeviceConfig,
    pub directory: DeviceDirectory,
}

impl Devices {
    pub fn new(config: DeviceConfig) -> Devices {
        Devices {
            config,
            directory: DeviceDirectory::default(),
        }
    }
}
