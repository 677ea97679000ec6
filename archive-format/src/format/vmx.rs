//! The .vmx file: the VM's configuration, kept byte for byte in metadata.
//! Only a few keys are read, to fill in names the user did not give.

use crate::display::{escape, escape_bytes};
use std::path::{Component, Path, PathBuf};

/// `key = "value"` pairs of a .vmx, in file order, with the values'
/// `|XX` escapes decoded. Lines that are not such pairs are skipped: the
/// file is kept verbatim elsewhere, this is a view.
pub fn vmx_entries(vmx: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(vmx)
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            let k = k.trim();
            if k.starts_with('#') {
                return None;
            }
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(v);
            let v = String::from_utf8_lossy(&decode_value(v.as_bytes())).into_owned();
            Some((k.to_string(), v))
        })
        .collect()
}

/// What a .vmx says about the VM and one of its disks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmxFacts {
    pub display_name: Option<String>,
    pub uuid_bios: Option<String>,
    /// The disk's slot: `0:0` for `scsi0:0.fileName = "<disk>"`, and the
    /// bus named for the others: `sata0:1`, `nvme0:0`, `ide0:1`.
    pub scsi_id: Option<String>,
    /// Why the slot is unknown although entries name the disk.
    pub warning: Option<String>,
}

/// Reads the display name, BIOS UUID, and the slot whose `fileName` is
/// `disk_name` (compared by file name only; see [`vmx_facts_at`]).
pub fn vmx_facts(vmx: &[u8], disk_name: Option<&str>) -> VmxFacts {
    vmx_facts_at(vmx, disk_name, None, None)
}

