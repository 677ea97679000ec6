//! The block index: one INDX record per segment of blocks, and the DIRS
//! record that lists them (SPEC.md §7 "INDX record", §8 "DIRS record").

use crate::error::{Error, Hash, Result};
use crate::header::ImageHeader;
use crate::identity::ZeroHashes;
use crate::layout::*;
use crate::record::{le_u32, le_u64};
use std::path::Path;

/// What the index knows about one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// blake3-256 of the uncompressed block.
    pub hash: Hash,
    /// Bytes of the compressed member in the file.
    pub member_len: u32,
    /// CRC-32 of those member bytes, so any change to them is caught even
    /// where the decompressor would not notice (padding bits).
    pub member_crc: u32,
    /// The block is all zeros.
    pub zero: bool,
}

/// One INDX record: the entries for a run of consecutive blocks whose
/// members are stored back to back from `data_offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSegment {
    pub segment: u64,
    /// File offset of the first block's member.
    pub data_offset: u64,
    pub entries: Vec<BlockEntry>,
    /// File offset of each member, derived from `data_offset` and lengths.
    offsets: Vec<u64>,
}

impl IndexSegment {
    pub(crate) fn new(segment: u64, data_offset: u64, entries: Vec<BlockEntry>) -> Self {
        let mut offsets = Vec::with_capacity(entries.len());
        let mut at = data_offset;
        for e in &entries {
            offsets.push(at);
            at += e.member_len as u64;
        }
        IndexSegment {
            segment,
            data_offset,
            entries,
            offsets,
        }
    }

    /// File offset of the member of the `i`-th block of this segment.
    pub fn member_offset(&self, i: usize) -> u64 {
        self.offsets[i]
    }

