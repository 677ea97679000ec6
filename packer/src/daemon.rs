//! `sdar daemon`: runs the queued restores, N at a time, and replication.
//!
//! Jobs are claimed from the catalog in IMMEDIATE transactions (two daemons
//! never take one job, two jobs to one destination never run at once) and
//! run in threads with the library's restore job. The daemon holds a lock
//! file for its life (`folder.rs`); a daemon that finds a running job whose
//! daemon's lock is free gives it back to the queue, and the next run of it
//! resumes what was written (`--resume` proves every block of it). SIGTERM
//! or SIGINT stops the jobs at their next block, keeps what they wrote, and
//! puts them back in the queue; a second signal exits at once.

pub mod folder;
mod job;

use crate::catalog::{error, CatalogArgs};
use crate::UsageError;
use archive_format::display::escape_lines;
use clap::Args;
use folder::QueueFolder;
use job::RunningJob;
use sdar_catalog::queue::{Job, JobEnd};
use sdar_catalog::Catalog;
use std::cell::RefCell;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Restores run at once (each uses CPU and disk bandwidth; more than 4
    /// is warned about)
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Exit once no job is waiting or running (for scripts and tests)
    #[arg(long)]
    pub until_idle: bool,
    /// How often the registered replication configs run (`sdar replicate
    /// --config FILE` registers one): 30m, 1h, 1d, a number of seconds, or
    /// off
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub replicate_every: String,
    /// Each restore reads and writes at most this many bytes a second
    /// (500K, 50M, 1G), leaving bandwidth to the virtual machines [default:
    /// no limit]
    #[arg(long, value_name = "RATE")]
    pub max_rate: Option<String>,
}

/// What wakes the daemon's loop.
pub enum Event {
    Signal(i32),
    JobEnded,
}

/// How often the loop looks at the queue when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);
/// Progress into the catalog, and cancels read from it.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Waiting jobs looked for while slots are free.
const CLAIM_EVERY: Duration = Duration::from_millis(500);
/// Jobs of dead daemons looked for.
const RECLAIM_EVERY: Duration = Duration::from_secs(2);
/// Failed tries in a row to take a job (one each `CLAIM_EVERY`, each after
/// the catalog's own minute of waiting when it is busy) that end the daemon.
const MAX_CLAIM_FAILURES: u32 = 20;

pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    if args.jobs == 0 {
        return Err(UsageError("--jobs takes 1 or more".into()).into());
    }
    let replicate_every = parse_duration(&args.replicate_every).map_err(UsageError)?;
    let max_rate = args
        .max_rate
        .as_deref()
        .map(parse_rate)
        .transpose()
        .map_err(UsageError)?;
    if args.jobs > 4 {
        eprintln!(
            "sdar daemon: warning: --jobs {}: every restore uses CPU and disk bandwidth; \
             more than 4 at once is seldom faster",
            args.jobs
        );
    }
    // Before any thread starts: every thread inherits the mask, and the
    // signal thread alone takes SIGINT and SIGTERM.
    let signals = crate::signals::block();
    sdar_stub::ignore_file_size_signal();
    // Re-indexing is replication's business; --reindex asks for it now.
    let catalog = if args.catalog.reindex {
        args.catalog.open(false)?
    } else {
        args.catalog.open_only()?
    };
    let folder = QueueFolder::open(catalog.path())?;
    let lock = folder.lock()?;
    let (tx, rx) = mpsc::channel();
    crate::signals::forward(signals, "daemon-signals", tx.clone(), Event::Signal);
    eprintln!(
        "sdar daemon {}: running the queue of {}, {} job(s) at a time",
        lock.id,
        escape_lines(&catalog.path().display().to_string()),
        args.jobs
    );
    let mut d = Daemon {
        args,
        catalog,
        folder,
        me: lock.id.clone(),
        tx,
        running: Vec::new(),
        ends: Vec::new(),
        replicating: None,
        last_warning: RefCell::new(None),
        claim_failures: 0,
        fatal: None,
        max_rate,
    };
    let code = d.run(&rx, replicate_every);
    drop(lock);
    code
}

