//! The catalog's tables, and the migrations that bring an older catalog up
//! to date. `PRAGMA user_version` holds the schema version.

use crate::{Catalog, Error, Result};

/// The schema this sdar writes. A catalog with a higher version is refused
/// (a newer sdar made it); a lower one is migrated in place, in one
/// transaction.
pub const SCHEMA_VERSION: i64 = 1;

/// Version 1: targets, the files found in them, settings, and the queue.
const V1: &str = "
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- A folder that holds backups, as given to `sdar index` (absolute).
CREATE TABLE targets (
    id         INTEGER PRIMARY KEY,
    path       BLOB NOT NULL UNIQUE,
    indexed_at INTEGER,            -- unix seconds of the last complete index
    status     TEXT                -- why the last index could not read it
);
-- Every regular file found under a target. Backups have kind 'full' or
-- 'delta'; 'damaged' is an sdar file that does not open, 'foreign' a file
-- named like a backup that is not one, 'other' anything else (kept so that a
-- re-index does not read it again).
CREATE TABLE files (
    id            INTEGER PRIMARY KEY,
    target_id     INTEGER NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
    path          BLOB NOT NULL UNIQUE,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    ctime_ns      INTEGER NOT NULL,  -- with size, mtime and inode: unchanged or not
    inode         INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('full', 'delta', 'damaged', 'foreign', 'other')),
    problem       TEXT,
    vm_name       TEXT,
    vm_uuid       TEXT,
    scsi_id       TEXT,
    disk_name     TEXT,
    created       INTEGER,
    codec         TEXT,
    keyed         INTEGER,
    identity      BLOB,
    base_identity BLOB,
    base_name     TEXT,
    image_size    INTEGER,
    indexed_at    INTEGER NOT NULL
);
CREATE INDEX files_by_vm ON files (vm_name, created);
CREATE INDEX files_by_identity ON files (identity);
CREATE INDEX files_by_target ON files (target_id);
";

/// Puts the database in WAL mode (recorded in the file: every later
/// connection gets it) and returns the journal mode it is in. Changing the
/// mode takes a lock that SQLite does not wait for (the busy timeout does
/// not apply): processes opening a new catalog at once get SQLITE_BUSY, so
/// the change is tried again for up to the busy timeout.
fn wal_mode(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    let start = std::time::Instant::now();
    loop {
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(mode);
        }
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && start.elapsed() < crate::BUSY_TIMEOUT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Opens the catalog for use: WAL (readers never wait for the writer),
/// foreign keys, and the schema at [`SCHEMA_VERSION`].
pub(crate) fn prepare(catalog: &mut Catalog) -> Result<()> {
    let conn = catalog.conn();
    let mode = wal_mode(conn).map_err(|e| catalog.err(e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Usage(format!(
            "{}: the catalog cannot use write-ahead logging (journal mode {mode}); \
             put it on a local file system",
            catalog.path().display()
        )));
    }
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
        .map_err(|e| catalog.err(e))?;
    let path = catalog.path().to_path_buf();
    let conn = catalog.conn_mut();
    // IMMEDIATE: two processes creating a new catalog at once do not both
    // run the migration; the second waits, then finds it done.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite(&path, e))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| Error::sqlite(&path, e))?;
    if version > SCHEMA_VERSION {
        return Err(Error::UnsupportedSchema {
            path,
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(V1).map_err(|e| Error::sqlite(&path, e))?;
        tx.execute_batch(crate::queue::TABLES)
            .map_err(|e| Error::sqlite(&path, e))?;
        tx.execute_batch(crate::replicate::TABLES)
            .map_err(|e| Error::sqlite(&path, e))?;
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| Error::sqlite(&path, e))?;
    }
    tx.commit().map_err(|e| Error::sqlite(&path, e))
}
