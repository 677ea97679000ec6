//! The restore runtime's commands, as a library so that `sdar restore
//! X.sdar` runs exactly the code an archive runs. Arguments are parsed by
//! hand: the runtime stays small (no clap).

pub mod args;
mod commands;
pub mod front;
mod menu;
pub mod report;

use archive_format::Error;
use std::ffi::OsString;

pub use args::{Command, Invocation, ProgressMode};
pub use commands::{open_delta, print_out};

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
    /// Already told to the user (by the menu); only the exit code is left.
    Reported(u8),
    /// A restore stopped with its proven blocks kept for `--resume`.
    Interrupted {
        cause: Box<Failure>,
        partial: std::path::PathBuf,
    },
    /// A restore onto a block device stopped part-way: the device holds
    /// neither what it held before nor the restored disk.
    IncompleteDevice {
        cause: Box<Failure>,
        device: std::path::PathBuf,
    },
    /// A restore onto a block device failed before any block was written:
    /// the device holds what it held before.
    UnwrittenDevice {
        cause: Box<Failure>,
        device: std::path::PathBuf,
    },
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
            Failure::Interrupted { cause, .. }
            | Failure::IncompleteDevice { cause, .. }
            | Failure::UnwrittenDevice { cause, .. } => cause.exit_code(),
            Failure::Reported(code) => *code,
            _ => EXIT_OTHER,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(s) | Failure::Other(s) => f.write_str(s),
            Failure::Format(e) => write!(f, "{e}"),
            Failure::Reported(code) => write!(f, "exit code {code}"),
            Failure::Interrupted { cause, partial } => write!(
                f,
                "{cause}\nThe blocks restored so far are kept in {}: run the same command again with --resume to continue (they are read back and checked), or delete that file.",
                partial.display()
            ),
            Failure::IncompleteDevice { cause, device } => write!(
                f,
                "{cause}\nWARNING: {} NOW HOLDS AN INCOMPLETE IMAGE. It is not a usable disk: do not boot or mount it. Run the same command again to restore it (add --resume to keep the blocks already written, which are read back and checked).",
                device.display()
            ),
            Failure::UnwrittenDevice { cause, device } => write!(
                f,
                "{cause}\nNothing was written to {}: it holds what it held before.",
                device.display()
            ),
        }
    }
}

/// Runs the runtime with `argv` (program name first) and returns the exit code.
pub fn run(argv: Vec<OsString>) -> u8 {
    ignore_file_size_signal();
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
    match inv.command {
        Command::Help => {
            print!("{}", args::usage(&program));
            return EXIT_OK;
        }
        Command::Menu if !menu::interactive() => {
            eprintln!(
                "{}: no command given (the menu needs a terminal)\n\n{}",
                program.to_string_lossy(),
                args::usage(&program)
            );
            return EXIT_USAGE;
        }
        _ => {}
    }
    exit_code(&inv, commands::dispatch(&inv))
}

/// The exit code of a command's result, telling a failure on standard
/// error: as a JSON object with `--progress json`, else as a sentence.
pub fn exit_code(inv: &Invocation, result: Result<(), Failure>) -> u8 {
    match result {
        Ok(()) => EXIT_OK,
        Err(Failure::Reported(code)) => code,
        Err(e) if inv.progress == ProgressMode::Json => {
            let line = report::object(&[
                ("event", report::json_string("error")),
                ("exit_code", e.exit_code().to_string()),
                ("message", report::json_string(&e.to_string())),
            ]);
            eprintln!("{line}");
            e.exit_code()
        }
        Err(e) => {
            // Errors may quote names from the backup's metadata.
            eprintln!(
                "error: {}",
                archive_format::display::escape_lines(&e.to_string())
            );
            e.exit_code()
        }
    }
}

/// A write past a file-size limit (`ulimit -f`) should fail with an error we
/// can report and resume from, not kill the process with SIGXFSZ. For a
/// program's entry: it changes the whole process.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler
    // code and touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
