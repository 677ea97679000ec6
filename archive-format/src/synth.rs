//! Synthetic fulls: the full image of the disk a delta describes, written
//! from the delta and its full without the disk. An unchanged block's
//! member is copied as it is stored when the codecs match, after it is
//! proven (CRC-32, decode, hash against the proven index); only changed
//! blocks, or every block when the codec changes, are compressed. The
//! result is the file `write_full` would make of the same disk: same
//! records, same index entries, and the delta's identity.

use crate::buffers::BufferPool;
use crate::codec::BlockDecoder;
use crate::delta::{ChangeEntry, ChangeKind, DeltaArchive};
use crate::error::{Error, Hash, Result};
use crate::full::{
    write_on_thread, EncodeWorker, EncodedBatch, FullImage, FullSummary, FullWriter, MemberCheck,
};
use crate::identity::block_hash;
use crate::index::BlockEntry;
use crate::layout::PATCH_PAGE;
use crate::meta::Metadata;
use crate::pipeline::{run_ordered, worker_count};
use crate::Cancel;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// What a synthetic full holds, and how it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthSummary {
    pub full: FullSummary,
    /// Blocks whose stored member was copied from the old full, and the
    /// bytes of those members.
    pub copied_blocks: u64,
    pub copied_bytes: u64,
    /// Blocks compressed anew: the changed ones, and with another codec
    /// than the old full's, all of them.
    pub encoded_blocks: u64,
}

/// The metadata of the synthetic full of a delta whose metadata is
/// `delta`: the delta's own (VM, disk, .vmx, when it was made), without
/// the name of the full it needed, which a full has no use for.
pub fn synth_metadata(delta: &Metadata) -> Metadata {
    Metadata {
        base_name: None,
        ..delta.clone()
    }
}

