//! `sdar sample-disk`: the sample generator as a command, for scripts and benchmarks.

use crate::sample::write_sample_disk;

/// `sdar sample-disk`: the generator as a command, for scripts and benchmarks.
pub fn run(args: crate::cli::SampleArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let pending = crate::output::PendingOutput::create(&args.output, args.force, 0o600)?;
    let mut w = pending.writer()?;
    write_sample_disk(&mut w, args.size, args.seed)
        .with_context(|| format!("writing {}", args.output.display()))?;
    pending.commit(w)
}

/// `sdar sample-change`: change a sample disk in place as a VM would.
pub fn run_change(args: crate::cli::SampleChangeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata()?.len();
    let n = crate::sample::change_sample_disk(&file, size, args.percent, args.seed)?;
    file.sync_all()?;
    println!("changed {n} blocks of 64 KiB");
    Ok(())
}
