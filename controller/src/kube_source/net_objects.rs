//! Reconcile of Network and SecurityGroup objects: status from the latest network pass, and the
//! `yun.dev/in-use` finalizer that holds a deletion while a VirtualMachine still names the
//! object. Without it, deleting a Network would pull its bridge from under running VMs, and
//! deleting a SecurityGroup would drop every flow its members rely on. The same rule OpenStack
//! applies ("security group in use"), reported here as a condition instead of a refusal,
//! because Kubernetes deletions are requests, not transactions.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::Event as FinalizerEvent;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use yun_crds::{
    Condition, ConditionStatus, Network, NetworkStatus, SecurityGroup, SecurityGroupStatus,
    find_condition, set_condition,
};

use super::context::{Ctx, IN_USE_FINALIZER, now_rfc3339};
use super::error::KubeSourceError;
use super::events;
use super::finalized::{reconcile_finalized, retry_with_backoff};
use super::status_write::{kind_name, write_status};
use crate::network::group_id;
use crate::network::snapshot::NetSnapshot;
use crate::network::status::{network_conditions, network_status, security_group_status};
use crate::network::tenancy::network_id;

/// Condition set while a deletion waits for the VMs that name the object.
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
/// Its reason.
pub const IN_USE: &str = "InUse";
/// Status is refreshed at least this often (address counts and members move with VMs).
pub const NET_STATUS_REQUEUE: Duration = Duration::from_secs(10);
/// A blocked deletion looks again this often (VM deletions do not wake it).
const BLOCKED_REQUEUE: Duration = Duration::from_secs(5);
/// Before the first network pass, or while it has not seen the object's generation.
const WAIT_FOR_PASS: Duration = Duration::from_secs(1);
/// How many VM names a blocked deletion lists.
const LISTED_USERS: usize = 10;

/// A kind whose status comes from the network pass and whose deletion waits for its users.
pub trait NetObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + PartialEq + Clone + Default + std::fmt::Debug + Send + Sync;
    fn status(&self) -> Option<&Self::Status>;
    /// The status the pass in `snap` observed, merged into `previous`.
    fn observed(
        &self,
        id: &str,
        previous: &Self::Status,
        snap: &NetSnapshot,
        now: &str,
    ) -> Self::Status;
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
}

impl NetObject for Network {
    type Status = NetworkStatus;
    fn status(&self) -> Option<&NetworkStatus> {
        self.status.as_ref()
    }
    fn observed(
        &self,
        id: &str,
        previous: &NetworkStatus,
        snap: &NetSnapshot,
        now: &str,
    ) -> NetworkStatus {
        let verdict = snap
            .pass
            .verdicts
            .get(&network_id(self))
            .cloned()
            .unwrap_or(Ok(()));
        let held = snap.pass.held_addresses(id);
        let observed = network_conditions(id, &self.spec, &held, &verdict);
        network_status(previous, observed, self.metadata.generation, now)
    }
    fn conditions_mut(status: &mut NetworkStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
}

impl NetObject for SecurityGroup {
    type Status = SecurityGroupStatus;
    fn status(&self) -> Option<&SecurityGroupStatus> {
        self.status.as_ref()
    }
    fn observed(
        &self,
        id: &str,
        previous: &SecurityGroupStatus,
        snap: &NetSnapshot,
        now: &str,
    ) -> SecurityGroupStatus {
        let resolution = match snap.pass.resolved.get(id) {
            Some(r) => r.clone(),
            // The pass saw this generation, so it resolved the group; keep the previous status.
            None => return previous.clone(),
        };
        let members = snap.pass.group_member_count(id);
        security_group_status(
            previous,
            &resolution,
            members,
            self.metadata.generation,
            now,
        )
    }
    fn conditions_mut(status: &mut SecurityGroupStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
}

fn id_of<K: NetObject>(obj: &K) -> String {
    group_id(
        obj.namespace()
            .as_deref()
            .unwrap_or(yun_crds::DEFAULT_NAMESPACE),
        &obj.name_any(),
    )
}

/// Reconciles one Network or SecurityGroup. Registered with its `Controller`; tests call it
/// directly.
pub async fn reconcile_net_object<K: NetObject>(
    obj: Arc<K>,
    ctx: Arc<Ctx>,
) -> Result<Action, KubeSourceError> {
    let ns = obj
        .namespace()
        .unwrap_or_else(|| yun_crds::DEFAULT_NAMESPACE.to_owned());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let kind = kind_name::<K>();
    reconcile_finalized(&ctx, &api, IN_USE_FINALIZER, kind, obj, |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(&api, &o, &ctx).await,
            FinalizerEvent::Cleanup(o) => cleanup(&api, &o, &ctx).await,
        }
    })
    .await
}

