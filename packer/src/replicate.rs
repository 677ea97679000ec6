//! `sdar replicate`: mass restore and simple replication from esXpress's
//! `vmdks.auto` config.
//!
//! A pass reads the config, re-indexes (stale targets, and the config's
//! `TARGET=` folders), chooses the backup of every `RESTORE:` line, passes
//! over those in the restored log and those whose destination has a job
//! waiting or running, and submits the rest to the restore queue. The
//! daemon appends each restored backup to the restored log when its job is
//! done. Without `--once` the config is registered, so that `sdar daemon`
//! runs a pass every `--replicate-every`; with `--once` the pass runs its
//! jobs to the end (`sdar daemon --until-idle`) and exits 0 when every
//! backup was restored, 1 on an integrity failure, 3 otherwise.

use crate::catalog::{error, CatalogArgs};
use crate::{RuntimeExit, UsageError};
use archive_format::display::escape_lines;
use clap::Args;
use sdar_catalog::queue::NewJob;
use sdar_catalog::replicate::config::Config;
use sdar_catalog::replicate::log::Restored;
use sdar_catalog::replicate::{self as rep, Decision};
use sdar_catalog::{now_unix, Catalog, Filter, Kind};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// The config, in esXpress's vmdks.auto format
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The backups already restored, one per line [default: CONFIG.restored
    /// beside the config]
    #[arg(long, value_name = "FILE")]
    pub restored_log: Option<PathBuf>,
    /// One pass now, waiting for its restores to end (for cron); the config
    /// is not registered
    #[arg(long, conflicts_with_all = ["preload", "unregister"])]
    pub once: bool,
    /// Append a commented-out RESTORE: line for every disk in the catalog
    /// that the config does not name yet (to RESTORE_PATH/VM/DISK.vmdk)
    #[arg(long, conflicts_with = "unregister")]
    pub preload: bool,
    /// Stop `sdar daemon` running this config (nothing else is done)
    #[arg(long)]
    pub unregister: bool,
}

/// Exit code of `--once` when a restore failed its integrity checks.
const EXIT_INTEGRITY: u8 = crate::EXIT_INTEGRITY;
const EXIT_OTHER: u8 = 3;

pub fn run(args: ReplicateArgs) -> anyhow::Result<()> {
    let config_path = absolute(&args.config)?;
    if args.unregister {
        let catalog = args.catalog.open_only()?;
        if !catalog
            .unregister_replication(&config_path)
            .map_err(error)?
        {
            return Err(UsageError(format!(
                "{} is not registered for replication in the catalog {}",
                shown(&config_path),
                shown(catalog.path())
            ))
            .into());
        }
        println!(
            "sdar: {} is no longer replicated by sdar daemon (the restored log and the replicas are kept)",
            shown(&config_path)
        );
        return Ok(());
    }
    let config = Config::read(&config_path).map_err(error)?;
    for (line, key) in &config.ignored {
        eprintln!(
            "sdar: {}:{line}: {} is not a setting sdar uses; ignored",
            shown(&config_path),
            escape_lines(key)
        );
    }
    if args.preload {
        let catalog = open(&args.catalog, &config)?;
        return preload(&catalog, &config);
    }
    let log = match &args.restored_log {
        Some(p) => absolute(p)?,
        None => {
            let mut p = config_path.clone().into_os_string();
            p.push(".restored");
            PathBuf::from(p)
        }
    };
    // The log is appended to: the config itself (or the catalog) as its
    // log would be written into.
    let same = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        a == b || id(a).is_some_and(|i| Some(i) == id(b))
    };
    let catalog_path = args.catalog.path().ok();
    if same(&log, &config_path) || catalog_path.as_deref().is_some_and(|c| same(&log, c)) {
        return Err(UsageError(format!(
            "--restored-log {}: the restored log cannot be the config or the catalog (it is \
             written to)",
            shown(&log)
        ))
        .into());
    }
    // Refused (a link, a FIFO) before anything is done.
    Restored::read(&log).map_err(error)?;
    let catalog = open(&args.catalog, &config)?;
    let by = format!("{} via sdar replicate", user());
    let pass = pass(&catalog, &config, &log, &by)?;
    if !args.once {
        let new = catalog
            .register_replication(&config_path, &log, &user())
            .map_err(error)?;
        println!(
            "sdar: {}: {}; sdar daemon runs it every --replicate-every (sdar replicate --config FILE --unregister stops that)",
            shown(&config_path),
            if new { "registered" } else { "still registered" }
        );
        return pass.result(&config_path);
    }
    once(&catalog, &pass, &config_path, &log)
}

