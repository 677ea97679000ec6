//! Opening what sdar is asked to read: a FIFO, a terminal or a character
//! device must not block the open or feed a read without end, and a small
//! file (a key, a descriptor, a .vmx) is read with a bound.
//!
//! Every input is opened with `O_NONBLOCK` (so opening a FIFO with no
//! writer returns at once), checked with `fstat`, and only then read, with
//! `O_NONBLOCK` cleared again.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Which kinds of file an input may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A regular file only (archives, keys, .vmx files, descriptors).
    Regular,
    /// A regular file or a block device (a disk to back up).
    Disk,
}

/// Opens `path` for reading, refusing anything but a regular file (or, for
/// [`InputKind::Disk`], a block device) before a byte is read.
pub fn open_input(path: &Path, kind: InputKind) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| Error::io(path, None, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, None, e))?;
    let t = meta.file_type();
    let accepted = t.is_file() || (kind == InputKind::Disk && t.is_block_device());
    if !accepted {
        let what = if t.is_dir() {
            "a folder"
        } else if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_block_device() {
            "a block device"
        } else {
            "not a regular file"
        };
        let wanted = match kind {
            InputKind::Regular => "a regular file",
            InputKind::Disk => "a regular file or a block device",
        };
        return Err(Error::invalid(format!(
            "{} is {what}; sdar reads {wanted} here{}",
            path.display(),
            if t.is_fifo() || t.is_char_device() {
                " (a stream is read only as standard input, `-`, where a command offers it, such as `--full -`)"
            } else {
                ""
            }
        )));
    }
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty()).map_err(|e| {
        Error::io(
            path,
            None,
            std::io::Error::from_raw_os_error(e.raw_os_error()),
        )
    })?;
    Ok(file)
}

/// Reads a small regular file whole: at most `limit` bytes, refused with
/// `what` named when it is larger (never read past the limit).
pub fn read_small(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let file = open_input(path, InputKind::Regular)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, Some(bytes.len() as u64), e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::LimitExceeded {
            file: path.to_path_buf(),
            what,
            value: path.metadata().map_or(limit + 1, |m| m.len()),
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = open_input(&fifo, InputKind::Regular).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        let err = open_input(&fifo, InputKind::Disk).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn char_device_and_folder_are_refused() {
        let err = open_input(Path::new("/dev/zero"), InputKind::Disk).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let err = open_input(Path::new("/"), InputKind::Regular).unwrap_err();
        assert!(err.to_string().contains("folder"), "{err}");
    }

    #[test]
    fn small_files_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        assert_eq!(read_small(&p, 100, "key file").unwrap().len(), 100);
        let err = read_small(&p, 99, "key file").unwrap_err();
        assert!(
            matches!(err, Error::LimitExceeded { limit: 99, .. }),
            "{err}"
        );
        let err = read_small(Path::new("/dev/urandom"), 4096, "key file").unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }
}
