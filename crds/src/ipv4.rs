//! IPv4 addresses and CIDR blocks as the network kinds spell them. IPv4 only in this version.
//!
//! As everywhere in this crate each rule exists in both layers: a regex pattern and CEL rule text
//! for the CRD schema, `std::net` parsing and integer arithmetic for `validate()`. The CEL text
//! uses only standard CEL plus `split` from the Kubernetes strings library, and treats an address
//! as the integer `a*2^24 + b*2^16 + c*2^8 + d`, so "same block" and "host part" are plain
//! division and remainder by the block size.

use std::net::Ipv4Addr;

use thiserror::Error;

use crate::validation::{Checker, shown};

/// Dotted-quad IPv4 address, unanchored: four octets without leading zeros, as
/// `std::net::Ipv4Addr` parses them. A macro so that patterns can be `concat!`ed from it.
macro_rules! dotted_quad {
    () => {
        concat!(
            "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
            "([.](25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
        )
    };
}
pub(crate) use dotted_quad;

/// An IPv4 address in dotted-quad form, no leading zeros (`192.0.2.1`).
pub const IPV4_PATTERN: &str = concat!("^", dotted_quad!(), "$");
/// Longest dotted-quad address (`255.255.255.255`).
pub const IPV4_MAX: usize = 15;
/// An IPv4 CIDR block with any prefix length, 0 to 32 (`198.51.100.0/24`, `0.0.0.0/0`).
pub const IPV4_CIDR_PATTERN: &str = concat!("^", dotted_quad!(), "/([0-9]|[12][0-9]|3[0-2])$");
/// Longest CIDR block (`255.255.255.255/32`).
pub const IPV4_CIDR_MAX: usize = 18;

/// Why a string is not the IPv4 address or block wanted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ipv4Error {
    #[error("{0:?} is not an IPv4 address in dotted-quad form (IPv4 only in this version)")]
    Address(String),
    #[error("{0:?} is not an IPv4 CIDR block of the form a.b.c.d/prefix")]
    Cidr(String),
    #[error("prefix length /{prefix} is outside /{min} to /{max}")]
    PrefixLength { prefix: u8, min: u8, max: u8 },
    #[error(
        "{block:?} is not a network address: its host bits are set (the block is {network}/{prefix})"
    )]
    HostBits {
        block: String,
        network: Ipv4Addr,
        prefix: u8,
    },
}

/// Parses a dotted-quad IPv4 address exactly as [`IPV4_PATTERN`] accepts it.
pub fn parse_ipv4(value: &str) -> Result<Ipv4Addr, Ipv4Error> {
    value
        .parse()
        .map_err(|_| Ipv4Error::Address(value.to_owned()))
}

/// Parses `a.b.c.d/prefix` exactly as [`IPV4_CIDR_PATTERN`] accepts it: any prefix from 0 to 32,
/// written without sign or leading zeros. Host bits are not checked (see [`check_network_address`]).
pub fn parse_ipv4_cidr(value: &str) -> Result<(Ipv4Addr, u8), Ipv4Error> {
    let bad = || Ipv4Error::Cidr(value.to_owned());
    let (addr, prefix) = value.split_once('/').ok_or_else(bad)?;
    // `u8::from_str` would take `+24` and `024`; the schema pattern does not.
    let canonical = !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && (prefix == "0" || !prefix.starts_with('0'));
    let prefix: u8 = match prefix.parse() {
        Ok(p) if canonical && p <= 32 => p,
        _ => return Err(bad()),
    };
    let addr = addr.parse().map_err(|_| bad())?;
    Ok((addr, prefix))
}

/// `Ok` when `addr` is the network address of its `/prefix` block (every host bit zero).
pub fn check_network_address(addr: Ipv4Addr, prefix: u8) -> Result<(), Ipv4Error> {
    let network = network_address(addr, prefix);
    if network == addr {
        Ok(())
    } else {
        Err(Ipv4Error::HostBits {
            block: format!("{addr}/{prefix}"),
            network,
            prefix,
        })
    }
}

