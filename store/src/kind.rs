//! What the store needs to know of a kind: its names and scope. Taken from the typed kind
//! (`kube::Resource`) in the controller, or from its CustomResourceDefinition in `yunctl`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind the store can hold: a Kubernetes-style resource with serde and one scope.
pub trait StoredKind:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Whether objects of this kind live in a namespace.
    const NAMESPACED: bool;
}

impl<K> StoredKind for K
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    K::Scope: Scope,
{
    const NAMESPACED: bool = <K::Scope as Scope>::NAMESPACED;
}

/// kube's scope markers, as a constant.
pub trait Scope {
    const NAMESPACED: bool;
}

impl Scope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A kind's names and scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KindInfo {
    /// `VirtualMachine`
    pub kind: String,
    /// `yun.dev/v1alpha1`
    pub api_version: String,
    /// `virtualmachines`: the kind's part of every key.
    pub plural: String,
    pub namespaced: bool,
}

impl KindInfo {
    pub fn of<K: StoredKind>() -> KindInfo {
        KindInfo {
            kind: K::kind(&()).into_owned(),
            api_version: K::api_version(&()).into_owned(),
            plural: K::plural(&()).into_owned(),
            namespaced: K::NAMESPACED,
        }
    }

    /// The kind a CustomResourceDefinition declares, at its first served version.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Option<KindInfo> {
        let version = crd.spec.versions.iter().find(|v| v.served)?;
        Some(KindInfo {
            kind: crd.spec.names.kind.clone(),
            api_version: format!("{}/{}", crd.spec.group, version.name),
            plural: crd.spec.names.plural.clone(),
            namespaced: crd.spec.scope == "Namespaced",
        })
    }
}
