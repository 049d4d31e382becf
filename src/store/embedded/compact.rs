//! Compaction while idle: after a drain the database file shrinks back to
//! about its live data.
//!
//! redb reuses free pages but never gives them back to the file system, so a
//! burst (or an outage that queued a day of webhooks) leaves the file at its
//! high-water mark for ever. `Database::compact` moves the live pages to the
//! front and truncates the file; it needs `&mut Database`, i.e. no read
//! transaction and no other handle in flight.
//!
//! The writer thread is the only one that writes, so it is the safe place:
//! after a batch that drained the queue it waits [`IDLE_BEFORE_COMPACT`]
//! without a write, then takes the shared handle's write lock (readers wait
//! for it instead of failing), and compacts when no reader still holds a
//! clone of the handle and the file is more than twice its live data plus
//! [`SLACK_BYTES`]. At most once per [`MIN_INTERVAL`]; only a drain (real
//! work) schedules it, so a service with nothing to do never compacts again.
use super::reopen::Shared;
use crate::sync;
use redb::{Database, ReadableTableMetadata};
use std::sync::Arc;
use std::time::Duration;

/// How long the writer must have been idle after a drain before compacting.
pub(super) const IDLE_BEFORE_COMPACT: Duration = Duration::from_secs(1);
/// Least time between two compactions.
pub(super) const MIN_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// The file may exceed twice its live data by this much without a compaction.
pub(super) const SLACK_BYTES: u64 = 1024 * 1024;
/// When readers hold the handle, try again this much later.
pub(super) const RETRY_BUSY: Duration = Duration::from_secs(1);

/// What a compaction attempt did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Compaction {
    /// The file was compacted (sizes before and after).
    Done { before: u64, after: u64 },
    /// The file is already within its bound.
    NotNeeded,
    /// Readers hold the handle; try again later.
    Busy,
    /// Compaction failed; the handle should be reopened.
    Failed,
}

/// Live bytes (stored data and B-tree metadata) of `db`.
fn live_bytes(db: &Database) -> Option<u64> {
    let txn = db.begin_write().ok()?;
    let stats = txn.stats().ok();
    let _ = txn.abort();
    let s = stats?;
    Some(s.stored_bytes() + s.metadata_bytes())
}

/// Whether nothing is pending (compacting is only worth it after a drain).
pub(super) fn queue_is_empty(db: &Database) -> bool {
    use redb::ReadableDatabase;
    let Ok(txn) = db.begin_read() else {
        return false;
    };
    txn.open_table(super::tables::EVENTS)
        .ok()
        .and_then(|t| t.len().ok())
        == Some(0)
}

/// Compact `shared`'s database if it is more than twice its live data plus
/// [`SLACK_BYTES`] and nobody else holds the handle.
pub(super) fn compact_if_worth_it(shared: &Shared) -> Compaction {
    let mut slot = sync::write(&shared.db);
    let Some(handle) = slot.as_mut() else {
        return Compaction::Busy;
    };
    let Some(db) = Arc::get_mut(handle) else {
        return Compaction::Busy;
    };
    let file_len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = file_len(&shared.path);
    let Some(live) = live_bytes(db) else {
        return Compaction::NotNeeded;
    };
    if before <= live.saturating_mul(2).saturating_add(SLACK_BYTES) {
        return Compaction::NotNeeded;
    }
    // compact() returns false once nothing more can be gained.
    for _ in 0..8 {
        match db.compact() {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %e, "store compaction failed");
                return Compaction::Failed;
            }
        }
    }
    let after = file_len(&shared.path);
    tracing::info!(
        before_bytes = before,
        after_bytes = after,
        live_bytes = live,
        "store compacted after the queue drained"
    );
    Compaction::Done { before, after }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::ev;
    use super::super::{EmbeddedStore, FILE_NAME};
    use super::*;
    use crate::store::Store;
    use std::time::Instant;

    /// Fill with 2 000 events of 5 KiB (about a burst's worth per MiB),
    /// drain, and the writer compacts by itself once idle: the file ends
    /// within twice its live data plus the slack.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_shrinks_after_a_drain() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let path = dir.path().join(FILE_NAME);
        let body = vec![b'x'; 5 * 1024];
        for i in 0..2_000u64 {
            s.append(ev(
                Some(&format!("build:{}", i % 50)),
                i,
                Some(&format!("sig-{i}")),
                &body,
            ))
            .await
            .unwrap();
        }
        let full = std::fs::metadata(&path).unwrap().len();
        loop {
            let claims = s.claim("w", Duration::from_secs(60), 64).await.unwrap();
            if claims.is_empty() {
                break;
            }
            for c in claims {
                s.complete(
                    &c.key,
                    "w",
                    c.token,
                    c.upto(),
                    crate::store::Completion::default(),
                )
                .await
                .unwrap();
            }
        }
        assert_eq!(s.stats().await.unwrap().pending, 0);
        let drained = std::fs::metadata(&path).unwrap().len();
        // Wait (generously) for the idle writer to compact.
        let deadline = Instant::now() + Duration::from_secs(60);
        let live = loop {
            let now = std::fs::metadata(&path).unwrap().len();
            let live = live_bytes(&s.shared.current().unwrap()).unwrap();
            if now <= 2 * live + SLACK_BYTES {
                break live;
            }
            assert!(
                Instant::now() < deadline,
                "never compacted: {now} bytes, live {live}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let after = std::fs::metadata(&path).unwrap().len();
        eprintln!("file: {full} bytes full, {drained} after the drain, {after} after compaction (live {live})");
        assert!(after < drained, "{after} < {drained}");
        // The store still works, and nothing compacts again while idle.
        let batches = s.shared.batches.load(std::sync::atomic::Ordering::Relaxed);
        s.append(ev(None, 1, None, b"after")).await.unwrap();
        assert_eq!(s.pending(10).await.unwrap().len(), 1);
        assert_eq!(
            s.shared.batches.load(std::sync::atomic::Ordering::Relaxed),
            batches + 1
        );
    }
}
