//! The restore job: a delta archive and its full, rebuilt into a VMDK, a raw
//! image or a block device, every block proven, with the VM's .vmx beside
//! it if asked for.

use super::{
    authenticate, open_archive, open_source, rebuild, FullSource, JobRecord, JobResult, Kept,
    RestoreFailure, Source, VmxPlan, WrittenVmx,
};
use crate::auth::Key;
use crate::cancel::Cancel;
use crate::delta::DeltaArchive;
use crate::display::safe_file_name;
use crate::error::{Error, Hash, Result};
use crate::limits::Limits;
use crate::meta::Metadata;
use crate::restore::{PriorImage, RestoreProgress};
use crate::target::{
    check_destination_name, resolve_destination, DestinationKind, RestoreTarget, TargetKind,
    TargetOptions,
};
use crate::vmdk::DescriptorSpec;
use std::fs::File;
use std::path::{Path, PathBuf};

/// What to restore, where, and how.
#[derive(Debug)]
pub struct RestoreRequest {
    /// The delta archive: opened by `prepare`, and the folder searched
    /// first for its full.
    pub archive: PathBuf,
    pub full: FullSource,
    /// The destination: a file, a folder (the disk keeps its own name in
    /// it), a link (followed) or, for a raw image, a block device.
    pub to: PathBuf,
    pub kind: TargetKind,
    /// Replace existing files at the destination (never a backup), start
    /// an interrupted restore over, or write over a block device.
    pub force: bool,
    /// Continue an interrupted restore to the same destination.
    pub resume: bool,
    /// A sparse data file: zero blocks are holes, nothing preallocated.
    pub thin: bool,
    /// Refuse to start when the destination has too little free space.
    pub space_check: bool,
    /// Also write the VM's .vmx into this folder.
    pub vmx_dir: Option<PathBuf>,
    /// Point the .vmx's disk entry at the restored descriptor.
    pub rename_disk: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Prove the archive's MAC with this key before anything else.
    pub key: Option<Key>,
    pub limits: Limits,
}

impl RestoreRequest {
    /// A VMDK restore of `archive` to `to`, its full found beside the
    /// archive, with every check on and nothing replaced.
    pub fn new(archive: impl Into<PathBuf>, to: impl Into<PathBuf>) -> Self {
        RestoreRequest {
            archive: archive.into(),
            full: FullSource::Search { search_path: None },
            to: to.into(),
            kind: TargetKind::Vmdk { vmfs: false },
            force: false,
            resume: false,
            thin: false,
            space_check: true,
            vmx_dir: None,
            rename_disk: false,
            threads: 0,
            key: None,
            limits: Limits::default(),
        }
    }
}

/// A restore ready to run: the archive authenticated, the full found and
/// proven, the destination checked and created (under a temporary name),
/// the .vmx planned. Dropped without running, it removes what it created
/// (an interrupted restore it took over is left as it was).
pub struct PreparedRestore {
    parts: Parts,
    /// The delta's metadata and image size, for the descriptor.
    meta: Metadata,
    image_size: u64,
    identity: Hash,
    record: JobRecord,
}

/// Where a restored disk was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredDisk {
    /// Where the descriptor (or the raw image) went: the destination asked
    /// for, after following a link or naming the disk in a folder.
    pub destination: PathBuf,
    /// The data: the flat extent, the raw image, or the device.
    pub data_file: PathBuf,
    /// The VMDK descriptor (the destination), for a VMDK.
    pub descriptor: Option<PathBuf>,
}

/// What a finished restore did.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreOutcome {
    pub disk: RestoredDisk,
    pub vmx: Option<WrittenVmx>,
    /// The identity proven: the delta's.
    pub identity: Hash,
    pub blocks: u64,
    pub progress: RestoreProgress,
    pub record: JobRecord,
}

impl PreparedRestore {
    /// Opens `request.archive` and prepares the restore.
    pub fn prepare(request: RestoreRequest) -> JobResult<Self> {
        let delta = open_archive(&request.archive, &request.limits)
            .map_err(|e| RestoreFailure::new(e, &JobRecord::default()))?;
        Self::prepare_with(delta, request)
    }

