//! Reading a delta archive: find the payload from the trailer, check the
//! header, footer and directory, and read change maps and members on demand.

use super::{ChangeEntry, ChangeKind, DeltaFooter, DeltaHeader};
use crate::archive_file::ArchiveFile;
use crate::bytes::ReadAt;
use crate::error::Hash;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::limits::Limits;
use crate::meta::Metadata;
use crate::record::{le_u32, le_u64, read_plain_record};
use crate::record_cache::RecordCache;
use crate::trailer::Trailer;
use std::path::Path;
use std::sync::Arc;

/// An open delta archive. Change maps and members are read when asked
/// for, through `&self`: one open archive serves every thread.
#[derive(Clone, Debug)]
pub struct DeltaArchive<R> {
    file: ArchiveFile<R>,
    trailer: Trailer,
    header: DeltaHeader,
    meta: Metadata,
    footer: DeltaFooter,
    /// Per DMAP record: its payload offset and first block.
    groups: Vec<(u64, u64)>,
    /// The AUTH record, and the DHED and META bodies its MAC covers.
    auth: Option<crate::auth::Auth>,
    head_body: Vec<u8>,
    meta_body: Vec<u8>,
    /// Payload offset where the first group's members start.
    data_start: u64,
    maps: RecordCache<Vec<ChangeEntry>>,
}

impl<R: ReadAt> DeltaArchive<R> {
    /// Opens `reader` (the whole archive file, runtime included).
    pub fn open(reader: R, name: impl AsRef<Path>, limits: &Limits) -> Result<Self> {
        let file = ArchiveFile::new(reader, name.as_ref())?;
        if file.is_empty() {
            return Err(Error::corrupt(
                file.name(),
                0,
                "the file is empty (0 bytes): not an sdar file (was its copy or its writing cut off?)",
            ));
        }
        let trailer = Trailer::read(&file)?;
        let base = trailer.payload_offset;
        let end = base + trailer.payload_len;
        let (head, head_span) =
            read_plain_record(&mut &file, base, TAG_DELTA_HEAD, DHED_LEN as u32 * 16)?;
        let header = DeltaHeader::decode(file.name(), base, &head, limits)?;
        let (meta_body, meta_span) = read_plain_record(
            &mut &file,
            base + head_span,
            TAG_META,
            limits.max_record_len,
        )?;
        let meta = Metadata::decode(file.name(), base + head_span, &meta_body, limits)?;
        let data_start = head_span + meta_span;

        let foot_span = (RECORD_HEADER_LEN + DFOT_LEN) as u64;
        let foot_at = end
            .checked_sub(foot_span)
            .filter(|&at| at >= base + data_start)
            .ok_or_else(|| Error::truncated(file.name(), end, "DFOT record"))?;
        let (foot, _) = read_plain_record(&mut &file, foot_at, TAG_DELTA_FOOT, DFOT_LEN as u32)?;
        let footer = DeltaFooter::decode(file.name(), foot_at, &foot)?;
        let dir_len = (DDIR_HEADER_LEN as u64)
            .saturating_add(footer.group_count.saturating_mul(DDIR_ENTRY_LEN as u64));
        if dir_len > limits.max_record_len as u64 {
            return Err(Error::LimitExceeded {
                file: file.name().to_path_buf(),
                what: "delta directory length",
                value: dir_len,
                limit: limits.max_record_len as u64,
            });
        }
        // With an AUTH record (SPEC.md §18.1), it sits between DDIR and DFOT.
        let (auth, dir_end) = if header.has_auth() {
            let auth_at = foot_at
                .checked_sub((RECORD_HEADER_LEN + AUTH_LEN) as u64)
                .filter(|&at| at >= base + data_start)
                .ok_or_else(|| Error::truncated(file.name(), foot_at, "AUTH record"))?;
            let (body, _) = read_plain_record(&mut &file, auth_at, TAG_AUTH, AUTH_LEN as u32)?;
            let auth = crate::auth::Auth::decode(file.name(), auth_at, &body)?;
            (Some(auth), auth_at)
        } else {
            (None, foot_at)
        };
        if base
            .checked_add(footer.directory_offset)
            .and_then(|d| d.checked_add(RECORD_HEADER_LEN as u64 + dir_len))
            != Some(dir_end)
        {
            return Err(Error::corrupt(
                file.name(),
                foot_at,
                "the footer's directory offset does not lead to the footer",
            ));
        }
        let dir_at = base + footer.directory_offset;
        let (dir, _) = read_plain_record(&mut &file, dir_at, TAG_DELTA_DIRECTORY, dir_len as u32)?;
        let corrupt =
            |what: String| Error::corrupt(file.name(), dir_at, format!("DDIR record: {what}"));
        if dir.len() as u64 != dir_len || le_u64(&dir, 0) != footer.group_count {
            return Err(corrupt(
                "its length or group count disagrees with the footer".into(),
            ));
        }
        let groups: Vec<(u64, u64)> = dir[DDIR_HEADER_LEN..]
            .chunks_exact(DDIR_ENTRY_LEN)
            .map(|c| (le_u64(c, 0), le_u64(c, 8)))
            .collect();
        let increasing = groups
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        if !increasing
            || groups
                .last()
                .is_some_and(|g| g.0 >= footer.directory_offset || g.1 >= header.block_count())
        {
            return Err(corrupt(
                "groups are not in order inside the payload and image".into(),
            ));
        }
        // Every block is the full's or the delta's: an image of more blocks
        // than both hold is a lie, found before anything reads or allocates
        // by it.
        let base_blocks = header.base_image_size.div_ceil(header.block_size as u64);
        if header.block_count() > base_blocks.saturating_add(footer.entry_count) {
            return Err(Error::corrupt(
                file.name(),
                base,
                format!(
                    "DHED claims an image of {} blocks, but its full has {base_blocks} and the delta changes {}",
                    header.block_count(),
                    footer.entry_count
                ),
            ));
        }
        let max_entries = footer.group_count.saturating_mul(header.map_entries as u64);
        if footer.entry_count > max_entries || footer.entry_count > header.block_count() {
            return Err(corrupt(format!(
                "{} changed blocks cannot fit",
                footer.entry_count
            )));
        }
        Ok(DeltaArchive {
            file,
            trailer,
            header,
            meta,
            footer,
            groups,
            data_start,
            auth,
            head_body: head,
            meta_body,
            maps: RecordCache::default(),
        })
    }

