//! `sdar restore X.sdar [ARGS]`: the library's restore job, run in this
//! process. The arguments are the archive's own (its parser reads them) and
//! the runtime's front end tells the story, so that the command line, the
//! messages, the JSON and the exit codes are exactly the archive's.
//!
//! `sdar restore --vm NAME [--uuid U] [--disk NAME] [--date DATE |
//! --days-old N] --to DEST [ARGS]` first asks the catalog which delta that
//! means and which full it needs, then restores it the same way.

use crate::catalog::{error, CatalogArgs};
use crate::cli::RuntimeArgs;
use crate::UsageError;
use archive_format::job::PreparedRestore;
use archive_format::Cancel;
use sdar_catalog::time::parse_date;
use sdar_catalog::{Choice, Selection, When};
use sdar_stub::args::{self, RestoreArgs};
use sdar_stub::front::RestoreFront;
use sdar_stub::{Command, Failure, Invocation};
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// `sdar restore`'s arguments, split by [`resolve`].
#[derive(clap::Args, Debug)]
pub struct RestoreCliArgs {
    /// ARCHIVE (a .sdar) or --vm NAME [--uuid U] [--disk NAME] [--date DATE
    /// | --days-old N] [--catalog FILE], then the archive's own arguments
    /// (see `ARCHIVE --help`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<OsString>,
}

/// What the runtime's messages call this command.
const PROGRAM: &str = "sdar restore";

/// A restore's arguments with the catalog's choice made: the archive, and
/// the runtime's own arguments (with `--full` when the catalog chose it).
#[derive(Debug)]
pub struct Resolved {
    pub archive: std::path::PathBuf,
    pub args: Vec<OsString>,
    /// What the catalog chose, for `--vm`.
    pub choice: Option<Choice>,
}

/// The catalog's options among a restore's arguments, each `--flag VALUE`
/// or `--flag=VALUE` (`--reindex` alone).
const CATALOG_FLAGS: [&str; 8] = [
    "--vm",
    "--uuid",
    "--disk",
    "--scsi-id",
    "--date",
    "--days-old",
    "--catalog",
    "--reindex",
];

/// Splits `args` (what follows `sdar restore` or `sdar queue submit`):
/// `ARCHIVE ARGS...` as the archive takes them, or the catalog's options
/// (`--vm NAME ...`) anywhere among the archive's. With `--vm` the catalog
/// is opened (and re-indexed when stale) and chooses.
pub fn resolve(args: &[OsString], quiet: bool) -> anyhow::Result<Resolved> {
    let mut picked: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut rest: Vec<OsString> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let text = a.to_str().unwrap_or("");
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (text, None),
        };
        let Some(&known) = CATALOG_FLAGS.iter().find(|f| **f == flag) else {
            rest.push(a.clone());
            continue;
        };
        if known == "--reindex" {
            if inline.is_some() {
                return Err(UsageError("--reindex takes no value".into()).into());
            }
            picked.push((known, None));
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .and_then(|v| v.to_str())
                .map(str::to_string)
                .ok_or_else(|| UsageError(format!("{known} needs a value")))?,
        };
        if value.is_empty() {
            return Err(UsageError(format!("{known} needs a value, not an empty string")).into());
        }
        if picked.iter().any(|(f, _)| *f == known) {
            return Err(UsageError(format!("{known} is given twice")).into());
        }
        picked.push((known, Some(value)));
    }
    let get = |f: &str| {
        picked
            .iter()
            .find(|(k, _)| *k == f)
            .and_then(|(_, v)| v.clone())
    };
    let Some(vm) = get("--vm") else {
        if let Some((f, _)) = picked.iter().find(|(f, _)| *f != "--catalog") {
            return Err(UsageError(format!(
                "{f} chooses a backup with --vm NAME: give --vm too"
            ))
            .into());
        }
        let Some(first) = rest
            .first()
            .filter(|a| !a.to_string_lossy().starts_with('-'))
        else {
            return Err(UsageError(
                "give the delta archive (sdar restore X.sdar --to DEST) or a VM from the catalog \
                 (sdar restore --vm NAME --to DEST)"
                    .into(),
            )
            .into());
        };
        return Ok(Resolved {
            archive: first.into(),
            args: rest[1..].to_vec(),
            choice: None,
        });
    };
    if let Some(a) = rest
        .first()
        .filter(|a| !a.to_string_lossy().starts_with('-'))
    {
        return Err(UsageError(format!(
            "give either an archive ({}) or --vm, not both",
            a.to_string_lossy()
        ))
        .into());
    }
    let when = match (get("--date"), get("--days-old")) {
        (Some(_), Some(_)) => {
            return Err(UsageError("give --date or --days-old, not both".into()).into())
        }
        (Some(d), None) => When::On(parse_date(&d).map_err(UsageError)?),
        (None, Some(n)) => When::DaysOld(
            n.parse()
                .map_err(|_| UsageError(format!("--days-old {n}: give a whole number of days")))?,
        ),
        (None, None) => When::Newest,
    };
    let selection = Selection {
        vm,
        uuid: get("--uuid"),
        disk: get("--disk"),
        scsi_id: get("--scsi-id"),
        when,
    };
    let cat = CatalogArgs {
        catalog: get("--catalog").map(Into::into),
        reindex: picked.iter().any(|(f, _)| *f == "--reindex"),
    };
    let catalog = cat.open(quiet)?;
    let choice = catalog.select(&selection).map_err(error)?;
    // The catalog may be older than the share: the file at that path must
    // still be the backup chosen, or another backup would be restored.
    // (One that does not open is left to the restore, which says why.)
    let now = sdar_stub::open_delta(&choice.delta.path).map(|d| d.identity());
    if now.is_ok_and(|id| id != choice.delta.identity) {
        anyhow::bail!(
            "{}: this file changed since it was indexed (it is another backup now); \
             run again with --reindex",
            choice.delta.path.display()
        );
    }
    let mut args = rest;
    // A full given on the command line wins; the catalog's is by identity.
    if !args
        .iter()
        .any(|a| a == "--full" || a.to_string_lossy().starts_with("--full="))
    {
        args.push("--full".into());
        args.push(choice.full.path.clone().into());
    }
    Ok(Resolved {
        archive: choice.delta.path.clone(),
        args,
        choice: Some(choice),
    })
}

