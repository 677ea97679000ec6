//! Output files: written under a temporary name beside the destination,
//! synced, then renamed, so a half-written file never has the final name.

use anyhow::{bail, Context, Result};
use archive_format::background_sync::BackgroundSync;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

pub use archive_format::target::{folder_of, name_max};

/// Permission bits of a full image: it holds disk blocks, so only its
/// owner reads it.
pub const FULL_MODE: u32 = 0o600;

/// Permission bits of a delta archive: runnable by its owner, unreadable
/// by others (it holds disk blocks, as a full does).
pub const DELTA_MODE: u32 = 0o700;

/// The prefix of the hidden files (temporary and lock) that belong to the
/// output `name`: `.NAME.`, or, when that would make them longer than the
/// filesystem allows, `.sdar-HASH.` with a hash of the name (the output's
/// own name may be as long as the limit; its helpers must not overflow it).
fn hidden_prefix(name: &str, max: usize) -> String {
    // The longest helper: the prefix, 6 random characters and ".partial".
    archive_format::target::hidden_prefix(name.as_ref(), 6 + ".partial".len(), max)
        .to_string_lossy()
        .into_owned()
}

/// Removes the temporary files of earlier runs writing `name` in `dir`
/// that were killed before they could clean up: those nobody holds locked.
/// A run still writing holds its lock, and keeps its file.
fn remove_abandoned(dir: &Path, prefix: &str) {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".partial"));
        if abandoned_name.is_none_or(|random| random.len() != 6) {
            continue;
        }
        // Only a regular file can be one of ours. The type (lstat) is
        // checked before any open: opening a planted FIFO or tape device
        // blocks, and a link would be followed.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(entry.path())
        else {
            continue;
        };
        // The name may have been replaced between the lstat and the open.
        let Ok(meta) = f.metadata() else {
            continue;
        };
        let still_this_file = || {
            entry
                .path()
                .symlink_metadata()
                .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino())
        };
        if meta.is_file()
            && meta.nlink() == 1
            && rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
            && still_this_file()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The lock that makes one sdar at a time the writer of a destination: an
/// exclusive `flock` on the hidden file `PREFIX` + `lock` beside it, taken
/// before anything is written and removed when the output is done.
struct DestinationLock {
    path: PathBuf,
    file: File,
}

impl DestinationLock {
    fn take(dir: &Path, prefix: &str, dest: &Path) -> Result<Self> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = dir.join(format!("{prefix}lock"));
        // A lock file that is unlinked by its holder between our open and
        // our lock is not the lock any more: open it again.
        for _ in 0..16 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(
                    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
                )
                .open(&path)
                .map_err(|e| {
                    let link = e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
                    anyhow::Error::new(e).context(format!(
                        "cannot create the lock file {}{}",
                        path.display(),
                        if link {
                            " (it is a symbolic link, which sdar never follows: remove it)"
                        } else {
                            ""
                        }
                    ))
                })?;
            let meta = file.metadata()?;
            if !meta.is_file() || meta.nlink() != 1 {
                bail!(
                    "{} is not a regular file of one link, as sdar's lock file for {} is: remove it",
                    path.display(),
                    dest.display()
                );
            }
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                    "another sdar is writing {} (it holds the lock {}); wait until it is done",
                    dest.display(),
                    path.display()
                ),
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            let still_ours = path
                .symlink_metadata()
                .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino());
            if still_ours {
                return Ok(DestinationLock { path, file });
            }
        }
        bail!("cannot lock {}: it keeps being replaced", path.display())
    }
}

