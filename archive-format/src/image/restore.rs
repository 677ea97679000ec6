//! Restoring: rebuild the image a delta describes from the delta and its
//! full, proving every block against its hash before it is handed on, and
//! the whole against the delta's identity at the end (SPEC.md §19).

use crate::bytes::ReadAt;
use crate::cancel::Cancel;
use crate::codec::BlockDecoder;
use crate::delta::{ChangeEntry, ChangeKind, DeltaArchive};
use crate::error::{Error, Hash, Result};
use crate::full::FullImage;
use crate::identity::{block_hash, IdentityHasher};
use crate::image::{apply_patch, decode_change, Block, Decoders, Origin, ProvenImage};
use crate::pipeline::{run_ordered, worker_count};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Where proven blocks go: a block at any offset, then a flush. The file,
/// raw and VMDK targets ([`crate::target::RestoreTarget`]) and a verify's
/// [`DiscardSink`] implement it.
pub trait BlockSink {
    /// `data` is the block's bytes, or `None` for a block of zeros (which a
    /// preallocated target already holds).
    fn put(&mut self, block: u64, offset: u64, data: Option<&[u8]>) -> Result<()>;

    /// Makes what was put durable, as far as this target can.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// False for a sink that never looks at the bytes (verification): the
    /// blocks are then proven in reused buffers and `put` gets `None`.
    fn wants_data(&self) -> bool {
        true
    }
}

/// A sink that keeps nothing: verification.
pub struct DiscardSink;

impl BlockSink for DiscardSink {
    fn put(&mut self, _: u64, _: u64, _: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    fn wants_data(&self) -> bool {
        false
    }
}

/// Counters a restore reports as it goes and at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Image bytes proven and handed to the sink so far.
    pub done: u64,
    pub image_size: u64,
    /// Image bytes that came from the full and from the delta.
    pub from_full: u64,
    pub from_delta: u64,
    /// Blocks of zeros (not written).
    pub zero_blocks: u64,
    pub zero_bytes: u64,
    /// Bytes of stored data read from the full and from the delta.
    pub full_read: u64,
    pub delta_read: u64,
    /// Image bytes an interrupted restore had already written, read back and
    /// proven, and kept (not counted in `from_full` or `from_delta`).
    pub kept: u64,
    /// Image bytes of an interrupted restore read back and hashed so far,
    /// before the restore proper starts.
    pub checked: u64,
    /// Image bytes the delta supplies (its changed blocks), and the rest,
    /// which comes from the full: the wholes that `from_delta` and
    /// `from_full` count towards.
    pub delta_total: u64,
    pub full_total: u64,
}

impl RestoreProgress {
    fn new(image_size: u64, block_size: u32, changed_blocks: u64) -> Self {
        let delta_total = changed_blocks
            .saturating_mul(block_size as u64)
            .min(image_size);
        RestoreProgress {
            image_size,
            delta_total,
            full_total: image_size - delta_total,
            ..RestoreProgress::default()
        }
    }

    /// Counts one block of `len` bytes handed on.
    fn count(&mut self, len: u64, zero: bool, from_delta: bool, stored: u64, kept: bool) {
        if kept {
            self.kept += len;
        } else if zero {
            self.zero_blocks += 1;
            self.zero_bytes += len;
        }
        if from_delta {
            self.delta_read += stored;
            if !kept {
                self.from_delta += len;
            }
        } else {
            self.full_read += stored;
            if !kept {
                self.from_full += len;
            }
        }
        self.done += len;
    }

    /// Percent of the delta's blocks and of the full's blocks handed on.
    pub fn percents(&self) -> (u64, u64) {
        let pct = |part: u64, whole: u64| {
            if whole == 0 {
                100
            } else {
                (part.min(whole) as u128 * 100 / whole as u128) as u64
            }
        };
        // Kept blocks are not told apart by origin; count them as the full's,
        // which most of an image is.
        (
            pct(self.from_delta, self.delta_total),
            pct(self.from_full + self.kept, self.full_total),
        )
    }
}

