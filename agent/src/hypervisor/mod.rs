//! The agent's narrow view of a hypervisor: define, start, stop and forget domains that carry
//! Yun metadata. The reconcile loop only talks to [`Hypervisor`]; `libvirt` is the real
//! implementation and the fleet simulator can supply a fake one.

pub mod domain_xml;
pub mod libvirt;
mod libvirt_disks;

use std::path::PathBuf;

/// Domain names are `yun-<vm uid>`: unique per host, and recognisable by an operator in `virsh list`.
pub const DOMAIN_NAME_PREFIX: &str = "yun-";

/// XML namespace of the `<metadata>` element Yun writes into every domain it defines. Its
/// presence is what makes a domain "managed"; its contents let a restarted agent re-adopt it.
pub const METADATA_NAMESPACE: &str = "https://yun.dev/xmlns/libvirt/vm/v1";

/// Prefix bound to [`METADATA_NAMESPACE`] in the rendered XML.
pub const METADATA_PREFIX: &str = "yun";

/// The libvirt domain name for the VM with this uid.
pub fn domain_name(uid: &str) -> String {
    format!("{DOMAIN_NAME_PREFIX}{uid}")
}

/// libvirt's `<domain type=…>`: hardware virtualisation or QEMU's TCG emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VirtType {
    Kvm,
    Qemu,
}

impl VirtType {
    /// The value libvirt expects in `<domain type=…>`, also reported in `HostInfo.virt_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            VirtType::Kvm => "kvm",
            VirtType::Qemu => "qemu",
        }
    }
}

/// Everything needed to render one VM's domain definition. Paths must be absolute and
/// readable by libvirt's QEMU user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// `yun-<uid>`, see [`domain_name`].
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub vm_name: String,
    pub generation: u64,
    pub virt_type: VirtType,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// The VM's qcow2 overlay.
    pub root_disk: PathBuf,
    /// The cloud-init NoCloud ISO.
    pub seed_iso: PathBuf,
    /// Direct kernel boot when set; otherwise the guest boots from `root_disk`.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    /// File the serial console is logged to (written by virtlogd).
    pub console_log: PathBuf,
    /// Tenant NICs in guest order (empty: the domain has no network interface).
    pub nics: Vec<DomainNic>,
    /// Volumes attached at define time (cold attach), after the root disk and the seed.
    pub disks: Vec<crate::storage::AttachedDisk>,
}

/// A volume disk as found in a domain's definition: Yun's volumes are the disks with a serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDisk {
    pub serial: String,
    /// `vdc`, `vdd`, …
    pub target_dev: String,
}

/// A CHAP password for QEMU's iSCSI initiator, held in a libvirt secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapSecret {
    /// The secret's usage name, as `ChapRef::secret_usage` names it in the disk XML.
    pub usage: String,
    pub password: String,
}

impl std::fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapSecret")
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

/// One bridged virtio NIC. libvirt creates the tap `target_dev` and enslaves it to `bridge`
/// when the domain starts, and deletes it when the domain stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainNic {
    /// The guest's MAC address, `52:54:00:…`.
    pub mac: String,
    pub bridge: String,
    /// The host-side tap (`yt` + 13 hex digits).
    pub target_dev: String,
    pub mtu: u32,
}

/// The domain's run state as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainState {
    /// Running, or blocked on a resource (libvirt's `blocked` is a running guest too).
    Running,
    Paused,
    /// An ACPI shutdown is in progress.
    ShuttingDown,
    ShutOff,
    Crashed,
    /// Any other state (`nostate`, `pmsuspended`, or one added by a newer libvirt).
    Other(String),
}

impl DomainState {
    /// Whether the domain holds a running QEMU process (so `destroy` would have something to stop).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            DomainState::Running | DomainState::Paused | DomainState::ShuttingDown
        )
    }
}

/// What Yun wrote into a domain's `<metadata>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YunMetadata {
    pub uid: String,
    pub namespace: String,
    pub vm_name: String,
    pub generation: u64,
}

