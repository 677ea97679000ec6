//! One queued restore, run in its own thread with the library's restore
//! job (through the runtime's front end, as `sdar restore` runs it), its
//! story written to the job's log.

use archive_format::display::{escape_lines, shell_word};
use archive_format::job::PreparedRestore;
use archive_format::restore::RestoreProgress;
use archive_format::target::mark::{MarkRecord, MarkStage, MARK_LEN};
use archive_format::{hex, Cancel, Hash};
use sdar_catalog::queue::{Job, JobEnd};
use sdar_stub::args::{self, ProgressMode, RestoreArgs};
use sdar_stub::front::RestoreFront;
use sdar_stub::report::{progress_line, summary};
use sdar_stub::{Command, Failure, Invocation};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a job's cancel handle was set.
const WHY_NONE: u8 = 0;
/// `sdar queue cancel`: the job ends cancelled, its partial data removed.
const WHY_CANCEL: u8 = 1;
/// The daemon stops: the job waits again, its data kept for `--resume`.
const WHY_STOP: u8 = 2;

/// What the daemon's name for itself is in a job's arguments and log.
const PROGRAM: &str = "sdar daemon";

/// A job running in its thread.
pub struct RunningJob {
    pub id: i64,
    cancel: Cancel,
    why: Arc<AtomicU8>,
    progress: Arc<Mutex<(u64, u64)>>,
    thread: JoinHandle<JobEnd>,
}

