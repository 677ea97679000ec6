//! Restoring: rebuild the image a delta describes from the delta and its
//! full, proving every block against its hash before it is handed on, and
//! the whole against the delta's identity at the end (SPEC.md §19).

use crate::codec::BlockDecoder;
use crate::delta::{ChangeEntry, ChangeKind, DeltaArchive};
use crate::error::{Error, Hash, Result};
use crate::full::{FullImage, MemberCheck};
use crate::identity::{block_hash, IdentityHasher};
use crate::index::BlockEntry;
use crate::layout::PATCH_PAGE;
use crate::pipeline::{run_ordered, worker_count};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Where proven blocks go, in block order.
pub trait BlockSink {
    /// `data` is the block's bytes, or `None` for a block of zeros (which a
    /// preallocated target already holds).
    fn put(&mut self, block: u64, offset: u64, data: Option<&[u8]>) -> Result<()>;
}

/// A sink that keeps nothing: verification.
pub struct DiscardSink;

impl BlockSink for DiscardSink {
    fn put(&mut self, _: u64, _: u64, _: Option<&[u8]>) -> Result<()> {
        Ok(())
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
    fn new<D: Read + Seek>(delta: &DeltaArchive<D>) -> Self {
        let h = delta.header();
        let delta_total = delta
            .footer()
            .entry_count
            .saturating_mul(h.block_size as u64)
            .min(h.image_size);
        RestoreProgress {
            image_size: h.image_size,
            delta_total,
            full_total: h.image_size - delta_total,
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
        buf.resize(len, 0);
        match self.file.read_exact_at(buf, offset) {
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

/// Checks, before anything is written, that `base` is the full `delta`
/// needs: its recorded identity, its shape, and its index proven against
/// that identity.
pub fn check_base<D: Read + Seek, B: Read + Seek>(
    delta: &DeltaArchive<D>,
    base: &mut FullImage<B>,
) -> Result<()> {
    let h = delta.header();
    if base.identity() != h.base_identity {
        return Err(Error::WrongFull {
            file: base.name().to_path_buf(),
            expected: h.base_identity,
            found: base.identity(),
        });
    }
    // The identities match, and an identity covers the image's size: the
    // full's own header is right, so a disagreement is the delta's.
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
    base.prove_index()
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

enum Task {
    Base {
        block: u64,
        entry: BlockEntry,
        offset: u64,
        member: Vec<u8>,
    },
    Zero {
        block: u64,
        hash: Hash,
    },
    Data {
        entry: ChangeEntry,
        offset: u64,
        member: Vec<u8>,
    },
    Patch {
        entry: ChangeEntry,
        offset: u64,
        member: Vec<u8>,
        base_entry: BlockEntry,
        base_offset: u64,
        base_member: Vec<u8>,
    },
    /// Already in place, read back and proven: nothing to read or write.
    Kept {
        block: u64,
        hash: Hash,
        from_delta: bool,
    },
}

impl Task {
    /// Stored bytes read for it.
    fn stored(&self) -> u64 {
        match self {
            Task::Base { member, .. } | Task::Data { member, .. } => member.len() as u64,
            Task::Patch {
                member,
                base_member,
                ..
            } => (member.len() + base_member.len()) as u64,
            Task::Zero { .. } | Task::Kept { .. } => 0,
        }
    }
}

struct Done {
    block: u64,
    hash: Hash,
    data: Option<Vec<u8>>,
    from_delta: bool,
    stored: u64,
    /// Found already in place (a resumed restore): nothing to write.
    kept: bool,
}

struct Worker {
    check: MemberCheck,
    decoder: BlockDecoder,
    pages: Vec<u8>,
    readback: Vec<u8>,
}

impl Worker {
    fn new(base: &crate::ImageHeader, codec: crate::codec::Codec) -> Result<Self> {
        Ok(Worker {
            check: MemberCheck::new(base.codec, base)?,
            decoder: BlockDecoder::new(codec)?,
            pages: Vec::new(),
            readback: Vec::new(),
        })
    }
}

/// Rebuilds the image of `delta` from `base` into `sink`. `base` must have
/// passed `check_base`. Every block is proven before `sink` sees it; the
/// identity of everything handed on is compared with the delta's at the end.
///
/// With `prior` (resuming), each block is first read back from it and kept
/// when it already has the right hash; every other block, zeros included,
/// is handed to `sink` with its bytes.
pub fn restore<D: Read + Seek, B: Read + Seek>(
    delta: &mut DeltaArchive<D>,
    base: &mut FullImage<B>,
    sink: &mut dyn BlockSink,
    threads: usize,
    prior: Option<&PriorImage>,
    progress: &mut dyn FnMut(&RestoreProgress),
) -> Result<RestoreReport> {
    delta.check_layout_end()?;
    let h = delta.header().clone();
    let block_count = h.block_count();
    let block_size = h.block_size as u64;
    let base_name: PathBuf = base.name().to_path_buf();
    let delta_name: PathBuf = delta.name().to_path_buf();
    let workers = worker_count(threads);
    let states = (0..workers)
        .map(|_| Worker::new(base.header(), h.codec))
        .collect::<Result<Vec<_>>>()?;

    let mut stats = RestoreProgress::new(delta);
    let in_place = match prior {
        Some(p) => Some(blocks_in_place(
            delta, base, p, workers, &mut stats, progress,
        )?),
        None => None,
    };
    let mut next_block = 0u64;
    let mut cursor = ChangeCursor::new();
    let mut identity = IdentityHasher::new(h.image_size, h.block_size);
    const BATCH_BYTES: u64 = 1 << 20;
    const ZERO_TASK_BYTES: u64 = 1024;

    run_ordered(
        states,
        workers * 3,
        || {
            let mut tasks = Vec::new();
            let mut bytes = 0u64;
            while next_block < block_count && bytes < BATCH_BYTES {
                let b = next_block;
                let change = cursor.take(delta, b)?;
                let kept = in_place.as_ref().is_some_and(|k| k.contains(b));
                let task = match change {
                    _ if kept => Task::Kept {
                        block: b,
                        hash: match change {
                            Some(e) => e.hash,
                            None => base.entry(b)?.hash,
                        },
                        from_delta: change.is_some(),
                    },
                    Some(e) => {
                        let offset = delta.member_file_offset(&e);
                        match e.kind {
                            ChangeKind::Zero => Task::Zero {
                                block: b,
                                hash: e.hash,
                            },
                            ChangeKind::Data => Task::Data {
                                entry: e,
                                offset,
                                member: delta.read_member(&e)?,
                            },
                            ChangeKind::Patch { .. } => {
                                let (base_entry, base_offset, base_member) = base.read_member(b)?;
                                Task::Patch {
                                    entry: e,
                                    offset,
                                    member: delta.read_member(&e)?,
                                    base_entry,
                                    base_offset,
                                    base_member,
                                }
                            }
                        }
                    }
                    None => {
                        if !h.base_has_same_block(b) {
                            return Err(Error::corrupt(
                                &delta_name,
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
                };
                // A batch is bounded by what it holds in memory once proven:
                // its stored members and the blocks they decode to, so that
                // members that compress well cannot pile up gigabytes. A
                // zero block of the full decodes to nothing kept (but when
                // resuming, which writes its zeros): so that the zeros of a
                // sparse disk go by in batches of a thousand, not sixteen.
                bytes += match &task {
                    Task::Zero { .. } | Task::Kept { .. } => ZERO_TASK_BYTES,
                    Task::Base { entry, .. } if entry.zero && in_place.is_none() => {
                        task.stored() + ZERO_TASK_BYTES
                    }
                    task => task.stored() + h.block_len(b) as u64,
                };
                tasks.push(task);
                next_block += 1;
            }
            Ok((!tasks.is_empty()).then_some(tasks))
        },
        |w: &mut Worker, tasks: Vec<Task>| {
            tasks
                .into_iter()
                .map(|task| prove_or_keep(w, task, &h, &base_name, &delta_name, prior.is_some()))
                .collect::<Result<Vec<_>>>()
        },
        |done: Vec<Done>| {
            for d in done {
                identity.update(&d.hash);
                let len = h.block_len(d.block) as u64;
                sink.put(d.block, d.block * block_size, d.data.as_deref())?;
                stats.count(len, d.data.is_none(), d.from_delta, d.stored, d.kept);
            }
            progress(&stats);
            Ok(())
        },
    )?;
    cursor.finish(delta)?;
    prove_identity(delta, &identity, stats)
}

/// Proves `task`'s block, or passes a kept one on. When resuming, zero
/// blocks are handed on as bytes: the prior data may hold anything there.
fn prove_or_keep(
    w: &mut Worker,
    task: Task,
    h: &crate::DeltaHeader,
    base_name: &std::path::Path,
    delta_name: &std::path::Path,
    resuming: bool,
) -> Result<Done> {
    let mut done = prove(w, task, h, base_name, delta_name)?;
    if resuming && !done.kept && done.data.is_none() {
        done.data = Some(vec![0; h.block_len(done.block)]);
    }
    Ok(done)
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
/// worker, against the hash the image needs there. Nothing is read from the
/// full or the delta for a block in place.
fn blocks_in_place<D: Read + Seek, B: Read + Seek>(
    delta: &mut DeltaArchive<D>,
    base: &mut FullImage<B>,
    prior: &PriorImage,
    workers: usize,
    stats: &mut RestoreProgress,
    progress: &mut dyn FnMut(&RestoreProgress),
) -> Result<BlockSet> {
    let h = delta.header().clone();
    let block_count = h.block_count();
    let mut in_place = BlockSet::default();
    let mut cursor = ChangeCursor::new();
    let mut next_block = 0u64;
    const BATCH_BLOCKS: u64 = 64;
    run_ordered(
        vec![Vec::new(); workers],
        workers * 3,
        || {
            let mut goals = Vec::new();
            while next_block < block_count && goals.len() < BATCH_BLOCKS as usize {
                let b = next_block;
                // A block the full cannot supply is reported by the restore
                // proper; here it is simply not in place.
                let hash = match cursor.take(delta, b)? {
                    Some(e) => Some(e.hash),
                    None if h.base_has_same_block(b) => Some(base.entry(b)?.hash),
                    None => None,
                };
                goals.push((b, hash));
                next_block += 1;
            }
            Ok((!goals.is_empty()).then_some(goals))
        },
        |buf: &mut Vec<u8>, goals: Vec<(u64, Option<Hash>)>| {
            goals
                .into_iter()
                .map(|(b, hash)| match hash {
                    Some(hash) => prior.holds(b * h.block_size as u64, h.block_len(b), &hash, buf),
                    None => Ok(false),
                })
                .collect::<Result<Vec<bool>>>()
        },
        |held: Vec<bool>| {
            for held_here in held {
                stats.checked += h.block_len(in_place.len) as u64;
                in_place.push(held_here);
            }
            progress(stats);
            Ok(())
        },
    )?;
    Ok(in_place)
}

fn prove(
    w: &mut Worker,
    task: Task,
    h: &crate::DeltaHeader,
    base_name: &std::path::Path,
    delta_name: &std::path::Path,
) -> Result<Done> {
    match task {
        Task::Kept {
            block,
            hash,
            from_delta,
        } => Ok(Done {
            block,
            hash,
            data: None,
            from_delta,
            stored: 0,
            kept: true,
        }),
        Task::Base {
            block,
            entry,
            offset,
            member,
        } => {
            let len = h.block_len(block);
            // Most of a sparse disk: no buffer, no zeroing, no decoding.
            let data = if w.check.is_proven_zero(&entry, &member, len) {
                None
            } else {
                let mut out = vec![0u8; len];
                w.check
                    .check(base_name, block, offset, &entry, &member, &mut out)?;
                (!entry.zero).then_some(out)
            };
            Ok(Done {
                block,
                hash: entry.hash,
                data,
                from_delta: false,
                stored: member.len() as u64,
                kept: false,
            })
        }
        Task::Zero { block, hash } => Ok(Done {
            block,
            hash,
            data: None,
            from_delta: true,
            stored: 0,
            kept: false,
        }),
        Task::Data {
            entry,
            offset,
            member,
        } => {
            let mut out = vec![0u8; h.block_len(entry.block)];
            w.decoder.decode(&member, &mut out).map_err(|why| {
                Error::corrupt(delta_name, offset, format!("block {}: {why}", entry.block))
            })?;
            check_hash(delta_name, &entry, offset, &out)?;
            Ok(Done {
                block: entry.block,
                hash: entry.hash,
                data: Some(out),
                from_delta: true,
                stored: member.len() as u64,
                kept: false,
            })
        }
        Task::Patch {
            entry,
            offset,
            member,
            base_entry,
            base_offset,
            base_member,
        } => {
            let ChangeKind::Patch { pages } = entry.kind else {
                unreachable!("patch task")
            };
            let len = h.block_len(entry.block);
            let mut out = vec![0u8; len];
            w.check.check(
                base_name,
                entry.block,
                base_offset,
                &base_entry,
                &base_member,
                &mut out,
            )?;
            apply_patch(w, &entry, pages, &member, &mut out, delta_name, offset)?;
            Ok(Done {
                block: entry.block,
                hash: entry.hash,
                data: Some(out),
                from_delta: true,
                stored: (member.len() + base_member.len()) as u64,
                kept: false,
            })
        }
    }
}

fn check_hash(file: &std::path::Path, entry: &ChangeEntry, offset: u64, data: &[u8]) -> Result<()> {
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

/// Rebuilds the image of `delta` from a full read as a stream (standard
/// input). What the stream claims (size, block size) is checked before
/// anything is written; the stream's blocks are proven segment by segment
/// as its index records pass, the rebuilt image's identity is proven at the
/// end, and so is the full's identity: on any failure the caller must
/// discard everything `sink` received.
pub fn restore_stream<D: Read + Seek, R: Read>(
    delta: &mut DeltaArchive<D>,
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
    let mut w = Worker::new(&bh, h.codec)?;
    let mut cursor = ChangeCursor::new();
    let mut identity = IdentityHasher::new(h.image_size, h.block_size);
    let mut stats = RestoreProgress::new(delta);
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
                        w.decoder.decode(&member, &mut out).map_err(|why| {
                            Error::corrupt(&delta_name, offset, format!("block {b}: {why}"))
                        })?;
                        check_hash(&delta_name, &e, offset, &out)?;
                        (e.hash, Some(out), true)
                    }
                    ChangeKind::Patch { pages } => {
                        if base_hash.is_none() || base_block.len() != len {
                            return Err(Error::corrupt(
                                &delta_name,
                                offset,
                                format!("block {b}: a patch with no base block"),
                            ));
                        }
                        let mut out = base_block.clone();
                        if let Err(err) =
                            apply_patch(&mut w, &e, pages, &member, &mut out, &delta_name, offset)
                        {
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
            Some(p) => p.holds(offset, len, &hash, &mut w.readback)?,
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
    prove_identity(delta, &identity, stats)
}

/// The last proof of a restore: the hashes of every block handed on add up
/// to the identity the delta records.
fn prove_identity<D: Read + Seek>(
    delta: &DeltaArchive<D>,
    identity: &IdentityHasher,
    progress: RestoreProgress,
) -> Result<RestoreReport> {
    let actual = identity.finalize();
    if actual != delta.identity() {
        return Err(Error::IdentityMismatch {
            file: delta.name().to_path_buf(),
            expected: delta.identity(),
            actual,
        });
    }
    Ok(RestoreReport {
        identity: actual,
        blocks: delta.header().block_count(),
        progress,
    })
}

/// Decodes a patch member and lays its pages over `out` (the base block),
/// then proves the result.
fn apply_patch(
    w: &mut Worker,
    entry: &ChangeEntry,
    pages: u32,
    member: &[u8],
    out: &mut [u8],
    delta_name: &std::path::Path,
    offset: u64,
) -> Result<()> {
    let len = out.len();
    w.pages.resize(crate::delta::patch_len(pages, len), 0);
    w.decoder.decode(member, &mut w.pages).map_err(|why| {
        Error::corrupt(delta_name, offset, format!("block {}: {why}", entry.block))
    })?;
    let mut at = 0;
    for p in (0..32).filter(|p| pages & (1 << p) != 0) {
        let start = p * PATCH_PAGE;
        let n = len.saturating_sub(start).min(PATCH_PAGE);
        out[start..start + n].copy_from_slice(&w.pages[at..at + n]);
        at += n;
    }
    check_hash(delta_name, entry, offset, out)
}

/// Bytes of the image `delta` rebuilds that are not zero blocks: what a thin
/// target allocates. Reads the change maps and the full's index only.
pub fn nonzero_bytes<D: Read + Seek, B: Read + Seek>(
    delta: &mut DeltaArchive<D>,
    base: &mut FullImage<B>,
) -> Result<u64> {
    let h = delta.header().clone();
    let mut cursor = ChangeCursor::new();
    let mut total = 0u64;
    for b in 0..h.block_count() {
        let zero = match cursor.take(delta, b)? {
            Some(e) => e.kind == ChangeKind::Zero,
            None => h.base_has_same_block(b) && base.entry(b)?.zero,
        };
        if !zero {
            total += h.block_len(b) as u64;
        }
    }
    Ok(total)
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
