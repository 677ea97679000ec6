//! Jobs: a whole operation on a backup, for any front end (the restore
//! runtime, `sdar`, a queue running several at once). A job is prepared
//! first, which refuses everything that can be refused before anything is
//! written, then run with a progress callback and a [`Cancel`] handle, and
//! ends in a typed outcome or a typed failure that says what it left
//! behind.
//!
//! A job prints nothing and changes nothing process-wide (no signal
//! dispositions, no environment reads): what it needs from the process,
//! such as the value of `SDAR_FULL_PATH` or standard input, its caller
//! passes in.

mod live;
pub mod locate;
mod restore;
pub mod synth;
mod verify;
mod vmx;

pub use live::{prepare_validate, LiveImage, LiveJob, LiveLog, LiveRequest, ValidateRequest};
pub use restore::{disk_file_name, PreparedRestore, RestoreOutcome, RestoreRequest, RestoredDisk};
pub use verify::{PreparedVerify, VerifyOutcome, VerifyRequest};
pub use vmx::{vmx_file_name, VmxPlan, WrittenVmx};

use crate::cancel::Cancel;
use crate::delta::DeltaArchive;
use crate::error::{hex, Error, Hash, Result};
use crate::full::{FullImage, FullStream};
use crate::image::ProvenImage;
use crate::input::{open_input, InputKind};
use crate::limits::Limits;
use crate::locate::{find_full, search_dirs};
use crate::restore::{
    restore, restore_stream, BlockSink, PriorImage, RestoreProgress, RestoreReport,
};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the full image a delta needs comes from.
pub enum FullSource {
    /// Found by its identity: in the archive's folder, then in each folder
    /// of `search_path` (a `:`-separated list: the caller passes the value
    /// of `SDAR_FULL_PATH`, if it wants it searched).
    Search { search_path: Option<OsString> },
    /// This file, proven the right one before anything is written.
    Path(PathBuf),
    /// A full read once as a stream (standard input), checked as it
    /// passes; `name` is what messages call it.
    Stream {
        reader: Box<dyn Read + Send>,
        name: PathBuf,
    },
}

impl std::fmt::Debug for FullSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FullSource::Search { search_path } => f
                .debug_struct("Search")
                .field("search_path", search_path)
                .finish(),
            FullSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            FullSource::Stream { name, .. } => {
                f.debug_struct("Stream").field("name", name).finish()
            }
        }
    }
}

/// What a restore or verify did, success or not: filled in as it goes, so
/// that a failure says how far it got.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRecord {
    /// The key id the archive was proven authentic with (`key` given).
    pub key_id: Option<[u8; crate::layout::AUTH_KEY_ID_LEN]>,
    /// The full image used, once found and proven (or the stream's name).
    pub full: Option<PathBuf>,
    /// The restore took over an interrupted restore's blocks.
    pub resumed: bool,
    /// The last counters reported, or the final ones.
    pub progress: RestoreProgress,
    /// The identity proven, once every block was.
    pub identity: Option<Hash>,
    pub blocks: u64,
    /// Time spent rebuilding the image (not preparing it).
    pub elapsed: Duration,
}

/// What a failed job left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Nothing of this run's: what it created is gone.
    Nothing,
    /// The blocks restored so far, in this file, for a restore run again
    /// with `resume` (they are read back and checked).
    Partial(PathBuf),
    /// A block device written in place: `written` says whether any block
    /// reached it (else it holds what it held before).
    Device { path: PathBuf, written: bool },
}

/// A job that failed: why, what it left behind, and how far it got.
#[derive(Debug)]
pub struct RestoreFailure {
    pub error: Error,
    pub kept: Kept,
    pub record: JobRecord,
    /// The disk, when it was restored and only something after it (the
    /// .vmx) failed.
    pub disk: Option<RestoredDisk>,
}

/// What a job's steps return: boxed, so that the `Ok` path stays small.
pub type JobResult<T> = std::result::Result<T, Box<RestoreFailure>>;

impl RestoreFailure {
    fn new(error: Error, record: &JobRecord) -> Box<Self> {
        Box::new(RestoreFailure {
            error,
            kept: Kept::Nothing,
            record: record.clone(),
            disk: None,
        })
    }

    /// True when the job stopped because its [`Cancel`] handle was used.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.error, Error::Cancelled)
    }
}