impl RunningJob {
    /// Starts `job` (claimed by daemon `runner`), writing to `log`; `ended`
    /// is sent its id when it ends, however it ends.
    pub fn start(
        job: Job,
        log: File,
        runner: String,
        max_rate: Option<u64>,
        ended: mpsc::Sender<super::Event>,
    ) -> std::io::Result<RunningJob> {
        let cancel = Cancel::new();
        let why = Arc::new(AtomicU8::new(WHY_NONE));
        let progress = Arc::new(Mutex::new((0, 0)));
        let id = job.id;
        let (c, w, p) = (cancel.clone(), why.clone(), progress.clone());
        let thread = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let _tell = Tell { ended };
                let mut run = Run {
                    job,
                    log: JobLog::new(log),
                    runner,
                    cancel: c,
                    why: w,
                    shared: p,
                    max_rate,
                };
                run.run()
            })?;
        Ok(RunningJob {
            id,
            cancel,
            why,
            progress,
            thread,
        })
    }

    /// Bytes done and in all, so far.
    pub fn progress(&self) -> (u64, u64) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `sdar queue cancel`: stop at the next block, and remove what it wrote.
    pub fn cancel(&self) {
        let _ = self
            .why
            .compare_exchange(WHY_NONE, WHY_CANCEL, Ordering::SeqCst, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// The daemon stops: stop at the next block, keeping what was written
    /// for the next daemon to resume.
    pub fn stop(&self) {
        let _ = self
            .why
            .compare_exchange(WHY_NONE, WHY_STOP, Ordering::SeqCst, Ordering::SeqCst);
        self.cancel.cancel();
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// How it ended (a panic is a failure, not the daemon's end).
    pub fn join(self) -> JobEnd {
        self.thread.join().unwrap_or_else(|_| JobEnd::Failed {
            exit_code: sdar_stub::EXIT_OTHER,
            message: "internal error: the job's thread panicked (see the daemon's output)".into(),
        })
    }
}

/// Wakes the daemon when the job's thread ends, even by a panic.
struct Tell {
    ended: mpsc::Sender<super::Event>,
}

impl Drop for Tell {
    fn drop(&mut self) {
        let _ = self.ended.send(super::Event::JobEnded);
    }
}

/// A job's log: one line per event, stamped, names escaped.
struct JobLog {
    file: File,
    failed: bool,
}

impl JobLog {
    fn new(file: File) -> Self {
        JobLog {
            file,
            failed: false,
        }
    }

    fn line(&mut self, text: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = sdar_catalog::time::show(now.as_secs() as i64);
        let mut out = String::new();
        for l in escape_lines(text).lines() {
            out += &format!("{stamp}.{:03} {l}\n", now.subsec_millis());
        }
        // A log that cannot be written does not stop the restore; the
        // daemon's own output says so once.
        if let Err(e) = self.file.write_all(out.as_bytes()) {
            if !self.failed {
                self.failed = true;
                eprintln!("sdar daemon: warning: cannot write a job's log: {e}");
            }
        }
    }
}

struct Run {
    job: Job,
    log: JobLog,
    runner: String,
    cancel: Cancel,
    why: Arc<AtomicU8>,
    shared: Arc<Mutex<(u64, u64)>>,
    max_rate: Option<u64>,
}

impl Run {
    fn run(&mut self) -> JobEnd {
        let j = &self.job;
        let id = j.id;
        self.log.line(&format!(
            "job {id}: run {} by daemon {}: restore {} to {}",
            j.attempts,
            self.runner,
            j.archive.display(),
            j.dest.display()
        ));
        let mut argv = crate::restore::runtime_argv(PROGRAM.as_ref(), &j.archive, &j.args);
        // A job that ran before continues what that run wrote: the
        // runtime's --resume reads back and proves every block of it.
        let again = j.attempts > 1 && !j.args.iter().any(|a| a == "--resume");
        if again {
            argv.push("--resume".into());
        }
        let words: Vec<String> = argv[4..]
            .iter()
            .map(|a| shell_word(&a.to_string_lossy()))
            .collect();
        self.log.line(&format!(
            "job {id}: submitted by {} at {} UTC; options: {}",
            j.submitted_by,
            sdar_catalog::time::show(j.submitted_at),
            words.join(" ")
        ));
        if again {
            self.log.line(&format!(
                "job {id}: it ran before (run {} of it stopped): --resume continues what was written",
                j.attempts - 1
            ));
        }
        let end = match args::parse(&argv) {
            Ok(Invocation {
                command: Command::Restore(restore),
                archive,
                program,
                threads,
                ..
            }) => {
                // The front says nothing itself: its story goes to the log.
                let inv = Invocation {
                    archive: archive.clone(),
                    program,
                    command: Command::Restore(restore.clone()),
                    threads,
                    progress: ProgressMode::None,
                    quiet: true,
                };
                let archive = archive.unwrap_or_else(|| self.job.archive.clone());
                self.restore(&archive, &restore, &inv)
            }
            // Checked when it was submitted: only a queue written by
            // another program gets here.
            Ok(_) => JobEnd::Failed {
                exit_code: sdar_stub::EXIT_USAGE,
                message: "the job's arguments are not a restore's".into(),
            },
            Err(m) => JobEnd::Failed {
                exit_code: sdar_stub::EXIT_USAGE,
                message: format!("the job's arguments are refused: {m}"),
            },
        };
        let line = match &end {
            JobEnd::Done { message } => format!("job {id}: done (exit 0): {message}"),
            JobEnd::Failed { exit_code, message } => {
                format!("job {id}: failed (exit {exit_code}): {message}")
            }
            JobEnd::Cancelled { message } => format!("job {id}: {message}"),
            JobEnd::Stopped { message } => format!("job {id}: stopped: {message}"),
        };
        self.log.line(&line);
        end
    }

    fn restore(&mut self, archive: &Path, args: &RestoreArgs, inv: &Invocation) -> JobEnd {
        let id = self.job.id;
        let started = Instant::now();
        let mut front = RestoreFront::new(archive, args, inv);
        let delta = match sdar_stub::open_delta(archive) {
            Ok(delta) => delta,
            Err(f) => return self.failed(f, None),
        };
        // The archive at that path now must be the backup submitted: one
        // replaced since (moved, renamed over) would restore another disk.
        if let Some(message) = self.not_submitted(archive, &delta.identity()) {
            return JobEnd::Failed {
                exit_code: sdar_stub::EXIT_INTEGRITY,
                message,
            };
        }
        let prepared = front
            .request()
            .and_then(|request| front.prepared(PreparedRestore::prepare_with(delta, request)));
        let job = match prepared {
            Ok(job) => job,
            Err(f) => {
                // A daemon killed after the restore ended but before the
                // job was recorded done leaves the finished disk: the run
                // again finds it in the way. It is done when the disk is
                // proven to be the backup's, block by block.
                if self.job.attempts > 1 {
                    if let Some(end) = self.finished_before(archive) {
                        return end;
                    }
                }
                return self.failed(f, None);
            }
        };
        if let Some(full) = &front.log.full {
            self.log.line(&format!("job {id}: full {}", full.display()));
        }
        if job.resumed() {
            self.log.line(&format!(
                "job {id}: resuming the interrupted restore in {}: blocks already written are read back and checked",
                job.partial_path().display()
            ));
        }
        let destination = job.destination().to_path_buf();
        let mut steps = ProgressSteps::new();
        let shared = self.shared.clone();
        let (max_rate, cancel) = (self.max_rate, self.cancel.clone());
        let log = &mut self.log;
        let outcome = job.run(
            &mut |p| {
                front.progress(p);
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = (p.done, p.image_size);
                if steps.due(p) {
                    let secs = started.elapsed().as_secs_f64();
                    log.line(&format!("job {id}: {}", progress_line(p, secs)));
                }
                if let Some(rate) = max_rate {
                    pace(p.done + p.checked, rate, started, &cancel);
                }
            },
            &self.cancel,
        );
        let result = front.finish(outcome);
        let l = &front.log;
        let progress = l.progress.clone();
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) =
            (progress.done, progress.image_size);
        match result {
            Ok(()) => {
                let disk = l.descriptor.as_ref().or(l.data_file.as_ref());
                let place = disk.map_or(destination.clone(), |d| d.clone());
                let identity = l.identity.unwrap_or_default();
                let message = format!(
                    "restored {} (every block verified, identity {})",
                    place.display(),
                    hex(&identity)
                );
                self.log.line(&format!("job {id}: {message}"));
                self.log
                    .line(&format!("job {id}: {}", summary(&progress, l.secs)));
                if let Some(vmx) = &l.vmx {
                    self.log.line(&format!("job {id}: wrote {}", vmx.display()));
                }
                let warning = self.record_restored(&identity);
                JobEnd::Done {
                    message: message + &warning,
                }
            }
            Err(f) => {
                let partial = front.log.partial_kept.clone();
                self.failed(f, partial.map(|p| (destination, p)))
            }
        }
    }

    /// Why the archive (of identity `identity`) is not the backup the job
    /// was submitted for, if it is not. Jobs queued before the identity was
    /// recorded have none to compare.
    fn not_submitted(&self, archive: &Path, identity: &Hash) -> Option<String> {
        let submitted = self.job.backup_identity?;
        (submitted != *identity).then(|| {
            format!(
                "{}: not the backup this job was submitted for (its identity is {}, the job's {}): \
                 it was replaced since; nothing was written (submit the job again to restore it)",
                archive.display(),
                hex(identity),
                hex(&submitted)
            )
        })
    }

    /// `Done` when an earlier run of this job restored its destination in
    /// full (no restore mark is left beside it, and its disk has the
    /// backup's identity: every block hashed); `None` otherwise.
    fn finished_before(&mut self, archive: &Path) -> Option<JobEnd> {
        let dest = self.job.dest.clone();
        if archive_format::target::mark_path(&dest)
            .symlink_metadata()
            .is_ok()
        {
            return None;
        }
        let delta = sdar_stub::open_delta(archive).ok()?;
        let header = delta.header();
        let (size, block) = (header.image_size, header.block_size);
        let expected = delta.identity();
        drop(delta);
        if self.not_submitted(archive, &expected).is_some() {
            return None;
        }
        let mut source = archive_format::DiskSource::open(&dest).ok()?;
        if source.size != size || block == 0 {
            return None;
        }
        self.log.line(&format!(
            "job {}: {} is there: an earlier run may have finished it; checking it against the backup",
            self.job.id,
            dest.display()
        ));
        let mut reader = source.reader();
        let mut hasher = archive_format::IdentityHasher::new(size, block);
        let mut buf = vec![0u8; block as usize];
        let mut offset = 0u64;
        while offset < size {
            if self.cancel.is_cancelled() {
                return None;
            }
            let len = (size - offset).min(block as u64) as usize;
            let mut got = 0;
            while got < len {
                match archive_format::DiskBytes::fill_at(
                    &mut reader,
                    offset + got as u64,
                    &mut buf[got..len],
                ) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => got += n,
                }
            }
            hasher.update(&archive_format::block_hash(&buf[..len]));
            offset += len as u64;
        }
        if hasher.finalize() != expected {
            self.log.line(&format!(
                "job {}: {} is not the backup's disk",
                self.job.id,
                dest.display()
            ));
            return None;
        }
        let message = format!(
            "restored {} by an earlier run of this job (its daemon died before recording it): \
             every block proven now, identity {}",
            dest.display(),
            hex(&expected)
        );
        self.log.line(&format!("job {}: {message}", self.job.id));
        let warning = self.record_restored(&expected);
        Some(JobEnd::Done {
            message: message + &warning,
        })
    }

    /// How a failed run ends: cancelled, stopped or failed. `partial` is the
    /// destination and the data kept for `--resume`, if any.
    fn failed(&mut self, f: Failure, partial: Option<(PathBuf, PathBuf)>) -> JobEnd {
        let why = self.why.load(Ordering::SeqCst);
        if why != WHY_NONE && is_cancel(&f) {
            if why == WHY_STOP {
                return JobEnd::Stopped {
                    message: "the daemon stopped; the blocks written so far are kept, and the \
                              next daemon resumes it (--resume proves them)"
                        .into(),
                };
            }
            let what = match partial {
                Some((dest, data)) => match remove_partial(&dest, &data) {
                    Ok(()) => format!("the partial data {} was removed", data.display()),
                    Err(why) => format!(
                        "the partial data {} was kept ({why}): it is no usable disk; delete it, \
                         or restore again with --resume",
                        data.display()
                    ),
                },
                None => "nothing usable was left at the destination".into(),
            };
            return JobEnd::Cancelled {
                message: format!("cancelled while running; {what}"),
            };
        }
        let code = f.exit_code();
        JobEnd::Failed {
            exit_code: code,
            message: f.to_string(),
        }
    }

    /// Replication: tells the restored log, when the job was submitted for
    /// one; a warning to add to the outcome when it cannot.
    fn record_restored(&mut self, identity: &Hash) -> String {
        let Some(restored_log) = self.job.restored_log.clone() else {
            return String::new();
        };
        let backup = self.job.backup_identity.unwrap_or(*identity);
        match sdar_catalog::replicate::record_restored(
            &restored_log,
            &backup,
            &self.job.archive,
            &self.job.dest,
        ) {
            Ok(()) => {
                self.log.line(&format!(
                    "job {}: recorded in {}",
                    self.job.id,
                    restored_log.display()
                ));
                String::new()
            }
            Err(e) => {
                let w = format!(
                    "; warning: cannot record it in {}: {e}",
                    restored_log.display()
                );
                self.log.line(&format!("job {}: {}", self.job.id, &w[2..]));
                w
            }
        }
    }
}