/// Number of addresses in a `/prefix` block (`2^(32 - prefix)`; prefixes above 32 count as 32).
pub fn block_size(prefix: u8) -> u64 {
    1u64 << (32 - u32::from(prefix.min(32)))
}

/// The first address of the `/prefix` block holding `addr`.
pub fn network_address(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & netmask(prefix))
}

/// The last address of the `/prefix` block holding `addr`.
pub fn broadcast_address(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) | !netmask(prefix))
}

/// Whether `ip` is inside the `/prefix` block holding `network`.
pub fn block_contains(network: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    network_address(network, prefix) == network_address(ip, prefix)
}

/// The netmask of a `/prefix` block as bits (prefixes above 32 count as 32).
fn netmask(prefix: u8) -> u32 {
    // A shift by 32 (prefix 0) overflows: no network bits.
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// Checks an address field; returns it when well-formed (the schema pattern would accept it).
pub(crate) fn check_ipv4(c: &mut Checker, path: &str, value: &str) -> Option<Ipv4Addr> {
    match parse_ipv4(value) {
        Ok(ip) => Some(ip),
        Err(_) => {
            c.push(
                path,
                format!(
                    "must be an IPv4 address like 192.0.2.1 (IPv4 only in this version), got {}",
                    shown(value)
                ),
            );
            None
        }
    }
}

/// Checks a CIDR field: the form and prefix bounds (the schema pattern), then that it is a
/// network address (the field's CEL rule, [`cel_network_address_rule`]). Returns the block when
/// its form is right, host bits or not: rules elsewhere still judge such a block.
pub(crate) fn check_cidr(
    c: &mut Checker,
    path: &str,
    value: &str,
    min_prefix: u8,
    max_prefix: u8,
) -> Option<(Ipv4Addr, u8)> {
    let block = match parse_ipv4_cidr(value) {
        Ok((addr, prefix)) if (min_prefix..=max_prefix).contains(&prefix) => (addr, prefix),
        _ => {
            c.push(
                path,
                format!(
                    "must be an IPv4 CIDR block a.b.c.d/prefix with prefix length {min_prefix} to {max_prefix} (IPv4 only in this version), got {}",
                    shown(value)
                ),
            );
            return None;
        }
    };
    if let Err(e) = check_network_address(block.0, block.1) {
        c.push(path, format!("{NETWORK_ADDRESS_MESSAGE}: {e}"));
    }
    Some(block)
}

/// Message of [`cel_network_address_rule`].
pub const NETWORK_ADDRESS_MESSAGE: &str =
    "must be a network address (the bits after the prefix length must be zero)";

/// CEL: the dotted-quad string expression `ip` as an int.
pub(crate) fn cel_value(ip: &str) -> String {
    format!(
        "(int({ip}.split('.')[0]) * 16777216 + int({ip}.split('.')[1]) * 65536 + int({ip}.split('.')[2]) * 256 + int({ip}.split('.')[3]))"
    )
}

/// CEL: the number of addresses in a block whose prefix length is the int expression `prefix`
/// (0 to 32), by lookup: CEL has no exponentiation.
pub(crate) fn cel_block_size(prefix: &str) -> String {
    let sizes: Vec<String> = (0..=32u8).map(|p| block_size(p).to_string()).collect();
    format!("[{}][{prefix}]", sizes.join(", "))
}

/// CEL: the address part of the CIDR string expression `cidr`, as an int.
pub(crate) fn cel_cidr_address(cidr: &str) -> String {
    cel_value(&format!("{cidr}.split('/')[0]"))
}

/// CEL: the block size of the CIDR string expression `cidr`.
pub(crate) fn cel_cidr_size(cidr: &str) -> String {
    cel_block_size(&format!("int({cidr}.split('/')[1])"))
}

/// CEL rule on a CIDR string field whose schema pattern is `pattern`: the block is written by its
/// network address. Values the pattern refuses pass (the API server runs CEL on them too, and the
/// pattern already reports them).
pub(crate) fn cel_network_address_rule(pattern: &str) -> String {
    format!(
        "!self.matches('{pattern}') || {} % {} == 0",
        cel_cidr_address("self"),
        cel_cidr_size("self")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    const SAMPLES: [&str; 22] = [
        "0.0.0.0",
        "10.0.0.1",
        "192.168.100.254",
        "255.255.255.255",
        "256.0.0.1",
        "01.2.3.4",
        "1.2.3.04",
        "1.2.3",
        "1.2.3.4.5",
        "1.2.3.",
        " 1.2.3.4",
        "1.2.3.4 ",
        "+1.2.3.4",
        "1..3.4",
        "a.b.c.d",
        "::1",
        "",
        "1.2.3.4/24",
        "249.250.199.100",
        "100.200.99.9",
        "1.2.3.255",
        "1.2.3.2555",
    ];

    #[test]
    fn address_pattern_and_parser_agree() {
        let re = Regex::new(IPV4_PATTERN).unwrap();
        for s in SAMPLES {
            assert_eq!(re.is_match(s), parse_ipv4(s).is_ok(), "{s:?}");
        }
        assert!(parse_ipv4("10.0.0.1").is_ok() && parse_ipv4("10.0.0.01").is_err());
    }

    #[test]
    fn cidr_pattern_and_parser_agree() {
        let re = Regex::new(IPV4_CIDR_PATTERN).unwrap();
        let prefixes = [
            "0", "8", "24", "32", "33", "024", "+24", "", "-1", "2 ", "00",
        ];
        for addr in SAMPLES {
            for p in prefixes {
                let s = format!("{addr}/{p}");
                assert_eq!(re.is_match(&s), parse_ipv4_cidr(&s).is_ok(), "{s:?}");
            }
            assert_eq!(re.is_match(addr), parse_ipv4_cidr(addr).is_ok(), "{addr:?}");
        }
        assert_eq!(
            parse_ipv4_cidr("10.1.0.0/16"),
            Ok((Ipv4Addr::new(10, 1, 0, 0), 16))
        );
        assert!(parse_ipv4_cidr("10.1.0.0").is_err() && parse_ipv4_cidr("1.2.3.4/24").is_ok());
    }

    #[test]
    fn block_arithmetic() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(network_address(a, 24), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(broadcast_address(a, 24), Ipv4Addr::new(10, 1, 2, 255));
        assert_eq!(network_address(a, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(broadcast_address(a, 0), Ipv4Addr::BROADCAST);
        assert_eq!(network_address(a, 32), a);
        assert_eq!(block_size(0), 1 << 32);
        assert_eq!(block_size(30), 4);
        assert!(block_contains(
            Ipv4Addr::new(10, 1, 2, 0),
            23,
            Ipv4Addr::new(10, 1, 3, 9)
        ));
        assert!(!block_contains(
            Ipv4Addr::new(10, 1, 2, 0),
            24,
            Ipv4Addr::new(10, 1, 3, 9)
        ));
        assert_eq!(
            check_network_address(Ipv4Addr::new(10, 1, 2, 0), 24),
            Ok(())
        );
        let e = check_network_address(a, 16).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.1.2.3/16\" is not a network address: its host bits are set (the block is 10.1.0.0/16)"
        );
    }

    #[test]
    fn cel_text_is_safe_to_embed() {
        // Patterns are embedded in single-quoted CEL strings: no quote or backslash may occur.
        for p in [IPV4_PATTERN, IPV4_CIDR_PATTERN] {
            assert!(!p.contains('\'') && !p.contains('\\'), "{p}");
        }
        assert!(cel_block_size("p").starts_with("[4294967296, 2147483648, "));
        assert!(cel_block_size("p").ends_with(", 2, 1][p]"));
    }
}
