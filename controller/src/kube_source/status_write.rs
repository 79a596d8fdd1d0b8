//! The one way the controller writes a status: server-side apply of only the status, under the
//! controller's field manager, skipped when the object already carries exactly that status.

use super::context::FIELD_MANAGER;
use super::error::KubeSourceError;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use std::borrow::Cow;

/// The body of a status apply: server-side apply needs the object's type, and only the
/// fields this manager owns.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a, S> {
    api_version: Cow<'static, str>,
    kind: Cow<'static, str>,
    status: &'a S,
}

/// Writes `status` on `obj` unless `current` (what the object holds) already equals it.
pub(crate) async fn write_status<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<(), KubeSourceError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq + std::fmt::Debug,
{
    if current == Some(status) {
        return Ok(());
    }
    let body = StatusApply {
        api_version: K::api_version(&()),
        kind: K::kind(&()),
        status,
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&obj.name_any(), &params, &Patch::Apply(&body))
        .await
        .map_err(|source| KubeSourceError::StatusWrite {
            kind: kind_name::<K>(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            source: Box::new(source),
        })?;
    Ok(())
}

/// The kind's name as a static string, for errors and metrics.
pub(crate) fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        Cow::Borrowed(k) => k,
        Cow::Owned(_) => "object",
    }
}
