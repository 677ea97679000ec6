//! The .vmx a restore writes beside the disk: its path and bytes worked out
//! (and refused if they cannot be) before the disk is written.

use crate::display::{escape, safe_file_name};
use crate::error::{Error, Result};
use crate::meta::Metadata;
use std::path::{Path, PathBuf};

/// The .vmx a restore will write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmxPlan {
    pub path: PathBuf,
    bytes: Vec<u8>,
    replace: bool,
    /// What was changed in it, for the user (empty, or ` (…)`).
    pub note: String,
}

/// A .vmx written: where, and what was changed in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenVmx {
    pub path: PathBuf,
    pub note: String,
}

impl VmxPlan {
    /// The backup's .vmx into `dir` as `<VM name>.vmx`. With `rename`, the
    /// entry naming the original disk is pointed at that restored
    /// descriptor. With `replace`, an existing regular file of that name is
    /// replaced (never a link or anything else).
    pub fn new(meta: &Metadata, dir: &Path, rename: Option<&Path>, replace: bool) -> Result<Self> {
        let vmx = meta.vmx.as_deref().ok_or_else(|| Error::NotFound {
            what: "this backup carries no .vmx file".into(),
        })?;
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "{} is not a folder to write the .vmx into",
                dir.display()
            )));
        }
        let path = dir.join(vmx_file_name(meta, rename));
        // Refused now, not after the disk is written: an existing name
        // without `replace`, and a link or anything but a regular file even
        // with it (never written through, never replaced).
        match path.symlink_metadata() {
            Ok(_) if !replace => {
                return Err(Error::invalid(format!(
                    "{} already exists; use --force to replace it",
                    path.display()
                )))
            }
            Ok(m) if m.file_type().is_symlink() || !m.is_file() => {
                return Err(Error::invalid(format!(
                    "{} is {}: sdar neither writes the .vmx through it nor replaces it; remove it or choose another folder",
                    path.display(),
                    if m.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "not a regular file"
                    }
                )))
            }
            _ => {}
        }
        let mut note = String::new();
        let bytes = match rename {
            None => vmx.to_vec(),
            Some(disk) => {
                let old = meta.disk_name.as_deref().ok_or_else(|| Error::NotFound {
                    what: "this backup does not record its disk's file name, so --rename-disk cannot find the entry to change".into(),
                })?;
                let new = vmx_disk_reference(dir, disk);
                let (bytes, n) = crate::vmx::rename_disk(vmx, old, meta.scsi_id.as_deref(), &new)
                    .map_err(|why| {
                    Error::invalid(format!("cannot name {new} in the .vmx: {why}"))
                })?;
                let (old, new) = (escape(old), escape(&new));
                note = match n {
                    0 => format!(" (no entry named {old} was found: the .vmx is unchanged)"),
                    1 => format!(" (its disk entry now names {new})"),
                    n => format!(" ({n} disk entries now name {new})"),
                };
                bytes
            }
        };
        Ok(VmxPlan {
            path,
            bytes,
            replace,
            note,
        })
    }

    /// Writes the file: a new name with `O_CREAT | O_EXCL | O_NOFOLLOW`, a
    /// replaced one through a temporary file renamed over it.
    pub fn write(self) -> Result<WrittenVmx> {
        crate::target::write_file_replacing(&self.path, &self.bytes, self.replace)?;
        Ok(WrittenVmx {
            path: self.path,
            note: self.note,
        })
    }
}

/// `<VM name>.vmx`, from the backup's metadata, made safe as a file name;
/// else named after the disk.
pub fn vmx_file_name(meta: &Metadata, disk: Option<&Path>) -> String {
    // File names stop at 255 bytes; a VM name may be longer.
    let stem = meta
        .vm_name
        .as_deref()
        // A name that starts hidden or climbing (`../`) is not offered at all.
        .filter(|n| !n.starts_with('.'))
        .map(|n| safe_file_name(n, 200))
        .filter(|n| !n.is_empty())
        .or_else(|| {
            disk.and_then(|d| d.file_stem())
                .map(|s| safe_file_name(&s.to_string_lossy(), 200))
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "restored".into());
    format!("{stem}.vmx")
}

/// How a .vmx in `dir` names `disk`: by file name when they share a folder,
/// by absolute path otherwise.
fn vmx_disk_reference(dir: &Path, disk: &Path) -> String {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let disk_dir = match disk.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = disk.file_name().unwrap_or_default();
    if canon(&disk_dir) == canon(dir) {
        name.to_string_lossy().into_owned()
    } else {
        canon(&disk_dir).join(name).display().to_string()
    }
}
