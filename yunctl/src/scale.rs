//! `yunctl scale KIND NAME --replicas N`, for kinds whose CRD declares a scale subresource:
//! sets the value at its `specReplicasPath` with a guarded replace, retried on a conflict.

use serde_json::Value;
use yun_store::StoreError;

use crate::ctx::{self, Ctx};
use crate::error::CtlError;
use crate::jsonpath;
use crate::kinds::KindDef;
use crate::output::print;

const CONFLICT_ATTEMPTS: usize = 5;

pub async fn run(ctx: &Ctx, kind: &str, name: &str, replicas: u32) -> Result<(), CtlError> {
    let kind = ctx.kinds.resolve(kind)?;
    // Refused before any read: the kind, not the object, lacks the subresource.
    scale_path(kind)?;
    let object_name = ctx.object_name(kind, name);
    let mut attempt = 1;
    loop {
        let Some(obj) = ctx.store.get_raw(&kind.info, &object_name).await? else {
            return Err(ctx::not_found(kind, name));
        };
        let next = scaled(kind, obj, replicas)?;
        match ctx.store.replace_raw(&kind.info, &next).await {
            Ok(_) => break,
            Err(e @ StoreError::Conflict { .. }) if attempt >= CONFLICT_ATTEMPTS => {
                return Err(e.into());
            }
            Err(StoreError::Conflict { .. }) => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
    print(&format!("{}/{name} scaled\n", kind.qualified()));
    Ok(())
}

fn scale_path(kind: &KindDef) -> Result<&str, CtlError> {
    kind.scale_path.as_deref().ok_or_else(|| CtlError::NoScale {
        kind: kind.info.kind.clone(),
    })
}

/// The object with `replicas` at the kind's replicas path (its resourceVersion kept: the guard).
pub fn scaled(kind: &KindDef, mut obj: Value, replicas: u32) -> Result<Value, CtlError> {
    let path = scale_path(kind)?;
    jsonpath::set(&mut obj, path, Value::from(replicas))
        .map_err(|e| CtlError::Usage(format!("cannot scale {}: {e}", kind.info.kind)))?;
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kinds;
    use crate::kinds::tests::scalable_crd;
    use serde_json::json;

    #[test]
    fn scaling_sets_the_crds_replicas_path_and_keeps_the_guard() {
        let kinds = Kinds::from_crds(&[scalable_crd()]);
        let pool = kinds.resolve("vmpool").unwrap();
        let obj =
            json!({"metadata": {"name": "p", "resourceVersion": "9"}, "spec": {"image": "i"}});
        let next = scaled(pool, obj, 4).unwrap();
        assert_eq!(next["spec"]["replicas"], 4);
        assert_eq!(next["spec"]["image"], "i");
        assert_eq!(next["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn a_kind_without_the_subresource_is_refused() {
        let kinds = Kinds::builtin();
        let vm = kinds.resolve("vm").unwrap();
        let e = scaled(vm, json!({}), 2).unwrap_err();
        assert_eq!(
            e.lines(),
            ["error: VirtualMachine has no scale subresource"]
        );
    }
}
