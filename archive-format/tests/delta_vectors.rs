//! Golden delta vectors (tests/vectors/, described in its README.md): delta
//! archives this library wrote, with the full they need, kept byte for
//! byte. Every delta vector of every released format version must stay
//! restorable; the vectors of the version the library writes today must be
//! exactly what it writes today.
//!
//! After a deliberate format change: bump `VERSION_MAJOR`/`VERSION_MINOR`
//! in layout.rs, add entries for the new version to `DELTA_VECTORS` (keep
//! the old ones), run `SDAR_BLESS=1 cargo test -p archive-format --test
//! delta_vectors`, and update the README's table.

mod fixture;

use archive_format::image::ProvenImage;
use archive_format::layout::{
    DEFAULT_MAP_ENTRIES, VERSION_MAJOR, VERSION_MINOR, VERSION_MINOR_AUTH,
};
use archive_format::restore::{check_base, restore};
use archive_format::Cancel;
use archive_format::{
    hex, verify_full, write_delta, ChangeKind, Codec, DeltaArchive, DeltaHeader, DeltaOptions,
    DeltaWriter, FullImage, FullOptions, FullWriter, Limits, Metadata,
};
use fixture::{
    assert_same_bytes, bless_or_compare, expected_identity, read_vector, vectors_dir, Collect,
};
use std::io::Cursor;
use std::path::Path;

/// The full every delta vector needs.
const BASE_FILE: &str = "delta-base-v1-gzip.full.gz";
const BASE_IDENTITY: &str = "13c299122a614f451c38ee324e783f31b20417db218998b83cad54ae2a4cbb40";
/// The identity of the disk the delta vectors rebuild.
const NEW_IDENTITY: &str = "6b293aa0599f26b1298484a32901e91587efac46115d397d79fb0f4bd5900c58";

const BLOCK: usize = 16384;
const PAGE: usize = 4096;
/// Six whole blocks and a 9000-byte tail (three pages, the last short).
const DISK_LEN: usize = 6 * BLOCK + 9000;

struct DeltaVector {
    file: &'static str,
    /// The format version the file declares in its DHED.
    version: (u16, u16),
    codec: Codec,
    level: i32,
    /// The key file's bytes, for a vector with an AUTH record (1.1).
    key: Option<&'static [u8]>,
}

const DELTA_VECTORS: &[DeltaVector] = &[
    DeltaVector {
        file: "delta-v1-gzip.sdar",
        version: (1, 0),
        codec: Codec::Gzip,
        level: 6,
        key: None,
    },
    DeltaVector {
        file: "delta-v1-zstd.sdar",
        version: (1, 0),
        codec: Codec::Zstd,
        level: 3,
        key: None,
    },
    DeltaVector {
        file: "delta-v1.1-zstd-auth.sdar",
        version: (1, 1),
        codec: Codec::Zstd,
        level: 3,
        key: Some(KEY),
    },
];

/// The key file of the 1.1 delta vector: the same 32 bytes as the full
/// vectors' (`V11_KEY` in vectors.rs). Frozen.
const KEY: &[u8] = b"sdar golden vector key, 32 bytes";

/// What stands where a real delta has its restore program: a tiny frozen
/// placeholder, so the vectors stay small and do not change when the real
/// runtime is rebuilt. The payload does not depend on it (SPEC.md §13).
const RUNTIME: &[u8] = b"#!/bin/sh\necho 'sdar golden vector: restore with sdar restore'\nexit 3\n";

