//! What every reconcile with a finalizer shares: kube-runtime's `finalizer` helper, the
//! cleanup-pending convention, the reconcile metrics and the error backoff reset.
//!
//! Cleanup returns `Ok` only when the object may go (the helper then removes the finalizer);
//! while it must wait, it returns [`KubeSourceError::CleanupPending`], which keeps the
//! finalizer and becomes a plain requeue here, never an error.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Ctx;
use super::error::KubeSourceError;

/// Runs `body` for `obj` under the finalizer `name`, counting the reconcile as `kind`.
pub(crate) async fn reconcile_finalized<K, Fut>(
    ctx: &Ctx,
    api: &Api<K>,
    name: &'static str,
    kind: &'static str,
    obj: Arc<K>,
    body: impl FnOnce(FinalizerEvent<K>) -> Fut,
) -> Result<Action, KubeSourceError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    Fut: Future<Output = Result<Action, KubeSourceError>>,
{
    let started = Instant::now();
    let result = match finalizer(api, name, obj.clone(), body).await {
        Ok(action) => Ok(action),
        Err(finalizer::Error::CleanupFailed(KubeSourceError::CleanupPending { requeue })) => {
            Ok(Action::requeue(requeue))
        }
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(other) => Err(KubeSourceError::Finalizer {
            kind,
            finalizer: name,
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            source: Box::new(other),
        }),
    };
    ctx.metrics.reconciled(kind, started, result.is_ok());
    if result.is_ok() {
        ctx.clear_backoff(&ObjectRef::from_obj(&*obj));
    }
    result
}

/// The error policy of every kind: retries a failed reconcile with the shared per-object
/// backoff (5 s doubling to 5 min), logging the object and the error. The failure is already
/// counted by [`reconcile_finalized`] (`result="error"`).
pub(crate) fn retry_with_backoff<K: Resource<DynamicType = ()>>(
    obj: &K,
    error: &KubeSourceError,
    ctx: &Ctx,
) -> Action {
    let delay = ctx.next_backoff(ObjectRef::from_obj(obj));
    tracing::warn!(
        object = %format!(
            "{} {}/{}",
            K::kind(&()),
            obj.namespace().unwrap_or_else(|| yun_crds::DEFAULT_NAMESPACE.to_owned()),
            obj.name_any()
        ),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}
