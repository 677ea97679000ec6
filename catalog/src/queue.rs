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
    started_at      INTEGER,           -- the first start (a job that has one resumes)
    finished_at     INTEGER,
    runner          TEXT,              -- the daemon running it (its lock file's name)
    beat_at         INTEGER,           -- when its daemon last said it runs it
    attempts        INTEGER NOT NULL DEFAULT 0,  -- times a daemon started it
    lost            INTEGER NOT NULL DEFAULT 0,  -- times its daemon died running it
    done_bytes      INTEGER,
    total_bytes     INTEGER,
    exit_code       INTEGER,
    message         TEXT,
    cancel          INTEGER NOT NULL DEFAULT 0,
    log             BLOB,
    vm_name         TEXT,              -- what the archive says, for lists
    disk_name       TEXT,
    restored_log    BLOB,              -- replication: the log to append to when done
    backup_identity BLOB               -- replication: the backup restored
);
CREATE INDEX jobs_by_state ON jobs (state, id);
";

use crate::index::blob_path;
use crate::{now_unix, Catalog, Error, Result};
use archive_format::Hash;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
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
    /// The identity of the backup to restore: the daemon refuses an archive
    /// replaced since (and replication records it as restored).
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
                // A new id above every id the queue ever gave, purged
                // ones included: `sdar queue cancel N` of a purged job
                // never reaches another one.
                "INSERT INTO jobs(id, state, archive, full, dest, args, submitted_by,
                     submitted_at, restored_log, backup_identity)
                 VALUES (MAX(COALESCE((SELECT MAX(id) FROM jobs), 0),
                             COALESCE((SELECT CAST(value AS INTEGER) FROM settings
                                       WHERE key = 'queue_last_id'), 0)) + 1,
                         'waiting', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Waiting,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "waiting" => JobState::Waiting,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            // The table's CHECK allows nothing else.
            _ => JobState::Cancelled,
        }
    }

    /// Done, failed or cancelled: nothing will change it again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job as the queue holds it.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: i64,
    pub state: JobState,
    pub archive: PathBuf,
    pub full: Option<PathBuf>,
    pub dest: PathBuf,
    pub args: Vec<OsString>,
    pub submitted_by: String,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub runner: Option<String>,
    pub attempts: i64,
    pub lost: i64,
    pub done_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub exit_code: Option<i64>,
    pub message: Option<String>,
    pub cancel: bool,
    pub log: Option<PathBuf>,
    /// From the submission, else from the catalog's index of the archive.
    pub vm_name: Option<String>,
    pub disk_name: Option<String>,
    pub restored_log: Option<PathBuf>,
    pub backup_identity: Option<Hash>,
    /// When its daemon last reported on it (every second while it runs).
    pub beat_at: Option<i64>,
}

const JOB_COLUMNS: &str = "j.id, j.state, j.archive, j.full, j.dest, j.args, j.submitted_by,
    j.submitted_at, j.started_at, j.finished_at, j.runner, j.attempts, j.lost, j.done_bytes,
    j.total_bytes, j.exit_code, j.message, j.cancel, j.log,
    COALESCE(j.vm_name, (SELECT f.vm_name FROM files f WHERE f.path = j.archive)),
    COALESCE(j.disk_name, (SELECT f.disk_name FROM files f WHERE f.path = j.archive)),
    j.restored_log, j.backup_identity, j.beat_at";

