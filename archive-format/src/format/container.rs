//! What kind of file something is, by its bytes, never by its name: a full
//! image, a delta archive, a disk image container sdar does not read, or
//! anything else. [`file_kind`] is the one place that decides; everything
//! that needs to know (info and verify choosing their path, the search for
//! a full, the refusal to overwrite a backup, the refusal to back up a
//! qcow2's clusters or a VHD's footer as if they were the guest's disk)
//! asks it. The readers still check their own magic when they open a file.
//!
//! A foreign container is refused with the command that turns it into
//! something sdar reads.

use crate::bytes::ReadAt;
use crate::codec::Codec;
use crate::display::shell_word;
use crate::error::{Error, Result};
use crate::input::{open_input, InputKind};
use crate::layout::{GZIP_RECORD_HEAD_LEN, TRAILER_LEN, TRAILER_MAGIC};
use std::fs::File;
use std::io;
use std::path::Path;

/// What a file is, by its first and last bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Starts with a full image's first record, a record in this codec's
    /// container (SPEC.md §4.2, §4.3).
    Full(Codec),
    /// Ends with a delta archive's trailer (SPEC.md §13).
    Delta,
    /// A disk image container sdar does not read.
    Foreign(Container),
    /// None of these: a raw disk, a descriptor, or anything else.
    Other,
}

impl FileKind {
    /// True for a full image or a delta archive: a file sdar never
    /// overwrites.
    pub fn is_backup(self) -> bool {
        matches!(self, FileKind::Full(_) | FileKind::Delta)
    }
}

/// Opens `path` as an input that must be a regular file (a FIFO or a
/// device is refused before a byte is read) and says what it holds.
pub fn open_classified(path: &Path) -> Result<(File, FileKind)> {
    let file = open_input(path, InputKind::Regular)?;
    let kind = file_kind(&file).map_err(|e| Error::io(path, None, e))?;
    Ok((file, kind))
}

/// What `src` (a file, a device, bytes in memory or anything else read at
/// offsets) holds, from its first [`HEAD_LEN`] and last [`VHD_FOOTER_LEN`]
/// bytes, asked for together. A file too short for a magic is
/// [`FileKind::Other`].
pub fn file_kind<R: ReadAt + ?Sized>(src: &R) -> io::Result<FileKind> {
    let len = src.size()?;
    // Both fit in memory: at most HEAD_LEN and VHD_FOOTER_LEN bytes.
    let mut head = vec![0u8; len.min(HEAD_LEN as u64) as usize];
    let tail_at = len.saturating_sub(VHD_FOOTER_LEN);
    let mut tail = vec![0u8; (len - tail_at) as usize];
    src.read_ranges(&mut [(0, &mut head[..]), (tail_at, &mut tail[..])])?;
    // A delta starts with the restore program, so its end says what it is.
    let trailer_magic = tail
        .len()
        .checked_sub(TRAILER_LEN)
        .and_then(|at| tail.get(at..at + TRAILER_MAGIC.len()));
    if trailer_magic == Some(&TRAILER_MAGIC[..]) {
        return Ok(FileKind::Delta);
    }
    if let Some(codec) = Codec::sniff(&head) {
        return Ok(FileKind::Full(codec));
    }
    Ok(detect(&head, &tail).map_or(FileKind::Other, FileKind::Foreign))
}

/// Whether `src` is a full image or a delta archive, from the few bytes
/// that say so (its first record's head and its last [`TRAILER_LEN`]
/// bytes), without looking for foreign containers: what a catalog asks of
/// every file of a backup share, reading as little as it can.
pub fn backup_kind<R: ReadAt + ?Sized>(src: &R) -> io::Result<FileKind> {
    let len = src.size()?;
    let mut head = vec![0u8; len.min(GZIP_RECORD_HEAD_LEN as u64) as usize];
    let tail_at = len.saturating_sub(TRAILER_LEN as u64);
    let mut tail = vec![0u8; (len - tail_at) as usize];
    src.read_ranges(&mut [(0, &mut head[..]), (tail_at, &mut tail[..])])?;
    if tail.len() == TRAILER_LEN && tail.starts_with(&TRAILER_MAGIC) {
        return Ok(FileKind::Delta);
    }
    Ok(Codec::sniff(&head).map_or(FileKind::Other, FileKind::Full))
}

