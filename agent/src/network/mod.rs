//! Tenant networking on a host: the firewall (nftables) and, later, bridges, VXLAN/VLAN
//! devices and taps (netlink).

pub mod nft;
