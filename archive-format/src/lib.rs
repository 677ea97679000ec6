//! `archive-format`: read, write and verify sdar full images.
//!
//! A full image is a compressed copy of a disk that stock `zcat` (or
//! `zstd -dc`) turns back into the exact disk, carrying a blake3 hash of every
//! block and the offsets to read any block with one seek. SPEC.md in the
//! repository describes every byte; this crate is its reference reader and
//! writer.
//!
//! ```no_run
//! use archive_format::{FullImage, Limits, verify_full};
//! let file = std::fs::File::open("disk.full.gz")?;
//! let mut image = FullImage::open(file, "disk.full.gz", &Limits::default())?;
//! let report = verify_full(&mut image, 0, &mut |_done| {})?;
//! println!("{} blocks verified", report.blocks);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod archive_file;
pub mod auth;
pub mod background_sync;
mod buffers;
pub mod bytes;
mod cancel;
mod codec;
pub mod container;
pub mod delta;
pub mod display;
pub mod error;
mod footer;
pub mod full;
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod identity;
pub mod image;
mod index;
pub mod input;
pub mod job;
pub mod layout;
mod limits;
pub mod locate;
mod meta;
mod pipeline;
mod record;
mod record_cache;
pub mod restore;
mod source;
pub mod synth;
pub mod target;
mod trailer;
mod verify;
pub mod vmdk;
pub mod vmx;

pub use archive_file::{ArchiveFile, SharedFile};
pub use bytes::{CachedReader, ReadAt};
pub use cancel::Cancel;
pub use codec::Codec;
pub use delta::{
    write_delta, ChangeEntry, ChangeKind, DeltaArchive, DeltaHeader, DeltaOptions, DeltaSummary,
    DeltaWriter,
};
pub use error::{hex, Error, Hash, Result};
pub use footer::Footer;
pub use full::{write_full, FullImage, FullOptions, FullSummary, FullWriter, MemberCheck};
pub use header::ImageHeader;
pub use identity::{block_hash, is_zero, IdentityHasher, ZeroHashes};
pub use index::{BlockEntry, IndexSegment};
pub use limits::Limits;
pub use meta::{utc_stamp, Geometry, Metadata, MAX_META_TEXT_LEN};
pub use source::{DiskBytes, DiskFile, DiskSource, SourceFormat};
pub use synth::{synth_metadata, write_synth, SynthSummary};
pub use trailer::Trailer;
pub use verify::{verify_full, VerifyReport};
