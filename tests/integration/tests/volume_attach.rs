//! Volumes end to end through the controller (bootstrap mode) and the agent, with real storage
//! servers on loopback (tgtd with CHAP, nfs-ganesha) and what the guest sees on its console
//! (`YUN-DISK`, `YUN-VOLUME-DATA`, `YUN-VOLUME-WROTE`, `YUN-DISK-GONE`).
//!
//! One cluster, two guests, in order:
//! 1. VM A starts with an iSCSI (CHAP) volume attached cold and writes a marker into it, while
//!    VM B, which lists the same ReadWriteOnce volume, is held: not started, `VolumesReady=False`
//!    naming A, the claim with A as its only holder.
//! 2. A local and an NFS volume are hot-plugged into the running A.
//! 3. An iSCSI volume with a wrong CHAP password goes `Failed`; A and its other volumes carry on.
//! 4. The iSCSI volume leaves A (hot unplug, `Detached`); B then starts with it and reads A's
//!    marker. etcd's history shows the claim never had two holders. B also lists the wrong-CHAP
//!    volume, so QEMU cannot start with both: B starts without them and gets them hot.
//! 5. The agent is killed while it attaches a volume to A; B asks for that volume meanwhile and
//!    is refused; the restarted agent finishes the attach.
//! 6. B drops every volume: they detach, and B's `VolumesReady` condition goes with them.
//!
//! Needs root, libvirt on qemu:///system, tgt, nfs-ganesha and rpcbind (scripts/install-deps.sh);
//! prints SKIPPED and passes without them. About 30 s on a 2-core TCG host.

#![allow(clippy::unwrap_used)]

mod volumes;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use volumes::{
    ChapSecrets, STATUS_TIMEOUT, Vol, attached_to, check_moved, claim_holders, condition,
    console_lines, holders, private_file, step, volume_status, wait_console, wait_held,
    wait_volume,
};
use yun_agent::storage::disk_xml::serial_for;
use yun_integration::{
    BOOT_TIMEOUT, Cluster, domain_exists, etcd_get_json, etcd_history, etcd_wait_for,
};
use yun_testkit::{IscsiTarget, NfsServer, wait_until};

const IQN: &str = "iqn.2024-01.dev.yun.test:it-volumes";
const CHAP_USER: &str = "yunit";
const CHAP_PASSWORD: &str = "it-volumes-pass-1";
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DATA_LUN_BYTES: u64 = 64 * MIB;
const NFS_FILE_BYTES: u64 = 32 * MIB;
const NFS_FILE: &str = "nfs-vol.raw";
const NFS_MARKER: &str = "written-on-the-nfs-server";
const MARKER: &str = "moved-with-the-volume-7";

fn volumes_yaml(iscsi: &IscsiTarget, nfs: &NfsServer, good: &Path, bad: &Path) -> String {
    let iscsi_spec = |lun: u32, chap: &Path| {
        format!(
            "  iscsi:\n    portals: [\"{}\"]\n    iqn: {IQN}\n    lun: {lun}\n    chap: {{file: {}}}\n",
            iscsi.portal(),
            chap.display()
        )
    };
    let nfs_spec = format!(
        "  nfs:\n    server: 127.0.0.1\n    export: {}\n    path: {NFS_FILE}\n",
        nfs.export_path().display()
    );
    [
        ("data", iscsi_spec(1, good)),
        ("badchap", iscsi_spec(2, bad)),
        ("nfsvol", nfs_spec),
        ("scratch", "  local: {}\n".to_owned()),
        ("spare", "  local: {}\n".to_owned()),
    ]
    .iter()
    .map(|(name, driver)| {
        format!(
            "apiVersion: yun.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: {name}\n  \
             namespace: default\nspec:\n  sizeGiB: 1\n{driver}"
        )
    })
    .collect::<Vec<_>>()
    .join("---\n")
}

/// A VM listing `volumes`; its user data writes `MARKER` into the volume with serial `writes`.
fn vm_yaml(name: &str, volumes: &[&Vol], writes: Option<&Vol>) -> String {
    let mut text = format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n  \
         namespace: default\nspec:\n  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  diskGiB: 1\n  \
         userData: |\n    #cloud-config\n    yun-marker: {name}\n"
    );
    if let Some(v) = writes {
        text.push_str(&format!("    # yun-volume-write: {} {MARKER}\n", v.serial));
    }
    if !volumes.is_empty() {
        text.push_str("  volumes:\n");
        for v in volumes {
            text.push_str(&format!("    - volume: {}\n", v.name));
        }
    }
    text
}

