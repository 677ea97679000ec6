//! The two containers a full image can use. Each one wraps block data as
//! members stock tools decompress, and records as bytes stock tools skip.

mod gzip;
pub(crate) mod zstd;

use crate::archive_file::RecordSource;
use crate::error::{Error, Result};
use crate::layout::{CODEC_GZIP, CODEC_ZSTD};
use crate::record;

/// How block data is compressed, and so which stock tool reads the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// A series of gzip members (SPEC.md §3.1, §4.2): `zcat` reads it.
    Gzip,
    /// A series of zstd frames (SPEC.md §3.2, §4.3): `zstd -dc` reads it.
    Zstd,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The default compression level (libdeflate 6, zstd 3), chosen by
    /// measurement: see SPEC.md §3.
    pub fn default_level(self) -> i32 {
        match self {
            Codec::Gzip => 6,
            Codec::Zstd => 3,
        }
    }

    pub fn level_range(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Codec::Gzip => 1..=12,
            Codec::Zstd => 1..=19,
        }
    }

    /// The usual file name suffix of a full image with this codec.
    pub fn full_suffix(self) -> &'static str {
        match self {
            Codec::Gzip => ".full.gz",
            Codec::Zstd => ".full.zst",
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Codec::Gzip => CODEC_GZIP,
            Codec::Zstd => CODEC_ZSTD,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Codec> {
        match b {
            CODEC_GZIP => Some(Codec::Gzip),
            CODEC_ZSTD => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// Guesses the container from the first bytes of a file.
    pub(crate) fn sniff(first: &[u8]) -> Option<Codec> {
        if gzip::looks_like_record(first) {
            Some(Codec::Gzip)
        } else if zstd::looks_like_record(first) {
            Some(Codec::Zstd)
        } else {
            None
        }
    }

    /// The largest member a block of `block_len` bytes can compress to;
    /// readers refuse anything longer before allocating for it.
    pub(crate) fn member_bound(self, block_len: usize) -> usize {
        match self {
            Codec::Gzip => gzip::member_bound(block_len),
            Codec::Zstd => zstd::member_bound(block_len),
        }
    }

    /// Appends `record` (header + body) wrapped in this container to `out`.
    pub(crate) fn wrap_record(self, tag: [u8; 4], body: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut rec = Vec::with_capacity(body.len() + crate::layout::RECORD_HEADER_LEN);
        record::encode_record(tag, body, &mut rec)?;
        match self {
            Codec::Gzip => gzip::wrap_record(&rec, out),
            Codec::Zstd => zstd::wrap_record(&rec, out),
        }
        Ok(())
    }

    /// The number of container bytes a record with a body of `body_len` takes.
    pub(crate) fn wrapped_record_len(self, body_len: usize) -> u64 {
        let rec = (body_len + crate::layout::RECORD_HEADER_LEN) as u64;
        match self {
            Codec::Gzip => gzip::wrapped_len(rec),
            Codec::Zstd => zstd::wrapped_len(rec),
        }
    }

    /// Reads the record at `offset`, checks its container, checksum and tag,
    /// and returns its body and the container bytes it spans.
    pub(crate) fn read_record(
        self,
        file: &mut impl RecordSource,
        offset: u64,
        tag: [u8; 4],
        max_body: u32,
    ) -> Result<(Vec<u8>, u64)> {
        let (rec, span) = match self {
            Codec::Gzip => gzip::read_record(file, offset, tag, max_body)?,
            Codec::Zstd => zstd::read_record(file, offset, tag, max_body)?,
        };
        let body = record::decode_record(file.name(), offset, rec, tag)?;
        Ok((body, span))
    }
}

/// Compresses blocks into members; one per worker thread.
pub(crate) struct BlockEncoder {
    inner: EncoderInner,
}

enum EncoderInner {
    Gzip(gzip::Encoder),
    Zstd(zstd::Encoder),
}

impl BlockEncoder {
    pub fn new(codec: Codec, level: i32) -> Result<Self> {
        if !codec.level_range().contains(&level) {
            return Err(Error::invalid(format!(
                "{} level {level} is out of range {:?}",
                codec.name(),
                codec.level_range()
            )));
        }
        let inner = match codec {
            Codec::Gzip => EncoderInner::Gzip(gzip::Encoder::new(level)),
            Codec::Zstd => EncoderInner::Zstd(zstd::Encoder::new(level)?),
        };
        Ok(BlockEncoder { inner })
    }

    /// Appends one complete member holding `block` to `out`.
    pub fn encode(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match &mut self.inner {
            EncoderInner::Gzip(e) => e.encode(block, out),
            EncoderInner::Zstd(e) => e.encode(block, out),
        }
    }
}

/// Decompresses members, checking everything the container can check.
pub(crate) struct BlockDecoder {
    inner: DecoderInner,
}

enum DecoderInner {
    Gzip(gzip::Decoder),
    Zstd(zstd::Decoder),
}

impl BlockDecoder {
    pub fn new(codec: Codec) -> Result<Self> {
        let inner = match codec {
            Codec::Gzip => DecoderInner::Gzip(gzip::Decoder::new()),
            Codec::Zstd => DecoderInner::Zstd(zstd::Decoder::new()?),
        };
        Ok(BlockDecoder { inner })
    }

    /// Fills `out` (exactly the block's length) from `member`. The error is a
    /// short reason; the caller adds file, block and offset.
    pub fn decode(
        &mut self,
        member: &[u8],
        out: &mut [u8],
    ) -> std::result::Result<(), &'static str> {
        match &mut self.inner {
            DecoderInner::Gzip(d) => d.decode(member, out),
            DecoderInner::Zstd(d) => d.decode(member, out),
        }
    }
}
