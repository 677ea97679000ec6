//! The live recovery job: a backup served as a disk at once, restored
//! behind the guest into a destination (SPEC.md §20), or served over a
//! discarded overlay to prove it boots (validate mode).

use super::restore::{descriptor_spec, destination_path};
use super::{authenticate, open_archive, open_source, FullSource, JobRecord, RestoredDisk, Source};
use crate::auth::Key;
use crate::error::{Error, Result};
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
    /// The disk already in place (a run killed while finishing left its
    /// state file): completing only removes the state file.
    finished: Option<RestoredDisk>,
    /// With `finished`: the destination's restore mark, held while served,
    /// removed at completion (the killed run may have left it).
    mark: Option<crate::target::mark::MarkFile>,
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
            Ok(Found::Ours(state, states)) => {
                if let Some(data) = finished_before(&place.path, &r.kind, &states) {
                    return Self::finished(
                        image,
                        &place.path,
                        data,
                        state,
                        states,
                        log,
                        record,
                        meta,
                    );
                }
                true
            }
            Ok(Found::Missing) => false,
            Ok(Found::Other(_)) | Err(_) if r.force => false,
            Ok(Found::Other(why)) => return Err(refuse_state(why)),
            Err(e) => return Err(e),
        };
        if !continuing && !r.force && place.kind == DestinationKind::File {
            return Err(Error::invalid(format!(
                "{} already exists. If a live recovery finished there, it is the restored disk, with everything the guest wrote: run the VM from it. --force starts a new recovery from the backup that replaces it when done (what the guest wrote into it is then lost)",
                place.given.display()
            )));
        }
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
        // Thin: the data file is sparse, zero blocks holes.
        let spec = descriptor_spec(
            &r.kind,
            &target,
            image.image_size(),
            &meta,
            &image.identity(),
            true,
        );
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
            finished: None,
            mark: None,
            spec,
            continued: continuing,
            state_path,
            record,
            meta,
        })
    }

    /// Serves the disk a killed run had already put in place (see
    /// [`finished_before`]): the data file opened without following links,
    /// one name, this user's, the image's length, unlocked. Its state file
    /// is removed at [`LiveJob::complete`], as a finishing run would have.
    #[allow(clippy::too_many_arguments)]
    fn finished(
        image: ProvenImage<File, File>,
        dest: &Path,
        data: PathBuf,
        state: StateFile,
        states: Vec<u8>,
        log: LiveLog,
        record: JobRecord,
        meta: Metadata,
    ) -> Result<LiveJob> {
        use crate::target::files::{locked_by_another, open_nofollow, owned_single_regular};
        // Another sdar serving this destination holds its mark.
        let mut mark = crate::target::mark::MarkFile::lock(&crate::target::mark_path(dest), dest)?;
        mark.remove_on_drop = false;
        let refuse = |why: String| {
            Error::invalid(format!(
                "{} is where a live recovery put its finished disk, but {why}; {} is left as it is",
                data.display(),
                state.path().display()
            ))
        };
        let file = match open_nofollow(&data, true) {
            Ok(f) => f,
            Err(e) => return Err(refuse(format!("it cannot be opened ({e})"))),
        };
        owned_single_regular(&file).map_err(&refuse)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(&data, None, e))?
            .len();
        let size = image.image_size();
        if len < size || len > size.div_ceil(512) * 512 {
            return Err(refuse(format!(
                "it holds {len} bytes, not the disk's {size}"
            )));
        }
        if locked_by_another(&file) {
            return Err(refuse(
                "another program holds it (a VM running from it?)".into(),
            ));
        }
        let state_path = state.path().to_path_buf();
        let store = Store::Dest {
            state: Mutex::new(Some(state)),
            fresh: false,
        };
        let done = RestoredDisk {
            descriptor: (dest != data.as_path()).then(|| dest.to_path_buf()),
            destination: dest.to_path_buf(),
            data_file: data.clone(),
        };
        let disk = LiveDisk::new(image, file, &data, store, Some(states), log)?;
        Ok(LiveJob {
            disk: Arc::new(disk),
            target: None,
            finished: Some(done),
            mark: Some(mark),
            spec: None,
            continued: true,
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
        match (&self.target, &self.finished) {
            (Some(t), _) => Some(t.destination()),
            (None, Some(done)) => Some(&done.destination),
            (None, None) => None,
        }
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
        if let Some(done) = self.finished.take() {
            self.disk.forget_state()?;
            if let Some(mut mark) = self.mark.take() {
                mark.remove();
            }
            return Ok(done);
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

/// The data file of a recovery whose run was killed after it put the
/// finished disk in place and before it removed its state file: every block
/// in, no partial file, the data under its final name (and, for a VMDK, the
/// descriptor in place). A VMDK killed between its two renames is left to
/// the restore target, which takes the extent back (§19).
fn finished_before(dest: &Path, kind: &TargetKind, states: &[u8]) -> Option<PathBuf> {
    let data = crate::target::data_path(dest, kind);
    let partial = crate::target::partial_data_path(dest, kind);
    let all_in = states.iter().all(|&s| s != ABSENT);
    let in_place = data.symlink_metadata().is_ok() && dest.symlink_metadata().is_ok();
    (all_in && in_place && partial.symlink_metadata().is_err()).then_some(data)
}

/// Bytes a file holds on disk (a sparse file just created holds none).
fn allocated(file: &File) -> u64 {
    file.metadata().map_or(u64::MAX, |m| m.blocks() * 512)
}
