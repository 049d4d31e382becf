//! The last time this service knew for certain, kept in a small file in the
//! state directory so that it outlives a reboot with a wrong clock.
//!
//! The file is one header line and the time in Unix ms. It is written only
//! while the clock is synchronised, and only because of real work (see
//! `clock::Clock` for when), atomically (`atomic_file`); it is read once at
//! start. A missing, garbled or unreadable file is "nothing known", which
//! makes the `Date` check fall back to the system clock
//! (`clock::decision`), exactly as without this file.
use std::io::{self, Read};
use std::path::Path;

/// The file's name inside the state directory.
pub const FILE_NAME: &str = "last-known-time";
/// The first line of the file; anything else is a file we do not understand.
const HEADER: &str = "drone-discord last known time v1";
/// A file larger than this is not ours.
const MAX_FILE_BYTES: u64 = 256;

/// The stored time (Unix ms); `Ok(None)` when there is no file.
pub fn read(path: &Path) -> io::Result<Option<u64>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(MAX_FILE_BYTES).read_to_string(&mut text)?;
    parse(&text)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a last-known-time file"))
}

/// Store `ms` (Unix ms).
pub fn write(path: &Path, ms: u64) -> io::Result<()> {
    crate::atomic_file::write_atomically(path, render(ms).as_bytes())
}

fn render(ms: u64) -> String {
    format!("{HEADER}\n{ms}\n")
}

fn parse(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let ms = lines.next()?.trim().parse().ok()?;
    lines.next().is_none().then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_time_reads_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(read(&path).unwrap(), None);
        write(&path, 1_717_200_000_123).unwrap();
        assert_eq!(read(&path).unwrap(), Some(1_717_200_000_123));
        write(&path, 1_717_200_001_000).unwrap();
        assert_eq!(read(&path).unwrap(), Some(1_717_200_001_000));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file left behind");
    }

    #[test]
    fn garbled_files_are_errors_not_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for garbled in [
            "",
            "1717200000123\n",
            "drone-discord last known time v1\n",
            "drone-discord last known time v1\nsoon\n",
            "drone-discord last known time v1\n1\n2\n",
            "drone-discord last known time v2\n1\n",
        ] {
            std::fs::write(&path, garbled).unwrap();
            assert!(read(&path).is_err(), "{garbled:?}");
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(read(&path).is_err(), "a directory in the way");
        assert!(write(&path, 1).is_err());
    }
}
