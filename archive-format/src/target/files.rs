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

/// True when the open file is a full image or a delta archive (by its
/// bytes, not its name).
pub fn holds_backup(file: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; crate::layout::GZIP_RECORD_HEAD_LEN];
    if file.read_exact_at(&mut head, 0).is_ok() && crate::codec::Codec::sniff(&head).is_some() {
        return true;
    }
    let Ok(len) = std::io::Seek::seek(&mut &*file, std::io::SeekFrom::End(0)) else {
        return false;
    };
    let mut tail = [0u8; 8];
    len >= crate::layout::TRAILER_LEN as u64
        && file
            .read_exact_at(&mut tail, len - crate::layout::TRAILER_LEN as u64)
            .is_ok()
        && tail == crate::layout::TRAILER_MAGIC
}

/// Writes `bytes` as the file `path`: through a new temporary file beside
/// it, synced and renamed into place, so that nothing is written through a
/// link or into a file another name shares. Without `replace`, refuses an
/// existing name; with it, still refuses a link, anything but a regular
/// file, and a backup.
pub fn write_file_replacing(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
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
            true => std::fs::rename(&target, path),
            false => Ok(()),
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        return Err(Error::io(path, None, e));
    }
    Ok(())
}

/// `.NAME.PID.WHAT`, beside `path`: hidden, and this process's own.
fn temporary_path(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{what}", std::process::id()))
}
