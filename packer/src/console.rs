//! `sdar menu`: the console over the catalog and the queue, driven with the
//! Enter key as the archive's own menu is. A restore is chosen step by step
//! (module `walk`), then run here or queued for `sdar daemon`; the queue and
//! the jobs' logs are shown as `sdar queue list` and `sdar queue log` show
//! them.

mod prompt;
mod walk;

use crate::catalog::CatalogArgs;
use crate::queue::{LogArgs, QueueArgs, QueueCommand};
use crate::UsageError;
use archive_format::display::{escape, escape_lines};
use clap::Args;
use prompt::{ask, Answer, List, Pick};
use sdar_catalog::{Catalog, Filter};
use std::io::IsTerminal;
use walk::By;

#[derive(Args, Debug, Default)]
pub struct MenuArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// What happened in this console session.
#[derive(Default)]
struct Session {
    /// The exit code of the last restore run here (or of the last error).
    code: u8,
    /// A restore was run or queued: Enter now leaves.
    done: bool,
    /// The job queued last, which the log view offers first.
    last_job: Option<i64>,
    quit: bool,
}

pub fn run(args: MenuArgs) -> anyhow::Result<()> {
    // Both ends: the questions printed into a file or a pipe reach nobody,
    // and a pipe closed under the console (`sdar menu | head`) would end it
    // in the middle of a walk.
    let not = match (
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
    ) {
        (false, _) => Some("input"),
        (true, false) => Some("output"),
        (true, true) => None,
    };
    if let Some(which) = not {
        return Err(UsageError(format!(
            "sdar menu needs a terminal: its standard {which} is not one. Without one, \
             `sdar list` shows the backups, `sdar restore --vm NAME --to DEST` restores one and \
             `sdar queue submit --vm NAME --to DEST` queues it"
        ))
        .into());
    }
    let catalog = args.catalog.open(false)?;
    let no_reindex = CatalogArgs {
        reindex: false,
        ..args.catalog.clone()
    };
    println!(
        "sdar console: catalog {}",
        escape(&catalog.path().display().to_string())
    );
    let mut session = Session::default();
    while !session.quit {
        summary(&catalog);
        let list = List {
            what: "choice",
            question: "Choose",
            header: None,
            lines: vec![
                "Restore a disk, choosing by VM name".into(),
                "Restore a disk, choosing by disk name".into(),
                "The restore queue".into(),
                "A job's log".into(),
            ],
            default: Some(0),
            default_key: session.done.then_some("q"),
            filter: false,
            extras: vec![("q", "Quit".into())],
        };
        match list.choose() {
            Pick::Item(0) => walk::restore(&catalog, &no_reindex, By::Vm, &mut session),
            Pick::Item(1) => walk::restore(&catalog, &no_reindex, By::Disk, &mut session),
            Pick::Item(2) => queue(QueueCommand::List(crate::queue::ListArgs {
                catalog: no_reindex.clone(),
                json: false,
            })),
            Pick::Item(_) => job_log(&no_reindex, &mut session),
            Pick::Back => println!("This is the first step; q quits."),
            Pick::Extra | Pick::Quit => break,
        }
    }
    match session.code {
        0 => Ok(()),
        code => Err(crate::RuntimeExit(code).into()),
    }
}

/// One line about what the catalog holds.
fn summary(catalog: &Catalog) {
    let Ok(all) = catalog.backups(&Filter::default()) else {
        return;
    };
    let mut vms: Vec<(Option<&str>, Option<&str>)> = all
        .iter()
        .map(|b| (b.vm_name.as_deref(), b.vm_uuid.as_deref()))
        .collect();
    vms.sort_unstable();
    vms.dedup();
    let targets = catalog.targets().map(|t| t.len()).unwrap_or(0);
    println!();
    println!(
        "{} backups of {} VMs in {targets} targets.",
        all.len(),
        vms.len()
    );
    let problems = catalog.problems().map(|p| p.len()).unwrap_or(0);
    if problems > 0 {
        println!(
            "{problems} damaged or foreign {} not shown here: `sdar list` names them.",
            if problems == 1 {
                "file is"
            } else {
                "files are"
            }
        );
    }
}

/// Runs a `sdar queue` command here, printing what it prints.
fn queue(command: QueueCommand) {
    println!();
    if let Err(e) = crate::queue::run(QueueArgs { command }) {
        println!("error: {}", escape_lines(&crate::message(&e)));
    }
}

fn job_log(catalog: &CatalogArgs, session: &mut Session) {
    loop {
        let default = session
            .last_job
            .map(|id| id.to_string())
            .unwrap_or_default();
        match ask("Which job (its number in the queue)", &default) {
            Answer::Text(t) if t.is_empty() => return,
            Answer::Text(t) => match t.parse::<i64>() {
                Ok(id) if id > 0 => {
                    return queue(QueueCommand::Log(LogArgs {
                        catalog: catalog.clone(),
                        id,
                        follow: false,
                    }))
                }
                _ => println!("{} is not a job number.", escape(&t)),
            },
            Answer::Back => return,
            Answer::Quit => {
                session.quit = true;
                return;
            }
        }
    }
}

/// An error, with the exit code `sdar` would leave with.
fn report_error(e: &anyhow::Error, session: &mut Session) {
    println!("error: {}", escape_lines(&crate::message(e)));
    session.code = crate::exit_code(e);
}
