//! Reading a full image: open it from both ends, then read any block with
//! one seek once its segment's index is loaded.

use crate::archive_file::ArchiveFile;
use crate::bytes::ReadAt;
use crate::codec::{BlockDecoder, Codec};
use crate::error::{Error, Hash, Result};
use crate::footer::Footer;
use crate::header::ImageHeader;
use crate::identity::{block_hash, ZeroHashes};
use crate::index::{decode_directory, BlockEntry, IndexSegment};
use crate::layout::*;
use crate::limits::Limits;
use crate::meta::Metadata;
use crate::record_cache::RecordCache;
use std::path::Path;
use std::sync::Arc;

/// An open full image. Opening reads and checks HEAD, META, FOOT and DIRS;
/// block data and INDX records are read when asked for, through `&self`:
/// one open image serves every thread.
#[derive(Clone, Debug)]
pub struct FullImage<R> {
    file: ArchiveFile<R>,
    header: ImageHeader,
    meta: Metadata,
    footer: Footer,
    index_offsets: Vec<u64>,
    data_start: u64,
    zero: ZeroHashes,
    limits: Limits,
    segments: RecordCache<IndexSegment>,
    /// The AUTH record, and the HEAD and META bodies its MAC covers.
    auth: Option<crate::auth::Auth>,
    head_body: Vec<u8>,
    meta_body: Vec<u8>,
}

impl<R: ReadAt> FullImage<R> {
    /// Opens `reader`; `name` is what error messages call it.
    pub fn open(reader: R, name: impl AsRef<Path>, limits: &Limits) -> Result<Self> {
        let file = ArchiveFile::new(reader, name.as_ref())?;
        if file.is_empty() {
            return Err(Error::corrupt(
                file.name(),
                0,
                "the file is empty (0 bytes): not an sdar file (was its copy or its writing cut off?)",
            ));
        }
        let mut first = [0u8; GZIP_RECORD_HEAD_LEN];
        let n = first.len().min(file.len() as usize);
        file.read_at(0, &mut first[..n], "file header")?;
        let codec = Codec::sniff(&first[..n]).ok_or_else(|| Error::BadMagic {
            file: file.name().to_path_buf(),
            offset: 0,
            found: first[..n.min(8)].to_vec(),
        })?;
        let (head, head_span) = codec.read_record(&mut &file, 0, TAG_HEAD, HEAD_LEN as u32 * 16)?;
        let header = ImageHeader::decode(file.name(), 0, &head, codec, limits)?;
        let (meta_body, meta_span) =
            codec.read_record(&mut &file, head_span, TAG_META, limits.max_record_len)?;
        let meta = Metadata::decode(file.name(), head_span, &meta_body, limits)?;
        let data_start = head_span + meta_span;

        let foot_span = codec.wrapped_record_len(FOOT_LEN);
        let foot_at = file
            .len()
            .checked_sub(foot_span)
            .filter(|&at| at >= data_start)
            .ok_or_else(|| {
                Error::truncated(
                    file.name(),
                    file.len(),
                    "FOOT record (the file is cut short, was never finished, or has bytes appended)",
                )
            })?;
        let footer = match codec.read_record(&mut &file, foot_at, TAG_FOOT, FOOT_LEN as u32) {
            Ok((body, _)) => Footer::decode(file.name(), foot_at, &body)?,
            Err(Error::BadMagic { .. } | Error::Corrupt { .. })
                if !ends_with_record(&file, codec, foot_at) =>
            {
                return Err(Error::truncated(
                    file.name(),
                    foot_at,
                    "FOOT record (the file is cut short, was never finished, or has bytes appended)",
                ))
            }
            Err(e) => return Err(e),
        };
        if footer.file_len != file.len() {
            return Err(Error::corrupt(
                file.name(),
                foot_at,
                format!(
                    "the footer says the file is {} bytes, it is {}",
                    footer.file_len,
                    file.len()
                ),
            ));
        }
        if footer.segment_count != header.segment_count() {
            return Err(Error::corrupt(
                file.name(),
                foot_at,
                format!(
                    "the footer counts {} segments, the image shape needs {}",
                    footer.segment_count,
                    header.segment_count()
                ),
            ));
        }
        let dir_body_len = (DIRECTORY_HEADER_LEN as u64).saturating_add(
            footer
                .segment_count
                .saturating_mul(DIRECTORY_ENTRY_LEN as u64),
        );
        if dir_body_len > limits.max_record_len as u64 {
            return Err(Error::LimitExceeded {
                file: file.name().to_path_buf(),
                what: "directory length",
                value: dir_body_len,
                limit: limits.max_record_len as u64,
            });
        }
        // With an AUTH record (SPEC.md §9.1), it sits between DIRS and FOOT.
        let (auth, dir_end) = if header.has_auth() {
            let auth_at = foot_at
                .checked_sub(codec.wrapped_record_len(AUTH_LEN))
                .filter(|&at| at >= data_start)
                .ok_or_else(|| Error::truncated(file.name(), foot_at, "AUTH record"))?;
            let (body, _) = codec.read_record(&mut &file, auth_at, TAG_AUTH, AUTH_LEN as u32)?;
            let auth = crate::auth::Auth::decode(file.name(), auth_at, &body)?;
            (Some(auth), auth_at)
        } else {
            (None, foot_at)
        };
        if footer
            .directory_offset
            .checked_add(codec.wrapped_record_len(dir_body_len as usize))
            != Some(dir_end)
        {
            return Err(Error::corrupt(
                file.name(),
                foot_at,
                "the footer's directory offset does not lead to the footer",
            ));
        }
        let (dir_body, _) = codec.read_record(
            &mut &file,
            footer.directory_offset,
            TAG_DIRECTORY,
            dir_body_len as u32,
        )?;
        let index_offsets = decode_directory(
            file.name(),
            footer.directory_offset,
            &dir_body,
            footer.segment_count,
        )?;
        let zero = ZeroHashes::new(header.block_size, header.image_size);
        let image = FullImage {
            file,
            header,
            meta,
            footer,
            index_offsets,
            data_start,
            zero,
            limits: limits.clone(),
            segments: RecordCache::default(),
            auth,
            head_body: head,
            meta_body,
        };
        // The last segment's index must end where the directory begins.
        let segments = image.index_offsets.len() as u64;
        if image.segment_data_start(segments) != image.footer.directory_offset {
            return Err(Error::corrupt(
                image.file.name(),
                image.footer.directory_offset,
                "the directory does not follow the last segment's index",
            ));
        }
        Ok(image)
    }

