//! Network namespaces for firewall tests: a "host" namespace with bridges, and "guest"
//! namespaces joined to a bridge by a veth pair whose host end is the VM port. Everything is
//! created under a unique prefix and removed on drop.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use yun_firewall::Mac;

pub mod wire;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {}", yun_testkit::cannot_run(args[0], &e)))
}

pub fn must(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when this kernel can filter bridged IPv4 with conntrack (br_netfilter); tests that
/// need it skip loudly otherwise.
pub fn bridge_netfilter_available() -> bool {
    std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
        || sh(&["modprobe", "br_netfilter"]).status.success()
}

#[derive(Debug)]
pub struct Guest {
    pub ns: String,
    pub port: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
}

#[derive(Debug)]
pub struct Lab {
    pub host: String,
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    pub fn new() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("yfw{}x{n}", std::process::id() % 100_000);
        let host = format!("{prefix}h");
        must(&["ip", "netns", "add", &host]);
        let lab = Lab {
            host: host.clone(),
            prefix,
            namespaces: vec![host.clone()],
        };
        lab.host_run(&["ip", "link", "set", "lo", "up"]);
        lab.host_run(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
        lab
    }

    pub fn host_run(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.host];
        full.extend_from_slice(args);
        must(&full);
    }

    pub fn bridge(&self, name: &str) {
        self.host_run(&["ip", "link", "add", name, "type", "bridge"]);
        self.host_run(&["ip", "link", "set", name, "up"]);
    }

    /// A guest namespace on `bridge`: port `port` on the host side, `eth0` with `mac`/`ip`/24.
    pub fn guest(&mut self, name: &str, bridge: &str, port: &str, mac: Mac, ip: Ipv4Addr) -> Guest {
        let ns = format!("{}{name}", self.prefix);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.host_run(&[
            "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        self.host_run(&["ip", "link", "set", port, "master", bridge, "up"]);
        let mac_s = mac.to_string();
        let cidr = format!("{ip}/24");
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "link", "set", "eth0", "address", &mac_s],
            vec!["ip", "addr", "add", &cidr, "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
        ] {
            let mut full = vec!["ip", "netns", "exec", &ns];
            full.extend(cmd);
            must(&full);
        }
        Guest {
            ns,
            port: port.to_owned(),
            mac,
            ip,
        }
    }

    /// Extra namespace names this lab owns (for a second host, say).
    pub fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.prefix);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ns
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

impl Guest {
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// One ICMP echo to `ip`, answered within a second.
    pub fn ping(&self, ip: Ipv4Addr) -> bool {
        self.run(&["busybox", "ping", "-c", "1", "-W", "1", &ip.to_string()])
            .status
            .success()
    }

    /// A TCP connection to `ip:port` completes within a second (the handshake's reply passed).
    pub fn connect(&self, ip: Ipv4Addr, port: u16) -> bool {
        let code =
            format!("import socket; socket.create_connection(('{ip}', {port}), timeout=1).close()");
        self.run(&["python3", "-c", &code]).status.success()
    }

    /// A TCP listener on `port` that accepts forever; killed with the returned guard.
    pub fn listen(&self, port: u16) -> Listener {
        let code = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', {port}))\ns.listen(16)\nwhile True:\n    s.accept()[0].close()\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", &code])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until it listens (a connection from inside the guest itself).
        for _ in 0..50 {
            if self.connect(Ipv4Addr::LOCALHOST, port) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Listener(child)
    }

    /// Re-addresses the guest (a spoofing attempt): a new IP and/or MAC on eth0.
    pub fn readdress(&self, ip: Ipv4Addr, mac: Mac) {
        let mac_s = mac.to_string();
        for cmd in [
            vec!["ip", "addr", "flush", "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "address", &mac_s],
        ] {
            let mut full = vec!["ip", "netns", "exec", &self.ns];
            full.extend(cmd);
            must(&full);
        }
        let cidr = format!("{ip}/24");
        let out = self.run(&["ip", "addr", "add", &cidr, "dev", "eth0"]);
        assert!(out.status.success());
        // Forget neighbours learned under the old address.
        let _ = self.run(&["ip", "neigh", "flush", "all"]);
    }
}

#[derive(Debug)]
pub struct Listener(std::process::Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
