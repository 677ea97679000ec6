//! The HEAD record: what kind of file this is and the shape of its image
//! (SPEC.md §5 "HEAD record").

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::limits::Limits;
use crate::record::{le_u16, le_u32, le_u64};
use std::path::Path;

/// The fixed facts about an image, known before its first block is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub version_major: u16,
    pub version_minor: u16,
    /// Compatible flags found in the file (ignored by this reader).
    pub compat_flags: u32,
    /// Incompatible flags (SPEC.md §5): only `INCOMPAT_AUTH` is known.
    pub incompat_flags: u32,
    pub codec: Codec,
    /// Bytes per block; every block but the last is exactly this long.
    pub block_size: u32,
    /// Blocks described by one INDX record (the last may describe fewer).
    pub segment_blocks: u32,
    /// Bytes in the uncompressed image.
    pub image_size: u64,
}

impl ImageHeader {
    /// A header for a new image; checks that the shape is one the format allows.
    pub fn new(
        codec: Codec,
        block_size: u32,
        segment_blocks: u32,
        image_size: u64,
    ) -> Result<Self> {
        check_block_size(block_size).map_err(Error::invalid)?;
        if segment_blocks == 0 || segment_blocks > MAX_SEGMENT_BLOCKS {
            return Err(Error::invalid(format!(
                "segment_blocks {segment_blocks} must be between 1 and {MAX_SEGMENT_BLOCKS}"
            )));
        }
        // An image no reader would open is not worth writing.
        let limit = Limits::default().max_image_size;
        if image_size > limit {
            return Err(Error::invalid(format!(
                "image size {image_size} is above the limit of {limit} bytes"
            )));
        }
        Ok(ImageHeader {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            compat_flags: 0,
            incompat_flags: 0,
            codec,
            block_size,
            segment_blocks,
            image_size,
        })
    }

    pub fn block_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size as u64)
    }

    /// The file carries an AUTH record (SPEC.md §9.1).
    pub fn has_auth(&self) -> bool {
        self.incompat_flags & INCOMPAT_AUTH != 0
    }

    /// Marks a new image as carrying an AUTH record: a 1.1 feature.
    pub(crate) fn set_auth(&mut self) {
        self.incompat_flags |= INCOMPAT_AUTH;
        self.version_minor = VERSION_MINOR_AUTH;
    }

    pub fn segment_count(&self) -> u64 {
        self.block_count().div_ceil(self.segment_blocks as u64)
    }

    /// The length of block `block` (the last one may be short).
    pub fn block_len(&self, block: u64) -> usize {
        let start = block * self.block_size as u64;
        (self.image_size - start).min(self.block_size as u64) as usize
    }

    /// How many blocks segment `segment` describes.
    pub fn segment_len(&self, segment: u64) -> u32 {
        let first = segment * self.segment_blocks as u64;
        (self.block_count() - first).min(self.segment_blocks as u64) as u32
    }

    pub(crate) fn encode(&self) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[HEAD_MAGIC_OFFSET..8].copy_from_slice(&FILE_MAGIC);
        b[HEAD_VERSION_MAJOR_OFFSET..][..2].copy_from_slice(&self.version_major.to_le_bytes());
        b[HEAD_VERSION_MINOR_OFFSET..][..2].copy_from_slice(&self.version_minor.to_le_bytes());
        b[HEAD_INCOMPAT_FLAGS_OFFSET..][..4].copy_from_slice(&self.incompat_flags.to_le_bytes());
        b[HEAD_COMPAT_FLAGS_OFFSET..][..4].copy_from_slice(&self.compat_flags.to_le_bytes());
        b[HEAD_KIND_OFFSET] = KIND_FULL_IMAGE;
        b[HEAD_CODEC_OFFSET] = self.codec.to_byte();
        b[HEAD_BLOCK_SIZE_OFFSET..][..4].copy_from_slice(&self.block_size.to_le_bytes());
        b[HEAD_SEGMENT_BLOCKS_OFFSET..][..4].copy_from_slice(&self.segment_blocks.to_le_bytes());
        b[HEAD_IMAGE_SIZE_OFFSET..][..8].copy_from_slice(&self.image_size.to_le_bytes());
        b
    }

    /// Parses and checks a HEAD body found in `file` at `offset`.
    pub(crate) fn decode(
        file: &Path,
        offset: u64,
        body: &[u8],
        container: Codec,
        limits: &Limits,
    ) -> Result<Self> {
        let (major, minor) = check_preamble(file, offset, body, "HEAD", HEAD_LEN)?;
        let corrupt = |what: String| Error::corrupt(file, offset, what);
        let compat_flags = le_u32(body, HEAD_COMPAT_FLAGS_OFFSET);
        if body[HEAD_KIND_OFFSET] != KIND_FULL_IMAGE {
            return Err(Error::UnsupportedFeature {
                file: file.to_path_buf(),
                what: format!("file kind {}", body[HEAD_KIND_OFFSET]),
            });
        }
        let codec =
            Codec::from_byte(body[HEAD_CODEC_OFFSET]).ok_or_else(|| Error::UnsupportedFeature {
                file: file.to_path_buf(),
                what: format!("codec {}", body[HEAD_CODEC_OFFSET]),
            })?;
        if codec != container {
            return Err(corrupt(format!(
                "HEAD says codec {} but the file is a {} container",
                codec.name(),
                container.name()
            )));
        }
        if body[HEAD_RESERVED1_OFFSET..HEAD_BLOCK_SIZE_OFFSET] != [0, 0]
            || body[HEAD_RESERVED2_OFFSET..HEAD_LEN]
                .iter()
                .any(|&b| b != 0)
        {
            return Err(corrupt("HEAD record: reserved bytes are not zero".into()));
        }
        let block_size = le_u32(body, HEAD_BLOCK_SIZE_OFFSET);
        check_block_size(block_size).map_err(corrupt)?;
        let segment_blocks = le_u32(body, HEAD_SEGMENT_BLOCKS_OFFSET);
        if segment_blocks == 0 || segment_blocks > MAX_SEGMENT_BLOCKS {
            return Err(corrupt(format!(
                "segment_blocks {segment_blocks} is outside 1..={MAX_SEGMENT_BLOCKS}"
            )));
        }
        let image_size = le_u64(body, HEAD_IMAGE_SIZE_OFFSET);
        if image_size > limits.max_image_size {
            return Err(Error::LimitExceeded {
                file: file.to_path_buf(),
                what: "image size",
                value: image_size,
                limit: limits.max_image_size,
            });
        }
        Ok(ImageHeader {
            version_major: major,
            version_minor: minor,
            compat_flags,
            incompat_flags: le_u32(body, HEAD_INCOMPAT_FLAGS_OFFSET),
            codec,
            block_size,
            segment_blocks,
            image_size,
        })
    }
}

