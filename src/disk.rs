//! A small tmpfs for tests of a full disk.

use std::path::Path;
use std::process::{Command, Stdio};

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts `mib` MiB. `None`, with a line saying the test is skipped,
    /// where mounting is not permitted (not root). As root a failed mount
    /// panics: the test must not pass without running.
    pub fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            assert!(!root, "running as root, but cannot mount a tmpfs");
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return None;
        }
        Some(SmallDisk { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes its size (to free space, or take it away).
    pub fn resize(&self, mib: u32) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