    /// File offset just past the last member: where the INDX record starts.
    pub fn data_end(&self) -> u64 {
        match (self.offsets.last(), self.entries.last()) {
            (Some(o), Some(e)) => o + e.member_len as u64,
            _ => self.data_offset,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(INDEX_HEADER_LEN + self.entries.len() * INDEX_ENTRY_LEN);
        b.extend_from_slice(&self.segment.to_le_bytes());
        b.extend_from_slice(&self.data_offset.to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for e in &self.entries {
            b.extend_from_slice(&e.hash);
            let flags = if e.zero { ENTRY_FLAG_ZERO } else { 0 };
            b.extend_from_slice(&(e.member_len | flags).to_le_bytes());
            b.extend_from_slice(&e.member_crc.to_le_bytes());
        }
        b
    }

    /// Parses the INDX body at `offset` and checks it against the header:
    /// the right segment, the right count, plausible member lengths, zero
    /// flags that agree with the hashes, and no arithmetic overflow.
    pub(crate) fn decode(
        file: &Path,
        offset: u64,
        body: &[u8],
        header: &ImageHeader,
        expected_segment: u64,
        zero: &ZeroHashes,
    ) -> Result<Self> {
        let corrupt = |what: String| {
            Error::corrupt(
                file,
                offset,
                format!("INDX record of segment {expected_segment}: {what}"),
            )
        };
        if body.len() < INDEX_HEADER_LEN {
            return Err(corrupt("shorter than its header".into()));
        }
        let segment = le_u64(body, INDEX_SEGMENT_OFFSET);
        if segment != expected_segment {
            return Err(corrupt(format!("it says it is segment {segment}")));
        }
        let data_offset = le_u64(body, INDEX_DATA_OFFSET_OFFSET);
        let count = le_u32(body, INDEX_COUNT_OFFSET);
        if le_u32(body, INDEX_RESERVED_OFFSET) != 0 {
            return Err(corrupt("reserved bytes are not zero".into()));
        }
        let expected_count = header.segment_len(segment);
        if count != expected_count {
            return Err(corrupt(format!(
                "holds {count} blocks, the image shape says {expected_count}"
            )));
        }
        if body.len() != INDEX_HEADER_LEN + count as usize * INDEX_ENTRY_LEN {
            return Err(corrupt(format!(
                "is {} bytes, {count} entries need {}",
                body.len(),
                INDEX_HEADER_LEN + count as usize * INDEX_ENTRY_LEN
            )));
        }
        let first_block = segment * header.segment_blocks as u64;
        let mut entries = Vec::with_capacity(count as usize);
        let mut end = data_offset;
        for (i, raw) in body[INDEX_HEADER_LEN..]
            .chunks_exact(INDEX_ENTRY_LEN)
            .enumerate()
        {
            let block = first_block + i as u64;
            let hash: Hash = raw[ENTRY_HASH_OFFSET..32].try_into().expect("32 bytes");
            let len_flags = le_u32(raw, ENTRY_LEN_FLAGS_OFFSET);
            if len_flags & ENTRY_FLAGS_RESERVED != 0 {
                return Err(corrupt(format!("block {block}: reserved flag bits set")));
            }
            let member_len = len_flags & ENTRY_LEN_MASK;
            let block_len = header.block_len(block);
            let bound = header.codec.member_bound(block_len);
            if member_len == 0 || member_len as usize > bound {
                return Err(corrupt(format!(
                    "block {block}: member length {member_len} is outside 1..={bound}"
                )));
            }
            let is_zero = len_flags & ENTRY_FLAG_ZERO != 0;
            if is_zero != (hash == zero.get(block_len)) {
                return Err(corrupt(format!(
                    "block {block}: zero flag disagrees with its hash"
                )));
            }
            end = end
                .checked_add(member_len as u64)
                .ok_or_else(|| corrupt("member offsets overflow".into()))?;
            entries.push(BlockEntry {
                hash,
                member_len,
                member_crc: le_u32(raw, ENTRY_MEMBER_CRC_OFFSET),
                zero: is_zero,
            });
        }
        if end != offset {
            return Err(corrupt(format!(
                "its members run from byte {data_offset} to {end}, but the record itself is at {offset}"
            )));
        }
        Ok(IndexSegment::new(segment, data_offset, entries))
    }
}

/// The DIRS record: the file offset of every INDX record.
pub(crate) fn encode_directory(index_offsets: &[u64]) -> Vec<u8> {
    let mut b =
        Vec::with_capacity(DIRECTORY_HEADER_LEN + index_offsets.len() * DIRECTORY_ENTRY_LEN);
    b.extend_from_slice(&(index_offsets.len() as u64).to_le_bytes());
    for o in index_offsets {
        b.extend_from_slice(&o.to_le_bytes());
    }
    b
}

pub(crate) fn decode_directory(
    file: &Path,
    offset: u64,
    body: &[u8],
    segment_count: u64,
) -> Result<Vec<u64>> {
    let corrupt = |what: String| Error::corrupt(file, offset, format!("DIRS record: {what}"));
    if body.len() < DIRECTORY_HEADER_LEN {
        return Err(corrupt("shorter than its header".into()));
    }
    let n = le_u64(body, 0);
    if n != segment_count {
        return Err(corrupt(format!(
            "lists {n} segments, the image has {segment_count}"
        )));
    }
    if (body.len() - DIRECTORY_HEADER_LEN) as u64 != n.saturating_mul(DIRECTORY_ENTRY_LEN as u64) {
        return Err(corrupt(format!(
            "is {} bytes, {n} entries need {}",
            body.len(),
            DIRECTORY_HEADER_LEN as u64 + n.saturating_mul(8)
        )));
    }
    let offsets: Vec<u64> = body[DIRECTORY_HEADER_LEN..]
        .chunks_exact(DIRECTORY_ENTRY_LEN)
        .map(|c| le_u64(c, 0))
        .collect();
    if offsets.windows(2).any(|w| w[0] >= w[1]) || offsets.last().is_some_and(|&o| o >= offset) {
        return Err(corrupt(
            "segment offsets are not increasing and before the directory".into(),
        ));
    }
    Ok(offsets)
}