fn check_block_size(block_size: u32) -> std::result::Result<(), String> {
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(format!(
            "block size {block_size} must be a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
        ));
    }
    Ok(())
}

/// The checks every header body (HEAD, DHED) starts with, in this order so
/// that each error says the most useful thing: the file magic, the major
/// version, the length this version needs (`len`; a later minor version may
/// be longer), and no unknown incompatible flag. Returns the version.
pub(crate) fn check_preamble(
    file: &Path,
    offset: u64,
    body: &[u8],
    what: &str,
    len: usize,
) -> Result<(u16, u16)> {
    if body.len() < FILE_MAGIC.len() || body[..FILE_MAGIC.len()] != FILE_MAGIC {
        return Err(Error::BadMagic {
            file: file.to_path_buf(),
            offset,
            found: body[..body.len().min(FILE_MAGIC.len())].to_vec(),
        });
    }
    if body.len() < HEAD_INCOMPAT_FLAGS_OFFSET {
        return Err(Error::corrupt(
            file,
            offset,
            format!("{what} record too short to hold a version"),
        ));
    }
    let major = le_u16(body, HEAD_VERSION_MAJOR_OFFSET);
    let minor = le_u16(body, HEAD_VERSION_MINOR_OFFSET);
    if major != VERSION_MAJOR {
        return Err(Error::UnsupportedVersion {
            file: file.to_path_buf(),
            major,
            minor,
        });
    }
    if body.len() < len {
        return Err(Error::corrupt(
            file,
            offset,
            format!("{what} record body is {} bytes, expected {len}", body.len()),
        ));
    }
    let incompat = le_u32(body, HEAD_INCOMPAT_FLAGS_OFFSET);
    if incompat & !INCOMPAT_FLAGS_KNOWN != 0 {
        return Err(Error::UnsupportedFeature {
            file: file.to_path_buf(),
            what: format!("incompatible flags {incompat:#x}"),
        });
    }
    Ok((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_larger_than_readers_accept_is_refused() {
        let limit = Limits::default().max_image_size;
        assert!(ImageHeader::new(Codec::Zstd, 65536, 1024, limit).is_ok());
        let err = ImageHeader::new(Codec::Zstd, 65536, 1024, limit + 1).unwrap_err();
        assert!(err.to_string().contains("above the limit"), "{err}");
    }
}
