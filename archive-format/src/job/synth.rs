//! Synthetic fulls: the full image of the disk a delta describes, written
//! from the delta and its full without the disk. An unchanged block's
//! member is copied as it is stored when the codecs match, after it is
//! proven (CRC-32, decode, hash against the proven index); only changed
//! blocks, or every block when the codec changes, are compressed. The
//! result is the file `write_full` would make of the same disk: same
//! records, same index entries, and the delta's identity.

use crate::buffers::BufferPool;
use crate::bytes::ReadAt;
use crate::error::{Error, Result};
use crate::full::{
    write_on_thread, EncodeWorker, EncodedBatch, FullSummary, FullWriter, MemberCheck,
};
use crate::image::{Block, Decoders, Origin, ProvenImage};
use crate::meta::Metadata;
use crate::pipeline::{run_ordered, worker_count};
use crate::Cancel;
use std::io::Write;
use std::ops::Range;

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

/// Blocks one job covers: 1 MiB of 64 KiB blocks, enough that thread
/// hand-offs cost nothing.
const BATCH_BLOCKS: u64 = 16;

/// Writes through `writer` the full image of `image` (a delta over its
/// full, or a full alone, whose map is proven), then finishes it. `writer`
/// must have been started with the image's size and block size
/// (`synth_metadata` gives it its metadata); its codec may differ from
/// the full's, which then costs a compression of every block. Every block
/// is proven before it is written, read from the worker threads through
/// `image`, and the identity of all of them is compared with the image's
/// before the footer is written. On any error the caller must discard
/// what `writer` wrote. `progress` is called with the image bytes done so
/// far; `cancel` is checked between batches.
pub fn write_synth<B: ReadAt, D: ReadAt, W: Write + Send>(
    image: &ProvenImage<B, D>,
    writer: FullWriter<W>,
    progress: &mut dyn FnMut(u64),
    cancel: &Cancel,
) -> Result<(W, SynthSummary)> {
    let out = writer.header().clone();
    if out.image_size != image.image_size() || out.block_size != image.block_size() {
        return Err(Error::invalid(format!(
            "the synthetic full must hold {} bytes in blocks of {}, the writer was started for {} in blocks of {}",
            image.image_size(),
            image.block_size(),
            out.image_size,
            out.block_size
        )));
    }
    let options = writer.options().clone();
    let base = image.base().header();
    let copy = options.codec == base.codec;
    let workers = worker_count(options.threads);
    let states = (0..workers)
        .map(|_| {
            Ok(SynthWorker {
                check: MemberCheck::new(base.codec, base)?,
                decoders: image.decoders()?,
                encoder: EncodeWorker::new(&options)?,
                copy,
                block: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let block_count = image.block_count();
    let mut next_block = 0u64;
    let mut done = 0u64;
    let mut copied_blocks = 0u64;
    let mut copied_bytes = 0u64;
    let mut encoded_blocks = 0u64;
    let member_pool = BufferPool::default();
    let member_pool = &member_pool;
    let writer = write_on_thread(writer, workers, member_pool, |tx| {
        run_ordered(
            states,
            workers * 3,
            || {
                cancel.check()?;
                let start = next_block;
                next_block = (start + BATCH_BLOCKS).min(block_count);
                Ok((start < next_block).then_some(start..next_block))
            },
            |w: &mut SynthWorker, blocks: Range<u64>| {
                let mut made = Made {
                    encoded: EncodedBatch {
                        members: member_pool.take(),
                        blocks: Vec::with_capacity(blocks.clone().count()),
                        raw_len: 0,
                    },
                    copied_blocks: 0,
                    copied_bytes: 0,
                };
                for n in blocks {
                    w.make(image, n, &mut made)?;
                }
                Ok(made)
            },
            |made: Made| {
                done += made.encoded.raw_len;
                copied_blocks += made.copied_blocks;
                copied_bytes += made.copied_bytes;
                encoded_blocks += made.encoded.blocks.len() as u64 - made.copied_blocks;
                progress(done);
                // A send fails only when the writer stopped on an error,
                // which `write_on_thread` returns.
                tx.send(made.encoded)
                    .map_err(|_| Error::invalid("the output writer stopped"))
            },
        )
    })?;
    // Proven block by block against a proven map, so this holds; checked
    // all the same before a footer names the identity.
    let identity = writer.identity();
    if identity != image.identity() {
        return Err(Error::IdentityMismatch {
            file: image.name().to_path_buf(),
            expected: image.identity(),
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

/// A worker's batch of made blocks, and how many of them were copied.
struct Made {
    encoded: EncodedBatch,
    copied_blocks: u64,
    copied_bytes: u64,
}

/// One worker's tools: a prover of the full's members (for copies), the
/// image's decoders (for the rest), the new full's encoder, a buffer.
struct SynthWorker {
    check: MemberCheck,
    decoders: Decoders,
    encoder: EncodeWorker,
    /// Copy unchanged members: the new full's codec is the old one's.
    copy: bool,
    block: Vec<u8>,
}

impl SynthWorker {
    /// Proves block `n` and appends its member to `made`.
    fn make<B: ReadAt, D: ReadAt>(
        &mut self,
        image: &ProvenImage<B, D>,
        n: u64,
        made: &mut Made,
    ) -> Result<()> {
        let len = image.block_len(n);
        let out = &mut made.encoded;
        out.raw_len += len as u64;
        let origin = image.origin(n)?;
        if let (Origin::Full(_), true) = (origin, self.copy) {
            // Proven as a restore proves it (CRC, decode, hash against the
            // proven index; a zero member seen before by its bytes and CRC).
            let (entry, member) = image.read_base(n, &mut self.block, &mut self.check, true)?;
            out.members.extend_from_slice(&member);
            out.blocks
                .push((entry.hash, entry.zero, member.len() as u32));
            made.copied_blocks += 1;
            made.copied_bytes += member.len() as u64;
            return Ok(());
        }
        let read = image.read_with(n, origin, &mut self.block, &mut self.decoders)?;
        out.blocks.push(match read.block {
            Block::Zero => self.encoder.encode_zero(len, &mut out.members)?,
            Block::Data => self.encoder.encode(&self.block, &mut out.members)?,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{BlockEncoder, Codec};
    use crate::delta::{ChangeKind, DeltaArchive, DeltaHeader, DeltaWriter};
    use crate::full::FullImage;
    use crate::identity::block_hash;
    use crate::identity::IdentityHasher;
    use crate::Hash;
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
        let delta = DeltaArchive::open(Cursor::new(delta), "d", &Limits::default())?;
        let base = FullImage::open(Cursor::new(base), "old", &Limits::default())?;
        write(&ProvenImage::of_delta(delta, base)?, codec, cancel)
    }

    fn write<B: ReadAt, D: ReadAt>(
        image: &ProvenImage<B, D>,
        codec: Codec,
        cancel: &Cancel,
    ) -> Result<(Vec<u8>, SynthSummary)> {
        let meta = synth_metadata(image.meta());
        let writer = FullWriter::new(Vec::new(), "s", &options(codec), image.image_size(), &meta)?;
        write_synth(image, writer, &mut |_| {}, cancel)
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
            // A full alone: copied, or converted to the other codec.
            let alone = FullImage::open(Cursor::new(&base), "old", &Limits::default()).unwrap();
            let alone = ProvenImage::of_full(alone).unwrap();
            for to in [Codec::Gzip, Codec::Zstd] {
                let (made, _) = write(&alone, to, &Cancel::new()).unwrap();
                assert!(
                    made == full_of(&old, to, &Metadata::default()),
                    "{from:?} -> {to:?}"
                );
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
            let full = FullImage::open(Cursor::new(&base), "old", &Limits::default()).unwrap();
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
