//! yunctl's one error type. Each error is shown to the user as one line (kubectl's habit:
//! `error: ...`, or `Error from server (Reason): ...` for what the store refused); only a
//! refused manifest and several failed names give one line per problem.

use std::path::PathBuf;

use thiserror::Error;
use yun_store::StoreError;

#[derive(Debug, Error)]
pub enum CtlError {
    #[error("the server doesn't have a resource type {name:?} (known: {known})")]
    UnknownKind { name: String, known: String },
    /// A named object that does not exist, in kubectl's words (`virtualmachines "x" not found`).
    #[error("Error from server (NotFound): {plural} {name:?} not found")]
    NotFound { plural: String, name: String },
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    #[error("config file {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// Every problem of one manifest file (one per line, each naming the file).
    #[error("{}", problems.iter().map(|p| format!("{}: {p}", path.display())).collect::<Vec<_>>().join("\n"))]
    Manifest {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] yun_fleet_etcd::TlsError),
    #[error("{kind} has no scale subresource")]
    NoScale { kind: String },
    #[error(
        "timed out waiting for {plural} {name:?} to be deleted: finalizers {} remain (the controller removes them; is it running?)",
        finalizers.join(", ")
    )]
    DeleteTimeout {
        plural: String,
        name: String,
        finalizers: Vec<String>,
    },
    /// A request that makes no sense (kubectl reports these as `error:` and exits 1).
    #[error("{0}")]
    Usage(String),
    /// Several independent failures (one per name given), each reported.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<CtlError>),
}

/// The store's refusals in the API server's words; transport problems stay plain.
fn store_message(e: &StoreError) -> String {
    let reason = match e {
        StoreError::NotFound { .. } => "NotFound",
        StoreError::AlreadyExists { .. } => "AlreadyExists",
        StoreError::Conflict { .. } => "Conflict",
        StoreError::Invalid { .. } => "Invalid",
        StoreError::Gone { .. } => "Gone",
        _ => return e.to_string(),
    };
    format!("Error from server ({reason}): {e}")
}

impl CtlError {
    /// The lines to print on stderr: `error: ` before each unless it is the server's.
    pub fn lines(&self) -> Vec<String> {
        match self {
            CtlError::Many(errors) => errors.iter().flat_map(CtlError::lines).collect(),
            CtlError::Manifest { .. } => self.to_string().lines().map(prefixed).collect(),
            // A transport error may carry newlines (gRPC metadata): keep it one line.
            _ => vec![prefixed(&self.to_string().replace('\n', " "))],
        }
    }
}

fn prefixed(line: &str) -> String {
    if line.starts_with("Error from server") {
        line.to_owned()
    } else {
        format!("error: {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_is_one_line_in_kubectls_words() {
        let nf = CtlError::NotFound {
            plural: "virtualmachines".into(),
            name: "x".into(),
        };
        assert_eq!(
            nf.lines(),
            ["Error from server (NotFound): virtualmachines \"x\" not found"]
        );
        let usage = CtlError::Usage("a\nb".into());
        assert_eq!(usage.lines(), ["error: a b"]);
        let invalid = CtlError::Store(StoreError::invalid("spec.cpu", "must be at least 1"));
        assert_eq!(
            invalid.lines(),
            ["Error from server (Invalid): spec.cpu: must be at least 1"]
        );
    }

    #[test]
    fn a_manifest_error_gives_one_line_per_problem_naming_the_file() {
        let e = CtlError::Manifest {
            path: "vm.yaml".into(),
            problems: vec!["document 1: a".into(), "document 2: b".into()],
        };
        assert_eq!(
            e.lines(),
            [
                "error: vm.yaml: document 1: a",
                "error: vm.yaml: document 2: b"
            ]
        );
    }

    #[test]
    fn many_errors_keep_each_line() {
        let e = CtlError::Many(vec![
            CtlError::Usage("one".into()),
            CtlError::NoScale {
                kind: "VirtualMachine".into(),
            },
        ]);
        assert_eq!(
            e.lines(),
            [
                "error: one",
                "error: VirtualMachine has no scale subresource"
            ]
        );
    }
}
