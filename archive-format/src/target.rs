//! The restore destination: a VMDK (descriptor + flat extent) or a raw
//! image in a file, or a raw image written in place on a block device,
//! written so that nothing that looks like a usable disk exists until every
//! block is proven (SPEC.md §19 "No false disks").
//!
//! A file's data is written under a temporary name created with
//! `O_EXCL | O_NOFOLLOW`, preallocated, synced, and renamed; the descriptor
//! is written last. A restore mark beside the destination (SPEC.md §19.1)
//! says which partial file this restore started, and its lock keeps a
//! second restore away. Dropping an uncommitted target removes what it
//! created. A device is never renamed or replaced: it is opened
//! exclusively and written in place.

pub mod background_sync;
pub(crate) mod files;
pub mod mark;
mod offer;

use crate::background_sync::BackgroundSync;
use crate::error::{Error, Hash, Result};
use crate::restore::{BlockSink, PriorImage};
use crate::vmdk::{DescriptorSpec, SECTOR};
use files::{
    create_exclusive, holds_backup, identity, locked_by_another, open_nofollow,
    owned_single_regular, remove_if_unchanged, rename_if_unchanged, NameWas,
};
pub use files::{hidden_prefix, name_max, write_file_replacing};
use mark::{MarkFile, MarkRecord, MarkStage, MARK_KIND_RAW, MARK_KIND_VMDK};
pub use offer::{free_vmdk_name, suggested_disk_name, typed_destination, TypedDestination};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `DEST.vmdk` descriptor and `DEST-flat.vmdk` extent.
    Vmdk { vmfs: bool },
    /// One raw image file at `DEST`, or a block device.
    Raw,
}

/// How to write the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOptions {
    pub kind: TargetKind,
    /// Replace existing files (never backups), start an interrupted restore
    /// over, or write over a block device.
    pub force: bool,
    /// Continue an interrupted restore to the same destination. Without one,
    /// start from the beginning.
    pub resume: bool,
    /// A sparse data file: nothing preallocated, zero blocks left as holes;
    /// on a device, a promise that it reads zeros already (zero blocks are
    /// not written).
    pub thin: bool,
    /// Refuse to start when the filesystem has less free space than needed.
    pub space_check: bool,
    /// For a thin target: the bytes it will allocate (its non-zero blocks),
    /// when known.
    pub thin_bytes: Option<u64>,
    /// The identity of the image being restored: what the restore mark is
    /// bound to (SPEC.md §19.1).
    pub identity: Hash,
    /// The image's block size: a zero block handed on without its bytes is
    /// this long (or shorter, at the end).
    pub block_size: u32,
    /// With `resume`, take over an interrupted run's data even with `force`
    /// (which then only replaces the final names): a live recovery
    /// continuing its own state, whose data holds the guest's writes.
    pub continue_partial: bool,
}

impl TargetOptions {
    pub fn new(kind: TargetKind) -> Self {
        TargetOptions {
            kind,
            force: false,
            resume: false,
            thin: false,
            space_check: true,
            thin_bytes: None,
            identity: [0; 32],
            block_size: 0,
            continue_partial: false,
        }
    }
}

/// What a destination path is, after following a symbolic link at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    /// Nothing there yet.
    New,
    /// A regular file.
    File,
    /// A block device: written in place.
    Device,
    /// A folder: the disk goes into it, under its own name.
    Folder,
}

/// A destination path resolved: where its data really goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The path as given.
    pub given: PathBuf,
    /// The path written: `given`, or where the link at `given` leads.
    pub path: PathBuf,
    pub kind: DestinationKind,
}

impl Destination {
    /// True when `given` is a symbolic link that was followed.
    pub fn followed(&self) -> bool {
        self.given != self.path
    }
}

/// Finds what `dest` is, following a symbolic link (an LVM `/dev/VG/LV`,
/// a link to an image) to what it names: a link is never replaced. Refuses
/// a dangling link and anything that is not a file, a device or a folder.
pub fn resolve_destination(dest: &Path) -> Result<Destination> {
    if dest.as_os_str().is_empty() {
        return Err(Error::invalid("the destination is an empty name"));
    }
    let meta = match dest.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Destination {
                given: dest.to_path_buf(),
                path: dest.to_path_buf(),
                kind: DestinationKind::New,
            })
        }
        Err(e) => return Err(Error::io(dest, None, e)),
        Ok(m) => m,
    };
    let (path, meta) = if meta.file_type().is_symlink() {
        let real = std::fs::canonicalize(dest).map_err(|e| {
            Error::invalid(format!(
                "{} is a symbolic link to {}, which cannot be reached ({e}); sdar follows a link to a file, a device or a folder, and never replaces the link",
                dest.display(),
                std::fs::read_link(dest).unwrap_or_default().display()
            ))
        })?;
        let meta = real.metadata().map_err(|e| Error::io(&real, None, e))?;
        (real, meta)
    } else {
        (dest.to_path_buf(), meta)
    };
    let t = meta.file_type();
    let kind = if t.is_file() {
        DestinationKind::File
    } else if t.is_block_device() {
        DestinationKind::Device
    } else if t.is_dir() {
        DestinationKind::Folder
    } else {
        let what = if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::invalid(format!(
            "{} is {what}: a restore writes to a file, a block device or into a folder",
            path.display()
        )));
    };
    Ok(Destination {
        given: dest.to_path_buf(),
        path,
        kind,
    })
}

