//! The one error type of the library. Every variant says where (file, block,
//! byte offset) and what, so a message can be acted on at 3 a.m.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A blake3-256 digest, shown as hex in messages.
pub type Hash = [u8; 32];

/// Where a problem was found: a file as the user named it.
pub type FileName = PathBuf;

/// Everything that can go wrong reading, writing, verifying or restoring.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The operating system refused a read, write, seek or open.
    Io {
        path: FileName,
        offset: Option<u64>,
        source: io::Error,
    },
    /// The bytes at `offset` are not the start of an sdar structure.
    BadMagic {
        file: FileName,
        offset: u64,
        found: Vec<u8>,
    },
    /// The file was written by a newer major version of the format.
    UnsupportedVersion {
        file: FileName,
        major: u16,
        minor: u16,
    },
    /// The file uses a feature (an incompatible flag, a codec, a metadata key
    /// that must be understood) this reader does not know.
    UnsupportedFeature { file: FileName, what: String },
    /// A structure failed its checksum or its rules.
    Corrupt {
        file: FileName,
        offset: u64,
        what: String,
    },
    /// The file ends before the structure that should be at `offset`.
    Truncated {
        file: FileName,
        offset: u64,
        what: String,
    },
    /// A block's content does not match the hash recorded for it.
    BlockMismatch {
        file: FileName,
        block: u64,
        offset: u64,
        expected: Hash,
        actual: Hash,
    },
    /// The block hashes are intact but do not add up to the recorded identity.
    IdentityMismatch {
        file: FileName,
        expected: Hash,
        actual: Hash,
    },
    /// The full image offered for a delta is not the one it was made from.
    WrongFull {
        file: FileName,
        expected: Hash,
        found: Hash,
    },
    /// A size, count or length is larger than the configured `Limits` allow.
    LimitExceeded {
        file: FileName,
        what: &'static str,
        value: u64,
        limit: u64,
    },
    /// A caller passed something the library cannot work with.
    InvalidInput { what: String },
    /// Something the work needs is not there: the full a delta needs, the
    /// .vmx a backup does not carry.
    NotFound { what: String },
    /// A source disk (raw image or VMDK descriptor) cannot be used.
    Source { file: FileName, what: String },
    /// A MAC is missing, made with another key, or does not match.
    Unauthentic { file: FileName, what: String },
    /// The system refused a resource the work needs (a thread, memory).
    System { what: String },
    /// A bug in sdar stopped the work (a worker thread panicked); the error
    /// is reported rather than hanging or aborting.
    Bug { what: String },
    /// The work was stopped through its [`crate::Cancel`] handle.
    Cancelled,
    /// The destination's filesystem has less free space than a restore needs.
    NoSpace {
        dir: FileName,
        needed: u64,
        available: u64,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the error means the data is damaged or not what it claims to
    /// be (exit code 1), as opposed to an environment or usage problem.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::BadMagic { .. }
                | Error::Corrupt { .. }
                | Error::Truncated { .. }
                | Error::BlockMismatch { .. }
                | Error::IdentityMismatch { .. }
                | Error::WrongFull { .. }
                | Error::Unauthentic { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, offset: Option<u64>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            offset,
            source,
        }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn truncated(
        file: impl Into<PathBuf>,
        offset: u64,
        what: impl Into<String>,
    ) -> Self {
        Error::Truncated {
            file: file.into(),
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Error::InvalidInput { what: what.into() }
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// Lower-case hex of a hash, for messages and `info`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                path,
                offset: Some(offset),
                source,
            } => write!(f, "{}: I/O error at byte {offset}: {source}", path.display()),
            Error::Io {
                path,
                offset: None,
                source,
            } => write!(f, "{}: {source}", path.display()),
            Error::BadMagic {
                file,
                offset,
                found,
            } => write!(
                f,
                "{}: not an sdar file: byte {offset} starts with {} instead of an sdar record",
                file.display(),
                hex(found)
            ),
            Error::UnsupportedVersion { file, major, minor } => write!(
                f,
                "{}: unsupported version {major}.{minor}: this sdar reads format version {}.x; use a newer sdar",
                file.display(),
                crate::layout::VERSION_MAJOR
            ),
            Error::UnsupportedFeature { file, what } => write!(
                f,
                "{}: uses a feature this sdar does not support: {what}; use a newer sdar",
                file.display()
            ),
            Error::Corrupt { file, offset, what } => {
                write!(f, "{}: corrupt at byte {offset}: {what}", file.display())
            }
            Error::Truncated { file, offset, what } => write!(
                f,
                "{}: truncated: {what} expected at byte {offset} is missing or cut short",
                file.display()
            ),
            Error::BlockMismatch {
                file,
                block,
                offset,
                expected,
                actual,
            } => write!(
                f,
                "{}: block {block} (stored at byte {offset}) is corrupt: its content hashes to {} but the index says {}",
                file.display(),
                hex(actual),
                hex(expected)
            ),
            Error::IdentityMismatch {
                file,
                expected,
                actual,
            } => write!(
                f,
                "{}: image identity mismatch: the block hashes give {} but the file records {}",
                file.display(),
                hex(actual),
                hex(expected)
            ),
            Error::WrongFull {
                file,
                expected,
                found,
            } => write!(
                f,
                "{}: wrong full image: this delta needs the full with identity {}, this file has identity {}",
                file.display(),
                hex(expected),
                hex(found)
            ),
            Error::LimitExceeded {
                file,
                what,
                value,
                limit,
            } => write!(
                f,
                "{}: {what} is {value}, above the limit of {limit}",
                file.display()
            ),
            Error::InvalidInput { what } | Error::NotFound { what } | Error::System { what } => {
                write!(f, "{what}")
            }
            Error::Bug { what } => write!(
                f,
                "internal error (a bug in sdar; please report it): {what}"
            ),
            Error::Source { file, what } => write!(f, "{}: {what}", file.display()),
            Error::Cancelled => write!(f, "cancelled"),
            Error::Unauthentic { file, what } => write!(
                f,
                "{}: authenticity check failed: {what}",
                file.display()
            ),
            Error::NoSpace {
                dir,
                needed,
                available,
            } => write!(
                f,
                "{}: not enough free space: the restore needs {needed} bytes ({:.2} GiB) and the filesystem has {available} bytes ({:.2} GiB) free; free some space, restore elsewhere, or pass --no-space-check",
                dir.display(),
                *needed as f64 / GIB,
                *available as f64 / GIB
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
