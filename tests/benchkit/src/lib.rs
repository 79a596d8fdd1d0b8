//! What every `make bench` benchmark shares: its figures go into one JSON object of numbers,
//! `target/bench/summary.json`, which each benchmark merges into (keeping the others' keys)
//! and writes atomically, so benchmarks run one after another build one summary.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Figures are rounded to this many decimal places (sub-microsecond noise is not a result).
pub const DECIMALS: i32 = 4;

/// Why the summary could not be merged; names the file.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a JSON object of figures ({detail}); move it away or delete it", .path.display())]
    NotAnObject { path: PathBuf, detail: String },
}

/// Merges `figures` into the JSON object in `path` (created, with its directory, if missing;
/// an empty file counts as missing) and replaces the file atomically. A file that is not a
/// JSON object is an error, not silently replaced: it may hold another run's figures.
pub fn merge_summary(path: &Path, figures: &[(&str, f64)]) -> Result<(), SummaryError> {
    let io = |source| SummaryError::Io {
        path: path.to_owned(),
        source,
    };
    let not_object = |detail: String| SummaryError::NotAnObject {
        path: path.to_owned(),
        detail,
    };
    let mut summary: Map<String, Value> = match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(not_object(format!("found {other}"))),
            Err(e) => return Err(not_object(e.to_string())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(io(e)),
    };
    let scale = 10f64.powi(DECIMALS);
    for (key, value) in figures {
        // A figure with no samples (NaN) is written as null, and said, rather than failing the
        // figures that were measured.
        let figure = if value.is_finite() {
            serde_json::json!((value * scale).round() / scale)
        } else {
            eprintln!("bench: {key} is {value}, written as null");
            Value::Null
        };
        summary.insert((*key).to_owned(), figure);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(summary))
        .map_err(|e| io(std::io::Error::other(e)))?;
    text.push('\n');
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn figures_merge_keeping_other_benchmarks_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench/summary.json");
        merge_summary(&path, &[("a_ms", 1.234_567_89), ("b", 2.0)]).unwrap();
        merge_summary(&path, &[("b", 3.0), ("c_per_s", 10_000.5)]).unwrap();
        assert_eq!(
            read(&path),
            serde_json::json!({"a_ms": 1.2346, "b": 3.0, "c_per_s": 10000.5})
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("bench")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_file_that_is_not_an_object_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        std::fs::write(&path, "[1, 2]").unwrap();
        let err = merge_summary(&path, &[("a", 1.0)]).unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1, 2]");
        std::fs::write(&path, "  \n").unwrap();
        merge_summary(&path, &[("a", 1.0)]).unwrap();
        assert_eq!(read(&path), serde_json::json!({"a": 1.0}));
        merge_summary(&path, &[("nan", f64::NAN)]).unwrap();
        assert_eq!(read(&path), serde_json::json!({"a": 1.0, "nan": null}));
    }
}
