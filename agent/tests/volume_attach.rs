//! Volumes end to end on a real host: the host half of every driver (`HostVolumes::prepare`),
//! the libvirt half (`set_chap_secret`, `attach_disk`, `disks`, `detach_disk`, cold attach
//! through `DomainSpec::disks`) and what the guest sees, read off the test template's console
//! (`YUN-DISK`, `YUN-VOLUME-DATA`, `YUN-VOLUME-WROTE`, `YUN-DISK-GONE`, see images/README.md).
//!
//! One TCG guest gets a local qcow2, an iSCSI LUN behind CHAP (tgtd), a qcow2 on NFS
//! (nfs-ganesha) and an "FC LUN" (a loop device under a by-path link) hot-plugged and
//! unplugged again, writes a marker into the iSCSI LUN, and refuses a wrong CHAP password
//! without harm. A second guest gets the iSCSI LUN cold and reads the marker back.
//!
//! Needs root, libvirt on qemu:///system (`scripts/libvirt.sh up <dir>`), tgt, nfs-ganesha,
//! rpcbind and losetup. Everything it creates (domains, secrets, servers, loop device, files)
//! goes when it ends.

#![allow(clippy::unwrap_used)]

mod guestlab;
mod volumelab;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guestlab::{StateDir, console, lock_libvirt, require_libvirt, tail, wait_for};
use volumelab::{Lab, LoopDevice, disk_lines_for, gone_count, vm, volume_texts};
use yun_agent::hypervisor::{DomainDisk, DomainState, Hypervisor};
use yun_agent::storage::AttachedDisk;
use yun_agent::storage::disk_xml::{next_target_dev, serial_for};
use yun_agent::storage::driver::{HostVolumes, PreparedVolume, VolumeDriver};
use yun_fleet::{ChapRecord, Secret, VolumeRecord, VolumeSourceRecord};
use yun_testkit::{IscsiTarget, NfsServer};

/// One TCG guest booting on a busy 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// From the hot plug to the guest's 0.5 s poll noticing the disk.
const GUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A live unplug waits for the guest's ACPI handshake.
const DETACH_TIMEOUT: Duration = Duration::from_secs(60);
const IQN: &str = "iqn.2024-01.dev.yun.test:volume-attach";
const CHAP_USER: &str = "yunuser";
const CHAP_PASSWORD: &str = "volume-attach-pass-1";
const FC_WWPN: &str = "500a098280feeba5";
const MIB: u64 = 1 << 20;

/// A volume record with a UUID-shaped uid, so its serial is the uid's first 20 hex digits.
fn record(n: u8, size_gib: u32, source: VolumeSourceRecord) -> VolumeRecord {
    VolumeRecord {
        id: format!("va/vol-{n}"),
        uid: format!("{:08x}-{n:04x}-4000-8000-000000000000", std::process::id()),
        size_gib,
        read_only: false,
        source,
    }
}

/// The volume as a disk at the first free target of the domain (root vda, seed vdb).
fn disk_for(prepared: &PreparedVolume, volume: &VolumeRecord, used: &[DomainDisk]) -> AttachedDisk {
    let mut taken: Vec<String> = vec!["vda".into(), "vdb".into()];
    taken.extend(used.iter().map(|d| d.target_dev.clone()));
    AttachedDisk {
        source: prepared.source.clone(),
        target_dev: next_target_dev(&taken).unwrap(),
        serial: serial_for(&volume.uid),
        read_only: volume.read_only,
    }
}

/// Waits until the guest reported the disk with `serial` `times` times; returns the last report.
fn wait_disk(log: &Path, serial: &str, times: usize) -> volumelab::GuestDisk {
    wait_for(
        &format!("YUN-DISK serial={serial} (#{times})"),
        GUEST_TIMEOUT,
        || {
            disk_lines_for(&console(log), serial)
                .get(times - 1)
                .cloned()
        },
        || tail(&console(log), 30),
    )
}

