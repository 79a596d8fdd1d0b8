//! Real volumes for attach tests: guests defined and started as the agent does it (with the
//! volume disks the test asks for), the CHAP secrets they use, a loop device standing in for an
//! FC LUN, and the guest console's volume lines (the test template's /etc/yun/disks.sh). Every
//! guard removes what it made on drop, also when the test panics.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use crate::guestlab::{SYSTEM_URI, must, run};
use yun_agent::hypervisor::libvirt::LibvirtHypervisor;
use yun_agent::hypervisor::{ChapSecret, DomainSpec, Hypervisor, VirtType};
use yun_agent::images::ImageCache;
use yun_agent::prepare::VmFilePreparer;
use yun_agent::storage::AttachedDisk;
use yun_fleet::{ImageSpec, VmDesired};

/// A TCG guest of the test template without NICs.
pub fn vm(image: &ImageSpec, uid: &str, user_data: Option<String>) -> VmDesired {
    VmDesired {
        image: image.clone(),
        hostname: "va".into(),
        user_data,
        ..yun_fleet::fixtures::vm_desired(uid, "va", uid)
    }
}

/// The hypervisor under test, plus every domain and secret the test made through it: on drop
/// the domains are destroyed and undefined, then the secrets removed.
pub struct Lab {
    pub hv: LibvirtHypervisor,
    preparer: VmFilePreparer,
    domains: Vec<String>,
    secrets: Vec<String>,
}

impl Lab {
    pub fn new(state: &Path) -> Lab {
        Lab {
            hv: LibvirtHypervisor::connect(SYSTEM_URI).unwrap(),
            preparer: VmFilePreparer::new(
                ImageCache::open(state.join("images")).unwrap(),
                state.join("vms"),
            ),
            domains: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// Prepares (overlay, seed) and defines `vm` with `disks` attached cold; not started.
    pub fn define(&mut self, vm: &VmDesired, disks: Vec<AttachedDisk>) -> DomainSpec {
        let mut spec = self.preparer.prepare(vm, VirtType::Qemu).unwrap();
        spec.disks = disks;
        self.domains.push(spec.name.clone());
        self.hv.define(&spec).unwrap();
        spec
    }

    /// Defines or updates a CHAP secret, removed again on drop.
    pub fn set_secret(&mut self, secret: &ChapSecret) {
        if !self.secrets.contains(&secret.usage) {
            self.secrets.push(secret.usage.clone());
        }
        self.hv.set_chap_secret(secret).unwrap();
    }

    /// `virsh dumpxml` of the domain, live or (`inactive`) persistent.
    pub fn dumpxml(&self, name: &str, inactive: bool) -> String {
        let mut args = vec!["virsh", "-c", SYSTEM_URI, "dumpxml", name];
        if inactive {
            args.push("--inactive");
        }
        must(&args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.domains {
            let _ = self.hv.destroy(name);
            let _ = self.hv.undefine(name);
        }
        for usage in &self.secrets {
            let _ = self.hv.remove_chap_secret(usage);
        }
    }
}

/// A loop device over a sparse file, detached on drop.
#[derive(Debug)]
pub struct LoopDevice(pub PathBuf);

impl LoopDevice {
    pub fn new(file: &Path, size_bytes: u64) -> LoopDevice {
        std::fs::File::create(file)
            .unwrap()
            .set_len(size_bytes)
            .unwrap();
        let dev = must(&["losetup", "--find", "--show", file.to_str().unwrap()]);
        LoopDevice(PathBuf::from(dev.trim()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = run(&["losetup", "-d", self.0.to_str().unwrap_or_default()]);
    }
}

/// One `YUN-DISK <dev> serial=<serial> bytes=<n> ro=<0|1>` line of a console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDisk {
    pub dev: String,
    pub serial: String,
    pub bytes: u64,
    pub read_only: bool,
}

fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.find(prefix).map(|i| &line[i + prefix.len()..])
}

/// Every `YUN-DISK` line of the console, in order.
pub fn disk_lines(console: &str) -> Vec<GuestDisk> {
    console
        .lines()
        .filter_map(|l| {
            let mut words = after(l, "YUN-DISK ")?.split_whitespace();
            let dev = words.next()?.to_owned();
            let serial = words.next()?.strip_prefix("serial=")?.to_owned();
            let bytes = words.next()?.strip_prefix("bytes=")?.parse().ok()?;
            let read_only = words.next()?.strip_prefix("ro=")? == "1";
            Some(GuestDisk {
                dev,
                serial,
                bytes,
                read_only,
            })
        })
        .collect()
}

/// The `YUN-DISK` lines for `serial`.
pub fn disk_lines_for(console: &str, serial: &str) -> Vec<GuestDisk> {
    disk_lines(console)
        .into_iter()
        .filter(|d| d.serial == serial)
        .collect()
}

/// How many `YUN-DISK-GONE <dev> serial=<serial>` lines the console has.
pub fn gone_count(console: &str, serial: &str) -> usize {
    let want = format!("serial={serial}");
    console
        .lines()
        .filter_map(|l| after(l, "YUN-DISK-GONE "))
        .filter(|rest| rest.split_whitespace().nth(1) == Some(want.as_str()))
        .count()
}

/// The texts of the `<tag> <serial> <text>` lines (`YUN-VOLUME-DATA`, `YUN-VOLUME-WROTE`).
pub fn volume_texts(console: &str, tag: &str, serial: &str) -> Vec<String> {
    let prefix = format!("{tag} {serial}");
    console
        .lines()
        .filter_map(|l| after(l, &prefix))
        .filter(|rest| rest.is_empty() || rest.starts_with(' '))
        .map(|rest| rest.strip_prefix(' ').unwrap_or(rest).trim_end().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "boot\n\
        YUN-GUEST-READY instance-id=x hostname=va marker=\n\
        / # \n\
        YUN-DISK vdc serial=aaaa bytes=1073741824 ro=0\n\
        YUN-VOLUME-DATA aaaa \n\
        YUN-DISK vdd serial=bbbb bytes=512 ro=1\n\
        YUN-VOLUME-DATA bbbb hello world\n\
        YUN-VOLUME-WROTE aaaa m-1\n\
        YUN-DISK-GONE vdc serial=aaaa\n\
        YUN-VOLUME-DATA aaaab x\n";

    #[test]
    fn console_lines_are_parsed() {
        assert_eq!(
            disk_lines_for(CONSOLE, "bbbb"),
            [GuestDisk {
                dev: "vdd".into(),
                serial: "bbbb".into(),
                bytes: 512,
                read_only: true
            }]
        );
        assert_eq!(disk_lines(CONSOLE).len(), 2);
        assert_eq!(gone_count(CONSOLE, "aaaa"), 1);
        assert_eq!(gone_count(CONSOLE, "bbbb"), 0);
        assert_eq!(volume_texts(CONSOLE, "YUN-VOLUME-DATA", "aaaa"), [""]);
        assert_eq!(
            volume_texts(CONSOLE, "YUN-VOLUME-DATA", "bbbb"),
            ["hello world"]
        );
        assert_eq!(volume_texts(CONSOLE, "YUN-VOLUME-WROTE", "aaaa"), ["m-1"]);
    }
}
