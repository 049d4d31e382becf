//! How redb's errors become [`StoreError`]s: corruption stays corruption, a
//! failing disk is `Unavailable` (retry later), and a file that cannot be
//! opened at start-up is a configuration error with a hint.
//!
//! One place, so every call site names what it was doing (`.ctx("…")`) and
//! the mapping cannot drift between the writer, the readers and `open`.
use crate::store::{Result, StoreError};

/// A redb error at run time: corruption is [`StoreError::Corrupt`], the rest
/// (I/O, full disk, a previous I/O failure) is [`StoreError::Unavailable`].
pub(super) fn db_error(what: &str, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(m) => StoreError::Corrupt(format!("{what}: {m}")),
        other => StoreError::Unavailable(format!("{what}: {other}")),
    }
}

/// A redb error while opening: a bad path, permission or lock is configuration.
pub(super) fn open_error(file: &str, e: impl Into<redb::Error>) -> StoreError {
    config_from(file, db_error("", e))
}

/// A failure while opening `file`: anything but corruption is configuration.
pub(super) fn config_from(file: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{file}{m}")),
        StoreError::Unavailable(m)
        | StoreError::Config(m)
        | StoreError::Full(m)
        | StoreError::Fenced(m) => {
            let hint = if m.contains("already open") || m.contains("lock") {
                HELD_HINT
            } else {
                ""
            };
            StoreError::Config(format!("cannot open {file}{m}{hint}"))
        }
    }
}

/// The hint on an open refused because another process holds the file's lock.
const HELD_HINT: &str = " (is another drone-discord running on this state directory?)";

/// Whether `e` is an open refused because another process (a running
/// service) holds the store: `queue retry|purge` then asks that service.
pub fn is_held_elsewhere(e: &StoreError) -> bool {
    matches!(e, StoreError::Config(m) if m.ends_with(HELD_HINT))
}

/// `.ctx("what")`: map a redb result with [`db_error`].
pub(super) trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| db_error(what, e))
    }
}
