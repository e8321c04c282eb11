//! Small tmpfs mounts, to fill a node's disk and empty it again.
//!
//! A test that wants a full disk mounts a few MiB of tmpfs, serves a data
//! dir inside it, fills the rest with a file ([`Tmpfs::fill`]) and removes
//! the file ([`Tmpfs::empty`]). Mounting needs root; without it the tests
//! print `skipped: <reason>` and pass, as the partition tests do. Unmounted
//! and removed on drop.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One tmpfs mount of its own.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts `mib` MiB of tmpfs on a fresh temporary directory.
    pub fn mount(mib: u32) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new().prefix("leasetso-tmpfs-").tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir, mounted: true })
    }

    /// [`mount`](Self::mount), or `None` after printing `skipped: <reason>`.
    pub fn usable(test: &str, mib: u32) -> Option<Tmpfs> {
        match Self::mount(mib) {
            Ok(t) => Some(t),
            Err(reason) => {
                eprintln!("skipped: {test}: {reason}");
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A data dir inside it.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Fills what is left of it with a file, to the last byte.
    pub fn fill(&self) -> io::Result<()> {
        let mut f = File::create(self.filler())?;
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e),
            }
        }
        // The last partial page, byte by byte.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        Ok(())
    }

    /// Removes the filler: the space is free again.
    pub fn empty(&self) -> io::Result<()> {
        fs::remove_file(self.filler())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily: a process killed a moment ago may still hold a file.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).output();
        }
    }
}