#[test]
fn volumes_are_hot_plugged_unplugged_and_cold_attached_in_real_guests() {
    let started = Instant::now();
    let programs = [
        &IscsiTarget::PROGRAMS[..],
        &NfsServer::PROGRAMS,
        &["losetup", "qemu-img"],
    ]
    .concat();
    if !yun_testkit::have_tools(
        "volumes_are_hot_plugged_unplugged_and_cold_attached_in_real_guests",
        &programs,
    ) {
        return;
    }
    require_libvirt();
    let _lock = lock_libvirt();
    let state = StateDir::new("volume-attach");
    let Some(image) = guestlab::build_template(&state.0) else {
        return;
    };

    // Guards drop in reverse order: the domains and secrets (Lab) first, then the loop device,
    // the NFS and iSCSI servers, the files and the lock.
    let mut iscsi = IscsiTarget::start().unwrap();
    let lun_file = iscsi.add_lun(IQN, 1, "lun1.img", 64 * MIB).unwrap();
    iscsi.require_chap(IQN, CHAP_USER, CHAP_PASSWORD).unwrap();
    let nfs = NfsServer::start().unwrap();
    let nfs_file = nfs.export_path().join("vol.qcow2");
    guestlab::must(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        nfs_file.to_str().unwrap(),
        "48M",
    ]);
    // QEMU's NFS client speaks as libvirt's QEMU user, not root.
    set_mode(&nfs_file, 0o666);
    let fc_loop = LoopDevice::new(&state.0.join("fc-lun.img"), 32 * MIB);
    let dev_dir = state.0.join("dev");
    let by_path = dev_dir.join("disk/by-path");
    std::fs::create_dir_all(&by_path).unwrap();
    std::os::unix::fs::symlink(
        &fc_loop.0,
        by_path.join(format!("pci-0000:00:00.0-fc-0x{FC_WWPN}-lun-3")),
    )
    .unwrap();
    let host = HostVolumes {
        volumes_dir: state.0.join("volumes"),
        fc_disk_dir: dev_dir.join("disk"),
        fc_mapper_dir: dev_dir.join("mapper"),
        sys_block_dir: PathBuf::from("/sys/block"),
    };
    let mut lab = Lab::new(&state.0);

    let portal = iscsi.portal();
    let chap = ChapRecord::Inline {
        username: CHAP_USER.into(),
        password: Secret(CHAP_PASSWORD.into()),
    };
    let volumes = [
        record(1, 1, VolumeSourceRecord::Local {}),
        record(
            2,
            1,
            VolumeSourceRecord::Iscsi {
                portals: vec![portal],
                iqn: IQN.into(),
                lun: 1,
                chap: Some(chap),
            },
        ),
        record(
            3,
            1,
            VolumeSourceRecord::Nfs {
                server: "127.0.0.1".into(),
                export: nfs.export_path().to_str().unwrap().into(),
                path: "vol.qcow2".into(),
            },
        ),
        record(
            4,
            1,
            VolumeSourceRecord::Fc {
                wwns: vec![format!("0x{FC_WWPN}")],
                lun: 3,
            },
        ),
    ];
    let want_bytes = [1 << 30, 64 * MIB, 48 * MIB, 32 * MIB];
    let iscsi_serial = serial_for(&volumes[1].uid);
    let marker = format!("iscsi-data-{}", std::process::id());

    // --- guest A: hot plug ------------------------------------------------------------------
    let user_data = format!("#cloud-config\n# yun-volume-write: {iscsi_serial} {marker}\n");
    let a = lab.define(
        &vm(
            &image,
            &format!("va-{}-a", std::process::id()),
            Some(user_data),
        ),
        vec![],
    );
    lab.hv.start(&a.name).unwrap();
    let log_a = a.console_log.clone();
    let boot = Instant::now();
    wait_for(
        "guest A ready",
        BOOT_TIMEOUT,
        || console(&log_a).contains("YUN-GUEST-READY").then_some(()),
        || tail(&console(&log_a), 30),
    );
    eprintln!("guest A ready after {:?}", boot.elapsed());

    let mut attached = Vec::new();
    for (volume, bytes) in volumes.iter().zip(want_bytes) {
        let prepared = host.prepare(volume).unwrap();
        if let Some(secret) = &prepared.chap {
            lab.set_secret(secret);
        }
        let disk = disk_for(&prepared, volume, &lab.hv.disks(&a.name).unwrap());
        let t = Instant::now();
        lab.hv.attach_disk(&a.name, &disk).unwrap();
        let seen = wait_disk(&log_a, &disk.serial, 1);
        eprintln!(
            "{}: attached as {} in {:?}, guest sees {seen:?}",
            volume.source.driver(),
            disk.target_dev,
            t.elapsed()
        );
        assert_eq!(seen.bytes, bytes, "{}", volume.source.driver());
        assert!(!seen.read_only);
        attached.push(DomainDisk {
            serial: disk.serial.clone(),
            target_dev: disk.target_dev.clone(),
        });
        // Idempotent by serial.
        lab.hv.attach_disk(&a.name, &disk).unwrap();
    }
    assert_eq!(lab.hv.disks(&a.name).unwrap(), attached);
    let persistent = lab.dumpxml(&a.name, true);
    for d in &attached {
        assert!(
            persistent.contains(&format!("<serial>{}</serial>", d.serial)),
            "{persistent}"
        );
    }
    // The password is in the secret, never in the domain.
    assert!(!lab.dumpxml(&a.name, false).contains(CHAP_PASSWORD));

    // The guest wrote its marker through QEMU's initiator onto the target's backing file.
    wait_for(
        "YUN-VOLUME-WROTE on the iSCSI volume",
        GUEST_TIMEOUT,
        || volume_texts(&console(&log_a), "YUN-VOLUME-WROTE", &iscsi_serial).pop(),
        || tail(&console(&log_a), 30),
    );
    let head = std::fs::read(&lun_file).unwrap();
    assert!(
        head.starts_with(format!("YUNMARK:{marker}\n").as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&head[..64])
    );

    // A paused guest cannot acknowledge the unplug: the detach gives up after its timeout,
    // saying so, and the disk stays with the running guest until it can.
    let first = &attached[0];
    guestlab::must(&["virsh", "-c", guestlab::SYSTEM_URI, "suspend", &a.name]);
    let t = Instant::now();
    let err = lab
        .hv
        .detach_disk(&a.name, &first.serial, Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    eprintln!(
        "detach from a paused guest failed after {:?}: {err}",
        t.elapsed()
    );
    assert!(
        err.contains(&a.name) && err.contains("did not release") && err.contains(&first.serial),
        "{err}"
    );
    assert!(lab.hv.disks(&a.name).unwrap().contains(first));
    assert!(!lab.dumpxml(&a.name, true).contains(&first.serial));
    guestlab::must(&["virsh", "-c", guestlab::SYSTEM_URI, "resume", &a.name]);

    for d in &attached {
        let t = Instant::now();
        lab.hv
            .detach_disk(&a.name, &d.serial, DETACH_TIMEOUT)
            .unwrap();
        eprintln!(
            "detached {} ({}) in {:?}",
            d.serial,
            d.target_dev,
            t.elapsed()
        );
        wait_for(
            &format!("YUN-DISK-GONE serial={}", d.serial),
            GUEST_TIMEOUT,
            || (gone_count(&console(&log_a), &d.serial) == 1).then_some(()),
            || tail(&console(&log_a), 30),
        );
        // Absent: Ok.
        lab.hv
            .detach_disk(&a.name, &d.serial, DETACH_TIMEOUT)
            .unwrap();
    }
    assert_eq!(lab.hv.disks(&a.name).unwrap(), vec![]);
    assert!(!lab.dumpxml(&a.name, true).contains("<serial>"));

    // A wrong CHAP password: the attach fails naming the domain, nothing changes.
    let prepared = host.prepare(&volumes[1]).unwrap();
    let mut wrong = prepared.chap.clone().unwrap();
    wrong.password = "not-the-password".into();
    let before = secret_uuids(&wrong.usage);
    lab.set_secret(&wrong);
    // Redefined in place: still one secret for the usage, under the same UUID.
    assert_eq!(secret_uuids(&wrong.usage), before);
    assert_eq!(before.len(), 1);
    let disk = disk_for(&prepared, &volumes[1], &[]);
    let err = lab.hv.attach_disk(&a.name, &disk).unwrap_err().to_string();
    eprintln!("wrong CHAP password: {err}");
    assert!(
        err.contains(&a.name) && err.contains("attach disk"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    let info = lab.hv.lookup(&a.name).unwrap().unwrap();
    assert_eq!(info.state, DomainState::Running);
    assert_eq!(lab.hv.disks(&a.name).unwrap(), vec![]);
    assert!(!lab.dumpxml(&a.name, true).contains("<serial>"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(disk_lines_for(&console(&log_a), &iscsi_serial).len(), 1);

    // --- guest B: cold attach of the same LUN, the marker survives ---------------------------
    lab.set_secret(prepared.chap.as_ref().unwrap());
    lab.hv.destroy(&a.name).unwrap();
    let b = lab.define(
        &vm(&image, &format!("va-{}-b", std::process::id()), None),
        vec![disk.clone()],
    );
    let cold = vec![DomainDisk {
        serial: disk.serial.clone(),
        target_dev: disk.target_dev.clone(),
    }];
    assert_eq!(lab.hv.disks(&b.name).unwrap(), cold, "defined, not running");
    lab.hv.start(&b.name).unwrap();
    let seen = wait_for(
        "guest B reading the iSCSI volume",
        BOOT_TIMEOUT,
        || volume_texts(&console(&b.console_log), "YUN-VOLUME-DATA", &iscsi_serial).pop(),
        || tail(&console(&b.console_log), 30),
    );
    assert_eq!(seen, marker);
    assert_eq!(lab.hv.disks(&b.name).unwrap(), cold, "running");
    eprintln!("volume_attach took {:?}", started.elapsed());
}

/// UUIDs of the libvirt secrets with this usage name (`virsh secret-list`).
fn secret_uuids(usage: &str) -> Vec<String> {
    guestlab::must(&["virsh", "-c", guestlab::SYSTEM_URI, "secret-list"])
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == usage))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
