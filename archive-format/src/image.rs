//! The proven image: a full, or a delta over its full, whose map (every
//! block's hash) is proven against the identity before any block is used,
//! so that any single block can then be read and trusted on its own, from
//! any thread, in any order (SPEC.md §10, §19).
//!
//! Proving costs the full's INDX records and the delta's DMAP records, and
//! never reads block data. After it, [`ProvenImage::read_block`] decodes a
//! block, patches it over its base block where the delta says so, and
//! checks it against the proven hash. Restore, verification, resume, live
//! serving and synthetic fulls are loops over it.

pub mod restore;
pub mod verify;

use crate::bytes::ReadAt;
use crate::codec::BlockDecoder;
use crate::delta::{ChangeEntry, ChangeKind, DeltaArchive};
use crate::error::{Error, Hash, Result};
use crate::full::{FullImage, MemberCheck};
use crate::identity::{block_hash, IdentityHasher, ZeroHashes};
use crate::index::{BlockEntry, IndexSegment};
use crate::layout::PATCH_PAGE;
use crate::meta::Metadata;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where block `n` of a proven image comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Unchanged: the full's member, described by its index entry (which
    /// may say it holds zeros).
    Full(BlockEntry),
    /// The delta says the block is all zeros; nothing is stored.
    Zero,
    /// The delta stores the whole block.
    Data(ChangeEntry),
    /// The delta stores some pages; the rest are the full's block.
    Patch(ChangeEntry),
}

impl Origin {
    pub fn from_delta(&self) -> bool {
        !matches!(self, Origin::Full(_))
    }
}

/// What [`ProvenImage::read_block`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The block is all zeros; the output buffer was not filled.
    Zero,
    /// The output buffer holds the block, proven against its hash.
    Data,
}

/// One block read, with what it cost: for counters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockRead {
    pub block: Block,
    pub from_delta: bool,
    /// Stored (compressed) bytes read for it.
    pub stored: u64,
}

/// The decoders one reading thread needs: members of the full, members of
/// the delta, and room for a patch's pages.
pub(crate) struct Decoders {
    check: MemberCheck,
    delta: Option<BlockDecoder>,
    pages: Vec<u8>,
}

/// A full image, or a delta over its full, proven and ready to be read.
pub struct ProvenImage<B, D = B> {
    base: FullImage<B>,
    delta: Option<DeltaArchive<D>>,
    image_size: u64,
    block_size: u32,
    identity: Hash,
    zero: ZeroHashes,
    /// Bytes of blocks that are not zeros: what a thin target allocates.
    nonzero: u64,
    /// Blocks the delta changes.
    changed: u64,
    /// Decoders for `read_block` callers that bring none.
    pool: Mutex<Vec<Decoders>>,
}

impl<B: ReadAt> ProvenImage<B, B> {
    /// A full image alone: its index proven against its identity. When the
    /// index does not add up, the blocks are read to name the first one
    /// that disagrees with it (see [`ProvenImage::of_delta`]).
    pub fn of_full(base: FullImage<B>) -> Result<Self> {
        let (proof, nonzero) = prove_full(&base);
        let identity = base.identity();
        Self::assemble(base, None, identity, nonzero, 0).or_first_damage(proof)
    }
}

/// Proves a full's index, counting the bytes of its non-zero blocks.
fn prove_full<B: ReadAt>(base: &FullImage<B>) -> (Result<()>, u64) {
    let h = base.header();
    let mut nonzero = 0u64;
    let proof = base.prove_index_visiting(&mut |seg: &IndexSegment| {
        let first = seg.segment * h.segment_blocks as u64;
        for (i, e) in seg.entries.iter().enumerate() {
            if !e.zero {
                nonzero += h.block_len(first + i as u64) as u64;
            }
        }
        Ok(())
    });
    (proof, nonzero)
}

