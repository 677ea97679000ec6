//! `sdar companion`: the empty delta beside a full, written again from the
//! full alone (when `sdar full` could not write it, say for lack of space).

use crate::cli::CompanionArgs;
use crate::output::{print, refuse_inputs, PendingOutput};
use anyhow::{Context, Result};
use archive_format::display::shell_word;
use archive_format::input::{open_input, InputKind};
use archive_format::{FullImage, Limits};
use std::path::Path;

pub fn run(args: CompanionArgs) -> Result<()> {
    let file = open_input(&args.full, InputKind::Regular)?;
    // Header, metadata, index and footer only: no block is read.
    let image = FullImage::open(file, &args.full, &Limits::default())?;
    image.prove_index()?;
    let key = crate::key::read(args.key.as_deref())?;
    if let Some(key) = &key {
        // The delta's MAC vouches for the full it names: prove that first.
        image.authenticate(key)?;
    }
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => crate::delta::beside_full(&args.full),
    };
    let mut inputs = vec![args.full.as_path()];
    inputs.extend(args.key.as_deref());
    refuse_inputs(&[&dest], &inputs)?;
    let pending = PendingOutput::create(&dest, args.force, crate::delta::DELTA_MODE)?;
    let h = image.header().clone();
    crate::delta::write_empty(
        pending,
        &dest,
        &args.full,
        (h.image_size, image.identity()),
        h.block_size,
        image.meta(),
        key,
    )
    .with_context(|| format!("writing {}", dest.display()))?;
    if !args.quiet {
        print(&format!(
            "wrote {}, the delta that restores {}\n",
            dest.display(),
            args.full.display()
        ))?;
    }
    Ok(())
}

/// The error of a companion delta that `sdar full` could not write after
/// the full itself was committed: says the full is usable, whether space
/// ran out, and the command that writes the delta later.
pub fn failed_beside(
    e: anyhow::Error,
    full: &Path,
    delta: &Path,
    key: Option<&Path>,
) -> anyhow::Error {
    let out_of_space = e.chain().any(|c| {
        let io = c.downcast_ref::<std::io::Error>().or_else(|| {
            match c.downcast_ref::<archive_format::Error>() {
                Some(archive_format::Error::Io { source, .. }) => Some(source),
                _ => None,
            }
        });
        io.is_some_and(|io| {
            use std::io::ErrorKind::*;
            matches!(io.kind(), StorageFull | QuotaExceeded | FileTooLarge)
        })
    });
    let mut command = format!(
        "sdar companion {} -o {}",
        shell_word(&full.to_string_lossy()),
        shell_word(&delta.to_string_lossy())
    );
    if let Some(k) = key {
        command += &format!(" --key {}", shell_word(&k.to_string_lossy()));
    }
    e.context(format!(
        "{} is complete and usable, but the delta that restores it, {}, could not be written{}; write it once there is room with: {command}",
        full.display(),
        delta.display(),
        if out_of_space { " (out of space)" } else { "" },
    ))
}