/// Opens the catalog (re-indexing stale targets) and indexes the config's
/// own targets.
fn open(args: &CatalogArgs, config: &Config) -> anyhow::Result<Catalog> {
    let mut catalog = args.open(false)?;
    index_targets(&mut catalog, config)?;
    Ok(catalog)
}

/// Indexes the config's `TARGET=` folders (only what is new or changed in
/// them is read).
fn index_targets(catalog: &mut Catalog, config: &Config) -> anyhow::Result<()> {
    if config.targets.is_empty() {
        return Ok(());
    }
    let opts = sdar_catalog::IndexOptions { reread: false };
    let report = catalog.index(&config.targets, &opts).map_err(error)?;
    for (t, why) in &report.unavailable {
        eprintln!(
            "sdar: warning: TARGET {} cannot be read ({}); what was found there before is kept",
            shown(t),
            escape_lines(why)
        );
    }
    Ok(())
}

/// What a pass did.
struct Pass {
    /// Lines in the config.
    lines: usize,
    /// Jobs submitted: (job, identity, archive, destination, config line).
    submitted: Vec<(i64, archive_format::Hash, PathBuf, PathBuf, usize)>,
    up_to_date: usize,
    /// Lines whose destination has a job already.
    queued: usize,
    /// Those jobs: (job, destination, config line). `--once` waits for
    /// them too and says how they ended.
    waited: Vec<(i64, PathBuf, usize)>,
    /// Lines that chose no backup.
    misses: usize,
    /// Damaged or foreign files in the catalog's targets: a line's newest
    /// backup may be among them, unseen.
    problems: usize,
}

impl Pass {
    fn summary(&self) -> String {
        format!(
            "{} line(s): {} submitted, {} up to date, {} already queued, {} chose no backup{}",
            self.lines,
            self.submitted.len(),
            self.up_to_date,
            self.queued,
            self.misses,
            match self.problems {
                0 => String::new(),
                n => format!("; {n} damaged or foreign file(s) in the targets"),
            }
        )
    }

    fn result(&self, config: &Path) -> anyhow::Result<()> {
        if self.problems > 0 {
            return Err(RuntimeExit(EXIT_INTEGRITY).into());
        }
        if self.misses > 0 {
            anyhow::bail!(
                "{}: {} of {} line(s) chose no backup (see above); the others were done",
                shown(config),
                self.misses,
                self.lines
            );
        }
        Ok(())
    }
}

