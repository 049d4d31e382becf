//! The space probe: does the state directory still have room for a few
//! webhooks?
//!
//! redb reuses free pages inside its file, so its own probe commit keeps
//! succeeding on a full disk until those run out; only a write outside the
//! file shows that the disk itself is full. The probe runs with every
//! [`Store::probe`](crate::store::Store::probe), i.e. for health and the
//! watchdog.
use crate::store::{Result, StoreError};
use std::path::Path;
use std::sync::Mutex;

/// Free space the probe insists on in the state directory: room for a few
/// typical webhooks (a Drone build webhook is 2–5 KiB) plus redb's growth.
const HEADROOM_BYTES: usize = 64 * 1024;
/// The scratch file of [`check_headroom`], removed right after the write.
const HEADROOM_FILE: &str = ".drone-discord-space-probe";

/// A full disk must show up in health even while redb still has free pages
/// inside its file (its own probe commit then succeeds): reserve
/// [`HEADROOM_BYTES`] in a scratch file and delete it again. No fsync, so on
/// a delayed-allocation file system this normally never reaches the device.
pub(super) fn check_headroom(dir: &Path) -> Result<()> {
    use std::io::Write;
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = crate::sync::lock(&ONE_AT_A_TIME);
    let path = dir.join(HEADROOM_FILE);
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(&vec![0u8; HEADROOM_BYTES]));
    let removed = std::fs::remove_file(&path);
    // No path in the text: it may end up as the bot's public custom status.
    written.map_err(|e| StoreError::Unavailable(format!("no room to write in STATE_DIR: {e}")))?;
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::Unavailable(format!("cannot remove {HEADROOM_FILE} in STATE_DIR: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_probe_leaves_nothing_behind_and_fails_where_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        check_headroom(dir.path()).unwrap();
        assert!(!dir.path().join(HEADROOM_FILE).exists());
        let gone = dir.path().join("missing");
        match check_headroom(&gone) {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("no room to write"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
