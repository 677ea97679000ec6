//! Writing a full image, serially through `FullWriter` or in parallel
//! through `write_full`.

use crate::archive_file::NamedWriter;
use crate::buffers::BufferPool;
use crate::codec::{BlockEncoder, Codec};
use crate::error::{Error, Hash, Result};
use crate::footer::Footer;
use crate::header::ImageHeader;
use crate::identity::{block_hash, is_zero, IdentityHasher};
use crate::index::{encode_directory, BlockEntry, IndexSegment};
use crate::layout::*;
use crate::meta::Metadata;
use crate::pipeline::{run_ordered, worker_count, SourceBatch, SourceBatches, SourceBlock};
use crate::source::DiskBytes;
use std::io::Write;
use std::path::PathBuf;

/// How to write a full image.
#[derive(Clone, Debug)]
pub struct FullOptions {
    pub codec: Codec,
    /// Compression level; `None` is the codec's default.
    pub level: Option<i32>,
    pub block_size: u32,
    pub segment_blocks: u32,
    /// Worker threads for hashing and compressing; 0 means one per core.
    pub threads: usize,
    /// Adds an AUTH record, a MAC with this key (SPEC.md §9.1).
    pub key: Option<crate::auth::Key>,
}

impl Default for FullOptions {
    fn default() -> Self {
        FullOptions {
            codec: Codec::Gzip,
            level: None,
            block_size: DEFAULT_BLOCK_SIZE,
            segment_blocks: DEFAULT_SEGMENT_BLOCKS,
            threads: 0,
            key: None,
        }
    }
}

impl FullOptions {
    pub fn level(&self) -> i32 {
        self.level.unwrap_or_else(|| self.codec.default_level())
    }
}

/// What a finished image holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullSummary {
    pub identity: Hash,
    pub image_size: u64,
    pub blocks: u64,
    pub zero_blocks: u64,
    /// Bytes of block members.
    pub data_bytes: u64,
    /// Bytes of HEAD, META, INDX, DIRS and FOOT records with their containers.
    pub index_bytes: u64,
    pub file_len: u64,
}

/// Writes a full image block by block. Call `finish` to complete it: a
/// writer dropped without `finish` leaves a file with no footer, which
/// every reader recognises as incomplete.
pub struct FullWriter<W: Write> {
    out: NamedWriter<W>,
    header: ImageHeader,
    identity: IdentityHasher,
    segment: Vec<BlockEntry>,
    segment_data_offset: u64,
    index_offsets: Vec<u64>,
    zero_blocks: u64,
    data_bytes: u64,
    index_bytes: u64,
    worker: Option<EncodeWorker>,
    options: FullOptions,
    scratch: Vec<u8>,
    /// HEAD and META bodies as written, for the MAC.
    head_body: Vec<u8>,
    meta_body: Vec<u8>,
}

impl<W: Write> FullWriter<W> {
    /// Starts an image of `image_size` bytes: writes HEAD and META. `name`
    /// is what error messages call the output.
    pub fn new(
        out: W,
        name: impl Into<PathBuf>,
        options: &FullOptions,
        image_size: u64,
        meta: &Metadata,
    ) -> Result<Self> {
        let mut header = ImageHeader::new(
            options.codec,
            options.block_size,
            options.segment_blocks,
            image_size,
        )?;
        if options.key.is_some() {
            header.set_auth();
        }
        // Check the level now rather than at the first block.
        let worker = EncodeWorker::new(options)?;
        let mut w = FullWriter {
            out: NamedWriter::new(out, name.into()),
            identity: IdentityHasher::new(image_size, header.block_size),
            segment: Vec::with_capacity(header.segment_blocks as usize),
            segment_data_offset: 0,
            index_offsets: Vec::new(),
            zero_blocks: 0,
            data_bytes: 0,
            index_bytes: 0,
            worker: Some(worker),
            options: options.clone(),
            scratch: Vec::new(),
            head_body: Vec::new(),
            meta_body: meta.encode()?,
            header,
        };
        w.head_body = w.header.encode().to_vec();
        let head = w.head_body.clone();
        w.write_record(TAG_HEAD, &head)?;
        let meta = w.meta_body.clone();
        w.write_record(TAG_META, &meta)?;
        w.segment_data_offset = w.out.pos;
        Ok(w)
    }

    pub fn header(&self) -> &ImageHeader {
        &self.header
    }

    /// Blocks written so far.
    pub fn blocks(&self) -> u64 {
        self.identity.blocks()
    }

    /// The identity of the blocks written so far (SPEC.md §10): once every
    /// block is in, the identity `finish` will record.
    pub fn identity(&self) -> Hash {
        self.identity.finalize()
    }

    pub(crate) fn options(&self) -> &FullOptions {
        &self.options
    }

    pub fn get_ref(&self) -> &W {
        &self.out.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out.inner
    }

