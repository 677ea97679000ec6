//! VMDK descriptors: the small text file that names the flat extents and
//! carries the disk's adapter, geometry and UUID. Only what sdar needs is
//! parsed; the rest is kept as key/value pairs.

use crate::meta::Geometry;

/// The largest descriptor accepted: real ones are under 1 KiB.
pub const MAX_DESCRIPTOR_LEN: usize = 64 * 1024;
/// The most lines and extents accepted, so hostile input stays cheap.
pub const MAX_DESCRIPTOR_LINES: usize = 1024;
/// A split disk has one extent per 2 GB: 512 of them is a 1 TB disk, and
/// each is a file held open while the disk is read.
pub const MAX_EXTENTS: usize = 512;
/// Bytes per sector in extent lines.
pub const SECTOR: u64 = 512;

/// One extent line, such as `RW 16777216 VMFS "CRM-flat.vmdk"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extent {
    pub access: String,
    pub sectors: u64,
    /// `FLAT`, `VMFS`, `SPARSE`, `ZERO`, ...
    pub kind: String,
    pub file: String,
    /// Sector offset into the file (FLAT extents only).
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub create_type: String,
    pub extents: Vec<Extent>,
    /// Header and `ddb.*` entries in file order, unquoted.
    pub entries: Vec<(String, String)>,
}

impl Descriptor {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn adapter_type(&self) -> Option<&str> {
        self.get("ddb.adapterType")
    }

    pub fn geometry(&self) -> Option<Geometry> {
        let n = |k: &str| self.get(k)?.trim().parse::<u32>().ok();
        Some(Geometry {
            cylinders: n("ddb.geometry.cylinders")?,
            heads: n("ddb.geometry.heads")?,
            sectors: n("ddb.geometry.sectors")?,
        })
    }

    pub fn disk_uuid(&self) -> Option<&str> {
        self.get("ddb.uuid")
    }

    pub fn hw_version(&self) -> Option<&str> {
        self.get("ddb.virtualHWVersion")
    }

    /// Total size of all extents in bytes, if it does not overflow.
    pub fn size(&self) -> Option<u64> {
        self.extents.iter().try_fold(0u64, |acc, e| {
            acc.checked_add(e.sectors.checked_mul(SECTOR)?)
        })
    }
}

/// True when `head` (the first bytes of a file) looks like a descriptor
/// rather than disk data. Trailing NUL bytes are padding: qemu-img and
/// VMware pad descriptors with them to a whole sector.
pub fn looks_like_descriptor(head: &[u8]) -> bool {
    let text = strip_padding(head);
    text.starts_with(b"# Disk DescriptorFile")
        || (head.len() < MAX_DESCRIPTOR_LEN
            && text.iter().all(|&b| {
                b == b'\t' || b == b'\n' || b == b'\r' || (0x20..0x7f).contains(&b) || b >= 0x80
            })
            && text.windows(10).any(|w| w == b"createType"))
}

/// `bytes` without the NUL bytes that pad it to its end.
pub fn strip_padding(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Parses descriptor text. The error says which line is wrong.
pub fn parse_descriptor(text: &str) -> Result<Descriptor, String> {
    if text.len() > MAX_DESCRIPTOR_LEN {
        return Err(format!(
            "descriptor is {} bytes, more than {MAX_DESCRIPTOR_LEN}",
            text.len()
        ));
    }
    // The padding after the text is not part of it; a NUL inside the text
    // is refused below, on the line that holds it.
    let text = text.trim_end_matches('\0');
    let mut d = Descriptor::default();
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        if lineno > MAX_DESCRIPTOR_LINES {
            return Err(format!(
                "descriptor has more than {MAX_DESCRIPTOR_LINES} lines"
            ));
        }
        if raw.contains('\0') {
            return Err(format!("line {lineno}: contains a NUL byte"));
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
            if d.extents.len() == MAX_EXTENTS {
                return Err(format!("line {lineno}: more than {MAX_EXTENTS} extents"));
            }
            d.extents
                .push(parse_extent(line).map_err(|e| format!("line {lineno}: {e}"))?);
        } else if let Some((k, v)) = line.split_once('=') {
            let k = k.trim().to_string();
            let v = unquote(v.trim()).to_string();
            if k == "createType" {
                d.create_type = v.clone();
            }
            d.entries.push((k, v));
        } else {
            return Err(format!(
                "line {lineno}: not an extent, a key = value pair or a comment"
            ));
        }
    }
    if d.create_type.is_empty() {
        return Err("no createType line: not a VMDK descriptor".into());
    }
    Ok(d)
}

