//! Writing a delta archive: the runtime, then the payload, then the trailer.

use super::{ChangeEntry, ChangeKind, DeltaFooter, DeltaHeader};
use crate::archive_file::NamedWriter;
use crate::buffers::BufferPool;
use crate::bytes::ReadAt;
use crate::codec::{BlockEncoder, Codec};
use crate::error::{Error, Hash, Result};
use crate::full::{FullImage, MemberCheck};
use crate::identity::{block_hash, is_zero, IdentityHasher, ZeroHashes};
use crate::index::BlockEntry;
use crate::layout::*;
use crate::meta::Metadata;
use crate::pipeline::{run_ordered, worker_count, SourceBatch, SourceBatches, SourceBlock};
use crate::record::encode_record;
use crate::source::DiskBytes;
use crate::trailer::Trailer;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How to make a delta.
#[derive(Clone, Debug)]
pub struct DeltaOptions {
    /// Compression of changed blocks.
    pub codec: Codec,
    pub level: Option<i32>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Never read the full's block data: store changed blocks whole.
    pub index_only: bool,
}

impl Default for DeltaOptions {
    fn default() -> Self {
        DeltaOptions {
            codec: Codec::Zstd,
            level: None,
            threads: 0,
            index_only: false,
        }
    }
}

/// What a finished delta archive holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeltaSummary {
    /// Identity of the image the delta rebuilds.
    pub identity: Hash,
    pub image_size: u64,
    pub blocks: u64,
    pub data_blocks: u64,
    pub zero_blocks: u64,
    pub patch_blocks: u64,
    /// Bytes of changed-block members.
    pub data_bytes: u64,
    pub runtime_len: u64,
    pub payload_len: u64,
    pub file_len: u64,
}

/// Writes a delta archive change by change. `finish` completes it; a
/// writer dropped without `finish` leaves no trailer, and no reader or
/// runtime accepts the file.
pub struct DeltaWriter<W: Write> {
    out: NamedWriter<W>,
    header: DeltaHeader,
    group: Vec<ChangeEntry>,
    groups: Vec<(u64, u64)>,
    next_block: u64,
    summary: DeltaSummary,
    /// With a key: the key and what its MAC covers so far (the restore
    /// program's hash, DHED and META bodies).
    auth: Option<(crate::auth::Key, Vec<Vec<u8>>)>,
}

impl<W: Write> DeltaWriter<W> {
    /// Writes `runtime` (the restore program; may be empty), then DHED and META.
    pub fn new(
        out: W,
        name: impl Into<PathBuf>,
        runtime: &[u8],
        header: DeltaHeader,
        meta: &Metadata,
    ) -> Result<Self> {
        Self::with_key(out, name, runtime, header, meta, None)
    }

    /// As `new`; with a key, the archive ends with an AUTH record (SPEC.md
    /// §18.1) whose MAC covers the restore program, DHED, META and identity.
    pub fn with_key(
        out: W,
        name: impl Into<PathBuf>,
        runtime: &[u8],
        mut header: DeltaHeader,
        meta: &Metadata,
        key: Option<crate::auth::Key>,
    ) -> Result<Self> {
        if key.is_some() {
            header.set_auth();
        }
        if header.map_entries == 0 || header.map_entries > MAX_MAP_ENTRIES {
            return Err(Error::invalid(format!(
                "map_entries must be 1..={MAX_MAP_ENTRIES}"
            )));
        }
        // An archive no reader would open is not worth writing.
        let limit = crate::Limits::default().max_image_size;
        for size in [header.image_size, header.base_image_size] {
            if size > limit {
                return Err(Error::invalid(format!(
                    "image size {size} is above the limit of {limit} bytes"
                )));
            }
        }
        let mut w = DeltaWriter {
            out: NamedWriter::new(out, name.into()),
            group: Vec::new(),
            groups: Vec::new(),
            next_block: 0,
            summary: DeltaSummary {
                image_size: header.image_size,
                blocks: header.block_count(),
                runtime_len: runtime.len() as u64,
                ..DeltaSummary::default()
            },
            header,
            auth: None,
        };
        w.out.write_all(runtime)?;
        let head = w.header.encode();
        w.write_record(TAG_DELTA_HEAD, &head)?;
        let meta = meta.encode()?;
        w.write_record(TAG_META, &meta)?;
        w.auth = key.map(|k| {
            let runtime_hash = blake3::hash(runtime).as_bytes().to_vec();
            (k, vec![runtime_hash, head.to_vec(), meta])
        });
        Ok(w)
    }

