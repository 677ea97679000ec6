//! Damage of every kind is an integrity error: never accepted, never a
//! panic, and where a block's stored bytes are hit, the message names the
//! block and the byte where its member starts.

mod fixture;

use archive_format::{verify_full, Codec, Error, VerifyReport};
use fixture::*;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

const BLOCK_SIZE: usize = 4096;

/// Five blocks in three segments: text, zeros, random, half text, and a
/// 1000-byte tail. A few KB of file, so every bit can be flipped.
fn small_disk() -> Vec<u8> {
    let mut rng = Rng::new(0xC0FFEE);
    let mut d = vec![0u8; 4 * BLOCK_SIZE + 1000];
    fill_text(&mut rng, &mut d[..BLOCK_SIZE]);
    rng.fill(&mut d[2 * BLOCK_SIZE..3 * BLOCK_SIZE]);
    fill_text(&mut rng, &mut d[3 * BLOCK_SIZE..3 * BLOCK_SIZE + 2048]);
    fill_text(&mut rng, &mut d[4 * BLOCK_SIZE..]);
    d
}

struct Small {
    file: Vec<u8>,
    /// Every block's member, as the index of the undamaged file places it.
    members: Vec<(u64, Range<usize>)>,
    /// Every record's containers: HEAD, META, each INDX, DIRS, FOOT.
    records: Vec<(String, Range<usize>)>,
    /// Where each INDX record's container starts, by segment.
    index: Vec<usize>,
    directory: usize,
    foot: usize,
}

fn small_full(codec: Codec) -> Small {
    let (file, summary) = write_pushed(&small_disk(), &options(codec, 4096, 2, 1), &sample_meta());
    assert_eq!(summary.blocks, 5);
    assert_eq!(summary.zero_blocks, 1);
    let image = open(&file).expect("open");
    let directory = image.footer().directory_offset as usize;
    let foot = file.len() - record_span(codec, 64);
    // HEAD (a 64-byte body) is at 0, META right after it.
    let meta = record_span(codec, 64);
    let mut records = vec![
        ("HEAD".to_string(), 0..meta),
        ("META".to_string(), meta..image.data_start() as usize),
    ];
    let mut members = Vec::new();
    let mut index = Vec::new();
    for s in 0..image.segment_count() {
        let seg = image.index_segment(s).expect("index");
        for (i, e) in seg.entries.iter().enumerate() {
            let at = seg.member_offset(i) as usize;
            members.push((s * 2 + i as u64, at..at + e.member_len as usize));
        }
        let at = seg.data_end() as usize;
        let body = 24 + 40 * seg.entries.len();
        records.push((format!("INDX {s}"), at..at + record_span(codec, body)));
        index.push(at);
    }
    records.push(("DIRS".to_string(), directory..foot));
    records.push(("FOOT".to_string(), foot..file.len()));
    assert_eq!(members.len(), 5);
    // Members and records tile the file.
    let mut tiles: Vec<Range<usize>> = members
        .iter()
        .map(|(_, r)| r.clone())
        .chain(records.iter().map(|(_, r)| r.clone()))
        .collect();
    tiles.sort_by_key(|r| r.start);
    assert!(
        tiles.windows(2).all(|w| w[0].end == w[1].start),
        "{tiles:?}"
    );
    assert_eq!((tiles[0].start, tiles.last().unwrap().end), (0, file.len()));
    Small {
        file,
        members,
        records,
        index,
        directory,
        foot,
    }
}

/// The byte an error points at, if it names one.
fn error_offset(e: &Error) -> Option<u64> {
    match e {
        Error::Corrupt { offset, .. }
        | Error::Truncated { offset, .. }
        | Error::BadMagic { offset, .. }
        | Error::BlockMismatch { offset, .. } => Some(*offset),
        _ => None,
    }
}

/// Opens and verifies `bytes` on one thread; `Err(message)` if that panicked.
fn probe(bytes: &[u8]) -> Result<archive_format::Result<VerifyReport>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let image = open(bytes)?;
        verify_full(&image, 1, &mut |_| {})
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// Records what is wrong with the outcome for `bytes`, if anything, and
/// returns the error when it is the integrity error it must be.
fn judge(bytes: &[u8], what: &str, problems: &mut Vec<String>) -> Option<Error> {
    match probe(bytes) {
        Err(panic) => problems.push(format!("{what}: panicked: {panic}")),
        Ok(Ok(_)) => problems.push(format!("{what}: accepted")),
        Ok(Err(e)) if !e.is_integrity() => {
            problems.push(format!("{what}: not an integrity error: {e:?}"))
        }
        Ok(Err(e)) => return Some(e),
    }
    None
}

