//! The names sdar gives what it writes when no `-o` is given: a full's
//! from what is known of the disk, a delta's beside its full.

use crate::output::{folder_of, name_max};
use archive_format::display::cut_to;
use archive_format::Metadata;
use std::path::{Path, PathBuf};

/// `VM_scsi0-0_DISK_20261122T013000Z.full.gz`, from what is known, with
/// anything but letters, digits, `.`, `-` and `_` replaced, short enough
/// for the current folder's filesystem.
pub fn default_name(meta: &Metadata, suffix: &str) -> String {
    default_name_within(meta, suffix, name_max(Path::new(".")))
}

/// `default_name` of at most `max` bytes: the VM, slot and disk part is
/// cut short, the date stamp and the suffix are always kept.
fn default_name_within(meta: &Metadata, suffix: &str, max: usize) -> String {
    let mut parts = Vec::new();
    if let Some(vm) = &meta.vm_name {
        parts.push(vm.clone());
    }
    if let Some(id) = &meta.scsi_id {
        // `0:1` is a SCSI slot; other buses carry their name (`sata0:1`).
        let bus = if id.starts_with(|c: char| c.is_ascii_digit()) {
            "scsi"
        } else {
            ""
        };
        parts.push(format!("{bus}{}", id.replace(':', "-")));
    }
    if let Some(disk) = &meta.disk_name {
        let stem = Path::new(disk)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem.strip_suffix("-flat").unwrap_or(&stem).to_string();
        if meta.vm_name.as_deref() != Some(stem.as_str()) {
            parts.push(stem);
        }
    }
    let stamp = archive_format::utc_stamp(meta.created_unix.unwrap_or(0));
    let head: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let room = max.saturating_sub(stamp.len() + suffix.len() + 1);
    let head = cut_to(&head, room);
    let name = if head.is_empty() && parts.is_empty() {
        stamp
    } else {
        format!("{head}_{stamp}")
    };
    let name = name.trim_start_matches('.').to_string();
    format!("{name}{suffix}")
}

/// `NAME.full.gz` → `NAME.sdar`; any other name gets `.sdar` appended,
/// its end cut off where that would pass the filesystem's name limit.
pub fn beside_full(full: &Path) -> PathBuf {
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".full.gz", ".full.zst", ".gz", ".zst"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name);
    let stem = cut_to(
        stem,
        name_max(&folder_of(full)).saturating_sub(".sdar".len()),
    );
    full.with_file_name(format!("{stem}.sdar"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use archive_format::Codec;

    #[test]
    fn stamps() {
        use archive_format::utc_stamp;
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_795_000_000), "20261118T110640Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn names_carry_vm_scsi_disk_and_date() {
        let meta = Metadata {
            vm_name: Some("CRM web/01".into()),
            scsi_id: Some("0:1".into()),
            disk_name: Some("CRM_1.vmdk".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        assert_eq!(
            default_name(&meta, Codec::Gzip.full_suffix()),
            "CRM_web_01_scsi0-1_CRM_1_19700101T000000Z.full.gz"
        );
        let bare = Metadata {
            disk_name: Some("..".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        assert_eq!(
            default_name(&bare, Codec::Zstd.full_suffix()),
            "_19700101T000000Z.full.zst"
        );
    }

    #[test]
    fn long_names_are_cut_keeping_stamp_and_suffix() {
        let meta = Metadata {
            vm_name: Some("v".repeat(300)),
            scsi_id: Some("0:1".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        let name = default_name_within(&meta, ".full.gz", 255);
        assert_eq!(name.len(), 255);
        assert!(name.ends_with("v_19700101T000000Z.full.gz"), "{name}");
        let name = default_name_within(&meta, ".full.gz", 40);
        assert_eq!(name, format!("{}_19700101T000000Z.full.gz", "v".repeat(15)));
    }

    #[test]
    fn names_carry_other_buses_by_name() {
        let meta = Metadata {
            vm_name: Some("CRM".into()),
            scsi_id: Some("sata0:1".into()),
            disk_name: Some("CRM.vmdk".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        assert_eq!(
            default_name(&meta, Codec::Gzip.full_suffix()),
            "CRM_sata0-1_19700101T000000Z.full.gz"
        );
    }
}
