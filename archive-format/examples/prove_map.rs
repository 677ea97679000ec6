//! Times the map proof of a delta over its full (or of a full alone): the
//! step before any block is used, which reads the full's index and the
//! delta's change maps and no block data. `bench/run` uses it.
//!
//!     cargo run --release -p archive-format --example prove_map -- D.sdar FULL [RUNS]
//!     cargo run --release -p archive-format --example prove_map -- FULL.full.gz [RUNS]
//!
//! Prints the median of RUNS (default 5) proofs in milliseconds, each on
//! images opened afresh (the files themselves stay in the page cache), and
//! the bytes the proof read.

use archive_format::image::ProvenImage;
use archive_format::{DeltaArchive, FullImage, Limits, ReadAt};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A file that counts the bytes read from it.
struct Counted(File, AtomicU64);

impl ReadAt for Counted {
    fn size(&self) -> std::io::Result<u64> {
        self.0.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.1.fetch_add(buf.len() as u64, Ordering::Relaxed);
        ReadAt::read_exact_at(&self.0, buf, offset)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let is_delta = |p: &str| {
        File::open(p).is_ok_and(|f| DeltaArchive::open(f, p, &Limits::default()).is_ok())
    };
    let (delta, full, runs) = match args.as_slice() {
        [d, f, rest @ ..] if is_delta(d) => (Some(d.clone()), f.clone(), rest.first()),
        [f, rest @ ..] => (None, f.clone(), rest.first()),
        [] => return Err("usage: prove_map [DELTA] FULL [RUNS]".into()),
    };
    let runs: usize = runs.map(|r| r.parse()).transpose()?.unwrap_or(5).max(1);
    let mut times = Vec::new();
    let mut bytes = 0;
    let mut blocks = 0;
    for _ in 0..runs {
        let open = |p: &str| -> std::io::Result<Counted> { Ok(Counted(File::open(p)?, AtomicU64::new(0))) };
        let base_file = open(&full)?;
        let delta_file = delta.as_deref().map(open).transpose()?;
        let started = Instant::now();
        let base = FullImage::open(&base_file, &full, &Limits::default())?;
        blocks = match (&delta_file, &delta) {
            (Some(file), Some(path)) => {
                let d = DeltaArchive::open(file, path, &Limits::default())?;
                ProvenImage::of_delta(d, base)?.block_count()
            }
            _ => ProvenImage::of_full(base)?.block_count(),
        };
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        bytes = base_file.1.load(Ordering::Relaxed)
            + delta_file.map_or(0, |f| f.1.load(Ordering::Relaxed));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "map proof: {:.2} ms (median of {runs}), {blocks} blocks, {bytes} bytes read",
        times[times.len() / 2]
    );
    Ok(())
}
