//! Write a full image of a raw disk with the library alone.
//!
//!     cargo run -p archive-format --example write_full -- disk.raw disk.full.gz

use archive_format::{hex, write_full, FullOptions, FullWriter, Metadata};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        return Err("usage: write_full SOURCE.raw OUT.full.gz".into());
    };
    let source = File::open(src)?;
    let size = source.metadata()?.len();
    let meta = Metadata {
        disk_name: Some(src.clone()),
        tool: Some("archive-format example".into()),
        ..Metadata::default()
    };
    let out = BufWriter::new(File::create(dst)?);
    let writer = FullWriter::new(out, dst, &FullOptions::default(), size, &meta)?;
    let (_out, summary) = write_full(source, Path::new(src), writer, &mut |_| {})?;
    println!(
        "{dst}: {} blocks, {} bytes, identity {}",
        summary.blocks,
        summary.file_len,
        hex(&summary.identity)
    );
    Ok(())
}