    pub fn header(&self) -> &DeltaHeader {
        &self.header
    }

    /// Records that `block` differs from the base. Blocks come in
    /// increasing order; `member` is empty for `ChangeKind::Zero`.
    pub fn push_change(
        &mut self,
        block: u64,
        kind: ChangeKind,
        member: &[u8],
        hash: Hash,
    ) -> Result<()> {
        if block < self.next_block || block >= self.header.block_count() {
            return Err(Error::invalid(format!(
                "block {block} is out of order or past the image end"
            )));
        }
        if (kind == ChangeKind::Zero) != member.is_empty() {
            return Err(Error::invalid(format!(
                "block {block}: a zero block has no member, others have one"
            )));
        }
        if let ChangeKind::Patch { pages } = kind {
            if !self.header.patch_mask_fits(block, pages) {
                return Err(Error::invalid(format!(
                    "block {block}: patch pages {pages:#x} are not valid here"
                )));
            }
        }
        self.next_block = block + 1;
        let data_offset = self.payload_pos();
        self.out.write_all(member)?;
        match kind {
            ChangeKind::Data => self.summary.data_blocks += 1,
            ChangeKind::Zero => self.summary.zero_blocks += 1,
            ChangeKind::Patch { .. } => self.summary.patch_blocks += 1,
        }
        self.summary.data_bytes += member.len() as u64;
        self.group.push(ChangeEntry {
            block,
            kind,
            data_offset: if member.is_empty() { 0 } else { data_offset },
            member_len: member.len() as u32,
            member_crc: if member.is_empty() {
                0
            } else {
                crc32fast::hash(member)
            },
            hash,
        });
        if self.group.len() == self.header.map_entries as usize {
            self.end_group()?;
        }
        Ok(())
    }

    fn payload_pos(&self) -> u64 {
        self.out.pos - self.summary.runtime_len
    }

    fn end_group(&mut self) -> Result<()> {
        let entries = std::mem::take(&mut self.group);
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut body = Vec::with_capacity(DMAP_HEADER_LEN + entries.len() * DMAP_ENTRY_LEN);
        body.extend_from_slice(&(self.groups.len() as u64).to_le_bytes());
        let data_start = entries
            .iter()
            .find(|e| e.member_len > 0)
            .map_or(self.payload_pos(), |e| e.data_offset);
        body.extend_from_slice(&data_start.to_le_bytes());
        body.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        for e in &entries {
            e.encode(&mut body);
        }
        self.groups.push((self.payload_pos(), first.block));
        self.write_record(TAG_DELTA_MAP, &body)
    }

    /// Writes the last map, the directory, the footer and the trailer, and
    /// returns the output. `identity` is the rebuilt image's identity.
    pub fn finish(mut self, identity: Hash) -> Result<(W, DeltaSummary)> {
        self.end_group()?;
        let directory_offset = self.payload_pos();
        let mut dir = Vec::with_capacity(DDIR_HEADER_LEN + self.groups.len() * DDIR_ENTRY_LEN);
        dir.extend_from_slice(&(self.groups.len() as u64).to_le_bytes());
        for (offset, first) in &self.groups {
            dir.extend_from_slice(&offset.to_le_bytes());
            dir.extend_from_slice(&first.to_le_bytes());
        }
        self.write_record(TAG_DELTA_DIRECTORY, &dir)?;
        if let Some((key, parts)) = self.auth.take() {
            let mut parts: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            parts.push(&identity);
            let auth = crate::auth::Auth {
                key_id: key.id(),
                mac: key.mac("delta", &parts),
            };
            self.write_record(TAG_AUTH, &auth.encode())?;
        }
        let entry_count =
            self.summary.data_blocks + self.summary.zero_blocks + self.summary.patch_blocks;
        let footer = DeltaFooter {
            identity,
            directory_offset,
            group_count: self.groups.len() as u64,
            entry_count,
        };
        self.write_record(TAG_DELTA_FOOT, &footer.encode())?;
        let trailer = Trailer {
            payload_offset: self.summary.runtime_len,
            payload_len: self.payload_pos(),
            version_major: VERSION_MAJOR,
            version_minor: self.header.version_minor,
        };
        self.out.write_all(&trailer.encode())?;
        self.out.flush()?;
        self.summary.identity = identity;
        self.summary.payload_len = trailer.payload_len;
        self.summary.file_len = self.out.pos;
        Ok((self.out.inner, self.summary))
    }