#[track_caller]
fn assert_no_problems(problems: &[String], tried: usize) {
    if problems.is_empty() {
        return;
    }
    let shown: Vec<&str> = problems.iter().take(25).map(String::as_str).collect();
    panic!(
        "{} of {tried} damaged files were mishandled; the first:\n  {}",
        problems.len(),
        shown.join("\n  ")
    );
}

/// Flips every bit of the file in turn: each flip must be an integrity
/// error. A flip in a block's member must name the block and the byte its
/// member starts at; a flip in a record must point into that record.
fn flip_every_bit(codec: Codec) {
    let Small {
        mut file,
        members,
        records,
        ..
    } = small_full(codec);
    let mut problems = Vec::new();
    for at in 0..file.len() {
        let member = members.iter().find(|(_, r)| r.contains(&at));
        let record = records.iter().find(|(_, r)| r.contains(&at));
        for bit in 0..8 {
            file[at] ^= 1 << bit;
            let what = format!("{}: bit {bit} of byte {at}", codec.name());
            let err = judge(&file, &what, &mut problems);
            file[at] ^= 1 << bit;
            let Some(err) = err else { continue };
            if let Some((block, range)) = member {
                let start = range.start as u64;
                let msg = err.to_string();
                let placed = match &err {
                    Error::Corrupt { offset, .. } | Error::BlockMismatch { offset, .. } => {
                        *offset == start
                    }
                    _ => false,
                };
                if !placed
                    || !names_number(&msg, "block ", *block)
                    || !names_number(&msg, "byte ", start)
                {
                    problems.push(format!(
                        "{what} (member of block {block} at byte {start}): {msg}"
                    ));
                }
            } else if let Some((name, range)) = record {
                let inside = error_offset(&err)
                    .is_some_and(|o| (range.start as u64..range.end as u64).contains(&o));
                if !inside {
                    problems.push(format!("{what} (in {name} at {range:?}): {err:?}"));
                }
            }
        }
    }
    assert_no_problems(&problems, file.len() * 8);
}

#[test]
fn gzip_every_bit_flip_is_an_integrity_error() {
    flip_every_bit(Codec::Gzip);
}

#[test]
fn zstd_every_bit_flip_is_an_integrity_error() {
    flip_every_bit(Codec::Zstd);
}

#[test]
fn every_truncation_is_an_integrity_error() {
    for codec in CODECS {
        let Small { file, .. } = small_full(codec);
        let mut problems = Vec::new();
        for len in 0..file.len() {
            let what = format!("{}: cut to {len} of {} bytes", codec.name(), file.len());
            judge(&file[..len], &what, &mut problems);
        }
        assert_no_problems(&problems, file.len());
    }
}

#[test]
fn zeroed_pages_are_integrity_errors() {
    for codec in CODECS {
        let Small { file, members, .. } = small_full(codec);
        let len = file.len();
        let mut offsets = vec![
            0,
            1,
            100,
            4096,
            len / 3,
            len / 2,
            len - 4096,
            len - 100,
            len - 1,
        ];
        offsets.extend(members.iter().map(|(_, r)| r.start));
        let mut problems = Vec::new();
        for &at in &offsets {
            let mut f = file.clone();
            let end = (at + 4096).min(len);
            f[at..end].fill(0);
            if f == file {
                continue; // those bytes were zeros already (the end of the FOOT container)
            }
            let what = format!("{}: zeros over bytes {at}..{end}", codec.name());
            judge(&f, &what, &mut problems);
        }
        assert_no_problems(&problems, offsets.len());
    }
}