/// One pass over `config`: decides every line and submits what is to be
/// restored, saying so line by line (stdout) and reporting the lines that
/// chose nothing (stderr).
fn pass(catalog: &Catalog, config: &Config, log: &Path, by: &str) -> anyhow::Result<Pass> {
    let restored = Restored::read(log).map_err(error)?;
    for (line, why) in &restored.unreadable {
        eprintln!(
            "sdar: warning: {}:{line}: not a restored backup ({why}); ignored",
            shown(log)
        );
    }
    let decisions = rep::plan(catalog, config, &restored, now_unix()).map_err(error)?;
    // A backup that does not open is in no line's choice: the line goes on
    // with the backup before it, and the admin must hear of it.
    let problems = catalog.problems().map_err(error)?;
    for p in problems.iter().take(10) {
        eprintln!(
            "sdar: warning: {} {}: {}; a newer backup of a line may be this one: the line \
             used the newest backup that opens",
            p.kind.name(),
            shown(&p.path),
            escape_lines(&p.what)
        );
    }
    if problems.len() > 10 {
        eprintln!(
            "sdar: warning: {} more damaged or foreign files: `sdar list` names them",
            problems.len() - 10
        );
    }
    let mut pass = Pass {
        lines: decisions.len(),
        submitted: Vec::new(),
        up_to_date: 0,
        queued: 0,
        waited: Vec::new(),
        misses: 0,
        problems: problems.len(),
    };
    let at = |n: usize| format!("{}:{n}", shown(&config.path));
    for (line, decision) in decisions {
        let (planned, status) = match decision {
            Decision::Miss(m) => {
                pass.misses += 1;
                eprintln!("sdar: {}: {}", at(line.number), escape_lines(&m.0));
                continue;
            }
            Decision::UpToDate(p) => {
                pass.up_to_date += 1;
                (p, "up to date (in the restored log)".to_string())
            }
            Decision::Queued(p, id) => {
                pass.queued += 1;
                pass.waited.push((id, p.dest.clone(), line.number));
                (p, format!("job {id} for this path is waiting or running"))
            }
            Decision::Restore(p) => match submit(catalog, &p, &config.path, log, by) {
                Ok(Submitted::Pending(id)) => {
                    pass.queued += 1;
                    pass.waited.push((id, p.dest.clone(), line.number));
                    (p, format!("job {id} for this path is waiting or running"))
                }
                Ok(Submitted::New(id)) => {
                    let d = &p.choice.delta;
                    pass.submitted.push((
                        id,
                        d.identity,
                        d.path.clone(),
                        p.dest.clone(),
                        line.number,
                    ));
                    (p, format!("submitted as job {id}"))
                }
                Err(why) => {
                    pass.misses += 1;
                    eprintln!("sdar: {}: {}", at(line.number), escape_lines(&why));
                    continue;
                }
            },
        };
        let d = &planned.choice.delta;
        // Each name escaped on its own: a line break in one stays on this
        // line, as `\n`.
        let esc = |t: &str| archive_format::display::escape(t).into_owned();
        println!(
            "{}: {} {} {} {} {} -> {}: {status}",
            at(line.number),
            esc(d.vm_text()),
            esc(d.scsi_id.as_deref().unwrap_or("-")),
            esc(d.disk_name.as_deref().unwrap_or("-")),
            d.created_text(),
            shown(&d.path),
            shown(&planned.dest)
        );
    }
    println!("sdar: {}: {}", shown(&config.path), pass.summary());
    Ok(pass)
}

/// Checks the destination, creates its folder, and queues the restore.
/// `Err` is a sentence about this line (the pass goes on).
fn submit(
    catalog: &Catalog,
    p: &rep::matching::Planned,
    config: &Path,
    log: &Path,
    by: &str,
) -> Result<Submitted, String> {
    use std::os::unix::fs::FileTypeExt;
    let dest = &p.dest;
    // A slip of the pen in Complete_Restore_Path must not put a disk in
    // place of the files replication itself needs (the config was replaced
    // by the disk before).
    let mut own = vec![
        (config.to_path_buf(), "the replication config"),
        (log.to_path_buf(), "its restored log"),
    ];
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = catalog.path().as_os_str().to_owned();
        p.push(suffix);
        own.push((PathBuf::from(p), "the catalog"));
    }
    let id = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
    };
    let dest_id = id(dest);
    if let Some((_, what)) = own
        .iter()
        .find(|(p, _)| p == dest || (dest_id.is_some() && id(p) == dest_id))
    {
        return Err(format!(
            "{} is {what}: a replica there would destroy it; give the disk another path",
            dest.display()
        ));
    }
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            return Err(format!(
                "{} is a folder: end the path with / to restore the disk into it \
                 under its own name",
                dest.display()
            ))
        }
        Ok(m) if m.file_type().is_block_device() || m.file_type().is_char_device() => {
            return Err(format!(
                "{} is a device: replication restores to files, so that the previous replica \
                 stays usable until the new one is complete (a device is written in place)",
                dest.display()
            ))
        }
        Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => {
            return Err(format!(
                "{} is a FIFO or socket, not a disk",
                dest.display()
            ))
        }
        _ => {}
    }
    if let Some(folder) = dest.parent() {
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("cannot create the folder {}: {e}", folder.display()))?;
    }
    let full = &p.choice.full.path;
    let mut args: Vec<OsString> = vec!["--to".into(), dest.clone().into(), "--force".into()];
    if p.raw {
        args.push("--raw".into());
    }
    args.push("--full".into());
    args.push(full.clone().into());
    let job = NewJob {
        archive: p.choice.delta.path.clone(),
        full: Some(full.clone()),
        dest: dest.clone(),
        args,
        submitted_by: by.to_string(),
        restored_log: Some(log.to_path_buf()),
        backup_identity: Some(p.choice.delta.identity),
    };
    match catalog.submit_replica(&job) {
        Ok(Ok(id)) => Ok(Submitted::New(id)),
        Ok(Err(id)) => Ok(Submitted::Pending(id)),
        Err(e) => Err(format!("cannot queue the restore: {e}")),
    }
}

