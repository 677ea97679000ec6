//! The restore runtime embedded at build time (see build.rs).

/// The static restore program every delta archive starts with.
pub static RUNTIME: &[u8] = include_bytes!(env!("SDAR_STUB_PATH"));

/// Says whether the restore program at the front of the archive at `path`
/// is byte-identical to this sdar's, by blake3, without running it: on a
/// terminal or not, a different one is warned about loudly. Returns true
/// when it is genuine.
pub fn check_genuine(path: &std::path::Path, quiet: bool) -> anyhow::Result<bool> {
    use anyhow::Context;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let delta = archive_format::DeltaArchive::open(file, path, &archive_format::Limits::default())?;
    let len = delta.runtime_len();
    let theirs = blake3::Hash::from(delta.runtime_hash()?);
    let ours = blake3::hash(RUNTIME);
    let genuine = len == RUNTIME.len() as u64 && theirs == ours;
    let version = env!("CARGO_PKG_VERSION");
    if genuine {
        if !quiet {
            eprintln!(
                "runtime: genuine: byte-identical to the restore program of this sdar {version} (blake3 {})",
                theirs.to_hex()
            );
        }
    } else {
        let name = path.display();
        eprintln!(
            "WARNING: the restore program inside {name} is NOT the one this sdar {version} builds."
        );
        eprintln!("  its blake3:   {} ({len} bytes)", theirs.to_hex());
        eprintln!(
            "  this sdar's:  {} ({} bytes)",
            ours.to_hex(),
            RUNTIME.len()
        );
        eprintln!(
            "  It may come from another sdar version, or it may have been altered. Do not run it;"
        );
        eprintln!("  restore with `sdar restore {name}` instead, which reads the payload and never runs the archive.");
    }
    Ok(genuine)
}
