//! esXpress's `vmdks.auto`, read as it is: `#` comments, blank lines,
//! global `KEY=VALUE` settings, and one `RESTORE:` line per disk to keep
//! restored:
//!
//! ```text
//! USE_DAYS=-1
//! RESTORE:VM_NAME|UUID_OF_VM|SCSI_ID|VMDK_NAME|Complete_Restore_Path|Use_Days
//! ```
//!
//! A line that cannot be read is refused with the file name and its line
//! number: a config is never half-understood.

use crate::{Error, Result};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A config larger than this is not a list of disks.
pub const MAX_CONFIG_LEN: u64 = 16 << 20;

/// The most days `USE_DAYS` may go back (it is a `u32` of days; more is a
/// typing mistake).
pub const MAX_USE_DAYS: u64 = u32::MAX as u64;

/// A replication config.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Global `USE_DAYS=-N`: restore the newest backup at least N days old
    /// (0: the newest).
    pub use_days: u32,
    /// Global `RESTORE_PATH=/folder`: where `--preload` suggests restoring.
    pub restore_path: Option<PathBuf>,
    /// Global `TARGET=/folder` lines: backup targets indexed before each
    /// run (the catalog's own targets are re-indexed anyway when stale).
    pub targets: Vec<PathBuf>,
    /// The `RESTORE:` lines, in file order.
    pub lines: Vec<RestoreLine>,
    /// `#RESTORE:` lines that read as such (what `--preload` wrote, or a
    /// disk switched off): a disk in one of them is not preloaded again.
    pub commented: Vec<RestoreLine>,
    /// Settings sdar does not use (`KEY=VALUE` lines of esXpress's own),
    /// with their line numbers: reported, not refused.
    pub ignored: Vec<(usize, String)>,
    /// True when the file does not end with a line end.
    pub unterminated: bool,
    /// The device and inode of the file read (a link followed), so that
    /// `--preload` appends to that file and no other.
    pub file: Option<(u64, u64)>,
}

/// Which VM UUID a line means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UuidRule {
    /// This UUID (compared by its hex digits, whatever the spaces, dashes
    /// and case).
    Exact(String),
    /// `*`: any UUID, but the VM name must match (a VM made again keeps
    /// its name, not its UUID).
    AnyUuid,
    /// `%`: any VM name and any UUID; the VMDK name and the SCSI id alone
    /// choose the disk (a VM renamed keeps its disks' names).
    AnyVm,
}

/// A SCSI slot: `0:0`, or `00` as esXpress writes it in its file names
/// (the first digit the bus, the rest the unit: `110` is 1:10), with the
/// bus's kind when it is not SCSI (`sata0:1`, `sata01`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// `scsi` when none is written.
    pub bus_kind: String,
    pub bus: u32,
    pub unit: u32,
}

impl Slot {
    /// Reads `0:0`, `00`, `scsi0:0`, `sata0:1`, `sata01`; `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<Slot> {
        let t = text.trim();
        let letters = t.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (kind, rest) = t.split_at(letters);
        let kind = if kind.is_empty() {
            "scsi".to_string()
        } else {
            kind.to_ascii_lowercase()
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
        let (bus, unit) = match rest.split_once(':') {
            Some((b, u)) if digits(b) && digits(u) => (b, u),
            Some(_) => return None,
            None if digits(rest) && rest.len() >= 2 => rest.split_at(1),
            None => return None,
        };
        Some(Slot {
            bus_kind: kind,
            bus: bus.parse().ok()?,
            unit: unit.parse().ok()?,
        })
    }

    /// As esXpress writes it: `00`, `110`, `sata01` (`12:0` when the bus
    /// has two digits and the short form would read otherwise).
    pub fn esxpress(&self) -> String {
        let kind = if self.bus_kind == "scsi" {
            ""
        } else {
            &self.bus_kind
        };
        if self.bus < 10 {
            format!("{kind}{}{}", self.bus, self.unit)
        } else {
            format!("{kind}{}:{}", self.bus, self.unit)
        }
    }
}

/// Which SCSI slot a line means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotRule {
    /// `*`: any slot.
    Any,
    Exact(Slot),
}

impl SlotRule {
    /// True when a backup recorded at `scsi_id` is at this slot.
    pub fn matches(&self, scsi_id: Option<&str>) -> bool {
        match self {
            SlotRule::Any => true,
            SlotRule::Exact(want) => scsi_id.and_then(Slot::parse).as_ref() == Some(want),
        }
    }
}

/// One `RESTORE:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreLine {
    /// Its line number in the file (from 1).
    pub number: usize,
    pub vm: String,
    pub uuid: UuidRule,
    pub slot: SlotRule,
    /// The VMDK name, as esXpress names the disk (with or without
    /// `.vmdk`).
    pub disk: String,
    /// Complete_Restore_Path: where the disk is restored (absolute). A
    /// `.vmdk` is restored as a VMDK, a path ending in `/` is a folder the
    /// disk is restored into under its own name (as a VMDK), anything else
    /// is a raw image.
    pub dest: PathBuf,
    /// The line's own USE_DAYS, when it gives one (0 included).
    pub use_days: Option<u32>,
}