#[test]
fn appended_bytes_are_integrity_errors() {
    for codec in CODECS {
        let Small { file, .. } = small_full(codec);
        let mut rng = Rng::new(5);
        let mut random = vec![0u8; 100];
        rng.fill(&mut random);
        // An empty gzip member and an empty zstd frame: stock tools accept both.
        let empty_gzip = [
            0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let empty_zstd = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00];
        let foot_len = record_span(codec, 64);
        let junk: Vec<(&str, Vec<u8>)> = vec![
            ("one zero byte", vec![0]),
            ("one 0xff byte", vec![0xff]),
            ("7 bytes", b"garbage".to_vec()),
            ("100 random bytes", random),
            ("a page of zeros", vec![0; 4096]),
            ("the FOOT again", file[file.len() - foot_len..].to_vec()),
            ("an empty gzip member", empty_gzip.to_vec()),
            ("an empty zstd frame", empty_zstd.to_vec()),
        ];
        let mut problems = Vec::new();
        for (what, tail) in &junk {
            let mut f = file.clone();
            f.extend_from_slice(tail);
            judge(
                &f,
                &format!("{}: {what} appended", codec.name()),
                &mut problems,
            );
            let mut f = tail.clone();
            f.extend_from_slice(&file);
            judge(
                &f,
                &format!("{}: {what} prepended", codec.name()),
                &mut problems,
            );
        }
        assert_no_problems(&problems, 2 * junk.len());
    }
}

#[test]
fn concatenated_fulls_are_integrity_errors() {
    let gzip = small_full(Codec::Gzip).file;
    let zstd = small_full(Codec::Zstd).file;
    let other = write_pushed(
        &disk(9000, 4096, 3),
        &options(Codec::Gzip, 4096, 2, 1),
        &sample_meta(),
    )
    .0;
    let mut problems = Vec::new();
    let pairs: [(&str, &[u8], &[u8]); 5] = [
        ("gzip + itself", &gzip, &gzip),
        ("zstd + itself", &zstd, &zstd),
        ("gzip + another gzip", &gzip, &other),
        ("gzip + zstd", &gzip, &zstd),
        ("zstd + gzip", &zstd, &gzip),
    ];
    for (what, a, b) in pairs {
        let joined = [a, b].concat();
        judge(&joined, what, &mut problems);
    }
    assert_no_problems(&problems, pairs.len());
    // What a stock tool sees is both disks, which is why sdar must refuse it.
    let joined = [&gzip[..], &gzip[..]].concat();
    assert_eq!(
        stock_decode(Codec::Gzip, &joined).unwrap(),
        [small_disk(), small_disk()].concat()
    );
}

/// What a damaged file must be reported as.
#[derive(Debug)]
enum Expect {
    Corrupt,
    /// `Corrupt` at the record that was changed (its container's offset).
    CorruptHere,
    /// `BadMagic` or `Corrupt`: an offset that leads to no record, or to
    /// the middle of one.
    NoRecord,
    /// `Corrupt` at the member of this block, naming it.
    CorruptBlock(u64),
    BlockMismatch(u64),
    IdentityMismatch,
}

