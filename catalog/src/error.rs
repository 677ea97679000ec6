//! The catalog's errors: each names the file it is about.

use std::fmt;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The catalog database refused an operation.
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The catalog was written by a newer sdar.
    UnsupportedSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A file or folder could not be read or written.
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    /// A backup file: its own error, from the library.
    Archive(archive_format::Error),
    /// What the caller asked for cannot be done as asked (exit code 2).
    Usage(String),
    /// A selection matched nothing.
    NotFound(String),
    /// A selection matched more than one backup; the message lists them.
    Ambiguous(String),
}

impl Error {
    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn io(path: &Path, what: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    /// True when the caller asked for something impossible or unclear
    /// (exit code 2 in the CLI).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Usage(_) | Error::Ambiguous(_) | Error::UnsupportedSchema { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite { path, source } => {
                write!(f, "{}: catalog database: {source}", path.display())
            }
            Error::UnsupportedSchema {
                path,
                found,
                supported,
            } => write!(
                f,
                "{}: the catalog's schema is version {found}, this sdar reads up to {supported}: \
                 use a newer sdar, or another catalog (--catalog FILE)",
                path.display()
            ),
            Error::Io { path, what, source } => {
                write!(f, "{}: {what}: {source}", path.display())
            }
            Error::Archive(e) => e.fmt(f),
            Error::Usage(m) | Error::NotFound(m) | Error::Ambiguous(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sqlite { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Archive(e) => Some(e),
            _ => None,
        }
    }
}

impl From<archive_format::Error> for Error {
    fn from(e: archive_format::Error) -> Error {
        Error::Archive(e)
    }
}