/// Refuses a destination file name that the descriptor could not hold (it
/// names the extent between double quotes, one entry a line) or that is
/// not text: control characters anywhere, and for a VMDK a `"` or bytes
/// that are not UTF-8. Called before anything is written.
pub fn check_destination_name(dest: &Path, kind: &TargetKind) -> Result<()> {
    let Some(name) = dest.file_name() else {
        return Err(Error::invalid(format!(
            "{} does not end in a file name",
            dest.display()
        )));
    };
    let vmdk = matches!(kind, TargetKind::Vmdk { .. });
    let text = name.to_string_lossy();
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "the destination name {} {why}; choose another name",
            crate::display::escape(&text)
        )))
    };
    if text.chars().any(|c| c.is_control()) {
        return bad("holds a control character (a newline, a tab, an escape)");
    }
    if vmdk && name.to_str().is_none() {
        return bad("is not valid UTF-8, which a VMDK descriptor cannot name");
    }
    if vmdk && text.contains('"') {
        return bad("holds a double quote, which a VMDK descriptor cannot name its extent with");
    }
    if vmdk {
        let flat = flat_path(dest);
        let flat_len = flat.file_name().map_or(0, |n| n.len());
        let max = name_max(&folder_of(dest));
        if flat_len > max {
            return bad(&format!(
                "is too long for a VMDK: its extent's name (NAME-flat.vmdk) would be {flat_len} bytes, and this filesystem takes at most {max}"
            ));
        }
    }
    Ok(())
}

/// Permission bits of the files a restore creates (the umask may remove
/// more): a restored disk holds what its backup holds, and backups are
/// readable by their owner only. ESXi creates its disks the same way.
pub const RESTORED_MODE: u32 = 0o600;

/// A destination being written.
#[derive(Debug)]
pub struct RestoreTarget {
    kind: TargetKind,
    /// Where the descriptor (or the raw image) goes: the destination after
    /// following a link.
    dest: PathBuf,
    data_final: PathBuf,
    data_tmp: PathBuf,
    file: File,
    sync: Option<BackgroundSync>,
    thin: bool,
    /// The image's length (the data file's, for a file).
    len: u64,
    block_size: u64,
    /// Written in place on a block device: no temporary name, no rename.
    device: bool,
    /// Zero blocks are written as zeros: a device that may hold anything.
    write_zeros: bool,
    zeros: Vec<u8>,
    /// The data held an interrupted restore's blocks when opened.
    resumed: bool,
    /// Leave the partial file in place when dropped uncommitted.
    keep: bool,
    mark: Option<MarkFile>,
    /// Locks on the files being replaced, held until they are.
    _in_use: Vec<File>,
    /// What stood at the final names when they were checked: renamed over
    /// only if they still are that (SPEC.md §19).
    dest_was: NameWas,
    data_was: NameWas,
    committed: bool,
    /// Some block was handed to the file (or device): a failure before any
    /// leaves a device as it was.
    wrote: bool,
}

impl RestoreTarget {
    /// Prepares `dest` for an image of `size` bytes. Everything that can be
    /// refused is refused before an existing file is touched: the kind of
    /// destination, its name, existing files without `force`, backups,
    /// locks, the restore mark, free space, a device's size.
    pub fn create(dest: &Path, size: u64, opts: &TargetOptions) -> Result<Self> {
        let place = resolve_destination(dest)?;
        match place.kind {
            DestinationKind::Folder => Err(Error::invalid(format!(
                "{} is a folder; give the disk's file name in it",
                place.path.display()
            ))),
            DestinationKind::Device => Self::create_on_device(&place, size, opts),
            DestinationKind::New | DestinationKind::File => {
                Self::create_file(&place.path, size, opts)
            }
        }
    }