/// Writes through `writer` the full image of the disk `delta` rebuilds
/// from `base`, then finishes it. `writer` must have been started with
/// the delta's image size and block size (`synth_metadata` gives it its
/// metadata); its codec may differ from `base`'s, which then costs a
/// compression of every block. `base` is checked to be the full `delta`
/// needs and its index proven before any block is read; every block is
/// proven before it is written, and the identity of all of them is
/// compared with the delta's before the footer is written. On any error
/// the caller must discard what `writer` wrote. `progress` is called with
/// the image bytes done so far; `cancel` is checked between batches.
pub fn write_synth<D: Read + Seek, B: Read + Seek, W: Write + Send>(
    delta: &mut DeltaArchive<D>,
    base: &mut FullImage<B>,
    writer: FullWriter<W>,
    progress: &mut dyn FnMut(u64),
    cancel: &Cancel,
) -> Result<(W, SynthSummary)> {
    crate::restore::check_base(delta, base)?;
    delta.check_layout_end()?;
    let h = delta.header().clone();
    let out = writer.header().clone();
    if out.image_size != h.image_size || out.block_size != h.block_size {
        return Err(Error::invalid(format!(
            "the synthetic full must hold {} bytes in blocks of {}, the writer was started for {} in blocks of {}",
            h.image_size, h.block_size, out.image_size, out.block_size
        )));
    }
    let options = writer.options().clone();
    let copy = options.codec == base.header().codec;
    let workers = worker_count(options.threads);
    let states = (0..workers)
        .map(|_| SynthWorker::new(base, h.codec, &options, copy))
        .collect::<Result<Vec<_>>>()?;
    let paths = Paths {
        base: base.name().to_path_buf(),
        delta: delta.name().to_path_buf(),
    };
    let block_count = h.block_count();
    let mut next_block = 0u64;
    let mut changes = ChangeWalk::default();
    let mut done = 0u64;
    let mut copied_blocks = 0u64;
    let mut copied_bytes = 0u64;
    let mut encoded_blocks = 0u64;
    let member_pool = BufferPool::default();
    let member_pool = &member_pool;
    // A batch holds about this many bytes of members read and written.
    const BATCH_BYTES: u64 = 1 << 20;
    let writer = write_on_thread(writer, workers, member_pool, |tx| {
        run_ordered(
            states,
            workers * 3,
            || {
                cancel.check()?;
                let mut tasks = Vec::new();
                let mut bytes = 0u64;
                while next_block < block_count && bytes < BATCH_BYTES {
                    let b = next_block;
                    let task = match changes.take(delta, b)? {
                        None => {
                            if !h.base_has_same_block(b) {
                                return Err(Error::corrupt(
                                    &paths.delta,
                                    delta.trailer().payload_offset,
                                    format!("block {b} is not in the delta and the full has no block of its length there"),
                                ));
                            }
                            let (entry, offset, member) = base.read_member(b)?;
                            Task::Base {
                                block: b,
                                entry,
                                offset,
                                member,
                            }
                        }
                        Some(e) => match e.kind {
                            ChangeKind::Zero => Task::Zero { entry: e },
                            ChangeKind::Data => Task::Data {
                                entry: e,
                                offset: delta.member_file_offset(&e),
                                member: delta.read_member(&e)?,
                            },
                            ChangeKind::Patch { pages } => {
                                let (base_entry, base_offset, base_member) = base.read_member(b)?;
                                Task::Patch {
                                    entry: e,
                                    pages,
                                    offset: delta.member_file_offset(&e),
                                    member: delta.read_member(&e)?,
                                    base_entry,
                                    base_offset,
                                    base_member,
                                }
                            }
                        },
                    };
                    bytes += task.weight(h.block_len(b) as u64, copy);
                    tasks.push(task);
                    next_block += 1;
                }
                Ok((!tasks.is_empty()).then_some(tasks))
            },
            |w: &mut SynthWorker, tasks: Vec<Task>| {
                let mut batch = Made {
                    encoded: EncodedBatch {
                        members: member_pool.take(),
                        blocks: Vec::with_capacity(tasks.len()),
                        raw_len: 0,
                    },
                    copied_blocks: 0,
                    copied_bytes: 0,
                };
                for task in tasks {
                    w.make(task, &h, &paths, &mut batch)?;
                }
                Ok(batch)
            },
            |batch: Made| {
                done += batch.encoded.raw_len;
                copied_blocks += batch.copied_blocks;
                copied_bytes += batch.copied_bytes;
                encoded_blocks += batch.encoded.blocks.len() as u64 - batch.copied_blocks;
                progress(done);
                // A send fails only when the writer stopped on an error,
                // which `write_on_thread` returns.
                tx.send(batch.encoded)
                    .map_err(|_| Error::invalid("the output writer stopped"))
            },
        )
    })?;
    changes.finish(delta)?;
    let identity = writer.identity();
    if identity != delta.identity() {
        return Err(Error::IdentityMismatch {
            file: paths.delta,
            expected: delta.identity(),
            actual: identity,
        });
    }
    let (out, full) = writer.finish()?;
    Ok((
        out,
        SynthSummary {
            full,
            copied_blocks,
            copied_bytes,
            encoded_blocks,
        },
    ))
}

struct Paths {
    base: PathBuf,
    delta: PathBuf,
}

/// One block to make, with the stored bytes it needs.
enum Task {
    /// Unchanged: the old full's member.
    Base {
        block: u64,
        entry: BlockEntry,
        offset: u64,
        member: Vec<u8>,
    },
    Zero {
        entry: ChangeEntry,
    },
    Data {
        entry: ChangeEntry,
        offset: u64,
        member: Vec<u8>,
    },
    Patch {
        entry: ChangeEntry,
        pages: u32,
        offset: u64,
        member: Vec<u8>,
        base_entry: BlockEntry,
        base_offset: u64,
        base_member: Vec<u8>,
    },
}

impl Task {
    /// Bytes it holds in a batch, read and made: a copied member twice, a
    /// block compressed anew its stored bytes and its block's length.
    fn weight(&self, block_len: u64, copy: bool) -> u64 {
        const SMALL: u64 = 1024;
        match self {
            Task::Base { member, .. } if copy => 2 * member.len() as u64 + SMALL,
            Task::Base { member, .. } | Task::Data { member, .. } => {
                member.len() as u64 + block_len
            }
            Task::Patch {
                member,
                base_member,
                ..
            } => (member.len() + base_member.len()) as u64 + block_len,
            Task::Zero { .. } => SMALL,
        }
    }
}

/// A worker's batch of made blocks, and how many of them were copied.
struct Made {
    encoded: EncodedBatch,
    copied_blocks: u64,
    copied_bytes: u64,
}

