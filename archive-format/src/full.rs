//! Full images: a compressed copy of a disk that stock `zcat` or `zstd -dc`
//! turns back into the exact disk, with a block index inside it.
//!
//! The file is a sequence of containers (SPEC.md §1 "Overview"):
//! HEAD, META, then per segment its block members followed by its INDX
//! record, then DIRS and FOOT.

mod read;
mod stream;
mod write;

pub use read::{FullImage, MemberCheck};
pub use stream::FullStream;
pub use write::{write_full, FullOptions, FullSummary, FullWriter};
pub(crate) use write::{write_on_thread, EncodeWorker, EncodedBatch};