    /// A raw image written in place on a block device.
    fn create_on_device(place: &Destination, size: u64, opts: &TargetOptions) -> Result<Self> {
        let dev = &place.path;
        if opts.kind != TargetKind::Raw {
            return Err(Error::invalid(format!(
                "{} is a block device: it holds a raw disk, not a VMDK descriptor and extent; add --raw to write the disk's bytes to it",
                place.given.display()
            )));
        }
        if !opts.force {
            return Err(Error::invalid(format!(
                "{} is a block device: restoring overwrites it; add --force to write the disk to it{}",
                place.given.display(),
                if opts.resume {
                    " (with --resume, blocks already right are read back and kept)"
                } else {
                    ""
                }
            )));
        }
        // O_EXCL on a block device: refused while it is mounted, or open
        // exclusively by another program (a second restore, the kernel's
        // LVM or RAID layers).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(
                (rustix::fs::OFlags::EXCL | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(dev)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
                    Error::invalid(format!(
                        "{} is in use: it is mounted, or held by another program (a running VM, another restore); unmount or release it first",
                        dev.display()
                    ))
                } else {
                    Error::io(dev, None, e)
                }
            })?;
        let meta = file.metadata().map_err(|e| Error::io(dev, None, e))?;
        if !meta.file_type().is_block_device() {
            return Err(Error::invalid(format!(
                "{} changed while it was opened; run again",
                dev.display()
            )));
        }
        let capacity = std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0))
            .map_err(|e| Error::io(dev, None, e))?;
        if capacity < size {
            return Err(Error::invalid(format!(
                "{} holds {capacity} bytes; the restored disk needs {size} bytes: use a device at least that large",
                place.given.display()
            )));
        }
        if holds_backup(&file) {
            return Err(Error::invalid(format!(
                "{} holds an sdar backup; backups are never overwritten, not even with --force",
                dev.display()
            )));
        }
        let sync = BackgroundSync::new(&file).map_err(|e| Error::io(dev, None, e))?;
        Ok(RestoreTarget {
            kind: opts.kind.clone(),
            dest: dev.clone(),
            data_final: dev.clone(),
            data_tmp: dev.clone(),
            file,
            sync: Some(sync),
            thin: opts.thin,
            len: size,
            block_size: opts.block_size as u64,
            device: true,
            // Resuming, zero blocks come as bytes and `None` means a block
            // proven in place, which must not be overwritten.
            write_zeros: !opts.thin && !opts.resume,
            zeros: Vec::new(),
            resumed: opts.resume,
            keep: true,
            mark: None,
            _in_use: Vec::new(),
            dest_was: None,
            data_was: None,
            committed: false,
            wrote: false,
        })
    }

    /// A VMDK or raw image in files, beside `dest` (links already followed).
    fn create_file(dest: &Path, size: u64, opts: &TargetOptions) -> Result<Self> {
        check_destination_name(dest, &opts.kind)?;
        let vmdk = matches!(opts.kind, TargetKind::Vmdk { .. });
        let data_final = data_path(dest, &opts.kind);
        let data_tmp = partial_path(&data_final);
        // The finals: what exists there, refused unless replaced with --force
        // (or, resuming, an extent an interrupted restore already renamed).
        let dest_exists = existing_file(dest)?.is_some();
        let data_exists = if vmdk {
            existing_file(&data_final)?.is_some()
        } else {
            dest_exists
        };
        let orphan_candidate = vmdk && opts.resume && !opts.force && !dest_exists && data_exists;
        if !opts.force && !orphan_candidate {
            for (p, exists) in [(dest, dest_exists), (data_final.as_path(), data_exists)] {
                if exists {
                    return Err(Error::invalid(format!(
                        "{} already exists; use --force to replace it",
                        p.display()
                    )));
                }
            }
        }
        // An extent to be taken back is checked for locks when taken over.
        let mut in_use = Vec::new();
        let mut lock = |p: &Path| -> Result<NameWas> {
            let Some(f) = lock_existing(p)? else {
                return Ok(None);
            };
            let id = identity(&f).map_err(|e| Error::io(p, None, e))?;
            in_use.push(f);
            Ok(Some(id))
        };
        let dest_was = lock(dest)?;
        let mut data_was = if data_final == dest {
            dest_was
        } else if !orphan_candidate {
            lock(&data_final)?
        } else {
            None
        };
        let len = match opts.kind {
            TargetKind::Raw => size,
            TargetKind::Vmdk { .. } => size.div_ceil(SECTOR) * SECTOR,
        };
        let wanted = MarkRecord {
            kind: if vmdk { MARK_KIND_VMDK } else { MARK_KIND_RAW },
            stage: MarkStage::Writing,
            identity: opts.identity,
            image_size: size,
            data_ino: 0,
        };
        // The first file created: a folder that cannot be written to fails
        // here, before anything else is.
        let mut mark = MarkFile::lock(&mark_path(dest), dest)?;
        let ours = |rec: &Option<MarkRecord>| {
            rec.as_ref().is_some_and(|r| {
                r.kind == wanted.kind
                    && r.identity == wanted.identity
                    && r.image_size == wanted.image_size
            })
        };
        let marked_here = ours(&mark.found);
        if orphan_candidate
            && adopt_orphan_extent(&mark, marked_here, &data_final, &data_tmp)? == Orphan::Replaced
        {
            // A --force commit died after removing the old descriptor: the
            // old extent is still to be replaced by the proven data.
            let id = lock_existing(&data_final)?
                .map(|f| {
                    let id = identity(&f).map_err(|e| Error::io(&data_final, None, e));
                    in_use.push(f);
                    id
                })
                .transpose()?;
            data_was = id;
        }
        let mut partial = None;
        match data_tmp.symlink_metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&data_tmp, None, e)),
            Ok(m) if m.is_dir() => {
                return Err(Error::invalid(format!(
                    "{} is a folder where sdar keeps an interrupted restore's data; remove it",
                    data_tmp.display()
                )))
            }
            Ok(_) if opts.force && !(opts.resume && opts.continue_partial) => {
                discard_partial(&data_tmp)?
            }
            Ok(_) if !opts.resume => {
                return Err(Error::invalid(if marked_here {
                    format!(
                        "an interrupted restore to {} was found ({}); run again with --resume to continue it (blocks already written are read back and checked), or with --force to start over",
                        dest.display(),
                        data_tmp.display()
                    )
                } else {
                    format!(
                        "{} exists, but no interrupted restore of this disk to {} left it; remove it, or use --force to start over",
                        data_tmp.display(),
                        dest.display()
                    )
                }));
            }
            Ok(_) => partial = Some(take_over(&mark, marked_here, &data_tmp, dest)?),
        }
        let resumed = partial.is_some();
        let mut target_partial = partial;
        // Space, before a byte of a new data file exists.
        if opts.space_check {
            let needed = if opts.thin {
                opts.thin_bytes.unwrap_or(0)
            } else {
                len
            };
            let held = target_partial
                .as_ref()
                .and_then(|f: &File| f.metadata().ok())
                .map_or(0, |m| m.blocks() * 512);
            check_space(&data_tmp, needed.saturating_sub(held))?;
        }
        let file = match target_partial.take() {
            Some(f) => f,
            None => {
                let f = create_exclusive(&data_tmp, RESTORED_MODE).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Error::invalid(format!(
                            "{} appeared while this restore started: another program is writing there",
                            data_tmp.display()
                        ))
                    } else {
                        Error::io(&data_tmp, None, e)
                    }
                })?;
                // Kept locked while open: an existing partial is taken over
                // only when no process holds it.
                let _ = locked_by_another(&f);
                f
            }
        };
        let ino = file
            .metadata()
            .map_err(|e| Error::io(&data_tmp, None, e))?
            .ino();
        let mut target = RestoreTarget {
            kind: opts.kind.clone(),
            dest: dest.to_path_buf(),
            data_final,
            data_tmp,
            sync: None,
            file,
            thin: opts.thin,
            len,
            block_size: opts.block_size as u64,
            device: false,
            write_zeros: false,
            zeros: Vec::new(),
            resumed,
            _in_use: in_use,
            dest_was,
            data_was,
            // What an earlier run left is never removed by a run that did not
            // take it over.
            keep: resumed,
            mark: None,
            committed: false,
            wrote: false,
        };
        mark.write(&MarkRecord {
            data_ino: ino,
            ..wanted
        })?;
        mark.remove_on_drop = !resumed;
        target.mark = Some(mark);
        let io = |e: std::io::Error| Error::io(&target.data_tmp, None, explain_room(e, len));
        if len > 0 && !opts.thin {
            match rustix::fs::fallocate(&target.file, rustix::fs::FallocateFlags::empty(), 0, len) {
                Ok(()) => {}
                Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {}
                Err(e) => {
                    let e = std::io::Error::from_raw_os_error(e.raw_os_error());
                    return Err(io(e));
                }
            }
        }
        target.file.set_len(len).map_err(io)?;
        target.sync = Some(
            BackgroundSync::new(&target.file).map_err(|e| Error::io(&target.data_tmp, None, e))?,
        );
        // From here on the caller decides, with `keep_partial`, whether an
        // unfinished restore is worth continuing.
        target.set_keep(false);
        Ok(target)
    }

    fn set_keep(&mut self, keep: bool) {
        self.keep = keep;
        if let Some(mark) = &mut self.mark {
            mark.remove_on_drop = !keep;
        }
    }

    /// The data file being written (under its temporary name), or the device.
    pub fn partial_path(&self) -> &Path {
        &self.data_tmp
    }

    /// The open data file (or device), for a caller that writes it itself
    /// (live recovery).
    pub fn data_file(&self) -> &File {
        &self.file
    }

    /// The data file's final name, or the device.
    pub fn data_path(&self) -> &Path {
        &self.data_final
    }

    /// Where the descriptor (or raw image) goes: the destination, after
    /// following a symbolic link.
    pub fn destination(&self) -> &Path {
        &self.dest
    }

    /// True when the data is written in place on a block device.
    pub fn is_device(&self) -> bool {
        self.device
    }

    /// True when this target took over an interrupted restore's data.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// True once any block was written (or a write was tried): until then a
    /// device holds what it held before.
    pub fn wrote_any(&self) -> bool {
        self.wrote
    }

    /// An interrupted restore's data, to be read back and proven block by
    /// block: `Some` only when resuming.
    pub fn prior(&self) -> Result<Option<PriorImage>> {
        if !self.resumed {
            return Ok(None);
        }
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.data_tmp, None, e))?;
        Ok(Some(PriorImage::new(file, &self.data_tmp)))
    }

    /// Leaves the partial file in place when this target is dropped
    /// uncommitted, so that a later `--resume` can continue: for restores
    /// stopped by the environment (a full disk, an I/O error), not by bad data.
    pub fn keep_partial(&mut self) {
        self.set_keep(true);
    }

    /// Syncs the data, gives it its final name, then writes the descriptor
    /// (for VMDK) through a temporary name too. `spec` is used for VMDK only.
    /// On a device, only syncs.
    ///
    /// The descriptor is written and synced under its temporary name before
    /// the data is renamed, and the mark records the rename first: if the
    /// process dies between the two renames, `--resume` takes the extent
    /// back because the mark names it (`adopt_orphan_extent`).
    ///
    /// A final name is only renamed over while it still is what was checked
    /// at the start: absent (`RENAME_NOREPLACE`) or, with `--force`, the
    /// same file. With `--force` over an existing VMDK, the old descriptor
    /// is removed before the data is renamed, so that the old descriptor is
    /// never beside the new extent.
    pub fn commit(mut self, spec: Option<&DescriptorSpec>) -> Result<()> {
        if let Some(sync) = self.sync.take() {
            sync.finish()
                .map_err(|e| Error::io(&self.data_tmp, None, e))?;
        }
        self.file
            .sync_all()
            .map_err(|e| Error::io(&self.data_tmp, None, e))?;
        if self.device {
            self.committed = true;
            return Ok(());
        }
        let descriptor = match (&self.kind, spec) {
            (TargetKind::Vmdk { .. }, Some(spec)) => {
                let tmp = descriptor_tmp_path(&self.dest);
                // Under the mark's lock the name is this restore's: whatever
                // is there was left by a dead one, or planted. Unlinking a
                // name never writes into the file it named.
                if tmp.symlink_metadata().is_ok() {
                    std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, None, e))?;
                }
                let write = || -> std::io::Result<()> {
                    let f = create_exclusive(&tmp, RESTORED_MODE)?;
                    f.write_all_at(spec.render().as_bytes(), 0)?;
                    f.sync_all()
                };
                if let Err(e) = write() {
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    return Err(Error::io(&tmp, None, e));
                }
                Some(tmp)
            }
            _ => None,
        };
        let remove_tmp = |tmp: &Option<PathBuf>| {
            if let Some(tmp) = tmp {
                let _ = std::fs::remove_file(tmp);
            }
        };
        if descriptor.is_some() {
            let ino = self
                .file
                .metadata()
                .map_err(|e| Error::io(&self.data_tmp, None, e))?
                .ino();
            if let Some(mark) = &mut self.mark {
                let rec = MarkRecord {
                    stage: MarkStage::Renamed,
                    data_ino: ino,
                    ..mark.found.clone().ok_or_else(|| {
                        Error::invalid(format!("{} was not written", mark.path().display()))
                    })?
                };
                if let Err(e) = mark.write(&rec) {
                    remove_tmp(&descriptor);
                    return Err(e);
                }
            }
        }
        // A name that appeared (or changed) while the restore ran is left
        // alone, and so are the proven data and the mark: nothing is lost.
        let appeared = |this: &mut Self, name: &Path, e: std::io::Error| {
            this.set_keep(true);
            Error::invalid(format!(
                "{} appeared while the restore ran ({e}); it was left as it is, and the restored disk is kept in {}: rename that, or run again with --resume (or --force to replace {})",
                name.display(),
                this.data_tmp.display(),
                name.display()
            ))
        };
        // With --force over a VMDK, the old descriptor goes first: a crash
        // then leaves the old extent without a descriptor (which --resume
        // replaces, the mark naming the partial), never the old descriptor
        // beside the new extent, which would look like a usable disk.
        if let (Some(_), Some(was)) = (&descriptor, self.dest_was) {
            if let Err(e) = remove_if_unchanged(&self.dest, was) {
                remove_tmp(&descriptor);
                let dest = self.dest.clone();
                return Err(match e.kind() {
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound => {
                        appeared(&mut self, &dest, e)
                    }
                    _ => Error::io(&dest, None, e),
                });
            }
        }
        if let Err(e) = rename_if_unchanged(&self.data_tmp, &self.data_final, self.data_was) {
            remove_tmp(&descriptor);
            let data_final = self.data_final.clone();
            return Err(match e.kind() {
                std::io::ErrorKind::AlreadyExists => appeared(&mut self, &data_final, e),
                _ => Error::io(&data_final, None, e),
            });
        }
        self.committed = true;
        if let Some(tmp) = descriptor {
            // The old descriptor, if any, is gone: the name must be free.
            if let Err(e) = rename_if_unchanged(&tmp, &self.dest, None) {
                let _ = std::fs::remove_file(&tmp);
                // The extent stays under its final name, with the mark that
                // lets `--resume` take it back: what it replaced is gone, and
                // removing it too would leave nothing.
                if let Some(mark) = &mut self.mark {
                    mark.remove_on_drop = false;
                }
                let what = match e.kind() {
                    std::io::ErrorKind::AlreadyExists => format!(
                        "{} appeared while the restore ran; it was left as it is",
                        self.dest.display()
                    ),
                    _ => e.to_string(),
                };
                return Err(Error::io(
                    &self.dest,
                    None,
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "{what}; the restored extent is {}: rename or remove {} and run again with --resume to write its descriptor",
                            self.data_final.display(),
                            self.dest.display()
                        ),
                    ),
                ));
            }
        }
        if let Some(mut mark) = self.mark.take() {
            mark.remove();
        }
        let dir = folder_of(&self.dest);
        let _ = File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    }
}

