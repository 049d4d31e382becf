//! A disk that really fills up: a small tmpfs for the full-disk tests, or a
//! printed reason to skip when this machine will not mount one.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A small tmpfs mounted on a fresh temporary directory, so a test can give
/// the binary a disk that really fills up. Unmounted (lazily, so a process
/// still holding files cannot block it) when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mount `size_mib` MiB of tmpfs, or `None` (after printing
    /// "skipping <test>: cannot mount tmpfs: <why>") when this machine will
    /// not let us, e.g. when not running as root.
    pub fn mount(test: &str, size_mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}M,mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "{} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            eprintln!("skipping {test}: cannot mount tmpfs: {why}");
            return None;
        }
        let filler = dir.path().join("filler");
        Some(Tmpfs { dir, filler })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Eat every free byte with a filler file (written until ENOSPC).
    /// Returns how many bytes it took.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("create filler");
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        let mut size = chunk.len();
        // Big chunks first, then smaller ones, so the last partial page goes too.
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => size /= 2,
                Err(e) => panic!("filling tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
        written
    }

    /// Give the space back.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .status();
    }
}