fn job_from_row(r: &rusqlite::Row) -> rusqlite::Result<Job> {
    let state: String = r.get(1)?;
    let identity: Option<Vec<u8>> = r.get(22)?;
    let bytes = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    Ok(Job {
        id: r.get(0)?,
        state: JobState::parse(&state),
        archive: blob_path(r.get(2)?),
        full: r.get::<_, Option<Vec<u8>>>(3)?.map(blob_path),
        dest: blob_path(r.get(4)?),
        args: blob_args(&r.get::<_, Vec<u8>>(5)?),
        submitted_by: r.get(6)?,
        submitted_at: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
        runner: r.get(10)?,
        attempts: r.get(11)?,
        lost: r.get(12)?,
        done_bytes: bytes(r.get(13)?),
        total_bytes: bytes(r.get(14)?),
        exit_code: r.get(15)?,
        message: r.get(16)?,
        cancel: r.get::<_, i64>(17)? != 0,
        log: r.get::<_, Option<Vec<u8>>>(18)?.map(blob_path),
        vm_name: r.get(19)?,
        disk_name: r.get(20)?,
        restored_log: r.get::<_, Option<Vec<u8>>>(21)?.map(blob_path),
        backup_identity: identity.and_then(|v| v.try_into().ok()),
        beat_at: r.get(23)?,
    })
}

/// What `cancel_job` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting: it is cancelled now.
    Cancelled,
    /// It is running: its daemon was asked to stop it.
    Requested,
    /// It had already ended, in this state.
    AlreadyFinished(JobState),
}

/// How a daemon's run of a job ended, for [`Catalog::end_job`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEnd {
    Done {
        message: String,
    },
    Failed {
        exit_code: u8,
        message: String,
    },
    Cancelled {
        message: String,
    },
    /// Stopped with the daemon: waiting again, to be resumed.
    Stopped {
        message: String,
    },
}

/// The most times a job's daemon may die while running it before the job
/// is failed instead of run again: a job that kills its daemon would
/// otherwise do so for ever.
pub const MAX_LOST: i64 = 5;

/// How long a daemon whose lock file is gone (so that its life cannot be
/// told) must have been silent about a job before the job is taken from
/// it: a running daemon reports on its jobs every second.
pub const SILENT_SECS: i64 = 30;

