//! A wrong clock at boot loses nothing: how signed webhook dates are judged
//! while the system clock is not synchronised, and the one persisted fact
//! that makes that safe, the last time this service knew for certain.
//!
//! * [`decision`]: the pure rule (clock state, known time, window, now,
//!   `Date` → accept or refuse, and why).
//! * [`sync_source`]: where "synchronised?" comes from (`CLOCK_SYNC`), in
//!   a way that works inside the unit's sandbox.
//! * [`known_time`]: the small file in the state directory.
//!
//! * [`wall`]: the wall clock the store stamps records with, read in one
//!   place so that a test can step it under a running binary.
//!
//! [`Clock`] ties them together for the running service. Start-up is never
//! delayed (a Pi that cannot reach NTP must still take webhooks).
//!
//! **When the file is written** (an SD card wears from small synced
//! writes, and an idle service writes nothing): only while the clock is
//! synchronised, and only because of real work: an accepted webhook writes
//! it when the stored time is missing or older than [`PERSIST_EVERY`] (so
//! at most once an hour, however busy), and a clean shutdown writes it when
//! a webhook was accepted since the last write. Idle, it is never written.
//! After a crash the stored time is at most [`PERSIST_EVERY`] old; every
//! webhook accepted in that hour is still in the store's replay table
//! (kept a day), so a replay of one is still refused.
pub mod decision;
pub mod known_time;
pub mod sync_source;
pub mod wall;

pub use decision::{ClockState, Verdict};
pub use sync_source::SyncSource;
pub use wall::{now, now_ms, TEST_OFFSET_FILE_ENV};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest real work goes without refreshing the stored time.
pub const PERSIST_EVERY: Duration = Duration::from_secs(60 * 60);

