//! Deterministic names of a VM's NICs: the host-side port (tap) name, the per-network bridge
//! name and the guest MAC, each derived from stable ids so every controller computes the same
//! ones, and the assignment the agent realises.
//!
//! Names carry 52 bits of an FNV-1a hash (13 hex digits after a 2-letter prefix: the 15 bytes a
//! Linux interface name allows). Two bridges sharing a name would join two networks into one
//! segment, and two ports sharing a name on one host would fail that host's firewall, so the
//! names use every bit the length allows: at 10^4 networks or 10^3 ports per host on 10^3 hosts
//! a collision is ~10^-7 likely, where 32 bits would make it a few percent.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use yun_crds::{NetworkAttachment, NetworkError, NetworkSpec};
use yun_firewall::names::fnv64;
use yun_firewall::{Mac, PORT_PREFIX};
use yun_fleet::NicRecord;

/// Prefix of every bridge the agents create for a Network.
pub const BRIDGE_PREFIX: &str = "yb";
/// Hex digits of the hash in a port or bridge name (2 + 13 = 15 bytes, the Linux maximum).
const NAME_HEX_DIGITS: usize = 13;
/// The QEMU/KVM OUI generated MACs start with (locally used, not a real vendor's range).
pub const GENERATED_MAC_OUI: [u8; 3] = [0x52, 0x54, 0x00];
/// How many hashes [`nic_mac`] tries before giving up on a free MAC (never reached in practice:
/// each try collides with probability taken/2^24).
const MAC_ATTEMPTS: u32 = 64;

/// Why a NIC cannot be assigned; each names the attachment field or the network.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NicError {
    #[error("{field}: {value:?} is not a MAC address in xx:xx:xx:xx:xx:xx form")]
    BadMac { field: String, value: String },
    #[error("{field}: {mac} is a multicast or all-zero address; a NIC needs a unicast one")]
    NotUnicast { field: String, mac: Mac },
    #[error("{field}: {mac} is already used by another interface on network {network}")]
    MacInUse {
        field: String,
        mac: Mac,
        network: String,
    },
    #[error("{field}: no free MAC address found after {MAC_ATTEMPTS} tries on network {network}")]
    NoFreeMac { field: String, network: String },
    #[error("network {network}: {source}")]
    Network {
        network: String,
        source: NetworkError,
    },
}

/// One NIC of a VM as the controller assigned it: what the agent creates (port, bridge) and
/// what the guest is configured with (MAC, address, gateway, MTU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicAssignment {
    /// Name of the Network (in the VM's namespace).
    pub network: String,
    /// Host-side port name (`yt…`).
    pub ifname: String,
    /// The network's bridge on the host (`yb…`).
    pub bridge: String,
    #[serde(with = "mac_text")]
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Prefix length of the network's CIDR.
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
}

impl NicAssignment {
    /// The NIC as the fleet contract carries it to the agent (`VmDesired.nics`); `namespace` is
    /// the VM's, so the record names the network `namespace/name`.
    pub fn record(&self, namespace: &str) -> NicRecord {
        NicRecord {
            network: format!("{namespace}/{}", self.network),
            ifname: self.ifname.clone(),
            bridge: self.bridge.clone(),
            mac: self.mac.to_string(),
            ip: self.ip,
            prefix: self.prefix,
            gateway: self.gateway,
            mtu: self.mtu,
        }
    }
}