/// One worker's tools: a prover of the old full's members, a decoder of
/// the delta's, an encoder of the new full's, and buffers.
struct SynthWorker {
    check: MemberCheck,
    decoder: BlockDecoder,
    encoder: EncodeWorker,
    /// Copy unchanged members: the new full's codec is the old one's.
    copy: bool,
    block: Vec<u8>,
    pages: Vec<u8>,
}

impl SynthWorker {
    fn new<B: Read + Seek>(
        base: &FullImage<B>,
        delta_codec: crate::Codec,
        options: &crate::FullOptions,
        copy: bool,
    ) -> Result<Self> {
        Ok(SynthWorker {
            check: MemberCheck::new(base.header().codec, base.header())?,
            decoder: BlockDecoder::new(delta_codec)?,
            encoder: EncodeWorker::new(options)?,
            copy,
            block: Vec::new(),
            pages: Vec::new(),
        })
    }

    /// Proves `task`'s block and appends its member to `made`.
    fn make(
        &mut self,
        task: Task,
        h: &crate::DeltaHeader,
        paths: &Paths,
        made: &mut Made,
    ) -> Result<()> {
        let out = &mut made.encoded;
        match task {
            Task::Base {
                block,
                entry,
                offset,
                member,
            } => {
                let len = h.block_len(block);
                out.raw_len += len as u64;
                // A zero member seen before is proven by its bytes and CRC.
                let known_zero = self.check.is_proven_zero(&entry, &member, len);
                if !known_zero {
                    self.block.resize(len, 0);
                    self.check.check(
                        &paths.base,
                        block,
                        offset,
                        &entry,
                        &member,
                        &mut self.block,
                    )?;
                }
                if self.copy {
                    out.members.extend_from_slice(&member);
                    out.blocks
                        .push((entry.hash, entry.zero, member.len() as u32));
                    made.copied_blocks += 1;
                    made.copied_bytes += member.len() as u64;
                } else if entry.zero {
                    out.blocks
                        .push(self.encoder.encode_zero(len, &mut out.members)?);
                } else {
                    out.blocks
                        .push(self.encoder.encode(&self.block, &mut out.members)?);
                }
            }
            Task::Zero { entry } => {
                let len = h.block_len(entry.block);
                out.raw_len += len as u64;
                out.blocks
                    .push(self.encoder.encode_zero(len, &mut out.members)?);
            }
            Task::Data {
                entry,
                offset,
                member,
            } => {
                let len = h.block_len(entry.block);
                out.raw_len += len as u64;
                self.block.resize(len, 0);
                self.decoder
                    .decode(&member, &mut self.block)
                    .map_err(|why| {
                        Error::corrupt(
                            &paths.delta,
                            offset,
                            format!("block {}: {why}", entry.block),
                        )
                    })?;
                check_hash(&paths.delta, &entry, offset, &self.block)?;
                out.blocks
                    .push(self.encoder.encode(&self.block, &mut out.members)?);
            }
            Task::Patch {
                entry,
                pages,
                offset,
                member,
                base_entry,
                base_offset,
                base_member,
            } => {
                let len = h.block_len(entry.block);
                out.raw_len += len as u64;
                self.block.resize(len, 0);
                self.check.check(
                    &paths.base,
                    entry.block,
                    base_offset,
                    &base_entry,
                    &base_member,
                    &mut self.block,
                )?;
                self.pages.resize(crate::delta::patch_len(pages, len), 0);
                self.decoder
                    .decode(&member, &mut self.pages)
                    .map_err(|why| {
                        Error::corrupt(
                            &paths.delta,
                            offset,
                            format!("block {}: {why}", entry.block),
                        )
                    })?;
                let mut at = 0;
                for p in (0..32).filter(|p| pages & (1 << p) != 0) {
                    let start = p * PATCH_PAGE;
                    let n = len.saturating_sub(start).min(PATCH_PAGE);
                    self.block[start..start + n].copy_from_slice(&self.pages[at..at + n]);
                    at += n;
                }
                check_hash(&paths.delta, &entry, offset, &self.block)?;
                out.blocks
                    .push(self.encoder.encode(&self.block, &mut out.members)?);
            }
        }
        Ok(())
    }
}

