//! A real ext4 file system on a loop device, for the store faults a tmpfs
//! cannot give: a write that stalls (`fsfreeze`: every write and fsync
//! blocks until thawed), and a file system that turns read-only under the
//! service (an ext4 error with `errors=remount-ro`, the kernel's reaction to
//! a failing SD card), then is repaired (`e2fsck`) and mounted again at the
//! same place, writable. Needs root, `/dev/loop-control`, e2fsprogs and
//! util-linux; [`LoopFs::mount`] prints why not and returns `None` otherwise.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The longest a [`LoopFs::freeze`] lasts.
pub const MAX_FREEZE: std::time::Duration = std::time::Duration::from_secs(150);

pub struct LoopFs {
    dir: tempfile::TempDir,
    image: PathBuf,
    _image_dir: tempfile::TempDir,
    frozen: std::sync::atomic::AtomicBool,
}

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{what}: {} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

impl LoopFs {
    /// A fresh `size_mib` MiB ext4 mounted on a temporary directory, or
    /// `None` after printing "skipping <test>: <why>".
    pub fn mount(test: &str, size_mib: u32) -> Option<LoopFs> {
        let image_dir = tempfile::tempdir().expect("tempdir");
        let image = image_dir.path().join("state.ext4");
        let dir = tempfile::tempdir().expect("tempdir");
        let made = std::fs::File::create(&image)
            .and_then(|f| f.set_len(u64::from(size_mib) << 20))
            .map_err(|e| format!("image: {e}"))
            .and_then(|_| {
                run(
                    "mkfs.ext4",
                    Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image),
                )
            });
        let fs = LoopFs {
            dir,
            image,
            _image_dir: image_dir,
            frozen: std::sync::atomic::AtomicBool::new(false),
        };
        match made.and_then(|_| fs.attach()) {
            Ok(()) => Some(fs),
            Err(why) => {
                eprintln!("skipping {test}: cannot make an ext4 loop mount: {why}");
                None
            }
        }
    }

    fn attach(&self) -> Result<(), String> {
        run(
            "mount",
            Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(&self.image)
                .arg(self.dir.path()),
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Freeze the file system: from now on every write blocks until
    /// [`LoopFs::thaw`], the drop, or at the latest [`MAX_FREEZE`] (a
    /// thread thaws it then, so a failing test cannot leave processes
    /// blocked for good).
    pub fn freeze(&self) {
        run(
            "fsfreeze -f",
            Command::new("fsfreeze").arg("-f").arg(self.path()),
        )
        .expect("freeze");
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
        let path = self.path().to_path_buf();
        std::thread::spawn(move || {
            std::thread::sleep(MAX_FREEZE);
            // Fails harmlessly when already thawed.
            let _ = Command::new("fsfreeze")
                .arg("-u")
                .arg(path)
                .stderr(Stdio::null())
                .status();
        });
    }

    pub fn thaw(&self) {
        if self.frozen.swap(false, std::sync::atomic::Ordering::SeqCst) {
            run(
                "fsfreeze -u",
                Command::new("fsfreeze").arg("-u").arg(self.path()),
            )
            .expect("thaw");
        }
    }

    /// Make the file system fail as after a media error: ext4 turns it
    /// read-only (`errors=remount-ro`); every write now fails with EROFS.
    pub fn fail_read_only(&self) {
        let dev = std::process::Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(self.path())
            .output()
            .expect("findmnt");
        let dev = String::from_utf8_lossy(&dev.stdout).trim().to_string();
        let name = Path::new(&dev)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let trigger = Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        std::fs::write(&trigger, "fault suite").expect("trigger an ext4 error");
    }

    /// What an operator does after such an error: detach the failed mount
    /// (lazily: the service still holds its file), check and repair the
    /// file system, and mount it again at the same place, writable.
    pub fn repair_and_remount(&self) {
        run(
            "umount -l",
            Command::new("umount").arg("-l").arg(self.path()),
        )
        .expect("umount");
        // e2fsck exits 1 when it fixed something: that is the point.
        let fsck = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .stdin(Stdio::null())
            .output()
            .expect("e2fsck");
        assert!(
            matches!(fsck.status.code(), Some(0 | 1)),
            "e2fsck: {} {}",
            fsck.status,
            String::from_utf8_lossy(&fsck.stdout)
        );
        self.attach().expect("mount again");
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Thaw first: a process blocked on a frozen file system cannot exit.
        if self.frozen.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("fsfreeze").arg("-u").arg(self.path()).status();
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .stdin(Stdio::null())
            .status();
    }
}
