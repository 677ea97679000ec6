//! Verification: read every byte of a full image, prove every block against
//! its hash and the hashes against the identity, and write nothing.

use crate::error::{Error, Hash, Result};
use crate::full::{FullImage, MemberCheck};
use crate::identity::IdentityHasher;
use crate::index::{BlockEntry, IndexSegment};
use crate::pipeline::{run_ordered, worker_count};
use std::io::{Read, Seek};
use std::path::PathBuf;

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub identity: Hash,
    pub image_size: u64,
    pub blocks: u64,
    pub zero_blocks: u64,
    /// Bytes of block members read and checked.
    pub data_bytes: u64,
    pub file_len: u64,
}

/// Members read per job: enough to keep the workers busy between hand-offs.
const BATCH_BYTES: u64 = 1 << 20;

struct Job {
    first_block: u64,
    entries: Vec<BlockEntry>,
    offsets: Vec<u64>,
    members: Vec<u8>,
    raw_len: u64,
}

/// Verifies `image` completely on `threads` workers (0: one per core).
/// The first problem found, in file order, is the error returned.
/// `progress` is called with the number of image bytes proven so far.
pub fn verify_full<R: Read + Seek>(
    image: &mut FullImage<R>,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport> {
    let header = image.header().clone();
    let name: PathBuf = image.name().to_path_buf();
    let workers = worker_count(threads);
    let states = (0..workers)
        .map(|_| Ok((MemberCheck::new(header.codec, &header)?, Vec::new())))
        .collect::<Result<Vec<_>>>()?;

    let mut identity = IdentityHasher::new(header.image_size, header.block_size);
    let segments = image.segment_count();
    let mut segment: Option<IndexSegment> = None;
    let mut next_segment = 0u64;
    let mut in_segment = 0usize;
    let mut zero_blocks = 0u64;
    let mut data_bytes = 0u64;
    let mut done = 0u64;

    run_ordered(
        states,
        workers * 3,
        || {
            let seg = match segment.as_ref() {
                Some(seg) if in_segment < seg.entries.len() => seg,
                _ => {
                    if next_segment == segments {
                        return Ok(None);
                    }
                    let seg = image.index_segment(next_segment)?;
                    for e in &seg.entries {
                        identity.update(&e.hash);
                    }
                    next_segment += 1;
                    in_segment = 0;
                    segment.insert(seg)
                }
            };
            let first = in_segment;
            let mut end = first;
            let mut bytes = 0u64;
            while end < seg.entries.len() && (end == first || bytes < BATCH_BYTES) {
                bytes += seg.entries[end].member_len as u64;
                end += 1;
            }
            in_segment = end;
            let first_block = seg.segment * header.segment_blocks as u64 + first as u64;
            let offset = seg.member_offset(first);
            let entries = seg.entries[first..end].to_vec();
            let offsets = (first..end).map(|i| seg.member_offset(i)).collect();
            let members = image.file_mut().read_vec_at(
                offset,
                bytes as usize,
                &format!("members of blocks {first_block}.."),
            )?;
            let raw_len = (first_block..first_block + entries.len() as u64)
                .map(|b| header.block_len(b) as u64)
                .sum();
            Ok(Some(Job {
                first_block,
                entries,
                offsets,
                members,
                raw_len,
            }))
        },
        |(check, buf): &mut (MemberCheck, Vec<u8>), job: Job| {
            let mut at = 0usize;
            let mut zeros = 0u64;
            for (i, entry) in job.entries.iter().enumerate() {
                let block = job.first_block + i as u64;
                let member = &job.members[at..at + entry.member_len as usize];
                at += entry.member_len as usize;
                buf.resize(header.block_len(block), 0);
                check.check(&name, block, job.offsets[i], entry, member, buf)?;
                zeros += entry.zero as u64;
            }
            Ok((job.raw_len, zeros, job.members.len() as u64))
        },
        |(raw, zeros, stored)| {
            done += raw;
            zero_blocks += zeros;
            data_bytes += stored;
            progress(done);
            Ok(())
        },
    )?;
    let actual = identity.finalize();
    if actual != image.identity() {
        return Err(Error::IdentityMismatch {
            file: name,
            expected: image.identity(),
            actual,
        });
    }
    Ok(VerifyReport {
        identity: actual,
        image_size: header.image_size,
        blocks: header.block_count(),
        zero_blocks,
        data_bytes,
        file_len: image.file_len(),
    })
}
