//! Tenant NICs end to end on a real host: two TCG guests of the test template, prepared and
//! defined as the agent does it (libvirt creates each tap and enslaves it to the bridge; the
//! seed's network-config gives the guest its static address), talk over one bridge in the
//! root network namespace; Yun's nftables firewall, assembled from the VMs' records, then
//! allows or drops their ICMP. Guest A pings B once a second for the whole test (the template's
//! `yun-ping:` user-data line) and the test reads each round's result off A's console while
//! it changes the rules.
//!
//! Needs root, libvirt on qemu:///system (`scripts/libvirt.sh up <dir>`), nft and br_netfilter.
//! Everything it creates (domains, bridge, Yun's nft tables, files) goes when it ends; the
//! `bridge-nf-call-iptables` sysctl gets its old value back.

#![allow(clippy::unwrap_used)]

mod guestlab;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use guestlab::{
    Bridge, Guests, StateDir, Sysctl, YunTables, console, lock_libvirt, require_libvirt, tail,
    wait_for, yun_tables_present,
};
use yun_agent::network::host_state::HostNetState;
use yun_agent::network::nft::{HostFirewallDriver, NftCommand, NftFirewall};
use yun_fleet::network::{GroupRules, Proto, Remote, Rule, shard_members};
use yun_fleet::{HostGroups, ImageSpec, NicRecord, SCHEMA_VERSION, VmDesired};

/// Two TCG guests booting at once on a busy 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// A round is one `ping -c 1 -W 2` plus a 1 s pause: a handful of rounds is plenty.
const ROUNDS_TIMEOUT: Duration = Duration::from_secs(40);
const GROUP: &str = "gn/ping";

struct Ids {
    bridge: String,
    subnet: [u8; 3],
    tag: u32,
}

impl Ids {
    fn new() -> Ids {
        let pid = std::process::id();
        Ids {
            bridge: format!("yb{:013x}", u64::from(pid) << 8),
            subnet: [10, 251, (pid % 250) as u8],
            tag: pid,
        }
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    fn mac(&self, host: u8) -> String {
        let [b0, b1, ..] = (self.tag as u16).to_be_bytes();
        format!("52:54:00:{b0:02x}:{b1:02x}:{host:02x}")
    }

    fn tap(&self, host: u8) -> String {
        format!("yt{:013x}", (u64::from(self.tag) << 8) | u64::from(host))
    }

    fn vm(&self, image: &ImageSpec, host: u8, user_data: Option<String>) -> VmDesired {
        let uid = format!("gn-{}-{host}", self.tag);
        VmDesired {
            image: image.clone(),
            hostname: format!("gn-{host}"),
            user_data,
            nics: vec![NicRecord {
                network: "gn/net".into(),
                ifname: self.tap(host),
                bridge: self.bridge.clone(),
                mac: self.mac(host),
                ip: self.ip(host),
                prefix: 24,
                // Nothing answers there: it only gives the guest's default route a next hop.
                gateway: Some(self.ip(254)),
                mtu: 1500,
            }],
            security_groups: vec![GROUP.into()],
            ..yun_fleet::fixtures::vm_desired(&uid, "gn", &format!("vm-{host}"))
        }
    }
}

/// The group's rules: every egress, and ICMP from the group's members when `icmp` (otherwise
/// only SSH from them, so the group still has ingress rules naming itself).
fn group_rules(icmp: bool) -> HostGroups {
    let from_group = |proto, ports: Vec<(u16, u16)>| Rule {
        proto,
        ports,
        remote: Remote::Group(GROUP.into()),
    };
    let ingress = if icmp {
        vec![from_group(Proto::Icmp, vec![])]
    } else {
        vec![from_group(Proto::Tcp, vec![(22, 22)])]
    };
    HostGroups {
        v: SCHEMA_VERSION,
        groups: BTreeMap::from([(
            GROUP.to_owned(),
            GroupRules {
                ingress,
                egress: vec![Rule {
                    proto: Proto::Any,
                    ports: vec![],
                    remote: Remote::Any,
                }],
            },
        )]),
    }
}

/// `(round, ok)` of every `YUN-PING <target> ok|fail <round>` line on a console.
fn ping_results(console: &str, target: Ipv4Addr) -> Vec<(u32, bool)> {
    let prefix = format!("YUN-PING {target} ");
    console
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find(&prefix)? + prefix.len()..];
            let mut words = rest.split_whitespace();
            let ok = match words.next()? {
                "ok" => true,
                "fail" => false,
                _ => return None,
            };
            Some((words.next()?.parse().ok()?, ok))
        })
        .collect()
}

/// The last round reported so far (0: none).
fn last_round(log: &Path, target: Ipv4Addr) -> u32 {
    ping_results(&console(log), target)
        .last()
        .map_or(0, |r| r.0)
}

/// Waits for two rounds that started after the firewall change (the round running while it
/// was applied is skipped) and returns their results.
fn rounds_after_change(log: &Path, target: Ipv4Addr, what: &str) -> Vec<bool> {
    let changed_at = last_round(log, target);
    wait_for(
        what,
        ROUNDS_TIMEOUT,
        || {
            let after: Vec<bool> = ping_results(&console(log), target)
                .into_iter()
                .filter(|(round, _)| *round > changed_at + 1)
                .map(|(_, ok)| ok)
                .collect();
            (after.len() >= 2).then_some(after)
        },
        || tail(&console(log), 20),
    )
}