/// Records whose CRC is intact but whose values are wrong, as a buggy
/// writer or a deliberate edit would leave them: the checks behind the CRC
/// (offsets that chain, counts that match the shape, flags that match the
/// hashes) must each catch their field. Bit flips never reach these checks,
/// because the record CRC fails first.
#[test]
fn records_with_valid_crcs_but_wrong_values() {
    fn put_u64(b: &mut [u8], at: usize, f: impl Fn(u64) -> u64) {
        let v = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        b[at..at + 8].copy_from_slice(&f(v).to_le_bytes());
    }
    fn put_u32(b: &mut [u8], at: usize, f: impl Fn(u32) -> u32) {
        let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        b[at..at + 4].copy_from_slice(&f(v).to_le_bytes());
    }
    // INDX: segment, data_offset, count, reserved, then 40-byte entries of
    // hash, len_flags, member CRC (SPEC.md §7).
    const ENTRY: usize = 24;
    const LEN_FLAGS: usize = 32;
    for codec in CODECS {
        let small = small_full(codec);
        type Patch = Box<dyn Fn(&mut [u8])>;
        let head = 0;
        let cases: Vec<(&str, usize, Patch, Expect)> = vec![
            (
                "FOOT identity",
                small.foot,
                Box::new(|b| b[0] ^= 1),
                Expect::IdentityMismatch,
            ),
            (
                "FOOT directory offset",
                small.foot,
                Box::new(|b| put_u64(b, 32, |v| v + 1)),
                Expect::CorruptHere,
            ),
            (
                "FOOT segment count",
                small.foot,
                Box::new(|b| put_u64(b, 40, |v| v + 1)),
                Expect::CorruptHere,
            ),
            (
                "FOOT segment count 0",
                small.foot,
                Box::new(|b| put_u64(b, 40, |_| 0)),
                Expect::CorruptHere,
            ),
            (
                "FOOT file length",
                small.foot,
                Box::new(|b| put_u64(b, 48, |v| v + 1)),
                Expect::CorruptHere,
            ),
            (
                "FOOT file length huge",
                small.foot,
                Box::new(|b| put_u64(b, 48, |_| u64::MAX)),
                Expect::CorruptHere,
            ),
            (
                "FOOT reserved",
                small.foot,
                Box::new(|b| b[63] = 1),
                Expect::CorruptHere,
            ),
            (
                "DIRS offset",
                small.directory,
                Box::new(|b| put_u64(b, 16, |v| v + 1)),
                Expect::NoRecord,
            ),
            (
                "DIRS offsets swapped",
                small.directory,
                Box::new(|b| {
                    let (a, c) = (b[8..16].to_vec(), b[16..24].to_vec());
                    b[8..16].copy_from_slice(&c);
                    b[16..24].copy_from_slice(&a);
                }),
                Expect::CorruptHere,
            ),
            (
                "DIRS count",
                small.directory,
                Box::new(|b| put_u64(b, 0, |v| v - 1)),
                Expect::CorruptHere,
            ),
            (
                "INDX segment number",
                small.index[1],
                Box::new(|b| put_u64(b, 0, |_| 0)),
                Expect::CorruptHere,
            ),
            (
                "INDX data offset",
                small.index[1],
                Box::new(|b| put_u64(b, 8, |v| v - 1)),
                Expect::CorruptHere,
            ),
            (
                // Still adds up to the record's own offset: only the chain
                // from the previous segment shows the members moved.
                "INDX data offset and first member length",
                small.index[1],
                Box::new(|b| {
                    put_u64(b, 8, |v| v - 1);
                    put_u32(b, ENTRY + LEN_FLAGS, |v| v + 1);
                }),
                Expect::CorruptHere,
            ),
            (
                "INDX count",
                small.index[0],
                Box::new(|b| put_u32(b, 16, |_| 1)),
                Expect::CorruptHere,
            ),
            (
                "INDX reserved",
                small.index[0],
                Box::new(|b| b[20] = 1),
                Expect::CorruptHere,
            ),
            (
                "INDX hash of block 0",
                small.index[0],
                Box::new(|b| b[ENTRY] ^= 1),
                Expect::BlockMismatch(0),
            ),
            (
                "INDX hash of block 4",
                small.index[2],
                Box::new(|b| b[ENTRY + 31] ^= 0x80),
                Expect::BlockMismatch(4),
            ),
            (
                "INDX member length",
                small.index[0],
                Box::new(|b| put_u32(b, ENTRY + LEN_FLAGS, |v| v + 1)),
                Expect::CorruptHere,
            ),
            (
                "INDX member length 0",
                small.index[2],
                Box::new(|b| put_u32(b, ENTRY + LEN_FLAGS, |v| v & !0x0fff_ffff)),
                Expect::CorruptHere,
            ),
            (
                "INDX member length huge",
                small.index[0],
                Box::new(|b| put_u32(b, ENTRY + LEN_FLAGS, |v| v | 0x0fff_ffff)),
                Expect::CorruptHere,
            ),
            (
                "INDX reserved flag",
                small.index[0],
                Box::new(|b| put_u32(b, ENTRY + LEN_FLAGS, |v| v | 1 << 28)),
                Expect::CorruptHere,
            ),
            (
                "INDX zero flag set",
                small.index[0],
                Box::new(|b| put_u32(b, ENTRY + LEN_FLAGS, |v| v | 1 << 31)),
                Expect::CorruptHere,
            ),
            (
                "INDX zero flag cleared",
                small.index[0],
                Box::new(|b| put_u32(b, ENTRY + 40 + LEN_FLAGS, |v| v & !(1 << 31))),
                Expect::CorruptHere,
            ),
            (
                "INDX member CRC of block 3",
                small.index[1],
                Box::new(|b| b[ENTRY + 40 + 36] ^= 4),
                Expect::CorruptBlock(3),
            ),
            (
                "INDX entries swapped",
                small.index[0],
                Box::new(|b| {
                    let (a, c) = (
                        b[ENTRY..ENTRY + 40].to_vec(),
                        b[ENTRY + 40..ENTRY + 80].to_vec(),
                    );
                    b[ENTRY..ENTRY + 40].copy_from_slice(&c);
                    b[ENTRY + 40..ENTRY + 80].copy_from_slice(&a);
                }),
                Expect::CorruptBlock(0),
            ),
            // HEAD: block_size 24, segment_blocks 28, image_size 32.
            (
                "HEAD block size",
                head,
                Box::new(|b| put_u32(b, 24, |v| v * 2)),
                Expect::Corrupt,
            ),
            (
                "HEAD block size 3000",
                head,
                Box::new(|b| put_u32(b, 24, |_| 3000)),
                Expect::Corrupt,
            ),
            (
                "HEAD segment blocks",
                head,
                Box::new(|b| put_u32(b, 28, |_| 3)),
                Expect::Corrupt,
            ),
            (
                "HEAD segment blocks 0",
                head,
                Box::new(|b| put_u32(b, 28, |_| 0)),
                Expect::Corrupt,
            ),
            (
                "HEAD image size + 1",
                head,
                Box::new(|b| put_u64(b, 32, |v| v + 1)),
                Expect::CorruptBlock(4),
            ),
            (
                "HEAD image size - 1000",
                head,
                Box::new(|b| put_u64(b, 32, |v| v - 1000)),
                Expect::Corrupt,
            ),
            (
                "HEAD image size + 4096",
                head,
                Box::new(|b| put_u64(b, 32, |v| v + 4096)),
                Expect::Corrupt,
            ),
        ];
        let mut problems = Vec::new();
        for (what, container, patch, expect) in &cases {
            let what = format!("{}: {what}", codec.name());
            let mut f = small.file.clone();
            patch_record(codec, &mut f, *container, patch);
            assert_ne!(f, small.file, "{what}: the patch changed nothing");
            let Some(err) = judge(&f, &what, &mut problems) else {
                continue;
            };
            let member_at = |block: u64| small.members[block as usize].1.start as u64;
            let ok = match (expect, &err) {
                (Expect::Corrupt | Expect::NoRecord, Error::Corrupt { .. }) => true,
                (Expect::CorruptHere, Error::Corrupt { offset, .. }) => {
                    *offset == *container as u64
                }
                (Expect::NoRecord, Error::BadMagic { .. }) => true,
                (Expect::CorruptBlock(b), Error::Corrupt { offset, .. }) => {
                    *offset == member_at(*b) && names_number(&err.to_string(), "block ", *b)
                }
                (Expect::BlockMismatch(b), Error::BlockMismatch { block, offset, .. }) => {
                    block == b && *offset == member_at(*b)
                }
                (Expect::IdentityMismatch, Error::IdentityMismatch { .. }) => true,
                _ => false,
            };
            if !ok {
                problems.push(format!("{what}: expected {expect:?}, got {err:?}"));
            }
        }
        assert_no_problems(&problems, cases.len());
    }
}