/// The data an interrupted restore left behind. A block in it is kept only
/// once read back and proven against the hash the image needs there.
#[derive(Debug)]
pub struct PriorImage {
    file: File,
    name: PathBuf,
}

impl PriorImage {
    pub fn new(file: File, name: impl Into<PathBuf>) -> Self {
        PriorImage {
            file,
            name: name.into(),
        }
    }

    /// True when the `len` bytes at `offset` hash to `expected`; a file that
    /// ends before them does not hold them.
    pub fn holds(
        &self,
        offset: u64,
        len: usize,
        expected: &Hash,
        buf: &mut Vec<u8>,
    ) -> Result<bool> {
        crate::image::block_buffer(buf, len);
        match FileExt::read_exact_at(&self.file, buf, offset) {
            Ok(()) => Ok(block_hash(buf) == *expected),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(Error::io(&self.name, Some(offset), e)),
        }
    }
}

/// What a finished restore proved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    pub identity: Hash,
    pub blocks: u64,
    pub progress: RestoreProgress,
}

/// Walks a delta's change maps in block order alongside the image.
struct ChangeCursor {
    changes: std::vec::IntoIter<ChangeEntry>,
    pending: Option<ChangeEntry>,
    next_group: u64,
    seen: u64,
}

impl ChangeCursor {
    fn new() -> Self {
        ChangeCursor {
            changes: Vec::new().into_iter(),
            pending: None,
            next_group: 0,
            seen: 0,
        }
    }

