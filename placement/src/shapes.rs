//! VM shapes: the resources and interned scheduling of a VM. VMs of one shape are an equivalence
//! class; each VM stores a 4-byte shape id instead of its own copy (shapes are refcounted).

use yun_fleet::{Qos, Resources};

use crate::groups::Membership;
use crate::idmap::IdMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub resources: Resources,
    pub qos: Qos,
    pub groups: Membership,
    /// Kept so that two VMs with different skews are distinct shapes (exact round trip).
    pub max_skew: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Shapes {
    ids: IdMap<Shape, u32>,
    /// By id: the shape and its number of VMs (0 = free slot).
    slots: Vec<(Shape, u32)>,
    free: Vec<u32>,
}

impl Shapes {
    /// The id of `shape`, counting one more VM; `true` if the shape is new.
    pub fn acquire(&mut self, shape: Shape) -> (u32, bool) {
        if let Some(&id) = self.ids.get(&shape) {
            self.slots[id as usize].1 += 1;
            return (id, false);
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = (shape, 1);
                id
            }
            None => {
                self.slots.push((shape, 1));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.ids.insert(shape, id);
        (id, true)
    }

    pub fn get(&self, id: u32) -> Option<&Shape> {
        self.slots.get(id as usize).map(|(s, _)| s)
    }

    /// Counts one VM less; returns the shape when that was its last VM.
    pub fn release(&mut self, id: u32) -> Option<Shape> {
        let slot = self.slots.get_mut(id as usize)?;
        if slot.1 == 0 {
            return None;
        }
        slot.1 -= 1;
        if slot.1 > 0 {
            return None;
        }
        let shape = slot.0;
        self.ids.remove(&shape);
        self.free.push(id);
        Some(shape)
    }

    pub fn live(&self) -> usize {
        self.ids.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity() * (size_of::<(Shape, u32)>() + 1)
            + self.slots.capacity() * size_of::<(Shape, u32)>()
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_shared_and_freed_with_their_last_vm() {
        let mut s = Shapes::default();
        let shape = Shape {
            resources: Resources {
                cpus: 1,
                memory_mib: 512,
                disk_gib: 1,
            },
            qos: Qos::Burstable,
            groups: Membership {
                affinity: None,
                anti_affinity: Some(3),
                spread: None,
            },
            max_skew: 0,
        };
        let (a, new) = s.acquire(shape);
        assert!(new);
        assert_eq!(s.acquire(shape), (a, false));
        assert_eq!(s.release(a), None);
        assert_eq!(s.release(a), Some(shape));
        assert_eq!((s.live(), s.release(a)), (0, None));
        let other = Shape {
            qos: Qos::Guaranteed,
            ..shape
        };
        assert_eq!(s.acquire(other), (a, true), "slot reused");
        assert_eq!(s.get(a), Some(&other));
    }
}
