//! zstd container (SPEC.md §3.2 and §4.3): one zstd frame per block with its
//! content size set, and records in skippable frames, which zstd skips.

use crate::archive_file::RecordSource;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::record::{self, le_u32};
use zstd::zstd_safe;

/// SPEC.md §3.2: the largest window a block's frame may ask for. A block is
/// at most 1 MiB, so no frame sdar writes needs more than 1 MiB; 2 MiB
/// leaves room for other writers' window choices.
pub(crate) const WINDOW_LOG_MAX: u32 = 21;
pub(crate) const WINDOW_MAX: u64 = 1 << WINDOW_LOG_MAX;

pub(super) fn looks_like_record(first: &[u8]) -> bool {
    first.len() >= ZSTD_RECORD_HEAD_LEN && le_u32(first, 0) == ZSTD_RECORD_MAGIC
}

pub(super) fn member_bound(block_len: usize) -> usize {
    zstd_safe::compress_bound(block_len)
}

pub(super) fn wrap_record(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&ZSTD_RECORD_MAGIC.to_le_bytes());
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
}

pub(super) fn wrapped_len(record_len: u64) -> u64 {
    ZSTD_RECORD_HEAD_LEN as u64 + record_len
}

pub(super) fn read_record(
    file: &mut impl RecordSource,
    offset: u64,
    tag: [u8; 4],
    max_body: u32,
) -> Result<(Vec<u8>, u64)> {
    let what = format!("{} record", record::tag_name(tag));
    let mut head = [0u8; ZSTD_RECORD_HEAD_LEN];
    file.read_at(offset, &mut head, &what)?;
    if le_u32(&head, 0) != ZSTD_RECORD_MAGIC {
        return Err(Error::BadMagic {
            file: file.name().to_path_buf(),
            offset,
            found: head.to_vec(),
        });
    }
    let n = le_u32(&head, 4);
    let body_len = n.saturating_sub(RECORD_HEADER_LEN as u32);
    if body_len > max_body {
        return Err(record::oversized(
            file,
            offset,
            tag,
            body_len,
            max_body,
            wrapped_len(n as u64),
        ));
    }
    let rec = file.read_vec_at(offset + ZSTD_RECORD_HEAD_LEN as u64, n as usize, &what)?;
    Ok((rec, wrapped_len(n as u64)))
}

pub(super) struct Encoder {
    cctx: zstd_safe::CCtx<'static>,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(level: i32) -> Result<Self> {
        let mut cctx = zstd_safe::CCtx::create();
        let set = |cctx: &mut zstd_safe::CCtx, p| {
            cctx.set_parameter(p).map(|_| ()).map_err(|code| {
                Error::invalid(format!(
                    "zstd rejected a parameter: {}",
                    zstd_safe::get_error_name(code)
                ))
            })
        };
        set(&mut cctx, zstd_safe::CParameter::CompressionLevel(level))?;
        set(&mut cctx, zstd_safe::CParameter::ContentSizeFlag(true))?;
        set(&mut cctx, zstd_safe::CParameter::ChecksumFlag(false))?;
        set(&mut cctx, zstd_safe::CParameter::DictIdFlag(false))?;
        Ok(Encoder {
            cctx,
            scratch: Vec::new(),
        })
    }

    pub fn encode(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.scratch.clear();
        self.scratch.reserve(zstd_safe::compress_bound(block.len()));
        self.cctx
            .compress2(&mut self.scratch, block)
            .map_err(|code| {
                Error::invalid(format!(
                    "zstd compression failed: {}",
                    zstd_safe::get_error_name(code)
                ))
            })?;
        out.extend_from_slice(&self.scratch);
        Ok(())
    }
}

pub(super) struct Decoder {
    dctx: zstd_safe::DCtx<'static>,
}

impl Decoder {
    pub fn new() -> Result<Self> {
        let mut dctx = zstd_safe::DCtx::create();
        // Only zstd's streaming decoder obeys this; the one-shot decode
        // below is guarded by `window_size` instead.
        dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(|code| {
                Error::invalid(format!(
                    "zstd rejected a parameter: {}",
                    zstd_safe::get_error_name(code)
                ))
            })?;
        Ok(Decoder { dctx })
    }