/// MACs as `xx:xx:xx:xx:xx:xx` text on the wire (readable in etcd and logs).
mod mac_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use yun_firewall::Mac;

    pub fn serialize<S: Serializer>(mac: &Mac, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(mac)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// Hash of a NIC's identity; `purpose` keeps the port name and the MAC independent.
fn nic_hash(purpose: &[u8], vm_uid: &str, index: usize, attempt: u32) -> u64 {
    let mut data = Vec::with_capacity(purpose.len() + vm_uid.len() + 10);
    data.extend_from_slice(purpose);
    data.push(0xff); // never in UTF-8: the parts cannot run into each other
    data.extend_from_slice(vm_uid.as_bytes());
    data.push(0xff);
    data.extend_from_slice(&(index as u64).to_be_bytes());
    if attempt > 0 {
        data.extend_from_slice(&attempt.to_be_bytes());
    }
    fnv64(&data)
}

fn hashed_name(prefix: &str, hash: u64) -> String {
    let bits = hash >> (64 - 4 * NAME_HEX_DIGITS);
    format!("{prefix}{bits:0width$x}", width = NAME_HEX_DIGITS)
}

/// Host-side port name of NIC `index` (its position in `spec.networks`) of the VM with `vm_uid`.
pub fn port_ifname(vm_uid: &str, index: usize) -> String {
    hashed_name(PORT_PREFIX, nic_hash(b"port", vm_uid, index, 0))
}

/// Bridge name of Network `namespace/name` (the same on every host).
pub fn bridge_name(namespace: &str, network: &str) -> String {
    hashed_name(
        BRIDGE_PREFIX,
        fnv64(format!("{namespace}/{network}").as_bytes()),
    )
}

/// The generated MAC of a NIC; `attempt` > 0 gives alternatives when one is taken.
pub fn generated_mac(vm_uid: &str, index: usize, attempt: u32) -> Mac {
    let h = nic_hash(b"mac", vm_uid, index, attempt).to_be_bytes();
    let [a, b, c] = GENERATED_MAC_OUI;
    Mac([a, b, c, h[0], h[1], h[2]])
}

/// The MAC of NIC `index`: `fixed` (the attachment's `mac`, at `field`) if given, else the first
/// generated one that is not `taken` (by the other interfaces on the same network).
pub fn nic_mac(
    field: &str,
    network: &str,
    fixed: Option<&str>,
    vm_uid: &str,
    index: usize,
    taken: impl Fn(&Mac) -> bool,
) -> Result<Mac, NicError> {
    let Some(text) = fixed else {
        return (0..MAC_ATTEMPTS)
            .map(|attempt| generated_mac(vm_uid, index, attempt))
            .find(|mac| !taken(mac))
            .ok_or_else(|| NicError::NoFreeMac {
                field: field.to_owned(),
                network: network.to_owned(),
            });
    };
    let mac: Mac = text.parse().map_err(|_| NicError::BadMac {
        field: field.to_owned(),
        value: text.to_owned(),
    })?;
    if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
        return Err(NicError::NotUnicast {
            field: field.to_owned(),
            mac,
        });
    }
    if taken(&mac) {
        return Err(NicError::MacInUse {
            field: field.to_owned(),
            mac,
            network: network.to_owned(),
        });
    }
    Ok(mac)
}

