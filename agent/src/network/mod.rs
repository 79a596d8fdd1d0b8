//! Tenant networking on a host: bridges, VXLAN/VLAN devices and VM ports (netlink, [`links`]),
//! the firewall (nftables, [`nft`]), both driven from the host's fleet-bus records
//! ([`host_state`]).

pub mod host_state;
pub mod links;
pub mod nft;
pub mod worker;