/// Seeded random damage of the kinds storage and transfers cause: runs
/// overwritten, bytes lost or duplicated, pieces swapped. Never accepted,
/// never a panic.
#[test]
fn random_damage_is_an_integrity_error() {
    for codec in CODECS {
        let Small { file, .. } = small_full(codec);
        let mut rng = Rng::new(0xDA3A6E ^ codec as u64);
        let mut problems = Vec::new();
        let mut tried = 0;
        while tried < 3000 {
            let mut f = file.clone();
            let at = rng.below(f.len() as u64) as usize;
            let n = rng.between(1, 64).min(f.len() - at);
            let kind = match rng.below(5) {
                0 => {
                    rng.fill(&mut f[at..at + n]);
                    "overwritten"
                }
                1 => {
                    f.drain(at..at + n);
                    "deleted"
                }
                2 => {
                    let copy = f[at..at + n].to_vec();
                    f.splice(at..at, copy);
                    "duplicated"
                }
                3 => {
                    let mut junk = vec![0u8; n];
                    rng.fill(&mut junk);
                    f.splice(at..at, junk);
                    "inserted"
                }
                _ => {
                    let other = rng.below((f.len() - n) as u64) as usize;
                    let (a, b) = (f[at..at + n].to_vec(), f[other..other + n].to_vec());
                    f[other..other + n].copy_from_slice(&a);
                    f[at..at + n].copy_from_slice(&b);
                    "swapped"
                }
            };
            if f == file {
                continue;
            }
            tried += 1;
            let what = format!("{}: {n} bytes at {at} {kind}", codec.name());
            judge(&f, &what, &mut problems);
        }
        assert_no_problems(&problems, tried);
    }
}
