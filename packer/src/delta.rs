//! `sdar delta`: a disk and the full it changed from in, a delta archive
//! out; and running an archive's restore program from `sdar`.

use crate::cli::DeltaArgs;
use crate::output::{print, refuse_inputs, PendingOutput, DELTA_MODE};
use crate::progress;
use crate::runtime::RUNTIME;
use anyhow::{Context, Result};
use archive_format::input::{open_input, InputKind};
use archive_format::{
    hex, write_delta, Codec, DeltaHeader, DeltaOptions, DeltaWriter, DiskSource, FullImage, Limits,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The header of a delta of this sdar's format version.
pub fn header(
    codec: Codec,
    block_size: u32,
    image_size: u64,
    base_size: u64,
    base_identity: archive_format::Hash,
) -> DeltaHeader {
    DeltaHeader::new(codec, block_size, image_size, base_size, base_identity)
}

pub fn run(args: DeltaArgs) -> Result<()> {
    let mut source = DiskSource::open_as(&args.source, args.source_format.into())?;
    let mut meta = crate::source::metadata(&args.meta, &args.source, &source)?;
    // Opened once: every thread reads this file, whatever the path names later.
    let full_file = open_input(&args.full, InputKind::Regular)?;
    let base = FullImage::open(full_file, &args.full, &Limits::default())?;
    meta.base_name = args
        .full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => PathBuf::from(crate::naming::default_name(&meta, ".sdar")),
    };
    let mut inputs = vec![args.source.as_path(), &args.full];
    inputs.extend(source.data_paths());
    inputs.extend(args.meta.vmx.as_deref());
    inputs.extend(args.key.as_deref());
    refuse_inputs(&[&dest], &inputs)?;
    let options = DeltaOptions {
        codec: args.codec.into(),
        level: args.level,
        threads: args.run.threads,
        index_only: args.index_only,
    };
    let h = header(
        options.codec,
        base.header().block_size,
        source.size,
        base.header().image_size,
        base.identity(),
    );
    let pending = PendingOutput::create(&dest, args.force, DELTA_MODE)?;
    let key = crate::key::read(args.key.as_deref())?;
    let writer = DeltaWriter::with_key(pending.writer()?, &dest, RUNTIME, h, &meta, key)?;
    let started = Instant::now();
    let pb = progress::bar(source.size, "delta", args.run.quiet);
    let data_path = source.name().to_path_buf();
    let (out, summary) = write_delta(
        source.reader(),
        &data_path,
        &base,
        writer,
        &options,
        &mut |done| pb.set_position(done),
    )
    .with_context(|| format!("writing {}", dest.display()))?;
    pb.finish_and_clear();
    pending.commit(out)?;
    crate::source::warn_if_torn(&source);
    if !args.run.quiet {
        let secs = started.elapsed().as_secs_f64();
        print(&format!(
            "wrote {}\n  {} of {} blocks changed ({} whole, {} patched, {} zero), {} of block data\n  runtime {}, file {}; {:.1} MiB/s\n  identity {}\n  needs full {} ({})\n",
            dest.display(),
            summary.data_blocks + summary.patch_blocks + summary.zero_blocks,
            summary.blocks,
            summary.data_blocks,
            summary.patch_blocks,
            summary.zero_blocks,
            progress::human(summary.data_bytes),
            progress::human(summary.runtime_len),
            progress::human(summary.file_len),
            summary.image_size as f64 / secs.max(1e-9) / (1 << 20) as f64,
            hex(&summary.identity),
            hex(&base.identity()),
            args.full.display(),
        ))?;
    }
    Ok(())
}

/// Runs a runtime command on the archive at `archive`, exactly as the
/// archive itself would.
pub fn run_runtime(archive: &Path, command: &str, rest: &[std::ffi::OsString]) -> Result<()> {
    let mut argv: Vec<std::ffi::OsString> = vec![
        format!("sdar {command}").into(),
        "--archive".into(),
        archive.into(),
        command.into(),
    ];
    argv.extend(rest.iter().cloned());
    match sdar_stub::run(argv) {
        0 => Ok(()),
        code => Err(anyhow::Error::new(crate::RuntimeExit(code))),
    }
}