impl BlockSink for RestoreTarget {
    fn put(&mut self, _block: u64, offset: u64, data: Option<&[u8]>) -> Result<()> {
        let Some(data) = data else {
            // A new file reads zeros where nothing was written; a device may
            // hold anything there.
            if !self.write_zeros {
                return Ok(());
            }
            if self.block_size == 0 {
                return Err(Error::invalid(
                    "the image's block size was not given: zero blocks cannot be written to the device",
                ));
            }
            let n = self.block_size.min(self.len.saturating_sub(offset)) as usize;
            if self.zeros.len() < n {
                self.zeros = vec![0; n];
            }
            let zeros = std::mem::take(&mut self.zeros);
            let written = self.write_at(&zeros[..n], offset);
            self.zeros = zeros;
            return written;
        };
        // Zeros written over an interrupted restore's leftovers: a thin
        // target gets a hole, as an uninterrupted restore would leave.
        if self.thin && crate::identity::is_zero(data) {
            return match files::punch_hole(&self.file, offset, data.len() as u64) {
                Ok(()) => Ok(()),
                Err(_) => self.write_at(data, offset),
            };
        }
        self.write_at(data, offset)
    }
}

impl RestoreTarget {
    fn write_at(&mut self, data: &[u8], offset: u64) -> Result<()> {
        // Set before the write: a write that fails part-way may have
        // changed bytes.
        self.wrote = true;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io(&self.data_tmp, Some(offset), explain_room(e, self.len)))?;
        if let Some(sync) = &mut self.sync {
            sync.wrote(data.len() as u64);
        }
        Ok(())
    }
}

