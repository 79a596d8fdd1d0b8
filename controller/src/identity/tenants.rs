//! Tenants are Keystone projects: a VM's namespace names its project (by name or id). The
//! controller places nothing for a tenant whose project it cannot find enabled.
//!
//! Verdicts are cached briefly: a found, enabled project for [`ALLOWED_TTL`], a refusal for
//! [`REFUSED_TTL`] (so enabling a project is noticed within seconds); a Keystone error is not
//! cached at all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use yun_identity::{IdentityError, Project};

use crate::vm_logic::Unscheduled;

pub const ALLOWED_TTL: Duration = Duration::from_secs(30);
pub const REFUSED_TTL: Duration = Duration::from_secs(5);

/// Condition reasons (on `Scheduled=False`) of a refused tenant.
pub const PROJECT_NOT_FOUND: &str = "ProjectNotFound";
pub const PROJECT_DISABLED: &str = "ProjectDisabled";
pub const KEYSTONE_UNAVAILABLE: &str = "KeystoneUnavailable";

/// Whether anything may be placed for a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantVerdict {
    Allowed { project: Project },
    Refused(Unscheduled),
}

/// The verdict for `namespace` from a project lookup (pure).
pub fn verdict(namespace: &str, lookup: &Result<Option<Project>, IdentityError>) -> TenantVerdict {
    match lookup {
        Ok(Some(p)) if p.enabled => TenantVerdict::Allowed { project: p.clone() },
        Ok(Some(p)) => TenantVerdict::Refused(Unscheduled {
            reason: PROJECT_DISABLED,
            message: format!(
                "namespace {namespace}: Keystone project {} ({}) is disabled; nothing is placed for a disabled tenant",
                p.name, p.id
            ),
        }),
        Ok(None) => TenantVerdict::Refused(Unscheduled {
            reason: PROJECT_NOT_FOUND,
            message: format!(
                "namespace {namespace}: no Keystone project named {namespace} in the tenant domain; create it (or rename the namespace) before placing VMs"
            ),
        }),
        Err(e) => TenantVerdict::Refused(Unscheduled {
            reason: KEYSTONE_UNAVAILABLE,
            message: format!("namespace {namespace}: cannot verify its Keystone project: {e}"),
        }),
    }
}

/// How long a verdict may be reused (`None`: not at all).
fn ttl_of(lookup: &Result<Option<Project>, IdentityError>) -> Option<Duration> {
    match lookup {
        Ok(Some(p)) if p.enabled => Some(ALLOWED_TTL),
        Ok(_) => Some(REFUSED_TTL),
        Err(_) => None,
    }
}

/// Recent verdicts by namespace.
#[derive(Debug, Default)]
pub struct TenantCache {
    entries: Mutex<HashMap<String, (Instant, TenantVerdict)>>,
}

impl TenantCache {
    pub fn get(&self, namespace: &str, now: Instant) -> Option<TenantVerdict> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(namespace)
            .filter(|(until, _)| now < *until)
            .map(|(_, v)| v.clone())
    }

    /// Remembers the verdict of `lookup` (if it may be cached) and returns it.
    pub fn remember(
        &self,
        namespace: &str,
        lookup: &Result<Option<Project>, IdentityError>,
        now: Instant,
    ) -> TenantVerdict {
        let v = verdict(namespace, lookup);
        if let Some(ttl) = ttl_of(lookup) {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.insert(namespace.to_owned(), (now + ttl, v.clone()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(enabled: bool) -> Project {
        Project {
            id: "p-1".into(),
            name: "team-a".into(),
            domain_id: "default".into(),
            enabled,
        }
    }

    fn reason(v: &TenantVerdict) -> &'static str {
        match v {
            TenantVerdict::Allowed { .. } => "Allowed",
            TenantVerdict::Refused(u) => u.reason,
        }
    }

    #[test]
    fn enabled_allows_disabled_and_missing_refuse_naming_the_namespace() {
        assert_eq!(
            reason(&verdict("team-a", &Ok(Some(project(true))))),
            "Allowed"
        );
        let disabled = verdict("team-a", &Ok(Some(project(false))));
        assert_eq!(reason(&disabled), PROJECT_DISABLED);
        let TenantVerdict::Refused(u) = disabled else {
            unreachable!()
        };
        assert!(
            u.message.contains("team-a") && u.message.contains("disabled"),
            "{}",
            u.message
        );
        assert_eq!(reason(&verdict("ghost", &Ok(None))), PROJECT_NOT_FOUND);
    }

    #[test]
    fn keystone_errors_refuse_and_are_not_cached() {
        let cache = TenantCache::default();
        let t0 = Instant::now();
        let err: Result<Option<Project>, IdentityError> = Err(IdentityError::NotFound {
            operation: "looking up project",
            object: "x".into(),
        });
        assert_eq!(
            reason(&cache.remember("ns", &err, t0)),
            KEYSTONE_UNAVAILABLE
        );
        assert_eq!(cache.get("ns", t0), None);
    }

    #[test]
    fn refusals_expire_sooner_than_approvals() {
        let cache = TenantCache::default();
        let t0 = Instant::now();
        cache.remember("off", &Ok(Some(project(false))), t0);
        cache.remember("on", &Ok(Some(project(true))), t0);
        let later = t0 + REFUSED_TTL + Duration::from_millis(1);
        assert_eq!(
            cache.get("off", later),
            None,
            "a refusal is re-checked after a few seconds"
        );
        assert!(cache.get("on", later).is_some());
        assert_eq!(cache.get("on", t0 + ALLOWED_TTL), None);
    }
}
