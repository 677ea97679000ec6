//! Entry points for the fuzz targets in `fuzz/`: each runs one parser on
//! arbitrary bytes (or, for `delta_verify`, a full and a delta cut from
//! them). Not part of the stable API.

use crate::codec::Codec;
use crate::delta::DeltaArchive;
use crate::full::FullStream;
use crate::header::ImageHeader;
use crate::identity::ZeroHashes;
use crate::image::ProvenImage;
use crate::index::IndexSegment;
use crate::layout::*;
use crate::limits::Limits;
use crate::meta::Metadata;
use crate::restore::{restore, restore_stream, DiscardSink};
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
    let image = FullImage::open(Cursor::new(data), "fuzz", &Limits::default())?;
    for s in 0..image.segment_count() {
        image.index_segment(s)?;
    }
    verify_full(&image, 1, &mut |_| {}).map(|_| ())
}

/// Opens arbitrary bytes as a delta archive (trailer, DHED, META, DFOT,
/// DDIR), then reads every DMAP record, checks where the last one ends and
/// reads every member; then does the same with every checksum recomputed
/// (see `with_delta_checksums`). Returns the first error.
pub fn delta_open(data: &[u8]) -> Result<()> {
    let as_is = open_delta(data);
    match with_delta_checksums(data) {
        Some(fixed) => as_is.and(open_delta(&fixed)),
        None => as_is,
    }
}