impl Drop for RestoreTarget {
    fn drop(&mut self) {
        if self.committed || self.keep || self.device {
            return;
        }
        // Only the file this target created (or took over) goes: not
        // whatever another program put at its name since.
        let ours = self.file.metadata().ok().is_some_and(|f| {
            self.data_tmp
                .symlink_metadata()
                .is_ok_and(|m| m.dev() == f.dev() && m.ino() == f.ino())
        });
        if ours {
            let _ = std::fs::remove_file(&self.data_tmp);
        }
        // The mark goes with it (its own drop, `remove_on_drop`).
    }
}

/// `CRM.vmdk` → `CRM-flat.vmdk`, beside it.
pub fn flat_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".vmdk").unwrap_or(&name);
    dest.with_file_name(format!("{stem}-flat.vmdk"))
}

/// The regular file at a final name, if any. A link there is refused (a
/// descriptor's extent name is never followed or replaced), and so is
/// anything but a regular file, and a backup.
fn existing_file(p: &Path) -> Result<Option<std::fs::Metadata>> {
    let meta = match p.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(p, None, e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(Error::invalid(format!(
            "{} is a symbolic link: sdar neither writes the extent through it nor replaces it; remove it or restore elsewhere",
            p.display()
        )));
    }
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{} is not a regular file; sdar does not replace it",
            p.display()
        )));
    }
    if open_nofollow(p, false).is_ok_and(|f| holds_backup(&f)) {
        return Err(Error::invalid(format!(
            "{} is an sdar backup; backups are never overwritten, not even with --force",
            p.display()
        )));
    }
    Ok(Some(meta))
}