#[test]
fn guests_get_static_nics_and_the_firewall_governs_their_traffic() {
    if !Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
        && !guestlab::run(&["modprobe", "br_netfilter"])
            .status
            .success()
    {
        yun_testkit::skip_for_kernel(
            "guests_get_static_nics_and_the_firewall_governs_their_traffic",
            yun_testkit::KernelFeature::BrNetfilter,
            "bridged IPv4 cannot be filtered",
        );
        return;
    }
    require_libvirt();
    let _lock = lock_libvirt();
    assert!(
        !yun_tables_present(),
        "the root namespace already has Yun's nft tables (an agent with tenant networks is \
         running here?); refusing to replace them"
    );
    let state = StateDir::new("guest-network");
    let Some(image) = guestlab::build_template(&state.0) else {
        return;
    };
    let ids = Ids::new();
    // Guards drop in reverse order: the guests (and their taps) first, then Yun's tables, the
    // bridge, the sysctl, the files and the lock.
    let _sysctl = Sysctl::set("net.bridge.bridge-nf-call-iptables", "1");
    let bridge = Bridge::new(&ids.bridge);
    let _tables = YunTables;

    let (ip_a, ip_b) = (ids.ip(1), ids.ip(2));
    let vm_b = ids.vm(&image, 2, None);
    // Commented out, so the user data stays a valid (empty) cloud-config.
    let vm_a = ids.vm(
        &image,
        1,
        Some(format!("#cloud-config\n# yun-ping: {ip_b} 600 1\n")),
    );

    // The firewall as the agent assembles it from the records: ICMP allowed within the group.
    let mut records = HostNetState::default();
    records.set_vm(&vm_a);
    records.set_vm(&vm_b);
    let members: BTreeSet<Ipv4Addr> = [ip_a, ip_b].into();
    for (shard, ips) in shard_members(&members) {
        records.set_member_shard(GROUP, shard, Some(ips));
    }
    records.set_groups(Some(group_rules(true)));
    let mut nft = NftFirewall::new(NftCommand::default());
    nft.apply(&records.firewall().unwrap()).unwrap();

    let mut guests = Guests::new(&state.0);
    let log_b = guests.start(&vm_b);
    let log_a = guests.start(&vm_a);

    // libvirt made each tap under its NIC's name, on the bridge, with the NIC's MTU.
    for vm in [&vm_a, &vm_b] {
        let tap = Path::new("/sys/class/net").join(&vm.nics[0].ifname);
        let master = std::fs::read_link(tap.join("master")).unwrap();
        assert_eq!(master.file_name().unwrap(), bridge.0.as_str());
        let mtu = std::fs::read_to_string(tap.join("mtu")).unwrap();
        assert_eq!(mtu.trim(), "1500");
    }

    // Each guest applied its seed's static NIC before announcing readiness.
    for (vm, log) in [(&vm_a, &log_a), (&vm_b, &log_b)] {
        let nic = &vm.nics[0];
        let want = format!("YUN-NET eth0 {} {}/24 up", nic.mac, nic.ip);
        let text = wait_for(
            &format!("{} ready", vm.uid),
            BOOT_TIMEOUT,
            || {
                let text = console(log);
                text.contains("YUN-GUEST-").then_some(text)
            },
            || tail(&console(log), 30),
        );
        assert!(
            text.lines().any(|l| l == want),
            "want {want:?}:\n{}",
            tail(&text, 30)
        );
        assert!(text.contains("YUN-GUEST-READY "), "{}", tail(&text, 30));
    }

    // Allowed: A reaches B (the first rounds may run before B is up).
    wait_for(
        "a successful ping from A to B",
        BOOT_TIMEOUT,
        || {
            ping_results(&console(&log_a), ip_b)
                .iter()
                .any(|r| r.1)
                .then_some(())
        },
        || tail(&console(&log_a), 20),
    );

    // ICMP no longer allowed: every round after the change fails.
    records.set_groups(Some(group_rules(false)));
    nft.apply(&records.firewall().unwrap()).unwrap();
    let denied = rounds_after_change(&log_a, ip_b, "pings after ICMP was denied");
    assert!(
        denied.iter().all(|ok| !ok),
        "ICMP denied, yet pings passed: {denied:?}\n{}",
        tail(&console(&log_a), 20)
    );

    // Allowed again: the failures were the firewall's, not a broken guest or bridge.
    records.set_groups(Some(group_rules(true)));
    nft.apply(&records.firewall().unwrap()).unwrap();
    let allowed = rounds_after_change(&log_a, ip_b, "pings after ICMP was allowed again");
    assert!(
        allowed.iter().all(|ok| *ok),
        "ICMP allowed again, yet pings failed: {allowed:?}\n{}",
        tail(&console(&log_a), 20)
    );
    let report: Vec<String> = console(&log_a)
        .lines()
        .filter(|l| l.contains("YUN-"))
        .map(str::to_owned)
        .collect();
    eprintln!("guest A's console:\n{}", report.join("\n"));
}
