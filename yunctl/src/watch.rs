//! `get --watch`: after the listing, a row for every change (deletions too) until interrupted.
//! A watch from a compacted revision is `Gone`; then the objects are listed again (and shown),
//! and the watch resumes from the new list, as kubectl's reflector does.

use jiff::Timestamp;
use serde_json::Value;
use yun_store::StoreError;

use crate::ctx::Ctx;
use crate::error::CtlError;
use crate::kinds::KindDef;
use crate::output::print;
use crate::view::View;

/// What is watched: a kind, in a namespace (or all), limited to some names (or not).
#[derive(Debug)]
pub struct Scope<'a> {
    pub kind: &'a KindDef,
    pub namespace: Option<&'a str>,
    pub names: &'a [String],
}

impl Scope<'_> {
    fn wants(&self, obj: &Value) -> bool {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str);
        self.names.is_empty() || self.names.iter().any(|n| Some(n.as_str()) == name)
    }
}

/// Prints every change after `resource_version`; returns only on an error.
pub async fn follow(
    ctx: &Ctx,
    scope: &Scope<'_>,
    mut resource_version: i64,
    view: &mut View<'_>,
) -> Result<(), CtlError> {
    loop {
        match watch_from(ctx, scope, resource_version, view).await {
            StoreError::Gone { .. } => {
                let list = ctx
                    .store
                    .list_raw(&scope.kind.info, scope.namespace)
                    .await?;
                show(scope, view, &list.items);
                resource_version = list.resource_version;
            }
            e => return Err(e.into()),
        }
    }
}

/// Follows one watch until it fails, and says how.
async fn watch_from(
    ctx: &Ctx,
    scope: &Scope<'_>,
    resource_version: i64,
    view: &mut View<'_>,
) -> StoreError {
    let watch = ctx
        .store
        .watch_raw(&scope.kind.info, scope.namespace, resource_version)
        .await;
    let mut watch = match watch {
        Ok(w) => w,
        Err(e) => return e,
    };
    loop {
        match watch.next().await {
            Ok(events) => {
                let objects: Vec<Value> = events.into_iter().map(|e| e.object).collect();
                show(scope, view, &objects);
            }
            Err(e) => return e,
        }
    }
}

fn show(scope: &Scope<'_>, view: &mut View<'_>, objects: &[Value]) {
    let now = Timestamp::now();
    for obj in objects.iter().filter(|o| scope.wants(o)) {
        print(&view.change(obj, now));
    }
}
