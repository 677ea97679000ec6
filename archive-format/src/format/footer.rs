//! The FOOT record: the fixed-size end of every image, found by seeking back
//! from the end of the file (SPEC.md §9 "FOOT record").

use crate::error::Hash;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::record::le_u64;
use std::path::Path;

/// Where the index is and what the whole image adds up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The image identity (SPEC.md §10).
    pub identity: Hash,
    /// File offset of the DIRS record.
    pub directory_offset: u64,
    pub segment_count: u64,
    /// The length of the whole file, ending with this footer.
    pub file_len: u64,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOT_LEN] {
        let mut b = [0u8; FOOT_LEN];
        b[FOOT_IDENTITY_OFFSET..][..32].copy_from_slice(&self.identity);
        b[FOOT_DIRECTORY_OFFSET_OFFSET..][..8]
            .copy_from_slice(&self.directory_offset.to_le_bytes());
        b[FOOT_SEGMENT_COUNT_OFFSET..][..8].copy_from_slice(&self.segment_count.to_le_bytes());
        b[FOOT_FILE_LEN_OFFSET..][..8].copy_from_slice(&self.file_len.to_le_bytes());
        b
    }

    pub(crate) fn decode(file: &Path, offset: u64, body: &[u8]) -> Result<Self> {
        if body.len() != FOOT_LEN {
            return Err(Error::corrupt(
                file,
                offset,
                format!(
                    "FOOT record body is {} bytes, expected {FOOT_LEN}",
                    body.len()
                ),
            ));
        }
        if le_u64(body, FOOT_RESERVED_OFFSET) != 0 {
            return Err(Error::corrupt(
                file,
                offset,
                "FOOT record: reserved bytes are not zero",
            ));
        }
        Ok(Footer {
            identity: body[..32].try_into().expect("32 bytes"),
            directory_offset: le_u64(body, FOOT_DIRECTORY_OFFSET_OFFSET),
            segment_count: le_u64(body, FOOT_SEGMENT_COUNT_OFFSET),
            file_len: le_u64(body, FOOT_FILE_LEN_OFFSET),
        })
    }
}
