//! Delta archives: the restore runtime with a payload appended. The payload
//! names the full it needs by identity and stores only the blocks that
//! differ from it (SPEC.md §13–§19).
//!
//! Payload layout: DHED, META, then groups of changed-block members each
//! followed by its DMAP record, then DDIR and DFOT; the archive ends with
//! the 32-byte trailer.

mod read;
mod write;

use crate::codec::Codec;
use crate::error::{Error, Hash, Result};
use crate::layout::*;
use crate::limits::Limits;
use crate::record::{le_u32, le_u64};
use std::path::Path;

pub use read::DeltaArchive;
pub(crate) use read::{map_digest, patch_len};
pub use write::{write_delta, DeltaOptions, DeltaSummary, DeltaWriter};

/// The fixed facts of a delta: the image it rebuilds and the full it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaHeader {
    pub version_major: u16,
    pub version_minor: u16,
    pub compat_flags: u32,
    /// Incompatible flags (SPEC.md §15): only `INCOMPAT_AUTH` is known.
    pub incompat_flags: u32,
    /// How DATA and PATCH members are compressed.
    pub codec: Codec,
    pub block_size: u32,
    /// Most changed-block entries one DMAP record holds.
    pub map_entries: u32,
    /// Size of the image the delta rebuilds.
    pub image_size: u64,
    /// Size of the full image it needs.
    pub base_image_size: u64,
    /// Identity of the full image it needs (SPEC.md §10).
    pub base_identity: Hash,
}

impl DeltaHeader {
    /// The header of a new delta of this version of the format, without
    /// AUTH (a writer given a key sets it) and with the default number of
    /// entries per change map.
    pub fn new(
        codec: Codec,
        block_size: u32,
        image_size: u64,
        base_image_size: u64,
        base_identity: Hash,
    ) -> Self {
        DeltaHeader {
            version_major: VERSION_MAJOR,
            version_minor: VERSION_MINOR,
            compat_flags: 0,
            incompat_flags: 0,
            codec,
            block_size,
            map_entries: DEFAULT_MAP_ENTRIES,
            image_size,
            base_image_size,
            base_identity,
        }
    }

