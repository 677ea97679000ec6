//! Which backup a `RESTORE:` line means: the newest delta of the disk it
//! names (at least USE_DAYS old), and a full for it found by identity, as
//! `Catalog::select` finds one. A line that matches nothing, or more than
//! one disk, is a [`Miss`]: reported, never guessed.

use super::config::{same_disk, same_uuid, RestoreLine, Slot, UuidRule};
use crate::{Backup, Catalog, Choice, Filter, Kind, Result};
use std::path::PathBuf;

/// Why a line chose no backup: a sentence naming what it looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miss(pub String);

/// What a line restores, and where.
#[derive(Clone, Debug)]
pub struct Planned {
    pub choice: Choice,
    /// The destination: the line's path, or in a folder line the disk's
    /// own name in that folder.
    pub dest: PathBuf,
    /// Restored as a raw image (`--raw`), not a VMDK.
    pub raw: bool,
}

impl Catalog {
    /// The backup `line` means, made at least `days` days before `now`.
    pub fn match_line(
        &self,
        line: &RestoreLine,
        days: u32,
        now: i64,
    ) -> Result<std::result::Result<Planned, Miss>> {
        let filter = Filter {
            vm: match line.uuid {
                UuidRule::AnyVm => None,
                _ => Some(line.vm.clone()),
            },
            kind: Some(Kind::Delta),
            ..Filter::default()
        };
        let mut deltas: Vec<Backup> = self
            .backups(&filter)?
            .into_iter()
            .filter(|d| match &line.uuid {
                UuidRule::Exact(u) => d.vm_uuid.as_deref().is_some_and(|v| same_uuid(v, u)),
                UuidRule::AnyUuid | UuidRule::AnyVm => true,
            })
            .filter(|d| {
                d.disk_name
                    .as_deref()
                    .is_some_and(|n| same_disk(&line.disk, n))
            })
            .filter(|d| line.slot.matches(d.scsi_id.as_deref()))
            .collect();
        let what = describe(line);
        if deltas.is_empty() {
            return Ok(Err(Miss(format!(
                "no delta archive of {what} in the catalog"
            ))));
        }
        // One disk: one VM (name and UUID), one slot, one disk name.
        let mut disks: Vec<(String, String, String, String)> = deltas
            .iter()
            .map(|d| {
                (
                    d.vm_text().to_string(),
                    d.vm_uuid.clone().unwrap_or_else(|| "-".into()),
                    d.scsi_id
                        .as_deref()
                        .and_then(Slot::parse)
                        .map_or_else(|| "-".into(), |s| s.esxpress()),
                    d.disk_name.clone().unwrap_or_else(|| "-".into()),
                )
            })
            .collect();
        disks.sort_unstable();
        disks.dedup();
        if disks.len() > 1 {
            let list = disks
                .iter()
                .map(|(vm, uuid, slot, disk)| {
                    format!(
                        "\n    RESTORE:{}|{}|{}|{}|...",
                        esc(vm),
                        esc(uuid),
                        esc(slot),
                        esc(disk)
                    )
                })
                .collect::<String>();
            return Ok(Err(Miss(format!(
                "{what} matches {} disks; name one (exact UUID, SCSI id):{list}",
                disks.len()
            ))));
        }
        // USE_DAYS 0 is the newest backup, whatever the clocks say: one
        // made on a host whose clock runs ahead is newer than `now`.
        if days > 0 {
            let cutoff = now.saturating_sub(i64::from(days).saturating_mul(86_400));
            deltas.retain(|d| d.created.unwrap_or(0) <= cutoff);
        }
        let Some(newest) = deltas.iter().map(|d| d.created.unwrap_or(0)).max() else {
            return Ok(Err(Miss(format!(
                "no delta archive of {what} at least {days} days old in the catalog"
            ))));
        };
        deltas.retain(|d| d.created.unwrap_or(0) == newest);
        let mut ids: Vec<_> = deltas.iter().map(|d| d.identity).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > 1 {
            let list = deltas
                .iter()
                .map(|d| format!("\n    {}", esc(&d.path.display().to_string())))
                .collect::<String>();
            return Ok(Err(Miss(format!(
                "{} different backups of {what} were made at {}:{list}",
                ids.len(),
                crate::time::show(newest)
            ))));
        }
        // Copies of one backup in several targets: the first whose full is
        // found, preferring a full in the delta's own target.
        let mut chosen = None;
        for delta in &deltas {
            let Some(base) = delta.base_identity else {
                continue;
            };
            let mut fulls = self.fulls_with_identity(&base)?;
            fulls.sort_by_key(|f| f.target != delta.target);
            if let Some(full) = fulls.into_iter().next() {
                chosen = Some(Choice {
                    delta: delta.clone(),
                    full,
                });
                break;
            }
        }
        let Some(choice) = chosen else {
            return Ok(Err(Miss(format!(
                "{}: its full is in no indexed target (index the folder that holds it: \
                 `sdar index FOLDER`, or a TARGET= line)",
                esc(&deltas[0].path.display().to_string())
            ))));
        };
        Ok(destination(line, &choice.delta).map(|(dest, raw)| Planned { choice, dest, raw }))
    }
}

/// Where a line restores the backup: a `.vmdk` as a VMDK, a folder (a path
/// ending in `/`) the disk's own name in it as a VMDK, anything else a raw
/// image.
fn destination(line: &RestoreLine, delta: &Backup) -> std::result::Result<(PathBuf, bool), Miss> {
    let text = line.dest.as_os_str().as_encoded_bytes();
    if text.ends_with(b"/") {
        let name = delta.disk_name.as_deref().unwrap_or("");
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.chars().any(char::is_control);
        if !plain {
            return Err(Miss(format!(
                "the backup's disk name {name:?} cannot be a file name in {}: give the whole \
                 path of the disk",
                line.dest.display()
            )));
        }
        return Ok((line.dest.join(vmdk_name(name)), false));
    }
    let vmdk = line
        .dest
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("vmdk"));
    Ok((line.dest.clone(), !vmdk))
}

/// Text from a backup's metadata or a file name, for a message: every
/// control character escaped, a line break included.
fn esc(text: &str) -> String {
    archive_format::display::escape(text).into_owned()
}

/// `VM "CRM" (UUID 564d...), SCSI 00, disk "CRM.vmdk"` for messages.
pub fn describe(line: &RestoreLine) -> String {
    let vm = match &line.uuid {
        UuidRule::Exact(u) => format!("VM {:?} (UUID {u})", line.vm),
        UuidRule::AnyUuid => format!("VM {:?} (any UUID)", line.vm),
        UuidRule::AnyVm => "any VM".to_string(),
    };
    let slot = match &line.slot {
        super::config::SlotRule::Any => "any SCSI id".to_string(),
        super::config::SlotRule::Exact(s) => format!("SCSI {}", s.esxpress()),
    };
    format!("{vm}, {slot}, disk {:?}", line.disk)
}

/// The file a disk is restored to in a folder: its name with `.vmdk` for
/// its extension (`CRM.vmdk`, `CRM_1.img` as `CRM_1.vmdk`).
pub fn vmdk_name(disk: &str) -> String {
    if disk.ends_with(".vmdk") {
        return disk.to_string();
    }
    let stem = match disk.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => disk,
    };
    format!("{stem}.vmdk")
}
