//! Round trips: every way of writing a full image gives the same bytes, and
//! every way of reading it (the library, `verify_full`, an independent
//! decoder, the stock tools) gives back exactly the disk.

mod fixture;

use archive_format::{hex, verify_full, Codec, FullOptions, MemberCheck, Metadata};
use fixture::*;
use std::io::Cursor;

/// BLAKE3-style boundary sizes for one block size.
fn boundary_sizes(bs: usize) -> Vec<usize> {
    vec![0, 1, bs - 1, bs, bs + 1, 512 * 7, 3 * bs + 512 * 3]
}

/// Sizes around the ends of segments of `segment_blocks` blocks.
fn segment_sizes(bs: usize, segment_blocks: usize) -> Vec<usize> {
    let k = segment_blocks;
    vec![
        k * bs - 1,
        k * bs,
        k * bs + 1,
        2 * k * bs,
        2 * k * bs + 512,
        3 * k * bs - 1,
    ]
}

struct Case {
    codec: Codec,
    block_size: u32,
    segment_blocks: u32,
    size: usize,
    seed: u64,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} block size {} segment_blocks {} size {} seed {}",
            self.codec.name(),
            self.block_size,
            self.segment_blocks,
            self.size,
            self.seed
        )
    }
}

/// Writes the case's disk every way there is, checks the files are equal,
/// then reads it back every way there is.
fn check(case: &Case) {
    let bs = case.block_size as usize;
    let content = disk(case.size, bs, case.seed);
    let meta = sample_meta();
    let opts = options(case.codec, case.block_size, case.segment_blocks, 1);
    let (file, summary) = write_pushed(&content, &opts, &meta);

    for threads in [1, 2] {
        let opts = FullOptions {
            threads,
            ..opts.clone()
        };
        let (streamed, s, progress) =
            write_streamed(Cursor::new(&content), content.len() as u64, &opts, &meta);
        assert_same_bytes(
            &streamed,
            &file,
            &format!("{case}: write_full on {threads} threads vs push_block"),
        );
        assert_eq!(
            s, summary,
            "{case}: summary of write_full on {threads} threads"
        );
        assert!(
            progress.windows(2).all(|w| w[0] < w[1]),
            "{case}: progress goes backwards: {progress:?}"
        );
        assert_eq!(
            progress.last().copied().unwrap_or(0),
            content.len() as u64,
            "{case}: progress does not end at the image size"
        );
    }

    let blocks = content.len().div_ceil(bs) as u64;
    let zero_blocks = count_zero_blocks(&content, bs);
    let identity = expected_identity(&content, case.block_size);
    assert_eq!(summary.image_size, content.len() as u64, "{case}");
    assert_eq!(summary.blocks, blocks, "{case}: blocks");
    assert_eq!(summary.zero_blocks, zero_blocks, "{case}: zero blocks");
    assert_eq!(summary.file_len, file.len() as u64, "{case}: file_len");
    assert_eq!(
        summary.data_bytes + summary.index_bytes,
        summary.file_len,
        "{case}: data + index bytes"
    );
    assert_eq!(
        hex(&summary.identity),
        hex(&identity),
        "{case}: identity against SPEC.md §10"
    );

    let image = open(&file).unwrap_or_else(|e| panic!("{case}: open: {e}"));
    assert_eq!(image.meta(), &meta, "{case}: metadata");
    assert_eq!(image.identity(), identity, "{case}: recorded identity");
    assert_eq!(image.file_len(), file.len() as u64);
    let header = image.header().clone();
    assert_eq!(header.codec, case.codec);
    assert_eq!(header.block_size, case.block_size);
    assert_eq!(header.segment_blocks, case.segment_blocks);
    assert_eq!(header.image_size, content.len() as u64);
    assert_eq!(
        image.segment_count(),
        blocks.div_ceil(case.segment_blocks as u64),
        "{case}: segments"
    );

    for threads in [1, 2] {
        let mut progress = Vec::new();
        let report = verify_full(&image, threads, &mut |done| progress.push(done))
            .unwrap_or_else(|e| panic!("{case}: verify on {threads} threads: {e}"));
        assert!(
            progress.windows(2).all(|w| w[0] < w[1]),
            "{case}: verify progress goes backwards: {progress:?}"
        );
        assert_eq!(
            progress.last().copied().unwrap_or(0),
            content.len() as u64,
            "{case}: verify progress does not end at the image size"
        );
        assert_eq!(report.identity, identity, "{case}: verified identity");
        assert_eq!(report.blocks, blocks, "{case}: verified blocks");
        assert_eq!(
            report.zero_blocks, zero_blocks,
            "{case}: verified zero blocks"
        );
        assert_eq!(report.image_size, content.len() as u64);
        assert_eq!(
            report.data_bytes, summary.data_bytes,
            "{case}: verified data bytes"
        );
        assert_eq!(report.file_len, file.len() as u64);
    }

    // Every block, in an order that jumps between segments.
    let mut order: Vec<u64> = (0..blocks).collect();
    Rng::new(case.seed ^ 0xB10C).shuffle(&mut order);
    let mut check = MemberCheck::new(case.codec, &header).expect("MemberCheck");
    let mut out = Vec::new();
    for b in order {
        image
            .read_block(b, &mut out, &mut check)
            .unwrap_or_else(|e| panic!("{case}: read_block {b}: {e}"));
        let start = b as usize * bs;
        let expected = &content[start..(start + bs).min(content.len())];
        assert_same_bytes(&out, expected, &format!("{case}: block {b}"));
    }
    let past_end = image.read_block(blocks, &mut out, &mut check);
    assert!(
        matches!(past_end, Err(archive_format::Error::InvalidInput { .. })),
        "{case}: reading block {blocks} of {blocks}: {past_end:?}"
    );

    let decoded = stock_decode(case.codec, &file)
        .unwrap_or_else(|e| panic!("{case}: independent decoder: {e}"));
    assert_same_bytes(&decoded, &content, &format!("{case}: independent decoder"));
}

