//! gzip container (SPEC.md §3.1 and §4.2): one gzip member per block, and
//! records in the extra field of empty members, which every gzip reader skips.

use crate::archive_file::RecordSource;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::record::{self, le_u16, le_u32};

pub(super) fn looks_like_record(first: &[u8]) -> bool {
    first.len() >= GZIP_RECORD_HEAD_LEN
        && first[..GZIP_RECORD_PREFIX.len()] == GZIP_RECORD_PREFIX
        && first[12..14] == GZIP_SUBFIELD_ID
}

pub(super) fn member_bound(block_len: usize) -> usize {
    // libdeflate's own bound is smaller; this one is the format's promise:
    // stored blocks cost 5 bytes per 65535, plus header and trailer.
    GZIP_MEMBER_HEADER.len()
        + block_len
        + 5 * (block_len / 65535 + 1)
        + GZIP_MEMBER_TRAILER_LEN
        + 64
}

pub(super) fn wrap_record(record: &[u8], out: &mut Vec<u8>) {
    let mut chunks = record.chunks(GZIP_MAX_FRAGMENT).peekable();
    if chunks.peek().is_none() {
        unreachable!("a record always has a header");
    }
    for fragment in chunks {
        let n = fragment.len() as u16;
        out.extend_from_slice(&GZIP_RECORD_PREFIX);
        out.extend_from_slice(&(n + 4).to_le_bytes());
        out.extend_from_slice(&GZIP_SUBFIELD_ID);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(fragment);
        out.extend_from_slice(&GZIP_RECORD_SUFFIX);
    }
}

pub(super) fn wrapped_len(record_len: u64) -> u64 {
    let members = record_len.div_ceil(GZIP_MAX_FRAGMENT as u64).max(1);
    record_len + members * (GZIP_RECORD_HEAD_LEN + GZIP_RECORD_SUFFIX.len()) as u64
}

/// Reads one member's fragment at `offset`; returns it and the member length.
fn read_fragment(
    file: &mut impl RecordSource,
    offset: u64,
    tag: [u8; 4],
) -> Result<(Vec<u8>, u64)> {
    let what = format!("{} record", record::tag_name(tag));
    let mut head = [0u8; GZIP_RECORD_HEAD_LEN];
    file.read_at(offset, &mut head, &what)?;
    if head[..GZIP_RECORD_PREFIX.len()] != GZIP_RECORD_PREFIX || head[12..14] != GZIP_SUBFIELD_ID {
        return Err(Error::BadMagic {
            file: file.name().to_path_buf(),
            offset,
            found: head.to_vec(),
        });
    }
    let xlen = le_u16(&head, 10) as usize;
    let n = le_u16(&head, 14) as usize;
    if xlen != n + 4 {
        return Err(Error::corrupt(
            file.name(),
            offset + 10,
            format!("{what}: gzip extra length {xlen} does not hold one subfield of {n} bytes"),
        ));
    }
    let data_at = offset + GZIP_RECORD_HEAD_LEN as u64;
    let fragment = file.read_vec_at(data_at, n, &what)?;
    let mut suffix = [0u8; GZIP_RECORD_SUFFIX.len()];
    let suffix_at = data_at + n as u64;
    file.read_at(suffix_at, &mut suffix, &what)?;
    if suffix != GZIP_RECORD_SUFFIX {
        return Err(Error::corrupt(
            file.name(),
            suffix_at,
            format!("{what}: the empty gzip member around it is damaged"),
        ));
    }
    Ok((
        fragment,
        (GZIP_RECORD_HEAD_LEN + n + GZIP_RECORD_SUFFIX.len()) as u64,
    ))
}

