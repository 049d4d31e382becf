//! The space check: does the state directory's file system still have room
//! for a few webhooks, and does it take writes at all?
//!
//! redb reuses free pages inside its file, so its own commit keeps
//! succeeding on a full disk until those run out; only the file system can
//! say that the disk itself is full. It is asked with `statvfs`, which
//! writes nothing: free space below [`HEADROOM_BYTES`], or a file system
//! that is (or was remounted, as the kernel does after I/O errors)
//! read-only, fails the check. It runs with every
//! [`Store::probe`](crate::store::Store::probe) and
//! [`Store::writable`](crate::store::Store::writable), i.e. every 5 s for
//! health and with every watchdog ping.
use crate::store::{Result, StoreError};
use std::io;
use std::path::Path;

/// Free space the check insists on in the state directory: room for a few
/// typical webhooks (a Drone build webhook is 2–5 KiB) plus redb's growth.
const HEADROOM_BYTES: u64 = 64 * 1024;

/// What the state directory's file system says about itself.
struct Fs {
    /// Bytes an unprivileged user may still allocate (`f_bavail`): the
    /// service runs as one (`DynamicUser=yes`).
    free: u64,
    read_only: bool,
}

fn statvfs(dir: &Path) -> io::Result<Fs> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid, writable
    // statvfs; the call writes only into `st`.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // (`From` rather than `as`: the field types differ between targets; on
    // 64-bit ones the conversion is the identity, which clippy would flag.)
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    Ok(Fs {
        free,
        read_only: st.f_flag & libc::ST_RDONLY != 0,
    })
}

/// A full or read-only disk must show up in health even while redb still
/// has free pages inside its file (its own commit then succeeds). Writes
/// nothing. The words match what a write would have failed with ("No space
/// left on device", "Read-only file system"), and name no path: they may end
/// up as the bot's public custom status.
pub(super) fn check_headroom(dir: &Path) -> Result<()> {
    let fs = statvfs(dir)
        .map_err(|e| StoreError::Unavailable(format!("no room to write in STATE_DIR: {e}")))?;
    if fs.read_only {
        let e = io::Error::from_raw_os_error(libc::EROFS);
        return Err(StoreError::Unavailable(format!(
            "cannot write in STATE_DIR: {e}"
        )));
    }
    if fs.free < HEADROOM_BYTES {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        return Err(StoreError::Unavailable(format!(
            "no room to write in STATE_DIR: {e} ({} bytes free, {HEADROOM_BYTES} needed)",
            fs.free
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_check_leaves_nothing_behind_and_fails_where_it_cannot_look() {
        let dir = tempfile::tempdir().unwrap();
        let before = std::fs::metadata(dir.path()).unwrap().modified().unwrap();
        check_headroom(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the check creates no file"
        );
        let after = std::fs::metadata(dir.path()).unwrap().modified().unwrap();
        assert_eq!(before, after, "the directory is not even touched");
        let gone = dir.path().join("missing");
        match check_headroom(&gone) {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("no room to write"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// A read-only tmpfs (mounting needs root; elsewhere the test says why
    /// it cannot run) fails the check without any write being tried.
    #[test]
    fn a_read_only_file_system_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1M", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipping the read-only check: cannot mount a tmpfs here (needs root)");
            return;
        }
        let result = check_headroom(dir.path());
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(dir.path())
            .status();
        match result {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("Read-only file system"), "{m}"),
            other => panic!("a read-only tmpfs must fail the check, got {other:?}"),
        }
    }
}
