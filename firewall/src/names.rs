//! Stable names for what the compiler creates: the same group or profile gets the same chain,
//! set and mark on every compile and every host, so unchanged structure compares equal and a
//! membership change stays an element delta. Names are readable where the id allows it and
//! carry a short hash so two ids never share a name.

/// FNV-1a, 64 bit: stable across builds and platforms (std's hasher is not).
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn readable(id: &str, max: usize) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// Chain or set name for a security group id (`namespace/name`): `<prefix>_<readable>_<hash>`.
pub fn group_name(prefix: &str, group: &str) -> String {
    format!(
        "{prefix}_{}_{:08x}",
        readable(group, 40),
        fnv64(group.as_bytes()) as u32
    )
}

/// Top byte of every packet mark Yun sets (`0x59`, "Y"). The low 23 bits are the profile;
/// bit 23 ([`INGRESS_BIT`]) says the mark names the destination port's profile.
pub const MARK_BASE: u32 = 0x5900_0000;
const MARK_MASK: u32 = 0x007f_ffff;
/// Set on marks that name the destination port's profile (written on delivery to a port).
pub const INGRESS_BIT: u32 = 0x0080_0000;

/// The profile key of a port: its sorted group ids, one per line ("" = the default policy).
pub fn profile_key<'a>(groups: impl IntoIterator<Item = &'a String>) -> String {
    groups
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Marks for a host's profiles, given in sorted order: the hash of the key, probing forward
/// past a mark already taken (0 is never used: the ruleset reads mark 0 as "no binding").
pub fn profile_marks<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<(String, u32)> {
    let mut taken = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for key in keys {
        let mut low = (fnv64(key.as_bytes()) as u32) & MARK_MASK;
        while low == 0 || taken.contains(&low) {
            low = low.wrapping_add(1) & MARK_MASK;
        }
        taken.insert(low);
        out.push((key.to_owned(), MARK_BASE | low));
    }
    out
}

/// Chain names of a profile by its mark: `pe_<mark>` (egress) and `pi_<mark>` (ingress).
pub fn profile_chain(direction: Direction, mark: u32) -> String {
    format!("{}_{:06x}", direction.profile_prefix(), mark & MARK_MASK)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn profile_prefix(self) -> &'static str {
        match self {
            Direction::Ingress => "pi",
            Direction::Egress => "pe",
        }
    }
    pub fn group_prefix(self) -> &'static str {
        match self {
            Direction::Ingress => "gi",
            Direction::Egress => "ge",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_stable_readable_and_distinct() {
        let a = group_name("gi", "tenant-a/web");
        assert_eq!(a, group_name("gi", "tenant-a/web"));
        assert!(a.starts_with("gi_tenant_a_web_"), "{a}");
        // Same readable part, different ids: the hash keeps them apart.
        assert_ne!(group_name("gi", "a/b-c"), group_name("gi", "a/b_c"));
        assert!(group_name("m", &"x".repeat(300)).len() < 64);
    }

    #[test]
    fn profile_marks_are_unique_nonzero_and_in_yun_range() {
        let keys: Vec<String> = (0..2000).map(|i| format!("ns/g{i}")).collect();
        let marks = profile_marks(keys.iter().map(String::as_str));
        let set: std::collections::BTreeSet<u32> = marks.iter().map(|(_, m)| *m).collect();
        assert_eq!(set.len(), keys.len());
        assert!(
            set.iter()
                .all(|m| m & !MARK_MASK == MARK_BASE && m & MARK_MASK != 0 && m & INGRESS_BIT == 0)
        );
        // Stable: the same keys give the same marks.
        assert_eq!(marks, profile_marks(keys.iter().map(String::as_str)));
    }
}