    pub fn name(&self) -> &Path {
        self.file.name()
    }

    /// The same open image, borrowed: for a [`crate::image::ProvenImage`]
    /// built over an image the caller keeps. What was proven stays proven.
    pub fn by_ref(&self) -> FullImage<&R> {
        FullImage {
            file: ArchiveFile::borrowed(&self.file),
            header: self.header.clone(),
            meta: self.meta.clone(),
            footer: self.footer.clone(),
            index_offsets: self.index_offsets.clone(),
            data_start: self.data_start,
            zero: self.zero.clone(),
            limits: self.limits.clone(),
            segments: self.segments.clone(),
            auth: self.auth,
            head_body: self.head_body.clone(),
            meta_body: self.meta_body.clone(),
        }
    }

    /// The AUTH record, when the image was made with a key.
    pub fn auth(&self) -> Option<&crate::auth::Auth> {
        self.auth.as_ref()
    }

    /// Proves that the image was made by a holder of `key`: its HEAD, META
    /// and identity (and so, through the hashes, every block). Refuses an
    /// image without a MAC.
    pub fn authenticate(&self, key: &crate::auth::Key) -> Result<()> {
        let expected = key.mac(
            "full",
            &[&self.head_body, &self.meta_body, &self.identity()],
        );
        crate::auth::require(self.file.name(), self.auth.as_ref(), key, expected)
    }

    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The identity the file records (SPEC.md §10). `verify` proves it.
    pub fn identity(&self) -> Hash {
        self.footer.identity
    }

    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    /// File offset where block data begins (after HEAD and META).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    pub fn segment_count(&self) -> u64 {
        self.index_offsets.len() as u64
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn into_inner(self) -> R {
        self.file.into_inner()
    }

    pub(crate) fn file(&self) -> &ArchiveFile<R> {
        &self.file
    }

    /// Proves the index against the identity: every INDX record read, every
    /// hash folded in, the result compared with the footer. After this the
    /// index's hashes can be trusted to say what each block holds, without
    /// reading block data.
    ///
    /// The segments read are remembered by digest: one read again later
    /// (after leaving the cache) must be the one proven. Proving twice
    /// reads nothing the second time.
    pub fn prove_index(&self) -> Result<()> {
        self.prove_index_visiting(&mut |_| Ok(()))
    }

