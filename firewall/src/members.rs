//! The membership fast path. A host whose member sets hold 100,000 addresses must not
//! recompile and diff all of them when one VM joins or leaves a group: when two inputs differ
//! only in group members, the changes are found by walking the sorted member sets
//! and applied to the compiled ruleset in place, and only the changed elements are rendered.
//! The result equals compiling the new input and taking [`crate::element_delta`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use nftables::batch::Batch;

use crate::model::HostFirewall;
use crate::names;
use crate::render::{Delta, element_obj, key_expr};
use crate::ruleset::{Atom, Family, Ruleset};

/// Addresses that joined and left one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberChange {
    pub group: String,
    pub added: Vec<Ipv4Addr>,
    pub removed: Vec<Ipv4Addr>,
}

/// (added, removed) between two sets: each side is a linear walk over the sorted sets.
fn set_diff(old: &BTreeSet<Ipv4Addr>, new: &BTreeSet<Ipv4Addr>) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
    (
        new.difference(old).copied().collect(),
        old.difference(new).copied().collect(),
    )
}

/// The member changes from `old` to `new`, or `None` when anything but members differs (ports,
/// group rules, or which groups have known members): then only a recompile is correct.
pub fn member_changes(old: &HostFirewall, new: &HostFirewall) -> Option<Vec<MemberChange>> {
    if old.ports != new.ports
        || old.groups != new.groups
        || !old.members.keys().eq(new.members.keys())
    {
        return None;
    }
    let mut out = Vec::new();
    for ((group, o), n) in old.members.iter().zip(new.members.values()) {
        if o == n {
            continue;
        }
        let (added, removed) = set_diff(o, n);
        out.push(MemberChange {
            group: group.clone(),
            added,
            removed,
        });
    }
    Some(out)
}

/// Applies `changes` to `fw` and to `rs` (compiled from `fw`), returning the element-only
/// transaction for the kernel. Groups no rule on this host names as a remote have no set:
/// their members are recorded in `fw` and render nothing.
pub fn apply_member_changes(
    rs: &mut Ruleset,
    fw: &mut HostFirewall,
    changes: &[MemberChange],
) -> Delta {
    let mut b = Batch::new();
    let (mut added, mut deleted) = (0, 0);
    for c in changes {
        let members = fw.members.entry(c.group.clone()).or_default();
        for ip in &c.removed {
            members.remove(ip);
        }
        members.extend(c.added.iter().copied());
        let set = names::group_name("m", &c.group);
        let Some(elems) = rs.elements.get_mut(&(Family::Inet, set.clone())) else {
            continue;
        };
        let dels: Vec<_> = c
            .removed
            .iter()
            .filter(|ip| elems.remove(&vec![Atom::Ip(**ip)]).is_some())
            .map(|ip| key_expr(&vec![Atom::Ip(*ip)]))
            .collect();
        let adds: Vec<_> = c
            .added
            .iter()
            .filter(|ip| elems.insert(vec![Atom::Ip(**ip)], None).is_none())
            .map(|ip| key_expr(&vec![Atom::Ip(*ip)]))
            .collect();
        if !dels.is_empty() {
            deleted += dels.len();
            b.delete(element_obj(Family::Inet, &set, dels));
        }
        if !adds.is_empty() {
            added += adds.len();
            b.add(element_obj(Family::Inet, &set, adds));
        }
    }
    Delta {
        batch: b.to_nftables(),
        added,
        deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[u8]) -> BTreeSet<Ipv4Addr> {
        xs.iter().map(|x| Ipv4Addr::new(10, 0, 0, *x)).collect()
    }

    fn ips(xs: &[u8]) -> Vec<Ipv4Addr> {
        set(xs).into_iter().collect()
    }

    /// old, new, added, removed
    type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8]);

    #[test]
    fn set_diff_finds_every_join_and_leave() {
        let cases: [Case; 6] = [
            (&[], &[], &[], &[]),
            (&[1, 2, 3], &[1, 2, 3], &[], &[]),
            (&[], &[1, 2], &[1, 2], &[]),
            (&[1, 2], &[], &[], &[1, 2]),
            (&[1, 3, 5, 7], &[2, 3, 4, 7, 9], &[2, 4, 9], &[1, 5]),
            (&[5, 6], &[1, 2], &[1, 2], &[5, 6]),
        ];
        for (old, new, added, removed) in cases {
            assert_eq!(
                set_diff(&set(old), &set(new)),
                (ips(added), ips(removed)),
                "{old:?} -> {new:?}"
            );
        }
    }
}
