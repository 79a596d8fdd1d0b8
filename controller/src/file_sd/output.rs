//! The target files on disk: their names (one file, or `<stem>.<i>.<ext>` shards), atomic
//! replacement, and writing only what changed.

use super::FileSdError;
use super::render::{Target, parse_targets};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The files `path` stands for with `shards` shards: `path` itself for one; else
/// `agents.json` → `agents.0.json` … `agents.<n-1>.json` (a name without extension gets
/// `.<i>` appended), which one `file_sd_configs` glob (`agents.*.json`) covers.
pub fn shard_paths(path: &Path, shards: usize) -> Vec<PathBuf> {
    if shards <= 1 {
        return vec![path.to_path_buf()];
    }
    let (stem, ext) = split_name(path);
    (0..shards)
        .map(|i| {
            path.with_file_name(match &ext {
                Some(ext) => format!("{stem}.{i}.{ext}"),
                None => format!("{stem}.{i}"),
            })
        })
        .collect()
}

fn split_name(path: &Path) -> (String, Option<String>) {
    let name = path
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), Some(ext.to_owned())),
        _ => (name.into_owned(), None),
    }
}

/// Whether `name` is one of `path`'s names for some shard count (the single file or a shard).
fn is_own_name(path: &Path, name: &str) -> bool {
    let (stem, ext) = split_name(path);
    if path.file_name().is_some_and(|n| n == name) {
        return true;
    }
    let Some(rest) = name.strip_prefix(&format!("{stem}.")) else {
        return false;
    };
    let index = match &ext {
        Some(ext) => rest.strip_suffix(&format!(".{ext}")),
        None => Some(rest),
    };
    index.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never a
/// part: a temporary file in the same directory, written, fsynced, renamed over, and the
/// directory fsynced (the rename survives a crash).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileSdError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| FileSdError::Io {
            op,
            path: p,
            source,
        }
    };
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        file.write_all(bytes).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory of", path))
}

/// The target files of one `--prometheus-sd-file`, with what each last held.
#[derive(Debug)]
pub struct SdFiles {
    /// `--prometheus-sd-file` as given (the shard names derive from it).
    base: PathBuf,
    paths: Vec<PathBuf>,
    /// The bytes each file holds, as last written or read: equal content is not rewritten.
    last: Vec<Option<String>>,
}

impl SdFiles {
    /// The files for `path` split into `shards`; reads what they hold now.
    pub fn open(path: &Path, shards: usize) -> SdFiles {
        let paths = shard_paths(path, shards);
        let last = paths
            .iter()
            .map(|p| std::fs::read_to_string(p).ok())
            .collect();
        SdFiles {
            base: path.to_path_buf(),
            paths,
            last,
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The targets every file of this name holds now, shards of another count included
    /// (what this controller, or its predecessor, last published). Unparsable files are
    /// skipped with a warning.
    pub fn previous_targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for path in self.own_files().unwrap_or_default() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match parse_targets(&text) {
                Some(targets) => out.extend(targets),
                None => tracing::warn!(path = %path.display(),
                    "ignoring a prometheus file_sd file that is not a JSON array"),
            }
        }
        out
    }

    /// Writes each file whose content differs from `contents[i]`; returns how many were
    /// written. A failed file is retried by the next call.
    pub fn write(&mut self, contents: &[String]) -> Result<usize, FileSdError> {
        let mut written = 0;
        for (index, text) in contents.iter().enumerate() {
            written += usize::from(self.write_shard(index, text)?);
        }
        Ok(written)
    }

    /// Writes shard `index` (0 for the single file) unless it already holds `text`; returns
    /// whether it was written. An index beyond the shard count writes nothing.
    pub fn write_shard(&mut self, index: usize, text: &str) -> Result<bool, FileSdError> {
        let (Some(path), Some(last)) = (self.paths.get(index), self.last.get_mut(index)) else {
            return Ok(false);
        };
        if last.as_deref() == Some(text) {
            return Ok(false);
        }
        write_atomically(path, text.as_bytes())?;
        *last = Some(text.to_owned());
        Ok(true)
    }

    /// Removes files of this name left by a different shard count (`agents.json` when now
    /// sharded, `agents.7.json` when now fewer than 8): a glob would list their stale targets.
    pub fn remove_stale(&self) -> Result<Vec<PathBuf>, FileSdError> {
        let mut removed = Vec::new();
        for path in self.own_files()? {
            if self.paths.iter().any(|p| p.file_name() == path.file_name()) {
                continue;
            }
            std::fs::remove_file(&path).map_err(|source| FileSdError::Io {
                op: "removing a stale shard",
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
        Ok(removed)
    }

    /// Every file in the directory named as the single file or a shard of it.
    fn own_files(&self) -> Result<Vec<PathBuf>, FileSdError> {
        let dir = self
            .base
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let entries = std::fs::read_dir(dir).map_err(|source| FileSdError::Io {
            op: "listing",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| is_own_name(&self.base, &e.file_name().to_string_lossy()))
            .map(|e| self.base.with_file_name(e.file_name()))
            .collect();
        files.sort();
        Ok(files)
    }
}
