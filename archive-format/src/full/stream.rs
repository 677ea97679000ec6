//! Reading a full image front to back from a stream (standard input), with
//! no seeking. Each segment's blocks are hashed as they pass and proven when
//! its INDX record arrives after them; the identity is proven at the end.

use crate::archive_file::{RecordSource, StreamFile};
use crate::codec::Codec;
use crate::error::{Error, Hash, Result};
use crate::footer::Footer;
use crate::header::ImageHeader;
use crate::identity::{block_hash, is_zero, IdentityHasher, ZeroHashes};
use crate::index::{decode_directory, IndexSegment};
use crate::layout::*;
use crate::limits::Limits;
use crate::meta::Metadata;
use crate::record::le_u32;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;
use zstd::zstd_safe;

type Source<R> = StreamFile<BufReader<std::io::Chain<Cursor<Vec<u8>>, R>>>;

/// A full image read as a stream.
pub struct FullStream<R: Read> {
    src: Source<R>,
    header: ImageHeader,
    meta: Metadata,
    zero: ZeroHashes,
    identity: IdentityHasher,
    next_block: u64,
    segment: u64,
    segment_start: u64,
    /// Per block of the current segment: hash, member length, member CRC.
    seen: Vec<(Hash, u32, u32)>,
    index_offsets: Vec<u64>,
    inflate: flate2::Decompress,
    dctx: zstd_safe::DCtx<'static>,
    member: Vec<u8>,
}