impl RestoreLine {
    /// The days this line looks back, with the config's global setting.
    pub fn days(&self, global: u32) -> u32 {
        self.use_days.unwrap_or(global)
    }
}

/// Compares two UUIDs by their hex digits: VMware writes
/// `56 4d 8f 2a ...-...`, others `564d8f2a-...`.
pub fn same_uuid(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    let (na, nb) = (norm(a), norm(b));
    if na.is_empty() || nb.is_empty() {
        return a.trim() == b.trim();
    }
    na == nb
}

/// Compares a VMDK name from a config with a disk name from a backup:
/// equal, or equal without their extensions and a `-flat` (esXpress names
/// `CRM.vmdk` the disk sdar recorded from `CRM-flat.vmdk` or `CRM.img`).
pub fn same_disk(config: &str, recorded: &str) -> bool {
    fn key(name: &str) -> &str {
        let stem = match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => name,
        };
        stem.strip_suffix("-flat").unwrap_or(stem)
    }
    config == recorded || key(config) == key(recorded)
}

impl Config {
    /// Reads and checks the config at `path`. A FIFO, a device or a file
    /// larger than [`MAX_CONFIG_LEN`] is refused without blocking on it.
    pub fn read(path: &Path) -> Result<Config> {
        use std::os::unix::fs::MetadataExt;
        let (text, meta) = read_small_file(path, MAX_CONFIG_LEN, "the replication config")?;
        let mut config = Config::parse(path, &text)?;
        config.file = Some((meta.dev(), meta.ino()));
        Ok(config)
    }

    /// Reads a config from its bytes; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config> {
        // A config saved by a Windows editor may start with a byte order
        // mark: it is no part of the first line.
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let mut config = Config {
            path: path.to_path_buf(),
            unterminated: !bytes.is_empty() && !bytes.ends_with(b"\n"),
            ..Config::default()
        };
        let mut use_days_line = None;
        let mut restore_path_line = None;
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let number = i + 1;
            let bad = |what: String| {
                Error::Usage(format!(
                    "{}:{number}: {what}",
                    crate::replicate::shown(path)
                ))
            };
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let Ok(line) = std::str::from_utf8(raw) else {
                // A comment in another encoding (Latin-1 from an old
                // Windows editor) says nothing to sdar: skipped as any
                // comment is.
                if raw.trim_ascii_start().starts_with(b"#") {
                    continue;
                }
                return Err(bad("the line is not UTF-8 text".into()));
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                // A commented-out RESTORE: line that still reads as one
                // counts as a disk already in the file (for --preload).
                if let Some(body) = comment.trim_start().strip_prefix("RESTORE:") {
                    if let Ok(l) = restore_line(number, body) {
                        config.commented.push(l);
                    }
                }
                continue;
            }
            if let Some(body) = line.strip_prefix("RESTORE:") {
                config.lines.push(restore_line(number, body).map_err(bad)?);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(format!(
                    "`{}` is neither a comment (#), a setting (KEY=VALUE) nor a \
                     RESTORE:VM_NAME|UUID|SCSI_ID|VMDK_NAME|PATH[|USE_DAYS] line",
                    crate::replicate::short(line)
                )));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "USE_DAYS" => {
                    if let Some(first) = use_days_line.replace(number) {
                        return Err(bad(format!(
                            "USE_DAYS is set twice (first on line {first})"
                        )));
                    }
                    config.use_days = use_days(value).map_err(bad)?;
                }
                "RESTORE_PATH" => {
                    if let Some(first) = restore_path_line.replace(number) {
                        return Err(bad(format!(
                            "RESTORE_PATH is set twice (first on line {first})"
                        )));
                    }
                    config.restore_path = Some(absolute_path("RESTORE_PATH", value).map_err(bad)?);
                }
                "TARGET" => config
                    .targets
                    .push(absolute_path("TARGET", value).map_err(bad)?),
                k if !k.is_empty()
                    && k.len() <= 64
                    && k.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
                {
                    config.ignored.push((number, k.to_string()));
                }
                _ => {
                    return Err(bad(format!(
                        "`{}` is not a setting sdar knows (USE_DAYS, RESTORE_PATH, TARGET) nor a \
                         RESTORE: line",
                        crate::replicate::short(line)
                    )))
                }
            }
        }
        Ok(config)
    }
}