fn parse_extent(line: &str) -> Result<Extent, String> {
    // ACCESS SECTORS KIND ["FILE" [OFFSET]], fields apart by runs of spaces
    // or tabs; the file name may hold spaces.
    let mut rest = line;
    let mut field = || {
        let t = rest.trim_start_matches([' ', '\t']);
        let end = t.find([' ', '\t']).unwrap_or(t.len());
        rest = &t[end..];
        &t[..end]
    };
    let access = field().to_string();
    let sectors = field()
        .parse::<u64>()
        .map_err(|_| "extent size is not a number of sectors")?;
    let kind = field();
    if kind.is_empty() {
        return Err("extent has no type".into());
    }
    let kind = kind.to_string();
    let rest = rest.trim_matches([' ', '\t']);
    let (file, after) = if let Some(stripped) = rest.strip_prefix('"') {
        let end = stripped
            .find('"')
            .ok_or("extent file name has no closing quote")?;
        (
            stripped[..end].to_string(),
            stripped[end + 1..].trim_matches([' ', '\t']),
        )
    } else {
        (String::new(), rest)
    };
    let offset = if after.is_empty() {
        0
    } else {
        after
            .parse::<u64>()
            .map_err(|_| "extent offset is not a number")?
    };
    Ok(Extent {
        access,
        sectors,
        kind,
        file,
        offset,
    })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// What a restored descriptor says about the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorSpec {
    /// `vmfs` (VMware datastores) or `monolithicFlat`.
    pub vmfs: bool,
    pub size: u64,
    pub flat_name: String,
    pub adapter_type: String,
    pub geometry: Geometry,
    pub disk_uuid: Option<String>,
    pub hw_version: String,
    /// Content id: any 32-bit value that changes when the content does.
    pub cid: u32,
    /// The flat extent is sparse (zero blocks are holes).
    pub thin: bool,
}