    /// `prove_index`, handing each segment to `visit` as it is read, in
    /// order, so that a caller's own walk of the index costs no second
    /// read. What `visit` saw is proven only when this returns `Ok`.
    pub fn prove_index_visiting(
        &self,
        visit: &mut dyn FnMut(&IndexSegment) -> Result<()>,
    ) -> Result<()> {
        if self.segments.is_proven() {
            for s in 0..self.segment_count() {
                visit(&*self.index_segment(s)?)?;
            }
            return Ok(());
        }
        let h = &self.header;
        let mut identity = crate::identity::IdentityHasher::new(h.image_size, h.block_size);
        let mut digests = Vec::with_capacity(self.index_offsets.len());
        // Two stages on two threads: one reads, checks and decodes the
        // records ahead (and digests half of them); this one digests the
        // other half, folds the hashes in order and visits.
        // (A 1 TiB image has 1 GiB of index: proven in half the time.)
        let count = self.segment_count();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel(8);
            let reader = scope.spawn(move || {
                for s in 0..count {
                    // Digests of every other segment: the folding thread
                    // takes the rest, so the two threads share the work.
                    let loaded = self.index_segment(s).map(|seg| {
                        let digest = (s % 2 == 0).then(|| segment_digest(&seg));
                        (seg, digest)
                    });
                    let failed = loaded.is_err();
                    if tx.send(loaded).is_err() || failed {
                        return;
                    }
                }
            });
            let folded = (|| {
                for _ in 0..count {
                    let (seg, digest) = rx.recv().map_err(|_| Error::Bug {
                        what: "the index reader stopped early".into(),
                    })??;
                    for e in &seg.entries {
                        identity.update(&e.hash);
                    }
                    digests.push(digest.unwrap_or_else(|| segment_digest(&seg)));
                    visit(&seg)?;
                }
                Ok(())
            })();
            // The reader stops at its next send once `rx` is gone.
            drop(rx);
            let _ = reader.join();
            folded
        })?;
        let actual = identity.finalize();
        if actual != self.identity() {
            return Err(Error::IdentityMismatch {
                file: self.name().to_path_buf(),
                expected: self.identity(),
                actual,
            });
        }
        self.segments.set_proven(digests);
        Ok(())
    }

    /// True once [`FullImage::prove_index`] has succeeded.
    pub fn is_proven(&self) -> bool {
        self.segments.is_proven()
    }

    /// Where segment `s`'s first member must start: right after HEAD and META
    /// for segment 0, right after the previous INDX record otherwise. With
    /// `s == segment_count` it is where DIRS must start.
    fn segment_data_start(&self, s: u64) -> u64 {
        if s == 0 {
            return self.data_start;
        }
        let prev = s - 1;
        let body = INDEX_HEADER_LEN + self.header.segment_len(prev) as usize * INDEX_ENTRY_LEN;
        self.index_offsets[prev as usize].saturating_add(self.header.codec.wrapped_record_len(body))
    }

    /// Reads and checks the INDX record of segment `s` (from a bounded
    /// cache shared by the threads reading this image).
    pub fn index_segment(&self, s: u64) -> Result<Arc<IndexSegment>> {
        self.segments.get(
            s,
            || self.load_segment(s),
            segment_digest,
            || {
                let at = self.index_offsets.get(s as usize).copied().unwrap_or(0);
                Error::corrupt(
                    self.file.name(),
                    at,
                    format!("segment {s}'s index changed since it was proven (is the file being written to?)"),
                )
            },
        )
    }

    fn load_segment(&self, s: u64) -> Result<IndexSegment> {
        let at = *self
            .index_offsets
            .get(s as usize)
            .ok_or_else(|| Error::invalid(format!("segment {s} does not exist")))?;
        let body_len = INDEX_HEADER_LEN + self.header.segment_len(s) as usize * INDEX_ENTRY_LEN;
        let (body, _) =
            self.header
                .codec
                .read_record(&mut &self.file, at, TAG_INDEX, body_len as u32)?;
        let seg = IndexSegment::decode(self.file.name(), at, &body, &self.header, s, &self.zero)?;
        let expected = self.segment_data_start(s);
        if seg.data_offset != expected {
            return Err(Error::corrupt(
                self.file.name(),
                at,
                format!(
                    "segment {s} says its data starts at byte {}, it must start at {expected}",
                    seg.data_offset
                ),
            ));
        }
        Ok(seg)
    }

    /// The index entry of `block`.
    pub fn entry(&self, block: u64) -> Result<BlockEntry> {
        let (seg, i) = self.locate(block)?;
        Ok(seg.entries[i])
    }

    /// The segment holding `block`, and the block's place in it.
    pub fn locate(&self, block: u64) -> Result<(Arc<IndexSegment>, usize)> {
        if block >= self.header.block_count() {
            return Err(Error::invalid(format!(
                "block {block} is past the end of the image ({} blocks)",
                self.header.block_count()
            )));
        }
        let k = self.header.segment_blocks as u64;
        Ok((self.index_segment(block / k)?, (block % k) as usize))
    }

    /// Reads the stored member of `block` without decoding it: its index
    /// entry, its file offset and its bytes. `MemberCheck::check` proves it.
    pub fn read_member(&self, block: u64) -> Result<(BlockEntry, u64, Vec<u8>)> {
        let (seg, i) = self.locate(block)?;
        let entry = seg.entries[i];
        let offset = seg.member_offset(i);
        let member = self.file.read_vec_at(
            offset,
            entry.member_len as usize,
            &format!("member of block {block}"),
        )?;
        Ok((entry, offset, member))
    }

    /// Reads block `block` into `out` (resized to the block's length) and
    /// checks it against its hash: one seek once its segment is loaded.
    pub fn read_block(&self, block: u64, out: &mut Vec<u8>, check: &mut MemberCheck) -> Result<()> {
        let (entry, offset, member) = self.read_member(block)?;
        crate::image::block_buffer(out, self.header.block_len(block));
        check.check(self.file.name(), block, offset, &entry, &member, out)?;
        Ok(())
    }
}

