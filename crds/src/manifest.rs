//! Reading Yun objects from YAML manifests (bootstrap mode: no API server in front).
//!
//! A manifest is refused for what the API server would refuse — unknown apiVersion/kind, unknown
//! fields, schema and CEL violations — with messages that name the document, the object and the
//! field. Like the API server on create, `status` is accepted and ignored (the kinds have a status
//! subresource), and `metadata.namespace` on the cluster-scoped Host is dropped.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::device_identity::{DeviceIdentity, DeviceIdentitySpec};
use crate::host::{Host, HostSpec};
use crate::network::{Network, NetworkSpec};
use crate::security_group::{SecurityGroup, SecurityGroupSpec};
use crate::virtual_machine::{VirtualMachine, VirtualMachineSpec};
use crate::vm_image::{VmImage, VmImageSpec};
use crate::volume::{Volume, VolumeSpec};

mod errors;

pub use errors::{DocumentError, ManifestError, ObjectRef};

/// The only API version this build understands.
pub const API_VERSION: &str = "yun.dev/v1alpha1";
/// Namespace of a namespaced object whose manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
/// Every field of `metav1.ObjectMeta` (k8s-openapi ignores unknown ones; we refuse them).
const METADATA_FIELDS: [&str; 15] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// One object read from a manifest, validated, with its namespace defaulted and no status.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Host(Host),
    VmImage(VmImage),
    Network(Network),
    SecurityGroup(SecurityGroup),
    Volume(Volume),
    VirtualMachine(VirtualMachine),
    DeviceIdentity(DeviceIdentity),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Host(_) => "Host",
            Manifest::VmImage(_) => "VmImage",
            Manifest::Network(_) => "Network",
            Manifest::SecurityGroup(_) => "SecurityGroup",
            Manifest::Volume(_) => "Volume",
            Manifest::VirtualMachine(_) => "VirtualMachine",
            Manifest::DeviceIdentity(_) => "DeviceIdentity",
        }
    }

    fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Host(o) => &o.metadata,
            Manifest::VmImage(o) => &o.metadata,
            Manifest::Network(o) => &o.metadata,
            Manifest::SecurityGroup(o) => &o.metadata,
            Manifest::Volume(o) => &o.metadata,
            Manifest::VirtualMachine(o) => &o.metadata,
            Manifest::DeviceIdentity(o) => &o.metadata,
        }
    }

    /// `metadata.name` (always present once parsed).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`: `None` for the cluster-scoped Host.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Host,
    VmImage,
    Network,
    SecurityGroup,
    Volume,
    VirtualMachine,
    DeviceIdentity,
}

/// The decoded shape of a document: the root fields of a Yun object, refusing any other.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: ObjectMeta,
    spec: S,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// What the first pass learnt about a document.
enum Header {
    Empty,
    Refused,
    Accepted { kind: Kind, object: ObjectRef },
}

/// Parses a (multi-document) YAML manifest into validated Yun objects. Empty documents are
/// skipped. On failure, every problem found in every document is returned.
pub fn parse_manifests(yaml: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut problems = Vec::new();
    let headers = read_headers(yaml, &mut problems);

    let mut manifests = Vec::new();
    let mut seen: BTreeMap<ObjectRef, usize> = BTreeMap::new();
    // Second pass over the same stream: decode each accepted document into its kind, so that
    // serde_yaml's errors carry the field path and the line and column in the input.
    for (index, (header, doc)) in headers
        .into_iter()
        .zip(serde_yaml::Deserializer::from_str(yaml))
        .enumerate()
    {
        let document = index + 1;
        let Header::Accepted { kind, object } = header else {
            continue;
        };
        let manifest = match decode(kind, doc) {
            Ok(m) => m,
            Err(source) => {
                problems.push(DocumentError::Decode {
                    document,
                    object,
                    source,
                });
                continue;
            }
        };
        if let Err(errors) = validate(&manifest) {
            problems.extend(errors.0.into_iter().map(|error| DocumentError::Invalid {
                document,
                object: object.clone(),
                error,
            }));
            continue;
        }
        if let Some(&first) = seen.get(&object) {
            problems.push(DocumentError::Duplicate {
                document,
                object,
                first,
            });
            continue;
        }
        seen.insert(object, document);
        manifests.push(manifest);
    }

    if problems.is_empty() {
        Ok(manifests)
    } else {
        problems.sort_by_key(DocumentError::document);
        Err(ManifestError { problems })
    }
}

fn read_headers(yaml: &str, problems: &mut Vec<DocumentError>) -> Vec<Header> {
    let mut headers = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let document = index + 1;
        match serde_yaml::Value::deserialize(doc) {
            Ok(value) => headers.push(header(document, &value, problems)),
            Err(source) => {
                problems.push(DocumentError::Syntax { document, source });
                break;
            }
        }
    }
    headers
}