pub fn run(a: &RestoreCliArgs) -> anyhow::Result<()> {
    let quiet = a
        .args
        .iter()
        .any(|x| x == "-q" || x == "--quiet" || x == "--json");
    let resolved = resolve(&a.args, quiet)?;
    if let (Some(c), false) = (&resolved.choice, quiet) {
        let line = format!(
            "sdar: {} {} {} of {}: {} (full {})",
            c.delta.created_text(),
            c.delta.scsi_id.as_deref().unwrap_or("-"),
            c.delta.disk_name.as_deref().unwrap_or("-"),
            c.delta.vm_text(),
            c.delta.path.display(),
            c.full.path.display()
        );
        eprintln!("{}", archive_format::display::escape_lines(&line));
    }
    let a = RuntimeArgs {
        archive: resolved.archive,
        args: resolved.args,
    };
    match restore(&a) {
        0 => Ok(()),
        code => Err(anyhow::Error::new(crate::RuntimeExit(code))),
    }
}

/// The command line the runtime's parser reads for a restore of
/// `archive` with the archive's own `args`: the archive named first (an
/// `--archive` among the arguments wins, as it always has).
pub fn runtime_argv(program: &OsStr, archive: &Path, args: &[OsString]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        program.into(),
        "--archive".into(),
        archive.into(),
        "restore".into(),
    ];
    argv.extend(args.iter().cloned());
    argv
}

/// Parses the arguments as the archive does, restores, and returns the
/// exit code, every message already printed.
fn restore(a: &RuntimeArgs) -> u8 {
    // The whole process is this restore now: a write past `ulimit -f` must
    // fail with an error that can be resumed from, not kill it.
    sdar_stub::ignore_file_size_signal();
    let program = OsString::from(PROGRAM);
    let argv = runtime_argv(&program, &a.archive, &a.args);
    let inv = match args::parse(&argv) {
        Ok(inv) => inv,
        Err(msg) => {
            eprintln!("{PROGRAM}: {msg}\n\n{}", args::usage(&program));
            return sdar_stub::EXIT_USAGE;
        }
    };
    let args = match &inv.command {
        Command::Restore(args) => args,
        Command::Help => {
            print!("{}", args::usage(&program));
            return sdar_stub::EXIT_OK;
        }
        // The words are `restore` and nothing else, or the parser refused
        // them: no other command gets here.
        _ => return sdar_stub::run(argv),
    };
    let archive = inv.archive.as_deref().unwrap_or(&a.archive);
    let result = restore_job(archive, args, &inv);
    sdar_stub::exit_code(&inv, result)
}

fn restore_job(archive: &Path, args: &RestoreArgs, inv: &Invocation) -> Result<(), Failure> {
    // An archive that cannot be opened is refused before anything else,
    // without a JSON summary, as the archive itself does.
    let delta = sdar_stub::open_delta(archive)?;
    let mut front = RestoreFront::new(archive, args, inv);
    let result = front
        .request()
        .and_then(|request| front.prepared(PreparedRestore::prepare_with(delta, request)))
        .and_then(|job| {
            let outcome = job.run(&mut |p| front.progress(p), &Cancel::new());
            front.finish(outcome)
        });
    if args.json {
        sdar_stub::print_out(&front.json(&result))?;
    }
    result
}
