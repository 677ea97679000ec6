//! `sdar`: make and check full images of VM disks.

mod catalog;
mod cli;
mod companion;
mod console;
mod daemon;
mod delta;
mod demo;
mod full;
mod index;
mod info;
mod key;
mod list;
mod live;
mod naming;
mod output;
mod progress;
mod queue;
mod replicate;
mod restore;
mod runtime;
mod sample;
mod sample_disk;
mod signals;
mod source;
mod synth;
mod verify;

use clap::Parser;
use std::process::ExitCode;

/// Exit codes (README "Exit codes").
pub(crate) const EXIT_INTEGRITY: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_OTHER: u8 = 3;

/// A usage problem found after argument parsing (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A library error, as a usage error (exit 2) when what the caller passed
/// was refused (`InvalidInput`: a key file too short, a block size out of
/// range), else as it is.
pub fn usage_if_invalid(e: archive_format::Error) -> anyhow::Error {
    match e {
        archive_format::Error::InvalidInput { what } => anyhow::Error::new(UsageError(what)),
        e => e.into(),
    }
}

/// The runtime ran and already reported its outcome; exit with its code.
#[derive(Debug)]
pub struct RuntimeExit(pub u8);

impl std::fmt::Display for RuntimeExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for RuntimeExit {}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let Some(command) = cli.command else {
        return no_command();
    };
    let result = match command {
        cli::Command::Full(args) => full::run(args),
        cli::Command::Delta(args) => delta::run(args),
        cli::Command::Restore(a) => restore::run(&a),
        cli::Command::ExtractVmx(a) => delta::run_runtime(&a.archive, "extract-vmx", &a.args),
        cli::Command::Verify(args) => verify::run(args),
        cli::Command::Info(args) => info::run(args),
        cli::Command::Companion(args) => companion::run(args),
        cli::Command::Synth(args) => synth::run(args),
        cli::Command::Live(args) => live::run(args),
        cli::Command::Index(args) => index::run(args),
        cli::Command::List(args) => list::run(args),
        cli::Command::Menu(args) => console::run(args),
        cli::Command::Queue(args) => queue::run(args),
        cli::Command::Daemon(args) => daemon::run(args),
        cli::Command::Replicate(args) => replicate::run(args),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::SampleDisk(args) => sample_disk::run(args),
        cli::Command::SampleChange(args) => sample_disk::run_change(args),
    };
    finish(result)
}

/// `sdar` alone: the console on a terminal, else the usage (exit 2).
fn no_command() -> ExitCode {
    use clap::CommandFactory;
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return finish(console::run(console::MenuArgs::default()));
    }
    let _ = cli::Cli::command().print_help();
    ExitCode::from(EXIT_USAGE)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<RuntimeExit>().is_some() => {
            ExitCode::from(e.downcast_ref::<RuntimeExit>().map_or(EXIT_OTHER, |r| r.0))
        }
        Err(e) => {
            // Errors may quote names from a backup's metadata.
            eprintln!(
                "sdar: error: {}",
                archive_format::display::escape_lines(&message(&e))
            );
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<archive_format::Error>() {
            return if err.is_integrity() {
                EXIT_INTEGRITY
            } else {
                EXIT_OTHER
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return EXIT_USAGE;
        }
        if let Some(err) = cause.downcast_ref::<sdar_catalog::Error>() {
            return if err.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_OTHER
            };
        }
    }
    EXIT_OTHER
}

/// The error and its causes, each cause once: library errors already name
/// their cause in their own message.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