/// [`vmx_facts`], telling apart disks of the same file name by where they
/// are: the entry whose path is `source` (the disk backed up; an entry's
/// relative path is taken from `vmx_dir`, the .vmx's folder) is the one.
/// Between entries that cannot be told apart no slot is guessed.
pub fn vmx_facts_at(
    vmx: &[u8],
    disk_name: Option<&str>,
    source: Option<&Path>,
    vmx_dir: Option<&Path>,
) -> VmxFacts {
    let mut facts = VmxFacts::default();
    let entries = vmx_entries(vmx);
    for (k, v) in &entries {
        let key = k.to_ascii_lowercase();
        if key == "displayname" {
            facts.display_name = Some(v.clone());
        } else if key == "uuid.bios" {
            facts.uuid_bios = Some(v.clone());
        }
    }
    let Some(disk) = disk_name else {
        return facts;
    };
    let candidates: Vec<DiskEntry> = disk_entries(&entries)
        .into_iter()
        .filter(|e| base_disk_name(file_name_str(&e.value)) == disk)
        .collect();
    let chosen = match candidates.as_slice() {
        [] => return facts,
        [one] => Some(one),
        several => {
            let at = |e: &&DiskEntry| {
                source.is_some_and(|s| same_path(&entry_path(&e.value, vmx_dir), s))
            };
            let matching: Vec<&DiskEntry> = several.iter().filter(at).collect();
            match matching.as_slice() {
                [one] => Some(*one),
                _ => {
                    // The names are the .vmx's text: escaped here, where
                    // the message is made, so no caller prints them raw.
                    facts.warning = Some(format!(
                        "the .vmx has {} disks named {} ({}) and {}: the disk's slot is left unknown (give --scsi-id to record it)",
                        several.len(),
                        escape(disk),
                        several
                            .iter()
                            .map(|e| format!("{} = \"{}\"", escape(&e.key), escape(&e.value)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if matching.is_empty() {
                            "none of them is the source's path"
                        } else {
                            "several are the source's path"
                        }
                    ));
                    None
                }
            }
        }
    };
    facts.scsi_id = chosen.map(|e| e.slot.clone());
    facts
}

/// A present disk slot's `fileName` entry.
#[derive(Clone, Debug)]
struct DiskEntry {
    /// The key as written, such as `scsi0:1`.
    key: String,
    /// `0:1` for SCSI, `sata0:1` for the other buses.
    slot: String,
    value: String,
}

/// The `fileName` of every disk slot (`scsiN:M`, `sataN:M`, `nvmeN:M`,
/// `ideN:M`) not marked `present = "FALSE"`; for a key given twice, the
/// last, as VMware reads it.
fn disk_entries(entries: &[(String, String)]) -> Vec<DiskEntry> {
    let mut out: Vec<DiskEntry> = Vec::new();
    let mut absent = Vec::new();
    for (k, v) in entries {
        let key = k.to_ascii_lowercase();
        if let Some(dev) = key.strip_suffix(".present") {
            if v.eq_ignore_ascii_case("false") {
                absent.push(dev.to_string());
            } else {
                absent.retain(|d| d != dev);
            }
        }
        let Some(dev) = key.strip_suffix(".filename") else {
            continue;
        };
        let Some(slot) = slot_id(dev) else { continue };
        out.retain(|e| e.slot != slot);
        out.push(DiskEntry {
            key: k[..dev.len()].to_string(),
            slot,
            value: v.clone(),
        });
    }
    out.retain(|e| !absent.contains(&e.key.to_ascii_lowercase()));
    out
}

/// `0:1` for the device key `scsi0:1`, `sata0:1` for `sata0:1` (and so for
/// nvme and ide); `None` for anything that is not a disk slot.
fn slot_id(device: &str) -> Option<String> {
    let device = device.to_ascii_lowercase();
    for bus in ["scsi", "sata", "nvme", "ide"] {
        if let Some(id) = device.strip_prefix(bus) {
            let (a, b) = id.split_once(':')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
            if !(digits(a) && digits(b)) {
                return None;
            }
            return Some(if bus == "scsi" {
                id.to_string()
            } else {
                device.clone()
            });
        }
    }
    None
}

/// The recorded slot as a .vmx device key: `0:0` (as `--scsi-id` and
/// older backups write it) is `scsi0:0`.
fn slot_key(slot: &str) -> String {
    let slot = slot.to_ascii_lowercase();
    if slot.starts_with(|c: char| c.is_ascii_digit()) {
        format!("scsi{slot}")
    } else {
        slot
    }
}

/// The base disk of a snapshot's delta disk: `NAME-000001.vmdk` is
/// `NAME.vmdk`, which is what a backup taken from the snapshot holds.
pub fn base_disk_name(name: &str) -> String {
    if let Some(stem) = name.strip_suffix(".vmdk") {
        if let Some((base, n)) = stem.rsplit_once('-') {
            if !base.is_empty() && n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()) {
                return format!("{base}.vmdk");
            }
        }
    }
    name.to_string()
}

fn file_name_str(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Where an entry's disk is: its path (relative ones from the .vmx's
/// folder) with a snapshot's delta disk replaced by its base disk.
fn entry_path(value: &str, vmx_dir: Option<&Path>) -> PathBuf {
    let path = Path::new(value);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        vmx_dir.unwrap_or(Path::new(".")).join(path)
    };
    path.with_file_name(base_disk_name(file_name_str(value)))
}

/// True when `a` and `b` name the same file: compared as they resolve on
/// this machine when both exist, else as absolute paths without `.`/`..`.
fn same_path(a: &Path, b: &Path) -> bool {
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        return a == b;
    }
    let plain = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    out.pop();
                }
                c => out.push(c),
            }
        }
        out
    };
    plain(a) == plain(b)
}

