//! The restore runtime's commands, as a library so that `sdar restore
//! X.sdar` runs exactly the code an archive runs. Arguments are parsed by
//! hand: the runtime stays small (no clap).

mod args;
mod commands;
pub mod report;

use archive_format::Error;
use std::ffi::OsString;

pub use args::{Command, Invocation};

/// Exit codes, as in `sdar`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INTEGRITY: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_OTHER: u8 = 3;

/// Why a command failed, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Format(Error),
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { what } => Failure::Usage(what),
            e => Failure::Format(e),
        }
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Format(e) if e.is_integrity() => EXIT_INTEGRITY,
            _ => EXIT_OTHER,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(s) | Failure::Other(s) => f.write_str(s),
            Failure::Format(e) => write!(f, "{e}"),
        }
    }
}

/// Runs the runtime with `argv` (program name first) and returns the exit code.
pub fn run(argv: Vec<OsString>) -> u8 {
    let program = argv
        .first()
        .cloned()
        .unwrap_or_else(|| "sdar-archive".into());
    let inv = match args::parse(&argv) {
        Ok(inv) => inv,
        Err(msg) => {
            eprintln!(
                "{}: {msg}\n\n{}",
                program.to_string_lossy(),
                args::usage(&program)
            );
            return EXIT_USAGE;
        }
    };
    if let Command::Help = inv.command {
        print!("{}", args::usage(&program));
        return EXIT_OK;
    }
    match commands::dispatch(&inv) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
