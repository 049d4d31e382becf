//! The open database handle, and reopening it after an I/O error.
//!
//! After an I/O error (a full disk, a failing SD card) redb refuses all
//! further work on that handle ("previous I/O error"). The store recovers by
//! itself: the writer closes the handle, once in-flight reads let go of it,
//! and opens the file again before the next batch. Meanwhile the slot is
//! empty and readers report [`StoreError::Unavailable`], which ingest turns
//! into a 503 and the relay into a pause.
use super::errors::db_error;
use crate::store::write_proof::WriteProof;
use crate::store::{Result, StoreError};
use crate::sync;
use redb::Database;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long (in 10 ms steps) a reopen waits for in-flight reads.
const REOPEN_WAIT_STEPS: u32 = 500;

/// How the database file is opened (a seam for tests that inject I/O errors).
pub(super) type Opener =
    dyn Fn(&Path) -> std::result::Result<Database, redb::DatabaseError> + Send + Sync;

/// The open database, shared by the writer thread and the readers; empty
/// while a reopen is under way.
pub(super) struct Shared {
    pub(super) db: RwLock<Option<Arc<Database>>>,
    pub(super) path: PathBuf,
    pub(super) opener: Box<Opener>,
    /// Write batches handled by the writer (one commit each when all goes well).
    pub(super) batches: std::sync::atomic::AtomicU64,
    /// The last commit's outcome: what [`Store::writable`](crate::store::Store::writable) trusts.
    pub(super) proof: WriteProof,
    /// The queue's bounds and the retentions.
    pub(super) bounds: crate::store::Bounds,
}

impl Shared {
    /// The current handle, or `Unavailable` while it is being reopened.
    pub(super) fn current(&self) -> Result<Arc<Database>> {
        let slot = sync::read(&self.db);
        slot.as_ref()
            .map(Arc::clone)
            .ok_or_else(|| StoreError::Unavailable("store is reopening after an I/O error".into()))
    }

    /// Close the failed handle (once in-flight reads let go of it) and open
    /// the file again.
    pub(super) fn reopen(&self) -> Result<()> {
        let old = sync::write(&self.db).take();
        if let Some(mut old) = old {
            let mut waited = 0;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if waited < REOPEN_WAIT_STEPS => {
                        old = still_shared;
                        waited += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(still_shared) => {
                        *sync::write(&self.db) = Some(still_shared);
                        return Err(StoreError::Unavailable(
                            "store reopen: reads still hold the old handle".into(),
                        ));
                    }
                }
            }
        }
        let shown = self.path.display().to_string();
        // The file was there when the store opened. If it is gone now (its
        // file system was unmounted, or lazily detached after an error, and
        // the directory below shows through), creating it would make an
        // empty store there: the accepted queue would be hidden, and what is
        // accepted meanwhile lost when the real file comes back. Wait for it.
        if !self.path.exists() {
            return Err(StoreError::Unavailable(
                "store reopen: the store file is gone (file system unmounted?); waiting for it to come back"
                    .into(),
            ));
        }
        // (No path in the error: it reaches /health.)
        let db = (self.opener)(&self.path).map_err(|e| db_error("reopen", e))?;
        *sync::write(&self.db) = Some(Arc::new(db));
        tracing::info!(path = %shown, "embedded store reopened after an I/O error");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{ev, msg, DiskFaults};
    use super::super::EmbeddedStore;
    use crate::store::{Appended, Result, Store, StoreError};

    /// Found by the fault suite (a file system that turned read-only and was
    /// mounted again): a reopen while the file is gone must not create an
    /// empty store in its place.
    #[tokio::test]
    async fn a_reopen_waits_for_a_vanished_file_instead_of_creating_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap();
        s.append(ev(Some("build:1"), 1, Some("sig-1"), b"kept"))
            .await
            .unwrap();
        let file = s.shared.path.clone();
        let aside = dir.path().join("aside");
        faults.set_full(true);
        assert!(s.probe().await.is_err(), "the failing disk is noticed");
        std::fs::rename(&file, &aside).unwrap();
        faults.set_full(false);
        match s.probe().await {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("gone"), "{m}"),
            other => panic!("expected Unavailable while the file is gone, got {other:?}"),
        }
        assert!(!file.exists(), "no empty store was created in its place");
        std::fs::rename(&aside, &file).unwrap();
        s.probe()
            .await
            .expect("the file is back: the store reopens");
        let pending = s.pending(10).await.unwrap();
        assert_eq!(pending.len(), 1, "the queue came back with the file");
    }

    #[tokio::test]
    async fn a_full_disk_is_unavailable_and_the_store_recovers_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap();
        assert_eq!(
            s.append(ev(Some("build:1"), 1, Some("sig-1"), b"kept"))
                .await
                .unwrap(),
            Appended::Queued(1)
        );

        faults.set_full(true);
        let unavailable = |r: Result<()>, what: &str| match r {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("{what}: expected Unavailable on a full disk, got {other:?}"),
        };
        unavailable(
            s.append(ev(Some("build:1"), 2, Some("sig-2"), b"lost"))
                .await
                .map(drop),
            "append",
        );
        unavailable(s.probe().await, "probe");
        unavailable(
            s.import_message("build:1", "channel:111", msg("m"))
                .await
                .map(drop),
            "import_message",
        );

        faults.set_full(false);
        s.probe()
            .await
            .expect("the store recovers by itself once the disk has room again");
        let pending = s.pending(10).await.unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|e| e.body.as_slice())
                .collect::<Vec<_>>(),
            vec![&b"kept"[..]]
        );
        // The refused append left nothing behind: its replay key is free.
        assert_eq!(
            s.append(ev(Some("build:1"), 3, Some("sig-2"), b"again"))
                .await
                .unwrap(),
            Appended::Queued(2)
        );
        assert_eq!(
            s.append(ev(Some("build:1"), 4, Some("sig-1"), b""))
                .await
                .unwrap(),
            Appended::Duplicate(1)
        );
    }
}