/// Retries a failed reconcile with the shared per-object backoff.
pub fn net_object_error_policy<K: NetObject>(
    obj: Arc<K>,
    error: &KubeSourceError,
    ctx: Arc<Ctx>,
) -> Action {
    retry_with_backoff(&*obj, error, &ctx)
}

/// The status the latest pass gives `obj`; `None` until a pass has seen its generation.
fn current_status<K: NetObject>(obj: &K, ctx: &Ctx, now: &str) -> Option<(K::Status, Vec<String>)> {
    let snap = ctx.nets.current()?;
    let id = id_of(obj);
    if !snap.saw(&id, obj.meta().generation) {
        return None;
    }
    let previous = obj.status().cloned().unwrap_or_default();
    Some((obj.observed(&id, &previous, &snap, now), snap.users(&id)))
}

async fn apply<K: NetObject>(api: &Api<K>, obj: &K, ctx: &Ctx) -> Result<Action, KubeSourceError> {
    let now = now_rfc3339();
    let Some((mut status, _)) = current_status(obj, ctx, &now) else {
        return Ok(Action::requeue(WAIT_FOR_PASS));
    };
    // A deletion that was cancelled cannot happen (deletionTimestamp is final), but a status
    // carried over from a blocked deletion of an earlier object of the same name can.
    K::conditions_mut(&mut status).retain(|c| c.type_ != DELETION_BLOCKED);
    write_status(api, obj, obj.status(), &status).await?;
    Ok(Action::requeue(NET_STATUS_REQUEUE))
}

async fn cleanup<K: NetObject>(
    api: &Api<K>,
    obj: &K,
    ctx: &Ctx,
) -> Result<Action, KubeSourceError> {
    let now = now_rfc3339();
    let Some((mut status, users)) = current_status(obj, ctx, &now) else {
        return Err(KubeSourceError::CleanupPending {
            requeue: WAIT_FOR_PASS,
        });
    };
    if users.is_empty() {
        return Ok(Action::await_change());
    }
    let condition = blocked_condition(kind_name::<K>(), &users);
    let newly = find_condition(K::conditions_mut(&mut status), DELETION_BLOCKED)
        .is_none_or(|c| c.message != condition.message);
    let note = condition.message.clone();
    set_condition(
        K::conditions_mut(&mut status),
        condition.with_observed_generation(obj.meta().generation),
        &now,
    );
    write_status(api, obj, obj.status(), &status).await?;
    if newly {
        let event = events::transition(EventType::Warning, DELETION_BLOCKED, "Delete", note);
        events::publish(ctx, obj, &[event]).await;
    }
    Err(KubeSourceError::CleanupPending {
        requeue: BLOCKED_REQUEUE,
    })
}

/// `DeletionBlocked=True, reason=InUse`, naming the first VMs that hold the object.
pub fn blocked_condition(kind: &str, users: &[String]) -> Condition {
    let mut listed = users
        .iter()
        .take(LISTED_USERS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if users.len() > LISTED_USERS {
        listed.push_str(&format!(" and {} more", users.len() - LISTED_USERS));
    }
    Condition::new(
        DELETION_BLOCKED,
        ConditionStatus::True,
        IN_USE,
        format!(
            "the {kind} is deleted once no VirtualMachine names it; {} still do: {listed}",
            users.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_deletion_names_the_first_users_and_counts_the_rest() {
        let users: Vec<String> = (0..12).map(|i| format!("vm{i:02}")).collect();
        let c = blocked_condition("Network", &users);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::True, IN_USE)
        );
        assert!(
            c.message.contains("12 still do: vm00, vm01"),
            "{}",
            c.message
        );
        assert!(c.message.ends_with("vm09 and 2 more"), "{}", c.message);
        let one = blocked_condition("SecurityGroup", &users[..1]);
        assert!(one.message.ends_with("1 still do: vm00"), "{}", one.message);
    }
}