impl Drop for DestinationLock {
    /// Unlinks the lock file while still holding it, so a run waiting on
    /// this file finds it gone and takes a fresh one.
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(now), Ok(ours)) = (self.path.symlink_metadata(), self.file.metadata()) {
            if now.dev() == ours.dev() && now.ino() == ours.ino() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// An output in progress.
pub struct PendingOutput {
    tmp: NamedTempFile,
    dest: PathBuf,
    /// What `dest` was when `--force` allowed replacing it; `None`: absent.
    checked: Option<ExistingOutput>,
    // Declared last: dropped after the temporary file is gone.
    _lock: DestinationLock,
}

impl PendingOutput {
    /// Refuses a `dest` that is not a regular file, and an existing one
    /// unless `force` (see `ExistingOutput::check`), takes the destination's
    /// lock (refusing while another sdar writes it), then creates the
    /// temporary file in the same folder (so the final rename is atomic),
    /// with permission bits `mode` from its creation on (0o600 for a full,
    /// 0o700 for a delta archive: both hold disk blocks).
    pub fn create(dest: &Path, force: bool, mode: u32) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let checked = ExistingOutput::check(dest, force)?;
        let dir = &folder_of(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = hidden_prefix(&name, name_max(dir));
        let lock = DestinationLock::take(dir, &prefix, dest)?;
        remove_abandoned(dir, &prefix);
        // tempfile creates with O_CREAT|O_EXCL: never through a planted link.
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".partial")
            .permissions(std::fs::Permissions::from_mode(mode))
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
            checked,
            _lock: lock,
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
        let PendingOutput {
            tmp,
            checked,
            _lock,
            ..
        } = self;
        match checked {
            // Replaces only the file --force was given for: a name turned
            // into a link or a device since is left alone.
            Some(old) => {
                old.still_there(&dest)?;
                tmp.persist(&dest).map_err(|e| e.error)
            }
            None => tmp.persist_noclobber(&dest).map_err(|e| e.error),
        }
        .with_context(|| format!("cannot move the finished file to {}", dest.display()))?;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; some filesystems cannot sync a folder.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

/// The regular file at an output's name that `--force` replaces, known by
/// its device and inode numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ExistingOutput {
    dev: u64,
    ino: u64,
}

impl ExistingOutput {
    /// Refuses a `dest` that is not a regular file, with or without
    /// `force` (sdar writes backups as regular files, and renaming over a
    /// device node, a link or a FIFO would replace it, not write to it), and
    /// an existing one without `force`. The file to replace, if any.
    fn check(dest: &Path, force: bool) -> Result<Option<Self>> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = match dest.symlink_metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dest.display())),
        };
        let t = meta.file_type();
        let what = if t.is_file() {
            None
        } else if t.is_symlink() {
            Some(
                "a symbolic link (sdar does not write backups through links: name the file itself)",
            )
        } else if t.is_dir() {
            Some("a folder (name the backup file, in it or elsewhere)")
        } else if t.is_block_device() {
            Some("a block device")
        } else if t.is_char_device() {
            Some("a character device")
        } else if t.is_fifo() {
            Some("a FIFO (named pipe)")
        } else if t.is_socket() {
            Some("a socket")
        } else {
            Some("not a regular file")
        };
        if let Some(what) = what {
            bail!(crate::UsageError(format!(
                "sdar writes backups as regular files; {} is {what}",
                dest.display()
            )));
        }
        if !force {
            bail!(crate::UsageError(format!(
                "{} already exists; use --force to replace it",
                dest.display()
            )));
        }
        Ok(Some(ExistingOutput {
            dev: meta.dev(),
            ino: meta.ino(),
        }))
    }

    /// Fails unless `dest` is still this regular file.
    fn still_there(self, dest: &Path) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let now = dest.symlink_metadata().ok();
        let same = now.is_some_and(|m| {
            m.is_file()
                && ExistingOutput {
                    dev: m.dev(),
                    ino: m.ino(),
                } == self
        });
        if !same {
            bail!(
                "{} changed while the backup was written (it is no longer the file --force was \
                 given for); nothing was replaced",
                dest.display()
            );
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

/// Refuses to write any of `outputs` over one of `inputs` (the same file,
/// through any name): with or without `--force`, sdar never replaces what
/// it reads, backups above all.
pub fn refuse_inputs(outputs: &[&Path], inputs: &[&Path]) -> Result<()> {
    for out in outputs {
        if let Some(input) = inputs.iter().find(|i| same_file(out, i)) {
            bail!(crate::UsageError(format!(
                "{} is one of the inputs ({}); sdar never writes over what it reads",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_fit_and_abandoned_ones_are_removed_in_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let short = "a.full.gz";
        let long = "n".repeat(250);
        assert_eq!(hidden_prefix(short, 255), ".a.full.gz.");
        let hashed = hidden_prefix(&long, 255);
        assert!(
            hashed.starts_with(".sdar-") && hashed.len() == 23,
            "{hashed}"
        );
        assert_ne!(hashed, hidden_prefix(&"m".repeat(250), 255));
        for prefix in [hidden_prefix(short, 255), hashed] {
            let abandoned = dir.path().join(format!("{prefix}abcdef.partial"));
            let held = dir.path().join(format!("{prefix}ghijkl.partial"));
            std::fs::write(&abandoned, b"x").unwrap();
            std::fs::write(&held, b"x").unwrap();
            let f = File::open(&held).unwrap();
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
            remove_abandoned(dir.path(), &prefix);
            assert!(!abandoned.exists(), "{prefix}");
            // flock is per open file: a second open of it cannot take the lock.
            assert!(held.exists(), "{prefix}");
        }
    }
}
