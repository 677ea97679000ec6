//! `sdar-catalog`: what backups exist and where, and the restores waiting
//! to run.
//!
//! The catalog is one SQLite file (README "Many backups"). [`Catalog::index`]
//! walks backup targets (folders) and records every full image and delta
//! archive from its header, metadata and footer alone, a few KB per file
//! whatever its size; [`Catalog::backups`] and [`Catalog::select`] answer
//! from the database without touching a target. The restore queue lives in
//! the same file (module [`queue`]), so a job survives the process that ran
//! it.
//!
//! SQLite is kept out of the library and the restore runtime: this crate is
//! the only one that links it.

mod error;
mod index;
mod query;
pub mod queue;
pub mod replicate;
mod schema;
pub mod time;

pub use error::{Error, Result};
pub use index::{
    IndexOptions, IndexReport, Problem, ProblemKind, TargetInfo, DEFAULT_REINDEX_AFTER,
};
pub use query::{Backup, Choice, Filter, FullMatch, Kind, Selection, When};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a command waits for another sdar process holding the database
/// before it gives up: an index of a slow share can hold a write for a while.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// An open catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

impl Catalog {
    /// Opens the catalog at `path`, creating it (and its folder, mode 0700)
    /// when missing, and bringing its schema up to date. A link at `path` is
    /// refused: the catalog is written, and a planted link would redirect
    /// those writes.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::io(dir, "cannot create the catalog's folder", e))?;
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_file() {
                return Err(Error::Usage(format!(
                    "{}: the catalog must be a regular file, not a link, folder or device",
                    path.display()
                )));
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| Error::sqlite(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| Error::sqlite(path, e))?;
        let mut catalog = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        schema::prepare(&mut catalog)?;
        Ok(catalog)
    }

    /// Where the catalog is when nothing says otherwise: `SDAR_CATALOG`,
    /// else `/var/lib/sdar/catalog.sqlite` for root, else
    /// `$XDG_DATA_HOME/sdar/catalog.sqlite` (`~/.local/share` when unset).
    pub fn default_path() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("SDAR_CATALOG").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        if is_root() {
            return Ok(PathBuf::from("/var/lib/sdar/catalog.sqlite"));
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| Path::new(&h).join(".local/share"))
            })
            .ok_or_else(|| {
                Error::Usage("no catalog: set SDAR_CATALOG or HOME, or give --catalog FILE".into())
            })?;
        Ok(data.join("sdar/catalog.sqlite"))
    }

    /// The file this catalog is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for the modules of this crate.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// An SQLite error, naming this catalog.
    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        Error::sqlite(&self.path, e)
    }

    /// A setting stored in the catalog (`reindex_after` and the like).
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO settings(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

fn is_root() -> bool {
    // geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
