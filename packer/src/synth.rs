//! `sdar synth`: the full image of the disk a delta describes, made from
//! the delta and its full, without the disk.

use crate::cli::SynthArgs;
use crate::output::{print, refuse_inputs, PendingOutput, DELTA_MODE, FULL_MODE};
use crate::progress;
use anyhow::{anyhow, Context, Result};
use archive_format::container::{open_classified, FileKind};
use archive_format::image::ProvenImage;
use archive_format::input::{open_input, InputKind};
use archive_format::locate::{find_full, search_dirs};
use archive_format::{
    hex, synth_metadata, write_synth, Cancel, Codec, DeltaArchive, FullImage, FullOptions,
    FullWriter, Limits,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn run(args: SynthArgs) -> Result<()> {
    let (file, kind) = open_classified(&args.archive)?;
    if kind != FileKind::Delta {
        return Err(anyhow::Error::new(crate::UsageError(format!(
            "{} is not a delta archive (sdar synth reads a .sdar)",
            args.archive.display()
        ))));
    }
    let delta = DeltaArchive::open(file, &args.archive, &Limits::default())?;
    let key = crate::key::read(args.key.as_deref())?;
    if let Some(key) = &key {
        // The new full's MAC will vouch for what the delta says: prove that first.
        delta.authenticate(key)?;
    }
    let full = match &args.full {
        Some(p) => p.clone(),
        None => find_base(&delta, &args.archive)?,
    };
    // Opened once: every block is read from this file, whatever the path names later.
    let base_file = open_input(&full, InputKind::Regular)?;
    let base = FullImage::open(base_file, &full, &Limits::default())?;
    let base_codec = base.header().codec;
    // The right full, and the map of the image proven, before any output
    // exists: index and change maps only, no block data.
    let image = ProvenImage::of_delta(delta, base)?;
    let meta = synth_metadata(image.meta());
    let codec = args.codec.map_or(base_codec, Codec::from);
    let options = FullOptions {
        codec,
        level: args.level,
        block_size: image.block_size(),
        threads: args.run.threads,
        key: key.clone(),
        ..FullOptions::default()
    };
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => PathBuf::from(default_name(&meta, codec)),
    };
    let delta_dest = crate::naming::beside_full(&dest);
    let mut inputs = vec![args.archive.as_path(), &full];
    inputs.extend(args.key.as_deref());
    refuse_inputs(&[&dest, &delta_dest], &inputs)?;
    let pending = PendingOutput::create(&dest, args.force, FULL_MODE)?;
    let pending_delta = PendingOutput::create(&delta_dest, args.force, DELTA_MODE)?;
    let image_size = image.image_size();
    let writer = FullWriter::new(pending.writer()?, &dest, &options, image_size, &meta)
        .map_err(crate::usage_if_invalid)?;
    let started = Instant::now();
    let pb = progress::bar(image_size, "synth", args.run.quiet);
    let (out, summary) = write_synth(
        &image,
        writer,
        &mut |done| pb.set_position(done),
        &Cancel::new(),
    )
    .with_context(|| format!("writing {}", dest.display()))?;
    pb.finish_and_clear();
    pending.commit(out)?;
    let s = &summary.full;
    crate::companion::write_empty(
        pending_delta,
        &delta_dest,
        &dest,
        (s.image_size, s.identity),
        options.block_size,
        &meta,
        key,
    )
    .map_err(|e| crate::companion::failed_beside(e, &dest, &delta_dest, args.key.as_deref()))?;
    if !args.run.quiet {
        let secs = started.elapsed().as_secs_f64();
        print(&format!(
            "wrote {}\n  and {}, the delta that restores it\n  disk {} in {} blocks ({} zero): {} copied from {}, {} compressed; {:.1} MiB/s\n  file {}\n  identity {}\n",
            dest.display(),
            delta_dest.display(),
            progress::human(s.image_size),
            s.blocks,
            s.zero_blocks,
            summary.copied_blocks,
            full.display(),
            summary.encoded_blocks,
            s.image_size as f64 / secs.max(1e-9) / (1 << 20) as f64,
            progress::human(s.file_len),
            hex(&s.identity),
        ))?;
    }
    Ok(())
}

/// The full the delta needs, found by identity as its restore finds it:
/// beside the archive, then in each folder of `SDAR_FULL_PATH`.
fn find_base(delta: &DeltaArchive<std::fs::File>, archive: &Path) -> Result<PathBuf> {
    let search_path = std::env::var_os("SDAR_FULL_PATH");
    let dirs = search_dirs(archive, search_path.as_deref());
    let hint = delta.meta().base_name.as_deref();
    let expected = delta.header().base_identity;
    find_full(&dirs, hint, &expected).ok_or_else(|| {
        anyhow!(
            "the full image with identity {} was not found in {}; give it with --full PATH",
            hex(&expected),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `sdar full`'s name for the disk as the delta saw it (its VM, slot, disk
/// and the delta's date), marked `.synth`: `VM_scsi0-0_DISK_STAMP.synth.full.gz`.
/// The mark keeps its companion, `….synth.sdar`, off the name `sdar delta`
/// gives the delta itself by default.
fn default_name(meta: &archive_format::Metadata, codec: Codec) -> String {
    crate::naming::default_name(meta, &format!(".synth{}", codec.full_suffix()))
}
