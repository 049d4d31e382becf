//! The identify ledger: when this bot sent its recent Identifies, kept in a
//! small file in the state directory so the daily identify cap (Discord
//! resets the token past 1000 a day) survives restarts and crash loops.
//!
//! The file holds one header line and then the wall-clock time (Unix ms) of
//! each Identify of the last 24 h, oldest first, at most [`MAX_ENTRIES`]. It
//! is written only when an Identify is about to go out (never while idle),
//! atomically (temporary file, fsync, rename, fsync of the directory), and
//! read once at start.
//!
//! Reading is tolerant:
//! * a missing file is an empty history (first start);
//! * a garbled or unreadable file makes the history [`History::Unknown`]:
//!   the gateway machine then trusts Discord's `session_start_limit` when it
//!   has it, and otherwise assumes the worst (the day's budget spent just
//!   now) — see `IdentifyBudget` in `identify_budget.rs`;
//! * a time in the future (the wall clock stepped back, or a Pi booted
//!   before NTP) counts as "just now", and is stored as now at the next
//!   write, so it still ages out.
//!
//! Wall-clock times are needed because the history must outlive a reboot;
//! the pure gateway machine only ever sees ages ([`History::Known`]).
use crate::atomic_file::write_atomically;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file's name inside the state directory.
pub const FILE_NAME: &str = "gateway-identify-ledger";
/// The first line of the file; anything else is a file we do not understand.
const HEADER: &str = "drone-discord identify ledger v1";
/// How far back the ledger remembers (Discord's identify window).
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// At most this many times are kept (Discord's daily identify cap).
pub const MAX_ENTRIES: usize = 1000;
/// A file larger than this is not ours (1000 entries take about 14 KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What the ledger knew at start, as the gateway machine takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum History {
    /// How long ago each Identify of the last 24 h was sent, oldest first.
    Known(Vec<Duration>),
    /// The file could not be read or understood; why (no path, no contents).
    Unknown(String),
}

impl Default for History {
    fn default() -> Self {
        History::Known(Vec::new())
    }
}

/// The ledger: the times of recent Identifies and where they are kept.
#[derive(Debug)]
pub struct IdentifyLedger {
    /// `None`: kept in memory only (no state directory, or tests).
    path: Option<PathBuf>,
    /// Unix ms of the Identifies in the window, oldest first.
    times: Vec<u64>,
}

impl IdentifyLedger {
    /// A ledger that is never written (the library's tests, or no state directory).
    pub fn in_memory() -> Self {
        IdentifyLedger {
            path: None,
            times: Vec::new(),
        }
    }

    /// Read the ledger at `path` (if any) as of `now`.
    pub fn open(path: Option<PathBuf>, now: SystemTime) -> (IdentifyLedger, History) {
        let now_ms = unix_ms(now);
        let Some(path) = path else {
            return (IdentifyLedger::in_memory(), History::default());
        };
        let (times, history) = match read_small(&path) {
            Ok(None) => (Vec::new(), History::default()),
            Ok(Some(text)) => match parse(&text, now_ms) {
                Ok(times) => {
                    let history = History::Known(ages(&times, now_ms));
                    (times, history)
                }
                Err(why) => (Vec::new(), History::Unknown(why)),
            },
            Err(e) => (
                Vec::new(),
                History::Unknown(format!("cannot read it: {}", e.kind())),
            ),
        };
        (
            IdentifyLedger {
                path: Some(path),
                times,
            },
            history,
        )
    }

    /// Note an Identify sent at `now` and write the file (if there is one).
    /// The entry is kept in memory even when the write fails.
    pub fn record(&mut self, now: SystemTime) -> io::Result<()> {
        let now_ms = unix_ms(now);
        self.times.push(now_ms);
        self.times = prune(std::mem::take(&mut self.times), now_ms);
        match &self.path {
            Some(path) => write_atomically(path, render(&self.times).as_bytes()),
            None => Ok(()),
        }
    }

    /// The Identifies in the window, as Unix ms, oldest first.
    pub fn times(&self) -> &[u64] {
        &self.times
    }

    /// How many Identifies fall in the [`WINDOW`] before `now` (for `/metrics`).
    pub fn used(&self, now: SystemTime) -> usize {
        let now_ms = unix_ms(now);
        let window = WINDOW.as_millis() as u64;
        self.times
            .iter()
            .filter(|&&t| now_ms.saturating_sub(t) < window)
            .count()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Times in the window as of `now_ms`: future ones become `now_ms`, older
/// than [`WINDOW`] ones go, sorted, at most [`MAX_ENTRIES`] (the newest).
fn prune(mut times: Vec<u64>, now_ms: u64) -> Vec<u64> {
    let window = WINDOW.as_millis() as u64;
    for t in &mut times {
        *t = (*t).min(now_ms);
    }
    times.retain(|t| now_ms - t < window);
    times.sort_unstable();
    if times.len() > MAX_ENTRIES {
        times.drain(..times.len() - MAX_ENTRIES);
    }
    times
}

fn ages(times: &[u64], now_ms: u64) -> Vec<Duration> {
    times
        .iter()
        .map(|t| Duration::from_millis(now_ms.saturating_sub(*t)))
        .collect()
}

/// The file's text → the times in the window as of `now_ms`.
fn parse(text: &str, now_ms: u64) -> Result<Vec<u64>, String> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(HEADER) {
        return Err("it does not start with the ledger's header".into());
    }
    let mut times = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let t = line
            .parse::<u64>()
            .map_err(|_| format!("line {} is not a time", i + 2))?;
        times.push(t);
        if times.len() > 2 * MAX_ENTRIES {
            return Err("it has more lines than a ledger ever holds".into());
        }
    }
    Ok(prune(times, now_ms))
}