/// Is there a whole record ending exactly at `end`? Tells a cut-short file
/// (the footer is simply not there) from a damaged footer.
fn ends_with_record<R: ReadAt>(file: &ArchiveFile<R>, codec: Codec, foot_at: u64) -> bool {
    let mut first = [0u8; GZIP_RECORD_HEAD_LEN];
    let n = first.len().min((file.len() - foot_at) as usize);
    file.read_at(foot_at, &mut first[..n], "footer").is_ok()
        && Codec::sniff(&first[..n]) == Some(codec)
}

/// What a segment's proof saw: its record, entry for entry.
fn segment_digest(seg: &IndexSegment) -> Hash {
    *blake3::hash(&seg.encode()).as_bytes()
}

/// Decodes members and proves them: the member's bytes against its CRC,
/// then its content against its hash. One per worker thread.
pub struct MemberCheck {
    decoder: BlockDecoder,
    /// Members already proven to hold zeros, by block length: a disk's
    /// zero blocks all have the same member, so the rest cost a memcmp.
    zero_members: Vec<(usize, Vec<u8>)>,
    zero: ZeroHashes,
}

impl MemberCheck {
    pub fn new(codec: Codec, header: &ImageHeader) -> Result<Self> {
        Ok(MemberCheck {
            decoder: BlockDecoder::new(codec)?,
            zero_members: Vec::new(),
            zero: ZeroHashes::new(header.block_size, header.image_size),
        })
    }

    /// True when `member` is exactly a member already proven to decode to
    /// `len` zero bytes, `entry` says it is a zero block with the hash of
    /// those zeros, and the member passes `entry`'s CRC: the block is then
    /// proven zeros without decoding it or a buffer to decode into. False
    /// says nothing: [`MemberCheck::check`] decides.
    pub fn is_proven_zero(&self, entry: &BlockEntry, member: &[u8], len: usize) -> bool {
        self.is_known_zero(entry, member, len) && crc32fast::hash(member) == entry.member_crc
    }

    /// `is_proven_zero` but for the CRC, which the caller has checked.
    fn is_known_zero(&self, entry: &BlockEntry, member: &[u8], len: usize) -> bool {
        entry.zero
            && entry.hash == self.zero.get(len)
            && self
                .zero_members
                .iter()
                .any(|(l, m)| *l == len && m == member)
    }

