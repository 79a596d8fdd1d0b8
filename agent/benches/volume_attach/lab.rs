//! The host side of the run: a state directory QEMU's user can traverse, one running TCG guest
//! of the test template prepared and defined the way the agent does it, and guards that remove
//! the domain, the CHAP secrets and the files however the run ends.

use crate::fixture::Template;
use anyhow::{Context, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use yun_agent::hypervisor::{DomainState, Hypervisor, VirtType};
use yun_agent::images::ImageCache;
use yun_agent::prepare::VmFilePreparer;
use yun_fleet::VmDesired;

/// Uids of this benchmark's VMs start with this, so a later run can remove a crashed run's domain.
pub const UID_PREFIX: &str = "bench-va-";
/// What the test template prints on its console once it booted (images/README.md).
const READY_LINE: &str = "YUN-GUEST-READY";

/// A directory (mode 0755) removed with everything in it on drop.
#[derive(Debug)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    /// `<root>/va-<pid>`; `root` and the run dir are made traversable for QEMU's user.
    pub fn create(root: &Path) -> anyhow::Result<RunDir> {
        let dir = root.join(format!("va-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [root, dir.as_path()] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", d.display()))?;
        }
        Ok(RunDir(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Destroys and undefines the domains of crashed earlier runs of this benchmark.
pub fn remove_leftovers(hv: &Arc<dyn Hypervisor>) -> anyhow::Result<()> {
    for d in hv.list_managed()? {
        if d.uid().is_some_and(|u| u.starts_with(UID_PREFIX)) {
            eprintln!("bench: removing leftover domain {}", d.name);
            hv.destroy(&d.name)?;
            hv.undefine(&d.name)?;
        }
    }
    Ok(())
}

/// One running guest; destroyed and undefined on drop.
pub struct Guest {
    hv: Arc<dyn Hypervisor>,
    pub name: String,
    pub console_log: PathBuf,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest").field("name", &self.name).finish()
    }
}

impl Guest {
    /// Prepares (overlay, seed) and defines `vm` as the agent does, starts it and waits until
    /// its console says it booted: hot plug and unplug need a guest that handles ACPI events.
    pub fn boot(
        hv: &Arc<dyn Hypervisor>,
        state: &Path,
        template: &Template,
        vm: &VmDesired,
        timeout: Duration,
    ) -> anyhow::Result<(Guest, Duration)> {
        let cache = ImageCache::open(state.join("images"))?;
        let vms = state.join("vms");
        std::fs::create_dir_all(&vms).with_context(|| format!("create {}", vms.display()))?;
        std::fs::set_permissions(&vms, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", vms.display()))?;
        let spec = VmFilePreparer::new(cache, vms).prepare(vm, VirtType::Qemu)?;
        // The guard exists before the domain does, so a failed start still removes it.
        let guest = Guest {
            hv: hv.clone(),
            name: spec.name.clone(),
            console_log: spec.console_log.clone(),
        };
        hv.define(&spec)?;
        let t0 = Instant::now();
        let info = hv.start(&spec.name)?;
        if info.state != DomainState::Running {
            bail!("{} is {:?} after start", spec.name, info.state);
        }
        let deadline = t0 + timeout;
        while !guest.console().contains(READY_LINE) {
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {READY_LINE} within {timeout:?} (template {}); console:\n{}",
                    spec.name,
                    template.disk.display(),
                    guest.console_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok((guest, t0.elapsed()))
    }

    /// Waits until the guest reported the disk with `serial` (the template's disk watcher
    /// prints `YUN-DISK <dev> serial=<serial> ...` within about 0.5 s of seeing it); the time.
    pub fn wait_disk(&self, serial: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let want = format!("serial={serial}");
        loop {
            let seen = self.console().lines().any(|l| {
                l.split_once("YUN-DISK ")
                    .is_some_and(|(_, rest)| rest.split_whitespace().nth(1) == Some(&want))
            });
            if seen {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                bail!(
                    "the guest did not report disk {serial} within {timeout:?} (a test template \
                     without /etc/yun/disks.sh? rebuild it); console:\n{}",
                    self.console_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The serial console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_log)
            .unwrap_or_default()
            .replace('\r', "")
    }

    pub fn console_tail(&self, lines: usize) -> String {
        let text = self.console();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Err(e) = self
            .hv
            .destroy(&self.name)
            .and_then(|()| self.hv.undefine(&self.name))
        {
            eprintln!("bench: cleanup of domain {} failed: {e}", self.name);
        }
    }
}

/// Removes the libvirt CHAP secrets with these usage names on drop (the agent removes each one
/// when it detaches; this covers a run that stopped in between).
pub struct Secrets {
    hv: Arc<dyn Hypervisor>,
    usages: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("usages", &self.usages)
            .finish()
    }
}

impl Secrets {
    pub fn new(hv: &Arc<dyn Hypervisor>, usages: Vec<String>) -> Secrets {
        Secrets {
            hv: hv.clone(),
            usages,
        }
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        for usage in &self.usages {
            if let Err(e) = self.hv.remove_chap_secret(usage) {
                eprintln!("bench: cleanup of secret {usage} failed: {e}");
            }
        }
    }
}