/// Locks an existing file about to be replaced, with both kinds of lock a
/// program writing to it may hold: `flock` and POSIX/OFD record locks
/// (QEMU takes the latter on the images a running VM uses). Refuses when
/// another process holds either. `None` when there is no regular file.
fn lock_existing(p: &Path) -> Result<Option<File>> {
    let file = match open_nofollow(p, true) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(p, None, e)),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    if locked_by_another(&file) {
        return Err(Error::invalid(format!(
            "{} is in use: another process holds a lock on it, as a running VM does; power it off or restore elsewhere",
            p.display()
        )));
    }
    Ok(Some(file))
}

/// Opens an existing partial data file for `--resume`, and refuses it
/// unless this restore's mark names it and nothing else holds it.
fn take_over(mark: &MarkFile, marked_here: bool, partial: &Path, dest: &Path) -> Result<File> {
    let refuse = |why: String| {
        Err(Error::invalid(format!(
            "{} cannot be resumed: {why}; remove it, or use --force to start over",
            partial.display()
        )))
    };
    let file = match open_nofollow(partial, true) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return refuse("it is a symbolic link".into())
        }
        Err(e) => return Err(Error::io(partial, None, e)),
    };
    if let Err(why) = owned_single_regular(&file) {
        return refuse(why);
    }
    let meta = file.metadata().map_err(|e| Error::io(partial, None, e))?;
    let named = mark
        .found
        .as_ref()
        .is_some_and(|r| r.data_ino == meta.ino() && meta.dev() == mark.dev());
    if !marked_here || !named {
        return refuse(match &mark.found {
            None => format!(
                "no sdar restore to {} left a mark for it ({} is missing or unreadable)",
                dest.display(),
                mark.path().display()
            ),
            Some(_) if !marked_here => format!(
                "the interrupted restore to {} was of another disk image",
                dest.display()
            ),
            Some(_) => format!(
                "it is not the file the interrupted restore to {} wrote",
                dest.display()
            ),
        });
    }
    if holds_backup(&file) {
        return refuse("it is an sdar backup".into());
    }
    if locked_by_another(&file) {
        return refuse("another process holds a lock on it".into());
    }
    Ok(file)
}