    /// The AUTH record, when the archive was made with a key.
    pub fn auth(&self) -> Option<&crate::auth::Auth> {
        self.auth.as_ref()
    }

    /// Proves that the archive was made by a holder of `key`: its restore
    /// program, DHED (with the identity of the full it needs), META and
    /// identity. Refuses an archive without a MAC.
    pub fn authenticate(&self, key: &crate::auth::Key) -> Result<()> {
        let runtime = self.runtime_hash()?;
        let expected = key.mac(
            "delta",
            &[
                &runtime,
                &self.head_body,
                &self.meta_body,
                &self.footer.identity,
            ],
        );
        crate::auth::require(self.file.name(), self.auth.as_ref(), key, expected)
    }

    /// blake3 of the bytes before the payload: the restore program.
    pub fn runtime_hash(&self) -> Result<crate::Hash> {
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut at = 0u64;
        while at < self.trailer.payload_offset {
            let n = (self.trailer.payload_offset - at).min(buf.len() as u64) as usize;
            self.file.read_at(at, &mut buf[..n], "restore program")?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(*h.finalize().as_bytes())
    }

    pub fn name(&self) -> &Path {
        self.file.name()
    }

    /// The same open archive, borrowed; what was proven stays proven.
    pub fn by_ref(&self) -> DeltaArchive<&R> {
        DeltaArchive {
            file: self.file.borrowed(),
            trailer: self.trailer,
            header: self.header.clone(),
            meta: self.meta.clone(),
            footer: self.footer.clone(),
            groups: self.groups.clone(),
            auth: self.auth,
            head_body: self.head_body.clone(),
            meta_body: self.meta_body.clone(),
            data_start: self.data_start,
            maps: self.maps.clone(),
        }
    }

    pub fn header(&self) -> &DeltaHeader {
        &self.header
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    pub fn footer(&self) -> &DeltaFooter {
        &self.footer
    }

    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    /// Identity of the image this delta rebuilds.
    pub fn identity(&self) -> crate::Hash {
        self.footer.identity
    }

    /// Length of the restore runtime in front of the payload.
    pub fn runtime_len(&self) -> u64 {
        self.trailer.payload_offset
    }

    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    pub fn group_count(&self) -> u64 {
        self.groups.len() as u64
    }

    pub fn into_inner(self) -> R {
        self.file.into_inner()
    }

    /// Reads and checks DMAP record `g`: entries in block order, members
    /// back to back from where the previous group ended, kinds and lengths
    /// that make sense for their blocks.
    pub fn group(&self, g: u64) -> Result<Vec<ChangeEntry>> {
        Ok(self.map(g)?.to_vec())
    }

    /// DMAP record `g`, from a bounded cache shared by the threads reading
    /// this archive; once the image is proven, one read again must be the
    /// one proven.
    pub fn map(&self, g: u64) -> Result<Arc<Vec<ChangeEntry>>> {
        self.maps.get(
            g,
            || self.load_map(g),
            |m| map_digest(m),
            || {
                let at = self.groups.get(g as usize).map_or(0, |(rel, _)| {
                    self.trailer.payload_offset + rel
                });
                Error::corrupt(
                    self.file.name(),
                    at,
                    format!("DMAP record {g} changed since it was proven (is the file being written to?)"),
                )
            },
        )
    }

    /// The change the delta makes to `block`, if any: which group holds it
    /// is found from the directory, then the entry in that group's map.
    pub fn change(&self, block: u64) -> Result<Option<ChangeEntry>> {
        let g = self.groups.partition_point(|&(_, first)| first <= block);
        if g == 0 {
            return Ok(None);
        }
        let map = self.map(g as u64 - 1)?;
        Ok(map
            .binary_search_by_key(&block, |e| e.block)
            .ok()
            .map(|i| map[i]))
    }

    /// Records the digests of the change maps a proof has read.
    pub(crate) fn set_maps_proven(&self, digests: Vec<Hash>) {
        self.maps.set_proven(digests);
    }

    fn load_map(&self, g: u64) -> Result<Vec<ChangeEntry>> {
        let &(rel, first_block) = self
            .groups
            .get(g as usize)
            .ok_or_else(|| Error::invalid(format!("group {g} does not exist")))?;
        let base = self.trailer.payload_offset;
        let at = base + rel;
        let max_body = (DMAP_HEADER_LEN + self.header.map_entries as usize * DMAP_ENTRY_LEN) as u32;
        let (body, _) = read_plain_record(&mut &self.file, at, TAG_DELTA_MAP, max_body)?;
        let name = self.file.name().to_path_buf();
        let corrupt = |what: String| Error::corrupt(&name, at, format!("DMAP record {g}: {what}"));
        if body.len() < DMAP_HEADER_LEN {
            return Err(corrupt("shorter than its header".into()));
        }
        let count = le_u32(&body, 16) as usize;
        if le_u64(&body, 0) != g
            || le_u32(&body, 20) != 0
            || count == 0
            || body.len() != DMAP_HEADER_LEN + count * DMAP_ENTRY_LEN
        {
            return Err(corrupt("header does not match its place or length".into()));
        }
        let group_data_start = le_u64(&body, 8);
        let expected_start = match g {
            0 => self.data_start,
            _ => {
                let (prev_rel, _) = self.groups[g as usize - 1];
                let prev_count_len = self.map_record_len(g - 1)?;
                prev_rel + prev_count_len
            }
        };
        if group_data_start != expected_start {
            return Err(corrupt(format!(
                "its members start at {group_data_start}, they must start at {expected_start}"
            )));
        }
        let next_first = self
            .groups
            .get(g as usize + 1)
            .map_or(self.header.block_count(), |n| n.1);
        let mut entries = Vec::with_capacity(count);
        let mut pos = group_data_start;
        for raw in body[DMAP_HEADER_LEN..].chunks_exact(DMAP_ENTRY_LEN) {
            let e = ChangeEntry::decode(raw, &corrupt)?;
            let prev = entries.last().map(|p: &ChangeEntry| p.block);
            let in_range = match prev {
                None => e.block == first_block,
                Some(p) => e.block > p,
            } && e.block < next_first;
            if !in_range {
                return Err(corrupt(format!("block {} is out of order", e.block)));
            }
            let block_len = self.header.block_len(e.block);
            let expected_len = match e.kind {
                ChangeKind::Zero => 0,
                ChangeKind::Data => block_len,
                ChangeKind::Patch { pages } => {
                    if !self.header.patch_mask_fits(e.block, pages) {
                        return Err(corrupt(format!(
                            "block {}: a patch is not possible here",
                            e.block
                        )));
                    }
                    patch_len(pages, block_len)
                }
            };
            let bound = if expected_len == 0 {
                0
            } else {
                self.header.codec.member_bound(expected_len)
            };
            if e.kind == ChangeKind::Zero {
                if e.member_len != 0 || e.data_offset != 0 || e.member_crc != 0 {
                    return Err(corrupt(format!(
                        "block {}: a zero block has no member",
                        e.block
                    )));
                }
                if e.hash
                    != crate::identity::ZeroHashes::new(
                        self.header.block_size,
                        self.header.image_size,
                    )
                    .get(block_len)
                {
                    return Err(corrupt(format!(
                        "block {}: zero block with a non-zero hash",
                        e.block
                    )));
                }
            } else {
                if e.member_len == 0 || e.member_len as usize > bound || e.data_offset != pos {
                    return Err(corrupt(format!(
                        "block {}: member at {} of {} bytes is not where or what it should be",
                        e.block, e.data_offset, e.member_len
                    )));
                }
                pos += e.member_len as u64;
            }
            entries.push(e);
        }
        if pos != rel {
            return Err(corrupt(format!(
                "members end at {pos}, the record is at {rel}"
            )));
        }
        Ok(entries)
    }

    /// Bytes a DMAP record of group `g` spans, from its entry count, which
    /// is only known by reading its header.
    fn map_record_len(&self, g: u64) -> Result<u64> {
        let at = self.trailer.payload_offset + self.groups[g as usize].0;
        let mut head = [0u8; RECORD_HEADER_LEN];
        self.file.read_at(at, &mut head, "DMAP record")?;
        Ok(RECORD_HEADER_LEN as u64 + le_u32(&head, RECORD_BODY_LEN_OFFSET) as u64)
    }

    /// Reads the stored member of `entry` (empty for zero blocks).
    pub fn read_member(&self, entry: &ChangeEntry) -> Result<Vec<u8>> {
        if entry.member_len == 0 {
            return Ok(Vec::new());
        }
        let at = self.trailer.payload_offset + entry.data_offset;
        let member = self.file.read_vec_at(
            at,
            entry.member_len as usize,
            &format!("member of block {}", entry.block),
        )?;
        if crc32fast::hash(&member) != entry.member_crc {
            return Err(Error::corrupt(
                self.file.name(),
                at,
                format!("block {}: its stored bytes fail their CRC-32", entry.block),
            ));
        }
        Ok(member)
    }

    /// Absolute file offset of a member, for messages.
    pub fn member_file_offset(&self, entry: &ChangeEntry) -> u64 {
        self.trailer.payload_offset + entry.data_offset
    }

    /// The end of the last group, which must be where DDIR starts.
    pub fn check_layout_end(&self) -> Result<()> {
        let expected = match self.groups.len() as u64 {
            0 => self.data_start,
            n => self.groups[n as usize - 1].0 + self.map_record_len(n - 1)?,
        };
        if expected != self.footer.directory_offset {
            return Err(Error::corrupt(
                self.file.name(),
                self.trailer.payload_offset + self.footer.directory_offset,
                "the directory does not follow the last change map",
            ));
        }
        Ok(())
    }
}

/// What a proof saw of a change map: its entries, field for field.
pub(crate) fn map_digest(map: &[ChangeEntry]) -> Hash {
    let mut bytes = Vec::with_capacity(map.len() * DMAP_ENTRY_LEN);
    for e in map {
        e.encode(&mut bytes);
    }
    *blake3::hash(&bytes).as_bytes()
}

/// Bytes a patch with page mask `pages` carries for a block of `block_len`.
pub(crate) fn patch_len(pages: u32, block_len: usize) -> usize {
    (0..32)
        .filter(|p| pages & (1 << p) != 0)
        .map(|p| block_len.saturating_sub(p * PATCH_PAGE).min(PATCH_PAGE))
        .sum()
}