fn apply_vm(cluster: &Cluster, name: &str, volumes: &[&Vol], writes: Option<&Vol>) {
    cluster.apply_manifest(&format!("vm-{name}.yaml"), &vm_yaml(name, volumes, writes));
}

#[test]
fn volumes_attach_move_and_keep_a_single_writer() {
    let started = Instant::now();
    let programs = [&IscsiTarget::PROGRAMS[..], &NfsServer::PROGRAMS].concat();
    if !yun_testkit::have_tools("volumes_attach_move_and_keep_a_single_writer", &programs) {
        return;
    }
    // Servers first: they are dropped last, after the guests that use them.
    let mut iscsi = IscsiTarget::start().unwrap();
    let data_lun = iscsi.add_lun(IQN, 1, "data.img", DATA_LUN_BYTES).unwrap();
    iscsi.add_lun(IQN, 2, "bad.img", 16 * MIB).unwrap();
    iscsi.require_chap(IQN, CHAP_USER, CHAP_PASSWORD).unwrap();
    // Declared before the cluster so it is dropped after it, but started after it: the
    // libvirt test lock (taken by Cluster::start) always comes before the NFS server's lock,
    // in this order in every test binary, or two of them running at once deadlock.
    let nfs: NfsServer;
    let chap_dir = tempfile::Builder::new()
        .prefix("yun-it-chap-")
        .tempdir()
        .unwrap();
    let good_chap = chap_dir.path().join("good");
    let bad_chap = chap_dir.path().join("bad");
    private_file(&good_chap, &format!("{CHAP_USER}:{CHAP_PASSWORD}\n"));
    private_file(&bad_chap, &format!("{CHAP_USER}:not-the-password\n"));
    step(started, "storage servers up");
    let mut secrets = ChapSecrets(Vec::new());
    let mut cluster = Cluster::start();
    step(started, "cluster up");
    nfs = NfsServer::start().unwrap();
    let nfs_file = nfs.export_path().join(NFS_FILE);
    std::fs::write(&nfs_file, format!("YUNMARK:{NFS_MARKER}\n")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&nfs_file)
        .unwrap()
        .set_len(NFS_FILE_BYTES)
        .unwrap();
    // QEMU's NFS client speaks as libvirt's QEMU user, not root.
    std::fs::set_permissions(&nfs_file, std::fs::Permissions::from_mode(0o666)).unwrap();
    step(started, "NFS server up");

    cluster.apply_manifest(
        "volumes.yaml",
        &volumes_yaml(&iscsi, &nfs, &good_chap, &bad_chap),
    );
    let vol = |name: &'static str| {
        let mut uid = None;
        let minted = wait_until(&format!("Volume {name} has a uid"), STATUS_TIMEOUT, || {
            uid = cluster
                .volume_record(name)
                .and_then(|r| r["metadata"]["uid"].as_str().map(str::to_owned));
            uid.is_some()
        });
        assert!(minted.is_ok(), "{minted:?}\n{}", cluster.diagnostics());
        let uid = uid.expect("checked above");
        Vol {
            name,
            serial: serial_for(&uid),
            uid,
        }
    };
    let (data, badchap, nfsvol, scratch, spare) = (
        vol("data"),
        vol("badchap"),
        vol("nfsvol"),
        vol("scratch"),
        vol("spare"),
    );
    secrets.0 = vec![data.uid.clone(), badchap.uid.clone()];
    for v in [&data, &badchap, &nfsvol, &scratch, &spare] {
        wait_volume(&cluster, v, "Detached", |s| s["phase"] == "Detached");
    }

    // 1. A starts with `data` (cold attach) and writes the marker; B waits for it.
    apply_vm(&cluster, "vm-a", &[&data], Some(&data));
    let granted = etcd_wait_for(
        &cluster.etcd.endpoint(),
        &data.claim_key(),
        STATUS_TIMEOUT,
        |c| holders(Some(c)) == ["default/vm-a"],
    );
    assert!(
        granted.is_some(),
        "data granted to vm-a\n{}",
        cluster.diagnostics()
    );
    apply_vm(&cluster, "vm-b", &[&data], None);
    let a = cluster.wait_running("vm-a", BOOT_TIMEOUT);
    step(started, "vm-a running");
    let disk = wait_console(&cluster, &a.uid, "YUN-DISK", &data.serial);
    assert!(
        disk.contains(&format!("bytes={DATA_LUN_BYTES} ro=0")),
        "the guest sees the whole LUN, writable: {disk}"
    );
    wait_console(&cluster, &a.uid, "YUN-VOLUME-WROTE", &data.serial);
    attached_to(&cluster, &data, "vm-a");
    step(started, "data attached to vm-a at start, marker written");

    let held = wait_held(&cluster, "vm-b", &data, "vm-a");
    let b_status = cluster.vm_status("vm-b").expect("vm-b status");
    let b_uid = b_status["uid"].as_str().expect("vm-b uid").to_owned();
    assert_ne!(b_status["status"]["phase"], "Running", "{b_status}");
    assert!(
        !domain_exists(&format!("yun-{b_uid}")),
        "vm-b must not be started while vm-a holds its volume: {held}"
    );
    assert_eq!(claim_holders(&cluster, &data), ["default/vm-a"]);
    step(started, "vm-b held: single writer");

    // 2. Hot attach: a local and an NFS volume join the running A.
    apply_vm(&cluster, "vm-a", &[&data, &scratch, &nfsvol], Some(&data));
    let disk = wait_console(&cluster, &a.uid, "YUN-DISK", &scratch.serial);
    assert!(disk.contains(&format!("bytes={GIB} ro=0")), "{disk}");
    let disk = wait_console(&cluster, &a.uid, "YUN-DISK", &nfsvol.serial);
    assert!(
        disk.contains(&format!("bytes={NFS_FILE_BYTES} ro=0")),
        "{disk}"
    );
    let seen = wait_console(&cluster, &a.uid, "YUN-VOLUME-DATA", &nfsvol.serial);
    assert_eq!(
        seen,
        format!("YUN-VOLUME-DATA {} {NFS_MARKER}", nfsvol.serial)
    );
    attached_to(&cluster, &scratch, "vm-a");
    attached_to(&cluster, &nfsvol, "vm-a");
    step(started, "local and NFS volumes hot-plugged");

    // 3. A wrong CHAP password: the volume fails, nothing else does.
    apply_vm(
        &cluster,
        "vm-a",
        &[&data, &scratch, &nfsvol, &badchap],
        Some(&data),
    );
    let failed = wait_volume(&cluster, &badchap, "Failed", |s| s["phase"] == "Failed");
    let message = failed["message"].as_str().unwrap_or_default().to_owned();
    eprintln!("badchap Failed: {message}");
    assert!(
        message.contains("vm-a") && message.contains(&cluster.host),
        "the failure names the VM and host: {failed}"
    );
    let lower = message.to_lowercase();
    assert!(
        ["auth", "login", "log in", "chap"]
            .iter()
            .any(|w| lower.contains(w)),
        "the failure says the iSCSI login was refused: {failed}"
    );
    let a_status = cluster.vm_status("vm-a").expect("vm-a status");
    assert_eq!(a_status["status"]["phase"], "Running", "{a_status}");
    for v in [&data, &scratch, &nfsvol] {
        assert_eq!(
            volume_status(&cluster, v)["phase"],
            "Attached",
            "{}",
            v.name
        );
        assert!(
            console_lines(&cluster, &a.uid, "YUN-DISK-GONE", &v.serial).is_empty(),
            "{} stays in the guest",
            v.name
        );
    }
    assert!(console_lines(&cluster, &a.uid, "YUN-DISK", &badchap.serial).is_empty());
    step(started, "wrong CHAP refused without harm");

    // 4. `data` moves: A lets go (hot unplug), then B starts with it and reads A's marker. B
    // also asks for the wrong-CHAP volume: QEMU cannot start with it, so B starts without
    // volumes and gets them hot, `data` attached and `badchap` Failed.
    apply_vm(&cluster, "vm-b", &[&data, &badchap], None);
    wait_held(&cluster, "vm-b", &data, "vm-a");
    apply_vm(&cluster, "vm-a", &[&scratch, &nfsvol], Some(&data));
    wait_console(&cluster, &a.uid, "YUN-DISK-GONE", &data.serial);
    let b = cluster.wait_running("vm-b", BOOT_TIMEOUT);
    assert_eq!(b.uid, b_uid);
    step(started, "vm-b running");
    let seen = wait_console(&cluster, &b.uid, "YUN-VOLUME-DATA", &data.serial);
    assert_eq!(seen, format!("YUN-VOLUME-DATA {} {MARKER}", data.serial));
    attached_to(&cluster, &data, "vm-b");
    let mut head = vec![0u8; MARKER.len() + 9];
    std::io::Read::read_exact(&mut std::fs::File::open(&data_lun).unwrap(), &mut head).unwrap();
    assert_eq!(head, format!("YUNMARK:{MARKER}\n").as_bytes(), "on the LUN");
    wait_volume(&cluster, &badchap, "Failed on vm-b", |s| {
        s["phase"] == "Failed" && s["vm"] == "vm-b"
    });
    for v in [&data, &badchap] {
        check_moved(&cluster, v);
    }
    step(started, "data moved from vm-a to vm-b");

    // 5. The agent dies in the middle of attaching `spare` to A.
    agent_killed_mid_attach(
        &mut cluster,
        &a.uid,
        [&data, &scratch, &nfsvol, &badchap],
        &spare,
    );
    step(started, "attach finished by the restarted agent");

    // 6. B lets go of every volume: the disk leaves, the claim goes, and so does the condition.
    apply_vm(&cluster, "vm-b", &[], None);
    wait_console(&cluster, &b.uid, "YUN-DISK-GONE", &data.serial);
    for v in [&data, &badchap] {
        wait_volume(&cluster, v, "Detached", |s| s["phase"] == "Detached");
    }
    assert_eq!(
        etcd_get_json(&cluster.etcd.endpoint(), &data.claim_key()),
        None,
        "a released iSCSI volume has no claim"
    );
    let no_condition = wait_until("vm-b drops VolumesReady", STATUS_TIMEOUT, || {
        cluster
            .vm_status("vm-b")
            .is_some_and(|v| condition(&v, "VolumesReady").is_null())
    });
    assert!(no_condition.is_ok(), "{:?}", cluster.vm_status("vm-b"));
    let b_status = cluster.vm_status("vm-b").expect("vm-b status");
    assert_eq!(b_status["status"]["phase"], "Running", "{b_status}");
    step(started, "vm-b released its volumes");

    // The audit trail holds each grant of the moved volume, in order: A, then B.
    let export = cluster.audit(&["export"]);
    assert!(export.status.success(), "{export:?}");
    let granted_to: Vec<String> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|r| r["action"] == "volume.grant" && r["object"] == "Volume default/data")
        .map(|r| r["details"]["vm"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(granted_to, ["default/vm-a", "default/vm-b"]);
}

/// `[data, scratch, nfsvol, badchap]`: what A keeps (the first three) and B has (data, badchap).
fn agent_killed_mid_attach(cluster: &mut Cluster, a_uid: &str, vols: [&Vol; 4], spare: &Vol) {
    let [data, scratch, nfsvol, badchap] = vols;
    let endpoint = cluster.etcd.endpoint();
    let record_key = format!(
        "/yun/v1/hosts/{}/report/vms/{a_uid}/volumes/{}",
        cluster.host, spare.uid
    );
    apply_vm(cluster, "vm-a", &[scratch, nfsvol, spare], Some(data));
    let attaching = etcd_wait_for(&endpoint, &record_key, STATUS_TIMEOUT, |r| {
        r["phase"] == "Attaching"
    });
    cluster.kill_agent();
    let killed_at = Instant::now();
    assert!(
        attaching.is_some(),
        "the agent never recorded Attaching for spare\n{}",
        cluster.diagnostics()
    );
    let record = etcd_get_json(&endpoint, &record_key);
    assert_eq!(
        record.as_ref().map(|r| r["phase"].clone()),
        Some(Value::from("Attaching")),
        "the kill came mid-attach"
    );
    let status = volume_status(cluster, spare);
    assert_ne!(status["phase"], "Attached", "{status}");

    // B asks for `spare` while A's host has not confirmed anything: refused.
    apply_vm(cluster, "vm-b", &[data, badchap, spare], None);
    wait_held(cluster, "vm-b", spare, "vm-a");
    let still = wait_until("vm-b never granted spare", Duration::from_secs(3), || {
        claim_holders(cluster, spare) != ["default/vm-a"]
    });
    assert!(
        still.is_err(),
        "claim of spare: {:?}",
        claim_holders(cluster, spare)
    );
    eprintln!(
        "agent down for {:.1}s before restart",
        killed_at.elapsed().as_secs_f64()
    );

    cluster.start_agent();
    attached_to(cluster, spare, "vm-a");
    wait_console(cluster, a_uid, "YUN-DISK", &spare.serial);
    assert_eq!(
        console_lines(cluster, a_uid, "YUN-DISK", &spare.serial).len(),
        1,
        "spare appeared once in the guest"
    );
    assert_eq!(claim_holders(cluster, spare), ["default/vm-a"]);
    let b = cluster.vm_status("vm-b").expect("vm-b status");
    assert_eq!(b["status"]["phase"], "Running", "{b}");
    assert_eq!(condition(&b, "VolumesReady")["status"], "False", "{b}");
    let history: Vec<Vec<String>> = etcd_history(&endpoint, &spare.claim_key())
        .iter()
        .map(|(_, c)| holders(c.as_ref()))
        .collect();
    assert!(
        history.iter().all(|h| h == &["default/vm-a"]),
        "spare was only ever held by vm-a: {history:?}"
    );
}
