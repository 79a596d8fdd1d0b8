//! Address management of one Network: which addresses of its CIDR may be handed out, and the
//! next one to hand out.
//!
//! The controller hands out the lowest free address, so the same set of allocations always
//! yields the same next address. It never hands out the network, broadcast or gateway address
//! nor a `spec.reserved` one; an attachment may fix a reserved address (it is the operator's way
//! to give a VM a known address), never the network, broadcast or gateway one.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use thiserror::Error;
use yun_crds::ipv4::{self, Ipv4Error};
use yun_crds::{NetworkError, NetworkSpec};

/// The `AddressesAvailable=False` reason when every address is handed out.
pub const POOL_EXHAUSTED: &str = "PoolExhausted";

/// Why an address cannot be handed out; each names the network and, for a fixed address, the
/// attachment field that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpamError {
    #[error("network {network}: {source}")]
    Spec {
        network: String,
        source: NetworkError,
    },
    #[error("network {network}: spec.reserved[{index}]: {source}")]
    ReservedUnparsable {
        network: String,
        index: usize,
        source: Ipv4Error,
    },
    #[error("network {network}: spec.reserved[{index}]: {ip} is outside {cidr}")]
    ReservedOutside {
        network: String,
        index: usize,
        ip: Ipv4Addr,
        cidr: String,
    },
    #[error("{field}: {source}")]
    FixedUnparsable { field: String, source: Ipv4Error },
    #[error("{field}: {ip} is outside {cidr}, the CIDR of network {network}")]
    FixedOutside {
        field: String,
        ip: Ipv4Addr,
        network: String,
        cidr: String,
    },
    #[error("{field}: {ip} is the {what} of network {network} ({cidr}), not a usable address")]
    FixedNotUsable {
        field: String,
        ip: Ipv4Addr,
        what: &'static str,
        network: String,
        cidr: String,
    },
    #[error("{field}: {ip} is already assigned to another interface on network {network}")]
    FixedInUse {
        field: String,
        ip: Ipv4Addr,
        network: String,
    },
    #[error(
        "network {network}: every address of {cidr} is handed out ({allocated} allocated; the network, broadcast, gateway and reserved addresses are never handed out)"
    )]
    Exhausted {
        network: String,
        cidr: String,
        allocated: u32,
    },
}

/// Counts for `NetworkStatus.allocated` / `.available`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Addresses held by interfaces, fixed ones (reserved ones included) counted.
    pub allocated: u32,
    /// Addresses the controller may still hand out.
    pub available: u32,
}

/// A Network's addresses as the allocator sees them (all as `u32`, host order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    network: String,
    base: Ipv4Addr,
    prefix: u8,
    /// First and last host address.
    first: u32,
    last: u32,
    gateway: u32,
    /// Reserved host addresses other than the gateway.
    reserved: BTreeSet<u32>,
}

impl Pool {
    /// The pool of the Network `network` (its `namespace/name`, for messages) with `spec`.
    pub fn new(network: impl Into<String>, spec: &NetworkSpec) -> Result<Pool, IpamError> {
        let network = network.into();
        let spec_err = |source| IpamError::Spec {
            network: network.clone(),
            source,
        };
        let (base, prefix) = spec.parsed_cidr().map_err(spec_err)?;
        let gateway = u32::from(spec.gateway_addr().map_err(spec_err)?);
        // parsed_cidr() caps the prefix at 30, so the block has at least two host addresses.
        let first = u32::from(base) + 1;
        let last = u32::from(ipv4::broadcast_address(base, prefix)) - 1;
        let mut reserved = BTreeSet::new();
        for (index, text) in spec.reserved.iter().enumerate() {
            let ip = ipv4::parse_ipv4(text).map_err(|source| IpamError::ReservedUnparsable {
                network: network.clone(),
                index,
                source,
            })?;
            if !ipv4::block_contains(base, prefix, ip) {
                return Err(IpamError::ReservedOutside {
                    network,
                    index,
                    ip,
                    cidr: format!("{base}/{prefix}"),
                });
            }
            let ip = u32::from(ip);
            // The network and broadcast addresses and the gateway are never handed out anyway.
            if (first..=last).contains(&ip) && ip != gateway {
                reserved.insert(ip);
            }
        }
        Ok(Pool {
            network,
            base,
            prefix,
            first,
            last,
            gateway,
            reserved,
        })
    }

