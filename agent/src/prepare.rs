//! Turns a desired VM into files on this host and a domain spec: template artifacts cached and
//! verified, a qcow2 overlay (created once, never recreated: it holds the guest's writes), and
//! a fresh NoCloud seed.

use crate::hypervisor::{DomainNic, DomainSpec, VirtType, domain_name};
use crate::images::{ImageCache, ImageError, create_overlay, create_vm_dir, remove_vm_files};
use crate::seed::{SeedError, SeedFiles, write_seed_iso};
use std::collections::BTreeMap;
use std::path::PathBuf;
use thiserror::Error;
use yun_fleet::VmDesired;

#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Seed(#[from] SeedError),
}

/// Lays out `<state_dir>/vms/<uid>/{root.qcow2, seed.iso, console.log}`.
#[derive(Debug)]
pub struct VmFilePreparer {
    images: ImageCache,
    vms_dir: PathBuf,
}

impl VmFilePreparer {
    pub fn new(images: ImageCache, vms_dir: PathBuf) -> VmFilePreparer {
        VmFilePreparer { images, vms_dir }
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
        let files = SeedFiles::for_vm(&vm.uid, &vm.hostname, vm.user_data.as_deref(), &vm.nics);
        let seed_iso = write_seed_iso(&dir, &files)?;
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