fn boundaries(codec: Codec, block_size: u32) {
    let bs = block_size as usize;
    let mut seed = block_size as u64;
    for segment_blocks in [1024, 2, 3] {
        for size in boundary_sizes(bs) {
            seed += 1;
            check(&Case {
                codec,
                block_size,
                segment_blocks,
                size,
                seed,
            });
        }
    }
}

fn segments(codec: Codec, block_size: u32) {
    let bs = block_size as usize;
    let mut seed = 1000 + block_size as u64;
    for segment_blocks in [2, 3] {
        for size in segment_sizes(bs, segment_blocks as usize) {
            seed += 1;
            check(&Case {
                codec,
                block_size,
                segment_blocks,
                size,
                seed,
            });
        }
    }
}

#[test]
fn gzip_4k_boundary_sizes() {
    boundaries(Codec::Gzip, 4096);
}

#[test]
fn gzip_64k_boundary_sizes() {
    boundaries(Codec::Gzip, 65536);
}

#[test]
fn zstd_4k_boundary_sizes() {
    boundaries(Codec::Zstd, 4096);
}

#[test]
fn zstd_64k_boundary_sizes() {
    boundaries(Codec::Zstd, 65536);
}

#[test]
fn gzip_4k_segment_boundaries() {
    segments(Codec::Gzip, 4096);
}

#[test]
fn gzip_64k_segment_boundaries() {
    segments(Codec::Gzip, 65536);
}

#[test]
fn zstd_4k_segment_boundaries() {
    segments(Codec::Zstd, 4096);
}

#[test]
fn zstd_64k_segment_boundaries() {
    segments(Codec::Zstd, 65536);
}