    /// `spec.cidr` as `a.b.c.d/prefix`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.base, self.prefix)
    }

    /// The gateway address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.gateway)
    }

    /// How many addresses the controller may hand out when none is allocated.
    pub fn capacity(&self) -> u32 {
        // Host addresses, minus the gateway, minus the reserved ones (none of which is the gateway).
        self.last - self.first + 1 - 1 - self.reserved.len() as u32
    }

    /// Whether the controller may hand out `ip` (when free).
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        (self.first..=self.last).contains(&ip) && ip != self.gateway && !self.reserved.contains(&ip)
    }

    /// Counts for the status, given the addresses held on this network.
    pub fn stats(&self, allocated: &BTreeSet<Ipv4Addr>) -> PoolStats {
        let held = allocated
            .iter()
            .filter(|ip| self.is_assignable(**ip))
            .count() as u32;
        PoolStats {
            allocated: allocated.len() as u32,
            available: self.capacity().saturating_sub(held),
        }
    }

    /// Checks a fixed address asked for by attachment field `field`: inside the CIDR, neither the
    /// network, broadcast nor gateway address (reserved addresses may be fixed).
    fn check_fixed(&self, field: &str, ip: Ipv4Addr) -> Result<(), IpamError> {
        if !ipv4::block_contains(self.base, self.prefix, ip) {
            return Err(IpamError::FixedOutside {
                field: field.to_owned(),
                ip,
                network: self.network.clone(),
                cidr: self.cidr(),
            });
        }
        let n = u32::from(ip);
        let what = if n == self.first - 1 {
            "network address"
        } else if n == self.last + 1 {
            "broadcast address"
        } else if n == self.gateway {
            "gateway"
        } else {
            return Ok(());
        };
        Err(IpamError::FixedNotUsable {
            field: field.to_owned(),
            ip,
            what,
            network: self.network.clone(),
            cidr: self.cidr(),
        })
    }
}

/// A fixed address an attachment asks for: the path of the field (e.g. `spec.networks[1].ip`)
/// and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedIp<'a> {
    pub field: &'a str,
    pub ip: &'a str,
}

/// Hands out addresses of one pool, starting from the addresses already held.
///
/// Keeps a hint below which every assignable address is held, so handing out many addresses in
/// a row (a /16 filling up) walks each held address once instead of rescanning from the start.
/// `P` is `&Pool` for a short-lived allocator, or `Pool` for one that lives as long as the
/// pass that owns it.
#[derive(Debug, Clone)]
pub struct Allocator<P: Borrow<Pool>> {
    pool: P,
    taken: BTreeSet<u32>,
    hint: u32,
}

impl<P: Borrow<Pool>> Allocator<P> {
    /// An allocator for `pool` where `taken` are held (fixed ones included, even if outside the
    /// pool: they still count as allocated).
    pub fn new(pool: P, taken: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let first = pool.borrow().first;
        Allocator {
            pool,
            taken: taken.into_iter().map(u32::from).collect(),
            hint: first,
        }
    }

    /// Hands out `fixed` if given (checked and free), else the lowest free assignable address.
    /// The address is held from then on.
    pub fn allocate(&mut self, fixed: Option<FixedIp<'_>>) -> Result<Ipv4Addr, IpamError> {
        match fixed {
            Some(fixed) => self.allocate_fixed(fixed),
            None => self.allocate_next(),
        }
    }

    /// The pool this allocator hands out from.
    pub fn pool(&self) -> &Pool {
        self.pool.borrow()
    }

    /// Marks `ip` held without any check (an address some interface already has).
    pub fn hold(&mut self, ip: Ipv4Addr) {
        self.taken.insert(u32::from(ip));
    }