impl DescriptorSpec {
    /// A spec for `size` bytes: adapter, geometry, UUID and hardware version
    /// from the backup's metadata when it has them, usual defaults otherwise.
    pub fn new(size: u64, flat_name: String, vmfs: bool, meta: &crate::Metadata, cid: u32) -> Self {
        let adapter_type = meta
            .adapter_type
            .clone()
            .filter(|a| a.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "lsilogic".into());
        let sectors = size.div_ceil(SECTOR);
        let default_geometry = {
            let (heads, secs) = if adapter_type == "ide" {
                (16, 63)
            } else {
                (255, 63)
            };
            Geometry {
                cylinders: (sectors / (heads as u64 * secs as u64)).clamp(1, u32::MAX as u64)
                    as u32,
                heads,
                sectors: secs,
            }
        };
        DescriptorSpec {
            vmfs,
            size,
            flat_name,
            geometry: meta.geometry.unwrap_or(default_geometry),
            disk_uuid: meta.disk_uuid.clone().filter(|u| {
                u.chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ' ' || c == '-')
            }),
            hw_version: meta
                .hw_version
                .clone()
                .filter(|v| v.chars().all(|c| c.is_ascii_digit()))
                .unwrap_or_else(|| "4".into()),
            adapter_type,
            cid,
            thin: false,
        }
    }

    /// The descriptor text. Every value is checked or made by sdar, so
    /// nothing from the backup's metadata can add lines.
    pub fn render(&self) -> String {
        let sectors = self.size.div_ceil(SECTOR);
        let (create_type, extent) = if self.vmfs {
            ("vmfs", format!("RW {sectors} VMFS \"{}\"", self.flat_name))
        } else {
            (
                "monolithicFlat",
                format!("RW {sectors} FLAT \"{}\" 0", self.flat_name),
            )
        };
        let mut t = format!(
            "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID={:08x}\nparentCID=ffffffff\ncreateType=\"{create_type}\"\n\n# Extent description\n{extent}\n\n# The Disk Data Base\n#DDB\n\n",
            self.cid
        );
        t += &format!("ddb.adapterType = \"{}\"\n", self.adapter_type);
        t += &format!("ddb.geometry.cylinders = \"{}\"\n", self.geometry.cylinders);
        t += &format!("ddb.geometry.heads = \"{}\"\n", self.geometry.heads);
        t += &format!("ddb.geometry.sectors = \"{}\"\n", self.geometry.sectors);
        if let Some(u) = &self.disk_uuid {
            t += &format!("ddb.uuid = \"{u}\"\n");
        }
        if self.thin {
            t += "ddb.thinProvisioned = \"1\"\n";
        }
        t += &format!("ddb.virtualHWVersion = \"{}\"\n", self.hw_version);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor as qemu-img writes a monolithicFlat one: padded with
    /// NUL bytes to a whole sector.
    fn qemu_style(extent: &str) -> Vec<u8> {
        let mut t = format!(
            "# Disk DescriptorFile\nversion=1\nCID=6b635385\nparentCID=ffffffff\n\
             createType=\"monolithicFlat\"\n\n# Extent description\n{extent}\n\n\
             # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n\
             ddb.adapterType = \"ide\"\n"
        )
        .into_bytes();
        t.resize(512, 0);
        t
    }

    #[test]
    fn trailing_nul_padding_ends_the_text() {
        let bytes = qemu_style("RW 2048 FLAT \"d-flat.vmdk\" 0");
        assert!(looks_like_descriptor(&bytes));
        let d = parse_descriptor(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(d.extents.len(), 1);
        assert_eq!(d.size(), Some(2048 * 512));
        assert_eq!(d.adapter_type(), Some("ide"));
    }

    #[test]
    fn nul_before_text_is_refused() {
        let mut bytes = qemu_style("RW 2048 FLAT \"d-flat.vmdk\" 0");
        let at = bytes.iter().position(|&b| b == 0).unwrap();
        bytes.truncate(at);
        bytes.extend_from_slice(b"\0\0ddb.uuid = \"60\"\n\0\0");
        let err = parse_descriptor(std::str::from_utf8(&bytes).unwrap()).unwrap_err();
        assert!(err.contains("NUL byte"), "{err}");
        // And inside a comment: a NUL is never part of a descriptor's text.
        let err = parse_descriptor("# a\0b\ncreateType=\"vmfs\"\n").unwrap_err();
        assert!(err.contains("line 1: contains a NUL byte"), "{err}");
    }

    #[test]
    fn fields_apart_by_runs_of_spaces_and_tabs() {
        let d = parse_descriptor(
            "createType=\"twoGbMaxExtentFlat\"\nRW  4192256\tFLAT \t \"my disk-f001.vmdk\"\t 0\n\
             RDONLY\t8 \t ZERO\nRW 16 VMFS  \"x-flat.vmdk\"  \n",
        )
        .unwrap();
        let e: Vec<_> = d
            .extents
            .iter()
            .map(|e| {
                (
                    e.access.as_str(),
                    e.sectors,
                    e.kind.as_str(),
                    e.file.as_str(),
                    e.offset,
                )
            })
            .collect();
        assert_eq!(
            e,
            [
                ("RW", 4192256, "FLAT", "my disk-f001.vmdk", 0),
                ("RDONLY", 8, "ZERO", "", 0),
                ("RW", 16, "VMFS", "x-flat.vmdk", 0),
            ]
        );
    }
}
