//! `sdar restore X.sdar [ARGS]`: the library's restore job, run in this
//! process. The arguments are the archive's own (its parser reads them) and
//! the runtime's front end tells the story, so that the command line, the
//! messages, the JSON and the exit codes are exactly the archive's.

use crate::cli::RuntimeArgs;
use archive_format::job::PreparedRestore;
use archive_format::Cancel;
use sdar_stub::args::{self, RestoreArgs};
use sdar_stub::front::RestoreFront;
use sdar_stub::{Command, Failure, Invocation};
use std::ffi::OsString;
use std::path::Path;

/// What the runtime's messages call this command.
const PROGRAM: &str = "sdar restore";

pub fn run(a: &RuntimeArgs) -> anyhow::Result<()> {
    match restore(a) {
        0 => Ok(()),
        code => Err(anyhow::Error::new(crate::RuntimeExit(code))),
    }
}

/// Parses the arguments as the archive does, restores, and returns the
/// exit code, every message already printed.
fn restore(a: &RuntimeArgs) -> u8 {
    // The whole process is this restore now: a write past `ulimit -f` must
    // fail with an error that can be resumed from, not kill it.
    sdar_stub::ignore_file_size_signal();
    let program = OsString::from(PROGRAM);
    // The archive named first; an `--archive` among the arguments wins, as
    // it always has.
    let mut argv: Vec<OsString> = vec![
        program.clone(),
        "--archive".into(),
        a.archive.clone().into(),
        "restore".into(),
    ];
    argv.extend(a.args.iter().cloned());
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
