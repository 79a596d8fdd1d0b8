//! The writer: appends batches of records to the log, one `write` and one `fdatasync` per
//! batch, so a batch is durable when `append_batch` returns.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::chain::{GENESIS_PREV, seal_entry};
use crate::error::AuditError;
use crate::lines::MAX_LINE_BYTES;
use crate::problem::Problem;
use crate::record::AuditEntry;
use crate::verify::{Anchor, check_line};

/// What every line this crate writes starts with; an unterminated final fragment that is not
/// a prefix of a record is not a torn write and is refused rather than truncated.
const RECORD_START: &[u8] = b"{\"seq\":";

/// An open audit log, exclusively locked (advisory `flock`) for appending by this process.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    last_seq: u64,
    last_hash: String,
    poisoned: bool,
    buf: Vec<u8>,
}

impl AuditLog {
    /// Opens (or creates, mode 0600, with its parent directories) the log at `path` and
    /// continues its chain after the last record, whose own hash is checked. An unterminated
    /// final line (a crash mid-write, never acknowledged) is truncated away with a warning;
    /// anything else malformed at the end refuses to open. Use [`crate::verify`] to check the
    /// whole chain.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        let (file, created) = open_or_create(&path)?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => AuditError::Locked { path: path.clone() },
            std::fs::TryLockError::Error(e) => AuditError::io(&path, "lock")(e),
        })?;
        if created {
            sync_parent_dir(&path)?;
        } else {
            let mode = file
                .metadata()
                .map_err(AuditError::io(&path, "stat"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "audit log is readable or writable by group/others");
            }
        }
        let (last_seq, last_hash) = recover_tail(&path, &file)?;
        Ok(Self {
            path,
            file,
            last_seq,
            last_hash,
            poisoned: false,
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seq of the last record (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Hash of the last record ([`GENESIS_PREV`] for an empty log).
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    /// The current end of the chain, to publish somewhere this log's writer cannot rewrite.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            seq: self.last_seq,
            hash: self.last_hash.clone(),
        }
    }

    /// Appends one record; durable on return.
    pub fn append(&mut self, entry: &AuditEntry) -> Result<u64, AuditError> {
        Ok(self.append_batch(std::slice::from_ref(entry))?.start)
    }

    /// Appends `entries` as consecutive records with one write and one `fdatasync`, and
    /// returns their seqs. Durable on return. An invalid entry fails the whole batch before
    /// anything is written. After a failed write or sync the log is poisoned (the file may end
    /// in a partial record) and must be reopened.
    pub fn append_batch(&mut self, entries: &[AuditEntry]) -> Result<Range<u64>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let first = self.last_seq + 1;
        self.buf.clear();
        let mut prev = self.last_hash.clone();
        for (i, entry) in entries.iter().enumerate() {
            entry
                .check_fields()
                .map_err(|reason| AuditError::InvalidEntry {
                    reason: format!("entry {i}: {reason}"),
                })?;
            let start = self.buf.len();
            let seq = first + i as u64;
            prev = seal_entry(seq, &jiff::Timestamp::now(), entry, &prev, &mut self.buf)?;
            if self.buf.len() - start - 1 > MAX_LINE_BYTES {
                let reason = format!("entry {i}: record longer than {MAX_LINE_BYTES} bytes");
                return Err(AuditError::InvalidEntry { reason });
            }
        }
        if entries.is_empty() {
            return Ok(first..first);
        }
        if let Err(e) = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data())
        {
            self.poisoned = true;
            return Err(AuditError::io(&self.path, "append")(e));
        }
        self.last_seq += entries.len() as u64;
        self.last_hash = prev;
        if self.buf.capacity() > 8 * 1024 * 1024 {
            self.buf = Vec::new();
        }
        Ok(first..self.last_seq + 1)
    }
}