impl<B: ReadAt, D: ReadAt> ProvenImage<B, D> {
    /// The image `delta` describes over `base`: `base` must be the full the
    /// delta needs, and the map (the full's index for unchanged blocks, the
    /// change maps for the rest) must add up to the delta's identity.
    /// Reads index and change-map records only, each once.
    pub fn of_delta(delta: DeltaArchive<D>, base: FullImage<B>) -> Result<Self> {
        check_base_shape(&delta, &base)?;
        delta.check_layout_end()?;
        let h = delta.header().clone();
        let block_count = h.block_count();
        if delta.footer().entry_count == 0
            && delta.group_count() == 0
            && h.image_size == base.header().image_size
        {
            return Self::of_unchanged(delta, base);
        }
        let mut walk = MapWalk {
            delta: &delta,
            identity: IdentityHasher::new(h.image_size, h.block_size),
            changes: Arc::new(Vec::new()),
            at: 0,
            next_group: 0,
            digests: Vec::with_capacity(delta.group_count() as usize),
            seen: 0,
            nonzero: 0,
            next_block: 0,
        };
        let k = base.header().segment_blocks as u64;
        base.prove_index_visiting(&mut |seg: &IndexSegment| {
            let first = seg.segment * k;
            for (i, e) in seg.entries.iter().enumerate() {
                let b = first + i as u64;
                if b >= block_count {
                    break;
                }
                walk.block(b, Some(e))?;
            }
            Ok(())
        })?;
        for b in walk.next_block..block_count {
            walk.block(b, None)?;
        }
        let (proof, nonzero, changed) = match walk.finish() {
            Ok((digests, nonzero, changed)) => {
                delta.set_maps_proven(digests);
                (Ok(()), nonzero, changed)
            }
            Err(e) => (Err(e), 0, 0),
        };
        let identity = delta.identity();
        Self::assemble(base, Some(delta), identity, nonzero, changed).or_first_damage(proof)
    }

    /// A delta that changes nothing (the empty delta beside every full):
    /// its image is the full's, block for block, so its identity must be
    /// the full's, proven by the full's own index proof; the fold of the
    /// same hashes a second time is not needed.
    fn of_unchanged(delta: DeltaArchive<D>, base: FullImage<B>) -> Result<Self> {
        let (proof, nonzero) = prove_full(&base);
        let proof = proof.and_then(|()| {
            if delta.identity() != base.identity() {
                return Err(Error::IdentityMismatch {
                    file: delta.name().to_path_buf(),
                    expected: delta.identity(),
                    actual: base.identity(),
                });
            }
            delta.set_maps_proven(Vec::new());
            Ok(())
        });
        let identity = delta.identity();
        Self::assemble(base, Some(delta), identity, nonzero, 0).or_first_damage(proof)
    }

    /// The image of `base` (and `delta`), its map proven or being proven.
    fn assemble(
        base: FullImage<B>,
        delta: Option<DeltaArchive<D>>,
        identity: Hash,
        nonzero: u64,
        changed: u64,
    ) -> Self {
        let (image_size, block_size) = match &delta {
            Some(d) => (d.header().image_size, d.header().block_size),
            None => (base.header().image_size, base.header().block_size),
        };
        ProvenImage {
            image_size,
            block_size,
            identity,
            zero: ZeroHashes::new(block_size, image_size),
            nonzero,
            changed,
            pool: Mutex::new(Vec::new()),
            base,
            delta,
        }
    }