    /// Hashes, compresses and writes the next block. Every block but the
    /// last must be exactly `block_size` bytes.
    pub fn push_block(&mut self, block: &[u8]) -> Result<()> {
        let n = self.identity.blocks();
        if n < self.header.block_count() && block.len() != self.header.block_len(n) {
            return Err(Error::invalid(format!(
                "block {n} must be {} bytes, got {}",
                self.header.block_len(n),
                block.len()
            )));
        }
        let mut worker = match self.worker.take() {
            Some(w) => w,
            None => EncodeWorker::new(&self.options)?,
        };
        let mut member = std::mem::take(&mut self.scratch);
        member.clear();
        let result = worker.encode(block, &mut member);
        self.worker = Some(worker);
        let (hash, zero, _) = result?;
        self.push_member(hash, zero, &member)?;
        self.scratch = member;
        Ok(())
    }

    /// Writes the next block as an already compressed `member` of this
    /// image's codec, with the block's `hash` and ZERO flag, exactly as
    /// `push_block` would have after compressing it. The writer checks only
    /// the member's size: the caller must have proven that `member` decodes
    /// to the block `hash` names (a synthetic full copies proven members of
    /// another full this way, without compressing them again).
    pub fn push_member(&mut self, hash: Hash, zero: bool, member: &[u8]) -> Result<()> {
        let n = self.identity.blocks();
        if n >= self.header.block_count() {
            return Err(Error::invalid(format!(
                "image of {} bytes has {} blocks; block {n} is one too many",
                self.header.image_size,
                self.header.block_count()
            )));
        }
        let member_len = u32::try_from(member.len())
            .ok()
            .filter(|&l| {
                l > 0 && l as usize <= self.header.codec.member_bound(self.header.block_len(n))
            })
            .ok_or_else(|| {
                Error::invalid(format!(
                    "block {n}: member of {} bytes is not a valid size",
                    member.len()
                ))
            })?;
        self.out.write_all(member)?;
        self.identity.update(&hash);
        self.data_bytes += member.len() as u64;
        self.zero_blocks += zero as u64;
        self.segment.push(BlockEntry {
            hash,
            member_len,
            member_crc: crc32fast::hash(member),
            zero,
        });
        if self.segment.len() == self.header.segment_blocks as usize {
            self.end_segment()?;
        }
        Ok(())
    }

    fn end_segment(&mut self) -> Result<()> {
        let entries = std::mem::take(&mut self.segment);
        let segment = IndexSegment::new(
            self.index_offsets.len() as u64,
            self.segment_data_offset,
            entries,
        );
        self.index_offsets.push(self.out.pos);
        self.write_record(TAG_INDEX, &segment.encode())?;
        self.segment_data_offset = self.out.pos;
        self.segment = Vec::with_capacity(self.header.segment_blocks as usize);
        Ok(())
    }

    /// Writes the last index, the directory and the footer, flushes, and
    /// returns the output. Fails if fewer blocks than the image size came in.
    pub fn finish(mut self) -> Result<(W, FullSummary)> {
        let blocks = self.identity.blocks();
        if blocks != self.header.block_count() {
            return Err(Error::invalid(format!(
                "image of {} bytes needs {} blocks, got {blocks}",
                self.header.image_size,
                self.header.block_count()
            )));
        }
        if !self.segment.is_empty() {
            self.end_segment()?;
        }
        let directory_offset = self.out.pos;
        self.write_record(TAG_DIRECTORY, &encode_directory(&self.index_offsets))?;
        let identity = self.identity.finalize();
        if let Some(key) = &self.options.key {
            let auth = crate::auth::Auth {
                key_id: key.id(),
                mac: key.mac("full", &[&self.head_body, &self.meta_body, &identity]),
            };
            self.write_record(TAG_AUTH, &auth.encode())?;
        }
        let file_len = self.out.pos + self.header.codec.wrapped_record_len(FOOT_LEN);
        let footer = Footer {
            identity,
            directory_offset,
            segment_count: self.index_offsets.len() as u64,
            file_len,
        };
        self.write_record(TAG_FOOT, &footer.encode())?;
        debug_assert_eq!(self.out.pos, file_len);
        self.out.flush()?;
        let summary = FullSummary {
            identity,
            image_size: self.header.image_size,
            blocks,
            zero_blocks: self.zero_blocks,
            data_bytes: self.data_bytes,
            index_bytes: self.index_bytes,
            file_len,
        };
        Ok((self.out.inner, summary))
    }

    fn write_record(&mut self, tag: [u8; 4], body: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(body.len() + 64);
        self.header.codec.wrap_record(tag, body, &mut buf)?;
        self.index_bytes += buf.len() as u64;
        self.out.write_all(&buf)
    }
}

/// Per-worker state: an encoder and the member and hash of a zero block of
/// each length seen, so the ~40% of a disk that is zeros costs a memcmp.
pub(crate) struct EncodeWorker {
    encoder: BlockEncoder,
    zero: Vec<(usize, Hash, Vec<u8>)>,
}

