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
    args            BLOB NOT NULL,     -- the restore's own arguments, each ended by a NUL
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

use crate::{now_unix, Catalog, Result};
use archive_format::Hash;
use rusqlite::params;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// A restore to queue.
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    /// The delta archive.
    pub archive: PathBuf,
    /// Its full, when chosen at submission (else found as `sdar restore`
    /// finds it).
    pub full: Option<PathBuf>,
    /// The destination, absolute.
    pub dest: PathBuf,
    /// The restore's own arguments, as `sdar restore ARCHIVE` takes them
    /// (`--to DEST` and `--full FULL` included).
    pub args: Vec<OsString>,
    /// Who asked: user name and program (`root via sdar queue submit`).
    pub submitted_by: String,
    /// Replication: the restored log to append to once the job is done.
    pub restored_log: Option<PathBuf>,
    /// Replication: the identity of the backup restored.
    pub backup_identity: Option<Hash>,
}

/// Arguments stored as one blob: each followed by a NUL (arguments cannot
/// hold one), so that names that are not UTF-8 survive.
pub fn args_blob(args: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out
}

pub fn blob_args(blob: &[u8]) -> Vec<OsString> {
    let body = blob.strip_suffix(&[0]).unwrap_or(blob);
    if body.is_empty() && blob.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

impl Catalog {
    /// Queues `job`, waiting; returns its id.
    pub fn submit(&self, job: &NewJob) -> Result<i64> {
        self.conn()
            .execute(
                "INSERT INTO jobs(state, archive, full, dest, args, submitted_by, submitted_at,
                     restored_log, backup_identity)
                 VALUES ('waiting', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    job.archive.as_os_str().as_bytes(),
                    job.full.as_ref().map(|f| f.as_os_str().as_bytes()),
                    job.dest.as_os_str().as_bytes(),
                    args_blob(&job.args),
                    job.submitted_by,
                    now_unix(),
                    job.restored_log.as_ref().map(|f| f.as_os_str().as_bytes()),
                    job.backup_identity.map(|h| h.to_vec()),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn().last_insert_rowid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_the_blob() {
        for args in [
            vec![],
            vec![OsString::new()],
            vec![
                "--to".into(),
                OsString::from_vec(b"/d/\xff x".to_vec()),
                "".into(),
            ],
        ] {
            assert_eq!(blob_args(&args_blob(&args)), args);
        }
    }
}
