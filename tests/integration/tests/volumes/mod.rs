//! Helpers of `volume_attach.rs`: the Volumes it creates, what their guests print, their
//! statuses and claims on the fleet bus, and the libvirt secrets left to clean up.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use yun_integration::{Cluster, etcd_get_json, etcd_history};
use yun_testkit::wait_until;

/// From a hot plug (or unplug) to the guest's 0.5 s disk poll printing it.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// From a manifest change to the Volume status the controller writes.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// One Volume as the controller minted it.
#[derive(Debug, Clone)]
pub struct Vol {
    pub name: &'static str,
    pub uid: String,
    pub serial: String,
}

impl Vol {
    pub fn claim_key(&self) -> String {
        format!("/yun/v1/volumes/{}/claim", self.uid)
    }
}

/// Removes the libvirt secrets the agent defined for our iSCSI volumes (the agent would on a
/// VM's removal, but the cluster kills it first). Declared before the cluster: it runs after.
pub struct ChapSecrets(pub Vec<String>);

impl Drop for ChapSecrets {
    fn drop(&mut self) {
        let virsh = |args: &[&str]| {
            Command::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
        };
        let Some(list) = virsh(&["secret-list"]) else {
            return;
        };
        // `<uuid>  iscsi yun-chap-<volume uid>`; virsh undefines by UUID only.
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [uuid, "iscsi", usage] = words.as_slice()
                && self.0.iter().any(|uid| *usage == format!("yun-chap-{uid}"))
            {
                let _ = virsh(&["secret-undefine", uuid]);
            }
        }
    }
}

pub fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Complete console lines of guest `uid` that start with `tag` and mention `serial`.
pub fn console_lines(cluster: &Cluster, uid: &str, tag: &str, serial: &str) -> Vec<String> {
    let console = cluster.console(uid);
    let complete = console.rsplit_once('\n').map_or("", |(done, _)| done);
    let field = format!("serial={serial}");
    complete
        .lines()
        .map(str::trim)
        .filter(|l| l.split_whitespace().next() == Some(tag))
        .filter(|l| l.split_whitespace().any(|w| w == serial || w == field))
        .map(str::to_owned)
        .collect()
}

pub fn wait_console(cluster: &Cluster, uid: &str, tag: &str, serial: &str) -> String {
    let mut found = Vec::new();
    let waited = wait_until(
        &format!("{tag} {serial} on the console"),
        GUEST_TIMEOUT,
        || {
            found = console_lines(cluster, uid, tag, serial);
            !found.is_empty()
        },
    );
    if let Err(e) = waited {
        panic!(
            "{e}\n--- console ---\n{}\n{}",
            cluster.console(uid),
            cluster.diagnostics()
        );
    }
    found.remove(0)
}

pub fn volume_status(cluster: &Cluster, vol: &Vol) -> Value {
    cluster
        .volume_record(vol.name)
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

/// Waits until the status of `vol` satisfies `ok`; returns it.
pub fn wait_volume(cluster: &Cluster, vol: &Vol, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let waited = wait_until(
        &format!("Volume {} {what}", vol.name),
        STATUS_TIMEOUT,
        || ok(&volume_status(cluster, vol)),
    );
    if let Err(e) = waited {
        panic!(
            "{e}; last status: {}\n{}",
            volume_status(cluster, vol),
            cluster.diagnostics()
        );
    }
    volume_status(cluster, vol)
}

pub fn attached_to(cluster: &Cluster, vol: &Vol, vm: &str) -> Value {
    let host = cluster.host.clone();
    wait_volume(cluster, vol, &format!("Attached to {vm}"), |s| {
        s["phase"] == "Attached" && s["vm"] == vm && s["host"] == host.as_str()
    })
}

/// `namespace/name` of every holder of the claim (empty when there is no claim).
pub fn holders(claim: Option<&Value>) -> Vec<String> {
    claim
        .and_then(|c| c["holders"].as_array())
        .map(|hs| {
            hs.iter()
                .map(|h| h["vm"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn claim_holders(cluster: &Cluster, vol: &Vol) -> Vec<String> {
    holders(etcd_get_json(&cluster.etcd.endpoint(), &vol.claim_key()).as_ref())
}

pub fn condition(vm_status: &Value, kind: &str) -> Value {
    vm_status["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until VM `name` is refused `vol` because `holder` has it; returns that condition.
pub fn wait_held(cluster: &Cluster, name: &str, vol: &Vol, holder: &str) -> Value {
    let (id, by) = (
        format!("default/{}", vol.name),
        format!("VM default/{holder}"),
    );
    let held = |s: &Value| {
        s["status"] == "False"
            && s["reason"] == "VolumeInUse"
            && s["message"]
                .as_str()
                .is_some_and(|m| m.contains(&id) && m.contains(&by))
    };
    let waited = wait_until(&format!("{name} held for {id}"), STATUS_TIMEOUT, || {
        cluster
            .vm_status(name)
            .is_some_and(|v| held(&condition(&v, "VolumesReady")))
    });
    if let Err(e) = waited {
        panic!(
            "{e}; status: {:?}\n{}",
            cluster.vm_status(name),
            cluster.diagnostics()
        );
    }
    condition(&cluster.vm_status(name).expect("status"), "VolumesReady")
}

pub fn step(started: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// `vol` moved from vm-a to vm-b one writer at a time: no revision of its claim had two
/// holders, vm-a left it before vm-b came, and the Volume status showed `Detached` in between.
pub fn check_moved(cluster: &Cluster, vol: &Vol) {
    let endpoint = cluster.etcd.endpoint();
    let claims: Vec<Vec<String>> = etcd_history(&endpoint, &vol.claim_key())
        .iter()
        .map(|(_, c)| holders(c.as_ref()))
        .collect();
    assert!(
        claims.iter().all(|h| h.len() <= 1),
        "{}: one holder at a time: {claims:?}",
        vol.name
    );
    let last_a = claims.iter().rposition(|h| h == &["default/vm-a"]);
    let first_b = claims.iter().position(|h| h == &["default/vm-b"]);
    assert!(
        matches!((last_a, first_b), (Some(a), Some(b)) if a < b),
        "{}: vm-a held it, then vm-b: {claims:?}",
        vol.name
    );
    let statuses: Vec<(String, String)> =
        etcd_history(&endpoint, &yun_integration::store_key("volumes", vol.name))
            .into_iter()
            .filter_map(|(_, r)| r)
            .map(|r| {
                let s = &r["status"];
                (
                    s["phase"].as_str().unwrap_or_default().to_owned(),
                    s["vm"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
    let last_a = statuses.iter().rposition(|s| s.1 == "vm-a");
    let first_b = statuses.iter().position(|s| s.1 == "vm-b");
    let detached_between = |a: usize, b: usize| statuses[a..b].iter().any(|s| s.0 == "Detached");
    assert!(
        matches!((last_a, first_b), (Some(a), Some(b)) if a < b && detached_between(a, b)),
        "{}: on vm-a, then Detached, only then vm-b: {statuses:?}",
        vol.name
    );
}