/// With `--force`, a partial file at the data's temporary name is set
/// aside: unlinked (which never writes into a file it may be a link to),
/// unless another process holds it.
fn discard_partial(partial: &Path) -> Result<()> {
    if let Ok(f) = open_nofollow(partial, true) {
        if f.metadata().is_ok_and(|m| m.is_file()) && locked_by_another(&f) {
            return Err(Error::invalid(format!(
                "{} is in use: another process holds a lock on it",
                partial.display()
            )));
        }
    }
    std::fs::remove_file(partial).map_err(|e| Error::io(partial, None, e))
}

/// A restore that died between renaming its extent and its descriptor left
/// a flat extent under its final name and no descriptor, and a mark that
/// names it. `--resume` takes it back as an interrupted restore's data:
/// every block of it is then read back and proven like any other. A flat
/// extent that no mark names (a user's own) is never taken.
fn adopt_orphan_extent(
    mark: &MarkFile,
    marked_here: bool,
    data_final: &Path,
    data_tmp: &Path,
) -> Result<Orphan> {
    let refuse = |why: &str| {
        Err(Error::invalid(format!(
            "{} already exists and {why}; use --force to replace it",
            data_final.display()
        )))
    };
    let is_marked = |p: &Path| match (&mark.found, open_nofollow(p, false)) {
        (Some(r), Ok(f)) if r.stage == MarkStage::Renamed => f
            .metadata()
            .is_ok_and(|m| m.ino() == r.data_ino && m.dev() == mark.dev()),
        _ => false,
    };
    if marked_here && is_marked(data_tmp) {
        // The mark names the partial, not the extent: a --force commit
        // removed the old descriptor and died before renaming the data over
        // the old extent (SPEC.md §19). The partial is resumed.
        return Ok(Orphan::Replaced);
    }
    if !marked_here || !is_marked(data_final) {
        return refuse("no interrupted sdar restore of this disk left it");
    }
    if data_tmp.symlink_metadata().is_ok() {
        return refuse(&format!("{} exists too", data_tmp.display()));
    }
    std::fs::rename(data_final, data_tmp).map_err(|e| Error::io(data_final, None, e))?;
    Ok(Orphan::Adopted)
}

