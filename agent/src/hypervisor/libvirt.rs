//! [`Hypervisor`] over libvirt (the `virt` crate): `qemu:///system` on hosts, `test:///default`
//! in tests.

use super::{
    ChapSecret, DomainDisk, DomainInfo, DomainSpec, DomainState, Hypervisor, HypervisorError,
    METADATA_NAMESPACE, VirtType, YunMetadata,
};
use super::{domain_xml, libvirt_disks};
use crate::storage::AttachedDisk;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

/// Resolves the configured `virt_type` (`auto | kvm | qemu`, as in Nova): `auto` picks KVM only
/// when `/dev/kvm` can be opened read-write, and QEMU's TCG emulator otherwise.
pub fn resolve_virt_type(configured: &str) -> Result<VirtType, HypervisorError> {
    resolve_virt_type_with(configured, Path::new("/dev/kvm"))
}

/// [`resolve_virt_type`] with the KVM device given, for tests.
pub fn resolve_virt_type_with(
    configured: &str,
    kvm_device: &Path,
) -> Result<VirtType, HypervisorError> {
    match configured {
        "kvm" => Ok(VirtType::Kvm),
        "qemu" => Ok(VirtType::Qemu),
        "auto" => {
            let usable = OpenOptions::new()
                .read(true)
                .write(true)
                .open(kvm_device)
                .is_ok();
            Ok(if usable {
                VirtType::Kvm
            } else {
                VirtType::Qemu
            })
        }
        other => Err(HypervisorError::InvalidVirtType {
            value: other.to_owned(),
        }),
    }
}

/// A libvirt connection shared by all callers. libvirt connections are thread-safe, so each call
/// takes its own reference to the cached connection and runs without holding the lock; the lock
/// only guards replacing a connection that died (libvirtd restarted).
#[derive(Debug)]
pub struct LibvirtHypervisor {
    uri: String,
    conn: Mutex<Option<Connect>>,
}

/// One reference to the shared connection, released on drop.
struct ConnRef(Connect);

impl Drop for ConnRef {
    fn drop(&mut self) {
        // Releasing a reference can only fail on an invalid pointer; nothing to do about it.
        let _ = self.0.close();
    }
}

impl LibvirtHypervisor {
    /// Connects to `uri` now, so a wrong URI or a stopped libvirtd fails at agent start.
    pub fn connect(uri: &str) -> Result<Self, HypervisorError> {
        // libvirt's default error handler prints every error (even "domain not found" from a
        // lookup) to stderr; errors are reported through our Results instead.
        virt::error::clear_error_callback();
        let conn = open(uri)?;
        Ok(LibvirtHypervisor {
            uri: uri.to_owned(),
            conn: Mutex::new(Some(conn)),
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn conn_ref(&self) -> Result<ConnRef, HypervisorError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = guard.as_ref()
            && conn.is_alive().unwrap_or(false)
        {
            return Ok(ConnRef(conn.clone()));
        }
        if let Some(mut dead) = guard.take() {
            let _ = dead.close();
        }
        let conn = open(&self.uri)?;
        let r = ConnRef(conn.clone());
        *guard = Some(conn);
        Ok(r)
    }

    /// Runs `op`; if it failed because the connection died, reconnects and runs it once more
    /// (every operation of the trait is idempotent).
    fn run<T>(
        &self,
        op: impl Fn(&Connect) -> Result<T, HypervisorError>,
    ) -> Result<T, HypervisorError> {
        let conn = self.conn_ref()?;
        match op(&conn.0) {
            Err(_) if !conn.0.is_alive().unwrap_or(false) => {
                drop(conn);
                let fresh = self.conn_ref()?;
                op(&fresh.0)
            }
            result => result,
        }
    }
}

impl Drop for LibvirtHypervisor {
    fn drop(&mut self) {
        let guard = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut conn) = guard.take() {
            let _ = conn.close();
        }
    }
}

fn open(uri: &str) -> Result<Connect, HypervisorError> {
    Connect::open(Some(uri)).map_err(|e| HypervisorError::Connect {
        uri: uri.to_owned(),
        message: e.message().to_owned(),
    })
}

pub(super) fn failed(domain: &str, op: &'static str) -> impl FnOnce(VirtError) -> HypervisorError {
    move |e| HypervisorError::Libvirt {
        domain: domain.to_owned(),
        op,
        message: e.message().to_owned(),
    }
}

pub(super) fn find(conn: &Connect, name: &str) -> Result<Option<Domain>, HypervisorError> {
    match Domain::lookup_by_name(conn, name) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.code() == ErrorNumber::NoDomain => Ok(None),
        Err(e) => Err(failed(name, "lookup")(e)),
    }
}

