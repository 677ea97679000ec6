//! The restore queue: jobs waiting, running, done or failed, kept in the
//! catalog so that they survive the daemon that runs them.

/// The queue's tables (schema version 1; see `schema.rs`).
pub(crate) const TABLES: &str = "
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'done', 'failed', 'cancelled')),
    archive         BLOB NOT NULL,     -- the delta archive
    full            BLOB,              -- its full, when chosen at submission
    dest            BLOB NOT NULL,     -- the destination, absolute
    args            TEXT NOT NULL,     -- JSON array: the restore's own arguments
    submitted_by    TEXT NOT NULL,
    submitted_at    INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    runner          TEXT,              -- the daemon running it
    attempts        INTEGER NOT NULL DEFAULT 0,
    done_bytes      INTEGER,
    total_bytes     INTEGER,
    exit_code       INTEGER,
    message         TEXT,
    cancel          INTEGER NOT NULL DEFAULT 0,
    log             BLOB,
    restored_log    BLOB,              -- replication: the log to append to when done
    backup_identity BLOB               -- replication: the backup restored
);
CREATE INDEX jobs_by_state ON jobs (state, id);
";
