//! The records around the block data: metadata survives a round trip field
//! for field, large records are split the way SPEC.md §4.2 says, stock
//! readers still see only the disk, and the writer refuses shapes the
//! format does not allow.

mod fixture;

use archive_format::{
    verify_full, Codec, Error, FullOptions, FullWriter, Geometry, Limits, Metadata,
    MAX_META_TEXT_LEN,
};
use fixture::*;

/// SPEC.md §4.2: gzip record members carry at most 65535 - 4 record bytes.
const GZIP_MAX_FRAGMENT: usize = 65531;
/// SPEC.md §4: tag, body length, CRC-32, reserved.
const RECORD_HEADER_LEN: usize = 16;

/// A .vmx of about `len` bytes, text as a real one is.
fn big_vmx(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(len as u64);
    let mut vmx = b".encoding = \"UTF-8\"\ndisplayName = \"CRM \xc3\xbc\"\n".to_vec();
    let mut i = 0;
    while vmx.len() < len {
        let mut value = [0u8; 24];
        fill_text(&mut rng, &mut value);
        let value = String::from_utf8_lossy(&value).replace('\n', " ");
        vmx.extend_from_slice(format!("guestinfo.key{i} = \"{value}\"\n").as_bytes());
        i += 1;
    }
    vmx.truncate(len);
    vmx
}

fn full_meta(vmx: Vec<u8>) -> Metadata {
    Metadata {
        vm_name: Some("CRM production".into()),
        vm_uuid: Some("56 4d 8a 1b 22 c3 9f 0e-7d 41 aa 5b 3c 2e 90 11".into()),
        scsi_id: Some("0:1".into()),
        disk_name: Some("CRM_1.vmdk".into()),
        disk_size: Some(53_687_091_200),
        adapter_type: Some("pvscsi".into()),
        geometry: Some(Geometry {
            cylinders: 6527,
            heads: 255,
            sectors: 63,
        }),
        hw_version: Some("19".into()),
        disk_uuid: Some("60 00 C2 9f 3a 4b 5c 6d-7e 8f 90 a1 b2 c3 d4 e5".into()),
        vmx: Some(vmx),
        created_unix: Some(-86_400),
        tool: Some("sdar 0.1.0".into()),
        base_name: Some("base.full.gz".into()),
    }
}

/// The containers (offset, record fragment) from `from` up to `to`, parsed
/// from SPEC.md §4.2 and §4.3 without the library.
fn record_containers(codec: Codec, file: &[u8], from: usize, to: usize) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        match codec {
            Codec::Gzip => {
                // Magic, CM 8, FLG FEXTRA, MTIME 0, XFL 0, OS 255.
                assert_eq!(
                    file[at..at + 10],
                    [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff],
                    "gzip record header at {at}"
                );
                let xlen = u16::from_le_bytes([file[at + 10], file[at + 11]]) as usize;
                assert_eq!(&file[at + 12..at + 14], b"SD", "subfield id at {at}");
                let n = u16::from_le_bytes([file[at + 14], file[at + 15]]) as usize;
                assert_eq!(xlen, n + 4, "XLEN at {at}");
                out.push((at, file[at + 16..at + 16 + n].to_vec()));
                at += 16 + n;
                // An empty final stored deflate block, CRC32 0, ISIZE 0.
                assert_eq!(
                    file[at..at + 10],
                    [3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    "gzip record trailer at {at}"
                );
                at += 10;
            }
            Codec::Zstd => {
                assert_eq!(
                    file[at..at + 4],
                    0x184D_2A5Du32.to_le_bytes(),
                    "skippable magic at {at}"
                );
                let n = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
                out.push((at, file[at + 8..at + 8 + n].to_vec()));
                at += 8 + n;
            }
        }
    }
    assert_eq!(at, to, "containers overrun");
    out
}