/// A container format sdar does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Qcow2,
    Qed,
    Vdi,
    /// A VHD with its footer at the end (fixed) or a copy at 0 (dynamic).
    Vhd,
    Vhdx,
    /// A hosted sparse extent (`KDMV`): monolithicSparse, a split sparse
    /// extent, or streamOptimized.
    SparseVmdk,
    /// An ESX 2 sparse extent (`COWD`).
    CowdVmdk,
}

impl Container {
    /// The format's name for people.
    pub fn name(self) -> &'static str {
        match self {
            Container::Qcow2 => "a qcow2 image",
            Container::Qed => "a QED image",
            Container::Vdi => "a VirtualBox VDI image",
            Container::Vhd => "a VHD image",
            Container::Vhdx => "a VHDX image",
            Container::SparseVmdk => "a sparse or streamOptimized VMDK",
            Container::CowdVmdk => "a sparse VMDK (COWD, ESX snapshot or sparse extent)",
        }
    }

    /// The format's name for `qemu-img -f`.
    pub fn qemu_format(self) -> &'static str {
        match self {
            Container::Qcow2 => "qcow2",
            Container::Qed => "qed",
            Container::Vdi => "vdi",
            Container::Vhd => "vpc",
            Container::Vhdx => "vhdx",
            Container::SparseVmdk | Container::CowdVmdk => "vmdk",
        }
    }
}

/// Bytes sdar reads from the start of a file to recognise it.
pub const HEAD_LEN: usize = 512;
/// The VHD footer: the last 512 bytes of every VHD (SPEC of Microsoft's
/// "Virtual Hard Disk Image Format", "Hard Disk Footer Format").
pub const VHD_FOOTER_LEN: u64 = 512;
const VHD_COOKIE: &[u8] = b"conectix";
const VDI_SIGNATURE_OFFSET: usize = 0x40;
const VDI_SIGNATURE: u32 = 0xbeda_107f;

/// The container `head` (the file's first bytes, up to [`HEAD_LEN`]) and
/// `tail` (its last [`VHD_FOOTER_LEN`] bytes, or fewer for a short file)
/// show, if any.
fn detect(head: &[u8], tail: &[u8]) -> Option<Container> {
    if head.starts_with(b"QFI\xfb") {
        return Some(Container::Qcow2);
    }
    if head.starts_with(b"QED\0") {
        return Some(Container::Qed);
    }
    if head.starts_with(b"vhdxfile") {
        return Some(Container::Vhdx);
    }
    if head.starts_with(b"KDMV") {
        return Some(Container::SparseVmdk);
    }
    if head.starts_with(b"COWD") {
        return Some(Container::CowdVmdk);
    }
    // A dynamic VHD starts with a copy of its footer; a fixed one is the
    // raw disk followed by the footer alone.
    if head.starts_with(VHD_COOKIE) || tail.starts_with(VHD_COOKIE) {
        return Some(Container::Vhd);
    }
    let vdi = head
        .get(VDI_SIGNATURE_OFFSET..VDI_SIGNATURE_OFFSET + 4)
        .is_some_and(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) == VDI_SIGNATURE);
    if vdi {
        return Some(Container::Vdi);
    }
    None
}

/// createType values of descriptors whose extents are sparse (grain
/// tables), which sdar cannot read as flat bytes.
pub fn is_sparse_create_type(create_type: &str) -> bool {
    matches!(
        create_type.to_ascii_lowercase().as_str(),
        "monolithicsparse"
            | "twogbmaxextentsparse"
            | "vmfssparse"
            | "sesparse"
            | "vsansparse"
            | "streamoptimized"
    )
}

/// Extent kinds that hold grain tables rather than flat bytes.
pub fn is_sparse_extent(kind: &str) -> bool {
    matches!(kind, "SPARSE" | "VMFSSPARSE" | "SESPARSE")
}