/// SplitMix64 from `seed`, `n` bytes, each output as 8 little-endian bytes.
/// Frozen.
fn splitmix(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The lines `{n:05} sdar delta vector: {word}\n` for n = first, first + 1,
/// …, cut at `len` bytes. Frozen.
fn text(first: usize, word: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut n = first;
    while out.len() < len {
        out.extend_from_slice(format!("{n:05} sdar delta vector: {word}\n").as_bytes());
        n += 1;
    }
    out.truncate(len);
    out
}

/// The disk of the base full, 6 × 16384 + 9000 bytes. Frozen: the
/// released vector files hold exactly these bytes (write a new function
/// for new vectors).
fn base_disk() -> Vec<u8> {
    let mut disk = Vec::with_capacity(DISK_LEN);
    disk.extend_from_slice(&text(0, "the quick brown fox", BLOCK)); // 0
    disk.extend_from_slice(&text(1000, "jumps over the lazy dog", BLOCK)); // 1
    disk.extend_from_slice(&splitmix(0xDE17A, BLOCK / 4)); // 2: random,
    disk.extend_from_slice(&text(2000, "then text", 3 * BLOCK / 4)); // then text
    disk.extend_from_slice(&text(3000, "lorem ipsum dolor sit amet", BLOCK)); // 3
    disk.resize(5 * BLOCK, 0); // 4: zeros
    disk.extend_from_slice(&text(4000, "half text, half zeros", BLOCK / 2)); // 5
    disk.resize(6 * BLOCK, 0);
    disk.extend_from_slice(&splitmix(0xDE17B, 1000)); // 6: the tail,
    disk.extend_from_slice(&text(5000, "the tail", 8000)); // random then text
    disk
}

/// The disk the delta vectors rebuild, from the base's. Frozen like
/// `base_disk`.
fn new_disk() -> Vec<u8> {
    let mut disk = base_disk();
    // Block 0 and block 5 stay as they are.
    // Block 1: its third page rewritten (PATCH).
    disk[BLOCK + 2 * PAGE..][..PAGE].copy_from_slice(&text(6000, "one page changed", PAGE));
    // Block 2: rewritten whole (DATA).
    disk[2 * BLOCK..][..BLOCK].copy_from_slice(&text(7000, "rewritten whole", BLOCK));
    // Block 3: zeroed (ZERO).
    disk[3 * BLOCK..][..BLOCK].fill(0);
    // Block 4: zeros made data (DATA).
    disk[4 * BLOCK..][..BLOCK].copy_from_slice(&text(8000, "zeros made data", BLOCK));
    // Block 6, the tail: its second page rewritten (PATCH).
    disk[6 * BLOCK + PAGE..][..PAGE].copy_from_slice(&text(9000, "tail page changed", PAGE));
    disk
}

/// What each block of the new disk is stored as in every delta vector.
fn expected_changes() -> Vec<(u64, ChangeKind)> {
    vec![
        (1, ChangeKind::Patch { pages: 0b100 }),
        (2, ChangeKind::Data),
        (3, ChangeKind::Zero),
        (4, ChangeKind::Data),
        (6, ChangeKind::Patch { pages: 0b10 }),
    ]
}

fn base_meta() -> Metadata {
    Metadata {
        vm_name: Some("CRM".into()),
        disk_name: Some("CRM.vmdk".into()),
        disk_size: Some(DISK_LEN as u64),
        // 2026-01-01T00:00:00Z
        created_unix: Some(1_767_225_600),
        tool: Some("sdar 0.1.0".into()),
        ..Metadata::default()
    }
}

fn delta_meta() -> Metadata {
    Metadata {
        // 2026-01-02T00:00:00Z
        created_unix: Some(1_767_312_000),
        base_name: Some(BASE_FILE.into()),
        ..base_meta()
    }
}

const BLESS_HINT: &str = "if the format changed on purpose, bump VERSION_MAJOR/VERSION_MINOR in \
     archive-format/src/layout.rs, add vectors for the new version to DELTA_VECTORS in \
     archive-format/tests/delta_vectors.rs (keep the old ones), then run \
     `SDAR_BLESS=1 cargo test -p archive-format --test delta_vectors` to write them \
     and update tests/vectors/README.md";

/// What the writer of today makes of the base disk.
fn write_base() -> Vec<u8> {
    let disk = base_disk();
    let options = FullOptions {
        codec: Codec::Gzip,
        level: Some(6),
        block_size: BLOCK as u32,
        segment_blocks: 2,
        threads: 1,
        key: None,
    };
    let mut w = FullWriter::new(
        Vec::new(),
        BASE_FILE,
        &options,
        disk.len() as u64,
        &base_meta(),
    )
    .expect("new");
    for block in disk.chunks(BLOCK) {
        w.push_block(block).expect("push_block");
    }
    w.finish().expect("finish").0
}

fn open_base(file: &[u8]) -> FullImage<Cursor<&[u8]>> {
    FullImage::open(Cursor::new(file), BASE_FILE, &Limits::default())
        .unwrap_or_else(|e| panic!("{BASE_FILE}: open: {e}"))
}

/// What the writer of today makes of the new disk against `base_file`.
fn write_vector(v: &DeltaVector, base_file: &[u8]) -> Vec<u8> {
    let base = open_base(base_file);
    let header = DeltaHeader {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        compat_flags: 0,
        incompat_flags: 0,
        codec: v.codec,
        block_size: base.header().block_size,
        map_entries: DEFAULT_MAP_ENTRIES,
        image_size: DISK_LEN as u64,
        base_image_size: base.header().image_size,
        base_identity: base.identity(),
    };
    let key = v
        .key
        .map(|k| archive_format::auth::Key::from_secret(k).expect("key"));
    let writer = DeltaWriter::with_key(Vec::new(), v.file, RUNTIME, header, &delta_meta(), key)
        .expect("DeltaWriter::with_key");
    let options = DeltaOptions {
        codec: v.codec,
        level: Some(v.level),
        threads: 1,
        index_only: false,
    };
    let disk = new_disk();
    write_delta(
        &disk[..],
        Path::new("new.raw"),
        &base,
        writer,
        &options,
        &mut |_| {},
    )
    .expect("write_delta")
    .0
}

#[test]
fn the_disks_are_what_the_readme_says() {
    let (base, new) = (base_disk(), new_disk());
    assert_eq!((base.len(), new.len()), (DISK_LEN, DISK_LEN));
    assert_eq!(hex(&expected_identity(&base, BLOCK as u32)), BASE_IDENTITY);
    assert_eq!(hex(&expected_identity(&new, BLOCK as u32)), NEW_IDENTITY);
}

#[test]
fn every_delta_vector_restores_byte_for_byte() {
    let base_file = read_vector(BASE_FILE);
    let base_disk = base_disk();
    let new_disk = new_disk();
    let base = open_base(&base_file);
    assert_eq!(hex(&base.identity()), BASE_IDENTITY, "{BASE_FILE}");
    assert_eq!(base.header().block_size, BLOCK as u32, "{BASE_FILE}");
    assert_eq!(base.meta(), &base_meta(), "{BASE_FILE}: metadata");
    let report =
        verify_full(&base, 1, &mut |_| {}).unwrap_or_else(|e| panic!("{BASE_FILE}: verify: {e}"));
    assert_eq!(hex(&report.identity), BASE_IDENTITY, "{BASE_FILE}");
    assert_same_bytes(
        &fixture::stock_decode(Codec::Gzip, &base_file).expect("decode"),
        &base_disk,
        &format!("{BASE_FILE}: independent decoder"),
    );

    for v in DELTA_VECTORS {
        let what = v.file;
        let file = read_vector(v.file);
        let delta = DeltaArchive::open(Cursor::new(&file[..]), v.file, &Limits::default())
            .unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let h = delta.header().clone();
        assert_eq!(
            (h.version_major, h.version_minor),
            v.version,
            "{what}: version"
        );
        assert_eq!(h.codec, v.codec, "{what}");
        assert_eq!(h.block_size, BLOCK as u32, "{what}");
        assert_eq!(h.image_size, DISK_LEN as u64, "{what}");
        assert_eq!(hex(&h.base_identity), BASE_IDENTITY, "{what}: base");
        assert_eq!(hex(&delta.identity()), NEW_IDENTITY, "{what}: identity");
        assert_eq!(delta.meta(), &delta_meta(), "{what}: metadata");
        assert_eq!(delta.runtime_len(), RUNTIME.len() as u64, "{what}");
        assert_eq!(
            delta.trailer().payload_offset,
            RUNTIME.len() as u64,
            "{what}: payload offset"
        );
        assert!(file.starts_with(RUNTIME), "{what}: runtime");

        match v.key {
            Some(k) => {
                let key = archive_format::auth::Key::from_secret(k).expect("key");
                delta
                    .authenticate(&key)
                    .unwrap_or_else(|e| panic!("{what}: authenticate: {e}"));
                let other = archive_format::auth::Key::from_secret(&[0u8; 32]).expect("key");
                assert!(delta.authenticate(&other).is_err(), "{what}: another key");
            }
            None => assert!(delta.auth().is_none(), "{what}: no AUTH record"),
        }

        let mut changes = Vec::new();
        for g in 0..delta.group_count() {
            for e in delta
                .group(g)
                .unwrap_or_else(|e| panic!("{what}: group {g}: {e}"))
            {
                changes.push((e.block, e.kind));
            }
        }
        assert_eq!(changes, expected_changes(), "{what}: changed blocks");

        let base = open_base(&base_file);
        check_base(&delta, &base).unwrap_or_else(|e| panic!("{what}: check_base: {e}"));
        let image = ProvenImage::of_delta(delta, base)
            .unwrap_or_else(|e| panic!("{what}: proving the map: {e}"));
        let mut sink = Collect(vec![0; DISK_LEN]);
        let report = restore(&image, &mut sink, 1, None, &mut |_| {}, &Cancel::new())
            .unwrap_or_else(|e| panic!("{what}: restore: {e}"));
        assert_eq!(hex(&report.identity), NEW_IDENTITY, "{what}");
        assert_same_bytes(&sink.0, &new_disk, &format!("{what}: restored disk"));
    }
}

#[test]
fn delta_vectors_of_the_current_version_are_what_the_writer_writes() {
    // The writer writes 1.0 without a key and 1.1 with one (SPEC.md §2).
    let written_versions = [
        (VERSION_MAJOR, VERSION_MINOR),
        (VERSION_MAJOR, VERSION_MINOR_AUTH),
    ];
    let current = written_versions[0];
    for codec in [Codec::Gzip, Codec::Zstd] {
        assert!(
            DELTA_VECTORS
                .iter()
                .any(|v| v.version == current && v.codec == codec),
            "the library writes format version {}.{} but there is no {} delta vector for it: {BLESS_HINT}",
            current.0,
            current.1,
            codec.name()
        );
    }
    // The base is a full of the current version too; the deltas are made
    // against the base written now, which is the kept one unless it is stale.
    let base = write_base();
    let mut files = vec![(BASE_FILE, base.clone())];
    for v in DELTA_VECTORS
        .iter()
        .filter(|v| written_versions.contains(&v.version))
    {
        files.push((v.file, write_vector(v, &base)));
    }
    let mut stale = Vec::new();
    for (file, written) in files {
        stale.extend(bless_or_compare(file, &written));
    }
    assert!(
        stale.is_empty(),
        "the writer no longer reproduces these golden delta vectors byte for byte: {}.\n\
         A compressor upgrade (libdeflate, zstd) can do this without any format change; \
         then check that every_delta_vector_restores_byte_for_byte passes and bless. \
         Otherwise, {BLESS_HINT}.",
        stale.join(", ")
    );
}

/// The README says how big each vector is and what its identity is; a
/// blessed vector whose README was not updated fails here.
#[test]
fn readme_describes_every_delta_vector() {
    let readme_path = vectors_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("tests/vectors/README.md");
    let rows = std::iter::once((BASE_FILE, BASE_IDENTITY))
        .chain(DELTA_VECTORS.iter().map(|v| (v.file, NEW_IDENTITY)));
    for (file, identity) in rows {
        let len = read_vector(file).len();
        let row = readme
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{file}`")))
            .unwrap_or_else(|| panic!("README.md has no table row for {file}"));
        assert!(
            row.contains(&format!("| {len} |")),
            "README.md row for {file} does not give its size, {len} bytes: {row}"
        );
        assert!(
            row.contains(identity),
            "README.md row for {file} does not give its identity {identity}: {row}"
        );
    }
}