/// Every group is tried even after one fails, since each is found through
/// the directory.
fn open_delta(data: &[u8]) -> Result<()> {
    let delta = DeltaArchive::open(Cursor::new(data), "fuzz", &Limits::default())?;
    let mut first_error = None;
    for g in 0..delta.group_count() {
        let read = delta.group(g).and_then(|entries| {
            entries
                .iter()
                .try_for_each(|e| delta.read_member(e).map(|_| ()))
        });
        if let Err(e) = read {
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = delta.check_layout_end() {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}

/// Restores a delta from its full, discarding the image: the input is a u32
/// (little-endian) length, that many bytes of full image, and the delta
/// archive in the rest (its runtime may be empty: the trailer says where
/// the payload starts, SPEC.md §13). The full is read both as a stream
/// (standard input, proven as it passes) and as a seekable file whose map
/// must be proven first (`ProvenImage::of_delta`), as every caller of
/// `restore` does.
/// Then all of it again with the delta's checksums recomputed.
pub fn delta_verify(data: &[u8]) -> Result<()> {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return Ok(());
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (full, delta) = rest.split_at(len);
    let as_is = restore_delta(full, delta);
    match with_delta_checksums(delta) {
        Some(fixed) => as_is.and(restore_delta(full, &fixed)),
        None => as_is,
    }
}

fn restore_delta(full: &[u8], delta: &[u8]) -> Result<()> {
    let limits = Limits::default();
    let full_name = Path::new("fuzz.full");
    let delta = DeltaArchive::open(Cursor::new(delta), "fuzz.sdar", &limits)?;
    let streamed = FullStream::open(full, full_name, &limits).and_then(|stream| {
        restore_stream(
            &delta,
            stream,
            full_name,
            &mut DiscardSink,
            None,
            &mut |_| {},
        )
    });
    let seeked = FullImage::open(Cursor::new(full), full_name, &limits).and_then(|base| {
        let image = ProvenImage::of_delta(delta.by_ref(), base)?;
        restore(
            &image,
            &mut DiscardSink,
            1,
            None,
            &mut |_| {},
            &crate::Cancel::new(),
        )
    });
    streamed.and(seeked).map(|_| ())
}

/// A copy of a delta archive with every checksum recomputed wherever its
/// bytes place one: the trailer's (SPEC.md §13), each record's (DHED, META,
/// DFOT, DDIR, every DMAP the directory lists; §4) and each member's in the
/// DMAP entries (§16.1). Without it almost every mutation inside a record
/// fails a CRC, and the fuzzer never reaches the checks behind them. `None`
/// when nothing changed (or there is no trailer). Never panics, and hashes
/// at most a few times the input's length. The fuzzer's own CRC failures
/// still come through: the input is also parsed as it is.
fn with_delta_checksums(data: &[u8]) -> Option<Vec<u8>> {
    let trailer_at = data.len().checked_sub(TRAILER_LEN)?;
    let mut fixed = data.to_vec();
    let crc = crc32fast::hash(&data[trailer_at..trailer_at + TRAILER_CRC_OFFSET]);
    fixed[trailer_at + TRAILER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    let base = u64_at(data, trailer_at + TRAILER_PAYLOAD_OFFSET_OFFSET)?;
    // Records and members before the trailer only, so it stays as fixed.
    let payload = &mut fixed[..trailer_at];
    let at = |rel: u64| base.checked_add(rel).and_then(|a| usize::try_from(a).ok());
    // Bytes of members and DMAP bodies to hash: bounds the work when many
    // entries point at the same bytes.
    let mut budget = data.len().saturating_mul(8);

    if let Some(meta_at) = at(0).and_then(|head| fix_record(payload, head)) {
        fix_record(payload, meta_at);
    }
    let foot_at = trailer_at.checked_sub(RECORD_HEADER_LEN + DFOT_LEN);
    let directory = foot_at.and_then(|foot| {
        fix_record(payload, foot)?;
        at(u64_at(
            payload,
            foot + RECORD_HEADER_LEN + DFOT_DIRECTORY_OFFSET_OFFSET,
        )?)
    });
    if let Some(dir_at) = directory {
        // A directory whose header is in the buffer starts before its end,
        // so offsets inside it cannot overflow.
        if let Some(dir_len) = u32_at(payload, dir_at.saturating_add(RECORD_BODY_LEN_OFFSET)) {
            let first = dir_at + RECORD_HEADER_LEN + DDIR_HEADER_LEN;
            let groups = (dir_len as usize).saturating_sub(DDIR_HEADER_LEN) / DDIR_ENTRY_LEN;
            for g in 0..groups {
                let Some(map_at) = u64_at(payload, first + g * DDIR_ENTRY_LEN).and_then(at) else {
                    break;
                };
                fix_map(payload, map_at, at, &mut budget);
            }
            fix_record(payload, dir_at);
        }
    }
    (fixed != data).then_some(fixed)
}

/// Recomputes the member CRCs of the DMAP record at `map_at`, then its own.
fn fix_map(
    payload: &mut [u8],
    map_at: usize,
    at: impl Fn(u64) -> Option<usize>,
    budget: &mut usize,
) -> Option<()> {
    // Its header is in the buffer, so offsets inside it cannot overflow.
    let body_len = u32_at(payload, map_at.checked_add(RECORD_BODY_LEN_OFFSET)?)? as usize;
    let entries = map_at.checked_add(RECORD_HEADER_LEN + DMAP_HEADER_LEN)?;
    for i in 0..body_len.saturating_sub(DMAP_HEADER_LEN) / DMAP_ENTRY_LEN {
        let entry = entries.checked_add(i.checked_mul(DMAP_ENTRY_LEN)?)?;
        let Some(member_len) = u32_at(payload, entry + DMAP_ENTRY_MEMBER_LEN_OFFSET) else {
            break;
        };
        let member_len = member_len as usize;
        let Some(start) = u64_at(payload, entry + DMAP_ENTRY_DATA_OFFSET_OFFSET).and_then(&at)
        else {
            continue;
        };
        if member_len == 0 || member_len > *budget {
            continue;
        }
        let Some(member) = start
            .checked_add(member_len)
            .and_then(|end| payload.get(start..end))
        else {
            continue;
        };
        *budget -= member_len;
        let crc = crc32fast::hash(member).to_le_bytes();
        let crc_at = entry + DMAP_ENTRY_MEMBER_CRC_OFFSET;
        let Some(slot) = payload.get_mut(crc_at..crc_at + 4) else {
            break;
        };
        slot.copy_from_slice(&crc);
    }
    *budget = budget.checked_sub(body_len)?;
    fix_record(payload, map_at).map(|_| ())
}

/// Recomputes the CRC of the record at `at` (SPEC.md §4) if all of it is in
/// `buf`, and returns where it ends.
fn fix_record(buf: &mut [u8], at: usize) -> Option<usize> {
    let body_at = at.checked_add(RECORD_HEADER_LEN)?;
    let end = body_at.checked_add(u32_at(buf, at + RECORD_BODY_LEN_OFFSET)? as usize)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(buf.get(at..at + RECORD_CRC_OFFSET)?);
    crc.update(buf.get(body_at..end)?);
    buf[at + RECORD_CRC_OFFSET..][..4].copy_from_slice(&crc.finalize().to_le_bytes());
    Some(end)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_le_bytes(*bytes))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..)?.first_chunk::<8>()?;
    Some(u64::from_le_bytes(*bytes))
}

/// Parses a VMDK descriptor.
pub fn descriptor(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = crate::vmdk::parse_descriptor(text) {
            let _ = (d.size(), d.geometry(), d.adapter_type());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{ChangeKind, DeltaHeader, DeltaWriter};
    use crate::identity::block_hash;

    const MEMBER: &[u8] = b"stands in for a zstd frame";

    /// A delta of three 4 KiB blocks, one entry per DMAP record: block 0
    /// DATA, block 2 ZERO. Members are not decompressed by `open_delta`.
    fn small_delta() -> (Vec<u8>, [u8; 32]) {
        let header = DeltaHeader {
            version_major: 1,
            version_minor: 0,
            compat_flags: 0,
            incompat_flags: 0,
            codec: Codec::Zstd,
            block_size: 4096,
            map_entries: 1,
            image_size: 3 * 4096,
            base_image_size: 3 * 4096,
            base_identity: [7; 32],
        };
        let mut w =
            DeltaWriter::new(Vec::new(), "t", b"runtime", header, &Metadata::default()).unwrap();
        let hash = block_hash(&[1; 4096]);
        w.push_change(0, ChangeKind::Data, MEMBER, hash).unwrap();
        w.push_change(2, ChangeKind::Zero, &[], block_hash(&[0; 4096]))
            .unwrap();
        (w.finish([9; 32]).unwrap().0, hash)
    }

    fn find(data: &[u8], what: &[u8]) -> usize {
        data.windows(what.len()).position(|w| w == what).unwrap()
    }

    #[test]
    fn a_valid_delta_needs_no_fixing() {
        let (delta, _) = small_delta();
        open_delta(&delta).unwrap();
        assert_eq!(with_delta_checksums(&delta), None);
    }

    #[test]
    fn changes_behind_checksums_are_made_readable() {
        let (delta, hash) = small_delta();
        let trailer_minor = delta.len() - TRAILER_LEN + TRAILER_VERSION_MINOR_OFFSET;
        for at in [find(&delta, MEMBER), find(&delta, &hash), trailer_minor] {
            let mut changed = delta.clone();
            changed[at] ^= 1;
            assert!(open_delta(&changed).is_err(), "byte {at}");
            let fixed = with_delta_checksums(&changed).unwrap();
            open_delta(&fixed).unwrap_or_else(|e| panic!("byte {at}: {e}"));
        }
    }

    /// Parsing itself is the fuzz targets' job, and their crash inputs are
    /// replayed by tests/fuzz_regressions.rs.
    #[test]
    fn fixing_never_panics() {
        let (delta, _) = small_delta();
        for len in 0..=delta.len() {
            let _ = with_delta_checksums(&delta[..len]);
            let _ = with_delta_checksums(&delta[delta.len() - len..]);
        }
        for at in 0..delta.len() {
            for value in [0, 0x80, 0xff] {
                let mut changed = delta.clone();
                changed[at] = value;
                let _ = with_delta_checksums(&changed);
            }
        }
    }
}
