//! The runtime's commands.

use crate::args::{Command, FullSource, Invocation};
use crate::report;
use crate::Failure;
use archive_format::full::FullStream;
use archive_format::locate::{find_full, search_dirs};
use archive_format::restore::{
    check_base, restore, restore_stream, BlockSink, DiscardSink, RestoreProgress, RestoreReport,
};
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
            let (report, base_name) = rebuild(
                &mut delta,
                &archive_path,
                full,
                &mut DiscardSink,
                inv.threads,
                &mut |_| {},
            )?;
            if !inv.quiet {
                eprintln!(
                    "OK: {} verified against {}: {} blocks, identity {}",
                    archive_path.display(),
                    base_name.display(),
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
            let kind = if *raw {
                TargetKind::Raw
            } else {
                TargetKind::Vmdk { vmfs: *vmfs }
            };
            let size = delta.header().image_size;
            let quiet = inv.quiet;
            let mut last = Instant::now();
            // The target is created only once the full is known to be the
            // right one (for a stream: once its header matches).
            let mut target: Option<RestoreTarget> = None;
            let mut create = || RestoreTarget::create(to, kind.clone(), size, *force);
            let mut sink = LazyTarget {
                target: &mut target,
                create: &mut create,
            };
            let (report, _) = rebuild(
                &mut delta,
                &archive_path,
                full,
                &mut sink,
                inv.threads,
                &mut |p: &RestoreProgress| {
                    if !quiet && last.elapsed().as_millis() >= 250 {
                        last = Instant::now();
                        report::progress_line(p, started.elapsed().as_secs_f64());
                    }
                },
            )?;
            let target = match target {
                Some(t) => t,
                None => create()?,
            };
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

/// Proves and rebuilds the delta's image into `sink` from its full: a
/// file found or given (checked before anything is written), or a stream
/// on standard input. Returns the report and the full's name.
fn rebuild(
    delta: &mut DeltaArchive<File>,
    archive: &Path,
    source: &FullSource,
    sink: &mut dyn BlockSink,
    threads: usize,
    progress: &mut dyn FnMut(&RestoreProgress),
) -> Result<(RestoreReport, PathBuf), Failure> {
    let path =
        match source {
            FullSource::Path(p) => p.clone(),
            FullSource::Stdin => {
                let name = PathBuf::from("<standard input>");
                let stream = FullStream::open(std::io::stdin().lock(), &name, &Limits::default())?;
                let report = restore_stream(delta, stream, &name, sink, progress)?;
                return Ok((report, name));
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
    let mut base = FullImage::open(file, &path, &Limits::default())?;
    check_base(delta, &mut base)?;
    let report = restore(delta, &mut base, sink, threads, progress)?;
    Ok((report, path))
}

/// Creates the restore target at the first block, so that a wrong or
/// unreadable full leaves nothing behind.
struct LazyTarget<'a> {
    target: &'a mut Option<RestoreTarget>,
    create: &'a mut dyn FnMut() -> archive_format::Result<RestoreTarget>,
}

impl BlockSink for LazyTarget<'_> {
    fn put(&mut self, block: u64, offset: u64, data: Option<&[u8]>) -> archive_format::Result<()> {
        if self.target.is_none() {
            *self.target = Some((self.create)()?);
        }
        self.target
            .as_mut()
            .expect("created above")
            .put(block, offset, data)
    }
}

fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Failure::Usage(format!("{} already exists", path.display()))
            }
            _ => Failure::Other(format!("{}: {e}", path.display())),
        })?;
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
