//! Replication from esXpress's `vmdks.auto` config: parsing it
//! ([`config`]), matching its lines against the catalog ([`matching`]),
//! the restored log ([`log`]), the configs the daemon runs (registered in
//! the catalog), and `--preload` ([`preload`]).

pub mod config;
pub mod log;
pub mod matching;
pub mod preload;

use crate::{now_unix, Catalog, Error, Result};
use archive_format::Hash;
use config::{Config, RestoreLine};
use matching::{Miss, Planned};
use rusqlite::OptionalExtension;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The configs `sdar daemon` runs (schema version 1; see `schema.rs`).
pub(crate) const TABLES: &str = "
CREATE TABLE replications (
    id            INTEGER PRIMARY KEY,
    config        BLOB NOT NULL UNIQUE,  -- the config file, absolute
    restored_log  BLOB NOT NULL,         -- its restored log, absolute
    registered_by TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    last_run      INTEGER,               -- unix seconds of the last pass
    last_status   TEXT                   -- what the last pass did, one line
);
";

/// Appends a line for a restored backup to the restored log (called by the
/// daemon when a replication job is done): its identity, creation time
/// (read from the archive's metadata, a few KB; `-` when it cannot be), the
/// archive and the destination. Nothing is appended when the log already
/// has the line, so that calling it twice for one job is harmless.
pub fn record_restored(log: &Path, identity: &Hash, archive: &Path, dest: &Path) -> Result<()> {
    let created = created_of(archive);
    log::append(
        log,
        identity,
        dest,
        &log::line(identity, created, archive, dest),
    )
}

/// The creation time recorded in a delta archive, if it opens.
fn created_of(archive: &Path) -> Option<i64> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(archive)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let limits = archive_format::Limits::default();
    archive_format::DeltaArchive::open(&file, archive, &limits)
        .ok()?
        .meta()
        .created_unix
}

/// A path for a message: control characters escaped.
pub(crate) fn shown(path: &Path) -> String {
    archive_format::display::escape(&path.display().to_string()).into_owned()
}

/// Text quoted from a config in a message: escaped, and cut at 80 bytes.
pub(crate) fn short(text: &str) -> String {
    let cut = archive_format::display::cut_to(text, 80);
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!("{}{more}", archive_format::display::escape(cut))
}

/// What one pass decided for one `RESTORE:` line.
#[derive(Clone, Debug)]
pub enum Decision {
    /// To be restored: submit it.
    Restore(Planned),
    /// In the restored log already.
    UpToDate(Planned),
    /// A job for the same destination is waiting or running (its id).
    Queued(Planned, i64),
    /// Matched nothing, matched more than one disk, or cannot be restored
    /// where it says: reported, never guessed.
    Miss(Miss),
}

/// Decides every line of `config` against the catalog, the restored log
/// and the queue, at `now`. Two lines that restore to the same path: the
/// second is a miss.
pub fn plan(
    catalog: &Catalog,
    config: &Config,
    restored: &log::Restored,
    now: i64,
) -> Result<Vec<(RestoreLine, Decision)>> {
    let mut out = Vec::new();
    let mut dests: Vec<(PathBuf, usize)> = Vec::new();
    // One file reached through a linked folder is one destination too
    // (two jobs to it could run at once with `sdar daemon --jobs 2`).
    let resolved = |dest: &Path| {
        dest.parent()
            .and_then(|f| std::fs::canonicalize(f).ok())
            .zip(dest.file_name())
            .map_or_else(|| dest.to_path_buf(), |(f, n)| f.join(n))
    };
    for line in &config.lines {
        let planned = match catalog.match_line(line, line.days(config.use_days), now)? {
            Ok(p) => p,
            Err(miss) => {
                out.push((line.clone(), Decision::Miss(miss)));
                continue;
            }
        };
        let key = resolved(&planned.dest);
        if let Some((_, first)) = dests.iter().find(|(d, _)| *d == key) {
            let miss = Miss(format!(
                "{} is restored by line {first} already: two lines cannot restore to one path",
                planned.dest.display()
            ));
            out.push((line.clone(), Decision::Miss(miss)));
            continue;
        }
        dests.push((key, line.number));
        // The log names the destination as the job was given it, or as
        // the restore wrote it (a link followed).
        let identity = &planned.choice.delta.identity;
        let logged = restored.contains(identity, &planned.dest)
            || std::fs::canonicalize(&planned.dest).is_ok_and(|c| restored.contains(identity, &c));
        let decision = if logged {
            Decision::UpToDate(planned)
        } else if let Some(id) = catalog.pending_job_for(&planned.dest)? {
            Decision::Queued(planned, id)
        } else {
            Decision::Restore(planned)
        };
        out.push((line.clone(), decision));
    }
    Ok(out)
}