    /// Prepares the restore of `delta`, already open (from
    /// `request.archive`). Everything that can be refused is refused before
    /// the destination is written, in this order: the archive's MAC, the
    /// destination's kind and name, the .vmx asked for, then the full
    /// (found, opened and proven the right one), then the rest of the
    /// destination (existing files, locks, room, a device's size).
    pub fn prepare_with(delta: DeltaArchive<File>, request: RestoreRequest) -> JobResult<Self> {
        let mut record = JobRecord::default();
        let meta = delta.meta().clone();
        let image_size = delta.header().image_size;
        let identity = delta.identity();
        match Self::prepare_in(delta, request, &mut record) {
            Ok(parts) => Ok(PreparedRestore {
                parts,
                meta,
                image_size,
                identity,
                record,
            }),
            Err(e) => Err(RestoreFailure::new(e, &record)),
        }
    }

    fn prepare_in(
        delta: DeltaArchive<File>,
        r: RestoreRequest,
        record: &mut JobRecord,
    ) -> Result<Parts> {
        authenticate(&delta, r.key.as_ref(), record)?;
        let size = delta.header().image_size;
        let identity = delta.identity();
        let block_size = delta.header().block_size;
        let to = destination_path(delta.meta(), &r.to, &r.kind)?;
        let vmx = match &r.vmx_dir {
            Some(dir) => {
                let rename = r.rename_disk.then_some(to.as_path());
                Some(VmxPlan::new(delta.meta(), dir, rename, r.force)?)
            }
            None => None,
        };
        let source = open_source(delta, &r.archive, r.full, &r.limits)?;
        record.full = Some(source.full_name().to_path_buf());
        let mut opts = TargetOptions::new(r.kind.clone());
        opts.force = r.force;
        opts.resume = r.resume;
        opts.thin = r.thin;
        opts.space_check = r.space_check;
        opts.identity = identity;
        opts.block_size = block_size;
        if r.thin && r.space_check {
            opts.thin_bytes = source.nonzero_bytes();
        }
        let mut target = RestoreTarget::create(&to, size, &opts)?;
        record.resumed = target.resumed();
        // An interrupted restore taken over was not this run's to remove:
        // whatever happens next, its blocks stay for another --resume.
        if target.resumed() {
            target.keep_partial();
        }
        let prior = target.prior()?;
        Ok(Parts {
            source,
            target,
            prior,
            vmx,
            kind: r.kind,
            thin: r.thin,
            threads: r.threads,
        })
    }

    /// The metadata of the backup being restored.
    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// The identity of the disk being restored.
    pub fn identity(&self) -> Hash {
        self.identity
    }

    /// How far the job got: the key id, the full, whether it resumes.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }

    /// True when this restore continues an interrupted one.
    pub fn resumed(&self) -> bool {
        self.parts.target.resumed()
    }

    /// The data file being written (under its temporary name), or the
    /// device: where an interrupted restore's blocks are.
    pub fn partial_path(&self) -> &Path {
        self.parts.target.partial_path()
    }

    /// Where the descriptor (or raw image) will go.
    pub fn destination(&self) -> &Path {
        self.parts.target.destination()
    }

    /// True when the data is written in place on a block device.
    pub fn is_device(&self) -> bool {
        self.parts.target.is_device()
    }

