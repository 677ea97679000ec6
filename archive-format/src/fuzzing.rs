//! Entry points for the fuzz targets in `fuzz/`: each runs one parser on
//! arbitrary bytes. Not part of the stable API.

use crate::codec::Codec;
use crate::header::ImageHeader;
use crate::identity::ZeroHashes;
use crate::index::IndexSegment;
use crate::limits::Limits;
use crate::meta::Metadata;
use crate::{verify_full, FullImage, Result};
use std::io::Cursor;
use std::path::Path;

/// Parses an INDX body. The first byte picks the image shape (codec, block
/// size, segment length, image size) so the fuzzer reaches every check.
pub fn index_segment(data: &[u8]) -> Result<()> {
    let Some((&shape, body)) = data.split_first() else {
        return Ok(());
    };
    let codec = if shape & 1 == 0 {
        Codec::Gzip
    } else {
        Codec::Zstd
    };
    let block_size = 4096u32 << (shape >> 1 & 7);
    let segment_blocks = 1 + (shape >> 4) as u32;
    let image_size = (segment_blocks as u64 * 3 - 1) * block_size as u64 - (shape as u64 * 7);
    let header = ImageHeader::new(codec, block_size, segment_blocks, image_size)?;
    let zero = ZeroHashes::new(block_size, image_size);
    let segment = if body.len() >= 8 {
        body[0] as u64 % 3
    } else {
        0
    };
    let seg = IndexSegment::decode(Path::new("fuzz"), 1 << 20, body, &header, segment, &zero)?;
    let _ = seg.data_end();
    Ok(())
}

/// Parses a META body.
pub fn metadata(data: &[u8]) -> Result<()> {
    Metadata::decode(Path::new("fuzz"), 0, data, &Limits::default()).map(|_| ())
}

/// Opens arbitrary bytes as a full image and verifies it on one thread.
pub fn open_and_verify(data: &[u8]) -> Result<()> {
    let mut image = FullImage::open(Cursor::new(data), "fuzz", &Limits::default())?;
    for s in 0..image.segment_count() {
        image.index_segment(s)?;
    }
    verify_full(&mut image, 1, &mut |_| {}).map(|_| ())
}

/// Parses a VMDK descriptor.
pub fn descriptor(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = crate::vmdk::parse_descriptor(text) {
            let _ = (d.size(), d.geometry(), d.adapter_type());
        }
    }
}
