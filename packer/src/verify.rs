//! `sdar verify`: prove a full image, write nothing.

use crate::cli::VerifyArgs;
use crate::output::print;
use crate::progress;
use anyhow::Result;
use archive_format::{hex, verify_full, FullImage, Limits};
use std::time::Instant;

pub fn run(args: VerifyArgs) -> Result<()> {
    // Refuses a FIFO or a device at once, and reads what it checked.
    let file =
        archive_format::input::open_input(&args.file, archive_format::input::InputKind::Regular)?;
    if crate::delta::is_delta(&file) {
        let genuine = crate::runtime::check_genuine(&args.file, args.run.quiet)?;
        if !genuine && args.require_genuine {
            return Err(anyhow::Error::new(crate::RuntimeExit(
                crate::EXIT_INTEGRITY,
            )));
        }
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        if let Some(f) = args
            .full
            .as_deref()
            .filter(|f| *f != std::path::Path::new("-"))
        {
            // A FIFO or a device is refused here, before the runtime opens it.
            archive_format::input::open_input(f, archive_format::input::InputKind::Regular)?;
        }
        if let Some(f) = &args.full {
            rest.extend(["--full".into(), f.into()]);
        }
        if let Some(k) = &args.key {
            rest.extend(["--key".into(), k.into()]);
        }
        rest.extend(["--threads".into(), args.run.threads.to_string().into()]);
        if args.run.quiet {
            rest.push("-q".into());
        }
        return crate::delta::run_runtime(&args.file, "verify", &rest);
    }
    let started = Instant::now();
    let image = FullImage::open(file, &args.file, &Limits::default())?;
    if let Some(key) = crate::key::read(args.key.as_deref())? {
        image.authenticate(&key)?;
        if !args.run.quiet {
            eprintln!(
                "authentic: made by a holder of the key (key id {})",
                hex(&key.id())
            );
        }
    }
    let pb = progress::bar(image.header().image_size, "verify", args.run.quiet);
    let report = verify_full(&image, args.run.threads, &mut |done| pb.set_position(done))?;
    pb.finish_and_clear();
    if !args.run.quiet {
        let secs = started.elapsed().as_secs_f64();
        print(&format!(
            "OK {}: {} blocks ({} zero), {} verified at {:.1} MiB/s\n  identity {}\n",
            args.file.display(),
            report.blocks,
            report.zero_blocks,
            progress::human(report.image_size),
            report.image_size as f64 / secs.max(1e-9) / (1 << 20) as f64,
            hex(&report.identity)
        ))?;
    }
    Ok(())
}
