//! Where "is the system clock synchronised?" comes from (`CLOCK_SYNC`).
//!
//! The unit's sandbox (`ProtectClock=yes`) makes even a read-only
//! `adjtimex` fail with EPERM, so the kernel cannot be asked. Instead the
//! answer is a file that the time daemon creates once it has synchronised,
//! on `/run` (a tmpfs, empty at every boot), which the sandbox can read:
//!
//! * `auto` (default): systemd-timesyncd's flag
//!   [`TIMESYNCD_FLAG`]; where timesyncd does not run (its directory
//!   [`TIMESYNCD_DIR`] is absent: chrony, ntpd, a container, a laptop)
//!   nothing says the clock is wrong and it is taken as synchronised, as
//!   before this setting existed.
//! * `timesyncd`: the flag file only; absent means not synchronised.
//! * `file:PATH`: any file another tool creates once the clock is right,
//!   e.g. `chrony-wait.service` with `ExecStartPost=touch PATH` (README).
//! * `assume-synced`: never judge by the last known time.
//!
//! A clock seen synchronised stays so for the process (the daemons never
//! remove their flag), so the file is looked at only until it appears.
use std::path::{Path, PathBuf};

use super::decision::ClockState;

/// The file systemd-timesyncd touches on each synchronisation.
pub const TIMESYNCD_FLAG: &str = "/run/systemd/timesync/synchronized";
/// systemd-timesyncd's runtime directory: present wherever it runs.
pub const TIMESYNCD_DIR: &str = "/run/systemd/timesync";

/// The configured source (`CLOCK_SYNC`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SyncSource {
    #[default]
    Auto,
    Timesyncd,
    File(PathBuf),
    AssumeSynced,
}

impl SyncSource {
    /// Parse a `CLOCK_SYNC` value; the error says what is accepted.
    pub fn parse(value: &str) -> Result<SyncSource, String> {
        match value.trim() {
            "" | "auto" => Ok(SyncSource::Auto),
            "timesyncd" => Ok(SyncSource::Timesyncd),
            "assume-synced" => Ok(SyncSource::AssumeSynced),
            other => match other.strip_prefix("file:") {
                Some(p) if Path::new(p).is_absolute() => Ok(SyncSource::File(p.into())),
                _ => Err(format!(
                    "{other:?} is not one of: auto, timesyncd, assume-synced, file:/absolute/path"
                )),
            },
        }
    }

    /// What the source says right now (a `stat` or two; no write).
    pub fn state(&self) -> ClockState {
        self.state_in(Path::new(TIMESYNCD_FLAG), Path::new(TIMESYNCD_DIR))
    }

    /// [`state`](Self::state) with timesyncd's paths given (tests).
    fn state_in(&self, flag: &Path, dir: &Path) -> ClockState {
        let exists = |p: &Path| p.symlink_metadata().is_ok();
        let synced = match self {
            SyncSource::AssumeSynced => true,
            SyncSource::Timesyncd => exists(flag),
            SyncSource::Auto => exists(flag) || !exists(dir),
            SyncSource::File(p) => exists(p),
        };
        if synced {
            ClockState::Synced
        } else {
            ClockState::Unsynced
        }
    }

    /// Whether a synchronised answer is for good: only a flag file's is (a
    /// missing timesyncd directory may still appear).
    pub fn synced_is_final(&self, state: ClockState) -> bool {
        state == ClockState::Synced
            && match self {
                SyncSource::Auto => Path::new(TIMESYNCD_FLAG).exists(),
                _ => true,
            }
    }
}

impl std::fmt::Display for SyncSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncSource::Auto => f.write_str("auto"),
            SyncSource::Timesyncd => f.write_str("timesyncd"),
            SyncSource::File(p) => write!(f, "file:{}", p.display()),
            SyncSource::AssumeSynced => f.write_str("assume-synced"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_back() {
        for v in [
            "auto",
            "timesyncd",
            "assume-synced",
            "file:/run/chrony-synced",
        ] {
            assert_eq!(SyncSource::parse(v).unwrap().to_string(), v);
        }
        assert_eq!(SyncSource::parse("").unwrap(), SyncSource::Auto);
        for bad in ["chrony", "file:", "file:relative/path", "AUTO"] {
            let e = SyncSource::parse(bad).unwrap_err();
            assert!(e.contains("auto, timesyncd"), "{e}");
        }
    }

    #[test]
    fn each_source_reads_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("timesync");
        let flag = run.join("synchronized");
        let mine = dir.path().join("synced");
        let state = |s: &SyncSource| s.state_in(&flag, &run);
        let file = SyncSource::File(mine.clone());

        // No timesyncd on this machine: auto trusts the clock, timesyncd does not.
        assert_eq!(state(&SyncSource::Auto), ClockState::Synced);
        assert_eq!(state(&SyncSource::Timesyncd), ClockState::Unsynced);
        assert_eq!(state(&SyncSource::AssumeSynced), ClockState::Synced);
        assert_eq!(state(&file), ClockState::Unsynced);

        // timesyncd runs but has not synchronised yet.
        std::fs::create_dir(&run).unwrap();
        assert_eq!(state(&SyncSource::Auto), ClockState::Unsynced);
        assert_eq!(state(&SyncSource::Timesyncd), ClockState::Unsynced);

        // ... and now it has.
        std::fs::write(&flag, b"").unwrap();
        assert_eq!(state(&SyncSource::Auto), ClockState::Synced);
        assert_eq!(state(&SyncSource::Timesyncd), ClockState::Synced);

        std::fs::write(&mine, b"").unwrap();
        assert_eq!(state(&file), ClockState::Synced);
    }
}
