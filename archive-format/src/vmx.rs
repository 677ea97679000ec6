//! The .vmx file: the VM's configuration, kept byte for byte in metadata.
//! Only a few keys are read, to fill in names the user did not give.

/// `key = "value"` pairs of a .vmx, in file order. Lines that are not such
/// pairs are skipped: the file is kept verbatim elsewhere, this is a view.
pub fn vmx_entries(vmx: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(vmx)
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// What a .vmx says about the VM and one of its disks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmxFacts {
    pub display_name: Option<String>,
    pub uuid_bios: Option<String>,
    /// `0:0` for the entry `scsi0:0.fileName = "<disk>"`.
    pub scsi_id: Option<String>,
}

/// Reads the display name, BIOS UUID, and the SCSI slot whose `fileName`
/// is `disk_name` (compared by file name only).
pub fn vmx_facts(vmx: &[u8], disk_name: Option<&str>) -> VmxFacts {
    let mut facts = VmxFacts::default();
    for (k, v) in vmx_entries(vmx) {
        let key = k.to_ascii_lowercase();
        if key == "displayname" {
            facts.display_name = Some(v);
        } else if key == "uuid.bios" {
            facts.uuid_bios = Some(v);
        } else if let (Some(slot), Some(disk)) = (key.strip_suffix(".filename"), disk_name) {
            let file = v.rsplit('/').next().unwrap_or(&v);
            if let Some(id) = slot.strip_prefix("scsi") {
                if file == disk && id.contains(':') {
                    facts.scsi_id = Some(id.to_string());
                }
            }
        }
    }
    facts
}

/// Rewrites every `<device>.fileName = "..."` entry whose value names the
/// disk `old_disk` (compared by file name: the part after the last '/', and
/// case-sensitively, as VMware datastores are) so that it names `new_path`
/// instead. Every other byte of the file is kept, including line endings
/// (LF or CRLF), comments, spacing around '=', and the quoting style. Returns
/// the new bytes and how many entries were rewritten.
///
/// Works on bytes, not text: a .vmx may hold non-UTF-8 bytes in lines we do
/// not touch, and those must survive the restore unchanged. An unquoted
/// matching value is written back quoted, the form VMware itself writes.
/// `new_path` is refused if it holds a control character, checked before
/// any match so the answer does not depend on the file.
pub fn rename_disk(vmx: &[u8], old_disk: &str, new_path: &str) -> Result<(Vec<u8>, usize), String> {
    let new_value = encode_value(new_path)?;
    let old_name = file_name(old_disk.as_bytes());
    let mut out = Vec::with_capacity(vmx.len() + new_value.len());
    let mut count = 0;
    for line in vmx.split_inclusive(|&b| b == b'\n') {
        match file_name_value(line) {
            Some((start, end, quoted))
                if file_name(&decode_value(&line[start..end])) == old_name =>
            {
                out.extend_from_slice(&line[..start]);
                if !quoted {
                    out.push(b'"');
                }
                out.extend_from_slice(&new_value);
                if !quoted {
                    out.push(b'"');
                }
                out.extend_from_slice(&line[end..]);
                count += 1;
            }
            _ => out.extend_from_slice(line),
        }
    }
    Ok((out, count))
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
        let (out, n) = rename_disk(vmx, old, new).unwrap();
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
        let err = rename_disk(vmx, "CRM.vmdk", "new\n.vmdk").unwrap_err();
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
}
