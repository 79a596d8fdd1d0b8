//! What every command works with: the store connection, the known kinds, the settings.

use yun_store::{EtcdStore, ObjectName};

use crate::config::Settings;
use crate::error::CtlError;
use crate::kinds::{KindDef, Kinds};

#[derive(Debug)]
pub struct Ctx {
    pub store: EtcdStore,
    pub kinds: Kinds,
    pub settings: Settings,
}

impl Ctx {
    pub async fn connect(settings: Settings) -> Result<Ctx, CtlError> {
        let tls = settings.tls()?;
        let store = EtcdStore::connect(&settings.endpoints, tls.as_ref()).await?;
        Ok(Ctx {
            store,
            kinds: Kinds::builtin(),
            settings,
        })
    }

    /// Where `name` of `kind` lives: in the working namespace unless the kind is cluster-scoped.
    pub fn object_name(&self, kind: &KindDef, name: &str) -> ObjectName {
        scoped(kind, &self.settings.namespace, name)
    }
}

pub fn scoped(kind: &KindDef, namespace: &str, name: &str) -> ObjectName {
    if kind.info.namespaced {
        ObjectName::namespaced(namespace, name)
    } else {
        ObjectName::cluster(name)
    }
}

/// kubectl's not-found for a name of a kind.
pub fn not_found(kind: &KindDef, name: &str) -> CtlError {
    CtlError::NotFound {
        plural: kind.info.plural.clone(),
        name: name.to_owned(),
    }
}

/// The namespace a listing is about, for "No resources found in ... namespace.".
pub fn no_resources(kind: &KindDef, namespace: Option<&str>) -> String {
    match namespace.filter(|_| kind.info.namespaced) {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_owned(),
    }
}
