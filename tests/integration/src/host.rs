//! Small probes of this machine: free ports, plain HTTP GETs, libvirt domains via virsh.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const LIBVIRT_URI: &str = "qemu:///system";

/// 8 random lowercase hex characters (for host names and directories unique per test).
pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A loopback port that was free a moment ago (the listener is dropped before returning).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// `GET path` over HTTP/1.0; returns (status code, body), or `None` if nothing answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// `virsh ARGS`' stdout when it succeeded; `None` when virsh said no (e.g. no such domain).
/// A virsh that cannot be run at all fails the test: "no domain" must never be read from it.
fn virsh(args: &[&str]) -> Option<String> {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(LIBVIRT_URI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            let why = yun_testkit::require_tool("virsh")
                .err()
                .map(|m| m.to_string());
            panic!(
                "cannot run virsh {args:?}: {}",
                why.unwrap_or(e.to_string())
            )
        });
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether libvirt knows a domain of this name (running or not).
pub fn domain_exists(name: &str) -> bool {
    virsh(&["domuuid", name]).is_some()
}

/// libvirt's runtime domain id (changes when the domain is restarted); `None` if not running.
pub fn domain_id(name: &str) -> Option<u32> {
    virsh(&["domid", name])?.parse().ok()
}

/// `virsh domstate`, e.g. `running`.
pub fn domain_state(name: &str) -> Option<String> {
    virsh(&["domstate", name])
}

/// Pid of the domain's qemu process, from libvirt's pid file.
pub fn qemu_pid(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/var/run/libvirt/qemu/{name}.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Destroys and undefines a domain; errors are ignored (used in cleanup).
pub(crate) fn remove_domain(name: &str) {
    let _ = virsh(&["destroy", name]);
    let _ = virsh(&["undefine", name, "--nvram"]).or_else(|| virsh(&["undefine", name]));
}

/// Names of all domains whose XML mentions `needle` (e.g. a test's state dir).
pub(crate) fn domains_mentioning(needle: &str) -> Vec<String> {
    let Some(list) = virsh(&["list", "--all", "--name"]) else {
        return Vec::new();
    };
    list.lines()
        .map(str::trim)
        .filter(|n| n.starts_with("yun-"))
        .filter(|n| virsh(&["dumpxml", n]).is_some_and(|xml| xml.contains(needle)))
        .map(str::to_owned)
        .collect()
}