    /// Gives `ip` back; returns whether it was held.
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        let was_held = self.taken.remove(&n);
        if was_held && n >= self.pool().first {
            self.hint = self.hint.min(n);
        }
        was_held
    }

    /// Whether `ip` is held.
    pub fn is_taken(&self, ip: Ipv4Addr) -> bool {
        self.taken.contains(&u32::from(ip))
    }

    /// Counts for the status.
    pub fn stats(&self) -> PoolStats {
        let held = self
            .taken
            .iter()
            .filter(|n| self.pool().is_assignable(Ipv4Addr::from(**n)))
            .count() as u32;
        PoolStats {
            allocated: self.taken.len() as u32,
            available: self.pool().capacity().saturating_sub(held),
        }
    }

    fn allocate_fixed(&mut self, fixed: FixedIp<'_>) -> Result<Ipv4Addr, IpamError> {
        let ip = ipv4::parse_ipv4(fixed.ip).map_err(|source| IpamError::FixedUnparsable {
            field: fixed.field.to_owned(),
            source,
        })?;
        self.pool.borrow().check_fixed(fixed.field, ip)?;
        if !self.taken.insert(u32::from(ip)) {
            return Err(IpamError::FixedInUse {
                field: fixed.field.to_owned(),
                ip,
                network: self.pool.borrow().network.clone(),
            });
        }
        Ok(ip)
    }

    fn allocate_next(&mut self) -> Result<Ipv4Addr, IpamError> {
        let pool: &Pool = self.pool.borrow();
        let mut candidate = self.hint;
        // Both sets are walked forward once from the hint, in step with the candidate.
        let mut taken = self.taken.range(candidate..).peekable();
        let mut reserved = pool.reserved.range(candidate..).peekable();
        while candidate <= pool.last {
            while taken.next_if(|n| **n < candidate).is_some() {}
            while reserved.next_if(|n| **n < candidate).is_some() {}
            let blocked = candidate == pool.gateway
                || taken.peek() == Some(&&candidate)
                || reserved.peek() == Some(&&candidate);
            if !blocked {
                break;
            }
            candidate += 1;
        }
        self.hint = candidate;
        if candidate > pool.last {
            return Err(IpamError::Exhausted {
                network: pool.network.clone(),
                cidr: pool.cidr(),
                allocated: self.taken.len() as u32,
            });
        }
        self.taken.insert(candidate);
        Ok(Ipv4Addr::from(candidate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_crds::Vlan;

    fn spec(cidr: &str, gateway: Option<&str>, reserved: &[&str]) -> NetworkSpec {
        NetworkSpec {
            vlan: Some(Vlan { id: 10 }),
            vxlan: None,
            cidr: cidr.into(),
            gateway: gateway.map(Into::into),
            mtu: None,
            reserved: reserved.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn fixed<'a>(field: &'a str, ip: &'a str) -> Option<FixedIp<'a>> {
        Some(FixedIp { field, ip })
    }

    #[test]
    fn a_slash_30_has_one_address_after_the_gateway() {
        let pool = Pool::new("t/net", &spec("10.0.0.0/30", None, &[])).unwrap();
        assert_eq!(pool.capacity(), 1);
        let mut a = Allocator::new(&pool, []);
        assert_eq!(
            a.stats(),
            PoolStats {
                allocated: 0,
                available: 1
            }
        );
        assert_eq!(a.allocate(None).unwrap(), ip("10.0.0.2"));
        assert_eq!(
            a.stats(),
            PoolStats {
                allocated: 1,
                available: 0
            }
        );
        let err = a.allocate(None).unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { allocated: 1, .. }));
        assert!(
            err.to_string()
                .starts_with("network t/net: every address of 10.0.0.0/30")
        );
    }

    #[test]
    fn a_slash_29_skips_reserved_and_gateway_and_exhausts_exactly() {
        // Hosts .9 to .14; gateway .9; .10 and .12 reserved: .11, .13, .14 remain.
        let s = spec("10.0.0.8/29", None, &["10.0.0.10", "10.0.0.12"]);
        let pool = Pool::new("t/net", &s).unwrap();
        assert_eq!(pool.capacity(), 3);
        let mut a = Allocator::new(&pool, []);
        let got: Vec<_> = (0..3).map(|_| a.allocate(None).unwrap()).collect();
        assert_eq!(got, [ip("10.0.0.11"), ip("10.0.0.13"), ip("10.0.0.14")]);
        assert!(matches!(a.allocate(None), Err(IpamError::Exhausted { .. })));
        // A reserved address may still be fixed; it counts as allocated, not against available.
        assert_eq!(
            a.allocate(fixed("spec.networks[0].ip", "10.0.0.10"))
                .unwrap(),
            ip("10.0.0.10")
        );
        assert_eq!(
            a.stats(),
            PoolStats {
                allocated: 4,
                available: 0
            }
        );
        // Giving one back makes exactly that one available again.
        assert!(a.release(ip("10.0.0.13")));
        assert_eq!(a.stats().available, 1);
        assert_eq!(a.allocate(None).unwrap(), ip("10.0.0.13"));
    }

    #[test]
    fn lowest_free_address_first_around_a_custom_gateway() {
        let s = spec("192.168.1.0/24", Some("192.168.1.3"), &[]);
        let pool = Pool::new("t/net", &s).unwrap();
        let held = [ip("192.168.1.1"), ip("192.168.1.4"), ip("192.168.1.200")];
        let mut a = Allocator::new(&pool, held);
        let got: Vec<_> = (0..3).map(|_| a.allocate(None).unwrap()).collect();
        assert_eq!(
            got,
            [ip("192.168.1.2"), ip("192.168.1.5"), ip("192.168.1.6")]
        );
        // Releasing below the hint is seen by the next allocation.
        a.release(ip("192.168.1.1"));
        assert_eq!(a.allocate(None).unwrap(), ip("192.168.1.1"));
        assert_eq!(pool.stats(&held.into_iter().collect()).allocated, 3);
        assert_eq!(pool.stats(&held.into_iter().collect()).available, 253 - 3);
    }

    #[test]
    fn fixed_addresses_are_checked_and_name_the_field() {
        let s = spec("10.1.0.0/24", None, &[]);
        let pool = Pool::new("t/net", &s).unwrap();
        let mut a = Allocator::new(&pool, [ip("10.1.0.7")]);
        let f = "spec.networks[1].ip";
        let cases = [
            (
                "10.1.1.5",
                "spec.networks[1].ip: 10.1.1.5 is outside 10.1.0.0/24, the CIDR of network t/net",
            ),
            (
                "10.1.0.0",
                "spec.networks[1].ip: 10.1.0.0 is the network address of network t/net",
            ),
            (
                "10.1.0.255",
                "spec.networks[1].ip: 10.1.0.255 is the broadcast address",
            ),
            (
                "10.1.0.1",
                "spec.networks[1].ip: 10.1.0.1 is the gateway of network t/net",
            ),
            (
                "10.1.0.7",
                "spec.networks[1].ip: 10.1.0.7 is already assigned to another interface on network t/net",
            ),
            ("10.1.0.300", "spec.networks[1].ip: "),
        ];
        for (value, msg) in cases {
            let err = a.allocate(fixed(f, value)).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{value}: {err}");
        }
        // None of the refusals took an address.
        assert_eq!(a.stats().allocated, 1);
        assert_eq!(a.allocate(fixed(f, "10.1.0.9")).unwrap(), ip("10.1.0.9"));
        // The next free one skips the fixed one.
        let mut b = Allocator::new(&pool, [ip("10.1.0.2")]);
        b.allocate(fixed(f, "10.1.0.3")).unwrap();
        assert_eq!(b.allocate(None).unwrap(), ip("10.1.0.4"));
    }

    #[test]
    fn reserved_addresses_must_be_inside_the_cidr() {
        let err = Pool::new(
            "t/net",
            &spec("10.0.0.0/24", None, &["10.0.0.5", "10.9.0.5"]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "network t/net: spec.reserved[1]: 10.9.0.5 is outside 10.0.0.0/24"
        );
        let err = Pool::new("t/net", &spec("10.0.0.1/24", None, &[])).unwrap_err();
        assert!(matches!(err, IpamError::Spec { .. }), "{err}");
    }

    #[test]
    fn a_slash_16_fills_up_to_its_last_address() {
        // 65534 host addresses, one gateway, two reserved: 65531 to hand out. A quadratic scan
        // would take billions of steps here.
        let s = spec("172.16.0.0/16", None, &["172.16.0.2", "172.16.255.254"]);
        let pool = Pool::new("t/big", &s).unwrap();
        assert_eq!(pool.capacity(), 65531);
        let mut a = Allocator::new(&pool, []);
        let mut last = Ipv4Addr::UNSPECIFIED;
        for _ in 0..65531 {
            let next = a.allocate(None).unwrap();
            assert!(next > last);
            last = next;
        }
        assert_eq!(last, ip("172.16.255.253"));
        assert!(matches!(a.allocate(None), Err(IpamError::Exhausted { .. })));
        assert_eq!(a.stats().available, 0);
        // A fresh allocator over 60000 held addresses with a hole near the end finds the hole.
        let held = (3u32..60_003).map(|i| Ipv4Addr::from(u32::from(ip("172.16.0.0")) + i));
        let held: BTreeSet<_> = held.filter(|h| *h != ip("172.16.200.1")).collect();
        let mut b = Allocator::new(&pool, held.iter().copied());
        assert_eq!(b.allocate(None).unwrap(), ip("172.16.200.1"));
        assert_eq!(
            b.allocate(None).unwrap(),
            Ipv4Addr::from(u32::from(ip("172.16.0.0")) + 60_003)
        );
    }
}
