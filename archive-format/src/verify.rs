//! Verification of a full image: every byte read, every block proven
//! against its hash and the hashes against the identity; nothing written.

use crate::bytes::ReadAt;
use crate::cancel::Cancel;
use crate::error::{Hash, Result};
use crate::full::FullImage;
use crate::image::ProvenImage;
use crate::restore::{restore, DiscardSink};

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

/// Verifies `image` completely on `threads` workers (0: one per core):
/// its index proven against the identity first (no block data read), then
/// every block read and proven against its hash by the restore engine,
/// with nothing written. `progress` is called with the image bytes proven
/// so far.
pub fn verify_full<R: ReadAt>(
    image: &FullImage<R>,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport> {
    let proven = ProvenImage::of_full(image.by_ref())?;
    let report = restore(
        &proven,
        &mut DiscardSink,
        threads,
        None,
        &mut |p| progress(p.done),
        &Cancel::new(),
    )?;
    Ok(VerifyReport {
        identity: report.identity,
        image_size: proven.image_size(),
        blocks: report.blocks,
        zero_blocks: report.progress.zero_blocks,
        data_bytes: report.progress.full_read,
        file_len: image.file_len(),
    })
}