/// What to tell the user about `path`, which is `what` in qemu-img's
/// `format`: the commands that give sdar a raw disk to read. `by_magic`
/// says it was recognised by its first or last bytes, which a raw disk
/// could hold by chance; a descriptor's createType is not such a chance.
pub fn refusal(path: &Path, what: &str, format: &str, by_magic: bool) -> String {
    let src = shell_word(&path.display().to_string());
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    let raw = shell_word(
        &path
            .with_file_name(format!("{stem}.raw"))
            .display()
            .to_string(),
    );
    let mut text = format!(
        "this is {what}, not a raw disk, and sdar reads raw disks and flat VMDKs. \
         Convert it to a raw disk and give sdar that:\n  qemu-img convert -f {format} -O raw {src} {raw}\n\
         or, to read it without a copy, attach it read-only as a block device (as root) and give sdar /dev/nbd0:\n  \
         modprobe nbd && qemu-nbd -r -f {format} -c /dev/nbd0 {src}\n  (qemu-nbd -d /dev/nbd0 when done)"
    );
    if format == "vmdk" {
        text += &format!(
            "\nOn ESXi, cloning it to a flat disk works too: vmkfstools -i {src} -d eagerzeroedthick NEW.vmdk"
        );
    }
    if by_magic {
        text += "\nIf the file really is a raw disk that merely holds these bytes, give --source-format raw.";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; HEAD_LEN];
        h[at..at + bytes.len()].copy_from_slice(bytes);
        h
    }

    #[test]
    fn magics_are_recognised() {
        let none = [0u8; 512];
        for (head, want) in [
            (head_with(0, b"QFI\xfb\0\0\0\x03"), Container::Qcow2),
            (head_with(0, b"QED\0"), Container::Qed),
            (head_with(0, b"vhdxfile"), Container::Vhdx),
            (head_with(0, b"KDMV\x01\0\0\0"), Container::SparseVmdk),
            (head_with(0, b"COWD"), Container::CowdVmdk),
            (head_with(0, b"conectix"), Container::Vhd),
            (head_with(0x40, &[0x7f, 0x10, 0xda, 0xbe]), Container::Vdi),
        ] {
            assert_eq!(detect(&head, &none), Some(want));
        }
        assert_eq!(
            detect(&none, &head_with(0, b"conectix")),
            Some(Container::Vhd)
        );
        assert_eq!(detect(&none, &none), None);
        assert_eq!(detect(b"QF", b""), None);
        assert_eq!(detect(b"", b""), None);
    }

    /// Each kind from a file holding just its magic, and what is not one.
    #[test]
    fn file_kinds_are_told_by_their_bytes() {
        use crate::layout::{GZIP_RECORD_PREFIX, GZIP_SUBFIELD_ID, ZSTD_RECORD_MAGIC};
        let mut gzip = vec![0u8; 4096];
        gzip[..10].copy_from_slice(&GZIP_RECORD_PREFIX);
        gzip[12..14].copy_from_slice(&GZIP_SUBFIELD_ID);
        let mut zstd = vec![0u8; 100];
        zstd[..4].copy_from_slice(&ZSTD_RECORD_MAGIC.to_le_bytes());
        // An ELF program with a trailer; the magic at the wrong place is not.
        let mut delta = b"\x7fELF".to_vec();
        delta.resize(1000, 0);
        let trailer_at = delta.len() - TRAILER_LEN;
        delta[trailer_at..trailer_at + 8].copy_from_slice(&TRAILER_MAGIC);
        let mut shifted = delta.clone();
        shifted.push(0);
        let mut fixed_vhd = vec![0u8; 8192];
        fixed_vhd[8192 - 512..][..8].copy_from_slice(VHD_COOKIE);
        let dir = tempfile::tempdir().unwrap();
        for (bytes, want) in [
            (gzip, FileKind::Full(Codec::Gzip)),
            (zstd, FileKind::Full(Codec::Zstd)),
            (delta, FileKind::Delta),
            (TRAILER_MAGIC.to_vec(), FileKind::Other),
            (shifted, FileKind::Other),
            (
                head_with(0, b"QFI\xfb"),
                FileKind::Foreign(Container::Qcow2),
            ),
            (fixed_vhd, FileKind::Foreign(Container::Vhd)),
            (vec![0u8; 1 << 20], FileKind::Other),
            (b"QF".to_vec(), FileKind::Other),
            (Vec::new(), FileKind::Other),
        ] {
            let path = dir.path().join("f");
            std::fs::write(&path, &bytes).unwrap();
            let (_, kind) = open_classified(&path).unwrap();
            assert_eq!(kind, want, "{} bytes", bytes.len());
            assert_eq!(file_kind(&bytes[..]).unwrap(), want, "in memory");
            assert_eq!(
                kind.is_backup(),
                matches!(want, FileKind::Full(_) | FileKind::Delta)
            );
        }
        assert!(open_classified(dir.path()).is_err(), "a folder is refused");
    }

    #[test]
    fn refusal_quotes_paths() {
        let text = refusal(Path::new("my disk.qcow2"), "a qcow2 image", "qcow2", true);
        assert!(
            text.contains("qemu-img convert -f qcow2 -O raw 'my disk.qcow2' 'my disk.raw'"),
            "{text}"
        );
    }
}
