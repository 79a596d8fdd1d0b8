//! `yunctl apply -f`: every document of every file is validated first (nothing is written if
//! any is refused), then each object is created, or updated from the stored one keeping what
//! the server and the controller own (uid, finalizers, owner references, status).

use serde_json::Value;
use yun_store::ObjectName;

use crate::config::Settings;
use crate::ctx::{Ctx, scoped};
use crate::error::CtlError;
use crate::kinds::{KindDef, Kinds};
use crate::manifests::{self, Source};
use crate::output::print;

/// A validated object, ready to be written.
#[derive(Debug, Clone)]
pub struct Planned<'k> {
    pub kind: &'k KindDef,
    pub name: ObjectName,
    pub object: Value,
}

pub async fn run(ctx: &Ctx, files: &[std::path::PathBuf]) -> Result<(), CtlError> {
    let sources = manifests::read_sources(files)?;
    let planned = plan(&ctx.kinds, &sources, &ctx.settings)?;
    if planned.is_empty() {
        return Err(CtlError::Usage("no objects passed to apply".into()));
    }
    let mut errors = Vec::new();
    for p in &planned {
        // The store creates, or replaces what the declaration owns (spec, labels, annotations)
        // and keeps the rest, re-reading on a conflict.
        match ctx.store.apply_raw(&p.kind.info, &p.object).await {
            Ok(applied) => print(&format!(
                "{}/{} {}\n",
                p.kind.qualified(),
                p.name.name,
                applied.verb()
            )),
            // As kubectl, one refused object does not stop the others.
            Err(e) => errors.push(CtlError::from(e)),
        }
    }
    match errors.len() {
        0 => Ok(()),
        _ => Err(CtlError::Many(errors)),
    }
}

/// Validates every document of every file; all problems of all files are reported together.
pub fn plan<'k>(
    kinds: &'k Kinds,
    sources: &[Source],
    settings: &Settings,
) -> Result<Vec<Planned<'k>>, CtlError> {
    let mut planned = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        let refused = |problems| CtlError::Manifest {
            path: source.path.clone(),
            problems,
        };
        let parsed = match yun_crds::parse_manifests(&source.text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(refused(
                    e.problems.iter().map(ToString::to_string).collect(),
                ));
                continue;
            }
        };
        let unnamespaced = manifests::without_namespace(&source.text);
        for m in &parsed {
            let own_ns = m
                .namespace()
                .filter(|_| !unnamespaced.contains(&(m.kind().to_owned(), m.name().to_owned())));
            match planned_of(kinds, m, own_ns, settings) {
                Ok(p) => planned.push(p),
                Err(problem) => errors.push(refused(vec![problem])),
            }
        }
    }
    match errors.len() {
        0 => Ok(planned),
        _ => Err(CtlError::Many(errors)),
    }
}

fn planned_of<'k>(
    kinds: &'k Kinds,
    m: &yun_crds::Manifest,
    own_ns: Option<&str>,
    settings: &Settings,
) -> Result<Planned<'k>, String> {
    let kind = kinds
        .by_kind(m.kind())
        .ok_or_else(|| format!("{} is not a kind this yunctl knows", m.kind()))?;
    let mut object = manifests::manifest_json(m).map_err(|e| e.to_string())?;
    let namespace = if kind.info.namespaced {
        let ns =
            manifests::namespace_for(own_ns, &settings.namespace, settings.namespace_from_flag)
                .map_err(|e| format!("{} {}: {e}", m.kind(), m.name()))?;
        object["metadata"]["namespace"] = Value::String(ns.clone());
        ns
    } else {
        String::new()
    };
    Ok(Planned {
        kind,
        name: scoped(kind, &namespace, m.name()),
        object,
    })
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
