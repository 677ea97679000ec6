//! Disk sources: a raw image, or a VMDK descriptor whose flat extent holds
//! the data. Opening one yields a reader, a size and what the descriptor
//! says about the disk.

use crate::archive_file::read_full;
use crate::error::{Error, Result};
use crate::meta::Metadata;
use crate::vmdk::{self, Descriptor};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An opened source disk, positioned at its first byte.
#[derive(Debug)]
pub struct DiskSource {
    pub file: File,
    /// The file the bytes come from (the flat extent for a descriptor).
    pub data_path: PathBuf,
    /// The disk size in bytes.
    pub size: u64,
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

    /// The reader for the disk's bytes (exactly `size` of them).
    pub fn reader(&mut self) -> impl Read + '_ {
        (&mut self.file).take(self.size)
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
