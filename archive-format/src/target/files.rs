//! Creating and taking over files beside a destination without following
//! links planted at their names: every file sdar creates is opened with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, every existing one with `O_NOFOLLOW`
//! and checked with `fstat` on the open file, never by its name alone.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
const NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// A new file at `path`, read-write: fails when anything (a file, a link,
/// dangling or not) is already there.
pub fn create_exclusive(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(NOFOLLOW)
        .open(path)
}

/// An existing file at `path`, never through a link (ELOOP), never blocking
/// on a FIFO.
pub fn open_nofollow(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(NOFOLLOW | NONBLOCK)
        .open(path)
}

/// Why an open file may not be taken over: not a regular file, more than
/// one name (a hard link to something else), or someone else's.
pub fn owned_single_regular(file: &File) -> std::result::Result<(), String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "it has {} names (a hard link to another file)",
            meta.nlink()
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!("it belongs to user {}, not to {me}", meta.uid()));
    }
    Ok(())
}

/// True when another process holds a `flock` or a POSIX/OFD record lock on
/// `file` (QEMU takes the latter on a running VM's images). On success the
/// `flock` is left held, by `file`.
pub fn locked_by_another(file: &File) -> bool {
    use rustix::fs::FlockOperation::NonBlockingLockExclusive;
    rustix::fs::flock(file, NonBlockingLockExclusive).is_err()
        || rustix::fs::fcntl_lock(file, NonBlockingLockExclusive).is_err()
}

/// Deallocates `len` bytes at `at` (they read as zeros), keeping the
/// file's size; fails where the filesystem or device cannot.
pub fn punch_hole(file: &File, at: u64, len: u64) -> std::io::Result<()> {
    use rustix::fs::FallocateFlags as F;
    rustix::fs::fallocate(file, F::PUNCH_HOLE | F::KEEP_SIZE, at, len)
        .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
}

/// True when the open file is a full image or a delta archive (by its
/// bytes, not its name).
pub fn holds_backup(file: &File) -> bool {
    crate::container::file_kind(file).is_ok_and(|k| k.is_backup())
}

/// Writes `bytes` as the file `path`: through a new temporary file beside
/// it, synced and renamed into place, so that nothing is written through a
/// link or into a file another name shares. Without `replace`, refuses an
/// existing name; with it, still refuses a link, anything but a regular
/// file, and a backup.
pub fn write_file_replacing(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    let mut was: NameWas = None;
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, None, e)),
        Ok(_) if !replace => {
            return Err(Error::invalid(format!("{} already exists", path.display())))
        }
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::invalid(format!(
                "{} is a symbolic link: sdar neither writes through it nor replaces it; remove it or choose another folder",
                path.display()
            )))
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::invalid(format!(
                "{} is not a regular file; sdar does not replace it",
                path.display()
            )))
        }
        Ok(_) => {
            let f = open_nofollow(path, false).map_err(|e| Error::io(path, None, e))?;
            if holds_backup(&f) {
                return Err(Error::invalid(format!(
                    "{} is an sdar backup; backups are never overwritten, not even with --force",
                    path.display()
                )));
            }
            was = Some(identity(&f).map_err(|e| Error::io(path, None, e))?);
        }
    }
    // A new name is created in place (O_EXCL: one that appears meanwhile is
    // not replaced); a replaced one through a temporary renamed over it.
    let target = if replace {
        temporary_path(path, "sdar-new")
    } else {
        path.to_path_buf()
    };
    let f = create_exclusive(&target, 0o666).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists if !replace => {
            Error::invalid(format!("{} already exists", path.display()))
        }
        _ => Error::io(&target, None, e),
    })?;
    let written = std::io::Write::write_all(&mut &f, bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| match replace {
            true => rename_if_unchanged(&target, path, was),
            false => Ok(()),
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(Error::invalid(format!(
                "{} changed while sdar wrote it ({e}); it was left as it is",
                path.display()
            )));
        }
        return Err(Error::io(path, None, e));
    }
    Ok(())
}