    /// `self` once `proof` passed. When the hashes did not add up to the
    /// identity, the map is damaged, or a block's hash is: the blocks are
    /// then read in order (only then: a proof that passes reads no block
    /// data) to name the first whose data disagrees with the map, which
    /// says more than "the identity differs". Other errors are returned
    /// as they are.
    fn or_first_damage(self, proof: Result<()>) -> Result<Self> {
        match proof {
            Ok(()) => Ok(self),
            Err(e @ Error::IdentityMismatch { .. }) => {
                let mut out = Vec::new();
                for n in 0..self.block_count() {
                    self.read_block(n, &mut out)?;
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    pub fn base(&self) -> &FullImage<B> {
        &self.base
    }

    pub fn delta(&self) -> Option<&DeltaArchive<D>> {
        self.delta.as_ref()
    }

    /// The delta's metadata, or the full's for a full alone.
    pub fn meta(&self) -> &Metadata {
        match &self.delta {
            Some(d) => d.meta(),
            None => self.base.meta(),
        }
    }

    /// The file the image's own blocks come from: the delta, or the full.
    pub fn name(&self) -> &Path {
        match &self.delta {
            Some(d) => d.name(),
            None => self.base.name(),
        }
    }

    pub fn into_parts(self) -> (FullImage<B>, Option<DeltaArchive<D>>) {
        (self.base, self.delta)
    }

    pub fn identity(&self) -> Hash {
        self.identity
    }

    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    pub fn block_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size as u64)
    }

    pub fn block_len(&self, n: u64) -> usize {
        (self.image_size - n * self.block_size as u64).min(self.block_size as u64) as usize
    }

    /// Bytes of the image that are not zero blocks.
    pub fn nonzero_bytes(&self) -> u64 {
        self.nonzero
    }

    /// Blocks the delta changes (0 for a full alone).
    pub fn changed_blocks(&self) -> u64 {
        self.changed
    }

    /// Where block `n` comes from: the full, or the delta's change.
    pub fn origin(&self, n: u64) -> Result<Origin> {
        if n >= self.block_count() {
            return Err(Error::invalid(format!(
                "block {n} is past the end of the image ({} blocks)",
                self.block_count()
            )));
        }
        if let Some(e) = match &self.delta {
            Some(d) => d.change(n)?,
            None => None,
        } {
            return Ok(match e.kind {
                ChangeKind::Zero => Origin::Zero,
                ChangeKind::Data => Origin::Data(e),
                ChangeKind::Patch { .. } => Origin::Patch(e),
            });
        }
        // The proof saw every unchanged block's full block to be the same
        // length; checked again in case the map has left the cache.
        Ok(Origin::Full(self.base.entry(n)?))
    }

    /// The proven hash of block `n`.
    pub fn hash(&self, n: u64) -> Result<Hash> {
        Ok(self.hash_of(n, &self.origin(n)?))
    }

    /// The proven hash of block `n`, which comes from `origin`.
    pub(crate) fn hash_of(&self, n: u64, origin: &Origin) -> Hash {
        match origin {
            Origin::Full(e) => e.hash,
            Origin::Zero => self.zero.get(self.block_len(n)),
            Origin::Data(e) | Origin::Patch(e) => e.hash,
        }
    }

    /// Reads block `n` into `out` (resized to the block's length) and
    /// proves it against its hash. `Block::Zero` leaves `out` unfilled.
    /// Errors name the file, the block and the byte offset.
    pub fn read_block(&self, n: u64, out: &mut Vec<u8>) -> Result<Block> {
        let origin = self.origin(n)?;
        let mut dec = self.take_decoders()?;
        let result = self.read_with(n, origin, out, &mut dec);
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dec);
        Ok(result?.block)
    }

    fn take_decoders(&self) -> Result<Decoders> {
        let spare = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match spare {
            Some(d) => Ok(d),
            None => self.decoders(),
        }
    }

    /// A fresh set of decoders, for a thread that reads many blocks.
    pub(crate) fn decoders(&self) -> Result<Decoders> {
        Ok(Decoders {
            check: MemberCheck::new(self.base.header().codec, self.base.header())?,
            delta: match &self.delta {
                Some(d) => Some(BlockDecoder::new(d.header().codec)?),
                None => None,
            },
            pages: Vec::new(),
        })
    }

    /// Reads block `n`, which comes from `origin`, with `dec`.
    pub(crate) fn read_with(
        &self,
        n: u64,
        origin: Origin,
        out: &mut Vec<u8>,
        dec: &mut Decoders,
    ) -> Result<BlockRead> {
        let len = self.block_len(n);
        let read = |block, stored| BlockRead {
            block,
            from_delta: origin.from_delta(),
            stored,
        };
        match origin {
            Origin::Zero => Ok(read(Block::Zero, 0)),
            Origin::Full(_) => {
                let (entry, member) = self.read_base(n, out, &mut dec.check, true)?;
                let block = if entry.zero { Block::Zero } else { Block::Data };
                Ok(read(block, member.len() as u64))
            }
            Origin::Data(e) => {
                let delta = self.delta.as_ref().expect("a change comes from a delta");
                let member = delta.read_member(&e)?;
                block_buffer(out, len);
                let decoder = dec.delta.as_mut().expect("a delta has a decoder");
                decode_change(
                    decoder,
                    delta.name(),
                    delta.member_file_offset(&e),
                    &e,
                    &member,
                    out,
                )?;
                Ok(read(Block::Data, member.len() as u64))
            }
            Origin::Patch(e) => {
                let delta = self.delta.as_ref().expect("a change comes from a delta");
                let (_, base_member) = self.read_base(n, out, &mut dec.check, false)?;
                let base_stored = base_member.len() as u64;
                let member = delta.read_member(&e)?;
                let decoder = dec.delta.as_mut().expect("a delta has a decoder");
                apply_patch(
                    decoder,
                    &mut dec.pages,
                    delta.name(),
                    delta.member_file_offset(&e),
                    &e,
                    &member,
                    out,
                )?;
                Ok(read(Block::Data, base_stored + member.len() as u64))
            }
        }
    }

    /// Reads and proves the full's block `n` into `out`. With `zero_ok`, a
    /// member already proven to hold zeros is not decoded and `out` is left
    /// as it is. Returns the block's index entry and its stored member,
    /// proven: a synthetic full copies it as it is.
    pub(crate) fn read_base(
        &self,
        n: u64,
        out: &mut Vec<u8>,
        check: &mut MemberCheck,
        zero_ok: bool,
    ) -> Result<(BlockEntry, Vec<u8>)> {
        // The segment is the proven one: the record cache refuses a segment
        // read again that differs from what the proof saw.
        let (seg, i) = self.base.locate(n)?;
        let entry = &seg.entries[i];
        let offset = seg.member_offset(i);
        let member = self.base.file().read_vec_at(
            offset,
            entry.member_len as usize,
            &format!("member of block {n}"),
        )?;
        let len = self.block_len(n);
        if self.base.header().block_len(n) != len {
            return Err(Error::corrupt(
                self.name(),
                0,
                format!(
                    "block {n} is not in the delta and the full has no block of its length there"
                ),
            ));
        }
        if !(zero_ok && check.is_proven_zero(entry, &member, len)) {
            block_buffer(out, len);
            check.check(self.base.name(), n, offset, entry, &member, out)?;
        }
        Ok((*entry, member))
    }
}

/// Checks, before anything is read, that `base` is the full `delta` needs:
/// its recorded identity and its shape. The identity covers the image's
/// size: when it matches, the full's header is right, so a disagreement is
/// the delta's.
pub(crate) fn check_base_shape<D: ReadAt, B: ReadAt>(
    delta: &DeltaArchive<D>,
    base: &FullImage<B>,
) -> Result<()> {
    let h = delta.header();
    if base.identity() != h.base_identity {
        return Err(Error::WrongFull {
            file: base.name().to_path_buf(),
            expected: h.base_identity,
            found: base.identity(),
        });
    }
    if base.header().image_size != h.base_image_size || base.header().block_size != h.block_size {
        return Err(Error::corrupt(
            delta.name(),
            delta.trailer().payload_offset,
            format!(
                "DHED says its full holds {} bytes in blocks of {}, but the full with its identity ({}) holds {} bytes in blocks of {}",
                h.base_image_size,
                h.block_size,
                base.name().display(),
                base.header().image_size,
                base.header().block_size
            ),
        ));
    }
    Ok(())
}

/// The map proof of a delta: its change maps walked in block order beside
/// the full's index, every block's hash folded into the identity.
struct MapWalk<'a, D> {
    delta: &'a DeltaArchive<D>,
    identity: IdentityHasher,
    changes: Arc<Vec<ChangeEntry>>,
    at: usize,
    next_group: u64,
    digests: Vec<Hash>,
    seen: u64,
    nonzero: u64,
    next_block: u64,
}