/// What became of a restore to submit.
enum Submitted {
    New(i64),
    /// Another pass queued a job for the destination meanwhile.
    Pending(i64),
}

/// `--once`: runs the queue to the end with `sdar daemon --until-idle
/// --replicate-every off` on the same catalog (every waiting job runs, the
/// registered configs do not), then says how each submitted job ended.
fn once(catalog: &Catalog, pass: &Pass, config: &Path, log: &Path) -> anyhow::Result<()> {
    let mut daemon_code = None;
    if !pass.submitted.is_empty() || pass.queued > 0 {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find this sdar to run the queue: {e}"))?;
        let mut command = std::process::Command::new(exe);
        command
            .arg("daemon")
            .arg("--until-idle")
            // This pass only: not the registered configs' too.
            .args(["--replicate-every", "off"])
            .arg("--catalog")
            .arg(catalog.path());
        // Killed (even with SIGKILL), this pass takes its daemon along: it
        // gets SIGTERM, puts its job back in the queue with the blocks
        // written so far, and the next pass resumes it. (It used to go on
        // alone, an orphan writing after the command was killed.)
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe, and the closure
        // touches nothing else of this process.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("sdar replicate --once ended"));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start sdar daemon --until-idle: {e}"))?;
        let mut child = Child(child);
        let status = child
            .0
            .wait()
            .map_err(|e| anyhow::anyhow!("sdar daemon --until-idle: {e}"))?;
        daemon_code = Some(status.code().unwrap_or(-1));
    }
    let (mut restored, mut integrity, mut other) = (0, 0, 0);
    // The jobs this pass queued, then those another pass had queued for
    // its lines (a `--once` killed, or one from cron meanwhile): how they
    // ended counts too (it used to be "0 of 0 restore(s) done", exit 0,
    // whatever became of them).
    let jobs = pass
        .submitted
        .iter()
        .map(|(id, identity, archive, dest, line)| (*id, Some((identity, archive)), dest, *line))
        .chain(
            pass.waited
                .iter()
                .map(|(id, dest, line)| (*id, None, dest, *line)),
        );
    for (id, mine, dest, line) in jobs {
        let at = format!("{}:{line}: job {id}", shown(config));
        match catalog.job_end(id).map_err(error)? {
            Some(end) if end.state == "done" => {
                // The daemon records it; again here is harmless (the log
                // keeps one line per backup and destination).
                if let Some((identity, archive)) = mine {
                    rep::record_restored(log, identity, archive, dest).map_err(error)?;
                }
                restored += 1;
            }
            Some(end) if end.state == "failed" && end.exit_code == Some(1) => {
                integrity += 1;
                eprintln!(
                    "sdar: {at}: integrity failure: {}; the previous replica at {} is unchanged",
                    escape_lines(end.message.as_deref().unwrap_or("see `sdar queue log`")),
                    shown(dest)
                );
            }
            Some(end) => {
                other += 1;
                let why = match (end.state.as_str(), daemon_code) {
                    ("waiting" | "running", Some(c)) if c != 0 => {
                        format!("was not run (sdar daemon --until-idle exited with code {c})")
                    }
                    ("waiting" | "running", _) => "was not run to its end".to_string(),
                    (state, _) => format!(
                        "{state}: {}",
                        end.message.as_deref().unwrap_or("see `sdar queue log`")
                    ),
                };
                eprintln!("sdar: {at}: {}", escape_lines(&why));
            }
            None => {
                other += 1;
                eprintln!("sdar: {at}: the job is gone from the queue (purged)");
            }
        }
    }
    println!(
        "sdar: {}: {restored} of {} restore(s) done, {integrity} integrity failure(s), {other} other failure(s), {} line(s) chose no backup, {} damaged or foreign file(s) in the targets",
        shown(config),
        pass.submitted.len() + pass.waited.len(),
        pass.misses,
        pass.problems
    );
    if integrity > 0 || pass.problems > 0 {
        return Err(RuntimeExit(EXIT_INTEGRITY).into());
    }
    if other > 0 || pass.misses > 0 {
        return Err(RuntimeExit(EXIT_OTHER).into());
    }
    Ok(())
}