impl Catalog {
    /// Records what the archive says of itself (for `sdar queue list`).
    pub fn describe_job(
        &self,
        id: i64,
        vm_name: Option<&str>,
        disk_name: Option<&str>,
    ) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET vm_name = ?2, disk_name = ?3 WHERE id = ?1",
                params![id, vm_name, disk_name],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records where job `id`'s log is.
    pub fn set_job_log(&self, id: i64, log: &std::path::Path) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET log = ?2 WHERE id = ?1",
                params![id, log.as_os_str().as_bytes()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs j ORDER BY j.id");
        let mut stmt = self.conn().prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], job_from_row)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| self.err(e))
    }

    /// The job `id`, or a usage error naming it when there is none.
    pub fn job(&self, id: i64) -> Result<Job> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = ?1");
        self.conn()
            .query_row(&sql, [id], job_from_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| no_job(id, self.path()))
    }

    /// Cancels job `id`: a waiting job at once, a running one by asking its
    /// daemon (which stops it at its next block).
    pub fn cancel_job(&mut self, id: i64) -> Result<CancelOutcome> {
        let path = self.path().to_path_buf();
        let sql = |e| Error::sqlite(&path, e);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let state: Option<String> = tx
            .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        let state = JobState::parse(&state.ok_or_else(|| no_job(id, &path))?);
        let outcome = match state {
            JobState::Waiting => {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel = 1, finished_at = ?2,
                         runner = NULL, message = 'cancelled before it ran'
                     WHERE id = ?1",
                    params![id, now_unix()],
                )
                .map_err(sql)?;
                CancelOutcome::Cancelled
            }
            JobState::Running => {
                tx.execute("UPDATE jobs SET cancel = 1 WHERE id = ?1", [id])
                    .map_err(sql)?;
                CancelOutcome::Requested
            }
            s => CancelOutcome::AlreadyFinished(s),
        };
        tx.commit().map_err(sql)?;
        Ok(outcome)
    }

    /// Forgets the finished jobs (done, failed, cancelled) that ended before
    /// `ended_before` (all of them with `None`); returns their ids and logs.
    /// Waiting and running jobs are never touched.
    pub fn purge_jobs(&self, ended_before: Option<i64>) -> Result<Vec<(i64, Option<PathBuf>)>> {
        // The highest id given so far outlives the jobs purged: it is never
        // given again.
        self.conn()
            .execute(
                "INSERT INTO settings(key, value)
                 SELECT 'queue_last_id', MAX(id) FROM jobs WHERE true HAVING MAX(id) IS NOT NULL
                 ON CONFLICT(key) DO UPDATE
                     SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                [],
            )
            .map_err(|e| self.err(e))?;
        let mut stmt = self
            .conn()
            .prepare(
                "DELETE FROM jobs
                 WHERE state IN ('done', 'failed', 'cancelled')
                   AND (?1 IS NULL OR COALESCE(finished_at, submitted_at) < ?1)
                 RETURNING id, log",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([ended_before], |r| {
                Ok((r.get(0)?, r.get::<_, Option<Vec<u8>>>(1)?.map(blob_path)))
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        let mut rows = rows.map_err(|e| self.err(e))?;
        rows.sort();
        Ok(rows)
    }

    /// True when no job is waiting or running.
    pub fn queue_idle(&self) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM jobs WHERE state IN ('waiting', 'running'))",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Daemon `runner` takes the oldest waiting job whose destination no
    /// running job has, in one IMMEDIATE transaction: two daemons never take
    /// the same job, and two jobs to one destination never run at once.
    pub fn claim_job(&mut self, runner: &str) -> Result<Option<Job>> {
        let path = self.path().to_path_buf();
        let sql = |e| Error::sqlite(&path, e);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM jobs w
                 WHERE w.state = 'waiting' AND w.cancel = 0
                   AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running' AND r.dest = w.dest)
                 ORDER BY w.id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        let Some(id) = id else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE jobs SET state = 'running', runner = ?2, attempts = attempts + 1,
                 started_at = COALESCE(started_at, ?3), beat_at = ?3,
                 done_bytes = NULL, total_bytes = NULL, exit_code = NULL, message = NULL
             WHERE id = ?1",
            params![id, runner, now_unix()],
        )
        .map_err(sql)?;
        let sql_text = format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = ?1");
        let job = tx.query_row(&sql_text, [id], job_from_row).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Some(job))
    }

    /// Gives back the jobs of daemons that died: `alive(runner)` is asked,
    /// inside an IMMEDIATE transaction, for every other daemon that holds a
    /// running job: `Some(true)` alive, `Some(false)` dead, `None` unknown
    /// (its lock file is gone), which counts as dead only for the jobs it
    /// has not reported on for [`SILENT_SECS`]. The jobs of a dead daemon
    /// wait again (to be resumed), are cancelled when a cancel was asked, or
    /// fail after [`MAX_LOST`] deaths. Returns the ids given back, and the
    /// runners found dead.
    pub fn reclaim_jobs(
        &mut self,
        me: &str,
        alive: &mut dyn FnMut(&str) -> Option<bool>,
    ) -> Result<(Vec<i64>, Vec<String>)> {
        let path = self.path().to_path_buf();
        let sql = |e| Error::sqlite(&path, e);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let runners: Vec<Option<String>> = {
            let mut stmt = tx
                .prepare("SELECT DISTINCT runner FROM jobs WHERE state = 'running'")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(sql)?
                .collect::<rusqlite::Result<Vec<_>>>();
            rows.map_err(sql)?
        };
        let mut ids = Vec::new();
        let mut dead = Vec::new();
        for runner in runners {
            let now = now_unix();
            // Jobs whose daemon reported on them after this are left alone.
            let silent_since = match runner.as_deref() {
                Some(r) if r == me => continue,
                Some(r) => match alive(r) {
                    Some(true) => continue,
                    Some(false) => i64::MAX,
                    None => now - SILENT_SECS,
                },
                None => i64::MAX,
            };
            let mut stmt = tx
                .prepare(
                    "UPDATE jobs SET
                         lost = lost + 1,
                         state = CASE WHEN cancel != 0 THEN 'cancelled'
                                      WHEN lost + 1 >= ?2 THEN 'failed'
                                      ELSE 'waiting' END,
                         finished_at = CASE WHEN cancel != 0 OR lost + 1 >= ?2 THEN ?3 END,
                         exit_code = CASE WHEN cancel = 0 AND lost + 1 >= ?2 THEN 3 END,
                         message = CASE
                             WHEN cancel != 0 THEN 'cancelled; its daemon had died while running it, so the '
                                 || 'hidden .sdar-partial data beside the destination may remain: delete it, '
                                 || 'or restore again with --resume'
                             WHEN lost + 1 >= ?2 THEN 'its daemon died while running it ' || (lost + 1) || ' times: given up'
                             ELSE 'its daemon died while running it; it resumes when a daemon runs again' END,
                         runner = NULL
                     WHERE state = 'running' AND runner IS ?1
                       AND (beat_at IS NULL OR beat_at < ?4)
                     RETURNING id",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![runner, MAX_LOST, now, silent_since], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(sql)?
                .collect::<rusqlite::Result<Vec<_>>>();
            let rows = rows.map_err(sql)?;
            if let (false, Some(r)) = (rows.is_empty(), &runner) {
                dead.push(r.clone());
            }
            ids.extend(rows);
        }
        tx.commit().map_err(sql)?;
        ids.sort_unstable();
        Ok((ids, dead))
    }

    /// Records a running job's progress; returns whether a cancel was asked
    /// for it, or `None` when it is no longer this daemon's to run.
    pub fn job_progress(
        &self,
        id: i64,
        runner: &str,
        done: u64,
        total: u64,
    ) -> Result<Option<bool>> {
        self.conn()
            .query_row(
                "UPDATE jobs SET done_bytes = ?3, total_bytes = ?4, beat_at = ?5
                 WHERE id = ?1 AND runner = ?2 AND state = 'running'
                 RETURNING cancel",
                params![id, runner, done as i64, total as i64, now_unix()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|c| c.map(|c| c != 0))
            .map_err(|e| self.err(e))
    }

    /// Records how daemon `runner`'s run of job `id` ended, with its last
    /// progress (`done` of `total` bytes). False when the job was no longer
    /// its own (nothing is changed then).
    pub fn end_job(
        &self,
        id: i64,
        runner: &str,
        end: &JobEnd,
        (done, total): (u64, u64),
    ) -> Result<bool> {
        let now = now_unix();
        let (state, code, message, finished) = match end {
            JobEnd::Done { message } => ("done", Some(0), message, Some(now)),
            JobEnd::Failed { exit_code, message } => {
                ("failed", Some(*exit_code as i64), message, Some(now))
            }
            JobEnd::Cancelled { message } => ("cancelled", None, message, Some(now)),
            JobEnd::Stopped { message } => ("waiting", None, message, None),
        };
        let n = self
            .conn()
            .execute(
                "UPDATE jobs SET state = ?3, exit_code = ?4, message = ?5, finished_at = ?6,
                     runner = NULL,
                     done_bytes = CASE WHEN ?8 > 0 THEN ?7 ELSE done_bytes END,
                     total_bytes = CASE WHEN ?8 > 0 THEN ?8 ELSE total_bytes END
                 WHERE id = ?1 AND runner = ?2 AND state = 'running'",
                params![
                    id,
                    runner,
                    state,
                    code,
                    message,
                    finished,
                    done as i64,
                    total as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }
}

fn no_job(id: i64, catalog: &std::path::Path) -> Error {
    Error::Usage(format!(
        "no job {id} in the queue of {} (sdar queue list shows them)",
        catalog.display()
    ))
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

    fn job(dest: &str) -> NewJob {
        NewJob {
            archive: "/b/x.sdar".into(),
            dest: dest.into(),
            args: vec!["--to".into(), dest.into()],
            submitted_by: "test".into(),
            ..NewJob::default()
        }
    }

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        (dir, c)
    }

    #[test]
    fn one_destination_runs_one_job_at_a_time() {
        let (_d, mut c) = catalog();
        let a = c.submit(&job("/r/a.vmdk")).unwrap();
        let a2 = c.submit(&job("/r/a.vmdk")).unwrap();
        let b = c.submit(&job("/r/b.vmdk")).unwrap();
        assert_eq!(c.claim_job("d1").unwrap().unwrap().id, a);
        // a2 waits for a: the next job claimed is b, then nothing.
        assert_eq!(c.claim_job("d2").unwrap().unwrap().id, b);
        assert!(c.claim_job("d2").unwrap().is_none());
        let done = JobEnd::Done {
            message: "ok".into(),
        };
        assert!(
            !c.end_job(a, "d2", &done, (1, 1)).unwrap(),
            "only its runner ends a job"
        );
        assert!(c.end_job(a, "d1", &done, (1, 1)).unwrap());
        let next = c.claim_job("d2").unwrap().unwrap();
        assert_eq!((next.id, next.attempts), (a2, 1));
        assert!(!c.queue_idle().unwrap());
    }

    #[test]
    fn dead_daemons_give_their_jobs_back() {
        let (_d, mut c) = catalog();
        let a = c.submit(&job("/r/a.vmdk")).unwrap();
        let b = c.submit(&job("/r/b.vmdk")).unwrap();
        c.claim_job("dead").unwrap();
        c.claim_job("alive").unwrap();
        let (ids, dead) = c.reclaim_jobs("me", &mut |r| Some(r == "alive")).unwrap();
        assert_eq!((ids, dead), (vec![a], vec!["dead".to_string()]));
        let again = c.claim_job("me").unwrap().unwrap();
        assert_eq!((again.id, again.attempts, again.lost), (a, 2, 1));
        assert_eq!(c.job(b).unwrap().runner.as_deref(), Some("alive"));
        // A job whose daemons keep dying is given up.
        for _ in 1..MAX_LOST {
            c.reclaim_jobs("other", &mut |r| Some(r != "me")).unwrap();
            c.claim_job("me").unwrap();
        }
        let j = c.job(a).unwrap();
        assert_eq!((j.state, j.exit_code), (JobState::Failed, Some(3)), "{j:?}");
        // A daemon whose life cannot be told keeps a job it reports on.
        let (ids, _) = c.reclaim_jobs("me", &mut |_| None).unwrap();
        assert!(ids.is_empty());
        c.conn()
            .execute("UPDATE jobs SET beat_at = beat_at - 60", [])
            .unwrap();
        let (ids, _) = c.reclaim_jobs("me", &mut |_| None).unwrap();
        assert_eq!(ids, vec![b]);
    }

    #[test]
    fn cancel_and_purge() {
        let (_d, mut c) = catalog();
        let a = c.submit(&job("/r/a.vmdk")).unwrap();
        let b = c.submit(&job("/r/b.vmdk")).unwrap();
        let w = c.submit(&job("/r/c.vmdk")).unwrap();
        c.claim_job("d").unwrap();
        assert_eq!(c.cancel_job(a).unwrap(), CancelOutcome::Requested);
        assert_eq!(c.job_progress(a, "d", 5, 10).unwrap(), Some(true));
        assert_eq!(c.job_progress(a, "x", 5, 10).unwrap(), None);
        assert_eq!(c.cancel_job(b).unwrap(), CancelOutcome::Cancelled);
        assert_eq!(
            c.cancel_job(b).unwrap(),
            CancelOutcome::AlreadyFinished(JobState::Cancelled)
        );
        assert!(c.cancel_job(99).unwrap_err().is_usage());
        // Purging never touches the running or the waiting.
        let purged: Vec<i64> = c
            .purge_jobs(None)
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(purged, vec![b]);
        assert!(c.job(a).is_ok() && c.job(w).is_ok());
        let end = JobEnd::Cancelled {
            message: "x".into(),
        };
        assert!(c.end_job(a, "d", &end, (0, 0)).unwrap());
        assert!(c.purge_jobs(Some(now_unix() - 86_400)).unwrap().is_empty());
        assert_eq!(c.purge_jobs(None).unwrap().len(), 1);
    }
}