/// One domain as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    pub uuid: String,
    pub state: DomainState,
    /// Yun's metadata, `None` for a domain Yun did not define (or whose metadata is unreadable).
    pub meta: Option<YunMetadata>,
}

impl DomainInfo {
    /// The VM uid from Yun's metadata.
    pub fn uid(&self) -> Option<&str> {
        self.meta.as_ref().map(|m| m.uid.as_str())
    }
}

/// Errors of the hypervisor adapters. Every variant names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("libvirt: cannot connect to {uri}: {message}")]
    Connect { uri: String, message: String },
    #[error("libvirt: domain {domain}: {op} failed: {message}")]
    Libvirt {
        domain: String,
        op: &'static str,
        message: String,
    },
    #[error("libvirt: {op} failed: {message}")]
    Host { op: &'static str, message: String },
    #[error("libvirt: domain {domain} does not exist")]
    NotFound { domain: String },
    #[error("virt_type: unknown value {value:?} (expected auto, kvm or qemu)")]
    InvalidVirtType { value: String },
}

/// The host's hypervisor, as the reconcile loop sees it. Calls block (libvirt is synchronous):
/// the caller runs them on tokio's blocking pool. Every operation is idempotent so a reconcile
/// pass can simply be retried.
pub trait Hypervisor: Send + Sync + 'static {
    /// Defines (or redefines, keeping its UUID) the persistent domain `spec.name`. A redefinition
    /// of a running domain takes effect at its next start.
    fn define(&self, spec: &DomainSpec) -> Result<DomainInfo, HypervisorError>;
    /// Starts a defined domain; a no-op if it is already active. `NotFound` if it is not defined.
    fn start(&self, name: &str) -> Result<DomainInfo, HypervisorError>;
    /// Asks the guest to power off (ACPI); returns without waiting. A no-op if it is not active.
    /// `NotFound` if it is not defined.
    fn shutdown(&self, name: &str) -> Result<(), HypervisorError>;
    /// Stops the domain at once; Ok if it is not running or does not exist.
    fn destroy(&self, name: &str) -> Result<(), HypervisorError>;
    /// Removes the domain's definition; Ok if it does not exist. A still-running domain keeps
    /// running as a transient one, so callers destroy first.
    fn undefine(&self, name: &str) -> Result<(), HypervisorError>;
    fn lookup(&self, name: &str) -> Result<Option<DomainInfo>, HypervisorError>;
    /// All domains, active or not, that carry Yun metadata.
    fn list_managed(&self) -> Result<Vec<DomainInfo>, HypervisorError>;

    /// The volume disks (disks with a serial) of the domain: of the running domain when it is
    /// active, else of its persistent definition. `NotFound` if it is not defined.
    fn disks(&self, name: &str) -> Result<Vec<DomainDisk>, HypervisorError>;
    /// Adds `disk` to the domain: to the running guest (hot plug) when it is active, and always
    /// to the persistent definition. A no-op if a disk with the same serial is already there.
    fn attach_disk(
        &self,
        name: &str,
        disk: &crate::storage::AttachedDisk,
    ) -> Result<(), HypervisorError>;
    /// Removes the disk with `serial` from the running guest and the persistent definition, and
    /// returns once libvirt no longer lists it, or fails after `timeout` (a live unplug needs
    /// the guest's cooperation). Ok if no such disk.
    fn detach_disk(
        &self,
        name: &str,
        serial: &str,
        timeout: std::time::Duration,
    ) -> Result<(), HypervisorError>;
    /// Defines (or updates) the ephemeral, private iSCSI secret `secret.usage` and sets its value.
    fn set_chap_secret(&self, secret: &ChapSecret) -> Result<(), HypervisorError>;
    /// Removes the secret with this usage name; Ok if there is none.
    fn remove_chap_secret(&self, usage: &str) -> Result<(), HypervisorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_name_prefixes_uid() {
        assert_eq!(domain_name("0b6c-11"), "yun-0b6c-11");
    }

    #[test]
    fn active_states() {
        assert!(DomainState::Running.is_active());
        assert!(DomainState::Paused.is_active());
        assert!(!DomainState::ShutOff.is_active());
        assert!(!DomainState::Crashed.is_active());
    }
}
