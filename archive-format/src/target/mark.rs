//! The restore mark (SPEC.md §19.1 "Restore mark"): a small file beside the
//! destination that proves which partial data file an sdar restore of which
//! image started, and whose `flock` keeps a second restore of either kind
//! away from the same destination name.

use super::files::{create_exclusive, open_nofollow, owned_single_regular};
use crate::error::{Error, Hash, Result};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// SPEC.md §19.1: `magic`.
pub const MARK_MAGIC: [u8; 8] = *b"\x89SDARMK\n";
/// SPEC.md §19.1: `version`.
pub const MARK_VERSION: u16 = 1;
/// SPEC.md §19.1: the mark's length, `crc` included.
pub const MARK_LEN: usize = 68;
const MARK_CRC_OFFSET: usize = 64;
const _: () = assert!(MARK_CRC_OFFSET + 4 == MARK_LEN);

/// SPEC.md §19.1 `kind`.
pub const MARK_KIND_RAW: u8 = 0;
pub const MARK_KIND_VMDK: u8 = 1;

/// SPEC.md §19.1 `stage`: where the data file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkStage {
    /// Under its partial name, being written.
    Writing = 1,
    /// Renamed to its final name; the descriptor is not in place yet.
    Renamed = 2,
}

/// What a mark records (SPEC.md §19.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkRecord {
    pub kind: u8,
    pub stage: MarkStage,
    /// The identity of the image being restored (the delta's DFOT identity).
    pub identity: Hash,
    pub image_size: u64,
    /// The inode number of the data file, on the mark's own filesystem.
    pub data_ino: u64,
}

impl MarkRecord {
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut b = [0u8; MARK_LEN];
        b[0..8].copy_from_slice(&MARK_MAGIC);
        b[8..10].copy_from_slice(&MARK_VERSION.to_le_bytes());
        b[10] = self.kind;
        b[11] = self.stage as u8;
        b[16..48].copy_from_slice(&self.identity);
        b[48..56].copy_from_slice(&self.image_size.to_le_bytes());
        b[56..64].copy_from_slice(&self.data_ino.to_le_bytes());
        let crc = crc32fast::hash(&b[..MARK_CRC_OFFSET]);
        b[MARK_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` for anything but a whole, well-formed version-1 mark.
    pub fn decode(b: &[u8]) -> Option<MarkRecord> {
        if b.len() != MARK_LEN || b[0..8] != MARK_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(b[MARK_CRC_OFFSET..].try_into().ok()?);
        if crc != crc32fast::hash(&b[..MARK_CRC_OFFSET]) {
            return None;
        }
        if u16::from_le_bytes([b[8], b[9]]) != MARK_VERSION || b[12..16] != [0; 4] {
            return None;
        }
        let stage = match b[11] {
            1 => MarkStage::Writing,
            2 => MarkStage::Renamed,
            _ => return None,
        };
        if b[10] > MARK_KIND_VMDK {
            return None;
        }
        Some(MarkRecord {
            kind: b[10],
            stage,
            identity: b[16..48].try_into().ok()?,
            image_size: u64::from_le_bytes(b[48..56].try_into().ok()?),
            data_ino: u64::from_le_bytes(b[56..64].try_into().ok()?),
        })
    }
}

/// The mark file of one destination, held locked while this value lives.
#[derive(Debug)]
pub struct MarkFile {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    /// What the mark said when it was found (`None` for a new or unreadable one).
    pub found: Option<MarkRecord>,
    /// The file was there before this restore (an interrupted one left it).
    pub existed: bool,
    /// Remove the mark when dropped (it no longer describes anything kept).
    pub remove_on_drop: bool,
}

impl MarkFile {
    /// Creates or opens the mark at `path` and locks it; refuses one that
    /// another restore holds, or that is not a file this user's sdar made.
    pub fn lock(path: &Path, dest: &Path) -> Result<MarkFile> {
        // The lock is taken on an open file; a restore that finishes unlinks
        // the mark, so a lock won on a name that changed meanwhile is retried.
        for _ in 0..5 {
            let (file, existed) = match create_exclusive(path, 0o600) {
                Ok(f) => (f, false),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let f = open_nofollow(path, true).map_err(|e| {
                        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                            Error::invalid(format!(
                                "{} is a symbolic link where sdar keeps its restore mark; remove it to restore to {}",
                                path.display(),
                                dest.display()
                            ))
                        } else {
                            Error::io(path, None, e)
                        }
                    })?;
                    if let Err(why) = owned_single_regular(&f) {
                        return Err(Error::invalid(format!(
                            "{} is not a restore mark this user's sdar made ({why}); remove it to restore to {}",
                            path.display(),
                            dest.display()
                        )));
                    }
                    (f, true)
                }
                Err(e) => return Err(Error::io(path, None, e)),
            };
            use rustix::fs::FlockOperation::NonBlockingLockExclusive;
            if rustix::fs::flock(&file, NonBlockingLockExclusive).is_err() {
                return Err(Error::invalid(format!(
                    "another restore to {} is running (it holds {})",
                    dest.display(),
                    path.display()
                )));
            }
            let meta = file.metadata().map_err(|e| Error::io(path, None, e))?;
            let same = path
                .symlink_metadata()
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
            if !same {
                continue;
            }
            let mut bytes = vec![0u8; MARK_LEN + 1];
            let n = read_at_most(&file, &mut bytes).map_err(|e| Error::io(path, None, e))?;
            let found = MarkRecord::decode(&bytes[..n]);
            return Ok(MarkFile {
                path: path.to_path_buf(),
                file,
                dev: meta.dev(),
                ino: meta.ino(),
                found,
                existed,
                remove_on_drop: !existed,
            });
        }
        Err(Error::invalid(format!(
            "{} kept changing while sdar tried to lock it: another restore to {} is starting or ending; run again",
            path.display(),
            dest.display()
        )))
    }

    /// The filesystem the mark is on: a data file it names is on the same one.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `rec`, synced, before the step it describes.
    pub fn write(&mut self, rec: &MarkRecord) -> Result<()> {
        let io = |e| Error::io(&self.path, None, e);
        self.file.write_all_at(&rec.encode(), 0).map_err(io)?;
        self.file.set_len(MARK_LEN as u64).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.found = Some(rec.clone());
        Ok(())
    }

    /// Removes the mark (the restore it describes is over).
    pub fn remove(&mut self) {
        let ours = self
            .path
            .symlink_metadata()
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
        self.remove_on_drop = false;
    }
}

impl Drop for MarkFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            self.remove();
        }
    }
}

fn read_at_most(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_refuse_damage() {
        let rec = MarkRecord {
            kind: MARK_KIND_VMDK,
            stage: MarkStage::Renamed,
            identity: [7; 32],
            image_size: 12345,
            data_ino: 99,
        };
        let b = rec.encode();
        assert_eq!(MarkRecord::decode(&b), Some(rec));
        for at in 0..MARK_LEN {
            let mut c = b;
            c[at] ^= 1;
            assert_eq!(MarkRecord::decode(&c), None, "byte {at}");
        }
        assert_eq!(MarkRecord::decode(&b[..MARK_LEN - 1]), None);
        assert_eq!(MarkRecord::decode(&[]), None);
    }
}
