//! A fast hasher for maps keyed by engine-internal integer ids (interned strings, host
//! indexes, shapes). These keys are dense small integers the engine assigns itself, so the
//! DoS resistance of the default SipHash buys nothing here and its cost shows in every filter.
//! Maps keyed by outside strings (host names, VM uids) keep the default hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate word hasher: each word is mixed in with a rotate, xor and a multiply by an
/// odd 64-bit constant (so distinct single words give distinct hashes).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0xA076_1D64_78BD_642F;

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Fold the well-mixed high half into the low bits the table indexes with.
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

/// A `HashMap` for internal ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn dense_ids_spread_over_buckets() {
        let b = BuildHasherDefault::<IdHasher>::default();
        // Low 10 bits of the hashes of 0..1024 and of (id, host) pairs: few collisions.
        let low: HashSet<u64> = (0u32..1024).map(|i| b.hash_one(i) & 1023).collect();
        assert!(low.len() > 600, "{}", low.len());
        let pairs: HashSet<u64> = (0u32..32)
            .flat_map(|g| (0u32..32).map(move |h| (g, h)))
            .map(|p| b.hash_one(p) & 1023)
            .collect();
        assert!(pairs.len() > 600, "{}", pairs.len());
        let mut m: IdMap<(u32, u32), u32> = IdMap::default();
        m.insert((1, 2), 3);
        assert_eq!(m.get(&(1, 2)), Some(&3));
    }
}