/// The service's view of its clock: the configured sync source, the last
/// time known for certain, and the file that keeps it.
#[derive(Debug)]
pub struct Clock {
    source: SyncSource,
    /// Seen synchronised for good: the source is not asked again.
    synced: AtomicBool,
    /// The last time known for certain, Unix ms (0: nothing known).
    known_ms: AtomicU64,
    /// What the file holds, Unix ms (0: nothing).
    persisted_ms: AtomicU64,
    /// `None`: nothing is persisted (tests).
    path: Option<PathBuf>,
    /// A webhook was accepted (clock synchronised) since the last write.
    unsaved: AtomicBool,
    /// The unsynchronised rule has been logged.
    logged: AtomicBool,
    /// A write of the file is under way.
    writing: AtomicBool,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Clock {
    /// The clock for a service whose state directory is `state_dir`: reads
    /// the stored time once (a bad file is logged and counts as nothing).
    pub fn open(state_dir: &Path, source: SyncSource) -> Clock {
        let path = state_dir.join(known_time::FILE_NAME);
        let stored = match known_time::read(&path) {
            Ok(ms) => ms.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "the last known time in the state directory is unreadable; ignored");
                0
            }
        };
        let mut clock = Clock::in_memory(source, stored);
        clock.path = Some(path);
        clock
    }

    /// A clock that persists nothing, knowing `known_ms` (0: nothing).
    pub fn in_memory(source: SyncSource, known_ms: u64) -> Clock {
        Clock {
            source,
            synced: AtomicBool::new(false),
            known_ms: AtomicU64::new(known_ms),
            persisted_ms: AtomicU64::new(known_ms),
            path: None,
            unsaved: AtomicBool::new(false),
            logged: AtomicBool::new(false),
            writing: AtomicBool::new(false),
        }
    }

    /// Whether the system clock can be trusted now.
    pub fn state(&self) -> ClockState {
        if self.synced.load(Ordering::Relaxed) {
            return ClockState::Synced;
        }
        let state = self.source.state();
        if self.source.synced_is_final(state) {
            self.synced.store(true, Ordering::Relaxed);
        }
        state
    }

    /// The last time known for certain.
    pub fn known(&self) -> Option<SystemTime> {
        match self.known_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// [`decision::judge`] with this clock's state and known time; logs
    /// once, the first time the unsynchronised rule decides.
    pub fn judge(&self, window: Duration, now: SystemTime, date: SystemTime) -> Verdict {
        let state = self.state();
        let known = self.known();
        let verdict = decision::judge(state, known, window, now, date);
        if verdict.by_known_time() && !self.logged.swap(true, Ordering::Relaxed) {
            let floor = known
                .and_then(|k| k.checked_sub(window))
                .unwrap_or(UNIX_EPOCH);
            tracing::warn!(
                clock_sync = %self.source,
                accepted_from = %crate::httpdate::format(floor),
                "system clock not synchronised: webhooks are judged by the last time known for certain (minus the Date window), not by the system clock, until it is"
            );
        }
        verdict
    }

    /// Real work happened (a webhook was accepted): while synchronised,
    /// now is known for certain, and the file is refreshed when it is
    /// missing or older than [`PERSIST_EVERY`] (on the blocking pool).
    pub fn note_work(self: &Arc<Self>) {
        if self.state() != ClockState::Synced {
            return;
        }
        let now = unix_ms(SystemTime::now());
        self.known_ms.fetch_max(now, Ordering::Relaxed);
        self.unsaved.store(true, Ordering::Relaxed);
        let stored = self.persisted_ms.load(Ordering::Relaxed);
        let stale = stored == 0
            || stored > now
            || now - stored >= u64::try_from(PERSIST_EVERY.as_millis()).unwrap_or(u64::MAX);
        if stale && self.path.is_some() && !self.writing.swap(true, Ordering::Acquire) {
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || me.persist(now));
        }
    }

    /// At a clean shutdown: store now when a webhook was accepted since the
    /// last write and the clock is synchronised.
    pub fn save_at_shutdown(&self) {
        if self.state() != ClockState::Synced || !self.unsaved.load(Ordering::Relaxed) {
            return;
        }
        if self.writing.swap(true, Ordering::Acquire) {
            // A write of a moment ago is under way; it is recent enough.
            return;
        }
        self.persist(unix_ms(SystemTime::now()));
    }

    /// Write `ms` to the file; the caller holds `writing`.
    fn persist(&self, ms: u64) {
        self.unsaved.store(false, Ordering::Relaxed);
        if let Some(path) = &self.path {
            match known_time::write(path, ms) {
                Ok(()) => {
                    self.persisted_ms.store(ms, Ordering::Relaxed);
                    self.known_ms.fetch_max(ms, Ordering::Relaxed);
                }
                Err(e) => {
                    self.unsaved.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot store the last known time in the state directory")
                }
            }
        }
        self.writing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsynced_clock_judges_by_the_stored_time_and_logs_once() {
        let dir = tempfile::tempdir().unwrap();
        let never = SyncSource::File(dir.path().join("never-created"));
        let real = UNIX_EPOCH + Duration::from_secs(1_717_200_000);
        known_time::write(&dir.path().join(known_time::FILE_NAME), unix_ms(real)).unwrap();
        let clock = Clock::open(dir.path(), never);
        assert_eq!(clock.state(), ClockState::Unsynced);
        assert_eq!(clock.known(), Some(real));
        let window = Duration::from_secs(300);
        let booted = UNIX_EPOCH + Duration::from_secs(60);
        assert_eq!(
            clock.judge(window, booted, real + Duration::from_secs(3600)),
            Verdict::AfterKnownTime
        );
        assert_eq!(
            clock.judge(window, booted, real - Duration::from_secs(3600)),
            Verdict::BeforeKnownTime { behind_s: 3300 }
        );
        assert!(clock.logged.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn work_while_synced_stores_the_time_and_work_while_unsynced_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("synced");
        let file = dir.path().join(known_time::FILE_NAME);
        let clock = Arc::new(Clock::open(dir.path(), SyncSource::File(flag.clone())));
        assert_eq!(clock.known(), None);

        clock.note_work();
        clock.save_at_shutdown();
        assert_eq!(
            known_time::read(&file).unwrap(),
            None,
            "unsynced: nothing stored"
        );

        std::fs::write(&flag, b"").unwrap();
        let before = unix_ms(SystemTime::now());
        clock.note_work();
        // The write runs on the blocking pool; wait for it to finish.
        while clock.writing.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        let stored = known_time::read(&file).unwrap().expect("stored after work");
        assert!(stored >= before);

        // Within the hour, more work does not write again; shutdown does.
        std::fs::remove_file(&file).unwrap();
        clock.note_work();
        assert!(!clock.writing.load(Ordering::Acquire));
        assert_eq!(known_time::read(&file).unwrap(), None);
        clock.save_at_shutdown();
        assert!(known_time::read(&file).unwrap().is_some());

        // Nothing happened since: a second shutdown writes nothing.
        std::fs::remove_file(&file).unwrap();
        clock.save_at_shutdown();
        assert_eq!(known_time::read(&file).unwrap(), None);
    }
}