/// Rewrites the `<device>.fileName = "..."` entries that name the disk
/// `old_disk` (compared by file name: the part after the last '/', and
/// case-sensitively, as VMware datastores are; a snapshot's
/// `NAME-000001.vmdk` names `NAME.vmdk`) so that they name `new_path`
/// instead. Every other byte of the file is kept, including line endings
/// (LF or CRLF), comments, spacing around '=', and the quoting style. Returns
/// the new bytes and how many entries were rewritten.
///
/// When entries name different files of that name (two datastores),
/// `slot` (the backup's recorded slot, `0:0` or `sata0:1`) says which is
/// meant; without it, or when it is none of them, nothing is guessed: the
/// answer is an error.
///
/// Works on bytes, not text: a .vmx may hold non-UTF-8 bytes in lines we do
/// not touch, and those must survive the restore unchanged. An unquoted
/// matching value is written back quoted, the form VMware itself writes.
/// `new_path` is refused if it holds a control character, checked before
/// any match so the answer does not depend on the file.
pub fn rename_disk(
    vmx: &[u8],
    old_disk: &str,
    slot: Option<&str>,
    new_path: &str,
) -> Result<(Vec<u8>, usize), String> {
    let new_value = encode_value(new_path)?;
    let old_name = file_name(old_disk.as_bytes());
    let lines: Vec<&[u8]> = vmx.split_inclusive(|&b| b == b'\n').collect();
    // (line, value range, quoted, device key, decoded value) of each match.
    let mut matches = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if let Some((start, end, quoted)) = file_name_value(line) {
            let value = decode_value(&line[start..end]);
            let name = String::from_utf8_lossy(file_name(&value)).into_owned();
            if base_disk_name(&name).as_bytes() == old_name {
                let device = device_key(line).unwrap_or_default();
                matches.push((n, start, end, quoted, device, value));
            }
        }
    }
    let mut values: Vec<&Vec<u8>> = matches.iter().map(|m| &m.5).collect();
    values.sort();
    values.dedup();
    let wanted = slot.map(slot_key);
    let in_slot: Vec<&Vec<u8>> = matches
        .iter()
        .filter(|m| wanted.as_deref() == Some(m.4.as_str()))
        .map(|m| &m.5)
        .collect();
    let chosen: Vec<Vec<u8>> = if !in_slot.is_empty() {
        in_slot.into_iter().cloned().collect()
    } else if values.len() <= 1 {
        values.into_iter().cloned().collect()
    } else {
        let listed = matches
            .iter()
            .map(|m| format!("{} = \"{}\"", escape(&m.4), escape_bytes(&m.5)))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "the .vmx names {} different disks {} ({listed}) and {}, so which one to change cannot be told; restore without --rename-disk and edit the .vmx",
            values.len(),
            escape_bytes(old_name),
            match slot {
                Some(s) => format!("the backup's slot {} is none of them", escape(s)),
                None => "the backup records no slot".into(),
            }
        ));
    };
    let mut out = Vec::with_capacity(vmx.len() + new_value.len());
    let mut count = 0;
    let mut next = matches.iter().peekable();
    for (n, line) in lines.iter().enumerate() {
        match next.next_if(|m| m.0 == n) {
            Some((_, start, end, quoted, _, value)) if chosen.contains(value) => {
                out.extend_from_slice(&line[..*start]);
                if !quoted {
                    out.push(b'"');
                }
                out.extend_from_slice(&new_value);
                if !quoted {
                    out.push(b'"');
                }
                out.extend_from_slice(&line[*end..]);
                count += 1;
            }
            _ => out.extend_from_slice(line),
        }
    }
    Ok((out, count))
}

/// The device of a `DEVICE.fileName = ...` line, lowercased (`scsi0:1`).
fn device_key(line: &[u8]) -> Option<String> {
    let eq = line.iter().position(|&b| b == b'=')?;
    let key = String::from_utf8_lossy(line[..eq].trim_ascii()).to_ascii_lowercase();
    key.strip_suffix(".filename").map(str::to_string)
}

/// The byte range of the value of a `*.fileName` entry in `line`, and
/// whether it sits between quotes (the range then excludes them). `None` for
/// comments, other keys, and a quote never closed, which we do not guess at.
fn file_name_value(line: &[u8]) -> Option<(usize, usize, bool)> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let eq = body.iter().position(|&b| b == b'=')?;
    let key = body[..eq].trim_ascii();
    if key.starts_with(b"#") || !key.to_ascii_lowercase().ends_with(b".filename") {
        return None;
    }
    let rest = &body[eq + 1..];
    let start = eq + 1 + (rest.len() - rest.trim_ascii_start().len());
    if body.get(start) == Some(&b'"') {
        // Quotes inside a value are written `|22`, so the next one closes it.
        let len = body[start + 1..].iter().position(|&b| b == b'"')?;
        Some((start + 1, start + 1 + len, true))
    } else {
        Some((start, eq + 1 + rest.trim_ascii_end().len(), false))
    }
}