pub(super) fn find_existing(conn: &Connect, name: &str) -> Result<Domain, HypervisorError> {
    find(conn, name)?.ok_or_else(|| HypervisorError::NotFound {
        domain: name.to_owned(),
    })
}

fn state_of(raw: sys::virDomainState) -> DomainState {
    match raw {
        sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => DomainState::Running,
        sys::VIR_DOMAIN_PAUSED => DomainState::Paused,
        sys::VIR_DOMAIN_SHUTDOWN => DomainState::ShuttingDown,
        sys::VIR_DOMAIN_SHUTOFF => DomainState::ShutOff,
        sys::VIR_DOMAIN_CRASHED => DomainState::Crashed,
        sys::VIR_DOMAIN_PMSUSPENDED => DomainState::Other("pmsuspended".into()),
        sys::VIR_DOMAIN_NOSTATE => DomainState::Other("nostate".into()),
        other => DomainState::Other(format!("state {other}")),
    }
}

/// Yun's metadata of `dom`: `Ok(None)` when it has none (not ours) or it does not parse.
fn metadata_of(dom: &Domain, name: &str) -> Result<Option<YunMetadata>, HypervisorError> {
    let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
    match dom.get_metadata(kind, Some(METADATA_NAMESPACE), 0) {
        Ok(xml) => {
            let meta = domain_xml::parse_metadata_element(&xml);
            if meta.is_none() {
                tracing::warn!(domain = name, "domain has unreadable Yun metadata: {xml}");
            }
            Ok(meta)
        }
        Err(e) if e.code() == ErrorNumber::NoDomainMetadata => Ok(None),
        Err(e) => Err(failed(name, "read metadata")(e)),
    }
}

fn info_of(dom: &Domain, name: &str) -> Result<DomainInfo, HypervisorError> {
    let uuid = dom.get_uuid_string().map_err(failed(name, "read uuid"))?;
    let (state, _reason) = dom.get_state().map_err(failed(name, "read state"))?;
    Ok(DomainInfo {
        name: name.to_owned(),
        uuid,
        state: state_of(state),
        meta: metadata_of(dom, name)?,
    })
}

/// Whether `dom` is active, treating an unanswerable question as "yes" (the safe side for the
/// callers, which only use it to excuse an error).
fn still_active(dom: &Domain) -> bool {
    dom.is_active().unwrap_or(true)
}

impl Hypervisor for LibvirtHypervisor {
    fn define(&self, spec: &DomainSpec) -> Result<DomainInfo, HypervisorError> {
        self.run(|conn| {
            let name = spec.name.as_str();
            let uuid = match find(conn, name)? {
                Some(existing) => Some(
                    existing
                        .get_uuid_string()
                        .map_err(failed(name, "read uuid"))?,
                ),
                None => None,
            };
            let xml = domain_xml::render(spec, uuid.as_deref()).map_err(|e| {
                HypervisorError::Libvirt {
                    domain: name.to_owned(),
                    op: "render definition",
                    message: e.to_string(),
                }
            })?;
            let dom = Domain::define_xml_flags(conn, &xml, sys::VIR_DOMAIN_DEFINE_VALIDATE)
                .map_err(failed(name, "define"))?;
            info_of(&dom, name)
        })
    }

    fn start(&self, name: &str) -> Result<DomainInfo, HypervisorError> {
        self.run(|conn| {
            let dom = find_existing(conn, name)?;
            if !dom.is_active().map_err(failed(name, "read state"))? {
                // Lost a race with another start: the domain is running, which is what we want.
                if let Err(e) = dom.create()
                    && !dom.is_active().unwrap_or(false)
                {
                    return Err(failed(name, "start")(e));
                }
            }
            info_of(&dom, name)
        })
    }