    fn write_record(&mut self, tag: [u8; 4], body: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(body.len() + RECORD_HEADER_LEN);
        encode_record(tag, body, &mut buf)?;
        self.out.write_all(&buf)
    }
}

/// A batch of source blocks and what the base has at the same places.
struct Job {
    first_block: u64,
    batch: SourceBatch,
    base: Vec<Option<BlockEntry>>,
}

enum Change {
    Unchanged(Hash),
    Stored(ChangeKind, Hash, Vec<u8>),
}

struct Worker {
    encoder: BlockEncoder,
    /// Proves base blocks read for patches; none with `index_only`.
    check: Option<MemberCheck>,
    base_block: Vec<u8>,
    pages: Vec<u8>,
}

/// Reads the new image from `source` once and writes, through `writer`,
/// every block that differs from `base`. Of the base it reads the index, and
/// (unless `index_only`) the data of changed blocks to store only their
/// changed 4 KiB pages. Every worker thread reads the base through `base`
/// itself, the one open file, never by opening its path again: a full
/// replaced by rename while the delta is made cannot lend it blocks. Blocks in
/// the holes of a sparse source (a `DiskSource`'s reader) are taken as zero
/// blocks without being read.
pub fn write_delta<S: DiskBytes, B: ReadAt, W: Write>(
    source: S,
    source_name: &Path,
    base: &FullImage<B>,
    mut writer: DeltaWriter<W>,
    options: &DeltaOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<(W, DeltaSummary)> {
    let header = writer.header().clone();
    if base.identity() != header.base_identity || base.header().block_size != header.block_size {
        return Err(Error::invalid(
            "the delta header does not describe this base",
        ));
    }
    base.prove_index()?;
    let level = options
        .level
        .unwrap_or_else(|| options.codec.default_level());
    let workers = worker_count(options.threads);
    let states = (0..workers)
        .map(|_| {
            Ok(Worker {
                encoder: BlockEncoder::new(options.codec, level)?,
                check: if options.index_only {
                    None
                } else {
                    Some(MemberCheck::new(base.header().codec, base.header())?)
                },
                base_block: Vec::new(),
                pages: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let block_size = header.block_size as usize;
    let image_size = header.image_size;
    let base_name = base.name().to_path_buf();
    let mut identity = IdentityHasher::new(image_size, header.block_size);
    let raw_pool = BufferPool::default();
    let zero_hashes = ZeroHashes::new(header.block_size, image_size);
    let mut batches = SourceBatches::new(source, source_name, image_size, block_size);
    let mut next_block = 0u64;
    let mut done = 0u64;
    run_ordered(
        states,
        workers * 3,
        || {
            let Some(batch) = batches.next(&raw_pool)? else {
                return Ok(None);
            };
            let first_block = next_block;
            let count = batch.block_count() as u64;
            next_block += count;
            let base_entries = (first_block..first_block + count)
                .map(|b| {
                    header
                        .base_has_same_block(b)
                        .then(|| base.entry(b))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(Job {
                first_block,
                batch,
                base: base_entries,
            }))
        },
        |w: &mut Worker, job: Job| {
            let mut out = Vec::with_capacity(job.base.len());
            for (i, block_data) in job.batch.blocks().enumerate() {
                let block = job.first_block + i as u64;
                let (raw, hash) = match block_data {
                    SourceBlock::Data(raw) => (Some(raw), block_hash(raw)),
                    SourceBlock::Zero(len) => (None, zero_hashes.get(len)),
                };
                let base_entry = job.base[i];
                if base_entry.is_some_and(|e| e.hash == hash) {
                    out.push(Change::Unchanged(hash));
                } else if let Some(raw) = raw.filter(|raw| !is_zero(raw)) {
                    out.push(encode_change(
                        w, base, &header, options, &base_name, block, raw, hash, base_entry,
                    )?);
                } else {
                    out.push(Change::Stored(ChangeKind::Zero, hash, Vec::new()));
                }
            }
            let raw_len = job.batch.len() as u64;
            job.batch.recycle(&raw_pool);
            Ok((out, raw_len))
        },
        |(changes, raw_len): (Vec<Change>, u64)| {
            for change in changes {
                let block = identity.blocks();
                match change {
                    Change::Unchanged(hash) => identity.update(&hash),
                    Change::Stored(kind, hash, member) => {
                        identity.update(&hash);
                        writer.push_change(block, kind, &member, hash)?;
                    }
                }
            }
            done += raw_len;
            progress(done);
            Ok(())
        },
    )?;
    writer.finish(identity.finalize())
}

/// Stores a changed, non-zero block: as a PATCH of its changed pages when
/// the base's block is at hand and less than half of it changed, else whole.
#[allow(clippy::too_many_arguments)]
fn encode_change<B: ReadAt>(
    w: &mut Worker,
    img: &FullImage<B>,
    header: &DeltaHeader,
    options: &DeltaOptions,
    base_name: &Path,
    block: u64,
    raw: &[u8],
    hash: Hash,
    base_entry: Option<BlockEntry>,
) -> Result<Change> {
    let pages = header.patch_pages();
    if let (Some(proven), Some(check), false, true) =
        (base_entry, w.check.as_mut(), options.index_only, pages > 0)
    {
        img.read_block(block, &mut w.base_block, check)?;
        // The block read must be the one the proven index describes, or a
        // PATCH would be made against bytes the restore never sees.
        if img.entry(block)?.hash != proven.hash {
            return Err(Error::corrupt(
                base_name,
                0,
                format!("block {block}: the full changed while the delta was made"),
            ));
        }
        let mut mask = 0u32;
        w.pages.clear();
        for (p, (new, old)) in raw
            .chunks(PATCH_PAGE)
            .zip(w.base_block.chunks(PATCH_PAGE))
            .enumerate()
        {
            if new != old {
                mask |= 1 << p;
                w.pages.extend_from_slice(new);
            }
        }
        if mask == 0 {
            return Err(Error::corrupt(
                base_name,
                0,
                format!("block {block}: its index hash differs from the data it holds"),
            ));
        }
        if w.pages.len() * 2 <= raw.len() {
            let mut member = Vec::new();
            w.encoder.encode(&w.pages, &mut member)?;
            return Ok(Change::Stored(
                ChangeKind::Patch { pages: mask },
                hash,
                member,
            ));
        }
    }
    let mut member = Vec::new();
    w.encoder.encode(raw, &mut member)?;
    Ok(Change::Stored(ChangeKind::Data, hash, member))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_larger_than_readers_accept_is_refused() {
        let limit = crate::Limits::default().max_image_size;
        for (image_size, base_image_size) in [(limit + 1, 4096), (4096, limit + 1)] {
            let header = DeltaHeader {
                version_major: 1,
                version_minor: 0,
                compat_flags: 0,
                incompat_flags: 0,
                codec: Codec::Zstd,
                block_size: 4096,
                map_entries: 1,
                image_size,
                base_image_size,
                base_identity: [7; 32],
            };
            let err = DeltaWriter::new(Vec::new(), "t", b"", header, &Metadata::default())
                .err()
                .expect("refused");
            assert!(err.to_string().contains("above the limit"), "{err}");
        }
    }
}