/// `-N` (or `0`): the newest backup at least N days old.
fn use_days(value: &str) -> std::result::Result<u32, String> {
    let bad = || {
        format!(
            "USE_DAYS `{}` is not 0 or a negative whole number of days such as -3 \
             (the newest backup at least 3 days old)",
            crate::replicate::short(value)
        )
    };
    let digits = match value.strip_prefix('-') {
        Some(d) => d,
        None if value == "0" => "0",
        None => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match digits.parse::<u64>() {
        Ok(n) if n <= MAX_USE_DAYS => Ok(n as u32),
        _ => Err(format!(
            "USE_DAYS `{}` goes back more than {MAX_USE_DAYS} days",
            crate::replicate::short(value)
        )),
    }
}

fn absolute_path(key: &str, value: &str) -> std::result::Result<PathBuf, String> {
    if !value.starts_with('/') {
        return Err(format!(
            "{key} `{}` must be an absolute path (starting with /)",
            crate::replicate::short(value)
        ));
    }
    Ok(PathBuf::from(value))
}

/// Reads the fields after `RESTORE:`.
fn restore_line(number: usize, body: &str) -> std::result::Result<RestoreLine, String> {
    const FORM: &str =
        "RESTORE:VM_NAME|UUID_OF_VM|SCSI_ID|VMDK_NAME|Complete_Restore_Path|Use_Days";
    // Counted without collecting: a line of 10,000 fields is refused as
    // cheaply as one of 7.
    let count = body.split('|').count();
    if !(5..=6).contains(&count) {
        return Err(format!(
            "a RESTORE: line has 5 or 6 fields separated by |, this one has {count} ({FORM})"
        ));
    }
    let f: Vec<&str> = body.split('|').map(str::trim).collect();
    let names = [
        "VM_NAME",
        "UUID_OF_VM",
        "SCSI_ID",
        "VMDK_NAME",
        "Complete_Restore_Path",
    ];
    for (field, name) in f.iter().zip(names) {
        if field.is_empty() {
            return Err(format!("{name} is empty ({FORM})"));
        }
        if field.chars().any(char::is_control) {
            return Err(format!("{name} holds a control character"));
        }
    }
    let uuid = match f[1] {
        "*" => UuidRule::AnyUuid,
        "%" => UuidRule::AnyVm,
        u => UuidRule::Exact(u.to_string()),
    };
    let slot = match f[2] {
        "*" => SlotRule::Any,
        s => SlotRule::Exact(Slot::parse(s).ok_or_else(|| {
            format!(
                "SCSI_ID `{}` is not a SCSI id such as 00 (0:0), 0:1 or *",
                crate::replicate::short(s)
            )
        })?),
    };
    if matches!(f[3], "*" | "%") {
        return Err(
            "VMDK_NAME must name the disk (a restore path is one disk): * and % are for the \
             UUID and the SCSI id"
                .into(),
        );
    }
    let dest = absolute_path("Complete_Restore_Path", f[4])?;
    if dest
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("Complete_Restore_Path must not go up a folder (..)".into());
    }
    let use_days = match f.get(5) {
        None | Some(&"") => None,
        Some(v) => Some(use_days(v)?),
    };
    Ok(RestoreLine {
        number,
        vm: f[0].to_string(),
        uuid,
        slot,
        disk: f[3].to_string(),
        dest,
        use_days,
    })
}

