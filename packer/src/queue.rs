//! `sdar queue`: submit restores to the background queue, and watch them.
//!
//! The queue is the `jobs` table of the catalog (`sdar_catalog::queue`);
//! `sdar daemon` runs what waits in it. A job is checked when it is
//! submitted, with the archive's own argument parser, so that a bad option
//! is refused now (exit 2) and not found by a daemon hours later.

use crate::catalog::{error, CatalogArgs};
use crate::output::print;
use crate::progress::human;
use crate::UsageError;
use archive_format::display::{escape, is_unsafe_char};
use clap::{Args, Subcommand};
use sdar_catalog::queue::{CancelOutcome, Job, JobState, NewJob};
use sdar_catalog::time::show;
use sdar_stub::args::{self, FullSource, RestoreArgs};
use sdar_stub::Command;
use serde_json::json;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Queue a restore: `sdar queue submit ARCHIVE --to DEST [restore
    /// options]` or `sdar queue submit --vm NAME [--uuid U] [--disk NAME]
    /// [--date DATE | --days-old N] --to DEST [restore options]`
    Submit(SubmitArgs),
    /// The jobs: waiting, running (with progress), done, failed
    List(ListArgs),
    /// A job's log
    Log(LogArgs),
    /// Cancel a waiting or running job
    Cancel(CancelArgs),
    /// Forget finished jobs (and their logs)
    Purge(PurgeArgs),
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Print the job as JSON instead of text (also when given among the
    /// restore's options)
    #[arg(long)]
    pub json: bool,
    /// ARCHIVE or --vm NAME ..., then --to DEST and the restore's own options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    pub id: i64,
    /// Keep printing as the job goes on, until it ends; then exit 0 when it
    /// was restored, with its exit code when it failed (1 integrity, 2
    /// usage, 3 other), 3 when it was cancelled
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    pub id: i64,
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Only jobs that ended more than this many days ago [default: every
    /// finished job]
    #[arg(long, value_name = "DAYS")]
    pub older_than: Option<u32>,
}

pub fn run(args: QueueArgs) -> anyhow::Result<()> {
    match args.command {
        QueueCommand::Submit(a) => run_submit(a),
        QueueCommand::List(a) => run_list(a),
        QueueCommand::Log(a) => run_log(a),
        QueueCommand::Cancel(a) => run_cancel(a),
        QueueCommand::Purge(a) => run_purge(a),
    }
}

/// A job queued by [`submit`].
#[derive(Debug)]
pub struct Submitted {
    pub id: i64,
    pub job: NewJob,
    pub vm_name: Option<String>,
    pub disk_name: Option<String>,
}

/// Queues the restore `args` describe (what follows `sdar queue submit`:
/// `ARCHIVE ARGS...` or `--vm NAME ... ARGS...`), recorded as submitted by
/// this user through `program`. The arguments are checked with the
/// archive's own parser and the archive is opened: what a daemon would
/// refuse is refused now. `catalog` is where the job goes (a `--catalog`
/// among `args` chooses the backup's catalog only when `catalog` names
/// none).
pub fn submit(
    args: &[OsString],
    catalog: &CatalogArgs,
    program: &str,
    quiet: bool,
) -> anyhow::Result<Submitted> {
    let mut args = args.to_vec();
    let mut catalog = catalog.clone();
    match &catalog.catalog {
        // `sdar queue submit --catalog C --vm X`: one catalog for both.
        Some(c) => {
            if !args
                .iter()
                .any(|a| a == "--catalog" || a.to_string_lossy().starts_with("--catalog="))
            {
                args.push("--catalog".into());
                args.push(c.clone().into());
            }
        }
        // `sdar queue submit X.sdar --to D --catalog C`: the job goes to C.
        None => catalog.catalog = catalog_among(&args),
    }
    let resolved = crate::restore::resolve(&args, quiet)?;
    let (archive, runtime_args, restore) = checked_args(&resolved.archive, &resolved.args)?;
    // A job whose archive is missing or is no delta fails now, not later.
    let delta = sdar_stub::open_delta(&archive).map_err(|f| match f {
        sdar_stub::Failure::Format(e) => anyhow::Error::new(e),
        sdar_stub::Failure::Usage(m) => anyhow::Error::new(UsageError(m)),
        f => anyhow::anyhow!("{f}"),
    })?;
    let meta = delta.meta();
    let vm_name = meta.vm_name.clone();
    let disk_name = meta.disk_name.clone();
    let job = NewJob {
        archive,
        full: match &restore.full {
            FullSource::Path(p) => Some(p.clone()),
            _ => None,
        },
        dest: restore.to.clone(),
        args: runtime_args,
        submitted_by: submitted_by(program),
        restored_log: None,
        // The daemon restores only this backup (the archive's file may be
        // replaced before it runs).
        backup_identity: Some(delta.identity()),
    };
    let cat = catalog.open_only()?;
    if let Some(m) = crate::daemon::folder::queue_own(cat.path(), &job.dest) {
        return Err(anyhow::Error::new(UsageError(m)));
    }
    let id = cat.submit(&job).map_err(error)?;
    cat.describe_job(id, vm_name.as_deref(), disk_name.as_deref())
        .map_err(error)?;
    Ok(Submitted {
        id,
        job,
        vm_name,
        disk_name,
    })
}

/// The value of `--catalog FILE` (or `--catalog=FILE`) among `args`.
fn catalog_among(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--catalog" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.to_str().and_then(|t| t.strip_prefix("--catalog=")) {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The restore's arguments checked by the archive's own parser, and
/// written again with every path absolute (a daemon runs in another
/// folder): the archive, the arguments, and what they say.
fn checked_args(
    archive: &Path,
    given: &[OsString],
) -> anyhow::Result<(PathBuf, Vec<OsString>, RestoreArgs)> {
    let program = OsString::from("sdar queue submit");
    let argv = crate::restore::runtime_argv(&program, archive, given);
    let usage = |msg: String| anyhow::Error::new(UsageError(msg));
    let inv = args::parse(&argv).map_err(|m| {
        usage(format!(
            "{m}\n(the restore options are the archive's own: see sdar restore ARCHIVE --help)"
        ))
    })?;
    let restore = match inv.command {
        Command::Restore(r) => r,
        // The words are `restore` and nothing else, or the parser refused
        // (help is answered before).
        _ => return Err(usage("sdar queue submit queues a restore".into())),
    };
    let archive = absolute(inv.archive.as_deref().unwrap_or(archive))?;
    // Every path from the root: the daemon does not run in this folder.
    let mut restore = restore;
    restore.to = absolute(&restore.to)?;
    refuse_destination(&restore.to, restore.force)?;
    restore.full = match restore.full {
        FullSource::Search => FullSource::Search,
        FullSource::Path(p) => FullSource::Path(absolute(&p)?),
        FullSource::Stdin => {
            return Err(usage(
                "a queued restore cannot read its full from standard input (--full -): \
                 give --full PATH, or let the full be found"
                    .into(),
            ))
        }
    };
    restore.vmx_dir = restore.vmx_dir.map(|d| absolute(&d)).transpose()?;
    restore.key = restore.key.map(|k| absolute(&k)).transpose()?;
    restore.json = false;
    let mut out = restore.to_args();
    if inv.threads != 0 {
        out.push("--threads".into());
        out.push(inv.threads.to_string().into());
    }
    Ok((archive, out, restore))
}

/// What the restore refuses at once, refused at submission instead of
/// failing the job hours later: a backup as the destination (never, not
/// with --force), a block device without --force. Links are followed, as
/// the restore follows them. A FIFO, socket or character device is no
/// place for a disk.
fn refuse_destination(to: &Path, force: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(to) else {
        return Ok(());
    };
    let shown = archive_format::display::escape_lines(&to.display().to_string());
    if meta.file_type().is_block_device() && !force {
        return Err(UsageError(format!(
            "{shown} is a block device: restoring overwrites it; add --force to write the disk to it"
        ))
        .into());
    }
    let t = meta.file_type();
    if t.is_char_device() || t.is_fifo() || t.is_socket() {
        return Err(UsageError(format!(
            "{shown} is not a file, a folder or a block device: a disk cannot be restored there"
        ))
        .into());
    }
    if meta.is_file() {
        if let Ok((_, kind)) = archive_format::container::open_classified(to) {
            if kind.is_backup() {
                return Err(UsageError(format!(
                    "{shown} holds an sdar backup; backups are never overwritten, not even with --force"
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// `p` from the root: a daemon does not run in this folder. Links are
/// left as they are (the restore follows them, and says so).
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// `alice via sdar queue submit`: who asked (the user of this process's
/// real uid), and through what.
pub fn submitted_by(program: &str) -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    format!("{user} via {program}")
}

fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes
    // only into `pwd` and `buf` (of the length given) and sets `result`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if r != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

fn run_submit(a: SubmitArgs) -> anyhow::Result<()> {
    if a.args.iter().any(|x| x == "-h" || x == "--help") {
        return print(&format!(
            "sdar queue submit ARCHIVE --to DEST [options] queues a restore with the archive's own options:\n\n{}",
            args::usage(std::ffi::OsStr::new("ARCHIVE"))
        ));
    }
    // `--json` after the archive is this command's too: a queued restore
    // prints no summary of its own.
    let json = a.json || a.args.iter().any(|x| x == "--json");
    let args: Vec<OsString> = a.args.into_iter().filter(|x| x != "--json").collect();
    let s = submit(&args, &a.catalog, "sdar queue submit", json)?;
    if json {
        let doc = json!({
            "id": s.id,
            "state": "waiting",
            "archive": s.job.archive.to_string_lossy(),
            "full": s.job.full.as_ref().map(|f| f.to_string_lossy()),
            "destination": s.job.dest.to_string_lossy(),
            "vm_name": s.vm_name,
            "disk_name": s.disk_name,
            "submitted_by": s.job.submitted_by,
        });
        return print(&(crate::info::terminal_safe_json(&doc.to_string()) + "\n"));
    }
    print(&format!("queued job {}\n", s.id))?;
    eprintln!(
        "sdar: job {}: {} {} -> {} (sdar daemon runs it; sdar queue log {} --follow shows it)",
        s.id,
        shown_opt(s.vm_name.as_deref()),
        shown_path(&s.job.archive),
        shown_path(&s.job.dest),
        s.id
    );
    Ok(())
}

fn shown_path(p: &Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

fn shown_opt(s: Option<&str>) -> String {
    s.map_or("-".into(), |s| escape(s).into_owned())
}

/// `12.00 MiB of 64.00 MiB (18%)`.
fn progress_text(j: &Job) -> Option<String> {
    let (done, total) = (j.done_bytes?, j.total_bytes?);
    Some(format!(
        "{} of {} ({}%)",
        human(done),
        human(total),
        percent(done, total)
    ))
}

fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (done as u128 * 100 / total as u128) as u64
    }
}

fn run_list(a: ListArgs) -> anyhow::Result<()> {
    let catalog = a.catalog.open_only()?;
    let jobs = catalog.jobs().map_err(error)?;
    if a.json {
        let doc: Vec<_> = jobs.iter().map(job_json).collect();
        let text = serde_json::to_string_pretty(&doc)?;
        return print(&(crate::info::terminal_safe_json(&text) + "\n"));
    }
    if jobs.is_empty() {
        eprintln!("sdar: the queue is empty");
        return Ok(());
    }
    let mut out = String::new();
    for j in &jobs {
        out += &job_text(j);
    }
    print(&out)
}

/// A job in `sdar queue list`: one line of state, then where from and to.
fn job_text(j: &Job) -> String {
    let state = match (j.state, j.cancel) {
        (JobState::Running, true) => "running (cancel asked)".to_string(),
        (s, _) => s.name().to_string(),
    };
    let mut head = format!("job {}  {state}", j.id);
    if j.state == JobState::Running {
        head += &format!(
            "  {}",
            progress_text(j).unwrap_or_else(|| "starting".into())
        );
        // A daemon reports every second: silence means it is stuck or
        // died (the next daemon to start resumes the job).
        let silent = j.beat_at.map(|b| sdar_catalog::now_unix() - b);
        if let Some(s) = silent.filter(|s| *s >= 10) {
            head += &format!("  (no word from its daemon for {s} s)");
        }
    }
    if let Some(code) = j.exit_code {
        head += &format!("  exit {code}");
    }
    let mut t = head + "\n";
    t += &format!(
        "    submitted {} UTC by {}\n",
        show(j.submitted_at),
        escape(&j.submitted_by)
    );
    t += &format!(
        "    VM {}  disk {}\n",
        shown_opt(j.vm_name.as_deref()),
        shown_opt(j.disk_name.as_deref())
    );
    t += &format!("    archive {}\n", shown_path(&j.archive));
    t += &format!("    to      {}\n", shown_path(&j.dest));
    if let Some(started) = j.started_at {
        let mut line = format!("    started {} UTC", show(started));
        if let Some(f) = j.finished_at.filter(|_| j.state.is_finished()) {
            line += &format!(", ended {} UTC", show(f));
        }
        if j.attempts > 1 {
            line += &format!(" ({} runs)", j.attempts);
        }
        t += &(line + "\n");
    }
    if let Some(m) = &j.message {
        // The first line: the log has the rest.
        let first = m.lines().next().unwrap_or("");
        t += &format!("    {}\n", escape(first));
    }
    t
}

fn job_json(j: &Job) -> serde_json::Value {
    let lossy = |p: &Path| p.to_string_lossy().into_owned();
    json!({
        "id": j.id,
        "state": j.state.name(),
        "cancel_requested": j.cancel,
        "vm_name": j.vm_name,
        "disk_name": j.disk_name,
        "archive": lossy(&j.archive),
        "full": j.full.as_deref().map(lossy),
        "destination": lossy(&j.dest),
        "args": j.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "submitted_by": j.submitted_by,
        "submitted_at": j.submitted_at,
        "started_at": j.started_at,
        "finished_at": j.finished_at,
        "runner": j.runner,
        "runs": j.attempts,
        "done_bytes": j.done_bytes,
        "total_bytes": j.total_bytes,
        "percent": j.done_bytes.zip(j.total_bytes).map(|(d, t)| percent(d, t)),
        "exit_code": j.exit_code,
        "message": j.message,
        "log": j.log.as_deref().map(lossy),
    })
}

/// The exit code `sdar queue log --follow` ends with for a job that ended.
fn follow_code(j: &Job) -> u8 {
    match j.state {
        JobState::Done => 0,
        JobState::Failed => j
            .exit_code
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| *c != 0)
            .unwrap_or(sdar_stub::EXIT_OTHER),
        _ => sdar_stub::EXIT_OTHER,
    }
}

fn run_log(a: LogArgs) -> anyhow::Result<()> {
    let catalog = a.catalog.open_only()?;
    let mut job = catalog.job(a.id).map_err(error)?;
    let mut reader: Option<LogReader> = None;
    let mut told_dead: Option<String> = None;
    loop {
        if reader.is_none() {
            if let Some(path) = &job.log {
                reader = LogReader::open(path)?;
            }
        }
        if let Some(r) = &mut reader {
            r.copy_new(false)?;
        }
        if !a.follow {
            if reader.is_none() {
                eprintln!(
                    "sdar: job {} is {}: it has no log yet",
                    job.id,
                    job.state.name()
                );
            }
            return Ok(());
        }
        if job.state.is_finished() {
            // What was written between the last read and the end.
            if let Some(r) = &mut reader {
                r.copy_new(true)?;
            } else if let Some(m) = &job.message {
                print(&(escape(m).into_owned() + "\n"))?;
            }
            return match follow_code(&job) {
                0 => Ok(()),
                code => Err(anyhow::Error::new(crate::RuntimeExit(code))),
            };
        }
        // A job whose daemon was killed stays running until another
        // daemon takes it back: say so once, and follow on.
        if job.state == JobState::Running && told_dead.as_ref() != job.runner.as_ref() {
            if let Some(runner) = &job.runner {
                if crate::daemon::folder::daemon_died(catalog.path(), runner) {
                    eprintln!(
                        "sdar: job {}: its daemon {} died; the job resumes when a daemon runs \
                         (sdar daemon), and this log follows it",
                        job.id,
                        escape(runner)
                    );
                    told_dead = job.runner.clone();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        job = catalog.job(a.id).map_err(error)?;
    }
}

/// A job's log read as it grows: whole lines only, until the end.
struct LogReader {
    file: std::fs::File,
    pending: Vec<u8>,
}

impl LogReader {
    /// `None` when the daemon has not created it yet.
    fn open(path: &Path) -> anyhow::Result<Option<LogReader>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("{}: cannot open the job's log: {e}", path.display()),
        };
        let meta = file
            .metadata()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            anyhow::bail!("{}: the job's log is not a regular file", path.display());
        }
        Ok(Some(LogReader {
            file,
            pending: Vec::new(),
        }))
    }

    /// Prints what was added since the last call; the last partial line
    /// too when `all`.
    fn copy_new(&mut self, all: bool) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        self.pending.extend_from_slice(&buf);
        let cut = if all {
            self.pending.len()
        } else {
            self.pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if cut > 0 {
            let text: Vec<u8> = self.pending.drain(..cut).collect();
            print(&terminal_safe(&String::from_utf8_lossy(&text)))?;
        }
        // The file position stays where reading stopped: the daemon
        // appends, and the next call reads what it added.
        Ok(())
    }
}

/// The log as the daemon wrote it (its names already escaped), with any
/// control character that is there anyway made visible: line breaks stay.
fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && is_unsafe_char(c) {
            out.push_str(&escape(&c.to_string()));
        } else {
            out.push(c);
        }
    }
    out
}

fn run_cancel(a: CancelArgs) -> anyhow::Result<()> {
    let mut catalog = a.catalog.open_only()?;
    match catalog.cancel_job(a.id).map_err(error)? {
        CancelOutcome::Cancelled => {
            print(&format!("job {}: cancelled\n", a.id))?;
        }
        CancelOutcome::Requested => {
            print(&format!(
                "job {}: cancel requested: its daemon stops it within a few seconds \
                 (sdar queue log {} --follow shows when)\n",
                a.id, a.id
            ))?;
        }
        CancelOutcome::AlreadyFinished(s) => {
            return Err(UsageError(format!(
                "job {} has already ended ({}): there is nothing to cancel",
                a.id,
                s.name()
            ))
            .into())
        }
    }
    Ok(())
}

fn run_purge(a: PurgeArgs) -> anyhow::Result<()> {
    let catalog = a.catalog.open_only()?;
    let before = a
        .older_than
        .map(|d| sdar_catalog::now_unix() - i64::from(d) * 86_400);
    let purged = catalog.purge_jobs(before).map_err(error)?;
    let mut failed = 0;
    for (id, log) in &purged {
        let Some(log) = log else { continue };
        // Removing a name never follows a link: a planted one is removed,
        // not what it points to.
        match std::fs::remove_file(log) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                failed += 1;
                eprintln!(
                    "sdar: warning: job {id}: cannot remove its log {}: {e}",
                    shown_path(log)
                );
            }
        }
    }
    print(&format!(
        "purged {} finished job(s){}\n",
        purged.len(),
        if failed > 0 {
            format!(" ({failed} log(s) could not be removed)")
        } else {
            String::new()
        }
    ))
}