/// What stood at a name when a restore checked it: nothing, or this file
/// (device, inode).
pub type NameWas = Option<(u64, u64)>;

/// The identity of an open file, as [`NameWas`] records it.
pub fn identity(file: &File) -> std::io::Result<(u64, u64)> {
    file.metadata().map(|m| (m.dev(), m.ino()))
}

/// Renames `from` to `to` only when `to` still is what it was when checked:
/// absent (`was` is `None`: `renameat2(RENAME_NOREPLACE)`, so that a file
/// that appeared meanwhile is never replaced; where the filesystem does not
/// take that flag, `link` then `unlink`, which cannot replace either), or the
/// same file (a name replaced with `--force`, checked just before the
/// rename). Anything else fails with `AlreadyExists`.
pub fn rename_if_unchanged(from: &Path, to: &Path, was: NameWas) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let Some((dev, ino)) = was else {
        return match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                std::fs::hard_link(from, to)?;
                std::fs::remove_file(from)
            }
            Err(e) => Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
        };
    };
    match to.symlink_metadata() {
        Ok(m) if m.dev() == dev && m.ino() == ino => std::fs::rename(from, to),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "another file was put there",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the file that was there is gone",
        )),
        Err(e) => Err(e),
    }
}

/// Unlinks `path` only when it still is the file `was` names.
pub fn remove_if_unchanged(path: &Path, was: (u64, u64)) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if (m.dev(), m.ino()) == was => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "another file was put there",
        )),
        Err(e) => Err(e),
    }
}

/// `.NAME.PID.WHAT`, beside `path`: hidden, and this process's own.
fn temporary_path(path: &Path, what: &str) -> PathBuf {
    let suffix = format!("{}.{what}", std::process::id());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut name = hidden_prefix(
        path.file_name().unwrap_or_default(),
        suffix.len(),
        name_max(dir),
    );
    name.push(suffix);
    path.with_file_name(name)
}

/// The longest file name the filesystem holding `dir` takes (255 on most;
/// 255 when it cannot be asked).
pub fn name_max(dir: &Path) -> usize {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    rustix::fs::statvfs(dir).map_or(255, |v| (v.f_namemax as usize).clamp(14, 4096))
}

/// The prefix of the hidden files that belong to the file `name`: `.NAME.`,
/// or, when `.NAME.` and the longest suffix put after it would be longer
/// than `max` bytes, `.sdar-HASH.` with the first 16 hex digits of the
/// BLAKE3 hash of the name's bytes (SPEC.md §19.1). A file's own name may be
/// as long as the filesystem allows; its helpers must not overflow it.
pub fn hidden_prefix(
    name: &std::ffi::OsStr,
    longest_suffix: usize,
    max: usize,
) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    let fits = bytes
        .len()
        .checked_add(2)
        .and_then(|n| n.checked_add(longest_suffix))
        .is_some_and(|n| n <= max);
    let mut prefix = std::ffi::OsString::from(".");
    if fits {
        prefix.push(name);
        prefix.push(".");
        return prefix;
    }
    let hash = blake3::hash(bytes).to_hex();
    prefix.push(format!("sdar-{}.", &hash[..16]));
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn hidden_prefix_is_the_name_while_it_fits_then_a_hash() {
        let short = hidden_prefix(OsStr::new("a.vmdk"), 12, 255);
        assert_eq!(short, OsStr::new(".a.vmdk."));
        let n = "x".repeat(255 - 2 - 12);
        assert_eq!(
            hidden_prefix(OsStr::new(&n), 12, 255),
            OsStr::new(&format!(".{n}."))
        );
        let long = "x".repeat(255 - 2 - 12 + 1);
        let p = hidden_prefix(OsStr::new(&long), 12, 255);
        let hash = blake3::hash(long.as_bytes()).to_hex();
        assert_eq!(p, OsStr::new(&format!(".sdar-{}.", &hash[..16])));
        assert!(p.len() + 12 <= 255);
    }
}