    pub fn decode(
        &mut self,
        member: &[u8],
        out: &mut [u8],
    ) -> std::result::Result<(), &'static str> {
        if member.len() < 4 || le_u32(member, 0) != ZSTD_FRAME_MAGIC {
            return Err("member is not a zstd frame");
        }
        match zstd_safe::find_frame_compressed_size(member) {
            Ok(n) if n == member.len() => {}
            Ok(_) => return Err("member is not exactly one zstd frame"),
            Err(_) => return Err("zstd frame structure is invalid"),
        }
        match zstd_safe::get_frame_content_size(member) {
            Ok(Some(n)) if n == out.len() as u64 => {}
            Ok(Some(_)) => return Err("zstd frame content size does not match the block length"),
            _ => return Err("zstd frame does not declare its content size"),
        }
        if window_size(member).is_none_or(|w| w > WINDOW_MAX) {
            return Err("zstd frame asks for a window larger than 2 MiB (SPEC.md §3.2)");
        }
        match self.dctx.decompress(out, member) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(_) => Err("zstd frame decompressed to the wrong length"),
            Err(_) => Err("zstd frame data is invalid"),
        }
    }
}

/// The `Window_Size` a frame's header declares (RFC 8878 §3.1.1.1.2): its
/// content size for a single-segment frame, else what its
/// `Window_Descriptor` says. `None` when the header is cut short.
fn window_size(frame: &[u8]) -> Option<u64> {
    const SINGLE_SEGMENT: u8 = 0x20;
    let descriptor = *frame.get(4)?;
    if descriptor & SINGLE_SEGMENT != 0 {
        return zstd_safe::get_frame_content_size(frame).ok().flatten();
    }
    let window = *frame.get(5)?;
    let base = 1u64 << (10 + (window >> 3));
    Some(base + base / 8 * u64::from(window & 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame holding `content` in one raw block, not single-segment, with
    /// a 4-byte content size and `window` as its Window_Descriptor.
    fn frame_with_window(window: u8, content: &[u8]) -> Vec<u8> {
        let mut f = ZSTD_FRAME_MAGIC.to_le_bytes().to_vec();
        f.push(0x80); // Frame_Content_Size_flag 2 (4 bytes), nothing else
        f.push(window);
        f.extend_from_slice(&(content.len() as u32).to_le_bytes());
        let block_header = (content.len() as u32) << 3 | 1; // last, raw
        f.extend_from_slice(&block_header.to_le_bytes()[..3]);
        f.extend_from_slice(content);
        f
    }

    #[test]
    fn a_window_of_2_mib_decodes_and_a_larger_one_is_refused() {
        let content: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = vec![0u8; content.len()];
        let mut d = Decoder::new().unwrap();
        // Exponent 11: 2^21 bytes exactly.
        let at_limit = frame_with_window(11 << 3, &content);
        assert_eq!(window_size(&at_limit), Some(WINDOW_MAX));
        d.decode(&at_limit, &mut out).unwrap();
        assert_eq!(out, content);
        // 2 MiB + 256 KiB, and 4 MiB.
        for window in [11 << 3 | 1, 12 << 3] {
            let above = frame_with_window(window, &content);
            assert!(window_size(&above).unwrap() > WINDOW_MAX);
            let why = d.decode(&above, &mut out).unwrap_err();
            assert!(why.contains("window larger than 2 MiB"), "{why}");
        }
    }

    #[test]
    fn frames_sdar_writes_fit_the_window() {
        let block: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i % 253) as u8 ^ (i >> 12) as u8)
            .collect();
        let mut member = Vec::new();
        Encoder::new(19)
            .unwrap()
            .encode(&block, &mut member)
            .unwrap();
        assert!(window_size(&member).unwrap() <= WINDOW_MAX);
        let mut out = vec![0u8; block.len()];
        Decoder::new().unwrap().decode(&member, &mut out).unwrap();
        assert_eq!(out, block);
    }
}