    pub fn block_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size as u64)
    }

    /// The archive carries an AUTH record (SPEC.md §18.1).
    pub fn has_auth(&self) -> bool {
        self.incompat_flags & INCOMPAT_AUTH != 0
    }

    /// Marks a new archive as carrying an AUTH record: a 1.1 feature.
    pub(crate) fn set_auth(&mut self) {
        self.incompat_flags |= INCOMPAT_AUTH;
        self.version_minor = VERSION_MINOR_AUTH;
    }

    pub fn block_len(&self, block: u64) -> usize {
        (self.image_size - block * self.block_size as u64).min(self.block_size as u64) as usize
    }

    /// The length of block `block` of the base image, if it has one.
    pub fn base_block_len(&self, block: u64) -> Option<usize> {
        let start = block.checked_mul(self.block_size as u64)?;
        (start < self.base_image_size)
            .then(|| (self.base_image_size - start).min(self.block_size as u64) as usize)
    }

    /// True when an unchanged block `block` can be taken from the base:
    /// the base has a block there of the same length.
    pub fn base_has_same_block(&self, block: u64) -> bool {
        self.base_block_len(block) == Some(self.block_len(block))
    }

    /// Pages a PATCH can name for this block size, or 0 when PATCH is not
    /// possible (blocks larger than 32 pages).
    pub fn patch_pages(&self) -> usize {
        let pages = (self.block_size as usize).div_ceil(PATCH_PAGE);
        if pages <= PATCH_MAX_PAGES {
            pages
        } else {
            0
        }
    }

    /// True when `pages` is a PATCH mask block `block` may carry (SPEC.md
    /// §16.1): not empty, no bit for a page at or past the block's end (a
    /// short last block has fewer pages), and the base has a block of the
    /// same length to patch.
    pub fn patch_mask_fits(&self, block: u64, pages: u32) -> bool {
        if self.patch_pages() == 0 || pages == 0 || !self.base_has_same_block(block) {
            return false;
        }
        let in_block = self.block_len(block).div_ceil(PATCH_PAGE);
        in_block >= 32 || pages >> in_block == 0
    }

    pub(crate) fn encode(&self) -> [u8; DHED_LEN] {
        let mut b = [0u8; DHED_LEN];
        b[HEAD_MAGIC_OFFSET..8].copy_from_slice(&FILE_MAGIC);
        b[HEAD_VERSION_MAJOR_OFFSET..][..2].copy_from_slice(&self.version_major.to_le_bytes());
        b[HEAD_VERSION_MINOR_OFFSET..][..2].copy_from_slice(&self.version_minor.to_le_bytes());
        b[HEAD_INCOMPAT_FLAGS_OFFSET..][..4].copy_from_slice(&self.incompat_flags.to_le_bytes());
        b[HEAD_COMPAT_FLAGS_OFFSET..][..4].copy_from_slice(&self.compat_flags.to_le_bytes());
        b[HEAD_KIND_OFFSET] = KIND_DELTA;
        b[HEAD_CODEC_OFFSET] = self.codec.to_byte();
        b[DHED_BLOCK_SIZE_OFFSET..][..4].copy_from_slice(&self.block_size.to_le_bytes());
        b[DHED_MAP_ENTRIES_OFFSET..][..4].copy_from_slice(&self.map_entries.to_le_bytes());
        b[DHED_IMAGE_SIZE_OFFSET..][..8].copy_from_slice(&self.image_size.to_le_bytes());
        b[DHED_BASE_IMAGE_SIZE_OFFSET..][..8].copy_from_slice(&self.base_image_size.to_le_bytes());
        b[DHED_BASE_IDENTITY_OFFSET..][..32].copy_from_slice(&self.base_identity);
        b
    }

    pub(crate) fn decode(file: &Path, offset: u64, body: &[u8], limits: &Limits) -> Result<Self> {
        let corrupt = |what: String| Error::corrupt(file, offset, format!("DHED record: {what}"));
        let (major, minor) = crate::header::check_preamble(file, offset, body, "DHED", DHED_LEN)?;
        if body[HEAD_KIND_OFFSET] != KIND_DELTA {
            return Err(corrupt(format!(
                "kind {} is not a delta",
                body[HEAD_KIND_OFFSET]
            )));
        }
        let codec =
            Codec::from_byte(body[HEAD_CODEC_OFFSET]).ok_or_else(|| Error::UnsupportedFeature {
                file: file.to_path_buf(),
                what: format!("codec {}", body[HEAD_CODEC_OFFSET]),
            })?;
        if body[HEAD_RESERVED1_OFFSET..HEAD_RESERVED1_OFFSET + 2] != [0, 0]
            || body[DHED_RESERVED2_OFFSET..DHED_LEN]
                .iter()
                .any(|&b| b != 0)
        {
            return Err(corrupt("reserved bytes are not zero".into()));
        }
        let block_size = le_u32(body, DHED_BLOCK_SIZE_OFFSET);
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(corrupt(format!("block size {block_size} is not allowed")));
        }
        let map_entries = le_u32(body, DHED_MAP_ENTRIES_OFFSET);
        if map_entries == 0 || map_entries > MAX_MAP_ENTRIES {
            return Err(corrupt(format!(
                "map_entries {map_entries} is outside 1..={MAX_MAP_ENTRIES}"
            )));
        }
        let image_size = le_u64(body, DHED_IMAGE_SIZE_OFFSET);
        let base_image_size = le_u64(body, DHED_BASE_IMAGE_SIZE_OFFSET);
        for size in [image_size, base_image_size] {
            if size > limits.max_image_size {
                return Err(Error::LimitExceeded {
                    file: file.to_path_buf(),
                    what: "image size",
                    value: size,
                    limit: limits.max_image_size,
                });
            }
        }
        Ok(DeltaHeader {
            version_major: major,
            version_minor: minor,
            compat_flags: le_u32(body, HEAD_COMPAT_FLAGS_OFFSET),
            incompat_flags: le_u32(body, HEAD_INCOMPAT_FLAGS_OFFSET),
            codec,
            block_size,
            map_entries,
            image_size,
            base_image_size,
            base_identity: body[DHED_BASE_IDENTITY_OFFSET..][..32]
                .try_into()
                .expect("32 bytes"),
        })
    }
}

/// How a changed block is stored (SPEC.md §16.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The member holds the whole block.
    Data,
    /// The block is all zeros; there is no member.
    Zero,
    /// The member holds the pages set in the mask, in order; the other
    /// pages are the base's block at the same number.
    Patch { pages: u32 },
}

