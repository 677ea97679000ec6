//! Disk sources: a raw image or block device, or a VMDK descriptor whose
//! flat extents (one, or several joined in order, as a split disk has)
//! hold the data. Opening one yields a reader, a size and what the
//! descriptor says about the disk; container formats that are not raw
//! disks (`container.rs`) are refused before anything is read as data.
//! The writers read the disk through `DiskBytes`, which also tells them
//! where the files have holes, so that the unallocated part of a
//! thin-provisioned disk is never read.

use crate::archive_file::read_full;
use crate::container;
use crate::error::{Error, Result};
use crate::input::{open_input, InputKind};
use crate::meta::Metadata;
use crate::vmdk::{self, Descriptor};
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How to read a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceFormat {
    /// A VMDK descriptor is read as one; a container format that is not a
    /// raw disk (qcow2, VHD, ...) is refused.
    #[default]
    Auto,
    /// The file's bytes are the disk, whatever they start with.
    Raw,
}

/// An opened source disk: one or more files (the extents of a split VMDK)
/// read one after the other as one disk.
#[derive(Debug)]
pub struct DiskSource {
    /// The first file the bytes come from (the flat extent for a
    /// descriptor); [`DiskSource::data_paths`] lists them all.
    pub data_path: PathBuf,
    /// The disk size in bytes.
    pub size: u64,
    /// Where the disk's first byte is in its first file (non-zero for a
    /// flat extent that starts at an offset).
    pub start: u64,
    /// The descriptor, when the source was one.
    pub descriptor: Option<Descriptor>,
    /// The file named on the command line, for messages.
    path: PathBuf,
    files: Vec<DataFile>,
    /// In disk order, back to back from byte 0 to `size`.
    pieces: Vec<Piece>,
}

/// One file holding disk bytes, and how it looked when it was opened.
#[derive(Debug)]
struct DataFile {
    path: PathBuf,
    file: File,
    stamp: Stamp,
}