fn header(document: usize, value: &serde_yaml::Value, problems: &mut Vec<DocumentError>) -> Header {
    use serde_yaml::Value;
    let map = match value {
        Value::Null => return Header::Empty,
        Value::Mapping(map) => map,
        _ => {
            problems.push(DocumentError::NotAnObject { document });
            return Header::Refused;
        }
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    let (Some(api_version), Some(kind_name)) = (text("apiVersion"), text("kind")) else {
        let field = if text("apiVersion").is_none() {
            "apiVersion"
        } else {
            "kind"
        };
        problems.push(DocumentError::MissingTypeField { document, field });
        return Header::Refused;
    };
    let kind = match (api_version, kind_name) {
        (API_VERSION, "Host") => Kind::Host,
        (API_VERSION, "VmImage") => Kind::VmImage,
        (API_VERSION, "Network") => Kind::Network,
        (API_VERSION, "SecurityGroup") => Kind::SecurityGroup,
        (API_VERSION, "Volume") => Kind::Volume,
        (API_VERSION, "VirtualMachine") => Kind::VirtualMachine,
        (API_VERSION, "DeviceIdentity") => Kind::DeviceIdentity,
        _ => {
            problems.push(DocumentError::UnknownKind {
                document,
                api_version: api_version.to_owned(),
                kind: kind_name.to_owned(),
            });
            return Header::Refused;
        }
    };

    let metadata = map.get("metadata").and_then(Value::as_mapping);
    let meta_text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
    let namespace = match kind {
        Kind::Host => None,
        Kind::VmImage
        | Kind::Network
        | Kind::SecurityGroup
        | Kind::Volume
        | Kind::VirtualMachine
        | Kind::DeviceIdentity => Some(
            meta_text("namespace")
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_owned(),
        ),
    };
    let object = ObjectRef {
        kind: kind_name.to_owned(),
        namespace,
        name: meta_text("name").unwrap_or("<unnamed>").to_owned(),
    };

    let before = problems.len();
    let unknown =
        |allowed: &[&str], key: &Value| key.as_str().is_none_or(|k| !allowed.contains(&k));
    for key in map.keys().filter(|k| unknown(&TOP_LEVEL_FIELDS, k)) {
        let path = key_name(key);
        problems.push(DocumentError::UnknownField {
            document,
            object: object.clone(),
            path,
        });
    }
    for key in metadata
        .iter()
        .flat_map(|m| m.keys())
        .filter(|k| unknown(&METADATA_FIELDS, k))
    {
        let path = format!("metadata.{}", key_name(key));
        problems.push(DocumentError::UnknownField {
            document,
            object: object.clone(),
            path,
        });
    }
    if problems.len() > before {
        Header::Refused
    } else {
        Header::Accepted { kind, object }
    }
}

fn key_name(key: &serde_yaml::Value) -> String {
    match key.as_str() {
        Some(k) => k.to_owned(),
        None => serde_yaml::to_string(key)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| "?".into()),
    }
}

fn decode(kind: Kind, doc: serde_yaml::Deserializer<'_>) -> Result<Manifest, serde_yaml::Error> {
    fn parts<S: DeserializeOwned>(
        doc: serde_yaml::Deserializer<'_>,
    ) -> Result<(ObjectMeta, S), serde_yaml::Error> {
        let d = Document::<S>::deserialize(doc)?;
        Ok((d.metadata, d.spec))
    }
    fn namespaced(mut metadata: ObjectMeta) -> ObjectMeta {
        metadata
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
        metadata
    }
    Ok(match kind {
        Kind::Host => {
            let (mut metadata, spec) = parts::<HostSpec>(doc)?;
            // As the API server does for cluster-scoped kinds: a namespace is dropped, not refused.
            metadata.namespace = None;
            Manifest::Host(Host {
                metadata,
                spec,
                status: None,
            })
        }
        Kind::VmImage => {
            let (metadata, spec) = parts::<VmImageSpec>(doc)?;
            Manifest::VmImage(VmImage {
                metadata: namespaced(metadata),
                spec,
                status: None,
            })
        }
        Kind::Network => {
            let (metadata, spec) = parts::<NetworkSpec>(doc)?;
            Manifest::Network(Network {
                metadata: namespaced(metadata),
                spec,
                status: None,
            })
        }
        Kind::SecurityGroup => {
            let (metadata, spec) = parts::<SecurityGroupSpec>(doc)?;
            Manifest::SecurityGroup(SecurityGroup {
                metadata: namespaced(metadata),
                spec,
                status: None,
            })
        }
        Kind::Volume => {
            let (metadata, spec) = parts::<VolumeSpec>(doc)?;
            Manifest::Volume(Volume {
                metadata: namespaced(metadata),
                spec,
                status: None,
            })
        }
        Kind::VirtualMachine => {
            let (metadata, spec) = parts::<VirtualMachineSpec>(doc)?;
            Manifest::VirtualMachine(VirtualMachine {
                metadata: namespaced(metadata),
                spec,
                status: None,
            })
        }
        Kind::DeviceIdentity => {
            let (metadata, spec) = parts::<DeviceIdentitySpec>(doc)?;
            Manifest::DeviceIdentity(DeviceIdentity {
                metadata: namespaced(metadata),
                spec,
                status: None,
            })
        }
    })
}

fn validate(manifest: &Manifest) -> Result<(), crate::validation::ValidationErrors> {
    match manifest {
        Manifest::Host(o) => o.validate(),
        Manifest::VmImage(o) => o.validate(),
        Manifest::Network(o) => o.validate(),
        Manifest::SecurityGroup(o) => o.validate(),
        Manifest::Volume(o) => o.validate(),
        Manifest::VirtualMachine(o) => o.validate(),
        Manifest::DeviceIdentity(o) => o.validate(),
    }
}
