//! String interning: labels, domains, groups and image digests become small integer ids so that
//! per-host and per-VM state holds 4-byte ids instead of strings.

use std::collections::HashMap;

/// An interned string.
pub(crate) type Sym = u32;

/// A reference-counted interner: ids of released strings are reused. An interner whose callers
/// never release is simply append-only (label strings are, see `Engine`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, Sym>,
    /// By id: the string and how many holders it has (0 = free slot).
    slots: Vec<(Box<str>, u32)>,
    free: Vec<Sym>,
}

impl Interner {
    /// The id of `s`, taking one reference to it.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            let refs = &mut self.slots[id as usize].1;
            *refs = refs.saturating_add(1);
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = (s.into(), 1);
                id
            }
            None => {
                self.slots.push((s.into(), 1));
                Sym::try_from(self.slots.len() - 1).unwrap_or(Sym::MAX)
            }
        };
        self.ids.insert(s.into(), id);
        id
    }

    /// The id of `s` if some holder has it (never allocates).
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    /// The string of a live id.
    pub fn name(&self, id: Sym) -> &str {
        self.slots.get(id as usize).map_or("", |(s, _)| s)
    }

    /// Drops one reference; the id becomes free when the last one goes.
    pub fn release(&mut self, id: Sym) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        if slot.1 == 0 {
            return;
        }
        slot.1 -= 1;
        if slot.1 == 0 {
            self.ids.remove(&slot.0);
            slot.0 = "".into();
            self.free.push(id);
        }
    }

    /// Live strings.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Rough heap use in bytes.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.slots.iter().map(|(s, _)| 2 * s.len()).sum();
        self.ids.capacity() * (size_of::<(Box<str>, Sym)>() + 1)
            + self.slots.capacity() * size_of::<(Box<str>, u32)>()
            + self.free.capacity() * size_of::<Sym>()
            + strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shared_counted_and_reused() {
        let mut i = Interner::default();
        let a = i.intern("a");
        assert_eq!(i.intern("a"), a);
        let b = i.intern("b");
        assert_ne!(a, b);
        assert_eq!((i.get("a"), i.name(b)), (Some(a), "b"));
        i.release(a);
        assert_eq!(i.get("a"), Some(a), "one holder left");
        i.release(a);
        assert_eq!((i.get("a"), i.len()), (None, 1));
        let c = i.intern("c");
        assert_eq!(c, a, "freed id reused");
        assert_eq!(i.name(c), "c");
        i.release(a);
        i.release(a);
        assert_eq!(i.len(), 1, "over-release is ignored");
    }
}
