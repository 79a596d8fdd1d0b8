//! The guest's cloud-init network configuration (version 2): each NIC found by its MAC, named
//! `eth0`, `eth1`… in `spec.networks` order, with its static address, MTU and, on the first NIC
//! that has a gateway, the default route.
//!
//! Rendered by hand with every string double-quoted: cloud-init reads YAML 1.1, where an
//! unquoted all-digit MAC such as `52:54:00:12:34:56` is a base-60 integer, and a YAML 1.2
//! emitter leaves it unquoted. The values quoted (MACs, addresses, `ethN`) hold no character
//! that needs escaping.

use std::fmt::Write;

use super::nics::NicAssignment;

/// The guest interface name of NIC `index`.
pub fn guest_ifname(index: usize) -> String {
    format!("eth{index}")
}

/// The `network-config` document for a VM with `nics` (in `spec.networks` order).
pub fn network_config(nics: &[NicAssignment]) -> String {
    // One default route: a second would make the guest's choice of uplink arbitrary.
    let default_route_on = nics.iter().position(|n| n.gateway.is_some());
    let mut out = String::from("version: 2\n");
    if nics.is_empty() {
        out.push_str("ethernets: {}\n");
        return out;
    }
    out.push_str("ethernets:\n");
    for (i, nic) in nics.iter().enumerate() {
        let name = guest_ifname(i);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "  {name}:\n    match:\n      macaddress: \"{mac}\"\n    set-name: \"{name}\"\n    addresses:\n      - \"{ip}/{prefix}\"\n    mtu: {mtu}\n",
            mac = nic.mac,
            ip = nic.ip,
            prefix = nic.prefix,
            mtu = nic.mtu,
        );
        if let Some(via) = nic.gateway.filter(|_| Some(i) == default_route_on) {
            let _ = write!(
                out,
                "    routes:\n      - to: \"0.0.0.0/0\"\n        via: \"{via}\"\n"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Value;
    use std::net::Ipv4Addr;
    use yun_firewall::Mac;

    fn nic(
        mac: [u8; 6],
        ip: [u8; 4],
        prefix: u8,
        gateway: Option<[u8; 4]>,
        mtu: u32,
    ) -> NicAssignment {
        NicAssignment {
            network: "n".into(),
            ifname: "yt0".into(),
            bridge: "yb0".into(),
            mac: Mac(mac),
            ip: Ipv4Addr::from(ip),
            prefix,
            gateway: gateway.map(Ipv4Addr::from),
            mtu,
        }
    }

    fn parse(nics: &[NicAssignment]) -> Value {
        serde_yaml::from_str(&network_config(nics)).unwrap()
    }

    #[test]
    fn each_nic_is_matched_by_mac_and_configured_statically() {
        let nics = [
            nic(
                [0x52, 0x54, 0, 0xab, 0xcd, 0xef],
                [10, 0, 0, 5],
                24,
                None,
                1450,
            ),
            nic(
                [0x52, 0x54, 0, 1, 2, 3],
                [192, 168, 7, 9],
                22,
                Some([192, 168, 4, 1]),
                1500,
            ),
            nic(
                [0x02, 0, 0, 0, 0, 9],
                [172, 16, 0, 9],
                16,
                Some([172, 16, 0, 1]),
                9000,
            ),
        ];
        let v = parse(&nics);
        assert_eq!(v["version"], Value::from(2));
        let eth = &v["ethernets"];
        assert_eq!(eth.as_mapping().unwrap().len(), 3);
        assert_eq!(
            eth["eth0"]["match"]["macaddress"],
            Value::from("52:54:00:ab:cd:ef")
        );
        assert_eq!(eth["eth0"]["set-name"], Value::from("eth0"));
        assert_eq!(eth["eth0"]["addresses"][0], Value::from("10.0.0.5/24"));
        assert_eq!(eth["eth0"]["mtu"], Value::from(1450));
        assert!(eth["eth0"].get("routes").is_none());
        // The first NIC with a gateway carries the default route; later ones do not.
        assert_eq!(eth["eth1"]["routes"][0]["to"], Value::from("0.0.0.0/0"));
        assert_eq!(eth["eth1"]["routes"][0]["via"], Value::from("192.168.4.1"));
        assert_eq!(eth["eth1"]["routes"].as_sequence().unwrap().len(), 1);
        assert!(eth["eth2"].get("routes").is_none());
        assert_eq!(eth["eth2"]["addresses"][0], Value::from("172.16.0.9/16"));
        assert_eq!(eth["eth2"]["mtu"], Value::from(9000));
    }

    #[test]
    fn an_all_digit_mac_stays_a_string_for_yaml_1_1_readers() {
        // cloud-init reads YAML 1.1, where unquoted 52:54:00:12:34:56 is a base-60 integer.
        let text = network_config(&[nic(
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            [10, 0, 0, 2],
            24,
            None,
            1500,
        )]);
        assert!(text.contains("macaddress: \"52:54:00:12:34:56\""), "{text}");
    }

    #[test]
    fn the_document_reads_as_written() {
        let one = nic(
            [0x52, 0x54, 0, 1, 2, 3],
            [10, 0, 0, 5],
            24,
            Some([10, 0, 0, 1]),
            1500,
        );
        assert_eq!(
            network_config(&[one]),
            "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"52:54:00:01:02:03\"\n    set-name: \"eth0\"\n    addresses:\n      - \"10.0.0.5/24\"\n    mtu: 1500\n    routes:\n      - to: \"0.0.0.0/0\"\n        via: \"10.0.0.1\"\n"
        );
    }

    #[test]
    fn no_nics_is_an_empty_but_valid_document() {
        let v = parse(&[]);
        assert_eq!(v["version"], Value::from(2));
        assert!(v["ethernets"].as_mapping().unwrap().is_empty());
    }
}
