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

// The layers, from the bottom: bytes at offsets, the formats, the proven
// image, where blocks go, and the jobs that use them.
mod buffers;
pub mod bytes;
mod cancel;
pub mod display;
pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod job;
pub mod layout;
mod limits;
pub mod live;
mod pipeline;
mod source;
pub mod target;

// The paths the runtime, the CLI and the tests have always used.
pub use bytes::input;
pub use format::{auth, container, delta, full, vmdk, vmx};
pub use image::restore;
pub use job::{locate, synth};
pub use target::background_sync;
// Short paths inside the crate.
use bytes::file as archive_file;
use format::{codec, footer, header, identity, index, meta, record, record_cache, trailer};
use image::verify;

pub use archive_file::ArchiveFile;
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
pub use meta::{civil_from_days, utc_stamp, Geometry, Metadata, MAX_META_TEXT_LEN};
pub use source::{DiskBytes, DiskFile, DiskSource, SourceFormat};
pub use synth::{synth_metadata, write_synth, SynthSummary};
pub use trailer::Trailer;
pub use verify::{verify_full, VerifyReport};
