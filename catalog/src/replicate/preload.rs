//! `--preload`: a commented-out `RESTORE:` line for every disk in the
//! catalog that the config does not name yet, restoring to
//! `RESTORE_PATH/VM_NAME/DISK.vmdk`, as esXpress's option F did. The admin
//! removes the `#` of the disks to replicate.

use super::config::{same_uuid, Config, RestoreLine, Slot, SlotRule, UuidRule};
use crate::{Backup, Error, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What `--preload` appends, and the disks it could not write a line for
/// (with why; their names are shown escaped).
#[derive(Clone, Debug, Default)]
pub struct Preload {
    /// The lines, each ended by `\n`; empty when every disk is named.
    pub lines: Vec<String>,
    /// Messages, their names escaped already.
    pub skipped: Vec<String>,
}

/// A disk as replication names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Disk {
    vm: String,
    uuid: Option<String>,
    slot: Option<Slot>,
    name: String,
}

fn covers(line: &RestoreLine, disk: &Disk) -> bool {
    let vm = match &line.uuid {
        UuidRule::Exact(u) => {
            line.vm == disk.vm && disk.uuid.as_deref().is_some_and(|d| same_uuid(d, u))
        }
        UuidRule::AnyUuid => line.vm == disk.vm,
        UuidRule::AnyVm => true,
    };
    let slot = match &line.slot {
        SlotRule::Any => true,
        SlotRule::Exact(s) => disk.slot.as_ref() == Some(s),
    };
    let name = super::config::same_disk(&line.disk, &disk.name);
    vm && slot && name
}

/// A name that can stand in a `RESTORE:` field and as a file name: not
/// empty, no `|`, `/`, control character, surrounding space, `.` or `..`.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.trim() == name
        && !name.starts_with('#')
        && !name.contains(['|', '/'])
        && !name.chars().any(char::is_control)
}

/// The lines `--preload` appends to `config` for the deltas `backups`.
pub fn preload(config: &Config, backups: &[Backup]) -> Result<Preload> {
    let Some(folder) = &config.restore_path else {
        return Err(Error::Usage(format!(
            "{}: --preload suggests restoring each disk to RESTORE_PATH/VM_NAME/DISK.vmdk: \
             add a line RESTORE_PATH=/folder/for/replicas to the config",
            super::shown(&config.path)
        )));
    };
    let mut disks: Vec<Disk> = backups
        .iter()
        .filter(|b| b.kind == crate::Kind::Delta)
        .map(|b| Disk {
            vm: b.vm_name.clone().unwrap_or_default(),
            uuid: b.vm_uuid.clone(),
            slot: b.scsi_id.as_deref().and_then(Slot::parse),
            name: b.disk_name.clone().unwrap_or_default(),
        })
        .collect();
    disks.sort();
    disks.dedup();
    let mut out = Preload::default();
    for disk in disks {
        let named = config
            .lines
            .iter()
            .chain(&config.commented)
            .any(|l| covers(l, &disk));
        if named {
            continue;
        }
        let uuid_ok = disk.uuid.as_deref().is_none_or(|u| {
            !u.contains('|') && !u.chars().any(char::is_control) && !u.trim().is_empty()
        });
        if !plain(&disk.vm) || !plain(&disk.name) || !uuid_ok {
            out.skipped.push(format!(
                "VM \"{}\" disk \"{}\": the name cannot be written in a RESTORE: line or as a \
                 file name; write its line by hand",
                archive_format::display::escape(&disk.vm),
                archive_format::display::escape(&disk.name)
            ));
            continue;
        }
        let file = super::matching::vmdk_name(&disk.name);
        let dest = folder.join(&disk.vm).join(file);
        out.lines.push(format!(
            "#RESTORE:{}|{}|{}|{}|{}|\n",
            disk.vm,
            disk.uuid.as_deref().map_or("*", str::trim),
            disk.slot
                .as_ref()
                .map_or_else(|| "*".into(), Slot::esxpress),
            disk.name,
            dest.display()
        ));
    }
    Ok(out)
}

/// Appends `text` to the config at `path` in one write on an `O_APPEND`
/// descriptor (a link to the config is followed, not replaced), with a line
/// end first when the file does not end with one.
pub fn append(path: &Path, text: &str, config: &Config) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let what = "cannot append to the config";
    let file = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, what, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "{}: the config must be a regular file",
            super::shown(path)
        )));
    }
    // The file read, not another put in its place (a link changed) since.
    if config.file.is_some_and(|f| f != (meta.dev(), meta.ino())) {
        return Err(Error::Usage(format!(
            "{}: the config was replaced while sdar read it (a link changed?); nothing was \
             appended: run --preload again",
            super::shown(path)
        )));
    }
    let text = if config.unterminated {
        format!("\n{text}")
    } else {
        text.to_string()
    };
    (&file)
        .write_all(text.as_bytes())
        .map_err(|e| Error::io(path, what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config read through a link, the link then pointed elsewhere:
    /// nothing is appended to the other file.
    #[test]
    fn appends_only_to_the_file_read() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        std::fs::write(&one, "RESTORE_PATH=/r\n").unwrap();
        std::fs::write(&two, "precious\n").unwrap();
        let link = dir.path().join("vmdks.auto");
        std::os::unix::fs::symlink(&one, &link).unwrap();
        let config = Config::read(&link).unwrap();
        append(&link, "#x\n", &config).unwrap();
        assert_eq!(
            std::fs::read_to_string(&one).unwrap(),
            "RESTORE_PATH=/r\n#x\n"
        );
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&two, &link).unwrap();
        assert!(append(&link, "#y\n", &config).unwrap_err().is_usage());
        assert_eq!(std::fs::read_to_string(&two).unwrap(), "precious\n");
    }
}