/// The assignment of NIC `index` (`attachment`, `spec.networks[index]`) of VM `vm_uid` in
/// `namespace`, on a network with `spec`, with address `ip` from IPAM. `taken_mac`: whether a
/// MAC is held by another interface of the network (not this NIC's own, so reassigning is
/// idempotent).
pub fn assign_nic(
    namespace: &str,
    vm_uid: &str,
    index: usize,
    attachment: &NetworkAttachment,
    spec: &NetworkSpec,
    ip: Ipv4Addr,
    taken_mac: impl Fn(&Mac) -> bool,
) -> Result<NicAssignment, NicError> {
    let network = format!("{namespace}/{}", attachment.network);
    let net_err = |source| NicError::Network {
        network: network.clone(),
        source,
    };
    let (_, prefix) = spec.parsed_cidr().map_err(net_err)?;
    let gateway = spec.gateway_addr().map_err(net_err)?;
    let mtu = spec.effective_mtu().map_err(net_err)?;
    let field = format!("spec.networks[{index}].mac");
    let mac = nic_mac(
        &field,
        &network,
        attachment.mac.as_deref(),
        vm_uid,
        index,
        taken_mac,
    )?;
    Ok(NicAssignment {
        network: attachment.network.clone(),
        ifname: port_ifname(vm_uid, index),
        bridge: bridge_name(namespace, &attachment.network),
        mac,
        ip,
        prefix,
        gateway: Some(gateway),
        mtu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use yun_crds::{Vlan, Vxlan};

    const UID: &str = "6f1c2a4e-0d1b-4c53-9a57-1f0e8c7d2b10";

    fn is_ifname(s: &str) -> bool {
        s.len() <= 15
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }

    #[test]
    fn names_are_deterministic_distinct_and_valid_interface_names() {
        assert_eq!(port_ifname(UID, 0), port_ifname(UID, 0));
        assert_ne!(port_ifname(UID, 0), port_ifname(UID, 1));
        assert_ne!(port_ifname(UID, 0), port_ifname("other-uid", 0));
        let mut seen = BTreeSet::new();
        for i in 0..2000 {
            let uid = format!("{UID}-{i}");
            for index in 0..8 {
                let name = port_ifname(&uid, index);
                assert!(name.starts_with("yt") && name.len() == 15, "{name}");
                assert!(is_ifname(&name), "{name}");
                assert!(seen.insert(name));
            }
        }
        let b = bridge_name("tenant-a", "frontend");
        assert_eq!(b, bridge_name("tenant-a", "frontend"));
        assert!(b.starts_with("yb") && b.len() == 15 && is_ifname(&b), "{b}");
        assert_ne!(b, bridge_name("tenant-b", "frontend"));
        assert_ne!(b, bridge_name("tenant-a", "backend"));
        // Namespaces hold no '/', so namespace/name never reads two ways.
        assert_ne!(bridge_name("a", "b.c"), bridge_name("a.b", "c"));
    }

    #[test]
    fn names_pass_the_firewall_model() {
        let fw = yun_firewall::HostFirewall {
            ports: vec![yun_firewall::Port {
                ifname: port_ifname(UID, 3),
                bridge: bridge_name("t", "n"),
                mac: generated_mac(UID, 3, 0),
                ip: Ipv4Addr::new(10, 0, 0, 2),
                groups: BTreeSet::new(),
            }],
            ..Default::default()
        };
        fw.validate().unwrap();
    }

    #[test]
    fn generated_macs_are_unicast_qemu_macs_that_avoid_taken_ones() {
        let first = generated_mac(UID, 0, 0);
        assert_eq!(first.0[..3], GENERATED_MAC_OUI);
        assert_eq!(first, generated_mac(UID, 0, 0));
        assert_ne!(first, generated_mac(UID, 1, 0));
        let f = "spec.networks[0].mac";
        assert_eq!(nic_mac(f, "t/n", None, UID, 0, |_| false).unwrap(), first);
        let taken: BTreeSet<_> = [first].into();
        let second = nic_mac(f, "t/n", None, UID, 0, |m| taken.contains(m)).unwrap();
        assert_eq!(second, generated_mac(UID, 0, 1));
        assert_ne!(second, first);
    }

    #[test]
    fn fixed_macs_are_checked() {
        let f = "spec.networks[2].mac";
        let none = BTreeSet::new();
        let fixed = |m: &str, taken: &BTreeSet<Mac>| {
            nic_mac(f, "t/n", Some(m), UID, 2, |x| taken.contains(x))
        };
        assert_eq!(
            fixed("02:00:00:00:00:0a", &none).unwrap(),
            Mac([2, 0, 0, 0, 0, 0x0a])
        );
        assert_eq!(
            fixed("03:00:00:00:00:01", &none).unwrap_err().to_string(),
            "spec.networks[2].mac: 03:00:00:00:00:01 is a multicast or all-zero address; a NIC needs a unicast one"
        );
        assert!(matches!(
            fixed("00:00:00:00:00:00", &none),
            Err(NicError::NotUnicast { .. })
        ));
        assert!(
            fixed("02-00-00-00-00-0a", &none)
                .unwrap_err()
                .to_string()
                .starts_with("spec.networks[2].mac: \"02-00-00-00-00-0a\" is not")
        );
        let taken: BTreeSet<_> = [Mac([2, 0, 0, 0, 0, 0x0a])].into();
        assert_eq!(
            fixed("02:00:00:00:00:0a", &taken).unwrap_err().to_string(),
            "spec.networks[2].mac: 02:00:00:00:00:0a is already used by another interface on network t/n"
        );
    }

    #[test]
    fn an_assignment_carries_the_network_settings_and_round_trips() {
        let spec = NetworkSpec {
            vlan: None,
            vxlan: Some(Vxlan { vni: 7 }),
            cidr: "10.4.0.0/22".into(),
            gateway: Some("10.4.3.254".into()),
            mtu: None,
            reserved: vec![],
        };
        let att = NetworkAttachment {
            network: "back".into(),
            ip: None,
            mac: None,
        };
        let nic = assign_nic("t", UID, 1, &att, &spec, Ipv4Addr::new(10, 4, 0, 9), |_| {
            false
        })
        .unwrap();
        assert_eq!(nic.ifname, port_ifname(UID, 1));
        assert_eq!(nic.bridge, bridge_name("t", "back"));
        assert_eq!(nic.mac, generated_mac(UID, 1, 0));
        assert_eq!((nic.prefix, nic.mtu), (22, 1450));
        assert_eq!(nic.gateway, Some(Ipv4Addr::new(10, 4, 3, 254)));
        let json = serde_json::to_value(&nic).unwrap();
        assert_eq!(json["mac"], nic.mac.to_string());
        assert_eq!(json["ip"], "10.4.0.9");
        assert!(json.get("ifname").is_some() && json.get("mtu").is_some());
        let back: NicAssignment = serde_json::from_value(json).unwrap();
        assert_eq!(back, nic);
        let record = nic.record("t");
        assert_eq!(record.network, "t/back");
        assert_eq!(record.mac.parse::<Mac>().unwrap(), nic.mac);
        assert_eq!((record.ip, record.prefix, record.mtu), (nic.ip, 22, 1450));

        let vlan = NetworkSpec {
            vlan: Some(Vlan { id: 5 }),
            vxlan: None,
            mtu: Some(9000),
            ..spec
        };
        let nic = assign_nic("t", UID, 0, &att, &vlan, Ipv4Addr::new(10, 4, 0, 9), |_| {
            false
        })
        .unwrap();
        assert_eq!(nic.mtu, 9000);
    }
}
