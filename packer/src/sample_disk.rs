//! `sdar sample-disk`: the sample generator as a command, for scripts and benchmarks.

use crate::sample::write_sample_disk;

/// `sdar sample-disk`: the generator as a command, for scripts and benchmarks.
pub fn run(args: crate::cli::SampleArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let pending = crate::output::PendingOutput::create(&args.output, args.force)?;
    let mut w = pending.writer()?;
    write_sample_disk(&mut w, args.size, args.seed)
        .with_context(|| format!("writing {}", args.output.display()))?;
    pending.commit(w)
}