    /// The change for block `b`, if the delta has one. Blocks are asked
    /// for in increasing order.
    fn take<D: ReadAt>(&mut self, delta: &DeltaArchive<D>, b: u64) -> Result<Option<ChangeEntry>> {
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
    fn finish<D: ReadAt>(&self, delta: &DeltaArchive<D>) -> Result<()> {
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

/// Checks, before anything is written, that `base` is the full `delta`
/// needs: its recorded identity, its shape, and its index proven against
/// that identity. [`ProvenImage::of_delta`] does this and proves the rest
/// of the map.
pub fn check_base<D: ReadAt, B: ReadAt>(
    delta: &DeltaArchive<D>,
    base: &FullImage<B>,
) -> Result<()> {
    crate::image::check_base_shape(delta, base)?;
    base.prove_index()
}

/// A block a worker is given: where it comes from, and whether an
/// interrupted restore already holds it.
struct Job {
    block: u64,
    origin: Origin,
    kept: bool,
}

struct Done {
    block: u64,
    hash: Hash,
    data: Option<Vec<u8>>,
    /// A block of zeros handed on without its bytes.
    zero: bool,
    from_delta: bool,
    stored: u64,
    /// Found already in place (a resumed restore): nothing to write.
    kept: bool,
}

/// Rebuilds the proven `image` into `sink` on `threads` workers (0: one per
/// core): each block read and proven with [`ProvenImage::read_block`]'s
/// engine, handed to `sink` in block order, `progress` told after every
/// batch, `cancel` checked between batches. The hashes of the blocks handed
/// on are folded into the identity and compared with the image's at the end.
///
/// With `prior` (resuming), each block is first read back from it and kept
/// when it already has the right hash; every other block, zeros included,
/// is handed to `sink` with its bytes.
pub fn restore<B: ReadAt, D: ReadAt>(
    image: &ProvenImage<B, D>,
    sink: &mut dyn BlockSink,
    threads: usize,
    prior: Option<&PriorImage>,
    progress: &mut dyn FnMut(&RestoreProgress),
    cancel: &Cancel,
) -> Result<RestoreReport> {
    let block_count = image.block_count();
    let block_size = image.block_size() as u64;
    let workers = worker_count(threads);
    let states = (0..workers)
        .map(|_| Ok((image.decoders()?, Vec::new())))
        .collect::<Result<Vec<_>>>()?;
    let keep_data = sink.wants_data();
    let mut stats = RestoreProgress::new(
        image.image_size(),
        image.block_size(),
        image.changed_blocks(),
    );
    let in_place = match prior {
        Some(p) => Some(blocks_in_place(
            image, p, workers, &mut stats, progress, cancel,
        )?),
        None => None,
    };
    let resuming = prior.is_some();
    let mut next_block = 0u64;
    let mut identity = IdentityHasher::new(image.image_size(), image.block_size());
    const BATCH_BYTES: u64 = 1 << 20;
    const ZERO_TASK_BYTES: u64 = 1024;

    run_ordered(
        states,
        workers * 3,
        || {
            cancel.check()?;
            let mut jobs = Vec::new();
            let mut bytes = 0u64;
            while next_block < block_count && bytes < BATCH_BYTES {
                let b = next_block;
                let origin = image.origin(b)?;
                let kept = in_place.as_ref().is_some_and(|k| k.contains(b));
                let len = image.block_len(b) as u64;
                // A batch is bounded by what it holds in memory once proven:
                // its stored members and the blocks they decode to. A zero
                // block decodes to nothing kept (unless resuming, which
                // writes its zeros), so the zeros of a sparse disk go by in
                // batches of a thousand, not sixteen.
                bytes += match origin {
                    _ if kept => ZERO_TASK_BYTES,
                    Origin::Zero if !resuming => ZERO_TASK_BYTES,
                    Origin::Full(e) if e.zero && !resuming => e.member_len as u64 + ZERO_TASK_BYTES,
                    Origin::Full(e) => e.member_len as u64 + len,
                    Origin::Data(e) | Origin::Patch(e) => e.member_len as u64 + len,
                    Origin::Zero => len,
                };
                jobs.push(Job {
                    block: b,
                    origin,
                    kept,
                });
                next_block += 1;
            }
            Ok((!jobs.is_empty()).then_some(jobs))
        },
        |(dec, scratch): &mut (Decoders, Vec<u8>), jobs: Vec<Job>| {
            jobs.into_iter()
                .map(|job| {
                    let hash = image.hash_of(job.block, &job.origin);
                    if job.kept {
                        return Ok(Done {
                            block: job.block,
                            hash,
                            data: None,
                            zero: false,
                            from_delta: job.origin.from_delta(),
                            stored: 0,
                            kept: true,
                        });
                    }
                    if !keep_data {
                        let read = image.read_with(job.block, job.origin, scratch, dec)?;
                        return Ok(Done {
                            block: job.block,
                            hash,
                            data: None,
                            zero: read.block == Block::Zero,
                            from_delta: read.from_delta,
                            stored: read.stored,
                            kept: false,
                        });
                    }
                    let mut out = Vec::new();
                    let read = image.read_with(job.block, job.origin, &mut out, dec)?;
                    // When resuming, zero blocks are handed on as bytes: the
                    // prior data may hold anything there.
                    let data = match read.block {
                        Block::Data => Some(out),
                        Block::Zero if resuming => Some(vec![0; image.block_len(job.block)]),
                        Block::Zero => None,
                    };
                    Ok(Done {
                        block: job.block,
                        hash,
                        zero: data.is_none(),
                        data,
                        from_delta: read.from_delta,
                        stored: read.stored,
                        kept: false,
                    })
                })
                .collect::<Result<Vec<_>>>()
        },
        |done: Vec<Done>| {
            for d in done {
                identity.update(&d.hash);
                let len = image.block_len(d.block) as u64;
                sink.put(d.block, d.block * block_size, d.data.as_deref())?;
                stats.count(len, d.zero, d.from_delta, d.stored, d.kept);
            }
            progress(&stats);
            Ok(())
        },
    )?;
    sink.flush()?;
    prove_identity(
        image.name(),
        image.identity(),
        image.block_count(),
        &identity,
        stats,
    )
}

/// One bit per block, in block order: a 16 TiB disk of 64 KiB blocks needs
/// 32 MiB, not the 256 MiB of one `bool` each.
#[derive(Default)]
struct BlockSet {
    words: Vec<u64>,
    len: u64,
}

impl BlockSet {
    fn push(&mut self, member: bool) {
        if self.len.is_multiple_of(64) {
            self.words.push(0);
        }
        if member {
            *self.words.last_mut().expect("pushed above") |= 1 << (self.len % 64);
        }
        self.len += 1;
    }

    fn contains(&self, b: u64) -> bool {
        self.words
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }
}

/// Which blocks `prior` already holds: each read back and hashed, on every
/// worker, against the proven hash the image needs there. Nothing is read
/// from the full or the delta for a block in place.
fn blocks_in_place<B: ReadAt, D: ReadAt>(
    image: &ProvenImage<B, D>,
    prior: &PriorImage,
    workers: usize,
    stats: &mut RestoreProgress,
    progress: &mut dyn FnMut(&RestoreProgress),
    cancel: &Cancel,
) -> Result<BlockSet> {
    let block_count = image.block_count();
    let block_size = image.block_size() as u64;
    let mut in_place = BlockSet::default();
    let mut next_block = 0u64;
    const BATCH_BLOCKS: u64 = 64;
    run_ordered(
        vec![Vec::new(); workers],
        workers * 3,
        || {
            cancel.check()?;
            let first = next_block;
            next_block = (first + BATCH_BLOCKS).min(block_count);
            Ok((first < next_block).then_some(first..next_block))
        },
        |buf: &mut Vec<u8>, blocks: std::ops::Range<u64>| {
            blocks
                .map(|b| {
                    let hash = image.hash(b)?;
                    prior.holds(b * block_size, image.block_len(b), &hash, buf)
                })
                .collect::<Result<Vec<bool>>>()
        },
        |held: Vec<bool>| {
            for held_here in held {
                stats.checked += image.block_len(in_place.len) as u64;
                in_place.push(held_here);
            }
            progress(stats);
            Ok(())
        },
    )?;
    Ok(in_place)
}

/// Rebuilds the image of `delta` from a full read as a stream (standard
/// input). What the stream claims (size, block size) is checked before
/// anything is written; the stream's blocks are proven segment by segment
/// as its index records pass, the rebuilt image's identity is proven at the
/// end, and so is the full's identity: on any failure the caller must
/// discard everything `sink` received.
pub fn restore_stream<D: ReadAt, R: std::io::Read>(
    delta: &DeltaArchive<D>,
    mut base: crate::full::FullStream<R>,
    base_name: &std::path::Path,
    sink: &mut dyn BlockSink,
    prior: Option<&PriorImage>,
    progress: &mut dyn FnMut(&RestoreProgress),
) -> Result<RestoreReport> {
    delta.check_layout_end()?;
    let h = delta.header().clone();
    let bh = base.header().clone();
    if bh.image_size != h.base_image_size || bh.block_size != h.block_size {
        return Err(Error::corrupt(
            base_name,
            0,
            format!(
                "wrong full image: it holds a {}-byte disk in blocks of {}; this delta needs a {}-byte disk in blocks of {}",
                bh.image_size, bh.block_size, h.base_image_size, h.block_size
            ),
        ));
    }
    let delta_name = delta.name().to_path_buf();
    let mut decoder = BlockDecoder::new(h.codec)?;
    let mut pages = Vec::new();
    let mut readback = Vec::new();
    let mut cursor = ChangeCursor::new();
    let mut identity = IdentityHasher::new(h.image_size, h.block_size);
    let mut stats = RestoreProgress::new(h.image_size, h.block_size, delta.footer().entry_count);
    let mut base_block = Vec::new();
    let base_blocks = bh.block_count();
    let zero_hashes = crate::identity::ZeroHashes::new(h.block_size, h.image_size);
    for b in 0..h.block_count() {
        let base_hash = if b < base_blocks {
            base.next_block(&mut base_block)?
        } else {
            None
        };
        let len = h.block_len(b);
        let (hash, data, from_delta): (Hash, Option<Vec<u8>>, bool) = match cursor.take(delta, b)? {
            Some(e) => {
                let offset = delta.member_file_offset(&e);
                let member = delta.read_member(&e)?;
                stats.delta_read += member.len() as u64;
                match e.kind {
                    ChangeKind::Zero => (e.hash, None, true),
                    ChangeKind::Data => {
                        let mut out = vec![0u8; len];
                        decode_change(&mut decoder, &delta_name, offset, &e, &member, &mut out)?;
                        (e.hash, Some(out), true)
                    }
                    ChangeKind::Patch { .. } => {
                        if base_hash.is_none() || base_block.len() != len {
                            return Err(Error::corrupt(
                                &delta_name,
                                offset,
                                format!("block {b}: a patch with no base block"),
                            ));
                        }
                        let mut out = base_block.clone();
                        if let Err(err) = apply_patch(
                            &mut decoder,
                            &mut pages,
                            &delta_name,
                            offset,
                            &e,
                            &member,
                            &mut out,
                        ) {
                            // The patched block is wrong: the delta is damaged, or the
                            // stream is not the right full. Read the stream to its end
                            // to tell which before blaming either.
                            return Err(match base.finish() {
                                Ok(found) if found != h.base_identity => Error::WrongFull {
                                    file: base_name.to_path_buf(),
                                    expected: h.base_identity,
                                    found,
                                },
                                Err(stream_error) => stream_error,
                                Ok(_) => err,
                            });
                        }
                        (e.hash, Some(out), true)
                    }
                }
            }
            None => {
                let Some(hash) = base_hash.filter(|_| base_block.len() == len) else {
                    return Err(Error::corrupt(
                        &delta_name,
                        delta.trailer().payload_offset,
                        format!("block {b} is not in the delta and the full has no block of its length there"),
                    ));
                };
                let zero = hash == zero_hashes.get(len);
                (hash, (!zero).then(|| base_block.clone()), false)
            }
        };
        identity.update(&hash);
        let offset = b * h.block_size as u64;
        let kept = match prior {
            Some(p) => p.holds(offset, len, &hash, &mut readback)?,
            None => false,
        };
        let data = match (data, prior) {
            _ if kept => None,
            (None, Some(_)) => Some(vec![0; len]),
            (data, _) => data,
        };
        sink.put(b, offset, data.as_deref())?;
        // Delta members were counted as read above; a stream's are not known.
        stats.count(len as u64, data.is_none(), from_delta, 0, kept);
        progress(&stats);
    }
    cursor.finish(delta)?;
    let base_identity = base.finish()?;
    if base_identity != h.base_identity {
        return Err(Error::WrongFull {
            file: base_name.to_path_buf(),
            expected: h.base_identity,
            found: base_identity,
        });
    }
    sink.flush()?;
    prove_identity(
        delta.name(),
        delta.identity(),
        h.block_count(),
        &identity,
        stats,
    )
}

/// The last proof of a restore: the hashes of every block handed on add up
/// to the identity the image records.
fn prove_identity(
    name: &std::path::Path,
    expected: Hash,
    blocks: u64,
    identity: &IdentityHasher,
    progress: RestoreProgress,
) -> Result<RestoreReport> {
    let actual = identity.finalize();
    if actual != expected {
        return Err(Error::IdentityMismatch {
            file: name.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(RestoreReport {
        identity: actual,
        blocks,
        progress,
    })
}

#[cfg(test)]
mod tests {
    use super::BlockSet;

    #[test]
    fn block_sets_keep_one_bit_per_block_across_words() {
        let mut s = BlockSet::default();
        let members = |b: u64| b.is_multiple_of(3) || b == 64 || b == 127;
        for b in 0..130 {
            s.push(members(b));
        }
        assert_eq!(s.len, 130);
        assert_eq!(s.words.len(), 3);
        for b in 0..200 {
            assert_eq!(s.contains(b), b < 130 && members(b), "block {b}");
        }
    }
}