struct Daemon {
    args: DaemonArgs,
    catalog: Catalog,
    folder: QueueFolder,
    me: String,
    tx: mpsc::Sender<Event>,
    running: Vec<RunningJob>,
    /// Jobs ended whose end is not recorded yet (the catalog was busy).
    ends: Vec<(i64, JobEnd, (u64, u64))>,
    replicating: Option<JoinHandle<()>>,
    /// Bytes a second each job may restore.
    max_rate: Option<u64>,
    last_warning: RefCell<Option<(String, Instant)>>,
    claim_failures: u32,
    /// Why the daemon must stop (its jobs are stopped first).
    fatal: Option<anyhow::Error>,
}

impl Daemon {
    fn run(
        &mut self,
        rx: &mpsc::Receiver<Event>,
        replicate_every: Option<Duration>,
    ) -> anyhow::Result<()> {
        let long_ago = Instant::now() - Duration::from_secs(3600);
        let (mut last_progress, mut last_claim, mut last_reclaim) = (long_ago, long_ago, long_ago);
        let mut next_replication = replicate_every.map(|_| Instant::now());
        let mut stopping = false;
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Event::Signal(sig)) if stopping => {
                    eprintln!(
                        "sdar daemon {}: signal {sig} again: exiting now; the next daemon resumes the jobs",
                        self.me
                    );
                    std::process::exit(i32::from(sdar_stub::EXIT_OTHER));
                }
                Ok(Event::Signal(sig)) => {
                    eprintln!(
                        "sdar daemon {}: signal {sig}: stopping {} job(s) at their next block; \
                         they resume when a daemon runs again",
                        self.me,
                        self.running.len()
                    );
                    stopping = true;
                    for j in &self.running {
                        j.stop();
                    }
                }
                Ok(Event::JobEnded) => last_claim = long_ago,
                Err(_) => {}
            }
            self.reap();
            self.record_ends();
            if self.fatal.is_some() && !stopping {
                stopping = true;
                for j in &self.running {
                    j.stop();
                }
            }
            if stopping {
                if self.running.is_empty() && self.ends.is_empty() {
                    return self.fatal.take().map_or(Ok(()), Err);
                }
                continue;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                self.report_progress();
            }
            if last_reclaim.elapsed() >= RECLAIM_EVERY {
                last_reclaim = Instant::now();
                self.reclaim();
            }
            if self.running.len() < self.args.jobs && last_claim.elapsed() >= CLAIM_EVERY {
                last_claim = Instant::now();
                self.claim();
            }
            if let (Some(at), Some(every)) = (next_replication, replicate_every) {
                if Instant::now() >= at && self.replicating.as_ref().is_none_or(|h| h.is_finished())
                {
                    next_replication = Some(Instant::now() + every);
                    self.replicate();
                }
            }
            if self.args.until_idle
                && self.running.is_empty()
                && self.ends.is_empty()
                && self.replicating.as_ref().is_none_or(|h| h.is_finished())
            {
                match self.catalog.queue_idle() {
                    Ok(true) => {
                        eprintln!(
                            "sdar daemon {}: no job is waiting or running: exiting",
                            self.me
                        );
                        return Ok(());
                    }
                    Ok(false) => {}
                    Err(e) => self.warn(&format!("cannot read the queue: {e}")),
                }
            }
        }
    }

    /// Says what went wrong on standard error; the same words again
    /// within a minute are not repeated.
    fn warn(&self, what: &str) {
        let mut last = self.last_warning.borrow_mut();
        if last
            .as_ref()
            .is_some_and(|(w, at)| w == what && at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        *last = Some((what.to_string(), Instant::now()));
        eprintln!("sdar daemon {}: warning: {}", self.me, escape_lines(what));
    }

    /// Takes waiting jobs while slots are free.
    fn claim(&mut self) {
        while self.running.len() < self.args.jobs {
            let job = match self.catalog.claim_job(&self.me) {
                Ok(Some(job)) => job,
                Ok(None) => {
                    self.claim_failures = 0;
                    return;
                }
                Err(e) => {
                    self.claim_failures += 1;
                    // A queue that stays unreadable (a catalog of another
                    // version, a broken file) ends the daemon, with an error
                    // for its supervisor, rather than a warning for ever.
                    if self.claim_failures >= MAX_CLAIM_FAILURES && self.fatal.is_none() {
                        self.fatal = Some(anyhow::anyhow!(
                            "the queue cannot be read ({} tries): {e}",
                            self.claim_failures
                        ));
                    }
                    return self.warn(&format!("cannot take a job from the queue: {e}"));
                }
            };
            self.claim_failures = 0;
            let id = job.id;
            if let Some(m) = folder::queue_own(self.catalog.path(), &job.dest) {
                let end = JobEnd::Failed {
                    exit_code: sdar_stub::EXIT_USAGE,
                    message: m,
                };
                self.ends.push((id, end, (0, 0)));
                continue;
            }
            let log = match self.open_log(&job) {
                Ok(log) => log,
                Err(e) => {
                    let end = JobEnd::Failed {
                        exit_code: sdar_stub::EXIT_OTHER,
                        message: format!("cannot create the job's log: {e:#}"),
                    };
                    self.ends.push((id, end, (0, 0)));
                    continue;
                }
            };
            eprintln!(
                "sdar daemon {}: job {id} started (run {}): {} -> {}",
                self.me,
                job.attempts,
                escape_lines(&job.archive.display().to_string()),
                escape_lines(&job.dest.display().to_string())
            );
            match RunningJob::start(job, log, self.me.clone(), self.max_rate, self.tx.clone()) {
                Ok(r) => self.running.push(r),
                Err(e) => self.ends.push((
                    id,
                    JobEnd::Stopped {
                        message: format!("the daemon cannot start a thread: {e}"),
                    },
                    (0, 0),
                )),
            }
        }
    }

    /// The job's log: the one of its earlier runs, else a new one.
    fn open_log(&self, job: &Job) -> anyhow::Result<std::fs::File> {
        if let Some(path) = &job.log {
            if let Some(f) = folder::reopen_log(path)? {
                return Ok(f);
            }
        }
        let (path, file) = self.folder.new_log(job.id)?;
        self.catalog.set_job_log(job.id, &path).map_err(error)?;
        Ok(file)
    }

    /// Collects the jobs whose threads ended.
    fn reap(&mut self) {
        let (done, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|j| j.is_finished());
        self.running = still;
        for j in done {
            let id = j.id;
            let progress = j.progress();
            let end = j.join();
            let text = match &end {
                JobEnd::Done { .. } => "done".to_string(),
                JobEnd::Failed { exit_code, message } => format!(
                    "failed (exit {exit_code}): {}",
                    message.lines().next().unwrap_or("")
                ),
                JobEnd::Cancelled { .. } => "cancelled".to_string(),
                JobEnd::Stopped { .. } => "stopped; it waits to be resumed".to_string(),
            };
            eprintln!("sdar daemon {}: job {id} {}", self.me, escape_lines(&text));
            self.ends.push((id, end, progress));
        }
    }

    /// Writes the ends collected; those the catalog refused now are tried
    /// again at the next turn.
    fn record_ends(&mut self) {
        let ends = std::mem::take(&mut self.ends);
        for (id, end, progress) in ends {
            match self.catalog.end_job(id, &self.me, &end, progress) {
                Ok(true) => {}
                Ok(false) => self.warn(&format!(
                    "job {id} was no longer this daemon's when it ended; its end is not recorded"
                )),
                Err(e) => {
                    self.warn(&format!("cannot record the end of job {id}: {e}"));
                    self.ends.push((id, end, progress));
                }
            }
        }
    }

    /// Progress into the catalog; cancels asked there passed on.
    fn report_progress(&mut self) {
        for j in &self.running {
            let (done, total) = j.progress();
            match self.catalog.job_progress(j.id, &self.me, done, total) {
                Ok(Some(true)) => j.cancel(),
                Ok(Some(false)) => {}
                Ok(None) => {
                    // Given to another daemon: this one must not go on.
                    self.warn(&format!(
                        "job {} is no longer this daemon's: stopping it",
                        j.id
                    ));
                    j.stop();
                }
                Err(e) => self.warn(&format!("cannot record the progress of job {}: {e}", j.id)),
            }
        }
    }

    /// Gives back the running jobs of daemons that died.
    fn reclaim(&mut self) {
        let folder = &self.folder;
        match self
            .catalog
            .reclaim_jobs(&self.me, &mut |runner| folder.daemon_alive(runner))
        {
            Ok((ids, dead)) if !ids.is_empty() => eprintln!(
                "sdar daemon {}: daemon(s) {} died running job(s) {}: back in the queue, to be resumed",
                self.me,
                escape_lines(&dead.join(", ")),
                ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Ok(_) => {}
            Err(e) => self.warn(&format!("cannot look for the jobs of dead daemons: {e}")),
        }
    }

    /// One pass of the registered replication configs, in its own thread:
    /// it indexes and submits, which may take a while.
    fn replicate(&mut self) {
        let catalog = CatalogArgs {
            catalog: Some(self.catalog.path().to_path_buf()),
            reindex: false,
        };
        let me = self.me.clone();
        let handle = std::thread::Builder::new()
            .name("replicate".into())
            .spawn(move || {
                if let Err(e) = crate::replicate::run_registered(&catalog) {
                    eprintln!(
                        "sdar daemon {me}: warning: replication: {}",
                        escape_lines(&format!("{e:#}"))
                    );
                }
            });
        match handle {
            Ok(h) => self.replicating = Some(h),
            Err(e) => self.warn(&format!("cannot start replication: {e}")),
        }
    }
}

/// `30m`, `1h`, `1d`, `90s`, `3600` (seconds); `off` or `0`: never.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(None);
    }
    let bad = || {
        format!("--replicate-every {text}: give a duration such as 30m, 1h, 1d, 90s or 3600 (seconds), or off")
    };
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Ok(None);
    }
    // A century at most: `Instant + every` past the clock's end panics.
    if secs > 100 * 366 * 86_400 {
        return Err(format!(
            "--replicate-every {text}: more than a century; give off to never replicate"
        ));
    }
    Ok(Some(Duration::from_secs(secs)))
}

/// `500K`, `50M`, `1G` (binary units), or bytes: a rate a second, at least
/// 64 KiB (one block).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad =
        || format!("--max-rate {text}: give bytes a second such as 500K, 50M or 1G (at least 64K)");
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let rate = n.checked_mul(1 << shift).ok_or_else(bad)?;
    if rate < 1 << 16 {
        return Err(bad());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let s = |n| Ok(Some(Duration::from_secs(n)));
        assert_eq!(parse_duration("30m"), s(1800));
        assert_eq!(parse_duration("1h"), s(3600));
        assert_eq!(parse_duration("1d"), s(86_400));
        assert_eq!(parse_duration("90s"), s(90));
        assert_eq!(parse_duration("3600"), s(3600));
        assert_eq!(parse_duration("off"), Ok(None));
        assert_eq!(parse_duration("0"), Ok(None));
        for bad in ["", "h", "1w", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("64K"), Ok(65_536));
        assert_eq!(parse_rate("50M"), Ok(50 << 20));
        assert_eq!(parse_rate("1g"), Ok(1 << 30));
        assert_eq!(parse_rate("100000"), Ok(100_000));
        for bad in ["", "M", "1K", "-5M", "1.5M", "99999999999G", "5T"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
