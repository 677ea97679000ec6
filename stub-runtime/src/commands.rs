//! The runtime's commands.

use crate::args::{Command, FullSource, Invocation};
use crate::report;
use crate::Failure;
use archive_format::locate::{find_full, search_dirs};
use archive_format::restore::{check_base, restore, DiscardSink, RestoreProgress};
use archive_format::target::{RestoreTarget, TargetKind};
use archive_format::vmdk::DescriptorSpec;
use archive_format::{DeltaArchive, FullImage, Limits};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn dispatch(inv: &Invocation) -> Result<(), Failure> {
    let archive_path = archive_path(inv)?;
    let file = File::open(&archive_path)
        .map_err(|e| Failure::Other(format!("{}: {e}", archive_path.display())))?;
    let mut delta = DeltaArchive::open(file, &archive_path, &Limits::default())?;
    match &inv.command {
        Command::Help => Ok(()),
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
                Some(p) => write_new_file(p, &vmx),
                None => std::io::stdout()
                    .write_all(&vmx)
                    .map_err(|e| Failure::Other(format!("cannot write to stdout: {e}"))),
            }
        }
        Command::Verify { full } => {
            let started = Instant::now();
            let mut base = open_full(&delta, &archive_path, full)?;
            check_base(&delta, &mut base)?;
            let report = restore(
                &mut delta,
                &mut base,
                &mut DiscardSink,
                inv.threads,
                &mut |_| {},
            )?;
            if !inv.quiet {
                eprintln!(
                    "OK: {} verified against {}: {} blocks, identity {}",
                    archive_path.display(),
                    base.name().display(),
                    report.blocks,
                    archive_format::hex(&report.identity)
                );
                eprintln!(
                    "{}",
                    report::summary(&report.progress, started.elapsed().as_secs_f64())
                );
            }
            Ok(())
        }
        Command::Restore {
            to,
            full,
            force,
            raw,
            vmfs,
        } => {
            let started = Instant::now();
            let mut base = open_full(&delta, &archive_path, full)?;
            check_base(&delta, &mut base)?;
            let kind = if *raw {
                TargetKind::Raw
            } else {
                TargetKind::Vmdk { vmfs: *vmfs }
            };
            let size = delta.header().image_size;
            let mut target = RestoreTarget::create(to, kind.clone(), size, *force)?;
            let mut last = Instant::now();
            let quiet = inv.quiet;
            let report = restore(
                &mut delta,
                &mut base,
                &mut target,
                inv.threads,
                &mut |p: &RestoreProgress| {
                    if !quiet && last.elapsed().as_millis() >= 250 {
                        last = Instant::now();
                        report::progress_line(p, started.elapsed().as_secs_f64());
                    }
                },
            )?;
            let spec = match kind {
                TargetKind::Raw => None,
                TargetKind::Vmdk { vmfs } => {
                    let flat = target
                        .data_path()
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let cid = u32::from_le_bytes(report.identity[..4].try_into().expect("4 bytes"));
                    Some(DescriptorSpec::new(size, flat, vmfs, delta.meta(), cid))
                }
            };
            target.commit(spec.as_ref())?;
            if !quiet {
                report::clear_line();
                eprintln!(
                    "restored {} (every block verified, identity {})",
                    to.display(),
                    archive_format::hex(&report.identity)
                );
                eprintln!(
                    "{}",
                    report::summary(&report.progress, started.elapsed().as_secs_f64())
                );
            }
            Ok(())
        }
    }
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

fn open_full(
    delta: &DeltaArchive<File>,
    archive: &Path,
    source: &FullSource,
) -> Result<FullImage<File>, Failure> {
    let path =
        match source {
            FullSource::Path(p) => p.clone(),
            FullSource::Stdin => {
                return Err(Failure::Other(
                    "streaming the full on standard input is not supported yet".into(),
                ));
            }
            FullSource::Search => {
                let search_path = std::env::var_os("SDAR_FULL_PATH");
                let dirs = search_dirs(archive, search_path.as_deref());
                let hint = delta.meta().base_name.as_deref();
                find_full(&dirs, hint, &delta.header().base_identity).ok_or_else(|| {
                    Failure::Other(format!(
                    "the full image with identity {} was not found in {}; give it with --full PATH",
                    archive_format::hex(&delta.header().base_identity),
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                ))
                })?
            }
        };
    let file = File::open(&path).map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    Ok(FullImage::open(file, &path, &Limits::default())?)
}

fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Other(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
