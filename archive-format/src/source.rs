//! Disk sources: a raw image, or a VMDK descriptor whose flat extent holds
//! the data. Opening one yields a reader, a size and what the descriptor
//! says about the disk. The writers read it through `DiskBytes`, which
//! also tells them where the file has holes, so that the unallocated part
//! of a thin-provisioned disk is never read.

use crate::archive_file::read_full;
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::vmdk::{self, Descriptor};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An opened source disk, positioned at its first byte.
#[derive(Debug)]
pub struct DiskSource {
    pub file: File,
    /// The file the bytes come from (the flat extent for a descriptor).
    pub data_path: PathBuf,
    /// The disk size in bytes.
    pub size: u64,
    /// Where the disk's first byte is in `file` (non-zero for a flat
    /// extent that starts at an offset).
    pub start: u64,
    /// The descriptor, when the source was one.
    pub descriptor: Option<Descriptor>,
}

impl DiskSource {
    /// Opens `path`: a VMDK descriptor (monolithicFlat or vmfs, one extent)
    /// or anything else as a raw image.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, None, e))?;
        let len = disk_len(&mut file, path)?;
        let mut head = vec![0u8; (len as usize).min(vmdk::MAX_DESCRIPTOR_LEN)];
        let n = read_full(&mut file, &mut head).map_err(|e| Error::io(path, Some(0), e))?;
        head.truncate(n);
        let source_err = |what: String| Error::Source {
            file: path.to_path_buf(),
            what,
        };
        if head.starts_with(b"KDMV") || head.starts_with(b"COWD") {
            return Err(source_err(
                "this is a sparse VMDK; sdar reads flat disks: convert it first (qemu-img convert -O raw, or vmkfstools -d eagerzeroedthick)".into(),
            ));
        }
        if vmdk::looks_like_descriptor(&head) {
            // No raw disk starts with a descriptor's header; a descriptor this
            // long is damaged or crafted, not a disk to back up as it is.
            if len as usize > vmdk::MAX_DESCRIPTOR_LEN {
                return Err(source_err(format!(
                    "this looks like a VMDK descriptor but is {len} bytes; descriptors are at most {} bytes",
                    vmdk::MAX_DESCRIPTOR_LEN
                )));
            }
            let text = std::str::from_utf8(&head)
                .map_err(|_| source_err("descriptor is not UTF-8".into()))?;
            let descriptor = vmdk::parse_descriptor(text).map_err(source_err)?;
            return Self::open_descriptor(path, descriptor);
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, Some(0), e))?;
        Ok(DiskSource {
            file,
            data_path: path.to_path_buf(),
            size: len,
            start: 0,
            descriptor: None,
        })
    }

    fn open_descriptor(path: &Path, descriptor: Descriptor) -> Result<Self> {
        let source_err = |what: String| Error::Source {
            file: path.to_path_buf(),
            what,
        };
        // The values that become metadata; others are never read.
        const KEPT: [&str; 6] = [
            "ddb.adapterType",
            "ddb.uuid",
            "ddb.virtualHWVersion",
            "ddb.geometry.cylinders",
            "ddb.geometry.heads",
            "ddb.geometry.sectors",
        ];
        if let Some((key, value)) = descriptor
            .entries
            .iter()
            .find(|(k, v)| KEPT.contains(&k.as_str()) && v.len() > crate::MAX_META_TEXT_LEN)
        {
            return Err(source_err(format!(
                "the value of {key} is {} bytes; at most {} are allowed",
                value.len(),
                crate::MAX_META_TEXT_LEN
            )));
        }
        let ct = descriptor.create_type.as_str();
        if !matches!(ct, "monolithicFlat" | "vmfs") {
            return Err(source_err(format!(
                "createType \"{ct}\" is not supported: sdar reads monolithicFlat and vmfs descriptors"
            )));
        }
        let [extent] = descriptor.extents.as_slice() else {
            return Err(source_err(format!(
                "the descriptor has {} extents; sdar reads descriptors with exactly one",
                descriptor.extents.len()
            )));
        };
        if !matches!(extent.kind.as_str(), "FLAT" | "VMFS") {
            return Err(source_err(format!(
                "extent type {} is not a flat extent",
                extent.kind
            )));
        }
        let name = Path::new(&extent.file);
        if extent.file.is_empty() || name.is_absolute() || name.components().count() != 1 {
            return Err(source_err(format!(
                "extent file \"{}\" must be a plain file name beside the descriptor",
                extent.file
            )));
        }
        let data_path = path.parent().unwrap_or(Path::new(".")).join(name);
        let size = extent
            .sectors
            .checked_mul(vmdk::SECTOR)
            .ok_or_else(|| source_err("extent size overflows".into()))?;
        let start = extent
            .offset
            .checked_mul(vmdk::SECTOR)
            .ok_or_else(|| source_err("extent offset overflows".into()))?;
        let mut file = File::open(&data_path).map_err(|e| Error::io(&data_path, None, e))?;
        let flat_len = file
            .metadata()
            .map_err(|e| Error::io(&data_path, None, e))?
            .len();
        if start.checked_add(size).is_none_or(|end| end > flat_len) {
            return Err(Error::Source {
                file: data_path,
                what: format!(
                    "the flat extent is {flat_len} bytes, but the descriptor declares {size} bytes from byte {start}"
                ),
            });
        }
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(&data_path, Some(start), e))?;
        Ok(DiskSource {
            file,
            data_path,
            size,
            start,
            descriptor: Some(descriptor),
        })
    }

    /// Fills the fields of `meta` that the descriptor knows and the caller
    /// left empty: disk name, size, adapter, geometry, UUID, hardware version.
    pub fn describe(&self, source_path: &Path, meta: &mut Metadata) {
        meta.disk_size.get_or_insert(self.size);
        if meta.disk_name.is_none() {
            meta.disk_name = source_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
        }
        if let Some(d) = &self.descriptor {
            if meta.adapter_type.is_none() {
                meta.adapter_type = d.adapter_type().map(str::to_string);
            }
            if meta.geometry.is_none() {
                meta.geometry = d.geometry();
            }
            if meta.disk_uuid.is_none() {
                meta.disk_uuid = d.disk_uuid().map(str::to_string);
            }
            if meta.hw_version.is_none() {
                meta.hw_version = d.hw_version().map(str::to_string);
            }
        }
    }

    /// The disk's bytes (exactly `size` of them) for `write_full` and
    /// `write_delta`, which skip the holes of a sparse file.
    pub fn reader(&mut self) -> DiskFile<'_> {
        DiskFile {
            file: &self.file,
            start: self.start,
            size: self.size,
            holes_known: true,
        }
    }
}