fn render(times: &[u64]) -> String {
    let mut out = String::with_capacity(HEADER.len() + 1 + times.len() * 15);
    out.push_str(HEADER);
    out.push('\n');
    for t in times {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

/// The file's text, `None` when it does not exist.
fn read_small(path: &Path) -> io::Result<Option<String>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than a ledger ever is",
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3600 * 1000;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn used_counts_the_identifies_of_the_last_24_hours() {
        let mut ledger = IdentifyLedger::in_memory();
        ledger.record(at(100 * HOUR_MS)).unwrap();
        ledger.record(at(110 * HOUR_MS)).unwrap();
        assert_eq!(ledger.used(at(110 * HOUR_MS)), 2);
        assert_eq!(ledger.used(at(124 * HOUR_MS - 1)), 2);
        assert_eq!(ledger.used(at(124 * HOUR_MS)), 1, "the first aged out");
        assert_eq!(ledger.used(at(200 * HOUR_MS)), 0);
    }

    #[test]
    fn missing_file_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, history) =
            IdentifyLedger::open(Some(dir.path().join(FILE_NAME)), at(100 * HOUR_MS));
        assert_eq!(history, History::Known(Vec::new()));
        assert!(ledger.times().is_empty());
    }

    #[test]
    fn records_survive_a_reopen_as_ages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let t0 = 100 * HOUR_MS;
        let (mut ledger, _) = IdentifyLedger::open(Some(path.clone()), at(t0));
        ledger.record(at(t0)).unwrap();
        ledger.record(at(t0 + 5_000)).unwrap();
        let (reopened, history) = IdentifyLedger::open(Some(path.clone()), at(t0 + 65_000));
        assert_eq!(
            history,
            History::Known(vec![Duration::from_secs(65), Duration::from_secs(60)])
        );
        assert_eq!(reopened.times(), &[t0, t0 + 5_000]);
        // The file is plain text: header, then one time a line.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{HEADER}\n{t0}\n{}\n", t0 + 5_000));
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
    }

    #[test]
    fn entries_older_than_a_day_are_dropped_and_at_most_1000_kept() {
        let now = 100 * HOUR_MS;
        let mut times: Vec<u64> = (0..1500).map(|i| now - HOUR_MS + i).collect();
        times.push(now - 25 * HOUR_MS);
        times.push(now - 24 * HOUR_MS);
        let kept = prune(times, now);
        assert_eq!(kept.len(), MAX_ENTRIES);
        assert_eq!(
            kept.first(),
            Some(&(now - HOUR_MS + 500)),
            "the newest are kept"
        );
        assert_eq!(kept.last(), Some(&(now - HOUR_MS + 1499)));
    }

    #[test]
    fn times_in_the_future_count_as_now_and_are_stored_as_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let now = 100 * HOUR_MS;
        std::fs::write(&path, format!("{HEADER}\n{}\n", now + 365 * 24 * HOUR_MS)).unwrap();
        let (mut ledger, history) = IdentifyLedger::open(Some(path.clone()), at(now));
        assert_eq!(history, History::Known(vec![Duration::ZERO]));
        ledger.record(at(now + 1)).unwrap();
        assert_eq!(ledger.times(), &[now, now + 1]);
        // A day later both have aged out.
        let (_, history) = IdentifyLedger::open(Some(path), at(now + 24 * HOUR_MS + 2));
        assert_eq!(history, History::Known(Vec::new()));
    }

    #[test]
    fn garbled_files_make_the_history_unknown_and_are_replaced_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let now = 100 * HOUR_MS;
        let big = "9".repeat(MAX_FILE_BYTES as usize + 1);
        let (bad_line, negative) = (format!("{HEADER}\n12x\n"), format!("{HEADER}\n-5\n"));
        let cases: [&[u8]; 6] = [
            b"",
            b"something else\n1\n",
            bad_line.as_bytes(),
            negative.as_bytes(),
            b"\xff\xfe not utf-8",
            big.as_bytes(),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            std::fs::write(&path, bytes).unwrap();
            let (ledger, history) = IdentifyLedger::open(Some(path.clone()), at(now));
            assert!(
                matches!(history, History::Unknown(_)),
                "case {i}: {history:?}"
            );
            assert!(ledger.times().is_empty(), "case {i}");
        }
        let (mut ledger, _) = IdentifyLedger::open(Some(path.clone()), at(now));
        ledger.record(at(now)).unwrap();
        let (_, history) = IdentifyLedger::open(Some(path), at(now));
        assert_eq!(history, History::Known(vec![Duration::ZERO]));
    }

    #[test]
    fn a_directory_in_the_way_is_unknown_and_a_failed_write_keeps_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::create_dir(&path).unwrap();
        let (mut ledger, history) = IdentifyLedger::open(Some(path), at(HOUR_MS));
        assert!(matches!(history, History::Unknown(_)), "{history:?}");
        assert!(ledger.record(at(HOUR_MS)).is_err());
        assert_eq!(ledger.times(), &[HOUR_MS]);
        let gone = dir.path().join("missing").join(FILE_NAME);
        let (mut ledger, history) = IdentifyLedger::open(Some(gone), at(HOUR_MS));
        assert_eq!(history, History::default());
        assert!(ledger.record(at(HOUR_MS)).is_err());
    }

    #[test]
    fn in_memory_ledger_never_touches_disk() {
        let (mut ledger, history) = IdentifyLedger::open(None, at(HOUR_MS));
        assert_eq!(history, History::default());
        ledger.record(at(HOUR_MS)).unwrap();
        assert_eq!(ledger.times(), &[HOUR_MS]);
    }
}