/// A child process killed if this one leaves before it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `--preload`: appends a commented-out line for every disk not named.
fn preload(catalog: &Catalog, config: &Config) -> anyhow::Result<()> {
    let deltas = catalog
        .backups(&Filter {
            kind: Some(Kind::Delta),
            ..Filter::default()
        })
        .map_err(error)?;
    let p = rep::preload::preload(config, &deltas).map_err(error)?;
    for s in &p.skipped {
        eprintln!("sdar: warning: {s}");
    }
    if p.lines.is_empty() {
        println!(
            "sdar: {}: every disk in the catalog is named in it already",
            shown(&config.path)
        );
        return Ok(());
    }
    let mut text = format!(
        "# sdar replicate --preload, {}: remove the # of a disk to replicate it\n",
        sdar_catalog::time::show(now_unix())
    );
    for l in &p.lines {
        text.push_str(l);
    }
    rep::preload::append(&config.path, &text, config).map_err(error)?;
    println!(
        "sdar: {}: {} commented-out RESTORE: line(s) appended",
        shown(&config.path),
        p.lines.len()
    );
    Ok(())
}

/// Runs one pass of every config registered with the catalog (`sdar daemon`
/// calls it every `--replicate-every`): submits only. A config that cannot
/// be read, or lines that choose no backup, are reported on standard error
/// and in the registration's last status; the other configs still run. An
/// error is returned only when the catalog itself fails.
pub fn run_registered(catalog: &CatalogArgs) -> anyhow::Result<()> {
    let mut cat = catalog.open(false)?;
    for reg in cat.registered_replications().map_err(error)? {
        let status = match registered_pass(&mut cat, &reg) {
            Ok(p) => p.summary(),
            Err(e) => {
                let text = format!("{e:#}");
                eprintln!(
                    "sdar: replication of {}: {}",
                    shown(&reg.config),
                    escape_lines(&text)
                );
                format!("failed: {text}")
            }
        };
        cat.record_replication_run(reg.id, &status).map_err(error)?;
    }
    Ok(())
}

fn registered_pass(catalog: &mut Catalog, reg: &rep::Registered) -> anyhow::Result<Pass> {
    let config = Config::read(&reg.config).map_err(error)?;
    index_targets(catalog, &config)?;
    let by = format!(
        "{} via sdar daemon (replication of {})",
        reg.registered_by,
        reg.config.display()
    );
    pass(catalog, &config, &reg.restored_log, &by)
}

/// `path` made absolute against the current folder (not resolved: a link
/// stays the link the user named).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| anyhow::Error::new(UsageError(format!("{}: {e}", shown(path)))))
}

fn shown(path: &Path) -> String {
    archive_format::display::escape(&path.display().to_string()).into_owned()
}

/// Who runs this: the user's name, else the user id.
fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && !u.chars().any(char::is_control))
        // getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}