/// A disk's bytes as `write_full` and `write_delta` read them. Every `Read`
/// is one, read once from start to end and all data; a [`DiskFile`] also
/// knows where its file has holes, which read as zeros, so that the writers
/// hash and store those blocks as zero blocks without reading them. The
/// image they write is the same byte for byte either way.
pub trait DiskBytes {
    /// Fills `buf` with the disk's bytes from `offset`, or with as many as
    /// there are before its end; returns how many. Calls come in increasing
    /// order of `offset`; what they pass over is only bytes that
    /// `data_from` reported as a hole. (A `Read` ignores `offset`: it reports
    /// no holes, so nothing is passed over.)
    fn fill_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// The first run of data at or after `offset`: every byte from `offset`
    /// up to its start is zero, and its bytes are to be read (they may be
    /// zeros too). A start past the disk's end means only zeros remain. The
    /// default, for sources that know nothing of holes, is all data.
    fn data_from(&mut self, offset: u64) -> io::Result<Range<u64>> {
        Ok(offset..u64::MAX)
    }
}

impl<R: Read> DiskBytes for R {
    fn fill_at(&mut self, _offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_full(self, buf)
    }
}

/// The disk's bytes in its file: `size` bytes from `start`, read at
/// offsets, with the holes found by `lseek(SEEK_DATA)` and `SEEK_HOLE`. A
/// block device, or a file system that cannot tell, reports no holes, and
/// then every byte is read.
#[derive(Debug)]
pub struct DiskFile<'a> {
    file: &'a File,
    start: u64,
    size: u64,
    /// False once the file system failed to answer: then stop asking.
    holes_known: bool,
}

impl DiskBytes for DiskFile<'_> {
    fn fill_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let len = buf.len().min(self.size.saturating_sub(offset) as usize);
        let mut filled = 0;
        while filled < len {
            match self
                .file
                .read_at(&mut buf[filled..len], self.start + offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn data_from(&mut self, offset: u64) -> io::Result<Range<u64>> {
        use rustix::fs::{seek, SeekFrom};
        if !self.holes_known {
            return Ok(offset..u64::MAX);
        }
        let at = self.start + offset;
        let data = match seek(self.file, SeekFrom::Data(at)) {
            Ok(data) => data.max(at),
            // lseek(2): no data from `at` to the end of the file. A file
            // that now ends before the disk does is read instead, so that
            // it is reported short rather than taken as zeros.
            Err(rustix::io::Errno::NXIO) => {
                let end = self.start + self.size;
                return Ok(match self.file.metadata() {
                    Ok(m) if m.len() >= end => u64::MAX..u64::MAX,
                    _ => offset..u64::MAX,
                });
            }
            // EINVAL where the file system has no SEEK_DATA, or any other
            // failure: reading every byte is always right, only slower.
            Err(_) => {
                self.holes_known = false;
                return Ok(offset..u64::MAX);
            }
        };
        // The end of the file counts as a hole, so SEEK_HOLE after data
        // always has an answer; if it fails anyway, read on to the end.
        let hole = seek(self.file, SeekFrom::Hole(data)).unwrap_or(u64::MAX);
        Ok(data - self.start..hole.max(data) - self.start)
    }
}

/// The size of a regular file or a block device. A block device reports a
/// length of 0 in its metadata, so its size is found by seeking to its end;
/// anything else (a pipe, `/dev/zero`) has no size and is refused rather
/// than backed up as an empty disk.
fn disk_len(file: &mut File, path: &Path) -> Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    let meta = file.metadata().map_err(|e| Error::io(path, None, e))?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(meta.len());
    }
    if kind.is_block_device() {
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, None, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, Some(0), e))?;
        return Ok(len);
    }
    Err(Error::Source {
        file: path.to_path_buf(),
        what: "is neither a regular file nor a block device, so its size is unknown".into(),
    })
}