    /// Proves that `member`, found at `offset` in `file`, holds the block
    /// `entry` describes, and leaves the block in `out` (which has the
    /// block's length). Zero blocks proven before are not decompressed;
    /// `out` is then filled with zeros.
    pub fn check(
        &mut self,
        file: &Path,
        block: u64,
        offset: u64,
        entry: &BlockEntry,
        member: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        if crc32fast::hash(member) != entry.member_crc {
            return Err(Error::corrupt(
                file,
                offset,
                format!("block {block}: its stored bytes fail their CRC-32 (the compressed data is damaged)"),
            ));
        }
        if self.is_known_zero(entry, member, out.len()) {
            out.fill(0);
            return Ok(());
        }
        self.decoder
            .decode(member, out)
            .map_err(|why| Error::corrupt(file, offset, format!("block {block}: {why}")))?;
        let actual = if entry.zero && crate::identity::is_zero(out) {
            self.zero.get(out.len())
        } else {
            block_hash(out)
        };
        if actual != entry.hash {
            return Err(Error::BlockMismatch {
                file: file.to_path_buf(),
                block,
                offset,
                expected: entry.hash,
                actual,
            });
        }
        if entry.zero && self.zero_members.len() < 4 {
            self.zero_members.push((out.len(), member.to_vec()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::BlockEncoder;

    const LEN: usize = 65536;

    /// A checker for a 4-block image, a member holding one zero block, and
    /// the entry that truly describes it.
    fn zero_block(codec: Codec) -> (MemberCheck, Vec<u8>, BlockEntry) {
        let header = ImageHeader::new(codec, LEN as u32, 1024, 4 * LEN as u64).unwrap();
        let check = MemberCheck::new(codec, &header).unwrap();
        let mut member = Vec::new();
        BlockEncoder::new(codec, codec.default_level())
            .unwrap()
            .encode(&[0; LEN], &mut member)
            .unwrap();
        let entry = BlockEntry {
            hash: block_hash(&[0; LEN]),
            member_len: member.len() as u32,
            member_crc: crc32fast::hash(&member),
            zero: true,
        };
        (check, member, entry)
    }

    fn check(
        checker: &mut MemberCheck,
        block: u64,
        entry: &BlockEntry,
        member: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = vec![0xAA; LEN];
        checker.check(Path::new("x.full"), block, 4096, entry, member, &mut out)?;
        Ok(out)
    }

    #[test]
    fn a_zero_member_is_proven_by_decoding_once_then_by_its_bytes() {
        for codec in [Codec::Gzip, Codec::Zstd] {
            let (mut checker, member, entry) = zero_block(codec);
            assert!(!checker.is_proven_zero(&entry, &member, LEN), "{codec:?}");
            assert_eq!(check(&mut checker, 0, &entry, &member).unwrap(), [0; LEN]);
            assert!(checker.is_proven_zero(&entry, &member, LEN), "{codec:?}");
            // Known by its bytes, so filled with zeros without decoding.
            assert_eq!(check(&mut checker, 1, &entry, &member).unwrap(), [0; LEN]);
            // The same member for a block of another length is not known.
            assert!(!checker.is_proven_zero(&entry, &member, LEN / 2));
        }
    }

    #[test]
    fn a_zero_entry_must_carry_the_zero_hash() {
        for codec in [Codec::Gzip, Codec::Zstd] {
            let (mut checker, member, entry) = zero_block(codec);
            check(&mut checker, 0, &entry, &member).unwrap();
            let lying = BlockEntry {
                hash: [7; 32],
                ..entry
            };
            assert!(!checker.is_proven_zero(&lying, &member, LEN), "{codec:?}");
            match check(&mut checker, 2, &lying, &member) {
                Err(Error::BlockMismatch {
                    block: 2,
                    offset: 4096,
                    expected,
                    actual,
                    ..
                }) => {
                    assert_eq!(expected, [7; 32]);
                    assert_eq!(actual, entry.hash);
                }
                other => panic!("{codec:?}: a zero entry with a wrong hash gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_known_zero_member_still_needs_its_crc_and_its_zero_flag() {
        let (mut checker, member, entry) = zero_block(Codec::Gzip);
        check(&mut checker, 0, &entry, &member).unwrap();
        let bad_crc = BlockEntry {
            member_crc: entry.member_crc ^ 1,
            ..entry
        };
        assert!(!checker.is_proven_zero(&bad_crc, &member, LEN));
        let err = check(&mut checker, 3, &bad_crc, &member).unwrap_err();
        assert!(err.to_string().contains("block 3"), "{err}");
        // Not flagged zero: decoded and hashed, and still right.
        let plain = BlockEntry {
            zero: false,
            ..entry
        };
        assert!(!checker.is_proven_zero(&plain, &member, LEN));
        assert_eq!(check(&mut checker, 3, &plain, &member).unwrap(), [0; LEN]);
    }
}