impl EncodeWorker {
    pub(crate) fn new(options: &FullOptions) -> Result<Self> {
        Ok(EncodeWorker {
            encoder: BlockEncoder::new(options.codec, options.level())?,
            zero: Vec::new(),
        })
    }

    pub(crate) fn encode(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(Hash, bool, u32)> {
        if is_zero(block) {
            return self.encode_zero(block.len(), out);
        }
        let start = out.len();
        self.encoder.encode(block, out)?;
        Ok((block_hash(block), false, (out.len() - start) as u32))
    }

    /// A block of `len` zero bytes, read or known from a hole: the member
    /// and hash cached for that length, made on first use.
    pub(crate) fn encode_zero(
        &mut self,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(Hash, bool, u32)> {
        if let Some((_, hash, member)) = self.zero.iter().find(|z| z.0 == len) {
            out.extend_from_slice(member);
            return Ok((*hash, true, member.len() as u32));
        }
        let start = out.len();
        let zeros = vec![0u8; len];
        self.encoder.encode(&zeros, out)?;
        let hash = block_hash(&zeros);
        self.zero.push((len, hash, out[start..].to_vec()));
        Ok((hash, true, (out.len() - start) as u32))
    }
}

/// The same run compressed: members back to back, and per block its hash,
/// zero flag and member length.
pub(crate) struct EncodedBatch {
    pub members: Vec<u8>,
    pub blocks: Vec<(Hash, bool, u32)>,
    /// Image bytes the batch's blocks hold.
    pub raw_len: u64,
}

/// Runs `feed` while a thread of its own pushes the batches it sends into
/// `writer`, in the order sent, giving each batch's buffer back to
/// `member_pool`; returns the writer, unfinished. Writing apart lets the
/// page-cache copies and writeback of the output overlap the reading and
/// compressing that `feed` drives, instead of taking turns with them.
/// `threads` is how many threads `feed` starts, to number the writer's.
pub(crate) fn write_on_thread<W: Write + Send>(
    mut writer: FullWriter<W>,
    threads: usize,
    member_pool: &BufferPool,
    feed: impl FnOnce(&std::sync::mpsc::SyncSender<EncodedBatch>) -> Result<()>,
) -> Result<FullWriter<W>> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<EncodedBatch>(4);
        let write = crate::pipeline::spawn_scoped(
            scope,
            threads,
            threads + 1,
            move || -> Result<FullWriter<W>> {
                for batch in rx {
                    let mut at = 0usize;
                    for (hash, zero, len) in batch.blocks {
                        let member = &batch.members[at..at + len as usize];
                        at += len as usize;
                        writer.push_member(hash, zero, member)?;
                    }
                    member_pool.give(batch.members);
                }
                Ok(writer)
            },
        )?;
        let fed = feed(&tx);
        drop(tx);
        let written = match write.join() {
            Ok(w) => w,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // The writer's error comes first: a send fails only after it stopped.
        let writer = written?;
        fed?;
        Ok(writer)
    })
}

/// Reads the image's bytes from `source` and writes them through `writer`,
/// hashing and compressing on the writer's worker threads, then finishes
/// it. `progress` is called with the number of source bytes done so far.
/// Blocks in the holes of a sparse source (a `DiskSource`'s reader) are
/// written as zero blocks without being read.
pub fn write_full<S: DiskBytes, W: Write + Send>(
    source: S,
    source_name: &std::path::Path,
    writer: FullWriter<W>,
    progress: &mut dyn FnMut(u64),
) -> Result<(W, FullSummary)> {
    let options = writer.options.clone();
    let options = &options;
    let image_size = writer.header.image_size;
    let block_size = options.block_size as usize;
    let workers = worker_count(options.threads);
    let states = (0..workers)
        .map(|_| EncodeWorker::new(options))
        .collect::<Result<Vec<_>>>()?;
    let mut done = 0u64;
    let raw_pool = BufferPool::default();
    let member_pool = BufferPool::default();
    let mut batches = SourceBatches::new(source, source_name, image_size, block_size);
    let member_pool = &member_pool;
    let writer = write_on_thread(writer, workers, member_pool, |tx| {
        run_ordered(
            states,
            workers * 3,
            || batches.next(&raw_pool),
            |worker: &mut EncodeWorker, batch: SourceBatch| {
                let mut members = member_pool.take();
                let blocks = batch
                    .blocks()
                    .map(|block| match block {
                        SourceBlock::Data(data) => worker.encode(data, &mut members),
                        SourceBlock::Zero(len) => worker.encode_zero(len, &mut members),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let raw_len = batch.len() as u64;
                batch.recycle(&raw_pool);
                Ok(EncodedBatch {
                    members,
                    blocks,
                    raw_len,
                })
            },
            |batch: EncodedBatch| {
                done += batch.raw_len;
                progress(done);
                // A send fails only when the writer stopped on an error:
                // stop the pipeline; the writer's error is the one returned.
                tx.send(batch)
                    .map_err(|_| Error::invalid("the output writer stopped"))
            },
        )
    })?;
    writer.finish()
}