/// Enough blocks for several 1 MiB batches, so worker threads finish out of
/// order and the writer must put them back in order.
#[test]
fn parallel_writer_keeps_block_order_across_batches() {
    for codec in CODECS {
        let content = disk(3 * 1024 * 1024 + 5 * 4096 + 123, 4096, 77);
        let meta = sample_meta();
        let serial = options(codec, 4096, 3, 1);
        let (file, summary) = write_pushed(&content, &serial, &meta);
        for threads in [2, 3, 0] {
            let opts = FullOptions {
                threads,
                ..serial.clone()
            };
            let (streamed, s, _) =
                write_streamed(Cursor::new(&content), content.len() as u64, &opts, &meta);
            assert_same_bytes(
                &streamed,
                &file,
                &format!("{} on {threads} threads", codec.name()),
            );
            assert_eq!(s, summary);
        }
        let image = open(&file).expect("open");
        let report = verify_full(&image, 0, &mut |_| {}).expect("verify");
        assert_eq!(report.identity, expected_identity(&content, 4096));
        assert_same_bytes(
            &stock_decode(codec, &file).expect("decode"),
            &content,
            "decoded",
        );
    }
}

#[test]
fn identity_depends_on_content_not_codec() {
    for (size, seed) in [(1, 1), (4095, 2), (5 * 4096 + 1000, 3), (40_000, 4)] {
        let content = disk(size, 4096, seed);
        let meta = sample_meta();
        let id = |codec, content: &[u8], block_size| {
            write_pushed(content, &options(codec, block_size, 2, 1), &meta)
                .1
                .identity
        };
        let gzip = id(Codec::Gzip, &content, 4096);
        let zstd = id(Codec::Zstd, &content, 4096);
        assert_eq!(
            hex(&gzip),
            hex(&zstd),
            "size {size}: gzip and zstd identities differ"
        );
        // Different metadata, level and segment length: still the same image.
        let other = Metadata {
            vm_name: Some("renamed".into()),
            ..Metadata::default()
        };
        let opts = FullOptions {
            level: Some(1),
            segment_blocks: 1024,
            ..options(Codec::Gzip, 4096, 2, 1)
        };
        assert_eq!(
            write_pushed(&content, &opts, &other).1.identity,
            gzip,
            "size {size}"
        );

        let mut rng = Rng::new(seed);
        for _ in 0..4 {
            let mut changed = content.clone();
            let at = rng.below(size as u64) as usize;
            changed[at] ^= 1 << rng.below(8);
            for codec in CODECS {
                assert_ne!(
                    id(codec, &changed, 4096),
                    gzip,
                    "size {size}: changing byte {at} kept the identity ({})",
                    codec.name()
                );
            }
        }
        // One byte longer, even of zeros, is a different image.
        let mut longer = content.clone();
        longer.push(0);
        assert_ne!(
            id(Codec::Gzip, &longer, 4096),
            gzip,
            "size {size}: appended zero"
        );
    }
    // The block size is part of the identity: the index it describes differs.
    let content = disk(70_000, 4096, 9);
    let small = write_pushed(&content, &options(Codec::Gzip, 4096, 2, 1), &sample_meta()).1;
    let large = write_pushed(&content, &options(Codec::Gzip, 65536, 2, 1), &sample_meta()).1;
    assert_ne!(small.identity, large.identity);
}

#[test]
fn write_full_survives_short_reads() {
    for codec in CODECS {
        for (i, size) in [0usize, 1, 4095, 4097, 3 * 4096 + 1536, 200_000]
            .into_iter()
            .enumerate()
        {
            let content = disk(size, 4096, 40 + i as u64);
            let meta = sample_meta();
            let opts = options(codec, 4096, 3, 1);
            let (file, summary) = write_pushed(&content, &opts, &meta);
            for threads in [1, 2] {
                let opts = FullOptions {
                    threads,
                    ..opts.clone()
                };
                let source =
                    ShortReads::new(Cursor::new(&content), 7 * i as u64 + threads as u64, 997);
                let (streamed, s, _) = write_streamed(source, size as u64, &opts, &meta);
                assert_same_bytes(
                    &streamed,
                    &file,
                    &format!(
                        "{} size {size} threads {threads}: short reads",
                        codec.name()
                    ),
                );
                assert_eq!(s, summary);
            }
        }
    }
}

