//! The live recovery job: a backup served as a disk at once, restored
//! behind the guest into a destination (SPEC.md §20), or served over a
//! discarded overlay to prove it boots (validate mode).

use super::restore::destination_path;
use super::{authenticate, open_archive, open_source, FullSource, JobRecord, RestoredDisk, Source};
use crate::auth::Key;
use crate::error::{Error, Hash, Result};
use crate::image::ProvenImage;
use crate::limits::Limits;
use crate::live::state::{Found, StateFile, StateImage, ABSENT};
use crate::live::{LiveDisk, Store};
use crate::meta::Metadata;
use crate::target::{
    live_state_path, live_state_tmp_path, resolve_destination, DestinationKind, RestoreTarget,
    TargetKind, TargetOptions,
};
use crate::vmdk::DescriptorSpec;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The disk a live job serves.
pub type LiveImage = LiveDisk<File, File>;

/// Where a live job logs what goes wrong with single blocks.
pub type LiveLog = Box<dyn Fn(String) + Send + Sync>;

/// A live recovery to ask for.
#[derive(Debug)]
pub struct LiveRequest {
    /// The delta archive; its full is found as a restore finds it.
    pub archive: PathBuf,
    pub full: FullSource,
    /// The destination, as a restore takes it (a file, or a folder).
    pub to: PathBuf,
    pub kind: TargetKind,
    /// Replace existing files at the destination (never a backup), and
    /// start over from a state file of another image or a damaged one.
    pub force: bool,
    pub key: Option<Key>,
    pub limits: Limits,
}

impl LiveRequest {
    pub fn new(archive: impl Into<PathBuf>, to: impl Into<PathBuf>) -> Self {
        LiveRequest {
            archive: archive.into(),
            full: FullSource::Search { search_path: None },
            to: to.into(),
            kind: TargetKind::Vmdk { vmfs: false },
            force: false,
            key: None,
            limits: Limits::default(),
        }
    }
}

/// A live recovery being served.
pub struct LiveJob {
    disk: Arc<LiveImage>,
    target: Option<RestoreTarget>,
    spec: Option<DescriptorSpec>,
    continued: bool,
    state_path: PathBuf,
    record: JobRecord,
    meta: Metadata,
}

impl LiveJob {
    /// Opens the archive, finds and proves its full and the image map, and
    /// sets up the destination: a new one, or the one a killed run left
    /// (its state file beside it), which this run continues.
    pub fn prepare(request: LiveRequest, log: LiveLog) -> Result<LiveJob> {
        let r = request;
        let mut record = JobRecord::default();
        let delta = open_archive(&r.archive, &r.limits)?;
        authenticate(&delta, r.key.as_ref(), &mut record)?;
        let meta = delta.meta().clone();
        let to = destination_path(&meta, &r.to, &r.kind)?;
        let place = resolve_destination(&to)?;
        if place.kind == DestinationKind::Device {
            return Err(Error::invalid(format!(
                "{} is a block device: live recovery writes into a file (its state file goes beside it); restore to the device with `sdar restore --raw --force`, or serve the backup with --validate",
                to.display()
            )));
        }
        let image = proven(open_source(delta, &r.archive, r.full, &r.limits)?)?;
        record.full = Some(image.base().name().to_path_buf());
        let state_image = StateImage {
            identity: image.identity(),
            image_size: image.image_size(),
            block_size: image.block_size(),
        };
        let state_path = live_state_path(&place.path);
        let refuse_state = |why: String| {
            Error::invalid(format!(
                "{}: {why}; it is not the state of a live recovery of this backup: use --force to start over (what that recovery's guest wrote is discarded)",
                state_path.display()
            ))
        };
        // A first look, before the destination is locked: whether this run
        // continues a killed one decides how the destination is opened.
        let continuing = match StateFile::open(&state_path, state_image) {
            Ok(Found::Ours(..)) => true,
            Ok(Found::Missing) => false,
            Ok(Found::Other(_)) | Err(_) if r.force => false,
            Ok(Found::Other(why)) => return Err(refuse_state(why)),
            Err(e) => return Err(e),
        };
        let mut opts = TargetOptions::new(r.kind.clone());
        opts.force = r.force;
        opts.resume = true;
        opts.continue_partial = continuing;
        opts.thin = true;
        opts.space_check = true;
        opts.thin_bytes = Some(image.nonzero_bytes());
        opts.identity = image.identity();
        opts.block_size = image.block_size();
        let mut target = RestoreTarget::create(&to, image.image_size(), &opts)?;
        // Whatever happens from here, the data stays for the next run: it
        // may hold what the guest wrote.
        target.keep_partial();
        let partial = target.partial_path().to_path_buf();
        // Under the destination's lock: the state file is this run's.
        let (state, states) = if continuing {
            let Found::Ours(state, states) = StateFile::open(&state_path, state_image)? else {
                return Err(Error::invalid(format!(
                    "{} changed while sdar started; run again",
                    state_path.display()
                )));
            };
            let held = states.iter().filter(|&&s| s != ABSENT).count();
            if !target.resumed() && held > 0 {
                return Err(Error::invalid(format!(
                    "{} says {held} blocks are in {}, which is missing: use --force to start over (what the guest wrote is lost)",
                    state_path.display(),
                    partial.display()
                )));
            }
            (state, Some(states))
        } else {
            if target.resumed() && !r.force && allocated(target.data_file()) > 0 {
                return Err(Error::invalid(format!(
                    "{} holds an interrupted restore's data but no live recovery state: finish it with `sdar restore --resume`, or use --force to start over",
                    partial.display()
                )));
            }
            if state_path.symlink_metadata().is_ok() {
                // Refused above without --force; unlinking a name never
                // writes into the file it named.
                std::fs::remove_file(&state_path).map_err(|e| Error::io(&state_path, None, e))?;
            }
            let tmp = live_state_tmp_path(&place.path);
            (StateFile::create(&state_path, &tmp, state_image)?, None)
        };
        let file = target
            .data_file()
            .try_clone()
            .map_err(|e| Error::io(&partial, None, e))?;
        let spec = match &r.kind {
            TargetKind::Raw => None,
            TargetKind::Vmdk { vmfs } => {
                let flat = target
                    .data_path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let identity: Hash = image.identity();
                let cid = u32::from_le_bytes(identity[..4].try_into().expect("4 bytes"));
                let mut spec = DescriptorSpec::new(image.image_size(), flat, *vmfs, &meta, cid);
                spec.thin = true;
                Some(spec)
            }
        };
        record.resumed = continuing;
        record.identity = Some(image.identity());
        let store = Store::Dest {
            state: Mutex::new(Some(state)),
            fresh: !target.resumed(),
        };
        let disk = LiveDisk::new(image, file, &partial, store, states, log)?;
        Ok(LiveJob {
            disk: Arc::new(disk),
            target: Some(target),
            spec,
            continued: continuing,
            state_path,
            record,
            meta,
        })
    }

