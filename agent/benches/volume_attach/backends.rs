//! The storage behind the volumes: local qcow2s the agent creates itself, one file-backed LUN
//! behind CHAP on a real iSCSI target (tgtd), and qcow2 files in a real NFS export
//! (nfs-ganesha). Each round attaches a volume with a fresh uid, so each round's disk has its
//! own serial (and, for iSCSI, its own libvirt secret), as a newly attached volume does.

use anyhow::{Context, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use yun_agent::storage::driver::chap_secret_usage;
use yun_fleet::{ChapRecord, Secret, VolumeRecord, VolumeSourceRecord};
use yun_testkit::{IscsiTarget, NfsServer};

const IQN: &str = "iqn.2024-01.dev.yun.bench:volume-attach";
const LUN: u32 = 1;
const LUN_BYTES: u64 = 64 << 20;
const CHAP_USER: &str = "yunbench";
const CHAP_PASSWORD: &str = "volume-attach-bench-1";
/// Size of each qcow2 on the NFS export (virtual; the file itself stays small).
const NFS_FILE_SIZE: &str = "48M";

/// The volume drivers measured, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Local,
    Iscsi,
    Nfs,
}

impl Driver {
    pub const ALL: [Driver; 3] = [Driver::Local, Driver::Iscsi, Driver::Nfs];

    /// The summary key suffix, and `VolumeSourceRecord::driver`.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Local => "local",
            Driver::Iscsi => "iscsi",
            Driver::Nfs => "nfs",
        }
    }

    /// One hex byte in the volume uid, so the agent's and the baseline's volumes never share
    /// a serial.
    fn code(self, baseline: bool) -> u8 {
        let base = match self {
            Driver::Local => 1,
            Driver::Iscsi => 2,
            Driver::Nfs => 3,
        };
        if baseline { base | 0x10 } else { base }
    }
}

/// A UUID-shaped volume uid whose serial (its first 20 hex digits, see `serial_for`) holds
/// the pid, the driver and the round.
pub fn volume_uid(driver: Driver, baseline: bool, round: usize) -> String {
    format!(
        "{:08x}-{:02x}{:02x}-4000-8000-000000000000",
        std::process::id(),
        driver.code(baseline),
        round % 256
    )
}

/// The running iSCSI target and NFS server; stopped (and their files removed) on drop.
#[derive(Debug)]
pub struct Backends {
    iscsi: IscsiTarget,
    nfs: NfsServer,
}

impl Backends {
    /// Absolute paths of the programs the servers need.
    pub fn missing_programs() -> Vec<&'static str> {
        let mut programs: Vec<&str> = IscsiTarget::PROGRAMS.to_vec();
        programs.extend(NfsServer::PROGRAMS);
        programs.push("/usr/bin/qemu-img");
        programs
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect()
    }

    /// Starts tgtd with one LUN behind CHAP, and ganesha (waiting for another NfsServer on
    /// this machine to go away first).
    pub fn start() -> anyhow::Result<Backends> {
        let mut iscsi = IscsiTarget::start().context("start tgtd")?;
        iscsi.add_lun(IQN, LUN, "lun1.img", LUN_BYTES)?;
        iscsi.require_chap(IQN, CHAP_USER, CHAP_PASSWORD)?;
        let nfs = NfsServer::start().context("start nfs-ganesha")?;
        Ok(Backends { iscsi, nfs })
    }

    /// The file name on the export of the NFS volume with this uid.
    fn nfs_file(uid: &str) -> String {
        format!("vol-{uid}.qcow2")
    }

    /// Creates the qcow2 of an NFS volume in the export, readable and writable by libvirt's
    /// QEMU user (QEMU's NFS client speaks as that user, not as root).
    pub fn create_nfs_file(&self, uid: &str) -> anyhow::Result<()> {
        let path = self.nfs.export_path().join(Self::nfs_file(uid));
        qemu_img_create(&path, NFS_FILE_SIZE)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .with_context(|| format!("chmod {}", path.display()))
    }

    /// The volume record the controller would publish for a volume of `driver`.
    pub fn record(&self, driver: Driver, uid: String) -> anyhow::Result<VolumeRecord> {
        let source = match driver {
            Driver::Local => VolumeSourceRecord::Local {},
            Driver::Iscsi => VolumeSourceRecord::Iscsi {
                portals: vec![self.iscsi.portal()],
                iqn: IQN.into(),
                lun: LUN,
                chap: Some(ChapRecord::Inline {
                    username: CHAP_USER.into(),
                    password: Secret(CHAP_PASSWORD.into()),
                }),
            },
            Driver::Nfs => VolumeSourceRecord::Nfs {
                server: "127.0.0.1".into(),
                export: self
                    .nfs
                    .export_path()
                    .to_str()
                    .context("NFS export path is not UTF-8")?
                    .into(),
                path: Self::nfs_file(&uid),
            },
        };
        Ok(VolumeRecord {
            id: format!("bench/{}-{uid}", driver.name()),
            uid,
            size_gib: 1,
            read_only: false,
            source,
        })
    }

    /// The usage names of the CHAP secrets the agent defines for these volumes.
    pub fn secret_usages<'a>(records: impl IntoIterator<Item = &'a VolumeRecord>) -> Vec<String> {
        records
            .into_iter()
            .filter(|r| matches!(r.source, VolumeSourceRecord::Iscsi { .. }))
            .map(|r| chap_secret_usage(&r.uid))
            .collect()
    }
}

/// `qemu-img create -q -f qcow2 <path> <size>`.
pub fn qemu_img_create(path: &Path, size: &str) -> anyhow::Result<()> {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .stdin(Stdio::null())
        .output()
        .context("run qemu-img")?;
    if !out.status.success() {
        bail!(
            "qemu-img create {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