impl<D: ReadAt> MapWalk<'_, D> {
    /// The next change in block order, loading change maps as they come.
    fn peek(&mut self) -> Result<Option<ChangeEntry>> {
        while self.at == self.changes.len() {
            if self.next_group == self.delta.group_count() {
                return Ok(None);
            }
            self.changes = self.delta.map(self.next_group)?;
            self.digests.push(crate::delta::map_digest(&self.changes));
            self.next_group += 1;
            self.at = 0;
        }
        Ok(Some(self.changes[self.at]))
    }

    /// Folds block `b` in: the delta's change, or else the full's block
    /// `base` (which must be there, of the same length).
    fn block(&mut self, b: u64, base: Option<&BlockEntry>) -> Result<()> {
        let h = self.delta.header();
        let len = h.block_len(b) as u64;
        let change = self.peek()?.filter(|e| e.block == b);
        let (hash, zero) = match (change, base) {
            (Some(e), _) => {
                self.at += 1;
                self.seen += 1;
                (e.hash, e.kind == ChangeKind::Zero)
            }
            (None, Some(e)) if h.base_has_same_block(b) => (e.hash, e.zero),
            (None, _) => {
                return Err(Error::corrupt(
                    self.delta.name(),
                    self.delta.trailer().payload_offset,
                    format!(
                    "block {b} is not in the delta and the full has no block of its length there"
                ),
                ))
            }
        };
        if !zero {
            self.nonzero += len;
        }
        self.identity.update(&hash);
        self.next_block = b + 1;
        Ok(())
    }

    /// After the last block: every change used, the count the footer
    /// gives, and the identity the delta records.
    fn finish(mut self) -> Result<(Vec<Hash>, u64, u64)> {
        let left = self.peek()?;
        let d = self.delta;
        if left.is_some() || self.seen != d.footer().entry_count {
            return Err(Error::corrupt(
                d.name(),
                d.trailer().payload_offset,
                "the change maps hold blocks past the image end or fewer entries than the footer counts",
            ));
        }
        let actual = self.identity.finalize();
        if actual != d.identity() {
            return Err(Error::IdentityMismatch {
                file: d.name().to_path_buf(),
                expected: d.identity(),
                actual,
            });
        }
        Ok((self.digests, self.nonzero, self.seen))
    }
}