/// A source shorter than the size the writer was given is an error naming
/// the byte where it ended, not a short image.
#[test]
fn write_full_refuses_a_short_source() {
    for codec in CODECS {
        let content = disk(3 * 4096, 4096, 5);
        let w = archive_format::FullWriter::new(
            Vec::new(),
            "out.full",
            &options(codec, 4096, 2, 1),
            content.len() as u64 + 10,
            &sample_meta(),
        )
        .expect("new");
        let err = archive_format::write_full(
            ShortReads::new(Cursor::new(&content), 3, 100),
            std::path::Path::new("source.raw"),
            w,
            &mut |_| {},
        )
        .expect_err("a source 10 bytes short must fail");
        assert!(
            matches!(err, archive_format::Error::Source { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&content.len().to_string()),
            "{err}"
        );
    }
}

#[test]
fn reader_survives_short_reads() {
    for codec in CODECS {
        for (i, (size, segment_blocks)) in
            [(0usize, 2u32), (1, 2), (5 * 4096 + 1000, 2), (50_000, 3)]
                .into_iter()
                .enumerate()
        {
            let content = disk(size, 4096, 60 + i as u64);
            let (file, summary) = write_pushed(
                &content,
                &options(codec, 4096, segment_blocks, 1),
                &sample_meta(),
            );
            let what = format!("{} size {size}", codec.name());
            let reader = ShortReads::new(Cursor::new(&file), i as u64, 13);
            let image = archive_format::FullImage::open(
                reader,
                "short.full",
                &archive_format::Limits::default(),
            )
            .unwrap_or_else(|e| panic!("{what}: open: {e}"));
            assert_eq!(image.meta(), &sample_meta(), "{what}");
            let report = verify_full(&image, 1, &mut |_| {})
                .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
            assert_eq!(report.identity, summary.identity, "{what}");
            assert_eq!(report.zero_blocks, summary.zero_blocks, "{what}");
            let header = image.header().clone();
            let mut check = MemberCheck::new(codec, &header).expect("MemberCheck");
            let mut order: Vec<u64> = (0..summary.blocks).collect();
            Rng::new(i as u64).shuffle(&mut order);
            let mut out = Vec::new();
            for b in order {
                image
                    .read_block(b, &mut out, &mut check)
                    .unwrap_or_else(|e| panic!("{what}: block {b}: {e}"));
                let start = b as usize * 4096;
                assert_same_bytes(&out, &content[start..(start + 4096).min(size)], &what);
            }
            // Every byte is read at least once, at most 13 at a time.
            let reads = image.into_inner().reads();
            assert!(
                reads >= file.len() as u64 / 13,
                "{what}: only {reads} reads of a {}-byte file: the wrapper was bypassed",
                file.len()
            );
        }
    }
}

/// The stock tools themselves, where installed: `gzip -t` and `zcat`,
/// `zstd -t` and `zstd -dc` accept the image and give back the disk.
#[test]
fn stock_tools_read_the_image() {
    let content = disk(5 * 65536 + 4321, 65536, 11);
    for codec in CODECS {
        let (file, _) = write_pushed(&content, &options(codec, 65536, 2, 1), &sample_meta());
        let (test, cat): (&[&str], &[&str]) = match codec {
            Codec::Gzip => (&["gzip", "-t"], &["gzip", "-dc"]),
            Codec::Zstd => (&["zstd", "-t", "-q"], &["zstd", "-dc", "-q"]),
        };
        let Some(out) = run_tool(test[0], &test[1..], &file) else {
            continue;
        };
        assert!(
            out.status.success(),
            "{test:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let Some(out) = run_tool(cat[0], &cat[1..], &file) else {
            continue;
        };
        assert!(
            out.status.success(),
            "{cat:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_bytes(&out.stdout, &content, &format!("{cat:?}"));
    }
    let (file, _) = write_pushed(&content, &options(Codec::Gzip, 4096, 3, 1), &sample_meta());
    if let Some(out) = run_tool("zcat", &[], &file) {
        assert!(
            out.status.success(),
            "zcat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_bytes(&out.stdout, &content, "zcat");
    }
}