    /// Rebuilds the image into the destination, every block proven, then
    /// gives the files their final names and writes the .vmx. `progress` is
    /// called after every batch of blocks; `cancel` stops the restore at the
    /// next block, keeping what was written for a restore run again with
    /// `resume`.
    ///
    /// On failure, the blocks proven so far are kept for `resume` when the
    /// environment stopped the restore (a full disk, an I/O error, a
    /// cancel) and when it resumed an interrupted one; bad data in a fresh
    /// run leaves nothing.
    pub fn run(
        self,
        progress: &mut dyn FnMut(&RestoreProgress),
        cancel: &Cancel,
    ) -> JobResult<RestoreOutcome> {
        let PreparedRestore {
            parts:
                Parts {
                    source,
                    mut target,
                    prior,
                    vmx,
                    kind,
                    thin,
                    threads,
                },
            meta,
            image_size: size,
            identity: _,
            mut record,
        } = self;
        let result = rebuild(
            source,
            &mut target,
            threads,
            prior.as_ref(),
            progress,
            cancel,
            &mut record,
        );
        let report = match result {
            Ok(r) => r,
            Err(error) => {
                let kept = if target.is_device() {
                    Kept::Device {
                        path: target.data_path().to_path_buf(),
                        written: target.wrote_any() || target.resumed(),
                    }
                } else if target.resumed() || !error.is_integrity() {
                    target.keep_partial();
                    Kept::Partial(target.partial_path().to_path_buf())
                } else {
                    Kept::Nothing
                };
                return Err(Box::new(RestoreFailure {
                    kept,
                    ..*RestoreFailure::new(error, &record)
                }));
            }
        };
        let spec = descriptor_spec(&kind, &target, size, &meta, &report.identity, thin);
        let data_file = target.data_path().to_path_buf();
        let destination = target.destination().to_path_buf();
        let device = target
            .is_device()
            .then(|| target.wrote_any() || target.resumed());
        if let Err(error) = target.commit(spec.as_ref()) {
            let kept = match device {
                Some(written) => Kept::Device {
                    path: data_file,
                    written,
                },
                None => Kept::Nothing,
            };
            return Err(Box::new(RestoreFailure {
                kept,
                ..*RestoreFailure::new(error, &record)
            }));
        }
        let disk = RestoredDisk {
            descriptor: spec.is_some().then(|| destination.clone()),
            destination,
            data_file,
        };
        let vmx = match vmx.map(VmxPlan::write).transpose() {
            Ok(vmx) => vmx,
            Err(error) => {
                return Err(Box::new(RestoreFailure {
                    disk: Some(disk),
                    ..*RestoreFailure::new(error, &record)
                }))
            }
        };
        Ok(RestoreOutcome {
            disk,
            vmx,
            identity: report.identity,
            blocks: report.blocks,
            progress: report.progress,
            record,
        })
    }
}

/// The descriptor a VMDK target gets (none for a raw image): its extent is
/// the target's data file, its content id from the image identity.
pub(super) fn descriptor_spec(
    kind: &TargetKind,
    target: &RestoreTarget,
    size: u64,
    meta: &Metadata,
    identity: &Hash,
    thin: bool,
) -> Option<DescriptorSpec> {
    let TargetKind::Vmdk { vmfs } = kind else {
        return None;
    };
    let flat = target
        .data_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cid = u32::from_le_bytes(identity[..4].try_into().expect("4 bytes"));
    let mut spec = DescriptorSpec::new(size, flat, *vmfs, meta, cid);
    spec.thin = thin;
    Some(spec)
}

/// What preparing a restore set up: where the blocks come from and go.
struct Parts {
    source: Source,
    target: RestoreTarget,
    prior: Option<PriorImage>,
    vmx: Option<VmxPlan>,
    kind: TargetKind,
    thin: bool,
    threads: usize,
}

/// `to` as the restore uses it, decided before anything is written: an
/// existing folder gets the disk under the backup's own disk name; the
/// file name is one a descriptor can hold.
pub(super) fn destination_path(meta: &Metadata, to: &Path, kind: &TargetKind) -> Result<PathBuf> {
    let place = resolve_destination(to)?;
    let path = match place.kind {
        DestinationKind::Folder => to.join(disk_file_name(meta, kind)),
        DestinationKind::Device => return Ok(to.to_path_buf()),
        DestinationKind::New | DestinationKind::File => {
            check_destination_name(&place.path, kind)?;
            return Ok(to.to_path_buf());
        }
    };
    let inner = resolve_destination(&path)?;
    if inner.kind == DestinationKind::Folder {
        return Err(Error::invalid(format!(
            "{} is a folder, and so is {} in it; give the disk's file name",
            to.display(),
            path.display()
        )));
    }
    if inner.kind != DestinationKind::Device {
        check_destination_name(&inner.path, kind)?;
    }
    Ok(path)
}

/// The disk's file name in a folder given as the destination: the
/// backup's disk name (made safe), `.vmdk` for a VMDK, `.img` for a raw
/// image; else the VM's name; else `restored`.
pub fn disk_file_name(meta: &Metadata, kind: &TargetKind) -> String {
    let safe = |n: &str| safe_file_name(n, 200).replace('"', "_");
    let stem = |n: String| {
        let n = n.strip_suffix(".vmdk").map(str::to_string).unwrap_or(n);
        n.strip_suffix("-flat").map(str::to_string).unwrap_or(n)
    };
    let base = meta
        .disk_name
        .as_deref()
        .map(|n| stem(safe(n)))
        .filter(|n| !n.is_empty())
        .or_else(|| meta.vm_name.as_deref().map(safe).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "restored".into());
    match kind {
        TargetKind::Raw => format!("{base}.img"),
        TargetKind::Vmdk { .. } => format!("{base}.vmdk"),
    }
}