/// Size, modification and change time: a file written to while sdar reads
/// it changes at least one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(file: &File, path: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(|e| Error::io(path, None, e))?;
        Ok(Stamp {
            len: file_len(file, &meta, path)?,
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// `len` bytes of the disk from `disk_start`: from a file at `file_offset`,
/// or zeros (a ZERO extent) when `file` is `None`.
#[derive(Clone, Copy, Debug)]
struct Piece {
    disk_start: u64,
    len: u64,
    file: Option<(usize, u64)>,
}

impl Piece {
    fn disk_end(&self) -> u64 {
        self.disk_start + self.len
    }
}

impl DiskSource {
    /// Opens `path`: a VMDK descriptor (monolithicFlat, twoGbMaxExtentFlat
    /// or vmfs, with FLAT, VMFS or ZERO extents) or anything else that is
    /// not a known container format as a raw image.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_as(path, SourceFormat::Auto)
    }

    /// Opens `path` read as `format`. A FIFO, a character device or a
    /// folder is refused at once, before anything is read.
    pub fn open_as(path: &Path, format: SourceFormat) -> Result<Self> {
        let file = open_input(path, InputKind::Disk)?;
        let stamp = Stamp::of(&file, path)?;
        let len = stamp.len;
        if format == SourceFormat::Auto {
            let source_err = |what: String| Error::Source {
                file: path.to_path_buf(),
                what,
            };
            let kind = container::file_kind(&file).map_err(|e| Error::io(path, None, e))?;
            if let container::FileKind::Foreign(found) = kind {
                return Err(source_err(container::refusal(
                    path,
                    found.name(),
                    found.qemu_format(),
                    true,
                )));
            }
            let head = read_head(&file, path, len)?;
            if vmdk::looks_like_descriptor(&head) {
                // No raw disk starts with a descriptor's header; a descriptor
                // this long is damaged or crafted, not a disk to back up.
                if len > vmdk::MAX_DESCRIPTOR_LEN as u64 {
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
        }
        check_size(path, len)?;
        Ok(DiskSource {
            data_path: path.to_path_buf(),
            size: len,
            start: 0,
            descriptor: None,
            path: path.to_path_buf(),
            files: vec![DataFile {
                path: path.to_path_buf(),
                file,
                stamp,
            }],
            pieces: vec![Piece {
                disk_start: 0,
                len,
                file: Some((0, 0)),
            }],
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
        if container::is_sparse_create_type(ct)
            || descriptor
                .extents
                .iter()
                .any(|e| container::is_sparse_extent(&e.kind))
        {
            return Err(source_err(container::refusal(
                path,
                &format!("a sparse VMDK descriptor (createType \"{ct}\")"),
                "vmdk",
                false,
            )));
        }
        if !matches!(ct, "monolithicFlat" | "vmfs" | "twoGbMaxExtentFlat") {
            return Err(source_err(format!(
                "createType \"{ct}\" is not supported: sdar reads monolithicFlat, twoGbMaxExtentFlat and vmfs descriptors"
            )));
        }
        if descriptor.extents.is_empty() {
            return Err(source_err("the descriptor has no extent lines".into()));
        }
        let several = descriptor.extents.len() > 1;
        let mut files: Vec<DataFile> = Vec::new();
        let mut pieces = Vec::with_capacity(descriptor.extents.len());
        let mut size = 0u64;
        for (i, extent) in descriptor.extents.iter().enumerate() {
            let at = if several {
                format!("extent {}: ", i + 1)
            } else {
                String::new()
            };
            if !matches!(extent.kind.as_str(), "FLAT" | "VMFS" | "ZERO") {
                return Err(source_err(format!(
                    "{at}extent type {} is not a flat extent",
                    extent.kind
                )));
            }
            if extent.access == "NOACCESS" {
                return Err(source_err(format!("{at}the extent is NOACCESS")));
            }
            let len = extent
                .sectors
                .checked_mul(vmdk::SECTOR)
                .ok_or_else(|| source_err(format!("{at}extent size overflows")))?;
            let disk_start = size;
            size = size
                .checked_add(len)
                .ok_or_else(|| source_err("the extents' total size overflows".into()))?;
            if extent.kind == "ZERO" {
                pieces.push(Piece {
                    disk_start,
                    len,
                    file: None,
                });
                continue;
            }
            let name = Path::new(&extent.file);
            if extent.file.is_empty() || name.is_absolute() || name.components().count() != 1 {
                return Err(source_err(format!(
                    "{at}extent file \"{}\" must be a plain file name beside the descriptor",
                    extent.file
                )));
            }
            let start = extent
                .offset
                .checked_mul(vmdk::SECTOR)
                .ok_or_else(|| source_err(format!("{at}extent offset overflows")))?;
            let data_path = path.parent().unwrap_or(Path::new(".")).join(name);
            let index = match files.iter().position(|f| f.path == data_path) {
                Some(index) => index,
                None => {
                    let file = open_input(&data_path, InputKind::Disk)?;
                    let stamp = Stamp::of(&file, &data_path)?;
                    files.push(DataFile {
                        path: data_path.clone(),
                        file,
                        stamp,
                    });
                    files.len() - 1
                }
            };
            let flat_len = files[index].stamp.len;
            if start.checked_add(len).is_none_or(|end| end > flat_len) {
                return Err(Error::Source {
                    file: data_path,
                    what: format!(
                        "{at}the flat extent is {flat_len} bytes, but the descriptor declares {len} bytes from byte {start}"
                    ),
                });
            }
            pieces.push(Piece {
                disk_start,
                len,
                file: Some((index, start)),
            });
        }
        check_size(path, size)?;
        let first = pieces.iter().find_map(|p| p.file);
        Ok(DiskSource {
            data_path: first.map_or(path.to_path_buf(), |(i, _)| files[i].path.clone()),
            size,
            start: first.map_or(0, |(_, start)| start),
            descriptor: Some(descriptor),
            path: path.to_path_buf(),
            files,
            pieces,
        })
    }

    /// Every file the disk's bytes come from, in the order first used.
    pub fn data_paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// The file to name in errors about the disk's bytes: the one data
    /// file, or the descriptor that joins several.
    pub fn name(&self) -> &Path {
        match self.files.as_slice() {
            [one] => &one.path,
            _ => &self.path,
        }
    }

    /// Which data files changed (size, modification or change time) since
    /// they were opened, as a sentence; `None` when none did. A disk that
    /// changed while it was read may be torn: blocks from before and after
    /// the change. (A block device's times say nothing about writes to it,
    /// so for one only a change of size shows.)
    pub fn changed_since_open(&self) -> Option<String> {
        let changed: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| {
                let now = Stamp::of(&f.file, &f.path).ok();
                match now {
                    Some(now) if now == f.stamp => None,
                    Some(now) if now.len != f.stamp.len => Some(format!(
                        "{} (its size went from {} to {} bytes)",
                        f.path.display(),
                        f.stamp.len,
                        now.len
                    )),
                    Some(_) => Some(format!("{} (it was written to)", f.path.display())),
                    None => Some(format!(
                        "{} (it can no longer be examined)",
                        f.path.display()
                    )),
                }
            })
            .collect();
        (!changed.is_empty()).then(|| changed.join(", "))
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
            files: &self.files,
            pieces: &self.pieces,
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

/// The disk's bytes in its files: each piece read at offsets in its file,
/// with the holes found by `lseek(SEEK_DATA)` and `SEEK_HOLE`. A block
/// device, or a file system that cannot tell, reports no holes, and then
/// every byte is read.
#[derive(Debug)]
pub struct DiskFile<'a> {
    files: &'a [DataFile],
    pieces: &'a [Piece],
    size: u64,
    /// False once a file system failed to answer: then stop asking.
    holes_known: bool,
}

impl DiskFile<'_> {
    /// The piece holding disk byte `offset`, if it is before the end.
    fn piece_at(&self, offset: u64) -> Option<usize> {
        let i = self.pieces.partition_point(|p| p.disk_end() <= offset);
        (i < self.pieces.len()).then_some(i)
    }

    /// `e` with the file's name, when the disk has several files and the
    /// caller can name only the disk.
    fn named(&self, file: usize, e: io::Error) -> io::Error {
        if self.files.len() > 1 {
            io::Error::new(
                e.kind(),
                format!("{}: {e}", self.files[file].path.display()),
            )
        } else {
            e
        }
    }

    /// The first data at or after disk byte `from` inside piece `i`, if
    /// its file has any there; `Err` when the file system cannot tell.
    fn data_in(&mut self, i: usize, from: u64) -> std::result::Result<Option<Range<u64>>, ()> {
        use rustix::fs::{seek, SeekFrom};
        let piece = self.pieces[i];
        let Some((index, file_start)) = piece.file else {
            return Ok(None);
        };
        let file = &self.files[index].file;
        let at = file_start + (from - piece.disk_start);
        let file_end = file_start + piece.len;
        let to_disk = |x: u64| piece.disk_start + (x.min(file_end) - file_start);
        match seek(file, SeekFrom::Data(at)) {
            Ok(data) if data.max(at) >= file_end => Ok(None),
            Ok(data) => {
                let data = data.max(at);
                // The end of the file counts as a hole, so SEEK_HOLE after
                // data always has an answer; if it fails anyway, read on.
                let hole = seek(file, SeekFrom::Hole(data)).unwrap_or(u64::MAX);
                Ok(Some(to_disk(data)..to_disk(hole.max(data))))
            }
            // lseek(2): no data from `at` to the end of the file. A file
            // that now ends before its piece does is read instead, so that
            // it is reported short rather than taken as zeros.
            Err(rustix::io::Errno::NXIO) => Ok(match file.metadata() {
                Ok(m) if m.len() >= file_end => None,
                _ => Some(from..piece.disk_end()),
            }),
            // EINVAL where the file system has no SEEK_DATA, or any other
            // failure: reading every byte is always right, only slower.
            Err(_) => Err(()),
        }
    }
}

impl DiskBytes for DiskFile<'_> {
    fn fill_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(self.size.saturating_sub(offset) as usize);
        let mut filled = 0;
        while filled < len {
            let pos = offset + filled as u64;
            let Some(i) = self.piece_at(pos) else { break };
            let piece = self.pieces[i];
            let take = (len - filled).min((piece.disk_end() - pos) as usize);
            let out = &mut buf[filled..filled + take];
            let Some((index, file_start)) = piece.file else {
                out.fill(0);
                filled += take;
                continue;
            };
            let at = file_start + (pos - piece.disk_start);
            match self.files[index].file.read_at(out, at) {
                // The file ended early: the caller reports the disk short.
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.named(index, e)),
            }
        }
        Ok(filled)
    }

    fn data_from(&mut self, offset: u64) -> io::Result<Range<u64>> {
        if !self.holes_known {
            return Ok(offset..u64::MAX);
        }
        let mut from = offset;
        while let Some(i) = self.piece_at(from) {
            match self.data_in(i, from) {
                Ok(Some(data)) => return Ok(data),
                Ok(None) => from = self.pieces[i].disk_end(),
                Err(()) => {
                    self.holes_known = false;
                    return Ok(from..u64::MAX);
                }
            }
        }
        Ok(u64::MAX..u64::MAX)
    }
}

/// Refuses a disk larger than any reader accepts (`Limits::default()`):
/// a backup of it could never be read back. A descriptor's ZERO extents
/// have no file to bound them, so this is the only bound on their size.
fn check_size(path: &Path, size: u64) -> Result<()> {
    let limit = crate::Limits::default().max_image_size;
    if size > limit {
        return Err(Error::Source {
            file: path.to_path_buf(),
            what: format!(
                "the disk is {size} bytes, above the limit of {limit} bytes ({} TiB) that sdar reads back",
                limit >> 40
            ),
        });
    }
    Ok(())
}

/// The first bytes of a file, enough to tell a descriptor: at most a descriptor's largest size, never more. Read by
/// position from byte 0, never through the cursor: finding a block
/// device's size leaves the cursor at its end.
fn read_head(file: &File, path: &Path, len: u64) -> Result<Vec<u8>> {
    let limit = len.min(vmdk::MAX_DESCRIPTOR_LEN as u64) as usize;
    let mut head = vec![0u8; limit];
    let mut done = 0;
    while done < limit {
        match file.read_at(&mut head[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, Some(done as u64), e)),
        }
    }
    head.truncate(done);
    Ok(head)
}