fn check_hash(file: &Path, entry: &ChangeEntry, offset: u64, data: &[u8]) -> Result<()> {
    let actual: Hash = block_hash(data);
    if actual != entry.hash {
        return Err(Error::BlockMismatch {
            file: file.to_path_buf(),
            block: entry.block,
            offset,
            expected: entry.hash,
            actual,
        });
    }
    Ok(())
}

/// Walks a delta's change maps in block order alongside the image.
#[derive(Default)]
struct ChangeWalk {
    changes: std::vec::IntoIter<ChangeEntry>,
    pending: Option<ChangeEntry>,
    next_group: u64,
    seen: u64,
}

impl ChangeWalk {
    /// The change for block `b`, if the delta has one; blocks are asked
    /// for in increasing order.
    fn take<D: Read + Seek>(
        &mut self,
        delta: &mut DeltaArchive<D>,
        b: u64,
    ) -> Result<Option<ChangeEntry>> {
        if self.pending.is_none() {
            self.pending = self.changes.next();
            if self.pending.is_none() && self.next_group < delta.group_count() {
                self.changes = delta.group(self.next_group)?.into_iter();
                self.next_group += 1;
                self.pending = self.changes.next();
            }
            self.seen += self.pending.is_some() as u64;
        }
        Ok(self
            .pending
            .filter(|e| e.block == b)
            .inspect(|_| self.pending = None))
    }

