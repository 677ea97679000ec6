//! Output files: written under a temporary name beside the destination,
//! synced, then renamed, so a half-written file never has the final name.

use anyhow::{bail, Context, Result};
use archive_format::background_sync::BackgroundSync;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// Removes the temporary files of earlier runs writing `name` in `dir`
/// that were killed before they could clean up: those nobody holds locked.
/// A run still writing holds its lock, and keeps its file.
fn remove_abandoned(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        // tempfile's names: the prefix, 6 random characters, the suffix.
        let abandoned_name = n
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".partial"));
        if abandoned_name.is_none_or(|random| random.len() != 6) {
            continue;
        }
        let Ok(f) = File::open(entry.path()) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_file())
            && rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// An output in progress.
pub struct PendingOutput {
    tmp: NamedTempFile,
    dest: PathBuf,
    force: bool,
}

impl PendingOutput {
    /// Refuses an existing `dest` unless `force`, then creates the temporary
    /// file in the same folder (so the final rename is atomic).
    pub fn create(dest: &Path, force: bool) -> Result<Self> {
        if !force && dest.symlink_metadata().is_ok() {
            bail!(crate::UsageError(format!(
                "{} already exists; use --force to replace it",
                dest.display()
            )));
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        remove_abandoned(dir, &name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        // Held while the output is written: tells a later run that this
        // temporary file is not abandoned.
        rustix::fs::flock(
            tmp.as_file(),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .with_context(|| format!("cannot lock {}", tmp.path().display()))?;
        Ok(PendingOutput {
            tmp,
            dest: dest.to_path_buf(),
            force,
        })
    }

    /// A buffered writer onto the temporary file.
    pub fn writer(&self) -> Result<OutputWriter> {
        let f = self
            .tmp
            .as_file()
            .try_clone()
            .context("cannot reopen the temporary file")?;
        let sync = BackgroundSync::new(&f).context("cannot start the background sync")?;
        Ok(OutputWriter {
            inner: BufWriter::with_capacity(1 << 20, f),
            sync,
        })
    }

    /// Sets the permission bits the file will have (for example 0o755 for
    /// an executable archive).
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.tmp.path(), std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", self.dest.display()))
    }

    /// Syncs the data and gives the file its final name.
    pub fn commit(self, writer: OutputWriter) -> Result<()> {
        let OutputWriter { inner, sync } = writer;
        sync.finish()
            .with_context(|| format!("cannot sync {}", self.dest.display()))?;
        let f = inner
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.dest.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", self.dest.display()))?;
        let dest = self.dest.clone();
        if self.force {
            self.tmp.persist(&dest).map_err(|e| e.error)
        } else {
            self.tmp.persist_noclobber(&dest).map_err(|e| e.error)
        }
        .with_context(|| format!("cannot move the finished file to {}", dest.display()))?;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; some filesystems cannot sync a folder.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

/// The buffered writer of a pending output, syncing in the background as
/// it goes (see `archive_format::background_sync`).
pub struct OutputWriter {
    inner: BufWriter<File>,
    sync: BackgroundSync,
}

impl Write for OutputWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sync.wrote(n as u64);
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)?;
        self.sync.wrote(buf.len() as u64);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// True when `a` and `b` are the same file on disk.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Writes `bytes` to stdout, failing quietly when the reader went away.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}
