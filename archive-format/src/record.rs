//! Records: the tagged, checksummed byte strings that carry everything that
//! is not block data (SPEC.md §4 "Record"). The codec decides how a record is
//! wrapped so that stock decompressors skip it; this file is the part that is
//! the same for every codec.

use crate::error::{Error, Result};
use crate::layout::*;
use std::path::Path;

/// Appends the record header and `body` for `tag` to `out` (SPEC.md §4).
pub(crate) fn encode_record(tag: [u8; 4], body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| Error::invalid(format!("record {} too large", tag_name(tag))))?;
    let start = out.len();
    out.extend_from_slice(&tag);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(body);
    let crc = record_crc(&out[start..]);
    out[start + RECORD_CRC_OFFSET..start + RECORD_CRC_OFFSET + 4]
        .copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// CRC-32 of a record's tag, length and body: everything but the CRC field
/// and the reserved word (SPEC.md §4).
fn record_crc(record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[..RECORD_CRC_OFFSET]);
    h.update(&record[RECORD_HEADER_LEN..]);
    h.finalize()
}

/// The body length a record header declares; used by containers to know how
/// many bytes to collect before the record can be checked.
pub(crate) fn declared_body_len(header: &[u8]) -> u32 {
    le_u32(header, RECORD_BODY_LEN_OFFSET)
}

/// Checks a whole record (header + body) found at `offset` and returns its
/// body. `expected` is the tag the reader is looking for there.
pub(crate) fn decode_record(
    file: &Path,
    offset: u64,
    record: Vec<u8>,
    expected: [u8; 4],
) -> Result<Vec<u8>> {
    if record.len() < RECORD_HEADER_LEN {
        return Err(Error::corrupt(
            file,
            offset,
            "record shorter than its header",
        ));
    }
    let tag: [u8; 4] = record[..4].try_into().expect("4 bytes");
    let crc = le_u32(&record, RECORD_CRC_OFFSET);
    if record_crc(&record) != crc {
        return Err(Error::corrupt(
            file,
            offset,
            format!(
                "record {} fails its checksum (expected {} record)",
                tag_name(tag),
                tag_name(expected)
            ),
        ));
    }
    if tag != expected {
        return Err(Error::corrupt(
            file,
            offset,
            format!(
                "found a {} record where a {} record belongs",
                tag_name(tag),
                tag_name(expected)
            ),
        ));
    }
    if le_u32(&record, RECORD_RESERVED_OFFSET) != 0 {
        return Err(Error::corrupt(
            file,
            offset,
            format!("{} record: reserved bytes are not zero", tag_name(tag)),
        ));
    }
    if declared_body_len(&record) as usize != record.len() - RECORD_HEADER_LEN {
        return Err(Error::corrupt(
            file,
            offset,
            format!(
                "{} record: length field disagrees with its container",
                tag_name(tag)
            ),
        ));
    }
    let mut body = record;
    body.drain(..RECORD_HEADER_LEN);
    Ok(body)
}

/// A tag as text for messages, with anything unprintable escaped.
pub(crate) fn tag_name(tag: [u8; 4]) -> String {
    tag.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads a record stored without a container (delta payloads, SPEC.md
/// §14) at absolute `offset`; returns its body and the bytes it spans.
pub(crate) fn read_plain_record(
    file: &mut impl crate::archive_file::RecordSource,
    offset: u64,
    tag: [u8; 4],
    max_body: u32,
) -> Result<(Vec<u8>, u64)> {
    let what = format!("{} record", tag_name(tag));
    let mut head = [0u8; RECORD_HEADER_LEN];
    file.read_at(offset, &mut head, &what)?;
    let body_len = declared_body_len(&head);
    if body_len > max_body {
        let span = RECORD_HEADER_LEN as u64 + body_len as u64;
        return Err(oversized(file, offset, tag, body_len, max_body, span));
    }
    let mut rec = file.read_vec_at(offset, RECORD_HEADER_LEN + body_len as usize, &what)?;
    let span = rec.len() as u64;
    rec.truncate(RECORD_HEADER_LEN + body_len as usize);
    let body = decode_record(file.name(), offset, rec, tag)?;
    Ok((body, span))
}

/// The error for a record longer than `max_body`. Only META's bound is the
/// caller's choice (`Limits::max_record_len`): a META record that fits in
/// the file is a limit the caller may raise. Every other record has a
/// length fixed by the format, and one that runs past the end of the file
/// cannot be right either: both are corruption.
pub(crate) fn oversized(
    file: &impl crate::archive_file::RecordSource,
    offset: u64,
    tag: [u8; 4],
    body_len: u32,
    max_body: u32,
    span: u64,
) -> Error {
    let fits = offset
        .checked_add(span)
        .is_some_and(|end| file.known_len().is_none_or(|len| end <= len));
    if tag == TAG_META && fits {
        Error::LimitExceeded {
            file: file.name().to_path_buf(),
            what: "metadata record length",
            value: body_len as u64,
            limit: max_body as u64,
        }
    } else {
        Error::corrupt(
            file.name(),
            offset,
            format!(
                "{} record claims {body_len} bytes, more than the {max_body} that fit here",
                tag_name(tag)
            ),
        )
    }
}
