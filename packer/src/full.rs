//! `sdar full`: a disk in, a full image out.

use crate::cli::FullArgs;
use crate::output::{print, refuse_inputs, same_file, PendingOutput, DELTA_MODE, FULL_MODE};
use crate::progress;
use anyhow::{bail, Context, Result};
use archive_format::{hex, write_full, Codec, DiskSource, FullOptions, FullWriter};
use std::path::PathBuf;
use std::time::Instant;

pub fn run(args: FullArgs) -> Result<()> {
    let mut source = DiskSource::open_as(&args.source, args.source_format.into())?;
    let meta = crate::source::metadata(&args.meta, &args.source, &source)?;
    let codec = Codec::from(args.codec);
    let options = FullOptions {
        codec,
        level: args.level,
        block_size: u32::try_from(args.block_size).map_err(|_| {
            crate::UsageError(format!("block size {} is too large", args.block_size))
        })?,
        threads: args.run.threads,
        key: crate::key::read(args.key.as_deref())?,
        ..FullOptions::default()
    };
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => PathBuf::from(crate::naming::default_name(&meta, codec.full_suffix())),
    };
    if same_file(&dest, &args.source) || source.data_paths().any(|p| same_file(&dest, p)) {
        bail!(crate::UsageError(format!(
            "{} is the source disk itself",
            dest.display()
        )));
    }
    let delta_dest = crate::naming::beside_full(&dest);
    let mut inputs = vec![args.source.as_path()];
    inputs.extend(source.data_paths());
    inputs.extend(args.meta.vmx.as_deref());
    inputs.extend(args.key.as_deref());
    refuse_inputs(&[&dest, &delta_dest], &inputs)?;
    let pending = PendingOutput::create(&dest, args.force, FULL_MODE)?;
    let pending_delta = PendingOutput::create(&delta_dest, args.force, DELTA_MODE)?;
    let writer = FullWriter::new(pending.writer()?, &dest, &options, source.size, &meta)
        .map_err(crate::usage_if_invalid)?;
    let started = Instant::now();
    let pb = progress::bar(source.size, "full", args.run.quiet);
    let data_path = source.name().to_path_buf();
    let (out, summary) = write_full(source.reader(), &data_path, writer, &mut |done| {
        pb.set_position(done)
    })
    .with_context(|| format!("writing {}", dest.display()))?;
    pb.finish_and_clear();
    pending.commit(out)?;
    crate::source::warn_if_torn(&source);
    crate::companion::write_empty(
        pending_delta,
        &delta_dest,
        &dest,
        (summary.image_size, summary.identity),
        options.block_size,
        &meta,
        options.key.clone(),
    )
    .map_err(|e| crate::companion::failed_beside(e, &dest, &delta_dest, args.key.as_deref()))?;
    let secs = started.elapsed().as_secs_f64();
    if !args.run.quiet {
        let percent = |part: u64, digits: usize| match summary.image_size {
            0 => "-".to_string(),
            size => format!("{:.*}%", digits, part as f64 / size as f64 * 100.0),
        };
        print(&format!(
            "wrote {}\n  and {}, the delta that restores it\n  disk {} in {} blocks ({} zero), {:.1} MiB/s\n  file {} ({} of the disk), index {} ({} of the disk)\n  identity {}\n",
            dest.display(),
            delta_dest.display(),
            progress::human(summary.image_size),
            summary.blocks,
            summary.zero_blocks,
            summary.image_size as f64 / secs.max(1e-9) / (1 << 20) as f64,
            progress::human(summary.file_len),
            percent(summary.file_len, 1),
            progress::human(summary.index_bytes),
            percent(summary.index_bytes, 3),
            hex(&summary.identity),
        ))?;
    }
    Ok(())
}
