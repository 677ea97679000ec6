//! The restore destination: a VMDK (descriptor + flat extent) or a raw
//! image, written so that nothing that looks like a usable disk exists
//! until every block is proven (SPEC.md §19 "No false disks").
//!
//! The flat extent is written under a temporary name, preallocated,
//! locked against a second restore, synced, and renamed; the descriptor is
//! written last. Dropping an uncommitted target removes what it created.

use crate::background_sync::BackgroundSync;
use crate::error::{Error, Result};
use crate::restore::BlockSink;
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

/// A destination being written.
#[derive(Debug)]
pub struct RestoreTarget {
    kind: TargetKind,
    dest: PathBuf,
    data_final: PathBuf,
    data_tmp: PathBuf,
    file: File,
    sync: Option<BackgroundSync>,
    committed: bool,
}

impl RestoreTarget {
    /// Prepares `dest` for an image of `size` bytes: refuses existing files
    /// unless `force`, takes the lock, and preallocates the data file.
    pub fn create(dest: &Path, kind: TargetKind, size: u64, force: bool) -> Result<Self> {
        let data_final = match kind {
            TargetKind::Raw => dest.to_path_buf(),
            TargetKind::Vmdk { .. } => flat_path(dest),
        };
        if !force {
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
        let data_tmp = partial_path(&data_final);
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
        let target = RestoreTarget {
            kind,
            dest: dest.to_path_buf(),
            data_final,
            data_tmp,
            sync: None,
            file,
            committed: false,
        };
        let len = match target.kind {
            TargetKind::Raw => size,
            TargetKind::Vmdk { .. } => size.div_ceil(SECTOR) * SECTOR,
        };
        let io = |e: std::io::Error| Error::io(&target.data_tmp, None, e);
        target.file.set_len(0).map_err(io)?;
        if len > 0 {
            match rustix::fs::fallocate(&target.file, rustix::fs::FallocateFlags::empty(), 0, len) {
                Ok(()) => {}
                Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => {
                    target.file.set_len(len).map_err(io)?;
                }
                Err(e) => {
                    return Err(Error::io(
                        &target.data_tmp,
                        None,
                        std::io::Error::from_raw_os_error(e.raw_os_error()),
                    ))
                }
            }
        }
        target.file.set_len(len).map_err(io)?;
        let mut target = target;
        target.sync = Some(
            BackgroundSync::new(&target.file).map_err(|e| Error::io(&target.data_tmp, None, e))?,
        );
        Ok(target)
    }

    /// The data file being written (under its temporary name).
    pub fn partial_path(&self) -> &Path {
        &self.data_tmp
    }

    /// The data file's final name.
    pub fn data_path(&self) -> &Path {
        &self.data_final
    }

    /// Syncs the data, gives it its final name, then writes the descriptor
    /// (for VMDK) through a temporary name too. `spec` is used for VMDK only.
    pub fn commit(mut self, spec: Option<&DescriptorSpec>) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(&self.data_tmp, None, e))?;
        std::fs::rename(&self.data_tmp, &self.data_final)
            .map_err(|e| Error::io(&self.data_final, None, e))?;
        self.committed = true;
        if let (TargetKind::Vmdk { .. }, Some(spec)) = (&self.kind, spec) {
            let tmp = partial_path(&self.dest);
            let write = || -> std::io::Result<()> {
                let f = File::create(&tmp)?;
                f.write_all_at(spec.render().as_bytes(), 0)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &self.dest)
            };
            if let Err(e) = write() {
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
        if let Some(data) = data {
            self.file
                .write_all_at(data, offset)
                .map_err(|e| Error::io(&self.data_tmp, Some(offset), e))?;
            if let Some(sync) = &mut self.sync {
                sync.wrote(data.len() as u64);
            }
        }
        Ok(())
    }
}

impl Drop for RestoreTarget {
    fn drop(&mut self) {
        if !self.committed {
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
fn is_backup(p: &Path) -> bool {
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
