//! Verification: walk the whole chain and name the first record that is not what an
//! untouched log would hold.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::chain::{GENESIS_PREV, line_hashes};
use crate::error::AuditError;
use crate::lines::{LineRead, LineReader, MAX_LINE_BYTES};
use crate::problem::Problem;
use crate::record::AuditRecord;

/// A checkpoint of the chain kept outside the log (e.g. published on the fleet bus): the
/// record with this `seq` must exist and have this `hash`. It is what makes removal of the
/// newest records (tail truncation) and wholesale rewriting of the chain detectable; records
/// appended after the anchor was taken are fine. Text form: `<seq>:<hash>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl FromStr for Anchor {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || AuditError::BadAnchor {
            text: text.to_string(),
        };
        let (seq, hash) = text.trim().split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        let hex_ok =
            hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex_ok {
            return Err(bad());
        }
        Ok(Self {
            seq,
            hash: hash.to_string(),
        })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// The outcome of a successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records in the chain (= the last seq).
    pub records: u64,
    /// Hash of the last record ([`GENESIS_PREV`] for an empty log).
    pub last_hash: String,
    /// Length of the verified part of the file.
    pub verified_bytes: u64,
    /// Bytes after the last `\n`: a record whose write was interrupted by a crash and never
    /// acknowledged. Not part of the chain; the writer truncates them on its next open.
    pub unterminated_tail_bytes: u64,
}

impl VerifyReport {
    /// An anchor for the current end of the chain, to keep somewhere the log's writer cannot
    /// rewrite.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            seq: self.records,
            hash: self.last_hash.clone(),
        }
    }
}

/// Verifies the whole log at `path`: every record's own hash, consecutive seqs from 1, each
/// `prev` equal to the previous record's hash, and the anchor if given. An empty file is an
/// empty chain; a missing file is an I/O error. Blocking: call from `spawn_blocking` in async code.
pub fn verify(path: &Path, anchor: Option<&Anchor>) -> Result<VerifyReport, AuditError> {
    let file = File::open(path).map_err(AuditError::io(path, "open"))?;
    walk(
        path,
        BufReader::with_capacity(256 * 1024, file),
        anchor,
        |_| Ok(()),
    )
}

/// A defect at a given line.
#[derive(Debug)]
pub(crate) struct Defect {
    pub(crate) line: usize,
    pub(crate) seq: Option<u64>,
    pub(crate) problem: Problem,
}

impl Defect {
    pub(crate) fn into_error(self, path: &Path) -> AuditError {
        AuditError::Broken {
            path: path.to_path_buf(),
            line: self.line,
            seq: self.seq,
            problem: self.problem,
        }
    }
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// Parses one line and checks its own hash (not its place in the chain).
pub(crate) fn check_line(line: &[u8]) -> Result<AuditRecord, (Option<u64>, Problem)> {
    let record: AuditRecord = serde_json::from_slice(line).map_err(|e| {
        let seq = serde_json::from_slice::<SeqOnly>(line).ok().map(|s| s.seq);
        (
            seq,
            Problem::Malformed {
                reason: e.to_string(),
            },
        )
    })?;
    let seq = Some(record.seq);
    let (computed, claimed) = line_hashes(line).map_err(|p| (seq, p))?;
    if claimed != record.hash {
        let reason = "the line's final member is not its \"hash\" field".to_string();
        return Err((seq, Problem::Malformed { reason }));
    }
    if computed != record.hash {
        return Err((
            seq,
            Problem::Edited {
                claimed: record.hash,
                computed,
            },
        ));
    }
    Ok(record)
}

/// Position in the chain while walking it front to back.
#[derive(Debug)]
pub(crate) struct ChainWalker {
    line: usize,
    last_seq: u64,
    last_hash: String,
}

impl ChainWalker {
    pub(crate) fn new() -> Self {
        Self {
            line: 0,
            last_seq: 0,
            last_hash: GENESIS_PREV.to_string(),
        }
    }

