//! The store's evidence that writing works, so health and the systemd
//! watchdog can ask "can the store still write?" without writing.
//!
//! An idle service must not wear the Pi's SD card: a durable probe commit
//! every few seconds costs a megabyte a minute and a dozen syncs. Instead,
//! every real commit (an append, a completion, a message id) is proof that
//! the store can write, and a failed one is proof that it cannot.
//! [`Store::writable`](super::Store::writable) trusts that evidence and
//! makes a probe commit only when it is missing, stale (no successful write
//! for [`PROBE_EVERY`]) or bad (the last write failed: the probe is how
//! recovery is noticed). A full or read-only disk is noticed without any
//! write, by the backend's free-space check (`statvfs` for the embedded
//! store).
use super::{Result, StoreError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest the last successful write counts as proof. Past it, the next
/// health check makes one probe commit: 4 syncs a day while idle.
pub const PROBE_EVERY: Duration = Duration::from_secs(6 * 60 * 60);

/// The outcome of the store's last write, as the backend recorded it.
#[derive(Debug, Default)]
pub struct WriteProof {
    last: Mutex<Last>,
}

#[derive(Debug, Default)]
enum Last {
    /// Nothing written since the store was opened.
    #[default]
    Never,
    /// The last write succeeded, at this time.
    Ok(Instant),
    /// The last write failed with an I/O error (full disk, failing card).
    Failed,
}

impl WriteProof {
    /// Record the outcome of one commit's writes: any I/O failure
    /// (`Unavailable`) makes the store unproven, otherwise any success proves
    /// it. Corrupt data and the like say nothing about the disk.
    pub fn record<T>(&self, results: &[Result<T>]) {
        let failed = results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Unavailable(_))));
        let wrote = results.iter().any(|r| r.is_ok());
        let mut last = crate::sync::lock(&self.last);
        if failed {
            *last = Last::Failed;
        } else if wrote {
            *last = Last::Ok(Instant::now());
            crate::metrics::global().committed(std::time::SystemTime::now());
        }
    }

    /// Whether a successful write within [`PROBE_EVERY`] of `now` is the
    /// latest outcome, so no probe commit is needed.
    pub fn is_fresh(&self, now: Instant) -> bool {
        match *crate::sync::lock(&self.last) {
            Last::Ok(at) => now.saturating_duration_since(at) < PROBE_EVERY,
            Last::Never | Last::Failed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Result<()> {
        Err(StoreError::Unavailable("disk full".into()))
    }

    #[test]
    fn a_success_is_proof_until_it_is_stale_and_a_failure_revokes_it() {
        let p = WriteProof::default();
        let now = Instant::now();
        assert!(!p.is_fresh(now), "nothing written yet: probe");
        p.record(&[Ok(())]);
        assert!(p.is_fresh(Instant::now()));
        assert!(
            !p.is_fresh(Instant::now() + PROBE_EVERY),
            "stale after PROBE_EVERY"
        );
        p.record(&[Ok(()), unavailable()]);
        assert!(
            !p.is_fresh(Instant::now()),
            "an I/O failure in the commit revokes the proof"
        );
        p.record(&[Err::<(), _>(StoreError::Corrupt("record 7".into()))]);
        assert!(
            !p.is_fresh(Instant::now()),
            "corrupt data proves nothing either way"
        );
        p.record(&[Ok(())]);
        assert!(
            p.is_fresh(Instant::now()),
            "the next good commit proves it again"
        );
    }
}
