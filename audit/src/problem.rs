//! What is wrong with a record, as found by verification or when opening a log.

/// The first defect found in a log. Each variant names the kind of tampering (or damage) it
/// is the signature of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a record at all: bad JSON, missing fields, wrong seal layout, over-long line.
    #[error("malformed record: {reason}")]
    Malformed { reason: String },

    /// The record's bytes do not hash to its `hash`: a field of this record was edited.
    #[error("record was edited: it claims hash {claimed} but its content hashes to {computed}")]
    Edited { claimed: String, computed: String },

    /// The record is intact but does not link to the record before it: that earlier record
    /// was rewritten with a recomputed hash, or this record was spliced in from elsewhere.
    #[error(
        "chain broken: prev is {found} but the preceding record hashes to {expected} \
         (the preceding record was rewritten, or this one was replaced)"
    )]
    PrevMismatch { expected: String, found: String },

    /// Sequence numbers skip ahead and the skipped ones appear nowhere later in the file:
    /// records were removed.
    #[error("records seq {first_missing}..={last_missing} were removed before this record")]
    Removed {
        first_missing: u64,
        last_missing: u64,
    },

    /// The record is not the one that should come next: records were moved (the expected
    /// one appears later, at `expected_at_line`) or a record was repeated/moved backwards.
    #[error("records reordered: expected seq {expected} here, found seq {found}{}", at_line(*.expected_at_line))]
    Reordered {
        expected: u64,
        found: u64,
        expected_at_line: Option<usize>,
    },

    /// The log ends before the anchored record: records were removed from the end.
    #[error(
        "log ends at seq {last_seq}, before the anchored seq {anchor_seq}: records were removed from the end"
    )]
    EndsBeforeAnchor { anchor_seq: u64, last_seq: u64 },

    /// The anchored record has another hash than the anchor: the chain was rewritten.
    #[error(
        "anchored record hashes to {found} but the anchor says {anchored}: the chain was rewritten"
    )]
    AnchorMismatch { anchored: String, found: String },
}

fn at_line(line: Option<usize>) -> String {
    match line {
        Some(line) => format!(" (the expected record is at line {line})"),
        None => " (seq repeated or moved backwards)".to_string(),
    }
}
