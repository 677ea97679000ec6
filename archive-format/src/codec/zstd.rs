//! zstd container (SPEC.md §3.2 and §4.3): one zstd frame per block with its
//! content size set, and records in skippable frames, which zstd skips.

use crate::archive_file::ReadAt;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::record::{self, le_u32};
use zstd::zstd_safe;

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
    file: &mut impl ReadAt,
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
        // A block is at most 1 MiB; no legitimate frame needs a larger window.
        dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(21))
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
        match self.dctx.decompress(out, member) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(_) => Err("zstd frame decompressed to the wrong length"),
            Err(_) => Err("zstd frame data is invalid"),
        }
    }
}
