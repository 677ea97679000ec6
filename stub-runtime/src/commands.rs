//! The runtime's commands: each opens the archive, then shows it, writes its
//! .vmx, or runs a restore or verify job through the front end.

use crate::args::{Command, Invocation};
use crate::front::{self, RestoreFront, RunLog};
use crate::report;
use crate::Failure;
use archive_format::job;
use archive_format::{Cancel, DeltaArchive, Limits};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn dispatch(inv: &Invocation) -> Result<(), Failure> {
    let archive_path = archive_path(inv)?;
    let delta = open_delta(&archive_path)?;
    match &inv.command {
        Command::Help => Ok(()),
        Command::Menu => crate::menu::run(&delta, &archive_path, inv),
        Command::Info { json } => {
            let text = if *json {
                report::info_json(&delta)
            } else {
                report::info_text(&delta)
            };
            print_out(&text)
        }
        Command::ExtractVmx { output } => {
            let vmx = delta
                .meta()
                .vmx
                .clone()
                .ok_or_else(|| Failure::Other("this backup carries no .vmx file".into()))?;
            match output {
                Some(p) => write_new_file(p, &vmx, false),
                None => {
                    // Bytes for a pipe or a file; on a terminal, the text
                    // with anything that could drive the terminal escaped.
                    let out = std::io::stdout();
                    let shown = if std::io::IsTerminal::is_terminal(&out) {
                        archive_format::display::escape_lines(&String::from_utf8_lossy(&vmx))
                            .into_bytes()
                    } else {
                        vmx
                    };
                    out.lock()
                        .write_all(&shown)
                        .map_err(|e| Failure::Other(format!("cannot write to stdout: {e}")))
                }
            }
        }
        Command::Verify { full, json, key } => {
            let mut log = RunLog::default();
            let result = front::verify(
                Some(delta),
                &archive_path,
                full,
                key.as_deref(),
                inv,
                &mut log,
            );
            if *json {
                print_out(&log.json("verified", &archive_path, &result, None))?;
            }
            result
        }
        Command::Restore(args) => {
            let mut front = RestoreFront::new(&archive_path, args, inv);
            let result = front::restore(Some(delta), &mut front, &Cancel::new());
            if args.json {
                print_out(&front.json(&result))?;
            }
            result
        }
    }
}

pub fn open_delta(path: &Path) -> Result<DeltaArchive<File>, Failure> {
    Ok(job::open_archive(path, &Limits::default())?)
}

/// The archive: `--archive`, else this program's own file (`/proc/self/exe`
/// when there is a /proc, else argv[0]).
fn archive_path(inv: &Invocation) -> Result<PathBuf, Failure> {
    if let Some(p) = &inv.archive {
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::current_exe() {
        if p.is_file() {
            return Ok(p);
        }
    }
    if inv.program.components().count() > 1 && inv.program.is_file() {
        return Ok(inv.program.clone());
    }
    Err(Failure::Usage(
        "cannot find this archive's own file: run it by its path or give --archive PATH".into(),
    ))
}

/// Writes a file that must not exist yet (or, with `replace`, replaces one
/// that is not a backup), never through a link: a new name with
/// `O_CREAT | O_EXCL | O_NOFOLLOW`, a replaced one through a temporary file
/// renamed over it.
pub fn write_new_file(path: &Path, bytes: &[u8], replace: bool) -> Result<(), Failure> {
    Ok(archive_format::target::write_file_replacing(
        path, bytes, replace,
    )?)
}

pub fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Other(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
