//! The user owns the data: stock `zcat`, `gzip`, `pigz` and `zstd` read
//! every full image `sdar full` writes and give back exactly the disk, for
//! raw images and both descriptor types, at every boundary size.

mod common;

use common::*;
use std::path::Path;

/// Runs `sdar full SOURCE -o OUT --codec CODEC EXTRA...` in `dir`, and
/// checks that the empty delta `STEM.sdar` was written beside OUT. Fulls
/// of one test therefore need distinct stems (`a.full.gz`, `a-zstd.full.zst`).
fn full(dir: &Path, source: &str, out: &str, codec: &str, extra: &[&str]) {
    let mut args = vec!["full", source, "-o", out, "--codec", codec, "-q"];
    args.extend_from_slice(extra);
    sdar(dir, &args).success();
    let stem = [".full.gz", ".full.zst"]
        .iter()
        .find_map(|s| out.strip_suffix(s))
        .unwrap_or_else(|| panic!("{out} is not named *.full.gz or *.full.zst"));
    assert!(
        dir.join(format!("{stem}.sdar")).is_file(),
        "`sdar full -o {out}` wrote no {stem}.sdar beside it"
    );
}

/// `zcat`, `gzip -dc`, `pigz -dc` all give back `disk`; `gzip -t` and
/// `pigz -t` find nothing wrong.
#[track_caller]
fn assert_gzip_tools_restore(dir: &Path, file: &str, disk: &[u8]) {
    for (tool, args) in [
        ("zcat", vec![file]),
        ("gzip", vec!["-dc", file]),
        ("pigz", vec!["-dc", file]),
    ] {
        let out = stock(dir, tool, &args).success();
        assert_same_bytes(&out.stdout, disk, &format!("`{}`", out.what));
    }
    stock(dir, "gzip", &["-t", file]).success();
    stock(dir, "pigz", &["-t", file]).success();
}

/// `zstd -dc` gives back `disk`, `zstd -t` finds nothing wrong, and
/// `zstd -lv` reports the disk's exact size.
#[track_caller]
fn assert_zstd_tools_restore(dir: &Path, file: &str, disk: &[u8]) {
    let out = stock(dir, "zstd", &["-dc", file]).success();
    assert_same_bytes(&out.stdout, disk, &format!("`{}`", out.what));
    stock(dir, "zstd", &["-t", file]).success();
    let listed = stock(dir, "zstd", &["-lv", file]).success();
    let text = format!("{}{}", listed.stdout_text(), listed.stderr);
    assert_eq!(
        zstd_decompressed_size(&text),
        Some(disk.len() as u64),
        "`zstd -lv {file}` reports the wrong size:\n{text}"
    );
}

/// The exact byte count in `Decompressed Size: 1.00 MiB (1049088 B)`.
fn zstd_decompressed_size(listing: &str) -> Option<u64> {
    let line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("Decompressed Size:"))?;
    let inner = line.rsplit_once('(')?.1.strip_suffix(')')?;
    inner.strip_suffix(" B")?.trim().parse().ok()
}

#[test]
fn zstd_listing_parser_reads_exact_size() {
    assert_eq!(
        zstd_decompressed_size("Decompressed Size: 1.00 MiB (1049088 B)\n"),
        Some(1_049_088)
    );
    assert_eq!(
        zstd_decompressed_size("Decompressed Size: 0 B (0 B)"),
        Some(0)
    );
    assert_eq!(zstd_decompressed_size("Decompressed Size: unknown"), None);
}

#[test]
fn gzip_full_of_raw_disk_is_read_by_zcat_gzip_and_pigz() {
    let dir = scratch();
    let disk = sample_disk(dir.path(), "disk.raw", 3 << 20, 1);
    full(dir.path(), "disk.raw", "disk.full.gz", "gzip", &[]);
    assert_gzip_tools_restore(dir.path(), "disk.full.gz", &disk);
}

#[test]
fn zstd_full_of_raw_disk_is_read_by_zstd() {
    let dir = scratch();
    let disk = sample_disk(dir.path(), "disk.raw", 3 << 20, 1);
    full(dir.path(), "disk.raw", "disk.full.zst", "zstd", &[]);
    assert_zstd_tools_restore(dir.path(), "disk.full.zst", &disk);
}

#[test]
fn full_of_monolithic_flat_descriptor_gives_back_flat_bytes() {
    let dir = scratch();
    // 8193 sectors: 4 MiB and one sector, so the last 64K block is 512 bytes.
    let vmdk = sample_vmdk(dir.path(), "crm", DescriptorKind::MonolithicFlat, 8193, 2);
    full(dir.path(), &vmdk.descriptor, "crm.full.gz", "gzip", &[]);
    assert_gzip_tools_restore(dir.path(), "crm.full.gz", &vmdk.disk);
    full(
        dir.path(),
        &vmdk.descriptor,
        "crm-zstd.full.zst",
        "zstd",
        &[],
    );
    assert_zstd_tools_restore(dir.path(), "crm-zstd.full.zst", &vmdk.disk);
}