    pub fn disk(&self) -> &Arc<LiveImage> {
        &self.disk
    }

    /// True when this run continues one that was stopped or killed.
    pub fn continued(&self) -> bool {
        self.continued
    }

    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// Where the disk's data is being written now.
    pub fn partial_path(&self) -> Option<&Path> {
        self.target.as_ref().map(|t| t.partial_path())
    }

    /// Where the finished disk goes (the descriptor, or the raw image).
    pub fn destination(&self) -> Option<&Path> {
        self.target.as_ref().map(|t| t.destination())
    }

    /// Once every block is present: makes the disk durable, gives the data
    /// its final name, writes the descriptor, then removes the state file.
    /// The disk goes on being served from the same open file.
    pub fn complete(&mut self) -> Result<RestoredDisk> {
        let absent = self.disk.absent();
        if absent != 0 {
            return Err(Error::Bug {
                what: format!("completing a live recovery with {absent} blocks absent"),
            });
        }
        let Some(target) = self.target.take() else {
            return Err(Error::Bug {
                what: "a live recovery completed twice".into(),
            });
        };
        self.disk.flush()?;
        let destination = target.destination().to_path_buf();
        let data_file = target.data_path().to_path_buf();
        target.commit(self.spec.as_ref())?;
        self.disk.forget_state()?;
        Ok(RestoredDisk {
            descriptor: self.spec.is_some().then(|| destination.clone()),
            destination,
            data_file,
        })
    }
}

/// Validate mode: the backup served over a temporary overlay.
#[derive(Debug)]
pub struct ValidateRequest {
    pub archive: PathBuf,
    pub full: FullSource,
    /// Where the overlay's (unnamed) file is made.
    pub overlay_dir: PathBuf,
    /// The most the overlay may hold; `None`: the larger of 20 GiB and 15%
    /// of the disk.
    pub overlay_max: Option<u64>,
    pub key: Option<Key>,
    pub limits: Limits,
}

/// The share of the overlay's filesystem always left free (1/20: 5%).
const KEEP_FREE_DIVISOR: u64 = 20;

/// Opens and proves the backup, and makes its overlay: a file with no name
/// (`O_TMPFILE`), gone with the process however it ends.
pub fn prepare_validate(r: ValidateRequest, log: LiveLog) -> Result<(Arc<LiveImage>, Metadata)> {
    let mut record = JobRecord::default();
    let delta = open_archive(&r.archive, &r.limits)?;
    authenticate(&delta, r.key.as_ref(), &mut record)?;
    let meta = delta.meta().clone();
    let image = proven(open_source(delta, &r.archive, r.full, &r.limits)?)?;
    let dir = &r.overlay_dir;
    let file = overlay_file(dir)?;
    file.set_len(image.image_size())
        .map_err(|e| Error::io(dir, None, e))?;
    let fs = rustix::fs::fstatvfs(&file).map_err(|e| {
        Error::io(
            dir,
            None,
            std::io::Error::from_raw_os_error(e.raw_os_error()),
        )
    })?;
    let budget = r
        .overlay_max
        .unwrap_or_else(|| (20u64 << 30).max(image.image_size() / 100 * 15));
    let keep_free = fs.f_blocks.saturating_mul(fs.f_frsize) / KEEP_FREE_DIVISOR;
    let store = Store::Overlay {
        budget,
        keep_free,
        used: Default::default(),
    };
    let name = dir.join("(validate overlay)");
    let disk = LiveDisk::new(image, file, name, store, None, log)?;
    Ok((Arc::new(disk), meta))
}

fn overlay_file(dir: &Path) -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        Error::io(
            dir,
            None,
            std::io::Error::new(
                std::io::Error::from_raw_os_error(e.raw_os_error()).kind(),
                format!(
                    "cannot make the validate overlay there (an unnamed O_TMPFILE file): {e}; give another folder with --overlay-dir"
                ),
            ),
        )
    })?;
    Ok(File::from(fd))
}

fn proven(source: Source) -> Result<ProvenImage<File, File>> {
    match source {
        Source::Proven(image) => Ok(image),
        Source::Stream { .. } => Err(Error::invalid(
            "live recovery reads blocks in any order: the full must be a file, not a stream",
        )),
    }
}

/// Bytes a file holds on disk (a sparse file just created holds none).
fn allocated(file: &File) -> u64 {
    file.metadata().map_or(u64::MAX, |m| m.blocks() * 512)
}
