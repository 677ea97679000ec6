//! The restore destination: a VMDK (descriptor + flat extent) or a raw
//! image, written so that nothing that looks like a usable disk exists
//! until every block is proven (SPEC.md §19 "No false disks").
//!
//! The flat extent is written under a temporary name, preallocated,
//! locked against a second restore, synced, and renamed; the descriptor is
//! written last. Dropping an uncommitted target removes what it created.

use crate::background_sync::BackgroundSync;
use crate::error::{Error, Result};
use crate::restore::{BlockSink, PriorImage};
use crate::vmdk::{DescriptorSpec, SECTOR};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `DEST.vmdk` descriptor and `DEST-flat.vmdk` extent.
    Vmdk { vmfs: bool },
    /// One raw image file at `DEST`.
    Raw,
}

/// How to write the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOptions {
    pub kind: TargetKind,
    /// Replace existing files (never backups), and start an interrupted
    /// restore over.
    pub force: bool,
    /// Continue an interrupted restore to the same destination. Without one,
    /// start from the beginning.
    pub resume: bool,
    /// A sparse data file: nothing preallocated, zero blocks left as holes.
    pub thin: bool,
    /// Refuse to start when the filesystem has less free space than needed.
    pub space_check: bool,
    /// For a thin target: the bytes it will allocate (its non-zero blocks),
    /// when known.
    pub thin_bytes: Option<u64>,
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
        }
    }
}

/// A destination being written.
#[derive(Debug)]
pub struct RestoreTarget {
    kind: TargetKind,
    dest: PathBuf,
    data_final: PathBuf,
    data_tmp: PathBuf,
    file: File,
    sync: Option<BackgroundSync>,
    thin: bool,
    /// The data file's length.
    len: u64,
    /// The data file held an interrupted restore's blocks when opened.
    resumed: bool,
    /// Leave the partial file in place when dropped uncommitted.
    keep: bool,
    /// Locks on the files being replaced, held until they are.
    _in_use: Vec<File>,
    committed: bool,
}