    /// Checks the next complete line against the chain so far and advances past it.
    pub(crate) fn accept(&mut self, line: &[u8]) -> Result<AuditRecord, Defect> {
        self.line += 1;
        let at = |seq, problem| Defect {
            line: self.line,
            seq,
            problem,
        };
        let record = check_line(line).map_err(|(seq, problem)| at(seq, problem))?;
        let expected = self.last_seq + 1;
        let seq = Some(record.seq);
        if record.seq > expected {
            // Classified as Reordered by the caller if the missing record shows up later.
            return Err(at(
                seq,
                Problem::Removed {
                    first_missing: expected,
                    last_missing: record.seq - 1,
                },
            ));
        }
        if record.seq < expected {
            let problem = Problem::Reordered {
                expected,
                found: record.seq,
                expected_at_line: None,
            };
            return Err(at(seq, problem));
        }
        if record.prev != self.last_hash {
            let problem = Problem::PrevMismatch {
                expected: self.last_hash.clone(),
                found: record.prev,
            };
            return Err(at(seq, problem));
        }
        self.last_seq = record.seq;
        self.last_hash.clone_from(&record.hash);
        Ok(record)
    }
}

/// Walks the chain read from `reader`, calling `on_record` for each good record, and returns
/// the report or the first defect as [`AuditError::Broken`].
pub(crate) fn walk<R: BufRead>(
    path: &Path,
    reader: R,
    anchor: Option<&Anchor>,
    mut on_record: impl FnMut(&AuditRecord) -> Result<(), AuditError>,
) -> Result<VerifyReport, AuditError> {
    let mut lines = LineReader::new(reader);
    let mut walker = ChainWalker::new();
    let mut buf = Vec::new();
    let mut verified_bytes = 0;
    let mut unterminated_tail_bytes = 0;
    if let Some(anchor) = anchor.filter(|a| a.seq == 0 && a.hash != GENESIS_PREV) {
        let problem = Problem::AnchorMismatch {
            anchored: anchor.hash.clone(),
            found: GENESIS_PREV.to_string(),
        };
        return Err(Defect {
            line: 0,
            seq: Some(0),
            problem,
        }
        .into_error(path));
    }
    loop {
        let read = lines
            .next_line(&mut buf)
            .map_err(AuditError::io(path, "read"))?;
        match read {
            LineRead::Eof => break,
            LineRead::Unterminated => {
                unterminated_tail_bytes = buf.len() as u64;
                break;
            }
            LineRead::TooLong => {
                let reason = format!("line longer than {MAX_LINE_BYTES} bytes");
                let defect = Defect {
                    line: walker.line + 1,
                    seq: None,
                    problem: Problem::Malformed { reason },
                };
                return Err(defect.into_error(path));
            }
            LineRead::Complete => {}
        }
        let record = match walker.accept(&buf) {
            Ok(record) => record,
            Err(mut defect) => {
                if let Problem::Removed { first_missing, .. } = defect.problem {
                    let later = find_seq_later(&mut lines, defect.line, first_missing)
                        .map_err(AuditError::io(path, "read"))?;
                    if let (Some(line), Some(found)) = (later, defect.seq) {
                        defect.problem = Problem::Reordered {
                            expected: first_missing,
                            found,
                            expected_at_line: Some(line),
                        };
                    }
                }
                return Err(defect.into_error(path));
            }
        };
        if let Some(anchor) = anchor.filter(|a| a.seq == record.seq && a.hash != record.hash) {
            let problem = Problem::AnchorMismatch {
                anchored: anchor.hash.clone(),
                found: record.hash,
            };
            return Err(Defect {
                line: walker.line,
                seq: Some(record.seq),
                problem,
            }
            .into_error(path));
        }
        on_record(&record)?;
        verified_bytes = lines.offset();
    }
    if let Some(anchor) = anchor.filter(|a| a.seq > walker.last_seq) {
        let problem = Problem::EndsBeforeAnchor {
            anchor_seq: anchor.seq,
            last_seq: walker.last_seq,
        };
        return Err(Defect {
            line: walker.line,
            seq: Some(walker.last_seq),
            problem,
        }
        .into_error(path));
    }
    Ok(VerifyReport {
        records: walker.last_seq,
        last_hash: walker.last_hash,
        verified_bytes,
        unterminated_tail_bytes,
    })
}

/// After a seq gap at line `line`: the line where `seq` appears later in the file, if it does.
fn find_seq_later<R: BufRead>(
    lines: &mut LineReader<R>,
    mut line: usize,
    seq: u64,
) -> std::io::Result<Option<usize>> {
    let mut buf = Vec::new();
    while lines.next_line(&mut buf)? == LineRead::Complete {
        line += 1;
        if serde_json::from_slice::<SeqOnly>(&buf).is_ok_and(|s| s.seq == seq) {
            return Ok(Some(line));
        }
    }
    Ok(None)
}
