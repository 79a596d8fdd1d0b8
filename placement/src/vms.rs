//! Committing and releasing VMs: allocation, group counts and index keys move together.

use std::sync::Arc;

use yun_fleet::{Qos, Resources, Scheduling};

use crate::engine::{Engine, EngineError, VmEntry};
use crate::groups::{Membership, level};
use crate::shapes::Shape;

impl Engine {
    /// Records that VM `uid` holds `resources` on `host`. No fit check: the caller commits what
    /// it decided (or rebuilds state from etcd after a restart, which may include hosts that
    /// are not Ready or are over capacity). Idempotent for the same uid on the same host (the
    /// first recorded resources stay); an error if the uid is on another host.
    pub fn assign(
        &mut self,
        uid: &str,
        host: &str,
        resources: Resources,
        scheduling: &Scheduling,
    ) -> Result<(), EngineError> {
        let idx = self.find(host)?;
        if let Some(vm) = self.vms.get(uid) {
            if vm.host == idx {
                return Ok(());
            }
            return Err(EngineError::AlreadyAssigned {
                uid: uid.to_string(),
                host: self
                    .hosts
                    .get(vm.host)
                    .map(|h| h.name.to_string())
                    .unwrap_or_default(),
            });
        }
        let shape_id = self.acquire_shape(resources, scheduling);
        let Some(shape) = self.shapes.get(shape_id).copied() else {
            return Ok(());
        };
        self.unindex(idx);
        let Some(h) = self.hosts.get_mut(idx) else {
            return Ok(());
        };
        h.alloc.total = h.alloc.total.plus(resources);
        if shape.qos == Qos::Guaranteed {
            h.alloc.guaranteed = h.alloc.guaranteed.plus(resources);
        }
        h.alloc.vms = h.alloc.vms.saturating_add(1);
        let uid: Arc<str> = uid.into();
        h.vms.push(uid.clone());
        self.groups.add(&shape.groups, idx, &h.domains);
        self.vms.insert(
            uid,
            VmEntry {
                host: idx,
                shape: shape_id,
            },
        );
        self.index(idx);
        Ok(())
    }

    /// Releases VM `uid`; returns the host it was on.
    pub fn unassign(&mut self, uid: &str) -> Option<String> {
        let (uid, vm) = self.vms.remove_entry(uid)?;
        let shape = self.shapes.get(vm.shape).copied();
        self.unindex(vm.host);
        let h = self.hosts.get_mut(vm.host)?;
        if let Some(shape) = shape {
            let r = shape.resources;
            h.alloc.total = h.alloc.total.minus(r);
            if shape.qos == Qos::Guaranteed {
                h.alloc.guaranteed = h.alloc.guaranteed.minus(r);
            }
            h.alloc.vms = h.alloc.vms.saturating_sub(1);
            self.groups.remove(&shape.groups, vm.host, &h.domains);
        }
        // The host's list shares the uid's allocation: find it by pointer, not by string.
        if let Some(pos) = h.vms.iter().position(|u| Arc::ptr_eq(u, &uid)) {
            h.vms.swap_remove(pos);
        }
        let name = h.name.to_string();
        self.index(vm.host);
        self.release_shape(vm.shape);
        Some(name)
    }

    /// The shape id of a VM, interning its group names (one reference per new shape).
    fn acquire_shape(&mut self, resources: Resources, scheduling: &Scheduling) -> u32 {
        let mut group = |g: &str| self.group_names.intern(g);
        let groups = Membership {
            affinity: scheduling.affinity_group.as_deref().map(&mut group),
            anti_affinity: scheduling.anti_affinity_group.as_deref().map(&mut group),
            spread: scheduling
                .spread
                .as_ref()
                .map(|s| (group(&s.group), level(s.topology) as u8)),
        };
        let shape = Shape {
            resources,
            qos: scheduling.qos,
            groups,
            max_skew: scheduling.spread.as_ref().map_or(0, |s| s.max_skew),
        };
        let (id, new) = self.shapes.acquire(shape);
        if !new {
            // The existing shape already holds references to these names.
            self.release_group_names(&groups);
        }
        id
    }

    fn release_shape(&mut self, id: u32) {
        if let Some(shape) = self.shapes.release(id) {
            self.release_group_names(&shape.groups);
        }
    }

    fn release_group_names(&mut self, m: &Membership) {
        let names = [m.affinity, m.anti_affinity, m.spread.map(|(g, _)| g)];
        for g in names.into_iter().flatten() {
            self.group_names.release(g);
        }
    }
}
