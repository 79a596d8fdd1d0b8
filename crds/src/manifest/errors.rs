//! The errors of [`parse_manifests`](super::parse_manifests): every problem names the document
//! and, once its kind and name are known, the object.

use std::fmt;

use thiserror::Error;

use super::API_VERSION;
use crate::validation::FieldError;

/// `Kind namespace/name` or `Kind name`, as error messages show an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One problem with one document of a manifest stream. Documents count from 1.
#[derive(Debug, Error)]
pub enum DocumentError {
    /// The YAML is malformed; later documents are not read.
    #[error("document {document}: invalid YAML: {source}")]
    Syntax {
        document: usize,
        source: serde_yaml::Error,
    },
    #[error("document {document}: expected an object with apiVersion, kind, metadata and spec")]
    NotAnObject { document: usize },
    #[error("document {document}: {field} is missing or not a string")]
    MissingTypeField {
        document: usize,
        field: &'static str,
    },
    #[error(
        "document {document}: unsupported apiVersion/kind {api_version:?}/{kind:?} (supported: {API_VERSION} Host, VmImage, Network, SecurityGroup, Volume, VirtualMachine)"
    )]
    UnknownKind {
        document: usize,
        api_version: String,
        kind: String,
    },
    /// A field outside the schema at the top level or in `metadata` (spec fields are refused by
    /// the decoder, reported as [`DocumentError::Decode`]).
    #[error("document {document} ({object}): {path}: unknown field")]
    UnknownField {
        document: usize,
        object: ObjectRef,
        path: String,
    },
    /// Wrong type, missing field or unknown spec field; serde_yaml's message names the field path
    /// and the line and column.
    #[error("document {document} ({object}): {source}")]
    Decode {
        document: usize,
        object: ObjectRef,
        source: serde_yaml::Error,
    },
    /// The object decodes but breaks a schema bound, pattern or CEL rule.
    #[error("document {document} ({object}): {error}")]
    Invalid {
        document: usize,
        object: ObjectRef,
        error: FieldError,
    },
    #[error(
        "document {document} ({object}): the same object is already defined in document {first}"
    )]
    Duplicate {
        document: usize,
        object: ObjectRef,
        first: usize,
    },
}

impl DocumentError {
    /// Index of the document (from 1) the problem is in.
    pub fn document(&self) -> usize {
        match self {
            DocumentError::Syntax { document, .. }
            | DocumentError::NotAnObject { document }
            | DocumentError::MissingTypeField { document, .. }
            | DocumentError::UnknownKind { document, .. }
            | DocumentError::UnknownField { document, .. }
            | DocumentError::Decode { document, .. }
            | DocumentError::Invalid { document, .. }
            | DocumentError::Duplicate { document, .. } => *document,
        }
    }
}

/// Every problem in a manifest stream, one per line, in document order.
#[derive(Debug, Error)]
#[error("{}", self.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ManifestError {
    pub problems: Vec<DocumentError>,
}