/// What `--resume` found at a VMDK's extent name without its descriptor.
#[derive(Debug, PartialEq, Eq)]
enum Orphan {
    /// The restored extent, renamed back to the partial name.
    Adopted,
    /// An old extent the partial is still to replace.
    Replaced,
}

/// Refuses to start when the filesystem of `data` has less than `needed`
/// bytes free.
fn check_space(data: &Path, needed: u64) -> Result<()> {
    let dir = folder_of(data);
    let available = free_space(&dir)?;
    if needed > available {
        return Err(Error::NoSpace {
            dir,
            needed,
            available,
        });
    }
    Ok(())
}

/// Says what a full filesystem, a quota or a file-size limit means here.
fn explain_room(e: std::io::Error, len: u64) -> std::io::Error {
    const ENOSPC: i32 = rustix::io::Errno::NOSPC.raw_os_error();
    const EDQUOT: i32 = rustix::io::Errno::DQUOT.raw_os_error();
    const EFBIG: i32 = rustix::io::Errno::FBIG.raw_os_error();
    match e.raw_os_error() {
        Some(ENOSPC | EDQUOT | EFBIG) => std::io::Error::new(
            e.kind(),
            format!("{e}: there is no room here for the restored disk ({len} bytes)"),
        ),
        _ => e,
    }
}

/// Bytes free for unprivileged use on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(dir).map_err(|e| {
        Error::io(
            dir,
            None,
            std::io::Error::from_raw_os_error(e.raw_os_error()),
        )
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The folder a path is in (`.` for a bare name).
pub fn folder_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Where a restore to `dest` keeps its data until it is proven: an
/// interrupted restore left this file when it exists.
pub fn partial_data_path(dest: &Path, kind: &TargetKind) -> PathBuf {
    partial_path(&data_path(dest, kind))
}

/// The data file's final name for a restore to `dest`: the raw image
/// itself, or the VMDK's flat extent beside its descriptor.
pub fn data_path(dest: &Path, kind: &TargetKind) -> PathBuf {
    match kind {
        TargetKind::Raw => dest.to_path_buf(),
        TargetKind::Vmdk { .. } => flat_path(dest),
    }
}

/// `.NAME.sdar-partial`, beside it: hidden, and never mistaken for a disk.
fn partial_path(p: &Path) -> PathBuf {
    hidden_beside(p, "sdar-partial")
}

/// `.NAME.sdar-restore`: the restore mark of a restore to `dest` (SPEC.md
/// §19.1), whatever its kind, so that two restores to one name exclude
/// each other.
pub fn mark_path(dest: &Path) -> PathBuf {
    hidden_beside(dest, "sdar-restore")
}

/// `.NAME.sdar-live`: the live recovery state of `dest` (SPEC.md §20.2).
pub fn live_state_path(dest: &Path) -> PathBuf {
    hidden_beside(dest, "sdar-live")
}

/// `.NAME.sdar-live-new`: the live recovery state of `dest` before its
/// rename.
pub fn live_state_tmp_path(dest: &Path) -> PathBuf {
    hidden_beside(dest, "sdar-live-new")
}

/// `.NAME.vmdk.sdar-descriptor`: the descriptor before its rename; never
/// the name of a raw restore's data.
fn descriptor_tmp_path(dest: &Path) -> PathBuf {
    hidden_beside(dest, "sdar-descriptor")
}

/// `.NAME.WHAT` beside `p`, or `.sdar-HASH.WHAT` when that would be longer
/// than the folder's filesystem takes (a legal name of 232 to 255 bytes).
fn hidden_beside(p: &Path, what: &str) -> PathBuf {
    let max = name_max(&folder_of(p));
    let mut name = hidden_prefix(p.file_name().unwrap_or_default(), what.len(), max);
    name.push(what);
    p.with_file_name(name)
}

/// True when `p` is a full image or a delta archive (by its bytes, not its
/// name). A link is not followed.
pub fn is_backup(p: &Path) -> bool {
    open_nofollow(p, false)
        .is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file()) && holds_backup(&f))
}