#[test]
fn every_metadata_field_round_trips_through_a_multi_member_record() {
    let vmx = big_vmx(200_000);
    let meta = full_meta(vmx.clone());
    let content = disk(3 * 4096 + 777, 4096, 21);
    for codec in CODECS {
        let what = codec.name();
        let (file, summary) = write_pushed(&content, &options(codec, 4096, 2, 1), &meta);
        let image = open(&file).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        assert_eq!(image.meta(), &meta, "{what}");
        assert_eq!(
            image.meta().vmx.as_deref(),
            Some(&vmx[..]),
            "{what}: vmx bytes"
        );
        verify_full(&image, 1, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: verify: {e}"));

        // HEAD, then the META record in as many containers as it needs.
        let containers = record_containers(codec, &file, 0, image.data_start() as usize);
        let (head, meta_parts) = containers.split_first().expect("HEAD");
        assert_eq!(&head.1[..4], b"HEAD");
        let record: Vec<u8> = meta_parts
            .iter()
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        assert_eq!(&record[..4], b"META", "{what}");
        let body_len = u32::from_le_bytes(record[4..8].try_into().unwrap()) as usize;
        assert_eq!(
            record.len(),
            RECORD_HEADER_LEN + body_len,
            "{what}: META length"
        );
        assert!(body_len > 200_000, "{what}: META body is {body_len} bytes");
        match codec {
            Codec::Gzip => {
                assert_eq!(
                    meta_parts.len(),
                    record.len().div_ceil(GZIP_MAX_FRAGMENT),
                    "{what}: members"
                );
                assert!(
                    meta_parts.len() >= 4,
                    "{what}: {} members",
                    meta_parts.len()
                );
                let (last, full) = meta_parts.split_last().unwrap();
                assert!(
                    full.iter().all(|(_, f)| f.len() == GZIP_MAX_FRAGMENT),
                    "{what}: a member before the last is not full"
                );
                assert!((1..=GZIP_MAX_FRAGMENT).contains(&last.1.len()));
            }
            Codec::Zstd => assert_eq!(meta_parts.len(), 1, "{what}: skippable frames"),
        }
        // The record CRC covers tag, length and body (SPEC.md §4).
        let mut crc = crc32fast::Hasher::new();
        crc.update(&record[..8]);
        crc.update(&record[RECORD_HEADER_LEN..]);
        assert_eq!(
            crc.finalize().to_le_bytes(),
            record[8..12],
            "{what}: record CRC"
        );

        assert_same_bytes(&stock_decode(codec, &file).unwrap(), &content, what);
        if codec == Codec::Gzip {
            if let Some(out) = run_tool("zcat", &[], &file) {
                assert!(
                    out.status.success(),
                    "zcat: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_same_bytes(&out.stdout, &content, "zcat");
            }
        } else if let Some(out) = run_tool("zstd", &["-dc", "-q"], &file) {
            assert!(
                out.status.success(),
                "zstd: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_same_bytes(&out.stdout, &content, "zstd -dc");
        }
        assert_eq!(summary.file_len, file.len() as u64);
    }
}

/// A .vmx whose record ends exactly on, or one byte after, a member boundary.
#[test]
fn meta_records_at_member_boundaries() {
    let base = Metadata {
        vmx: Some(Vec::new()),
        ..Metadata::default()
    };
    // An entry header is 6 bytes: the record is 16 + 6 + vmx bytes.
    for record_len in [
        GZIP_MAX_FRAGMENT - 1,
        GZIP_MAX_FRAGMENT,
        GZIP_MAX_FRAGMENT + 1,
        2 * GZIP_MAX_FRAGMENT,
    ] {
        let meta = Metadata {
            vmx: Some(big_vmx(record_len - RECORD_HEADER_LEN - 6)),
            ..base.clone()
        };
        let content = disk(5000, 4096, 3);
        let (file, _) = write_pushed(&content, &options(Codec::Gzip, 4096, 2, 1), &meta);
        let image = open(&file).unwrap_or_else(|e| panic!("record of {record_len}: {e}"));
        assert_eq!(image.meta(), &meta, "record of {record_len}");
        verify_full(&image, 1, &mut |_| {}).unwrap();
        let parts = record_containers(Codec::Gzip, &file, 0, image.data_start() as usize);
        assert_eq!(
            parts.len() - 1,
            record_len.div_ceil(GZIP_MAX_FRAGMENT),
            "record of {record_len}"
        );
        assert_same_bytes(
            &stock_decode(Codec::Gzip, &file).unwrap(),
            &content,
            "decoded",
        );
    }
}

#[test]
fn utf8_names_round_trip() {
    let longest = "é".repeat(MAX_META_TEXT_LEN / 2);
    assert_eq!(longest.len(), MAX_META_TEXT_LEN);
    let meta = Metadata {
        vm_name: Some("Überwachung-服务器-🚀 \u{0301}\u{200d}".into()),
        vm_uuid: Some(String::new()),
        scsi_id: Some("٠:١".into()),
        disk_name: Some("диск ✓.vmdk".into()),
        adapter_type: Some(longest.clone()),
        hw_version: Some("\u{10FFFF}".into()),
        disk_uuid: Some("\0 nul inside".into()),
        tool: Some("sdar 0.1.0 (テスト)".into()),
        ..Metadata::default()
    };
    for codec in CODECS {
        let (file, _) = write_pushed(&disk(4097, 4096, 1), &options(codec, 4096, 1024, 1), &meta);
        let image = open(&file).unwrap();
        assert_eq!(image.meta(), &meta, "{}", codec.name());
        assert_eq!(image.meta().adapter_type.as_deref(), Some(&longest[..]));
    }
}

#[test]
fn empty_metadata_round_trips() {
    for codec in CODECS {
        for size in [0, 1, 4096] {
            let content = disk(size, 4096, 2);
            let (file, _) =
                write_pushed(&content, &options(codec, 4096, 2, 1), &Metadata::default());
            let image = open(&file).unwrap();
            assert_eq!(image.meta(), &Metadata::default());
            verify_full(&image, 1, &mut |_| {}).unwrap();
        }
    }
}

fn new_writer(
    options: &FullOptions,
    size: u64,
    meta: &Metadata,
) -> archive_format::Result<FullWriter<Vec<u8>>> {
    FullWriter::new(Vec::new(), "out.full", options, size, meta)
}

#[track_caller]
fn assert_invalid<T>(result: archive_format::Result<T>, what: &str) -> Error {
    match result {
        Err(e @ Error::InvalidInput { .. }) => {
            assert!(!e.is_integrity(), "{what}: {e} counts as damaged data");
            e
        }
        Err(e) => panic!("{what}: expected InvalidInput, got {e:?}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[test]
fn metadata_over_its_limits_is_refused() {
    let too_long = "x".repeat(MAX_META_TEXT_LEN + 1);
    let cases = [
        Metadata {
            vm_name: Some(too_long.clone()),
            ..Metadata::default()
        },
        Metadata {
            disk_uuid: Some(too_long.clone()),
            ..Metadata::default()
        },
        Metadata {
            tool: Some(too_long),
            ..Metadata::default()
        },
        Metadata {
            vmx: Some(vec![b'#'; Limits::default().max_vmx_len as usize + 1]),
            ..Metadata::default()
        },
    ];
    for meta in cases {
        assert_invalid(
            new_writer(&options(Codec::Gzip, 4096, 2, 1), 0, &meta),
            "oversized metadata",
        );
    }
    // The largest .vmx the writer keeps is accepted and read back.
    let meta = Metadata {
        vmx: Some(big_vmx(Limits::default().max_vmx_len as usize)),
        ..Metadata::default()
    };
    let (file, _) = write_pushed(&[], &options(Codec::Zstd, 4096, 2, 1), &meta);
    assert_eq!(open(&file).unwrap().meta(), &meta);
}

#[test]
fn reader_limits_bound_the_metadata() {
    let meta = Metadata {
        vmx: Some(big_vmx(100_000)),
        ..Metadata::default()
    };
    for codec in CODECS {
        let (file, _) = write_pushed(&disk(100, 4096, 1), &options(codec, 4096, 2, 1), &meta);
        let tight = Limits {
            max_vmx_len: 99_999,
            ..Limits::default()
        };
        let err =
            archive_format::FullImage::open(std::io::Cursor::new(&file), "x", &tight).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    value: 100_000,
                    limit: 99_999,
                    ..
                }
            ),
            "{err:?}"
        );
        let tight = Limits {
            max_image_size: 99,
            ..Limits::default()
        };
        let err =
            archive_format::FullImage::open(std::io::Cursor::new(&file), "x", &tight).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    value: 100,
                    limit: 99,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn block_size_must_be_a_power_of_two_from_4k_to_1m() {
    for codec in CODECS {
        for bs in [
            0,
            1,
            512,
            2048,
            4095,
            4097,
            5000,
            12288,
            65535,
            65537,
            3 << 16,
            (1 << 20) + 4096,
            1 << 21,
            u32::MAX,
        ] {
            let e = assert_invalid(
                new_writer(&options(codec, bs, 2, 1), 10_000, &Metadata::default()),
                &format!("block size {bs}"),
            );
            assert!(e.to_string().contains(&bs.to_string()), "{e}");
        }
        for shift in 12..=20 {
            let bs = 1u32 << shift;
            let content = disk(bs as usize + 3, bs as usize, shift);
            let (file, _) = write_pushed(&content, &options(codec, bs, 2, 1), &Metadata::default());
            let image = open(&file).unwrap();
            assert_eq!(image.header().block_size, bs);
            verify_full(&image, 1, &mut |_| {}).unwrap_or_else(|e| panic!("block size {bs}: {e}"));
        }
    }
}

/// Random data does not compress: every block size at the fastest and the
/// strongest level must still fit the member bound readers enforce.
#[test]
fn incompressible_blocks_of_every_size_round_trip() {
    for codec in CODECS {
        let range = if codec == Codec::Gzip {
            [1, 12]
        } else {
            [1, 19]
        };
        for level in range {
            for shift in 12..=20 {
                let bs = 1usize << shift;
                let mut content = vec![0u8; 2 * bs - 1];
                Rng::new(shift).fill(&mut content);
                let opts = FullOptions {
                    level: Some(level),
                    ..options(codec, bs as u32, 2, 1)
                };
                let what = format!("{} level {level} block size {bs}", codec.name());
                let (file, _) = write_pushed(&content, &opts, &Metadata::default());
                let image = open(&file).unwrap_or_else(|e| panic!("{what}: {e}"));
                verify_full(&image, 1, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_same_bytes(&stock_decode(codec, &file).unwrap(), &content, &what);
            }
        }
    }
}

#[test]
fn level_must_be_in_the_codec_range() {
    for (codec, bad, good) in [
        (Codec::Gzip, [0, 13, -1], [1, 12]),
        (Codec::Zstd, [0, 20, -1], [1, 19]),
    ] {
        for level in bad {
            let opts = FullOptions {
                level: Some(level),
                ..options(codec, 4096, 2, 1)
            };
            let e = assert_invalid(
                new_writer(&opts, 100, &Metadata::default()),
                &format!("{} level {level}", codec.name()),
            );
            assert!(e.to_string().contains(&level.to_string()), "{e}");
        }
        let content = disk(3 * 4096, 4096, 8);
        for level in good {
            let opts = FullOptions {
                level: Some(level),
                ..options(codec, 4096, 2, 1)
            };
            let (file, _) = write_pushed(&content, &opts, &Metadata::default());
            let image = open(&file).unwrap();
            verify_full(&image, 1, &mut |_| {}).unwrap();
            assert_same_bytes(&stock_decode(codec, &file).unwrap(), &content, "decoded");
        }
    }
}

#[test]
fn segment_blocks_must_be_in_range() {
    for segment_blocks in [0, 65537, u32::MAX] {
        assert_invalid(
            new_writer(
                &options(Codec::Gzip, 4096, segment_blocks, 1),
                100,
                &Metadata::default(),
            ),
            &format!("segment_blocks {segment_blocks}"),
        );
    }
    for segment_blocks in [1, 65536] {
        let content = disk(3 * 4096 + 1, 4096, 4);
        let (file, _) = write_pushed(
            &content,
            &options(Codec::Zstd, 4096, segment_blocks, 1),
            &Metadata::default(),
        );
        let image = open(&file).unwrap();
        assert_eq!(
            image.segment_count(),
            if segment_blocks == 1 { 4 } else { 1 }
        );
        verify_full(&image, 1, &mut |_| {}).unwrap();
    }
}

#[test]
fn too_few_blocks_is_an_error_at_finish() {
    for codec in CODECS {
        let content = disk(3 * 4096 + 10, 4096, 6);
        for pushed in 0..4 {
            let mut w = new_writer(
                &options(codec, 4096, 2, 1),
                content.len() as u64,
                &Metadata::default(),
            )
            .unwrap();
            for block in content.chunks(4096).take(pushed) {
                w.push_block(block).unwrap();
            }
            assert_eq!(w.blocks(), pushed as u64);
            let e = assert_invalid(w.finish(), &format!("{pushed} of 4 blocks"));
            assert!(e.to_string().contains("needs 4 blocks"), "{e}");
        }
    }
}

#[test]
fn too_many_blocks_is_an_error() {
    for codec in CODECS {
        let content = disk(2 * 4096, 4096, 6);
        let mut w = new_writer(
            &options(codec, 4096, 2, 1),
            content.len() as u64,
            &Metadata::default(),
        )
        .unwrap();
        for block in content.chunks(4096) {
            w.push_block(block).unwrap();
        }
        assert_invalid(w.push_block(&content[..4096]), "a third block of two");
        // The refused block left no trace: the image still finishes and verifies.
        let (file, _) = w.finish().unwrap();
        let image = open(&file).unwrap();
        verify_full(&image, 1, &mut |_| {}).unwrap();

        let mut w = new_writer(&options(codec, 4096, 2, 1), 0, &Metadata::default()).unwrap();
        assert_invalid(w.push_block(&[]), "a block of an empty image");
        assert_invalid(w.push_block(&[0; 4096]), "a block of an empty image");
    }
}

/// SPEC.md §3.3: every block but the last is exactly `block_size` bytes
/// and the last is what remains. A block of another length would make an
/// image no reader accepts, so `push_block` refuses it, and the refusal
/// leaves the writer able to go on.
#[test]
fn push_block_refuses_a_block_of_the_wrong_length() {
    for codec in CODECS {
        // (image size, blocks pushed before the bad one, bad length)
        let cases = [
            (3 * 4096, 0, 100),
            (3 * 4096, 0, 0),
            (3 * 4096, 1, 8192),
            (3 * 4096, 1, 4095),
            (2 * 4096 + 1000, 2, 4096),
            (2 * 4096 + 1000, 2, 999),
            (2 * 4096 + 1000, 2, 1001),
        ];
        for (size, before, bad_len) in cases {
            let what = format!(
                "{}: image {size}, block {before} of {bad_len} bytes",
                codec.name()
            );
            let content = disk(size as usize, 4096, before as u64);
            let mut blocks = content.chunks(4096);
            let mut w =
                new_writer(&options(codec, 4096, 2, 1), size, &Metadata::default()).unwrap();
            for block in blocks.by_ref().take(before) {
                w.push_block(block).unwrap();
            }
            let e = assert_invalid(w.push_block(&vec![0; bad_len]), &what);
            assert!(e.to_string().contains(&bad_len.to_string()), "{what}: {e}");
            assert_eq!(w.blocks(), before as u64, "{what}");
            for block in blocks {
                w.push_block(block).unwrap();
            }
            let (file, _) = w.finish().unwrap_or_else(|e| panic!("{what}: finish: {e}"));
            let image = open(&file).unwrap();
            verify_full(&image, 1, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_same_bytes(&stock_decode(codec, &file).unwrap(), &content, &what);
        }
    }
}

#[test]
fn an_unfinished_writer_leaves_a_file_readers_call_truncated() {
    for codec in CODECS {
        let content = disk(5 * 4096, 4096, 12);
        let mut w = new_writer(
            &options(codec, 4096, 2, 1),
            content.len() as u64,
            &sample_meta(),
        )
        .unwrap();
        for block in content.chunks(4096) {
            w.push_block(block).unwrap();
        }
        let file = w.get_ref().clone();
        drop(w);
        let err = open(&file).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. }),
            "{}: {err:?}",
            codec.name()
        );
        assert!(err.is_integrity());
    }
}

/// SPEC.md §2 and §5: an unknown minor version and unknown compatible flags
/// are accepted; an unknown major version, incompatible flag, kind or codec
/// is refused as unsupported; reserved bytes must be zero.
#[test]
fn head_versions_and_flags() {
    for codec in CODECS {
        let content = disk(3 * 4096 + 5, 4096, 14);
        let (file, _) = write_pushed(&content, &options(codec, 4096, 2, 1), &sample_meta());
        let patched = |patch: &dyn Fn(&mut [u8])| {
            let mut f = file.clone();
            patch_record(codec, &mut f, 0, patch);
            f
        };
        let name = codec.name();

        let f = patched(&|h| h[10..12].copy_from_slice(&7u16.to_le_bytes()));
        let image = open(&f).unwrap_or_else(|e| panic!("{name}: minor 7: {e}"));
        assert_eq!(image.header().version_minor, 7);
        verify_full(&image, 1, &mut |_| {}).unwrap();

        let f = patched(&|h| h[16..20].copy_from_slice(&0x8000_0001u32.to_le_bytes()));
        let image = open(&f).unwrap_or_else(|e| panic!("{name}: compat flags: {e}"));
        assert_eq!(image.header().compat_flags, 0x8000_0001);

        let f = patched(&|h| h[8..10].copy_from_slice(&2u16.to_le_bytes()));
        let err = open(&f).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    major: 2,
                    minor: 0,
                    ..
                }
            ),
            "{name}: {err:?}"
        );
        assert!(!err.is_integrity());

        for (at, what) in [(12, "incompatible flag"), (20, "kind"), (21, "codec")] {
            let f = patched(&|h| h[at] ^= 0x40);
            let err = open(&f).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedFeature { .. }),
                "{name}: {what}: {err:?}"
            );
        }
        // The HEAD codec byte naming the other container is damage, not a feature.
        let other = if codec == Codec::Gzip { 2 } else { 1 };
        let err = open(&patched(&|h| h[21] = other)).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "{name}: codec swapped: {err:?}"
        );

        for at in [22, 23, 40, 63] {
            let err = open(&patched(&|h| h[at] = 1)).unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { .. }),
                "{name}: reserved byte {at}: {err:?}"
            );
            assert!(err.to_string().contains("reserved"), "{err}");
        }
    }
}

