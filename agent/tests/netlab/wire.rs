//! Two simulated hosts (network namespaces) joined by a veth "wire" that carries the
//! underlay, each with guests (child namespaces) whose host-side veth end is a `yt…` port
//! left unattached and down for the links driver to wire up. Removed on drop.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use yun_firewall::Mac;

use super::{Guest, must, sh};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The underlay device on both hosts.
pub const WIRE_DEV: &str = "wire0";

#[derive(Debug)]
pub struct Wire {
    /// Host A's namespace.
    pub a: String,
    /// Host B's namespace.
    pub b: String,
    pub underlay_a: Ipv4Addr,
    pub underlay_b: Ipv4Addr,
    prefix: String,
    namespaces: Vec<String>,
}

/// Output of `args` run inside namespace `ns`.
pub fn run_in(ns: &str, args: &[&str]) -> std::process::Output {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// Runs `args` inside `ns`; panics with its stderr when it fails.
pub fn must_in(ns: &str, args: &[&str]) {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    must(&full);
}

/// Stdout of `args` inside `ns` (which must succeed).
pub fn stdout_in(ns: &str, args: &[&str]) -> String {
    let out = run_in(ns, args);
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Wire {
    /// Hosts A (`10.77.0.1`) and B (`10.77.0.2`) on one /24 over `wire0`.
    pub fn new() -> Wire {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("ylk{}x{n}", std::process::id() % 100_000);
        let mut wire = Wire {
            a: format!("{prefix}A"),
            b: format!("{prefix}B"),
            underlay_a: Ipv4Addr::new(10, 77, 0, 1),
            underlay_b: Ipv4Addr::new(10, 77, 0, 2),
            prefix,
            namespaces: Vec::new(),
        };
        for ns in [wire.a.clone(), wire.b.clone()] {
            must(&["ip", "netns", "add", &ns]);
            wire.namespaces.push(ns.clone());
            must_in(&ns, &["ip", "link", "set", "lo", "up"]);
        }
        must_in(
            &wire.a,
            &[
                "ip", "link", "add", WIRE_DEV, "type", "veth", "peer", "name", WIRE_DEV, "netns",
                &wire.b,
            ],
        );
        for (ns, addr) in [(&wire.a, wire.underlay_a), (&wire.b, wire.underlay_b)] {
            let cidr = format!("{addr}/24");
            must_in(ns, &["ip", "addr", "add", &cidr, "dev", WIRE_DEV]);
            must_in(ns, &["ip", "link", "set", WIRE_DEV, "up"]);
        }
        wire
    }

    /// A guest namespace with `eth0` (`mac`, `ip`/24) whose peer `port` sits in `host`,
    /// down and on no bridge.
    pub fn guest(&mut self, host: &str, name: &str, port: &str, mac: Mac, ip: Ipv4Addr) -> Guest {
        let ns = format!("{}{name}", self.prefix);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must_in(
            host,
            &[
                "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        let mac_s = mac.to_string();
        let cidr = format!("{ip}/24");
        must_in(&ns, &["ip", "link", "set", "lo", "up"]);
        must_in(&ns, &["ip", "link", "set", "eth0", "address", &mac_s]);
        must_in(&ns, &["ip", "addr", "add", &cidr, "dev", "eth0"]);
        must_in(&ns, &["ip", "link", "set", "eth0", "up"]);
        Guest {
            ns,
            port: port.to_owned(),
            mac,
            ip,
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}
