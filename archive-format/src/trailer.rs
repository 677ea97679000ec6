//! The archive trailer: the last 32 bytes of a delta archive, which let the
//! restore runtime find the payload appended to its own executable
//! (SPEC.md §13 "Archive trailer").

use crate::archive_file::ArchiveFile;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::record::{le_u16, le_u32, le_u64};

/// Where the payload is inside the archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub payload_offset: u64,
    pub payload_len: u64,
    pub version_major: u16,
    pub version_minor: u16,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[..8].copy_from_slice(&TRAILER_MAGIC);
        b[TRAILER_PAYLOAD_OFFSET_OFFSET..][..8].copy_from_slice(&self.payload_offset.to_le_bytes());
        b[TRAILER_PAYLOAD_LEN_OFFSET..][..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[TRAILER_VERSION_MAJOR_OFFSET..][..2].copy_from_slice(&self.version_major.to_le_bytes());
        b[TRAILER_VERSION_MINOR_OFFSET..][..2].copy_from_slice(&self.version_minor.to_le_bytes());
        let crc = crc32fast::hash(&b[..TRAILER_CRC_OFFSET]);
        b[TRAILER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads the trailer at the end of `file` and checks that it describes
    /// a payload ending right before it.
    pub fn read<R: crate::bytes::ReadAt>(file: &ArchiveFile<R>) -> Result<Self> {
        let len = file.len();
        let at = len.checked_sub(TRAILER_LEN as u64).ok_or_else(|| {
            Error::truncated(
                file.name(),
                0,
                "archive trailer (the file is too short to be a delta archive)",
            )
        })?;
        let mut b = [0u8; TRAILER_LEN];
        file.read_at(at, &mut b, "archive trailer")?;
        if b[..8] != TRAILER_MAGIC {
            return Err(Error::BadMagic {
                file: file.name().to_path_buf(),
                offset: at,
                found: b[..8].to_vec(),
            });
        }
        if crc32fast::hash(&b[..TRAILER_CRC_OFFSET]) != le_u32(&b, TRAILER_CRC_OFFSET) {
            return Err(Error::corrupt(
                file.name(),
                at,
                "archive trailer fails its checksum",
            ));
        }
        let t = Trailer {
            payload_offset: le_u64(&b, TRAILER_PAYLOAD_OFFSET_OFFSET),
            payload_len: le_u64(&b, TRAILER_PAYLOAD_LEN_OFFSET),
            version_major: le_u16(&b, TRAILER_VERSION_MAJOR_OFFSET),
            version_minor: le_u16(&b, TRAILER_VERSION_MINOR_OFFSET),
        };
        if t.version_major != VERSION_MAJOR {
            return Err(Error::UnsupportedVersion {
                file: file.name().to_path_buf(),
                major: t.version_major,
                minor: t.version_minor,
            });
        }
        if t.payload_offset.checked_add(t.payload_len) != Some(at) {
            return Err(Error::corrupt(
                file.name(),
                at,
                format!(
                    "archive trailer places the payload at bytes {}+{}, but it must end at {at}",
                    t.payload_offset, t.payload_len
                ),
            ));
        }
        Ok(t)
    }
}
