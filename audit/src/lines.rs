//! Reading a log line by line with a length cap, so a tampered file with an enormous line
//! cannot exhaust memory.

use std::io::{self, BufRead, Read};

use crate::record::MAX_ENTRY_BYTES;

/// Longest line a reader accepts: an entry at its size limit plus seq, time, prev and hash.
pub(crate) const MAX_LINE_BYTES: usize = MAX_ENTRY_BYTES + 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// End of file; `buf` is empty.
    Eof,
    /// A full line; `buf` holds it without its `\n`.
    Complete,
    /// The file ends without `\n`; `buf` holds the fragment.
    Unterminated,
    /// More than [`MAX_LINE_BYTES`] without a `\n`; the reader is left mid-line.
    TooLong,
}

#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    /// Bytes consumed so far (offset of the next line).
    offset: u64,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, offset: 0 }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    pub(crate) fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<LineRead> {
        buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let read = (&mut self.inner).take(limit).read_until(b'\n', buf)?;
        self.offset += read as u64;
        Ok(match buf.last() {
            None => LineRead::Eof,
            Some(b'\n') => {
                buf.pop();
                LineRead::Complete
            }
            Some(_) if read as u64 == limit => LineRead::TooLong,
            Some(_) => LineRead::Unterminated,
        })
    }
}