pub(super) fn read_record(
    file: &mut impl RecordSource,
    offset: u64,
    tag: [u8; 4],
    max_body: u32,
) -> Result<(Vec<u8>, u64)> {
    let (mut rec, mut span) = read_fragment(file, offset, tag)?;
    if rec.len() < RECORD_HEADER_LEN {
        return Err(Error::corrupt(
            file.name(),
            offset,
            format!(
                "{} record: first fragment shorter than a record header",
                record::tag_name(tag)
            ),
        ));
    }
    let body_len = record::declared_body_len(&rec);
    if body_len > max_body {
        let span = wrapped_len(RECORD_HEADER_LEN as u64 + body_len as u64);
        return Err(record::oversized(
            file, offset, tag, body_len, max_body, span,
        ));
    }
    let total = RECORD_HEADER_LEN + body_len as usize;
    // Every fragment but the last is full, so the layout is canonical.
    let mut last_len = rec.len();
    while rec.len() < total {
        if last_len != GZIP_MAX_FRAGMENT {
            return Err(Error::corrupt(
                file.name(),
                offset,
                format!(
                    "{} record: a fragment before the last is not full",
                    record::tag_name(tag)
                ),
            ));
        }
        let (more, more_span) = read_fragment(file, offset + span, tag)?;
        last_len = more.len();
        rec.extend_from_slice(&more);
        span += more_span;
    }
    if rec.len() != total {
        return Err(Error::corrupt(
            file.name(),
            offset,
            format!(
                "{} record: fragments hold {} bytes, the header declares {total}",
                record::tag_name(tag),
                rec.len()
            ),
        ));
    }
    Ok((rec, span))
}

pub(super) struct Encoder {
    compressor: libdeflater::Compressor,
    /// Level 0: stored blocks, for data that will not compress.
    store: libdeflater::Compressor,
}

/// Order-0 entropy (bits per byte) at or above which a block is stored
/// rather than compressed: random or already-compressed data. Measured in
/// bench/codec-choice: deflate gains nothing on such blocks, and skipping it
/// makes them 20x faster at a cost of 0.02% in size.
const STORE_ENTROPY: f64 = 7.95;

impl Encoder {
    pub fn new(level: i32) -> Self {
        let lvl =
            libdeflater::CompressionLvl::new(level).expect("level range checked by BlockEncoder");
        let store = libdeflater::CompressionLvl::new(0).expect("0 is a libdeflate level");
        Encoder {
            compressor: libdeflater::Compressor::new(lvl),
            store: libdeflater::Compressor::new(store),
        }
    }

    pub fn encode(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&GZIP_MEMBER_HEADER);
        let start = out.len();
        let compressor = if entropy(block) >= STORE_ENTROPY {
            &mut self.store
        } else {
            &mut self.compressor
        };
        let bound = compressor.deflate_compress_bound(block.len());
        out.resize(start + bound, 0);
        let n = compressor
            .deflate_compress(block, &mut out[start..])
            .map_err(|e| Error::invalid(format!("deflate failed: {e}")))?;
        out.truncate(start + n);
        out.extend_from_slice(&crc32fast::hash(block).to_le_bytes());
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        Ok(())
    }
}

/// Shannon entropy of the byte histogram, in bits per byte.
fn entropy(data: &[u8]) -> f64 {
    if data.len() < 1024 {
        return 0.0;
    }
    let mut counts = [[0u32; 256]; 4];
    let (chunks, rest) = data.as_chunks::<4>();
    for c in chunks {
        counts[0][c[0] as usize] += 1;
        counts[1][c[1] as usize] += 1;
        counts[2][c[2] as usize] += 1;
        counts[3][c[3] as usize] += 1;
    }
    for &b in rest {
        counts[0][b as usize] += 1;
    }
    let n = data.len() as f64;
    (0..256)
        .map(|i| counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

pub(super) struct Decoder {
    decompressor: libdeflater::Decompressor,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            decompressor: libdeflater::Decompressor::new(),
        }
    }

    pub fn decode(
        &mut self,
        member: &[u8],
        out: &mut [u8],
    ) -> std::result::Result<(), &'static str> {
        let min = GZIP_MEMBER_HEADER.len() + GZIP_MEMBER_TRAILER_LEN;
        if member.len() < min {
            return Err("gzip member shorter than its header and trailer");
        }
        if member[..GZIP_MEMBER_HEADER.len()] != GZIP_MEMBER_HEADER {
            return Err("gzip member header is not the one sdar writes");
        }
        let trailer = member.len() - GZIP_MEMBER_TRAILER_LEN;
        let n = self
            .decompressor
            .deflate_decompress(&member[GZIP_MEMBER_HEADER.len()..trailer], out)
            .map_err(|_| "deflate data is invalid or longer than the block")?;
        if n != out.len() {
            return Err("deflate data is shorter than the block");
        }
        if le_u32(member, trailer) != crc32fast::hash(out) {
            return Err("gzip CRC32 does not match the decompressed block");
        }
        if le_u32(member, trailer + 4) != out.len() as u32 {
            return Err("gzip ISIZE does not match the block length");
        }
        Ok(())
    }
}