/// Decodes a DATA member into `out` (the block's length) and proves it.
pub(crate) fn decode_change(
    decoder: &mut BlockDecoder,
    file: &Path,
    offset: u64,
    entry: &ChangeEntry,
    member: &[u8],
    out: &mut [u8],
) -> Result<()> {
    decoder
        .decode(member, out)
        .map_err(|why| Error::corrupt(file, offset, format!("block {}: {why}", entry.block)))?;
    check_hash(file, entry, offset, out)
}

/// Decodes a PATCH member and lays its pages over `out` (the base block),
/// then proves the result.
pub(crate) fn apply_patch(
    decoder: &mut BlockDecoder,
    pages_buf: &mut Vec<u8>,
    file: &Path,
    offset: u64,
    entry: &ChangeEntry,
    member: &[u8],
    out: &mut [u8],
) -> Result<()> {
    let ChangeKind::Patch { pages } = entry.kind else {
        return Err(Error::invalid(format!(
            "block {} is not a patch",
            entry.block
        )));
    };
    let len = out.len();
    block_buffer(pages_buf, crate::delta::patch_len(pages, len));
    decoder
        .decode(member, pages_buf)
        .map_err(|why| Error::corrupt(file, offset, format!("block {}: {why}", entry.block)))?;
    let mut at = 0;
    for p in (0..32).filter(|p| pages & (1 << p) != 0) {
        let start = p * PATCH_PAGE;
        let n = len.saturating_sub(start).min(PATCH_PAGE);
        out[start..start + n].copy_from_slice(&pages_buf[at..at + n]);
        at += n;
    }
    check_hash(file, entry, offset, out)
}

/// Makes `buf` `len` bytes long for a block to be decoded into. A buffer
/// of another length is replaced by a zeroed allocation rather than grown:
/// the restore runtime is built for size, where growing a vector writes
/// its bytes one at a time, and a fresh zeroed allocation costs a memset
/// at most.
pub(crate) fn block_buffer(buf: &mut Vec<u8>, len: usize) {
    if buf.len() != len {
        *buf = vec![0u8; len];
    }
}

fn check_hash(file: &Path, entry: &ChangeEntry, offset: u64, data: &[u8]) -> Result<()> {
    let actual = block_hash(data);
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

// One proven image is read by many threads at once.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ProvenImage<std::fs::File>>();
};