/// A config `sdar daemon` runs every `--replicate-every`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub id: i64,
    pub config: PathBuf,
    pub restored_log: PathBuf,
    pub registered_by: String,
    pub registered_at: i64,
    pub last_run: Option<i64>,
    pub last_status: Option<String>,
}

/// How a job ended, for `sdar replicate --once`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEnd {
    pub state: String,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
}

impl Catalog {
    /// Registers `config` (absolute) for the daemon, with its restored log;
    /// registering it again updates the log and who registered it. Returns
    /// true when it was new.
    pub fn register_replication(
        &self,
        config: &Path,
        restored_log: &Path,
        by: &str,
    ) -> Result<bool> {
        if !config.is_absolute() || !restored_log.is_absolute() {
            return Err(Error::Usage(
                "a registered config and its restored log are absolute paths".into(),
            ));
        }
        let known = self.registered_replication(config)?.is_some();
        self.conn()
            .execute(
                "INSERT INTO replications(config, restored_log, registered_by, registered_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(config) DO UPDATE SET restored_log = excluded.restored_log,
                     registered_by = excluded.registered_by",
                rusqlite::params![
                    config.as_os_str().as_bytes(),
                    restored_log.as_os_str().as_bytes(),
                    by,
                    now_unix()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(!known)
    }

    /// Forgets a registered config; false when it was not registered.
    pub fn unregister_replication(&self, config: &Path) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM replications WHERE config = ?1",
                [config.as_os_str().as_bytes()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Every registered config, oldest first.
    pub fn registered_replications(&self) -> Result<Vec<Registered>> {
        let mut st = self
            .conn()
            .prepare(
                "SELECT id, config, restored_log, registered_by, registered_at, last_run,
                     last_status FROM replications ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], registered_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    fn registered_replication(&self, config: &Path) -> Result<Option<Registered>> {
        self.conn()
            .query_row(
                "SELECT id, config, restored_log, registered_by, registered_at, last_run,
                     last_status FROM replications WHERE config = ?1",
                [config.as_os_str().as_bytes()],
                registered_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records what the last pass of a registered config did.
    pub fn record_replication_run(&self, id: i64, status: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE replications SET last_run = ?1, last_status = ?2 WHERE id = ?3",
                rusqlite::params![now_unix(), status, id],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// A job waiting or running for the destination `dest`, if any.
    pub fn pending_job_for(&self, dest: &Path) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT id FROM jobs WHERE state IN ('waiting', 'running') AND dest = ?1
                 ORDER BY id LIMIT 1",
                [dest.as_os_str().as_bytes()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Queues `job` unless a job for its destination is waiting or running,
    /// in one transaction, so that two passes at once (the daemon's and a
    /// `--once` from cron) do not both queue it: `Ok(id)` of the new job,
    /// or `Err(id)` of the one already there.
    pub fn submit_replica(
        &self,
        job: &crate::queue::NewJob,
    ) -> Result<std::result::Result<i64, i64>> {
        // IMMEDIATE: the write lock is taken before the check.
        self.conn()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        let result = self
            .pending_job_for(&job.dest)
            .and_then(|pending| match pending {
                Some(id) => Ok(Err(id)),
                None => self.submit(job).map(Ok),
            });
        let end = if matches!(result, Ok(Ok(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        if let Err(e) = self.conn().execute_batch(end) {
            let _ = self.conn().execute_batch("ROLLBACK");
            return Err(self.err(e));
        }
        result
    }

    /// How the job `id` stands (`None` when it is gone, purged).
    pub fn job_end(&self, id: i64) -> Result<Option<JobEnd>> {
        self.conn()
            .query_row(
                "SELECT state, exit_code, message FROM jobs WHERE id = ?1",
                [id],
                |r| {
                    Ok(JobEnd {
                        state: r.get(0)?,
                        exit_code: r.get(1)?,
                        message: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }
}

fn registered_row(r: &rusqlite::Row) -> rusqlite::Result<Registered> {
    Ok(Registered {
        id: r.get(0)?,
        config: crate::index::blob_path(r.get(1)?),
        restored_log: crate::index::blob_path(r.get(2)?),
        registered_by: r.get(3)?,
        registered_at: r.get(4)?,
        last_run: r.get(5)?,
        last_status: r.get(6)?,
    })
}
