//! The restored log: one line per backup restored by replication,
//!
//! ```text
//! IDENTITY<TAB>CREATED<TAB>ARCHIVE<TAB>DEST
//! ```
//!
//! the backup's identity (64 hex digits), its creation time (UTC, `-` when
//! unknown), the delta archive and the destination, each path with `\`,
//! control characters and bytes that are not UTF-8 written as `\\` and
//! `\xNN`. A backup is restored to a destination once: while its line is
//! in the log, replication passes it over. Deleting or editing the line
//! restores it again. Blank lines and `#` comments are allowed.
//!
//! Lines are appended with one `write` each on a descriptor opened with
//! `O_APPEND`, so that lines from several writers never interleave; the
//! log is created with `O_EXCL | O_NOFOLLOW`, and a link, FIFO or device
//! in its place is refused.

use super::config::read_small_file;
use crate::{Error, Result};
use archive_format::{hex, Hash};
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// A restored log larger than this is refused (about 200,000 restores).
pub const MAX_LOG_LEN: u64 = 64 << 20;

/// What the restored log says was restored: (identity, destination as
/// written in the log).
#[derive(Clone, Debug, Default)]
pub struct Restored {
    done: HashSet<(String, String)>,
    /// Lines that do not read as restored backups (line number, why):
    /// warned about, and their backups restored again.
    pub unreadable: Vec<(usize, String)>,
}

impl Restored {
    /// Reads the log at `path`; a missing log is empty. A link, FIFO or
    /// device at `path` is refused: the log is written, and a planted link
    /// would redirect the writes.
    pub fn read(path: &Path) -> Result<Restored> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Restored::default()),
            Err(e) => return Err(Error::io(path, "cannot read the restored log", e)),
            Ok(m) if !m.file_type().is_file() => return Err(not_a_file(path)),
            Ok(_) => {}
        }
        let (bytes, _) = read_small_file(path, MAX_LOG_LEN, "the restored log")?;
        Ok(Restored::parse(&bytes))
    }

    fn parse(bytes: &[u8]) -> Restored {
        let mut out = Restored::default();
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = String::from_utf8_lossy(raw);
            let line = text.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let identity = fields[0].trim().to_ascii_lowercase();
            if fields.len() != 4 {
                out.unreadable
                    .push((i + 1, format!("{} fields instead of 4", fields.len())));
            } else if identity.len() != 64 || !identity.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.unreadable
                    .push((i + 1, "the first field is not a backup identity".into()));
            } else {
                out.done.insert((identity, fields[3].trim().to_string()));
            }
        }
        out
    }

    /// True when the backup `identity` was restored to `dest`.
    pub fn contains(&self, identity: &Hash, dest: &Path) -> bool {
        self.done.contains(&(hex(identity), escape_path(dest)))
    }
}

fn not_a_file(path: &Path) -> Error {
    Error::Usage(format!(
        "{}: the restored log must be a regular file, not a link, folder, FIFO or device",
        crate::replicate::shown(path)
    ))
}

/// The log's line for a restored backup (with its line end).
pub fn line(identity: &Hash, created: Option<i64>, archive: &Path, dest: &Path) -> String {
    format!(
        "{}\t{}\t{}\t{}\n",
        hex(identity),
        created.map_or_else(|| "-".into(), crate::time::show),
        escape_path(archive),
        escape_path(dest)
    )
}

/// A path as one field of the log: `\` as `\\`, control characters and
/// bytes that are not UTF-8 as `\xNN` (so that no tab or line end is ever
/// written raw).
pub fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Appends `line` to the log at `path` unless a line for the same backup
/// and destination is there already: opened with `O_APPEND | O_NOFOLLOW`
/// (created with `O_EXCL` when missing), one write.
pub fn append(path: &Path, identity: &Hash, dest: &Path, line: &str) -> Result<()> {
    let what = "cannot write the restored log";
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
            {
                // Another writer created it first: append to theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(),
                r => r,
            }
        }
        r => r,
    };
    let file = file.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => not_a_file(path),
        _ => Error::io(path, what, e),
    })?;
    let meta = file.metadata().map_err(|e| Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(not_a_file(path));
    }
    if meta.len() <= MAX_LOG_LEN {
        let mut bytes = vec![0; meta.len() as usize];
        let read = file.read_exact_at(&mut bytes, 0).map(|()| bytes.len());
        if let Ok(n) = read {
            if Restored::parse(&bytes[..n]).contains(identity, dest) {
                return Ok(());
            }
            // A log whose last line was cut (or edited without a line end)
            // gets one first, in the same write.
            if n > 0 && bytes[n - 1] != b'\n' {
                let joined = format!("\n{line}");
                return (&file)
                    .write_all(joined.as_bytes())
                    .map_err(|e| Error::io(path, what, e));
            }
        }
    }
    (&file)
        .write_all(line.as_bytes())
        .map_err(|e| Error::io(path, what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_and_stay_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let id = [7u8; 32];
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/r/a\tb\nc\\\xff.vmdk"));
        let l = line(&id, Some(0), Path::new("/b/x.sdar"), odd);
        assert_eq!(l.matches('\n').count(), 1);
        assert_eq!(l.matches('\t').count(), 3);
        append(&log, &id, odd, &l).unwrap();
        append(&log, &id, odd, &l).unwrap();
        let r = Restored::read(&log).unwrap();
        assert!(r.contains(&id, odd));
        assert!(!r.contains(&id, Path::new("/r/a")));
        assert!(!r.contains(&[8; 32], odd));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), l);
        // A cut last line gets its line end before the next.
        std::fs::write(&log, "# mine").unwrap();
        append(&log, &id, odd, &l).unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("# mine\n{l}")
        );
        let r = Restored::parse(b"junk\n\n# c\nzz\ta\tb\tc\r\n");
        assert_eq!(r.unreadable.len(), 2);
    }

    #[test]
    fn a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(Restored::read(&link).unwrap_err().is_usage());
        let e = append(&link, &[0; 32], Path::new("/d"), "x\n").unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert_eq!(std::fs::read(&real).unwrap(), b"");
    }
}