/// When a progress line goes to the log: at every tenth of the image (at
/// most one a second), and at least once a minute.
struct ProgressSteps {
    last: Instant,
    step: u64,
}

impl ProgressSteps {
    fn new() -> Self {
        ProgressSteps {
            last: Instant::now(),
            step: 0,
        }
    }

    fn due(&mut self, p: &RestoreProgress) -> bool {
        let done = if p.done == 0 { p.checked } else { p.done };
        let step = (done as u128 * 10 / p.image_size.max(1) as u128) as u64;
        let since = self.last.elapsed();
        let due = (step > self.step && since >= Duration::from_secs(1))
            || since >= Duration::from_secs(60);
        if due {
            self.step = step;
            self.last = Instant::now();
        }
        due
    }
}

/// Sleeps until `work` bytes at `rate` a second since `started` are due,
/// in short naps that a cancel ends.
fn pace(work: u64, rate: u64, started: Instant, cancel: &Cancel) {
    let due = Duration::from_secs_f64(work as f64 / rate as f64);
    while !cancel.is_cancelled() {
        let Some(left) = due.checked_sub(started.elapsed()) else {
            return;
        };
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// True when the failure is the job's cancel handle at work.
fn is_cancel(f: &Failure) -> bool {
    match f {
        Failure::Format(archive_format::Error::Cancelled) => true,
        Failure::Interrupted { cause, .. }
        | Failure::IncompleteDevice { cause, .. }
        | Failure::UnwrittenDevice { cause, .. } => is_cancel(cause),
        _ => false,
    }
}

/// Removes a cancelled job's partial data `data` and the restore mark of
/// `dest` that names it (SPEC.md §19.1), under the mark's lock: only what
/// this restore wrote, and only while no other restore to `dest` runs.
fn remove_partial(dest: &Path, data: &Path) -> Result<(), String> {
    use rustix::fs::FlockOperation;
    use std::os::unix::fs::OpenOptionsExt;
    let mark_path = archive_format::target::mark_path(dest);
    let mut mark = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&mark_path)
        .map_err(|e| format!("its restore mark {}: {e}", mark_path.display()))?;
    rustix::fs::flock(&mark, FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| format!("another restore to {} is running", dest.display()))?;
    let mut bytes = Vec::new();
    (&mut mark)
        .take(MARK_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", mark_path.display()))?;
    let record = MarkRecord::decode(&bytes)
        .filter(|r| r.stage == MarkStage::Writing)
        .ok_or("its restore mark does not name it")?;
    let mark_dev = mark.metadata().map_err(|e| e.to_string())?.dev();
    let meta = std::fs::symlink_metadata(data).map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.ino() != record.data_ino || meta.dev() != mark_dev {
        return Err("its restore mark names another file".into());
    }
    std::fs::remove_file(data).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&mark_path);
    Ok(())
}