    fn shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        self.run(|conn| {
            let dom = find_existing(conn, name)?;
            if !dom.is_active().map_err(failed(name, "read state"))? {
                return Ok(());
            }
            match dom.shutdown() {
                Err(e) if still_active(&dom) => Err(failed(name, "shutdown")(e)),
                _ => Ok(()),
            }
        })
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.run(|conn| {
            let Some(dom) = find(conn, name)? else {
                return Ok(());
            };
            if !dom.is_active().map_err(failed(name, "read state"))? {
                return Ok(());
            }
            match dom.destroy() {
                Err(e) if e.code() != ErrorNumber::NoDomain && still_active(&dom) => {
                    Err(failed(name, "destroy")(e))
                }
                _ => Ok(()),
            }
        })
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        self.run(|conn| {
            let Some(dom) = find(conn, name)? else {
                return Ok(());
            };
            // Also drop what libvirt may keep beside the definition, so the name is reusable.
            let flags =
                sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
            match dom.undefine_flags(flags) {
                Err(e) if e.code() != ErrorNumber::NoDomain => Err(failed(name, "undefine")(e)),
                _ => Ok(()),
            }
        })
    }

    fn lookup(&self, name: &str) -> Result<Option<DomainInfo>, HypervisorError> {
        self.run(|conn| {
            let Some(dom) = find(conn, name)? else {
                return Ok(None);
            };
            match info_of(&dom, name) {
                // Undefined between the lookup and the reads.
                Err(_) if find(conn, name)?.is_none() => Ok(None),
                other => other.map(Some),
            }
        })
    }

    fn list_managed(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        self.run(|conn| {
            let all = conn
                .list_all_domains(0)
                .map_err(|e| HypervisorError::Host {
                    op: "list domains",
                    message: e.message().to_owned(),
                })?;
            let mut managed = Vec::new();
            for dom in all {
                let name = match dom.get_name() {
                    Ok(n) => n,
                    Err(e) if e.code() == ErrorNumber::NoDomain => continue,
                    Err(e) => return Err(failed("?", "read name")(e)),
                };
                match info_of(&dom, &name) {
                    Ok(info) if info.meta.is_some() => managed.push(info),
                    Ok(_) => {}
                    // Undefined while we were listing.
                    Err(_) if find(conn, &name)?.is_none() => {}
                    Err(e) => return Err(e),
                }
            }
            managed.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(managed)
        })
    }

    fn disks(&self, name: &str) -> Result<Vec<DomainDisk>, HypervisorError> {
        self.run(|conn| libvirt_disks::disks(conn, name))
    }

    fn attach_disk(&self, name: &str, disk: &AttachedDisk) -> Result<(), HypervisorError> {
        self.run(|conn| libvirt_disks::attach(conn, name, disk))
    }

    fn detach_disk(
        &self,
        name: &str,
        serial: &str,
        timeout: Duration,
    ) -> Result<(), HypervisorError> {
        self.run(|conn| libvirt_disks::detach(conn, name, serial, timeout))
    }

    fn set_chap_secret(&self, secret: &ChapSecret) -> Result<(), HypervisorError> {
        self.run(|conn| libvirt_disks::set_chap_secret(conn, secret))
    }

    fn remove_chap_secret(&self, usage: &str) -> Result<(), HypervisorError> {
        self.run(|conn| libvirt_disks::remove_chap_secret(conn, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_virt_types() {
        let none = Path::new("/nonexistent/kvm");
        assert_eq!(resolve_virt_type_with("kvm", none).unwrap(), VirtType::Kvm);
        assert_eq!(
            resolve_virt_type_with("qemu", none).unwrap(),
            VirtType::Qemu
        );
    }

    #[test]
    fn auto_falls_back_to_qemu_without_kvm_device() {
        let none = Path::new("/nonexistent/kvm");
        assert_eq!(
            resolve_virt_type_with("auto", none).unwrap(),
            VirtType::Qemu
        );
    }

    #[test]
    fn auto_picks_kvm_when_device_opens_read_write() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        std::fs::write(&dev, b"").unwrap();
        assert_eq!(resolve_virt_type_with("auto", &dev).unwrap(), VirtType::Kvm);
    }

    #[test]
    fn unknown_virt_type_names_the_setting() {
        let err = resolve_virt_type_with("xen", Path::new("/dev/kvm")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("virt_type") && msg.contains("xen"), "{msg}");
    }

    #[test]
    fn states_map() {
        assert_eq!(state_of(sys::VIR_DOMAIN_BLOCKED), DomainState::Running);
        assert_eq!(state_of(sys::VIR_DOMAIN_SHUTOFF), DomainState::ShutOff);
        assert_eq!(state_of(sys::VIR_DOMAIN_CRASHED), DomainState::Crashed);
        assert_eq!(state_of(99), DomainState::Other("state 99".into()));
    }
}
