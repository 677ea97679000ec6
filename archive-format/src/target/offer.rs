//! A VMDK destination chosen at a prompt, for both menus (the archive's own
//! and `sdar menu`): the name offered from the backup's disk name, and what
//! a typed answer comes to. The menus word their messages; the rules are
//! here once.

use super::{flat_path, folder_of, partial_data_path, TargetKind};
use crate::display::safe_file_name;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The name offered for the restored disk: the backup's disk name made a
/// safe file name (it comes from the backup: no control character, escape
/// sequence, bidirectional override, `/` or leading `.` may reach the prompt
/// or the file system through it), with room left for `-restored-N-flat`.
pub fn suggested_disk_name(disk_name: Option<&str>) -> String {
    const MAX_STEM_BYTES: usize = 200;
    disk_name
        .and_then(|n| Path::new(n).file_name())
        .map(|n| safe_file_name(&n.to_string_lossy(), MAX_STEM_BYTES))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "restored.vmdk".into())
}

/// `dir/NAME.vmdk`, or the first of `NAME-restored`, `NAME-restored-2`,
/// ... whose descriptor and extent are both free.
pub fn free_vmdk_name(dir: &Path, disk_name: &str) -> PathBuf {
    let stem = disk_name.strip_suffix(".vmdk").unwrap_or(disk_name);
    let free = |p: &Path| p.symlink_metadata().is_err() && flat_path(p).symlink_metadata().is_err();
    (0..)
        .map(|i| match i {
            0 => dir.join(format!("{stem}.vmdk")),
            1 => dir.join(format!("{stem}-restored.vmdk")),
            i => dir.join(format!("{stem}-restored-{i}.vmdk")),
        })
        .find(|p| free(p))
        .expect("some name is free")
}

/// What a typed destination comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypedDestination {
    /// A new VMDK at `to`; `partial_bytes` when an interrupted restore to it
    /// left data there (to resume, or start over).
    Ready {
        to: PathBuf,
        partial_bytes: Option<u64>,
    },
    /// The answer names a file, a link or a device: never written, and not
    /// turned into `NAME.vmdk` beside it either (`/dev/sdb` would become a
    /// file `/dev/sdb.vmdk` in the device folder).
    NotAFolder(PathBuf),
    /// `taken` (the descriptor or its extent) exists; `free` is a name in
    /// the same folder that does not.
    Taken { taken: PathBuf, free: PathBuf },
    /// The folder it would go in does not exist.
    NoFolder(PathBuf),
}

/// `answer` as a VMDK destination for a disk offered as `disk_name`: a
/// folder gets the disk name, a name without `.vmdk` gets it. `here` is the
/// current folder, for the free name offered when a relative one is taken.
pub fn typed_destination(answer: &Path, disk_name: &str, here: &Path) -> TypedDestination {
    let is_dir = answer.is_dir();
    let mut to = if is_dir {
        answer.join(disk_name)
    } else {
        answer.to_path_buf()
    };
    if to.extension().and_then(|e| e.to_str()) != Some("vmdk") {
        let mut name = to.file_name().unwrap_or_default().to_os_string();
        name.push(".vmdk");
        to.set_file_name(name);
    }
    if !is_dir && to != answer && answer.symlink_metadata().is_ok() {
        return TypedDestination::NotAFolder(answer.to_path_buf());
    }
    let taken = [to.clone(), flat_path(&to)]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok());
    if let Some(taken) = taken {
        let dir = match folder_of(&to) {
            d if d == Path::new(".") => here.to_path_buf(),
            d => here.join(d),
        };
        let free = free_vmdk_name(&dir, disk_name);
        return TypedDestination::Taken { taken, free };
    }
    if !folder_of(&to).is_dir() {
        return TypedDestination::NoFolder(folder_of(&to));
    }
    let partial = partial_data_path(&to, &TargetKind::Vmdk { vmfs: false });
    let partial_bytes = partial.metadata().ok().map(|m| m.blocks() * 512);
    TypedDestination::Ready { to, partial_bytes }
}