impl<R: Read> FullStream<R> {
    /// Reads HEAD and META from the start of `reader`.
    pub fn open(mut reader: R, name: impl AsRef<Path>, limits: &Limits) -> Result<Self> {
        let name = name.as_ref();
        let mut first = vec![0u8; GZIP_RECORD_HEAD_LEN];
        let n = crate::archive_file::read_full(&mut reader, &mut first)
            .map_err(|e| Error::io(name, Some(0), e))?;
        first.truncate(n);
        let codec = Codec::sniff(&first).ok_or_else(|| Error::BadMagic {
            file: name.to_path_buf(),
            offset: 0,
            found: first[..n.min(8)].to_vec(),
        })?;
        let mut src = StreamFile::new(
            BufReader::with_capacity(1 << 20, Cursor::new(first).chain(reader)),
            name,
        );
        let (head, head_span) = codec.read_record(&mut src, 0, TAG_HEAD, HEAD_LEN as u32 * 16)?;
        let header = ImageHeader::decode(name, 0, &head, codec, limits)?;
        let (meta_body, _) =
            codec.read_record(&mut src, head_span, TAG_META, limits.max_record_len)?;
        let meta = Metadata::decode(name, head_span, &meta_body, limits)?;
        let mut dctx = zstd_safe::DCtx::create();
        dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(
            crate::codec::zstd::WINDOW_LOG_MAX,
        ))
        .map_err(|_| Error::invalid("zstd rejected a parameter"))?;
        Ok(FullStream {
            segment_start: src.position(),
            src,
            zero: ZeroHashes::new(header.block_size, header.image_size),
            identity: IdentityHasher::new(header.image_size, header.block_size),
            header,
            meta,
            next_block: 0,
            segment: 0,
            seen: Vec::new(),
            index_offsets: Vec::new(),
            inflate: flate2::Decompress::new(false),
            dctx,
            member: Vec::new(),
        })
    }

    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    fn name(&self) -> &Path {
        self.src.name()
    }

    /// Reads the next block into `out` (resized to its length) and returns
    /// its hash, or `None` after the last block. A block is proven against
    /// the index only when its segment's INDX record has been read: callers
    /// must not trust anything before `finish` succeeds.
    pub fn next_block(&mut self, out: &mut Vec<u8>) -> Result<Option<Hash>> {
        if self.next_block == self.header.block_count() {
            self.end_segment_if_full()?;
            return Ok(None);
        }
        self.end_segment_if_full()?;
        let block = self.next_block;
        let offset = self.src.position();
        out.resize(self.header.block_len(block), 0);
        self.member.clear();
        let what = format!("member of block {block}");
        match self.header.codec {
            Codec::Gzip => self.read_gzip_member(block, offset, out, &what)?,
            Codec::Zstd => self.read_zstd_member(block, offset, out)?,
        }
        let hash = if is_zero(out) {
            self.zero.get(out.len())
        } else {
            block_hash(out)
        };
        self.seen.push((
            hash,
            self.member.len() as u32,
            crc32fast::hash(&self.member),
        ));
        self.next_block += 1;
        Ok(Some(hash))
    }

    fn read_gzip_member(
        &mut self,
        block: u64,
        offset: u64,
        out: &mut [u8],
        what: &str,
    ) -> Result<()> {
        let mut head = [0u8; GZIP_MEMBER_HEADER.len()];
        self.src.read_at(offset, &mut head, what)?;
        if head != GZIP_MEMBER_HEADER {
            return Err(Error::corrupt(
                self.name(),
                offset,
                format!("block {block}: gzip member header is not the one sdar writes"),
            ));
        }
        self.member.extend_from_slice(&head);
        self.inflate.reset(false);
        let name = self.name().to_path_buf();
        let bound = self.header.codec.member_bound(out.len()) as u64;
        loop {
            let buf = self
                .src
                .get_mut()
                .fill_buf()
                .map_err(|e| Error::io(&name, Some(offset), e))?;
            if buf.is_empty() {
                return Err(Error::truncated(&name, offset, what));
            }
            let (in_before, out_before) =
                (self.inflate.total_in(), self.inflate.total_out() as usize);
            let status = self
                .inflate
                .decompress(buf, &mut out[out_before..], flate2::FlushDecompress::None)
                .map_err(|_| {
                    Error::corrupt(
                        &name,
                        offset,
                        format!("block {block}: deflate data is invalid"),
                    )
                })?;
            let used = (self.inflate.total_in() - in_before) as usize;
            self.member.extend_from_slice(&buf[..used]);
            self.src.get_mut().consume(used);
            self.src.advance(used as u64);
            if status == flate2::Status::StreamEnd {
                break;
            }
            let stuck = used == 0 && self.inflate.total_out() as usize == out_before;
            if stuck || self.member.len() as u64 > bound {
                return Err(Error::corrupt(
                    &name,
                    offset,
                    format!("block {block}: deflate data is longer than the block"),
                ));
            }
        }
        if self.inflate.total_out() as usize != out.len() {
            return Err(Error::corrupt(
                self.name(),
                offset,
                format!("block {block}: deflate data is shorter than the block"),
            ));
        }
        let mut trailer = [0u8; GZIP_MEMBER_TRAILER_LEN];
        let at = self.src.position();
        self.src.read_at(at, &mut trailer, what)?;
        self.member.extend_from_slice(&trailer);
        if le_u32(&trailer, 0) != crc32fast::hash(out) || le_u32(&trailer, 4) != out.len() as u32 {
            return Err(Error::corrupt(
                self.name(),
                at,
                format!("block {block}: gzip CRC32 or ISIZE does not match the block"),
            ));
        }
        Ok(())
    }

    fn read_zstd_member(&mut self, block: u64, offset: u64, out: &mut [u8]) -> Result<()> {
        self.dctx
            .reset(zstd_safe::ResetDirective::SessionOnly)
            .map_err(|_| Error::invalid("zstd reset failed"))?;
        let bound = self.header.codec.member_bound(out.len());
        let name = self.name().to_path_buf();
        let mut produced = 0usize;
        loop {
            let buf = self
                .src
                .get_mut()
                .fill_buf()
                .map_err(|e| Error::io(&name, Some(offset), e))?;
            if buf.is_empty() {
                return Err(Error::truncated(
                    &name,
                    offset,
                    format!("member of block {block}"),
                ));
            }
            let mut input = zstd_safe::InBuffer::around(buf);
            let mut output = zstd_safe::OutBuffer::around_pos(&mut *out, produced);
            let left = self
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(|_| {
                    Error::corrupt(
                        &name,
                        offset,
                        format!("block {block}: zstd frame data is invalid"),
                    )
                })?;
            produced = output.pos();
            let used = input.pos();
            self.member.extend_from_slice(&buf[..used]);
            self.src.get_mut().consume(used);
            self.src.advance(used as u64);
            if left == 0 {
                break;
            }
            if self.member.len() > bound || (used == 0 && produced == out.len()) {
                return Err(Error::corrupt(
                    &name,
                    offset,
                    format!("block {block}: zstd frame is longer than the block"),
                ));
            }
        }
        let declared = zstd_safe::get_frame_content_size(&self.member)
            .ok()
            .flatten();
        if produced != out.len()
            || declared != Some(out.len() as u64)
            || le_u32(&self.member, 0) != ZSTD_FRAME_MAGIC
        {
            return Err(Error::corrupt(
                self.name(),
                offset,
                format!("block {block}: zstd frame does not hold exactly the block"),
            ));
        }
        Ok(())
    }

    /// After a segment's last member: read its INDX record and prove the
    /// blocks that passed against it.
    fn end_segment_if_full(&mut self) -> Result<()> {
        if self.seen.is_empty() || self.seen.len() < self.header.segment_len(self.segment) as usize
        {
            return Ok(());
        }
        let at = self.src.position();
        let body_len = INDEX_HEADER_LEN + self.seen.len() * INDEX_ENTRY_LEN;
        let codec = self.header.codec;
        let (body, _) = codec.read_record(&mut self.src, at, TAG_INDEX, body_len as u32)?;
        let seg = IndexSegment::decode(
            self.src.name(),
            at,
            &body,
            &self.header,
            self.segment,
            &self.zero,
        )?;
        if seg.data_offset != self.segment_start {
            return Err(Error::corrupt(
                self.name(),
                at,
                format!(
                    "segment {} says its data starts at {}, it started at {}",
                    self.segment, seg.data_offset, self.segment_start
                ),
            ));
        }
        let first = self.segment * self.header.segment_blocks as u64;
        for (i, (e, (hash, len, crc))) in seg.entries.iter().zip(&self.seen).enumerate() {
            let block = first + i as u64;
            let offset = seg.member_offset(i);
            if e.member_len != *len || e.member_crc != *crc {
                return Err(Error::corrupt(
                    self.name(),
                    offset,
                    format!("block {block}: its stored bytes disagree with the index"),
                ));
            }
            if e.hash != *hash {
                return Err(Error::BlockMismatch {
                    file: self.name().to_path_buf(),
                    block,
                    offset,
                    expected: e.hash,
                    actual: *hash,
                });
            }
            self.identity.update(&e.hash);
        }
        self.index_offsets.push(at);
        self.segment += 1;
        self.seen.clear();
        self.segment_start = self.src.position();
        Ok(())
    }

    /// Reads the rest of the stream (remaining blocks, DIRS, FOOT), proves
    /// it, and returns the image identity. Nothing may follow the footer.
    pub fn finish(mut self) -> Result<Hash> {
        let mut scratch = Vec::new();
        while self.next_block(&mut scratch)?.is_some() {}
        let codec = self.header.codec;
        let dir_at = self.src.position();
        let dir_len = DIRECTORY_HEADER_LEN + self.index_offsets.len() * DIRECTORY_ENTRY_LEN;
        let (dir, _) = codec.read_record(&mut self.src, dir_at, TAG_DIRECTORY, dir_len as u32)?;
        let offsets = decode_directory(
            self.src.name(),
            dir_at,
            &dir,
            self.index_offsets.len() as u64,
        )?;
        if offsets != self.index_offsets {
            return Err(Error::corrupt(
                self.name(),
                dir_at,
                "the directory does not list the segments the stream held",
            ));
        }
        if self.header.has_auth() {
            // The MAC is checked by readers given a key, which need a file
            // they can seek in; a stream only has to be well-formed here.
            let auth_at = self.src.position();
            let (body, _) = codec.read_record(&mut self.src, auth_at, TAG_AUTH, AUTH_LEN as u32)?;
            crate::auth::Auth::decode(self.src.name(), auth_at, &body)?;
        }
        let foot_at = self.src.position();
        let (foot, span) = codec.read_record(&mut self.src, foot_at, TAG_FOOT, FOOT_LEN as u32)?;
        let footer = Footer::decode(self.src.name(), foot_at, &foot)?;
        if footer.directory_offset != dir_at
            || footer.segment_count != offsets.len() as u64
            || footer.file_len != foot_at + span
        {
            return Err(Error::corrupt(
                self.name(),
                foot_at,
                "the footer disagrees with the stream's layout",
            ));
        }
        self.src.at_end()?;
        let actual = self.identity.finalize();
        if actual != footer.identity {
            return Err(Error::IdentityMismatch {
                file: self.name().to_path_buf(),
                expected: footer.identity,
                actual,
            });
        }
        Ok(actual)
    }
}
