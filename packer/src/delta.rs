//! `sdar delta`, and the empty delta written beside every full.

use crate::cli::DeltaArgs;
use crate::output::{print, same_file, PendingOutput};
use crate::progress;
use crate::runtime::RUNTIME;
use anyhow::{bail, Context, Result};
use archive_format::layout::{DEFAULT_MAP_ENTRIES, VERSION_MAJOR, VERSION_MINOR};
use archive_format::{
    hex, write_delta, Codec, DeltaHeader, DeltaOptions, DeltaWriter, DiskSource, FullImage,
    FullSummary, Limits, Metadata,
};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `NAME.full.gz` → `NAME.sdar`; any other name gets `.sdar` appended.
pub fn beside_full(full: &Path) -> PathBuf {
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".full.gz", ".full.zst", ".gz", ".zst"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name);
    full.with_file_name(format!("{stem}.sdar"))
}

fn header(
    codec: Codec,
    block_size: u32,
    image_size: u64,
    base_size: u64,
    base_identity: archive_format::Hash,
) -> DeltaHeader {
    DeltaHeader {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        compat_flags: 0,
        incompat_flags: 0,
        codec,
        block_size,
        map_entries: DEFAULT_MAP_ENTRIES,
        image_size,
        base_image_size: base_size,
        base_identity,
    }
}

/// Writes the delta that restores a full unchanged: no changed blocks,
/// the full's identity as both its base and its result.
pub fn write_empty(
    pending: PendingOutput,
    dest: &Path,
    full: &Path,
    summary: &FullSummary,
    block_size: u32,
    meta: &Metadata,
    key: Option<archive_format::auth::Key>,
) -> Result<()> {
    let mut meta = meta.clone();
    meta.base_name = full.file_name().map(|n| n.to_string_lossy().into_owned());
    let h = header(
        Codec::Zstd,
        block_size,
        summary.image_size,
        summary.image_size,
        summary.identity,
    );
    let writer = DeltaWriter::with_key(pending.writer()?, dest, RUNTIME, h, &meta, key)?;
    let (out, _) = writer.finish(summary.identity)?;
    pending.set_mode(0o755)?;
    pending.commit(out)
}

pub fn run(args: DeltaArgs) -> Result<()> {
    let mut source = DiskSource::open_as(&args.source, args.source_format.into())?;
    let mut meta = crate::full::metadata(&args.meta, &args.source, &source)?;
    let full_path = args.full.clone();
    let open_base = || -> archive_format::Result<FullImage<File>> {
        let f = File::open(&full_path).map_err(|e| archive_format::Error::Io {
            path: full_path.clone(),
            offset: None,
            source: e,
        })?;
        FullImage::open(f, &full_path, &Limits::default())
    };
    let mut base = open_base()?;
    meta.base_name = args
        .full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => PathBuf::from(crate::full::default_name(&meta, ".sdar")),
    };
    let inputs = [args.source.as_path(), args.full.as_path()];
    for p in inputs.into_iter().chain(source.data_paths()) {
        if same_file(&dest, p) {
            bail!(crate::UsageError(format!(
                "{} is one of the inputs",
                dest.display()
            )));
        }
    }
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
    let pending = PendingOutput::create(&dest, args.force)?;
    let key = crate::key::read(args.key.as_deref())?;
    let writer = DeltaWriter::with_key(pending.writer()?, &dest, RUNTIME, h, &meta, key)?;
    let started = Instant::now();
    let pb = progress::bar(source.size, "delta", args.run.quiet);
    let data_path = source.name().to_path_buf();
    let (out, summary) = write_delta(
        source.reader(),
        &data_path,
        &mut base,
        &open_base,
        writer,
        &options,
        &mut |done| pb.set_position(done),
    )
    .with_context(|| format!("writing {}", dest.display()))?;
    pb.finish_and_clear();
    pending.set_mode(0o755)?;
    pending.commit(out)?;
    crate::full::warn_if_torn(&source);
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

/// True when `path` ends with a delta archive trailer.
pub fn is_delta(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut tail = [0u8; 8];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-(archive_format::layout::TRAILER_LEN as i64)))?;
            f.read_exact(&mut tail)
        })
        .is_ok()
        && tail == archive_format::layout::TRAILER_MAGIC
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
