//! `yunctl delete KIND NAME...` and `delete -f FILE`: deletes, then (by default) waits until the
//! objects are really gone, i.e. until the controller has processed their finalizers.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use yun_store::{Deleted, ObjectName};

use crate::cli::DeleteArgs;
use crate::ctx::{self, Ctx, scoped};
use crate::error::CtlError;
use crate::kinds::KindDef;
use crate::manifests;
use crate::output::print;

/// How often a pending deletion is looked at while waiting.
const POLL: Duration = Duration::from_millis(200);

/// An object to delete.
#[derive(Debug, Clone)]
struct Target<'k> {
    kind: &'k KindDef,
    name: ObjectName,
}

/// A deleted object still held by finalizers.
#[derive(Debug)]
struct Pending<'k> {
    target: Target<'k>,
    uid: Option<String>,
}

pub async fn run(ctx: &Ctx, args: &DeleteArgs) -> Result<(), CtlError> {
    let targets = targets(ctx, args)?;
    let mut errors = Vec::new();
    let mut pending = Vec::new();
    for target in targets {
        match ctx.store.delete_raw(&target.kind.info, &target.name).await {
            Ok(deleted) => {
                print(&format!(
                    "{} {:?} deleted\n",
                    target.kind.qualified(),
                    target.name.name
                ));
                if let Deleted::Pending(obj) = deleted {
                    pending.push(Pending {
                        uid: uid(&obj),
                        target,
                    });
                }
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) if e.is_not_found() => {
                errors.push(ctx::not_found(target.kind, &target.name.name))
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if args.wait {
        let deadline = Instant::now() + args.timeout;
        for p in &pending {
            if let Err(e) = wait_gone(ctx, p, deadline).await {
                errors.push(e);
            }
        }
    }
    match errors.len() {
        0 => Ok(()),
        _ => Err(CtlError::Many(errors)),
    }
}

fn targets<'k>(ctx: &'k Ctx, args: &DeleteArgs) -> Result<Vec<Target<'k>>, CtlError> {
    let Some(kind) = &args.kind else {
        return from_files(ctx, &args.files);
    };
    let kind = ctx.kinds.resolve(kind)?;
    if args.names.is_empty() {
        return Err(CtlError::Usage(
            "resource(s) were provided, but no name was specified".into(),
        ));
    }
    Ok(args
        .names
        .iter()
        .map(|n| Target {
            kind,
            name: ctx.object_name(kind, n),
        })
        .collect())
}

/// The objects manifest files name; read leniently, since a manifest that no longer validates
/// must still be deletable.
fn from_files<'k>(ctx: &'k Ctx, files: &[std::path::PathBuf]) -> Result<Vec<Target<'k>>, CtlError> {
    let mut targets = Vec::new();
    for source in manifests::read_sources(files)? {
        let refused = |problem: String| CtlError::Manifest {
            path: source.path.clone(),
            problems: vec![problem],
        };
        for doc in manifests::scan(&source.text).map_err(refused)? {
            let kind = ctx
                .kinds
                .by_kind(&doc.kind)
                .filter(|k| k.info.api_version == doc.api_version)
                .ok_or_else(|| refused(format!("unknown kind {}/{}", doc.api_version, doc.kind)))?;
            let settings = &ctx.settings;
            let ns = manifests::namespace_for(
                doc.namespace.as_deref(),
                &settings.namespace,
                settings.namespace_from_flag,
            )
            .map_err(refused)?;
            targets.push(Target {
                kind,
                name: scoped(kind, &ns, &doc.name),
            });
        }
    }
    if targets.is_empty() {
        return Err(CtlError::Usage("no objects passed to delete".into()));
    }
    Ok(targets)
}

/// Polls until the object is gone (or replaced by a new one of the same name).
async fn wait_gone(ctx: &Ctx, p: &Pending<'_>, deadline: Instant) -> Result<(), CtlError> {
    let Target { kind, name } = &p.target;
    loop {
        let Some(obj) = ctx.store.get_raw(&kind.info, name).await? else {
            return Ok(());
        };
        if uid(&obj) != p.uid {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CtlError::DeleteTimeout {
                plural: kind.info.plural.clone(),
                name: name.name.clone(),
                finalizers: yun_store::meta::finalizers(&obj),
            });
        }
        tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
    }
}

fn uid(obj: &Value) -> Option<String> {
    yun_store::meta::uid(obj).map(str::to_owned)
}