fn open_or_create(path: &Path) -> Result<(File, bool), AuditError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent).map_err(AuditError::io(path, "create parent directory"))?;
    }
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    match options.clone().create_new(true).mode(0o600).open(path) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((
            options.open(path).map_err(AuditError::io(path, "open"))?,
            false,
        )),
        Err(e) => Err(AuditError::io(path, "create")(e)),
    }
}

/// Creates the log's own directory mode 0700 (records name tenants' objects); directories
/// above it are created with the default mode, since other users may need to traverse them
/// (e.g. libvirt's QEMU user through an agent's state directory).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(above) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(above)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Makes a new log's directory entry durable, so an acknowledged first batch cannot vanish
/// with its file after a crash.
fn sync_parent_dir(path: &Path) -> Result<(), AuditError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(AuditError::io(path, "sync directory"))
}

/// Truncates a torn final fragment, checks the last record and returns its seq and hash.
fn recover_tail(path: &Path, file: &File) -> Result<(u64, String), AuditError> {
    let len = file.metadata().map_err(AuditError::io(path, "stat"))?.len();
    // Room for a torn fragment plus the last complete line.
    let window_len = len.min(2 * (MAX_LINE_BYTES as u64 + 1));
    let window_start = len - window_len;
    let mut window = vec![0; window_len as usize];
    file.read_exact_at(&mut window, window_start)
        .map_err(AuditError::io(path, "read"))?;

    let mut end = window.len();
    if window.last().is_some_and(|&b| b != b'\n') {
        let fragment_start = window
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |nl| nl + 1);
        let fragment = &window[fragment_start..];
        let plausible = fragment.len() <= MAX_LINE_BYTES
            && (window_start == 0 || fragment_start > 0)
            && (fragment.starts_with(RECORD_START) || RECORD_START.starts_with(fragment));
        if !plausible {
            let reason =
                "the file ends in an unterminated line that is not a partly written record"
                    .to_string();
            return Err(broken_at_end(path, None, Problem::Malformed { reason }));
        }
        let keep = window_start + fragment_start as u64;
        file.set_len(keep)
            .and_then(|()| file.sync_all())
            .map_err(AuditError::io(path, "truncate torn record"))?;
        tracing::warn!(
            path = %path.display(),
            bytes = fragment.len(),
            "truncated an incomplete final audit record (a write interrupted by a crash, never acknowledged)"
        );
        end = fragment_start;
    }
    if window_start + end as u64 == 0 {
        return Ok((0, GENESIS_PREV.to_string()));
    }
    // window[..end] ends with '\n'; the last line is between the previous '\n' and it.
    let line_start = match window[..end - 1].iter().rposition(|&b| b == b'\n') {
        Some(nl) => nl + 1,
        None if window_start == 0 => 0,
        None => {
            let reason = format!("last line longer than {MAX_LINE_BYTES} bytes");
            return Err(broken_at_end(path, None, Problem::Malformed { reason }));
        }
    };
    match check_line(&window[line_start..end - 1]) {
        Ok(record) => Ok((record.seq, record.hash)),
        Err((seq, problem)) => Err(broken_at_end(path, seq, problem)),
    }
}

/// A defect in the last line of the file; counts lines to name it.
fn broken_at_end(path: &Path, seq: Option<u64>, problem: Problem) -> AuditError {
    let line = match count_lines(path) {
        Ok(complete) => complete.max(1),
        Err(e) => return AuditError::io(path, "read")(e),
    };
    AuditError::Broken {
        path: path.to_path_buf(),
        line,
        seq,
        problem,
    }
}

/// Number of lines in the file, counting an unterminated final line.
fn count_lines(path: &Path) -> io::Result<usize> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let (mut lines, mut last) = (0, b'\n');
    loop {
        let chunk = reader.fill_buf()?;
        let Some(&tail) = chunk.last() else { break };
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        last = tail;
        let n = chunk.len();
        reader.consume(n);
    }
    Ok(if last == b'\n' { lines } else { lines + 1 })
}