/// The size of a regular file or a block device. A block device reports a
/// length of 0 in its metadata, so its size is found by seeking to its end
/// (through the descriptor: reads are positioned, so where it is left does
/// not matter).
fn file_len(file: &File, meta: &std::fs::Metadata, path: &Path) -> Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    if meta.file_type().is_block_device() {
        return rustix::fs::seek(file, rustix::fs::SeekFrom::End(0))
            .map_err(|e| Error::io(path, None, io::Error::from_raw_os_error(e.raw_os_error())));
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// Reads the whole disk as the writers do: data runs by `data_from`,
    /// read by `fill_at`, the rest zeros.
    fn read_all(source: &mut DiskSource) -> Vec<u8> {
        let size = source.size;
        let mut r = source.reader();
        let mut out = vec![0u8; size as usize];
        let mut at = 0;
        while at < size {
            let data = r.data_from(at).unwrap();
            if data.start >= size {
                break;
            }
            let end = data.end.min(size);
            let n = r
                .fill_at(data.start, &mut out[data.start as usize..end as usize])
                .unwrap();
            assert_eq!(n as u64, end - data.start);
            at = end;
        }
        out
    }

    fn bytes(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn extents_of_unequal_sizes_read_as_one_disk() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Extent 1: 3 sectors after 1 sector that is not the disk's, in a
        // file with a hole; extent 2: 8 zero sectors; extent 3: 5 sectors,
        // and extent 4 the rest of extent 1's file.
        let mut f1 = File::create(d.join("a-f001.vmdk")).unwrap();
        f1.write_all(&[0xee; 512]).unwrap();
        f1.write_all(&bytes(1, 1024)).unwrap();
        f1.seek(SeekFrom::Start(8192 * 64)).unwrap();
        f1.write_all(&bytes(2, 512)).unwrap();
        std::fs::write(d.join("a-f002.vmdk"), bytes(3, 5 * 512)).unwrap();
        let first = 3 * 512;
        let desc = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
            createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\n\
            RW 3 FLAT \"a-f001.vmdk\" 1\nRW 8 ZERO\nRW 5\tFLAT  \"a-f002.vmdk\" 0\n\
            RW 1021 FLAT \"a-f001.vmdk\" 4\n\n# The Disk Data Base\n#DDB\n";
        let mut padded = desc.as_bytes().to_vec();
        padded.resize(1024, 0);
        std::fs::write(d.join("a.vmdk"), &padded).unwrap();
        let mut source = DiskSource::open(&d.join("a.vmdk")).unwrap();
        assert_eq!(source.size, (3 + 8 + 5 + 1021) * 512);
        let mut expected = vec![0u8; source.size as usize];
        let file1 = std::fs::read(d.join("a-f001.vmdk")).unwrap();
        expected[..first].copy_from_slice(&file1[512..512 + first]);
        expected[11 * 512..16 * 512].copy_from_slice(&bytes(3, 5 * 512));
        expected[16 * 512..].copy_from_slice(&file1[4 * 512..1025 * 512]);
        assert!(read_all(&mut source) == expected, "the disk differs");
        let paths: Vec<_> = source.data_paths().map(Path::to_path_buf).collect();
        assert_eq!(paths, [d.join("a-f001.vmdk"), d.join("a-f002.vmdk")]);
        assert_eq!(source.name(), d.join("a.vmdk"));
        assert_eq!(source.changed_since_open(), None);
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("a-f002.vmdk"))
            .unwrap()
            .write_all(b"x")
            .unwrap();
        let changed = source.changed_since_open().unwrap();
        assert!(changed.contains("a-f002.vmdk"), "{changed}");
    }

    #[test]
    fn extent_files_shorter_than_their_lines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("b-f001.vmdk"), vec![1u8; 4 * 512]).unwrap();
        std::fs::write(d.join("b-f002.vmdk"), vec![2u8; 2 * 512]).unwrap();
        let desc = |second: u64| {
            format!(
                "# Disk DescriptorFile\ncreateType=\"twoGbMaxExtentFlat\"\n\
                 RW 4 FLAT \"b-f001.vmdk\" 0\nRW {second} FLAT \"b-f002.vmdk\" 0\n"
            )
        };
        std::fs::write(d.join("b.vmdk"), desc(3)).unwrap();
        let err = DiskSource::open(&d.join("b.vmdk")).unwrap_err().to_string();
        assert!(
            err.contains("b-f002.vmdk") && err.contains("extent 2"),
            "{err}"
        );
        std::fs::write(d.join("b.vmdk"), desc(2)).unwrap();
        assert_eq!(DiskSource::open(&d.join("b.vmdk")).unwrap().size, 6 * 512);
    }

    #[test]
    fn raw_format_reads_a_container_magic_as_disk_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.raw");
        let mut disk = b"QFI\xfb".to_vec();
        disk.resize(4096, 7);
        std::fs::write(&p, &disk).unwrap();
        let err = DiskSource::open(&p).unwrap_err().to_string();
        assert!(
            err.contains("qcow2") && err.contains("qemu-img convert -f qcow2"),
            "{err}"
        );
        let mut source = DiskSource::open_as(&p, SourceFormat::Raw).unwrap();
        assert_eq!(read_all(&mut source), disk);
    }
}
