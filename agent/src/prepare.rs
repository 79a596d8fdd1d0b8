//! Turns a desired VM into files on this host and a domain spec: template artifacts cached and
//! verified, a qcow2 overlay (created once, never recreated: it holds the guest's writes), and
//! a fresh NoCloud seed (with the VM's Keystone credential, opened with the host's seal key,
//! when it has an identity).

use crate::guest_identity::{self, RenderError};
use crate::hypervisor::{DomainNic, DomainSpec, VirtType, domain_name};
use crate::images::{ImageCache, ImageError, create_overlay, create_vm_dir, remove_vm_files};
use crate::seed::{SeedError, SeedFiles, write_seed_iso};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use yun_fleet::VmDesired;
use yun_fleet::sealed::{SealError, SealKeyPair, open_credential};

#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The sealed credential does not open here; the VM must not start without it.
    #[error(
        "VM {vm}: its Keystone identity (generation {generation}) cannot be opened with the seal \
         key of host {host}: {err}"
    )]
    Identity {
        vm: String,
        generation: u64,
        host: String,
        #[source]
        err: SealError,
    },
    #[error("VM {vm}: it has a Keystone identity, but this agent has no seal key to open it")]
    NoSealKey { vm: String },
    #[error("VM {vm}: {err}")]
    IdentityRender {
        vm: String,
        #[source]
        err: RenderError,
    },
}

/// What opens the VM credentials sealed to this host.
struct IdentityOpener {
    host: String,
    key: Arc<SealKeyPair>,
}

/// Lays out `<state_dir>/vms/<uid>/{root.qcow2, seed.iso, console.log}`.
pub struct VmFilePreparer {
    images: ImageCache,
    vms_dir: PathBuf,
    identity: Option<IdentityOpener>,
}

impl std::fmt::Debug for VmFilePreparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmFilePreparer")
            .field("images", &self.images)
            .field("vms_dir", &self.vms_dir)
            .field("seal_key", &self.seal_public_key())
            .finish()
    }
}

impl VmFilePreparer {
    pub fn new(images: ImageCache, vms_dir: PathBuf) -> VmFilePreparer {
        VmFilePreparer {
            images,
            vms_dir,
            identity: None,
        }
    }

    /// Opens VM identities sealed to `host` with `key` (without it, a VM with an identity
    /// fails to prepare).
    pub fn with_identity(mut self, host: impl Into<String>, key: Arc<SealKeyPair>) -> Self {
        self.identity = Some(IdentityOpener {
            host: host.into(),
            key,
        });
        self
    }

    /// The public seal key to publish as `HostInfo.seal_key`.
    pub fn seal_public_key(&self) -> Option<String> {
        self.identity.as_ref().map(|i| i.key.public_b64())
    }

    pub fn vm_dir(&self, uid: &str) -> PathBuf {
        self.vms_dir.join(uid)
    }

    /// Blocking: copies/verifies templates, creates the overlay if missing, writes the seed.
    pub fn prepare(&self, vm: &VmDesired, virt_type: VirtType) -> Result<DomainSpec, PrepareError> {
        let dir = self.vm_dir(&vm.uid);
        create_vm_dir(&dir)?;
        let base = self
            .images
            .ensure(&vm.image.disk, vm.image.format.as_str())?;
        let kernel = vm
            .image
            .kernel
            .as_ref()
            .map(|k| self.images.ensure(k, "kernel"))
            .transpose()?;
        let initrd = vm
            .image
            .initrd
            .as_ref()
            .map(|i| self.images.ensure(i, "initrd"))
            .transpose()?;
        let root_disk = dir.join("root.qcow2");
        if !root_disk.exists() {
            create_overlay(&base, vm.image.format, &root_disk, vm.resources.disk_gib)?;
        }
        let seed_iso = self.write_seed(vm)?;
        Ok(DomainSpec {
            name: domain_name(&vm.uid),
            uid: vm.uid.clone(),
            namespace: vm.namespace.clone(),
            vm_name: vm.name.clone(),
            generation: vm.generation,
            virt_type,
            vcpus: vm.resources.cpus,
            memory_mib: vm.resources.memory_mib,
            root_disk,
            seed_iso,
            kernel,
            initrd,
            cmdline: vm.image.cmdline.clone(),
            console_log: dir.join("console.log"),
            nics: vm
                .nics
                .iter()
                .map(|n| DomainNic {
                    mac: n.mac.clone(),
                    bridge: n.bridge.clone(),
                    target_dev: n.ifname.clone(),
                    mtu: n.mtu,
                })
                .collect(),
            disks: Vec::new(),
        })
    }

    /// Blocking: writes the VM's seed (replacing the earlier one), with its identity opened
    /// and rendered for the guest. The VM directory must exist.
    pub fn write_seed(&self, vm: &VmDesired) -> Result<PathBuf, PrepareError> {
        let mut files = SeedFiles::for_vm(&vm.uid, &vm.hostname, vm.user_data.as_deref(), &vm.nics);
        if let Some(record) = &vm.identity {
            let name = || format!("{}/{} (uid {})", vm.namespace, vm.name, vm.uid);
            let opener = self
                .identity
                .as_ref()
                .ok_or_else(|| PrepareError::NoSealKey { vm: name() })?;
            let cred = open_credential(
                &opener.key,
                &opener.host,
                &vm.uid,
                record.generation,
                &record.sealed,
            )
            .map_err(|err| PrepareError::Identity {
                vm: name(),
                generation: record.generation,
                host: opener.host.clone(),
                err,
            })?;
            files.identity = Some(
                guest_identity::render(&cred, record.generation)
                    .map_err(|err| PrepareError::IdentityRender { vm: name(), err })?,
            );
        }
        Ok(write_seed_iso(&self.vm_dir(&vm.uid), &files)?)
    }

    /// Blocking: the template cache's inventory (sha256 → bytes).
    pub fn inventory(&self) -> Result<BTreeMap<String, u64>, PrepareError> {
        Ok(self.images.inventory()?)
    }

    /// Template files copied into the cache since start.
    pub fn cache_fills(&self) -> u64 {
        self.images.fills()
    }

    /// Blocking: removes the VM's overlay, seed and console log.
    pub fn remove(&self, uid: &str) -> Result<(), PrepareError> {
        Ok(remove_vm_files(&self.vm_dir(uid))?)
    }
}