    /// After the last block: every entry was used and the count matches.
    fn finish<D: Read + Seek>(&self, delta: &DeltaArchive<D>) -> Result<()> {
        if self.seen != delta.footer().entry_count
            || self.next_group != delta.group_count()
            || self.pending.is_some()
        {
            return Err(Error::corrupt(
                delta.name(),
                delta.trailer().payload_offset,
                "the change maps hold blocks past the image end or fewer entries than the footer counts",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{BlockEncoder, Codec};
    use crate::delta::{DeltaHeader, DeltaWriter};
    use crate::identity::IdentityHasher;
    use crate::{FullOptions, Limits};
    use std::io::Cursor;

    const BS: usize = 4096;

    /// Zero blocks, repeated-byte blocks and mixed ones, `seed` choosing.
    fn disk(blocks: usize, tail: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut d = vec![0u8; blocks * BS + tail];
        for block in d.chunks_mut(BS) {
            match next() % 3 {
                0 => {}
                1 => block.fill(next() as u8),
                _ => block.iter_mut().for_each(|b| *b = next() as u8 % 7),
            }
        }
        d
    }

    fn options(codec: Codec) -> FullOptions {
        FullOptions {
            codec,
            block_size: BS as u32,
            segment_blocks: 4,
            threads: 3,
            ..FullOptions::default()
        }
    }

    /// The full `push_block` writes of `disk`.
    fn full_of(disk: &[u8], codec: Codec, meta: &Metadata) -> Vec<u8> {
        let mut w =
            FullWriter::new(Vec::new(), "f", &options(codec), disk.len() as u64, meta).unwrap();
        for block in disk.chunks(BS) {
            w.push_block(block).unwrap();
        }
        w.finish().unwrap().0
    }

    /// A delta from `old` (whose full is `base`) to `new`: changed blocks
    /// stored whole or as zeros; `identity` overrides the true one.
    fn delta_of(base: &[u8], old: &[u8], new: &[u8], identity: Option<Hash>) -> Vec<u8> {
        let full = FullImage::open(Cursor::new(base), "old", &Limits::default()).unwrap();
        let header = DeltaHeader {
            version_major: crate::layout::VERSION_MAJOR,
            version_minor: crate::layout::VERSION_MINOR,
            compat_flags: 0,
            incompat_flags: 0,
            codec: Codec::Zstd,
            block_size: BS as u32,
            map_entries: 3,
            image_size: new.len() as u64,
            base_image_size: old.len() as u64,
            base_identity: full.identity(),
        };
        let meta = Metadata {
            disk_name: Some("new.raw".into()),
            base_name: Some("old".into()),
            ..Metadata::default()
        };
        let mut w = DeltaWriter::new(Vec::new(), "d", b"runtime", header, &meta).unwrap();
        let mut encoder = BlockEncoder::new(Codec::Zstd, 3).unwrap();
        let mut hasher = IdentityHasher::new(new.len() as u64, BS as u32);
        for (b, block) in new.chunks(BS).enumerate() {
            let hash = block_hash(block);
            hasher.update(&hash);
            if old.chunks(BS).nth(b) == Some(block) {
                continue;
            }
            if crate::identity::is_zero(block) {
                w.push_change(b as u64, ChangeKind::Zero, &[], hash)
                    .unwrap();
            } else {
                let mut member = Vec::new();
                encoder.encode(block, &mut member).unwrap();
                w.push_change(b as u64, ChangeKind::Data, &member, hash)
                    .unwrap();
            }
        }
        w.finish(identity.unwrap_or_else(|| hasher.finalize()))
            .unwrap()
            .0
    }

    fn synth(
        base: &[u8],
        delta: &[u8],
        codec: Codec,
        cancel: &Cancel,
    ) -> Result<(Vec<u8>, SynthSummary)> {
        let mut delta = DeltaArchive::open(Cursor::new(delta), "d", &Limits::default())?;
        let mut base = FullImage::open(Cursor::new(base), "old", &Limits::default())?;
        let meta = synth_metadata(delta.meta());
        let h = delta.header().clone();
        let writer = FullWriter::new(Vec::new(), "s", &options(codec), h.image_size, &meta)?;
        write_synth(&mut delta, &mut base, writer, &mut |_| {}, cancel)
    }

    /// The synthetic full is byte for byte the full `FullWriter` makes of
    /// the new disk with the same metadata, in either codec from either.
    #[test]
    fn a_synthetic_full_is_the_full_of_the_new_disk() {
        let old = disk(23, 100, 1);
        let mut new = disk(25, 7, 2);
        new[..10 * BS].copy_from_slice(&old[..10 * BS]);
        let meta = Metadata {
            disk_name: Some("new.raw".into()),
            ..Metadata::default()
        };
        for from in [Codec::Gzip, Codec::Zstd] {
            let base = full_of(&old, from, &Metadata::default());
            let delta = delta_of(&base, &old, &new, None);
            for to in [Codec::Gzip, Codec::Zstd] {
                let (made, summary) = synth(&base, &delta, to, &Cancel::new()).unwrap();
                assert!(made == full_of(&new, to, &meta), "{from:?} -> {to:?}");
                let same = new
                    .chunks(BS)
                    .zip(old.chunks(BS))
                    .filter(|(a, b)| a == b)
                    .count() as u64;
                assert!(same >= 10);
                let copied = if from == to { same } else { 0 };
                assert_eq!(summary.copied_blocks, copied, "{from:?} -> {to:?}");
                assert_eq!(summary.encoded_blocks, 26 - copied);
            }
        }
    }

    #[test]
    fn a_damaged_member_is_named_and_a_wrong_identity_refused() {
        let old = disk(12, 0, 3);
        let mut new = old.clone();
        new[11 * BS..].fill(9);
        let mut base = full_of(&old, Codec::Gzip, &Metadata::default());
        let delta = delta_of(&base, &old, &new, None);
        let lying = delta_of(&base, &old, &new, Some([5; 32]));
        match synth(&base, &lying, Codec::Gzip, &Cancel::new()) {
            Err(Error::IdentityMismatch { expected, .. }) => assert_eq!(expected, [5; 32]),
            other => panic!("a delta with a wrong identity gave {other:?}"),
        }
        let cancel = Cancel::new();
        cancel.cancel();
        assert!(matches!(
            synth(&base, &delta, Codec::Gzip, &cancel),
            Err(Error::Cancelled)
        ));
        let (entry, offset) = {
            let mut full = FullImage::open(Cursor::new(&base), "old", &Limits::default()).unwrap();
            let b = (0..11).find(|&b| !full.entry(b).unwrap().zero).unwrap();
            let (entry, offset, _) = full.read_member(b).unwrap();
            ((b, entry), offset)
        };
        base[(offset + entry.1.member_len as u64 / 2) as usize] ^= 0x40;
        let err = synth(&base, &delta, Codec::Gzip, &Cancel::new()).unwrap_err();
        assert!(err.is_integrity(), "{err}");
        assert!(
            err.to_string().contains(&format!("block {}", entry.0)),
            "{err}"
        );
    }
}
