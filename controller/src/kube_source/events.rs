//! Kubernetes Events for a VirtualMachine's transitions (what `kubectl describe` shows).
//!
//! Which transitions deserve an Event is pure ([`crate::vm_events`]); publishing is best
//! effort: an Event that cannot be written is logged and never fails a reconcile.

use super::context::Ctx;
use kube::Resource;
use kube::runtime::events::Event;

pub use crate::vm_events::{Transition, transitions};
pub use crate::vm_events::{deleted, transition};

/// Publishes `events` about `obj`; failures are logged, not returned.
pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    obj: &K,
    events: &[Transition],
) {
    if events.is_empty() {
        return;
    }
    let reference = obj.object_ref(&());
    for t in events {
        let event = Event {
            type_: t.type_,
            reason: t.reason.clone(),
            note: Some(t.note.clone()).filter(|n| !n.is_empty()),
            action: t.action.to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(
                object = %format!("{}/{}", reference.namespace.as_deref().unwrap_or_default(), reference.name.as_deref().unwrap_or_default()),
                reason = %t.reason,
                error = %e,
                "could not publish Event"
            );
        }
    }
}
