//! Paged reads and range watches for the controller's full resync.
//!
//! A fleet of tens of thousands of hosts does not fit in one etcd response (gRPC caps a message
//! at a few MiB, and one huge response would hold the whole fleet twice in memory). The scan
//! reads a prefix in pages, all at the revision of the first page, so the caller sees one
//! consistent snapshot and can watch from `revision + 1` without missing or repeating a change.

use crate::bus::FleetBus;
use crate::error::BusError;
use crate::watch::BusWatch;
use etcd_client::{GetOptions, SortOrder, SortTarget, WatchOptions};

/// The smallest key greater than every key that starts with `prefix` (etcd's "prefix end").
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One key-value of a scan page, borrowed for the duration of the callback.
#[derive(Debug, Clone, Copy)]
pub struct ScannedKv<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub mod_revision: i64,
}

impl FleetBus {
    /// Reads every key in `[start, end)` in pages of `page` keys at one revision, calling
    /// `visit` for each. Returns the snapshot revision. Keys that are not UTF-8 are errors.
    pub async fn scan_range<F>(
        &self,
        start: &str,
        end: &[u8],
        page: i64,
        mut visit: F,
    ) -> Result<i64, BusError>
    where
        F: FnMut(ScannedKv<'_>) -> Result<(), BusError>,
    {
        let mut from = start.as_bytes().to_vec();
        let mut revision = 0;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.to_vec())
                .with_limit(page.max(1))
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self
                .client()
                .get(from.clone(), Some(opts))
                .await
                .map_err(BusError::etcd("scan", start))?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            for kv in resp.kvs() {
                let key = kv.key_str().map_err(|_| BusError::BadKey {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                })?;
                visit(ScannedKv {
                    key,
                    value: kv.value(),
                    mod_revision: kv.mod_revision(),
                })?;
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(revision),
            }
        }
    }

    /// Watches every key in `[start, end)` from `start_revision` (inclusive). One stream keeps
    /// events of different prefixes in revision order (a placement transaction's `alloc` and
    /// `placements/<uid>` writes arrive together).
    pub async fn watch_range(
        &self,
        start: &str,
        end: &[u8],
        start_revision: i64,
    ) -> Result<BusWatch, BusError> {
        let opts = WatchOptions::new()
            .with_range(end.to_vec())
            .with_start_revision(start_revision)
            .with_progress_notify();
        let stream = self
            .client()
            .watch(start, Some(opts))
            .await
            .map_err(BusError::etcd("watch", start))?;
        Ok(BusWatch {
            prefix: start.to_owned(),
            stream,
            last_revision: start_revision - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/yun/v1/hosts/"), b"/yun/v1/hosts0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
