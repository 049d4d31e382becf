//! Fixtures shared by the embedded store's unit tests: events, messages, and
//! a disk that can be made full or stalled on demand, to drive the reopen,
//! timeout and group-commit paths without root or a real small file system.
use super::reopen::Opener;
use crate::store::{MessageRef, NewEvent};
use redb::Database;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A build event for `key` (`None`: the store picks one).
pub(super) fn ev(
    key: Option<&str>,
    received_ms: u64,
    replay: Option<&str>,
    body: &[u8],
) -> NewEvent {
    NewEvent {
        key: key.map(str::to_owned),
        event: "build".into(),
        action: "updated".into(),
        received_ms,
        replay_key: replay.map(str::to_owned),
        body: body.to_vec(),
    }
}

/// A message in channel `c1`.
pub(super) fn msg(id: &str) -> MessageRef {
    MessageRef {
        channel_id: "c1".into(),
        message_id: id.into(),
        status: "running".into(),
        ..MessageRef::default()
    }
}

/// A file backend whose writes and syncs fail with ENOSPC while `full` is
/// set, and hang while `stalled` is set.
#[derive(Debug)]
struct FlakyDisk {
    inner: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

/// Switches for the faults of the disks opened by [`DiskFaults::opener`].
#[derive(Clone, Default)]
pub(super) struct DiskFaults {
    full: Arc<std::sync::atomic::AtomicBool>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl DiskFaults {
    pub(super) fn opener(&self) -> Box<Opener> {
        let faults = self.clone();
        Box::new(move |path: &Path| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let inner = redb::backends::FileBackend::new(file)?;
            Database::builder()
                .set_check_integrity_on_open(true)
                .create_with_backend(FlakyDisk {
                    inner,
                    full: Arc::clone(&faults.full),
                    stalled: Arc::clone(&faults.stalled),
                })
        })
    }

    pub(super) fn set_full(&self, on: bool) {
        self.full.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn set_stalled(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl FlakyDisk {
    fn check(&self) -> std::io::Result<()> {
        while self.stalled.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FlakyDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> std::result::Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> std::result::Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> std::result::Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
}