/// The part of a path after its last '/'.
fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// Undoes the .vmx `|XX` hex escapes. A '|' not followed by two hex digits
/// is kept as it is, since it cannot be an escape.
fn decode_value(value: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match (
            value[i],
            value.get(i + 1).copied().and_then(hex),
            value.get(i + 2).copied().and_then(hex),
        ) {
            (b'|', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Escapes `new_path` for a quoted .vmx value: '"' would end the value, '|'
/// starts an escape, and '#' starts a comment for some readers. Control
/// characters are refused: a path holding one is almost surely a mistake.
fn encode_value(path: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'"' | b'|' | b'#' => out.extend_from_slice(format!("|{b:02X}").as_bytes()),
            0..0x20 | 0x7f => {
                return Err(format!(
                    "disk path {path:?} holds control character 0x{b:02x}, which a .vmx cannot name"
                ))
            }
            _ => out.push(b),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_uuid_and_slot() {
        let vmx = b".encoding = \"UTF-8\"\ndisplayName = \"CRM\"\nuuid.bios = \"56 4d 01\"\nscsi0:1.fileName = \"CRM_1.vmdk\"\nscsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"\n";
        let f = vmx_facts(vmx, Some("CRM.vmdk"));
        assert_eq!(f.display_name.as_deref(), Some("CRM"));
        assert_eq!(f.uuid_bios.as_deref(), Some("56 4d 01"));
        assert_eq!(f.scsi_id.as_deref(), Some("0:0"));
    }

    /// Rewrites `vmx` and checks the result byte for byte.
    fn assert_renamed(vmx: &[u8], old: &str, new: &str, expected: &[u8], count: usize) {
        let (out, n) = rename_disk(vmx, old, None, new).unwrap();
        assert_eq!(out, expected, "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(n, count);
    }

    #[test]
    fn rename_keeps_lf_file_byte_for_byte() {
        let vmx = b"# scsi0:0.fileName = \"CRM.vmdk\"\n  scsi0:0.fileName=\"CRM.vmdk\"  # boot\n\ndisplayName   =   \"CRM\"\n";
        let expected = b"# scsi0:0.fileName = \"CRM.vmdk\"\n  scsi0:0.fileName=\"CRM-restored.vmdk\"  # boot\n\ndisplayName   =   \"CRM\"\n";
        assert_renamed(vmx, "CRM.vmdk", "CRM-restored.vmdk", expected, 1);
    }

    #[test]
    fn rename_keeps_crlf_file_byte_for_byte() {
        let vmx = b".encoding = \"UTF-8\"\r\nsata0:1.fileName = \"CRM.vmdk\"\r\nnvme0:0.fileName = \"CRM.vmdk\"\r\n";
        let expected = b".encoding = \"UTF-8\"\r\nsata0:1.fileName = \"new.vmdk\"\r\nnvme0:0.fileName = \"new.vmdk\"\r\n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", expected, 2);
    }

    #[test]
    fn rename_keeps_non_utf8_line_intact() {
        let vmx = b"annotation = \"caf\xe9 \xff\"\nide0:0.fileName = \"CRM.vmdk\"\n";
        let expected = b"annotation = \"caf\xe9 \xff\"\nide0:0.fileName = \"new.vmdk\"\n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", expected, 1);
    }

    #[test]
    fn rename_keeps_missing_trailing_newline() {
        let vmx = b"displayName = \"CRM\"\nscsi0:0.fileName = \"CRM.vmdk\"";
        let expected = b"displayName = \"CRM\"\nscsi0:0.fileName = \"new.vmdk\"";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", expected, 1);
    }

    #[test]
    fn rename_matches_absolute_path_by_file_name() {
        let vmx = b"scsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"\n";
        let expected = b"scsi0:0.fileName = \"/vmfs/volumes/ds2/restore/CRM.vmdk\"\n";
        assert_renamed(
            vmx,
            "CRM.vmdk",
            "/vmfs/volumes/ds2/restore/CRM.vmdk",
            expected,
            1,
        );
    }

    #[test]
    fn rename_leaves_cdrom_iso_alone() {
        let vmx = b"ide1:0.deviceType = \"cdrom-image\"\nide1:0.fileName = \"/vmfs/volumes/iso/CRM.iso\"\nfloppy0.fileName = \"\"\n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", vmx, 0);
    }

    #[test]
    fn rename_is_case_sensitive_on_file_name() {
        let vmx = b"scsi0:0.fileName = \"crm.vmdk\"\n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", vmx, 0);
    }

    #[test]
    fn rename_decodes_and_encodes_bar_escapes() {
        let vmx = b"scsi0:0.fileName = \"my |22disk|22|7C1.vmdk\"\n";
        let expected = b"scsi0:0.fileName = \"a|22b|7Cc|23d.vmdk\"\n";
        assert_renamed(vmx, "my \"disk\"|1.vmdk", "a\"b|c#d.vmdk", expected, 1);
    }

    #[test]
    fn rename_quotes_unquoted_value() {
        let vmx = b"scsi0:0.fileName = CRM.vmdk \n";
        let expected = b"scsi0:0.fileName = \"new.vmdk\" \n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", expected, 1);
    }

    #[test]
    fn rename_touches_only_matching_disk_of_two() {
        let vmx = b"scsi0:0.fileName = \"CRM.vmdk\"\nscsi0:1.fileName = \"CRM_1.vmdk\"\n";
        let expected =
            b"scsi0:0.fileName = \"CRM.vmdk\"\nscsi0:1.fileName = \"restored/CRM_1.vmdk\"\n";
        assert_renamed(vmx, "CRM_1.vmdk", "restored/CRM_1.vmdk", expected, 1);
    }

    #[test]
    fn rename_refuses_control_character() {
        let vmx = b"scsi0:0.fileName = \"CRM.vmdk\"\n";
        let err = rename_disk(vmx, "CRM.vmdk", None, "new\n.vmdk").unwrap_err();
        assert!(err.contains("control character 0x0a"), "{err}");
    }

    #[test]
    fn rename_matches_uppercase_key() {
        let vmx = b"SCSI0:0.FILENAME = \"CRM.vmdk\"\n";
        let expected = b"SCSI0:0.FILENAME = \"new.vmdk\"\n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", expected, 1);
    }

    #[test]
    fn rename_without_match_returns_input() {
        assert_renamed(b"", "CRM.vmdk", "new.vmdk", b"", 0);
        let vmx = b"displayName = \"CRM\"\nscsi0:0.fileName = \"other.vmdk\"\n";
        assert_renamed(vmx, "CRM.vmdk", "new.vmdk", vmx, 0);
    }

    #[test]
    fn snapshot_disk_names_map_to_the_base_disk() {
        let vmx = b"sata0:1.fileName = \"CRM-000001.vmdk\"\n";
        let f = vmx_facts(vmx, Some("CRM.vmdk"));
        assert_eq!(f.scsi_id.as_deref(), Some("sata0:1"));
        assert_eq!(base_disk_name("CRM-000001.vmdk"), "CRM.vmdk");
        assert_eq!(base_disk_name("CRM-00001.vmdk"), "CRM-00001.vmdk");
        assert_eq!(base_disk_name("-000001.vmdk"), "-000001.vmdk");
        assert_eq!(base_disk_name("CRM-flat.vmdk"), "CRM-flat.vmdk");
        // The rename points the snapshot's entry at the restored disk.
        assert_renamed(
            vmx,
            "CRM.vmdk",
            "new.vmdk",
            b"sata0:1.fileName = \"new.vmdk\"\n",
            1,
        );
    }

    #[test]
    fn nvme_sata_and_ide_slots_are_recorded_with_their_bus() {
        for (key, slot) in [
            ("nvme0:0", "nvme0:0"),
            ("SATA0:1", "sata0:1"),
            ("ide0:1", "ide0:1"),
            ("scsi1:2", "1:2"),
        ] {
            let vmx = format!("{key}.fileName = \"/vmfs/volumes/ds/CRM/CRM.vmdk\"\n");
            let f = vmx_facts(vmx.as_bytes(), Some("CRM.vmdk"));
            assert_eq!(f.scsi_id.as_deref(), Some(slot), "{key}");
        }
        let vmx = b"ethernet0.fileName = \"CRM.vmdk\"\nscsi0:0.present = \"FALSE\"\nscsi0:0.fileName = \"CRM.vmdk\"\n";
        assert_eq!(vmx_facts(vmx, Some("CRM.vmdk")).scsi_id, None);
    }

    #[test]
    fn same_name_on_two_datastores_is_told_apart_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("ds1"), dir.path().join("ds2"));
        std::fs::create_dir_all(a.join("CRM")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("CRM/CRM.vmdk"), b"x").unwrap();
        std::fs::write(b.join("CRM.vmdk"), b"x").unwrap();
        let vmx = format!(
            "scsi0:0.fileName = \"CRM.vmdk\"\nscsi0:1.fileName = \"{}\"\n",
            b.join("CRM.vmdk").display()
        );
        let vmx_dir = a.join("CRM");
        let at = |source: &Path| {
            vmx_facts_at(
                vmx.as_bytes(),
                Some("CRM.vmdk"),
                Some(source),
                Some(&vmx_dir),
            )
        };
        assert_eq!(at(&b.join("CRM.vmdk")).scsi_id.as_deref(), Some("0:1"));
        assert_eq!(
            at(&a.join("CRM/../CRM/CRM.vmdk")).scsi_id.as_deref(),
            Some("0:0")
        );
        let f = at(&dir.path().join("elsewhere/CRM.vmdk"));
        assert_eq!(f.scsi_id, None);
        assert!(f.warning.unwrap().contains("2 disks named CRM.vmdk"));
        // Without a path nothing tells them apart: no guess either.
        let f = vmx_facts(vmx.as_bytes(), Some("CRM.vmdk"));
        assert_eq!(f.scsi_id, None);
        assert!(f.warning.is_some());
    }

    #[test]
    fn rename_uses_the_recorded_slot_and_refuses_to_guess() {
        let vmx = b"scsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"\nsata0:1.fileName = \"/vmfs/volumes/ds2/CRM/CRM.vmdk\"\n";
        let (out, n) = rename_disk(vmx, "CRM.vmdk", Some("sata0:1"), "new.vmdk").unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            b"scsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"\nsata0:1.fileName = \"new.vmdk\"\n"
        );
        let (out, n) = rename_disk(vmx, "CRM.vmdk", Some("0:0"), "new.vmdk").unwrap();
        assert_eq!(n, 1);
        assert!(out.starts_with(b"scsi0:0.fileName = \"new.vmdk\"\n"));
        for slot in [None, Some("0:5")] {
            let err = rename_disk(vmx, "CRM.vmdk", slot, "new.vmdk").unwrap_err();
            assert!(err.contains("cannot be told"), "{err}");
        }
    }

    #[test]
    fn decoded_control_characters_reach_messages_escaped() {
        // `|1B` decodes to a real ESC: the messages that list the values
        // show it as `\e`, never as the byte itself.
        let vmx = b"scsi0:0.fileName = \"a|1Bb.vmdk\"\nscsi0:1.fileName = \"x/a|1Bb.vmdk\"\n";
        let warning = vmx_facts(vmx, Some("a\u{1b}b.vmdk")).warning.unwrap();
        assert!(!warning.contains('\u{1b}'), "{warning:?}");
        assert!(warning.contains("x/a\\eb.vmdk"), "{warning}");
        let err = rename_disk(vmx, "a\u{1b}b.vmdk", Some("\u{1b}[2J"), "new.vmdk").unwrap_err();
        assert!(!err.contains('\u{1b}'), "{err:?}");
        assert!(
            err.contains("x/a\\eb.vmdk") && err.contains("\\e[2J"),
            "{err}"
        );
    }

    #[test]
    fn bar_escapes_in_values_are_decoded() {
        let vmx = b"displayName = \"A|22B |7C C\"\nuuid.bios = \"56 4d|2001\"\n";
        let f = vmx_facts(vmx, None);
        assert_eq!(f.display_name.as_deref(), Some("A\"B | C"));
        assert_eq!(f.uuid_bios.as_deref(), Some("56 4d 01"));
        assert_eq!(vmx_entries(b"a = \"|zz|4\"\n")[0].1, "|zz|4");
    }
}
