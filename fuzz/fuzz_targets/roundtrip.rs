//! Writes a small image the fuzzer shapes (size, codec, level, segment
//! length, metadata, content), then reads it back: `verify_full` must pass,
//! every `read_block` must return the exact bytes written, and a stock
//! decompressor must turn the file back into the disk. A keyed image (format
//! 1.1) must prove itself with its key and fail with any other. Any mismatch
//! panics: that is a finding.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use archive_format::auth::Key;
use archive_format::{
    verify_full, write_full, Codec, FullImage, FullOptions, FullWriter, Geometry, Limits,
    MemberCheck, Metadata, MAX_META_TEXT_LEN,
};
use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};

const BLOCK_SIZE: u32 = 4096;
/// A few blocks: enough for a short last block, several segments and both
/// kinds of zero block, small enough for thousands of runs a second.
const MAX_IMAGE_SIZE: u64 = 5 * BLOCK_SIZE as u64;

#[derive(Debug, Arbitrary)]
struct Case {
    zstd: bool,
    level: u8,
    #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(1..=4u32))]
    segment_blocks: u32,
    #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(0..=MAX_IMAGE_SIZE))]
    image_size: u64,
    /// Through `write_full` (its batching) rather than `push_block`. On one
    /// thread: a few blocks are one batch, so a second worker would only add
    /// a thread whose exit races LeakSanitizer's per-input check.
    via_write_full: bool,
    /// Bit `b` set: block `b` is all zeros.
    zero_blocks: u8,
    /// Blocks read back in reverse, so segment caching is crossed both ways.
    read_backwards: bool,
    /// Written with a key (an AUTH record, format 1.1) made from these bytes,
    /// padded to the 16 a key file needs.
    key: Option<Vec<u8>>,
    meta: Meta,
    /// Repeated to fill the non-zero blocks; empty means zeros.
    pattern: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Meta {
    vm_name: Option<String>,
    scsi_id: Option<String>,
    disk_size: Option<u64>,
    geometry: Option<(u32, u32, u32)>,
    vmx: Option<Vec<u8>>,
    created_unix: Option<i64>,
}

impl Meta {
    fn to_metadata(&self) -> Metadata {
        // Longer text is an input error the writer reports, not a finding.
        let text = |s: &Option<String>| {
            s.as_ref().map(|s| {
                let mut end = s.len().min(MAX_META_TEXT_LEN);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s[..end].to_string()
            })
        };
        Metadata {
            vm_name: text(&self.vm_name),
            scsi_id: text(&self.scsi_id),
            disk_size: self.disk_size,
            geometry: self.geometry.map(|(cylinders, heads, sectors)| Geometry {
                cylinders,
                heads,
                sectors,
            }),
            vmx: self.vmx.clone(),
            created_unix: self.created_unix,
            tool: Some("sdar-fuzz".into()),
            ..Metadata::default()
        }
    }
}

fn disk(case: &Case) -> Vec<u8> {
    let mut disk = vec![0u8; case.image_size as usize];
    if case.pattern.is_empty() {
        return disk;
    }
    for (b, block) in disk.chunks_mut(BLOCK_SIZE as usize).enumerate() {
        if case.zero_blocks & (1 << b) == 0 {
            let at = b * BLOCK_SIZE as usize;
            for (i, byte) in block.iter_mut().enumerate() {
                *byte = case.pattern[(at + i) % case.pattern.len()];
            }
        }
    }
    disk
}

fn stock_decompress(codec: Codec, file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        Codec::Gzip => flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut out)
            .map(|_| ())
            .expect("gzip reader rejects the image"),
        Codec::Zstd => zstd::stream::copy_decode(file, &mut out).expect("zstd rejects the image"),
    }
    out
}

fn key_from(secret: &[u8]) -> Key {
    let mut secret = secret.to_vec();
    secret.resize(secret.len().max(16), b'k');
    Key::from_secret(&secret).expect("16 bytes make a key")
}

fuzz_target!(|case: Case| {
    let key = case.key.as_deref().map(key_from);
    let codec = if case.zstd { Codec::Zstd } else { Codec::Gzip };
    let range = codec.level_range();
    let span = (range.end() - range.start() + 1) as u8;
    let options = FullOptions {
        codec,
        level: Some(range.start() + (case.level % span) as i32),
        block_size: BLOCK_SIZE,
        segment_blocks: case.segment_blocks,
        threads: 1,
        key: key.clone(),
    };
    let disk = disk(&case);
    let meta = case.meta.to_metadata();

    let writer = FullWriter::new(Vec::new(), "roundtrip", &options, case.image_size, &meta)
        .expect("writer refuses a valid shape");
    let (file, summary) = if case.via_write_full {
        write_full(&disk[..], "disk".as_ref(), writer, &mut |_| {}).expect("write_full fails")
    } else {
        let mut writer = writer;
        for block in disk.chunks(BLOCK_SIZE as usize) {
            writer.push_block(block).expect("push_block fails");
        }
        writer.finish().expect("finish fails")
    };
    assert_eq!(summary.file_len, file.len() as u64);
    assert_eq!(
        summary.blocks,
        disk.len().div_ceil(BLOCK_SIZE as usize) as u64
    );

    assert!(
        stock_decompress(codec, &file) == disk,
        "a stock decompressor does not give back the disk"
    );

    let image = FullImage::open(Cursor::new(&file[..]), "roundtrip", &Limits::default())
        .expect("open fails on a file the writer made");
    assert_eq!(image.identity(), summary.identity);
    assert_eq!(image.meta(), &meta);
    match &key {
        None => assert!(
            image.auth().is_none(),
            "an image made without a key has a MAC"
        ),
        Some(key) => {
            image
                .authenticate(key)
                .unwrap_or_else(|e| panic!("the image fails its own key: {e}"));
            let mut other = case.key.clone().unwrap_or_default();
            other.push(0x5a);
            let other = key_from(&other);
            if other.id() != key.id() {
                assert!(
                    image.authenticate(&other).is_err(),
                    "the image proves itself with another key"
                );
            }
        }
    }
    let report = verify_full(&image, 1, &mut |_| {}).expect("verify_full fails");
    assert_eq!(report.identity, summary.identity);
    assert_eq!(report.blocks, summary.blocks);
    assert_eq!(report.zero_blocks, summary.zero_blocks);

    let mut check = MemberCheck::new(codec, image.header()).expect("MemberCheck");
    let mut out = Vec::new();
    let mut blocks: Vec<u64> = (0..summary.blocks).collect();
    if case.read_backwards {
        blocks.reverse();
    }
    for block in blocks {
        image
            .read_block(block, &mut out, &mut check)
            .unwrap_or_else(|e| panic!("read_block({block}) fails: {e}"));
        let at = block as usize * BLOCK_SIZE as usize;
        let want = &disk[at..(at + BLOCK_SIZE as usize).min(disk.len())];
        assert!(out == want, "read_block({block}) returns other bytes");
    }
});