impl RestoreTarget {
    /// Prepares `dest` for an image of `size` bytes: refuses existing files
    /// unless `force`, takes the lock, finds or starts the partial data
    /// file, checks free space, and preallocates (unless thin).
    pub fn create(dest: &Path, size: u64, opts: &TargetOptions) -> Result<Self> {
        let data_final = match opts.kind {
            TargetKind::Raw => dest.to_path_buf(),
            TargetKind::Vmdk { .. } => flat_path(dest),
        };
        if opts.resume && !opts.force {
            adopt_orphan_extent(dest, &data_final, &opts.kind)?;
        }
        if !opts.force {
            for p in [dest, data_final.as_path()] {
                if p.symlink_metadata().is_ok() {
                    return Err(Error::invalid(format!(
                        "{} already exists; use --force to replace it",
                        p.display()
                    )));
                }
            }
        }
        for p in [dest, data_final.as_path()] {
            if is_backup(p) {
                return Err(Error::invalid(format!(
                    "{} is an sdar backup; backups are never overwritten, not even with --force",
                    p.display()
                )));
            }
        }
        // A raw target is one file under both names: lock it once.
        let mut replaced = vec![dest];
        if data_final != dest {
            replaced.push(data_final.as_path());
        }
        let in_use = replaced
            .into_iter()
            .filter_map(|p| lock_existing(p).transpose())
            .collect::<Result<Vec<File>>>()?;
        let data_tmp = partial_path(&data_final);
        let existed = data_tmp.symlink_metadata().is_ok();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_tmp)
            .map_err(|e| Error::io(&data_tmp, None, e))?;
        // The lock lives as long as the file is open: a second restore to the
        // same destination finds it taken and stops before touching anything.
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(Error::invalid(format!(
                "another restore to {} is running (its partial file {} is locked)",
                dest.display(),
                data_tmp.display()
            )));
        }
        let resumed = existed && opts.resume && !opts.force;
        let mut target = RestoreTarget {
            kind: opts.kind.clone(),
            dest: dest.to_path_buf(),
            data_final,
            data_tmp,
            sync: None,
            file,
            thin: opts.thin,
            len: 0,
            resumed,
            _in_use: in_use,
            // What an earlier run left is never removed by a run that did not
            // take it over.
            keep: existed && !opts.force,
            committed: false,
        };
        if existed && !opts.resume && !opts.force {
            return Err(Error::invalid(format!(
                "an interrupted restore to {} was found ({}); run again with --resume to continue it (blocks already written are read back and checked), or with --force to start over",
                dest.display(),
                target.data_tmp.display()
            )));
        }
        let len = match target.kind {
            TargetKind::Raw => size,
            TargetKind::Vmdk { .. } => size.div_ceil(SECTOR) * SECTOR,
        };
        target.len = len;
        if opts.space_check {
            let needed = if opts.thin {
                opts.thin_bytes.unwrap_or(0)
            } else {
                len
            };
            target.check_space(needed)?;
        }
        let io = |e: std::io::Error| Error::io(&target.data_tmp, None, explain_room(e, len));
        if !resumed {
            target.file.set_len(0).map_err(io)?;
        }
        if len > 0 && !opts.thin {
            match rustix::fs::fallocate(&target.file, rustix::fs::FallocateFlags::empty(), 0, len) {
                Ok(()) => {}
                Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {}
                Err(e) => {
                    let e = std::io::Error::from_raw_os_error(e.raw_os_error());
                    return Err(Error::io(&target.data_tmp, None, explain_room(e, len)));
                }
            }
        }
        target.file.set_len(len).map_err(io)?;
        target.sync = Some(
            BackgroundSync::new(&target.file).map_err(|e| Error::io(&target.data_tmp, None, e))?,
        );
        // From here on the caller decides, with `keep_partial`, whether an
        // unfinished restore is worth continuing.
        target.keep = false;
        Ok(target)
    }

    /// Refuses to start when the data file's filesystem has less free space
    /// than `needed` bytes beyond what the partial file already holds.
    fn check_space(&self, needed: u64) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = folder_of(&self.data_tmp);
        let held = self.file.metadata().map_or(0, |m| m.blocks() * 512);
        let available = free_space(&dir)?;
        let needed = needed.saturating_sub(held);
        if needed > available {
            return Err(Error::NoSpace {
                dir,
                needed,
                available,
            });
        }
        Ok(())
    }

    /// The data file being written (under its temporary name).
    pub fn partial_path(&self) -> &Path {
        &self.data_tmp
    }

    /// The data file's final name.
    pub fn data_path(&self) -> &Path {
        &self.data_final
    }

    /// True when this target took over an interrupted restore's data.
    pub fn resumed(&self) -> bool {
        self.resumed
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
        self.keep = true;
    }

    /// Syncs the data, gives it its final name, then writes the descriptor
    /// (for VMDK) through a temporary name too. `spec` is used for VMDK only.
    ///
    /// The descriptor is written and synced under its temporary name before
    /// the data is renamed, so that the two renames follow each other at
    /// once; if the process dies between them, the extent is left without
    /// a descriptor, and `--resume` takes it back (`adopt_orphan_extent`).
    pub fn commit(mut self, spec: Option<&DescriptorSpec>) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(&self.data_tmp, None, e))?;
        let descriptor = match (&self.kind, spec) {
            (TargetKind::Vmdk { .. }, Some(spec)) => {
                let tmp = partial_path(&self.dest);
                let write = || -> std::io::Result<()> {
                    let f = File::create(&tmp)?;
                    f.write_all_at(spec.render().as_bytes(), 0)?;
                    f.sync_all()
                };
                if let Err(e) = write() {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Error::io(&tmp, None, e));
                }
                Some(tmp)
            }
            _ => None,
        };
        if let Err(e) = std::fs::rename(&self.data_tmp, &self.data_final) {
            if let Some(tmp) = &descriptor {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(Error::io(&self.data_final, None, e));
        }
        self.committed = true;
        if let Some(tmp) = descriptor {
            if let Err(e) = std::fs::rename(&tmp, &self.dest) {
                let _ = std::fs::remove_file(&tmp);
                let _ = std::fs::remove_file(&self.data_final);
                return Err(Error::io(&self.dest, None, e));
            }
        }
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl BlockSink for RestoreTarget {
    fn put(&mut self, _block: u64, offset: u64, data: Option<&[u8]>) -> Result<()> {
        let Some(data) = data else { return Ok(()) };
        // Zeros written over an interrupted restore's leftovers: a thin
        // target gets a hole, as an uninterrupted restore would leave.
        if self.thin && crate::identity::is_zero(data) {
            return match rustix::fs::fallocate(
                &self.file,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                offset,
                data.len() as u64,
            ) {
                Ok(()) => Ok(()),
                Err(_) => self.write_at(data, offset),
            };
        }
        self.write_at(data, offset)
    }
}

impl RestoreTarget {
    fn write_at(&mut self, data: &[u8], offset: u64) -> Result<()> {
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
        if !self.committed && !self.keep {
            let _ = std::fs::remove_file(&self.data_tmp);
        }
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

/// Locks an existing file about to be replaced, with both kinds of lock a
/// program writing to it may hold: `flock` and POSIX/OFD record locks
/// (QEMU takes the latter on the images a running VM uses). Refuses when
/// another process holds either. `None` when there is no regular file.
fn lock_existing(p: &Path) -> Result<Option<File>> {
    use rustix::fs::FlockOperation::NonBlockingLockExclusive;
    if !p.symlink_metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|e| Error::io(p, None, e))?;
    if rustix::fs::flock(&file, NonBlockingLockExclusive).is_err()
        || rustix::fs::fcntl_lock(&file, NonBlockingLockExclusive).is_err()
    {
        return Err(Error::invalid(format!(
            "{} is in use: another process holds a lock on it, as a running VM does; power it off or restore elsewhere",
            p.display()
        )));
    }
    Ok(Some(file))
}

/// A restore that died between renaming its extent and its descriptor left
/// a flat extent under its final name and no descriptor. A resume takes it
/// back as an interrupted restore's data: every block of it is then read
/// back and proven like any other, so nothing is trusted by its name.
fn adopt_orphan_extent(dest: &Path, data_final: &Path, kind: &TargetKind) -> Result<()> {
    let orphan = matches!(kind, TargetKind::Vmdk { .. })
        && dest.symlink_metadata().is_err()
        && data_final.symlink_metadata().is_ok_and(|m| m.is_file())
        && partial_path(data_final).symlink_metadata().is_err()
        && !is_backup(data_final);
    if orphan {
        std::fs::rename(data_final, partial_path(data_final))
            .map_err(|e| Error::io(data_final, None, e))?;
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
    match kind {
        TargetKind::Raw => partial_path(dest),
        TargetKind::Vmdk { .. } => partial_path(&flat_path(dest)),
    }
}

/// `.NAME.sdar-partial`, beside it: hidden, and never mistaken for a disk.
fn partial_path(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.sdar-partial"))
}

/// True when `p` is a full image or a delta archive (by its bytes, not its
/// name).
pub fn is_backup(p: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(p) else {
        return false;
    };
    let mut head = [0u8; crate::layout::GZIP_RECORD_HEAD_LEN];
    if f.read_exact(&mut head).is_ok() && crate::codec::Codec::sniff(&head).is_some() {
        return true;
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-(crate::layout::TRAILER_LEN as i64)))
        .is_ok()
        && f.read_exact(&mut tail).is_ok()
        && tail == crate::layout::TRAILER_MAGIC
}
