//! Verify a full image and read one block from it, using only the library.
//!
//!     cargo run -p archive-format --example verify -- disk.full.gz [BLOCK]

use archive_format::{hex, verify_full, FullImage, Limits, MemberCheck};
use std::fs::File;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: verify FILE [BLOCK]")?;
    let image = FullImage::open(File::open(&path)?, &path, &Limits::default())?;
    let h = image.header().clone();
    println!(
        "{path}: {} image of {} bytes in {} blocks of {}",
        h.codec.name(),
        h.image_size,
        h.block_count(),
        h.block_size
    );
    let report = verify_full(&image, 0, &mut |_| {})?;
    println!(
        "verified: {} blocks, {} zero, identity {}",
        report.blocks,
        report.zero_blocks,
        hex(&report.identity)
    );

    if let Some(block) = args.next() {
        let block: u64 = block.parse()?;
        let mut check = MemberCheck::new(h.codec, &h)?;
        let mut data = Vec::new();
        image.read_block(block, &mut data, &mut check)?;
        println!(
            "block {block}: {} bytes, blake3 {}",
            data.len(),
            hex(&archive_format::block_hash(&data))
        );
    }
    Ok(())
}