/// Reads a small file that must be a regular file: opened without
/// blocking (a FIFO or a device is refused, not waited on), at most `max`
/// bytes.
pub(crate) fn read_small_file(
    path: &Path,
    max: u64,
    what: &'static str,
) -> Result<(Vec<u8>, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "{}: no such file ({what})",
                crate::replicate::shown(path)
            )),
            _ => Error::io(path, what, e),
        })?;
    let meta = file.metadata().map_err(|e| Error::io(path, what, e))?;
    if !meta.is_file() {
        return Err(Error::Usage(format!(
            "{}: {what} must be a regular file, not a folder, FIFO or device",
            crate::replicate::shown(path)
        )));
    }
    if meta.len() > max {
        return Err(Error::Usage(format!(
            "{}: {what} is {} bytes, more than the {max} it may be",
            crate::replicate::shown(path),
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, what, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::Usage(format!(
            "{}: {what} grew past {max} bytes while it was read",
            crate::replicate::shown(path)
        )));
    }
    Ok((bytes, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("vmdks.auto"), text.as_bytes())
    }

    #[test]
    fn reads_esxpress_lines() {
        let c = parse(
            "# replicas\r\n\r\n  USE_DAYS=-2 \r\nRESTORE:CRM|564d-AB|00|CRM.vmdk|/r/CRM.vmdk|\r\n\
             RESTORE: web | * | 0:1 | web_1.vmdk | /r/web/ | -0\n\
             RESTORE:x|%|*|x.vmdk|/r/x.img|0\n#RESTORE:y|*|00|y.vmdk|/r/y.vmdk\nFOO_BAR=1",
        )
        .unwrap();
        assert_eq!(c.use_days, 2);
        assert_eq!(c.lines.len(), 3);
        assert_eq!(c.lines[0].number, 4);
        assert_eq!(c.lines[0].uuid, UuidRule::Exact("564d-AB".into()));
        assert_eq!(c.lines[0].use_days, None);
        assert_eq!(c.lines[0].days(c.use_days), 2);
        assert_eq!(c.lines[1].vm, "web");
        assert_eq!(c.lines[1].uuid, UuidRule::AnyUuid);
        assert_eq!(c.lines[1].dest, PathBuf::from("/r/web/"));
        assert_eq!(c.lines[1].use_days, Some(0));
        assert_eq!(c.lines[2].uuid, UuidRule::AnyVm);
        assert_eq!(c.lines[2].slot, SlotRule::Any);
        assert_eq!(c.commented.len(), 1);
        assert_eq!(c.ignored, vec![(8, "FOO_BAR".to_string())]);
        assert!(c.unterminated);
    }

    #[test]
    fn refuses_what_it_cannot_read_with_the_line_number() {
        for (text, line, what) in [
            ("\n\nRESTORE:a|b|00|c.vmdk\n", 3, "5 or 6 fields"),
            ("RESTORE:a|b|00|c.vmdk|/d|-1|x\n", 1, "5 or 6 fields"),
            ("RESTORE:a|b|0:x|c.vmdk|/d\n", 1, "SCSI_ID"),
            ("RESTORE:a|b|00|c.vmdk|rel/d\n", 1, "absolute"),
            ("RESTORE:a|b|00|c.vmdk|/d/../e\n", 1, ".."),
            ("RESTORE:a||00|c.vmdk|/d\n", 1, "UUID_OF_VM is empty"),
            ("RESTORE:a|*|00|*|/d\n", 1, "VMDK_NAME"),
            ("RESTORE:a|*|00|c|/d|3\n", 1, "negative"),
            ("USE_DAYS=-1\nUSE_DAYS=-2\n", 2, "twice"),
            ("USE_DAYS=-99999999999999999999999\n", 1, "more than"),
            ("USE_DAYS=-4294967296\n", 1, "more than"),
            ("restore:a|*|00|c|/d\n", 1, "neither"),
            ("hello\n", 1, "neither"),
            ("lower=1\n", 1, "not a setting"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("vmdks.auto:{line}: ")) && e.contains(what),
                "{text:?}: {e}"
            );
        }
        assert_eq!(parse("USE_DAYS=-4294967295").unwrap().use_days, u32::MAX);
        let many = format!("RESTORE:{}\n", "x|".repeat(10_000));
        assert!(parse(&many).unwrap_err().to_string().contains("10001"));
        let e = Config::parse(Path::new("c"), b"RESTORE:\xff|*|00|d|/d\n").unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let c = Config::parse(
            Path::new("c"),
            b"\xef\xbb\xbf# caf\xe9\r\n  # \xff\nRESTORE:a|*|00|d|/d\n",
        )
        .unwrap();
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.lines[0].number, 3);
    }

    #[test]
    fn slots_as_esxpress_names_them() {
        let s = |t: &str| Slot::parse(t);
        assert_eq!(s("00"), s("0:0"));
        assert_eq!(s("scsi0:0"), s("0:0"));
        assert_eq!(s("110"), s("1:10"));
        assert_ne!(s("110"), s("11:0"));
        assert_eq!(s("sata01"), s("sata0:1"));
        assert_ne!(s("sata0:1"), s("0:1"));
        for bad in ["0", "", ":", "0:", "a:b", "0:0:0", "x"] {
            assert_eq!(s(bad), None, "{bad}");
        }
        assert_eq!(s("1:10").unwrap().esxpress(), "110");
        assert_eq!(s("12:3").unwrap().esxpress(), "12:3");
        assert_eq!(s("sata0:1").unwrap().esxpress(), "sata01");
        for t in ["0:0", "1:10", "12:3", "sata0:1"] {
            assert_eq!(s(&s(t).unwrap().esxpress()), s(t));
        }
        assert!(SlotRule::Exact(s("00").unwrap()).matches(Some("0:0")));
        assert!(!SlotRule::Exact(s("00").unwrap()).matches(None));
        assert!(SlotRule::Any.matches(None));
        assert!(same_uuid("56 4d 8f 2a-00", "564D8F2A00"));
        assert!(same_disk("CRM.vmdk", "CRM-flat.vmdk"));
        assert!(same_disk("CRM", "CRM.img"));
        assert!(same_disk("CRM.vmdk", "CRM.img"));
        assert!(!same_disk("CRM", "CRM_1.img"));
        assert!(!same_disk("CRM.vmdk", "CRM.2.vmdk"));
        assert!(!same_uuid("564d", "564e"));
    }
}