/// SPEC.md §6: an unknown key below 0x8000 is skipped, one at or above it
/// is refused; keys must ascend.
#[test]
fn meta_keys_from_later_versions() {
    for codec in CODECS {
        let meta = sample_meta();
        let (file, _) = write_pushed(&disk(5000, 4096, 5), &options(codec, 4096, 2, 1), &meta);
        // HEAD has a 64-byte body.
        let meta_container = record_span(codec, 64);
        // The tool entry is last: rename its key and see what readers make of it.
        let last_entry = |body: &mut [u8]| {
            let mut at = 0;
            loop {
                let len = u32::from_le_bytes(body[at + 2..at + 6].try_into().unwrap()) as usize;
                if at + 6 + len == body.len() {
                    return at;
                }
                at += 6 + len;
            }
        };
        let with_key = |key: u16| {
            let mut f = file.clone();
            patch_record(codec, &mut f, meta_container, |body| {
                let at = last_entry(body);
                assert_eq!(u16::from_le_bytes([body[at], body[at + 1]]), 12, "tool key");
                body[at..at + 2].copy_from_slice(&key.to_le_bytes());
            });
            f
        };

        let f = with_key(0x7fff);
        let image = open(&f).unwrap_or_else(|e| panic!("{}: informative key: {e}", codec.name()));
        assert_eq!(
            image.meta(),
            &Metadata {
                tool: None,
                ..meta.clone()
            }
        );
        verify_full(&image, 1, &mut |_| {}).unwrap();

        let err = open(&with_key(0x8001)).unwrap_err();
        assert!(matches!(err, Error::UnsupportedFeature { .. }), "{err:?}");
        assert!(err.to_string().contains("0x8001"), "{err}");

        // Key 1 after key 11: out of order.
        let err = open(&with_key(1)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }
}

/// `Limits::max_record_len` bounds what a caller is willing to read; a
/// valid file with a larger record is over a limit the caller can raise
/// (`LimitExceeded`, SPEC.md's "configurable limit"), not damaged. The
/// error should quote the caller's limit and the body length.
#[test]
fn a_record_over_the_callers_limit_is_a_limit_error() {
    let meta = Metadata {
        vmx: Some(big_vmx(100_000)),
        ..Metadata::default()
    };
    for codec in CODECS {
        let (file, _) = write_pushed(&disk(100, 4096, 1), &options(codec, 4096, 2, 1), &meta);
        let tight = Limits {
            max_record_len: 50_000,
            ..Limits::default()
        };
        let err =
            archive_format::FullImage::open(std::io::Cursor::new(&file), "x", &tight).unwrap_err();
        // The META body: one 6-byte entry header and the .vmx.
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    value: 100_006,
                    limit: 50_000,
                    ..
                }
            ),
            "{}: {err:?}",
            codec.name()
        );
        assert!(!err.is_integrity());
        // The same file opens with the default limits.
        assert_eq!(open(&file).unwrap().meta(), &meta);
    }
}