/// One changed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeEntry {
    pub block: u64,
    pub kind: ChangeKind,
    /// Offset of the member from the start of the payload.
    pub data_offset: u64,
    pub member_len: u32,
    pub member_crc: u32,
    /// blake3 of the new block.
    pub hash: Hash,
}

impl ChangeEntry {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (kind, pages) = match self.kind {
            ChangeKind::Data => (ENTRY_KIND_DATA, 0),
            ChangeKind::Zero => (ENTRY_KIND_ZERO, 0),
            ChangeKind::Patch { pages } => (ENTRY_KIND_PATCH, pages),
        };
        out.extend_from_slice(&self.block.to_le_bytes());
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&pages.to_le_bytes());
        out.extend_from_slice(&self.data_offset.to_le_bytes());
        out.extend_from_slice(&self.member_len.to_le_bytes());
        out.extend_from_slice(&self.member_crc.to_le_bytes());
        out.extend_from_slice(&self.hash);
    }

    /// Parses one entry; `corrupt` builds the error with the record's offset.
    pub(crate) fn decode(raw: &[u8], corrupt: &dyn Fn(String) -> Error) -> Result<Self> {
        let block = le_u64(raw, DMAP_ENTRY_BLOCK_OFFSET);
        let pages = le_u32(raw, DMAP_ENTRY_PAGES_OFFSET);
        if raw[DMAP_ENTRY_KIND_OFFSET + 1..DMAP_ENTRY_PAGES_OFFSET] != [0, 0, 0] {
            return Err(corrupt(format!(
                "block {block}: reserved bytes are not zero"
            )));
        }
        let kind = match raw[DMAP_ENTRY_KIND_OFFSET] {
            ENTRY_KIND_DATA if pages == 0 => ChangeKind::Data,
            ENTRY_KIND_ZERO if pages == 0 => ChangeKind::Zero,
            ENTRY_KIND_PATCH if pages != 0 => ChangeKind::Patch { pages },
            k => {
                return Err(corrupt(format!(
                    "block {block}: kind {k} with page mask {pages:#x} is not valid"
                )))
            }
        };
        Ok(ChangeEntry {
            block,
            kind,
            data_offset: le_u64(raw, DMAP_ENTRY_DATA_OFFSET_OFFSET),
            member_len: le_u32(raw, DMAP_ENTRY_MEMBER_LEN_OFFSET),
            member_crc: le_u32(raw, DMAP_ENTRY_MEMBER_CRC_OFFSET),
            hash: raw[DMAP_ENTRY_HASH_OFFSET..][..32]
                .try_into()
                .expect("32 bytes"),
        })
    }
}

/// The end of the payload: what the rebuilt image adds up to, and where
/// the map directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaFooter {
    /// Identity of the rebuilt image.
    pub identity: Hash,
    /// Payload offset of the DDIR record.
    pub directory_offset: u64,
    pub group_count: u64,
    /// Changed blocks in all DMAP records.
    pub entry_count: u64,
}

impl DeltaFooter {
    pub(crate) fn encode(&self) -> [u8; DFOT_LEN] {
        let mut b = [0u8; DFOT_LEN];
        b[DFOT_IDENTITY_OFFSET..][..32].copy_from_slice(&self.identity);
        b[DFOT_DIRECTORY_OFFSET_OFFSET..][..8]
            .copy_from_slice(&self.directory_offset.to_le_bytes());
        b[DFOT_GROUP_COUNT_OFFSET..][..8].copy_from_slice(&self.group_count.to_le_bytes());
        b[DFOT_ENTRY_COUNT_OFFSET..][..8].copy_from_slice(&self.entry_count.to_le_bytes());
        b
    }

    pub(crate) fn decode(file: &Path, offset: u64, body: &[u8]) -> Result<Self> {
        if body.len() != DFOT_LEN || le_u64(body, DFOT_RESERVED_OFFSET) != 0 {
            return Err(Error::corrupt(file, offset, "DFOT record is malformed"));
        }
        Ok(DeltaFooter {
            identity: body[..32].try_into().expect("32 bytes"),
            directory_offset: le_u64(body, DFOT_DIRECTORY_OFFSET_OFFSET),
            group_count: le_u64(body, DFOT_GROUP_COUNT_OFFSET),
            entry_count: le_u64(body, DFOT_ENTRY_COUNT_OFFSET),
        })
    }
}