impl std::fmt::Display for RestoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for RestoreFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Opens a delta archive to restore or verify: a regular file only.
pub fn open_archive(path: &Path, limits: &Limits) -> Result<DeltaArchive<File>> {
    let file = open_input(path, InputKind::Regular)?;
    DeltaArchive::open(file, path, limits)
}

/// Proves the archive's MAC with `key`, if given, before anything else is
/// read or written.
fn authenticate(
    delta: &DeltaArchive<File>,
    key: Option<&crate::auth::Key>,
    record: &mut JobRecord,
) -> Result<()> {
    if let Some(key) = key {
        delta.authenticate(key)?;
        record.key_id = Some(key.id());
    }
    Ok(())
}

/// What a delta is rebuilt from: the image proven over its full (the full
/// found, opened, and the whole map proven against the delta's identity),
/// or the delta with a full read as a stream, checked as it passes.
// One per job, moved once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Source {
    Proven(ProvenImage<File, File>),
    Stream {
        delta: DeltaArchive<File>,
        stream: FullStream<Box<dyn Read + Send>>,
        name: PathBuf,
    },
}

impl Source {
    /// The full's name (or the stream's).
    fn full_name(&self) -> &Path {
        match self {
            Source::Proven(image) => image.base().name(),
            Source::Stream { name, .. } => name,
        }
    }

    /// Bytes of the image that are not zero blocks, when known before the
    /// restore (not for a stream).
    fn nonzero_bytes(&self) -> Option<u64> {
        match self {
            Source::Proven(image) => Some(image.nonzero_bytes()),
            Source::Stream { .. } => None,
        }
    }
}

/// Finds and opens the full `delta` needs, and proves a file to be the
/// right one, and the image's whole map, before anything is written.
fn open_source(
    delta: DeltaArchive<File>,
    archive: &Path,
    source: FullSource,
    limits: &Limits,
) -> Result<Source> {
    let path = match source {
        FullSource::Path(p) => p,
        FullSource::Stream { reader, name } => {
            let stream = FullStream::open(reader, &name, limits)?;
            return Ok(Source::Stream {
                delta,
                stream,
                name,
            });
        }
        FullSource::Search { search_path } => {
            let dirs = search_dirs(archive, search_path.as_deref());
            let hint = delta.meta().base_name.as_deref();
            find_full(&dirs, hint, &delta.header().base_identity).ok_or_else(|| {
                Error::NotFound {
                    what: format!(
                        "the full image with identity {} was not found in {}; give it with --full PATH",
                        hex(&delta.header().base_identity),
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            })?
        }
    };
    let file = open_input(&path, InputKind::Regular)?;
    let base = FullImage::open(file, &path, limits)?;
    Ok(Source::Proven(ProvenImage::of_delta(delta, base)?))
}

/// Stops a stream restore at the next block once `cancel` is used: every
/// block it hands on passes through here.
struct CancelSink<'a> {
    inner: &'a mut dyn BlockSink,
    cancel: &'a Cancel,
}

impl BlockSink for CancelSink<'_> {
    fn put(&mut self, block: u64, offset: u64, data: Option<&[u8]>) -> Result<()> {
        self.cancel.check()?;
        self.inner.put(block, offset, data)
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

/// Rebuilds the image from `source` into `sink`, reporting progress and
/// recording it in `record`.
#[allow(clippy::too_many_arguments)]
fn rebuild(
    source: Source,
    sink: &mut dyn BlockSink,
    threads: usize,
    prior: Option<&PriorImage>,
    progress: &mut dyn FnMut(&RestoreProgress),
    cancel: &Cancel,
    record: &mut JobRecord,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let mut last = RestoreProgress::default();
    let mut report = |p: &RestoreProgress| {
        last.clone_from(p);
        progress(p);
    };
    let result = cancel.check().and_then(|()| match source {
        Source::Proven(image) => restore(&image, sink, threads, prior, &mut report, cancel),
        Source::Stream {
            delta,
            stream,
            name,
        } => {
            let mut sink = CancelSink {
                inner: sink,
                cancel,
            };
            restore_stream(&delta, stream, &name, &mut sink, prior, &mut report)
        }
    });
    record.elapsed = started.elapsed();
    record.progress = last;
    let done = result?;
    record.progress = done.progress.clone();
    record.identity = Some(done.identity);
    record.blocks = done.blocks;
    Ok(done)
}
