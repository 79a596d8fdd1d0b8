//! `yunctl get KIND [NAME...]`: a table (or YAML, JSON, names), optionally followed by a watch.

use jiff::Timestamp;
use serde_json::Value;

use crate::cli::GetArgs;
use crate::ctx::{self, Ctx};
use crate::error::CtlError;
use crate::kinds::KindDef;
use crate::output::print;
use crate::view::View;
use crate::watch;

/// What a get found: objects, the revision to watch from, names that do not exist.
struct Found {
    items: Vec<Value>,
    resource_version: i64,
    missing: Vec<CtlError>,
}

pub async fn run(ctx: &Ctx, args: &GetArgs) -> Result<(), CtlError> {
    let kind = ctx.kinds.resolve(&args.kind)?;
    if args.all_namespaces && !args.names.is_empty() {
        return Err(CtlError::Usage(
            "a resource cannot be retrieved by name across all namespaces".into(),
        ));
    }
    let namespace = (!args.all_namespaces).then_some(ctx.settings.namespace.as_str());
    let found = if args.names.is_empty() {
        let list = ctx.store.list_raw(&kind.info, namespace).await?;
        Found {
            items: list.items,
            resource_version: list.resource_version,
            missing: Vec::new(),
        }
    } else {
        named(ctx, kind, &args.names).await?
    };
    let mut view = View::new(kind, args.output, args.all_namespaces);
    print(&view.objects(&found.items, args.names.len() == 1, Timestamp::now()));
    if found.items.is_empty() && found.missing.is_empty() && view.reports_empty() {
        eprintln!("{}", ctx::no_resources(kind, namespace));
    }
    if !found.missing.is_empty() {
        return Err(CtlError::Many(found.missing));
    }
    if args.watch {
        let scope = watch::Scope {
            kind,
            namespace,
            names: &args.names,
        };
        return watch::follow(ctx, &scope, found.resource_version, &mut view).await;
    }
    Ok(())
}

/// The named objects, in the order given, and a not-found for each missing one.
async fn named(ctx: &Ctx, kind: &KindDef, names: &[String]) -> Result<Found, CtlError> {
    let mut found = Found {
        items: Vec::new(),
        resource_version: i64::MAX,
        missing: Vec::new(),
    };
    for name in names {
        match ctx
            .store
            .get_raw(&kind.info, &ctx.object_name(kind, name))
            .await?
        {
            Some(obj) => {
                // Watch from the oldest: a change seen twice is harmless, a change missed is not.
                found.resource_version = found.resource_version.min(resource_version(&obj));
                found.items.push(obj);
            }
            None => found.missing.push(ctx::not_found(kind, name)),
        }
    }
    Ok(found)
}

pub fn resource_version(obj: &Value) -> i64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}
