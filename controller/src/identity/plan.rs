//! What to do about a VM's Keystone identity on this pass: a pure function of the request in
//! the spec, the record on the fleet bus, what the agent reports delivered, and the time.
//!
//! Lifecycle of one VM's credentials (generation `g` lives in Keystone user
//! `yun-vm-<uid>-g<g>`):
//!
//! ```text
//!   (none) --Issue g=1--> current g
//!   current g --age >= rotation or roles changed--> current g+1, retiring g     (Rotate)
//!   current g+1, retiring g --agent delivered g+1--> current g+1                 (Retire g)
//!   any --request removed from the spec--> (none)                                (Drop)
//! ```
//!
//! A rotation never starts while an older generation is still retiring, so at most two
//! credentials of a VM are valid at once, and the older one only until the newer is in the
//! guest's seed.

use std::time::Duration;

use jiff::Timestamp;
use yun_fleet::VmIdentityRecord;

/// The next identity step for one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPlan {
    /// The VM asks for no identity and has none.
    Nothing,
    /// The current credential stays.
    Keep,
    /// Create generation `generation` (the first, or after a lost record).
    Issue { generation: u64 },
    /// Create generation `generation`; the current one (`retiring`) stays valid until the
    /// agent delivers the new one.
    Rotate { generation: u64, retiring: u64 },
    /// The agent delivered the current generation: revoke `generation`.
    Retire { generation: u64 },
    /// The spec no longer asks for an identity: revoke every generation the record names.
    Drop { generations: Vec<u64> },
}

/// Decides the step. `roles` is the spec's request (sorted, deduplicated by the caller), or
/// `None` when the VM asks for no identity; `delivered` is `VmObserved.identity_generation`.
pub fn plan(
    roles: Option<&[String]>,
    current: Option<&VmIdentityRecord>,
    delivered: Option<u64>,
    now: Timestamp,
    rotation: Duration,
) -> IdentityPlan {
    let (roles, current) = match (roles, current) {
        (None, None) => return IdentityPlan::Nothing,
        (None, Some(cur)) => {
            let mut generations = vec![cur.generation];
            generations.extend(cur.retiring);
            return IdentityPlan::Drop { generations };
        }
        (Some(_), None) => return IdentityPlan::Issue { generation: 1 },
        (Some(roles), Some(cur)) => (roles, cur),
    };
    if let Some(old) = current.retiring {
        return if delivered.is_some_and(|d| d >= current.generation) {
            IdentityPlan::Retire { generation: old }
        } else {
            IdentityPlan::Keep
        };
    }
    let due = match current.issued_at.parse::<Timestamp>() {
        // An unreadable time is treated as due: a fresh credential is the safe side.
        Err(_) => true,
        Ok(issued) => now.duration_since(issued).unsigned_abs() >= rotation || issued > now,
    };
    if due || current.roles != roles {
        IdentityPlan::Rotate {
            generation: current.generation + 1,
            retiring: current.generation,
        }
    } else {
        IdentityPlan::Keep
    }
}

/// The Keystone user (and application credential) name of one generation of a VM's identity.
pub fn vm_user_name(uid: &str, generation: u64) -> String {
    format!("yun-vm-{uid}-g{generation}")
}

/// The requested roles as the record stores them: sorted, without duplicates.
pub fn normalized_roles(roles: &[String]) -> Vec<String> {
    let mut r = roles.to_vec();
    r.sort();
    r.dedup();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use yun_fleet::SealedBox;

    const DAY: Duration = Duration::from_secs(86_400);

    fn record(generation: u64, issued_at: &str, retiring: Option<u64>) -> VmIdentityRecord {
        VmIdentityRecord {
            generation,
            credential_id: format!("cred-{generation}"),
            project_id: "p1".into(),
            issued_at: issued_at.into(),
            roles: vec!["member".into()],
            retiring,
            sealed: SealedBox {
                alg: "x".into(),
                enc: "e".into(),
                ciphertext: "c".into(),
            },
        }
    }

    fn now() -> Timestamp {
        "2026-11-24T12:00:00Z".parse().unwrap()
    }

    fn member() -> Vec<String> {
        vec!["member".into()]
    }

    #[test]
    fn first_request_issues_generation_one_and_no_request_does_nothing() {
        assert_eq!(
            plan(Some(&member()), None, None, now(), DAY),
            IdentityPlan::Issue { generation: 1 }
        );
        assert_eq!(plan(None, None, None, now(), DAY), IdentityPlan::Nothing);
    }

    #[test]
    fn a_young_credential_is_kept_and_an_old_one_rotated() {
        let young = record(3, "2026-11-24T00:00:00Z", None);
        assert_eq!(
            plan(Some(&member()), Some(&young), Some(3), now(), DAY),
            IdentityPlan::Keep
        );
        let old = record(3, "2026-11-23T12:00:00Z", None);
        assert_eq!(
            plan(Some(&member()), Some(&old), Some(3), now(), DAY),
            IdentityPlan::Rotate {
                generation: 4,
                retiring: 3
            },
            "exactly one period old is due"
        );
    }

    #[test]
    fn the_old_generation_is_retired_only_after_delivery() {
        let rotated = record(4, "2026-11-24T11:00:00Z", Some(3));
        assert_eq!(
            plan(Some(&member()), Some(&rotated), Some(3), now(), DAY),
            IdentityPlan::Keep
        );
        assert_eq!(
            plan(Some(&member()), Some(&rotated), None, now(), DAY),
            IdentityPlan::Keep
        );
        assert_eq!(
            plan(Some(&member()), Some(&rotated), Some(4), now(), DAY),
            IdentityPlan::Retire { generation: 3 }
        );
    }

    #[test]
    fn no_second_rotation_while_one_is_retiring() {
        let rotated_long_ago = record(4, "2026-01-01T00:00:00Z", Some(3));
        assert_eq!(
            plan(
                Some(&member()),
                Some(&rotated_long_ago),
                Some(3),
                now(),
                DAY
            ),
            IdentityPlan::Keep
        );
    }

    #[test]
    fn changed_roles_rotate_at_once() {
        let young = record(1, "2026-11-24T11:59:00Z", None);
        let reader = vec!["reader".to_string()];
        assert_eq!(
            plan(Some(&reader), Some(&young), Some(1), now(), DAY),
            IdentityPlan::Rotate {
                generation: 2,
                retiring: 1
            }
        );
    }

    #[test]
    fn a_removed_request_drops_every_live_generation() {
        assert_eq!(
            plan(
                None,
                Some(&record(4, "2026-11-24T11:00:00Z", Some(3))),
                None,
                now(),
                DAY
            ),
            IdentityPlan::Drop {
                generations: vec![4, 3]
            }
        );
    }

    #[test]
    fn an_unreadable_or_future_issue_time_rotates() {
        for t in ["yesterday", "2027-01-01T00:00:00Z"] {
            assert!(matches!(
                plan(
                    Some(&member()),
                    Some(&record(1, t, None)),
                    Some(1),
                    now(),
                    DAY
                ),
                IdentityPlan::Rotate { .. }
            ));
        }
    }

    #[test]
    fn names_and_roles() {
        assert_eq!(vm_user_name("u-1", 2), "yun-vm-u-1-g2");
        assert_eq!(
            normalized_roles(&["reader".into(), "member".into(), "reader".into()]),
            vec!["member".to_string(), "reader".to_string()]
        );
    }
}