#[test]
fn full_of_vmfs_descriptor_gives_back_flat_bytes() {
    let dir = scratch();
    let vmdk = sample_vmdk(dir.path(), "web", DescriptorKind::Vmfs, 6151, 5);
    full(dir.path(), &vmdk.descriptor, "web.full.gz", "gzip", &[]);
    assert_gzip_tools_restore(dir.path(), "web.full.gz", &vmdk.disk);
    full(
        dir.path(),
        &vmdk.descriptor,
        "web-zstd.full.zst",
        "zstd",
        &[],
    );
    assert_zstd_tools_restore(dir.path(), "web-zstd.full.zst", &vmdk.disk);
}

/// 0, 1, block−1, block, block+1 for both the 4K and the default 64K block,
/// and sizes that are not a whole number of sectors.
#[test]
fn boundary_sizes_of_raw_disks_round_trip_through_stock_tools() {
    let dir = scratch();
    let cases: &[(u64, &str)] = &[
        (0, "64K"),
        (1, "64K"),
        (511, "4K"),
        (4095, "4K"),
        (4096, "4K"),
        (4097, "4K"),
        (65_535, "64K"),
        (65_536, "64K"),
        (65_537, "64K"),
        ((1 << 20) + 3 * 512, "64K"),
        ((2 << 20) + 7, "64K"),
    ];
    for &(size, block_size) in cases {
        // Seed 4 starts with data rather than zeros, so even tiny disks
        // hold something a wrong offset would show.
        let name = format!("d{size}.raw");
        let disk = sample_disk(dir.path(), &name, size, 4);
        let gz = format!("d{size}.full.gz");
        let zst = format!("d{size}-zstd.full.zst");
        full(
            dir.path(),
            &name,
            &gz,
            "gzip",
            &["--block-size", block_size],
        );
        full(
            dir.path(),
            &name,
            &zst,
            "zstd",
            &["--block-size", block_size],
        );
        assert_gzip_tools_restore(dir.path(), &gz, &disk);
        assert_zstd_tools_restore(dir.path(), &zst, &disk);
    }
}

#[test]
fn odd_sector_counts_of_both_descriptor_types_round_trip() {
    let dir = scratch();
    for kind in [DescriptorKind::MonolithicFlat, DescriptorKind::Vmfs] {
        for sectors in [1u64, 127, 2049, 16_383] {
            let name = format!("{kind:?}-{sectors}").to_lowercase();
            let vmdk = sample_vmdk(dir.path(), &name, kind, sectors, 6);
            let gz = format!("{name}.full.gz");
            let zst = format!("{name}-zstd.full.zst");
            full(dir.path(), &vmdk.descriptor, &gz, "gzip", &[]);
            full(
                dir.path(),
                &vmdk.descriptor,
                &zst,
                "zstd",
                &["--block-size", "4K"],
            );
            assert_gzip_tools_restore(dir.path(), &gz, &vmdk.disk);
            assert_zstd_tools_restore(dir.path(), &zst, &vmdk.disk);
        }
    }
}

#[test]
fn zero_byte_raw_disk_gives_back_nothing() {
    let dir = scratch();
    std::fs::write(dir.path().join("empty.raw"), b"").unwrap();
    full(dir.path(), "empty.raw", "empty.full.gz", "gzip", &[]);
    full(dir.path(), "empty.raw", "empty-zstd.full.zst", "zstd", &[]);
    assert_gzip_tools_restore(dir.path(), "empty.full.gz", &[]);
    assert_zstd_tools_restore(dir.path(), "empty-zstd.full.zst", &[]);
    sdar(dir.path(), &["verify", "empty.full.gz"]).success();
    sdar(dir.path(), &["verify", "empty-zstd.full.zst"]).success();
}

/// 1280 blocks of 4K: two index segments, the second one short.
#[test]
fn image_with_several_index_segments_round_trips() {
    let dir = scratch();
    let disk = sample_disk(dir.path(), "disk.raw", 5 << 20, 1);
    full(
        dir.path(),
        "disk.raw",
        "disk.full.gz",
        "gzip",
        &["--block-size", "4K"],
    );
    full(
        dir.path(),
        "disk.raw",
        "disk-zstd.full.zst",
        "zstd",
        &["--block-size", "4K"],
    );
    assert_eq!(
        layout(&dir.path().join("disk.full.gz")).index_records.len(),
        2
    );
    assert_gzip_tools_restore(dir.path(), "disk.full.gz", &disk);
    assert_zstd_tools_restore(dir.path(), "disk-zstd.full.zst", &disk);
}

/// Only the declared sectors are the disk: the extent's offset is skipped
/// and bytes past its end in the flat file are not part of it.
#[test]
fn flat_extent_offset_and_trailing_bytes_are_honoured() {
    let dir = scratch();
    let flat = sample_disk(dir.path(), "vm-flat.vmdk", 3 << 20, 1);
    let (offset, sectors) = (3u64, 4099u64);
    std::fs::write(
        dir.path().join("vm.vmdk"),
        descriptor_text(
            DescriptorKind::MonolithicFlat,
            sectors,
            "vm-flat.vmdk",
            offset,
        ),
    )
    .unwrap();
    let disk = &flat[(offset * 512) as usize..((offset + sectors) * 512) as usize];
    full(dir.path(), "vm.vmdk", "vm.full.gz", "gzip", &[]);
    full(dir.path(), "vm.vmdk", "vm-zstd.full.zst", "zstd", &[]);
    assert_gzip_tools_restore(dir.path(), "vm.full.gz", disk);
    assert_zstd_tools_restore(dir.path(), "vm-zstd.full.zst", disk);
}
