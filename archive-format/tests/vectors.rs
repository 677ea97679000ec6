//! Golden vectors (tests/vectors/, described in its README.md): files this
//! library wrote, kept byte for byte. Every vector of every released format
//! version must stay readable; the vectors of the version the library writes
//! today must be exactly what it writes today.
//!
//! After a deliberate format change: bump `VERSION_MAJOR`/`VERSION_MINOR`
//! in layout.rs, add entries for the new version to `VECTORS` (keep the old
//! ones), run `SDAR_BLESS=1 cargo test -p archive-format --test vectors`,
//! and update the README's table.

mod fixture;

use archive_format::layout::{VERSION_MAJOR, VERSION_MINOR};
use archive_format::{
    hex, verify_full, Codec, FullOptions, FullWriter, Geometry, MemberCheck, Metadata,
};
use fixture::{
    assert_same_bytes, bless_or_compare, expected_identity, open, read_vector, run_tool,
    stock_decode, vectors_dir,
};

struct Vector {
    file: &'static str,
    /// The format version the file declares in its HEAD.
    version: (u16, u16),
    codec: Codec,
    level: i32,
    block_size: u32,
    segment_blocks: u32,
    /// The image identity (SPEC.md §10), which depends on the disk alone.
    identity: &'static str,
    disk: fn() -> Vec<u8>,
    meta: fn() -> Metadata,
    /// The key file's bytes, for a vector with an AUTH record (1.1).
    key: Option<&'static [u8]>,
}

const VECTORS: &[Vector] = &[
    Vector {
        file: "full-v1-gzip.full.gz",
        version: (1, 0),
        codec: Codec::Gzip,
        level: 6,
        block_size: 4096,
        segment_blocks: 2,
        identity: V1_IDENTITY,
        disk: v1_disk,
        meta: v1_meta,
        key: None,
    },
    Vector {
        file: "full-v1-zstd.full.zst",
        version: (1, 0),
        codec: Codec::Zstd,
        level: 3,
        block_size: 4096,
        segment_blocks: 2,
        identity: V1_IDENTITY,
        disk: v1_disk,
        meta: v1_meta,
        key: None,
    },
    Vector {
        file: "full-v1.1-gzip-auth.full.gz",
        version: (1, 1),
        codec: Codec::Gzip,
        level: 6,
        block_size: 4096,
        segment_blocks: 2,
        identity: V1_IDENTITY,
        disk: v1_disk,
        meta: v1_meta,
        key: Some(V11_KEY),
    },
    Vector {
        file: "full-v1.1-zstd-auth.full.zst",
        version: (1, 1),
        codec: Codec::Zstd,
        level: 3,
        block_size: 4096,
        segment_blocks: 2,
        identity: V1_IDENTITY,
        disk: v1_disk,
        meta: v1_meta,
        key: Some(V11_KEY),
    },
];

/// The key file of the 1.1 vectors: 32 bytes, frozen.
const V11_KEY: &[u8] = b"sdar golden vector key, 32 bytes";

const V1_IDENTITY: &str = "2eeec66ff0cc3939ec159d7aa3866e21cb97486c17b66a0289ec18af8a6e42c4";

const V1_BLOCK: usize = 4096;

/// The version 1.0 vectors' disk, 4 × 4096 + 1000 = 17384 bytes. Frozen:
/// the released vector files hold exactly these bytes, so this function
/// must never change (write a new one for new vectors).
fn v1_disk() -> Vec<u8> {
    let mut text = Vec::new();
    for line in 0.. {
        if text.len() >= V1_BLOCK {
            break;
        }
        text.extend_from_slice(
            format!("{line:04} sdar golden vector: the quick brown fox jumps over the lazy dog\n")
                .as_bytes(),
        );
    }
    text.truncate(V1_BLOCK);
    // SplitMix64 from seed 0x5DA2, each output as 8 little-endian bytes.
    let mut state: u64 = 0x5DA2;
    let mut random = |n: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(n);
        out
    };
    let mut disk = Vec::with_capacity(4 * V1_BLOCK + 1000);
    disk.extend_from_slice(&text); // block 0: text
    disk.resize(2 * V1_BLOCK, 0); // block 1: zeros
    disk.extend_from_slice(&random(V1_BLOCK)); // block 2: random
    disk.extend_from_slice(&text[..V1_BLOCK / 2]); // block 3: half text,
    disk.resize(4 * V1_BLOCK, 0); // half zeros
    disk.extend_from_slice(&random(1000)); // block 4: a 1000-byte tail
    disk
}

const V1_VMX: &str = ".encoding = \"UTF-8\"
config.version = \"8\"
virtualHW.version = \"14\"
displayName = \"CRM\"
uuid.bios = \"56 4d 2b 1c 9e 7a 3f 40-8d 6e 12 34 56 78 9a bc\"
scsi0.virtualDev = \"lsilogic\"
scsi0:0.fileName = \"CRM.vmdk\"
";

/// Every metadata field set, to fixed values. Frozen like `v1_disk`.
fn v1_meta() -> Metadata {
    Metadata {
        vm_name: Some("CRM".into()),
        vm_uuid: Some("56 4d 2b 1c 9e 7a 3f 40-8d 6e 12 34 56 78 9a bc".into()),
        scsi_id: Some("0:0".into()),
        disk_name: Some("CRM.vmdk".into()),
        disk_size: Some(17384),
        adapter_type: Some("lsilogic".into()),
        geometry: Some(Geometry {
            cylinders: 1,
            heads: 16,
            sectors: 63,
        }),
        hw_version: Some("14".into()),
        disk_uuid: Some("60 00 C2 9a 3b 4c 5d 6e-7f 80 91 a2 b3 c4 d5 e6".into()),
        vmx: Some(V1_VMX.as_bytes().to_vec()),
        // 2026-01-01T00:00:00Z
        created_unix: Some(1_767_225_600),
        tool: Some("sdar 0.1.0".into()),
        base_name: None,
    }
}

const BLESS_HINT: &str = "if the format changed on purpose, bump VERSION_MAJOR/VERSION_MINOR in \
     archive-format/src/layout.rs, add vectors for the new version to VECTORS in \
     archive-format/tests/vectors.rs (keep the old ones), then run \
     `SDAR_BLESS=1 cargo test -p archive-format --test vectors` to write them \
     and update tests/vectors/README.md";

/// What the writer of today makes of a vector's disk and metadata.
fn write_vector(v: &Vector) -> Vec<u8> {
    let disk = (v.disk)();
    let options = FullOptions {
        codec: v.codec,
        level: Some(v.level),
        block_size: v.block_size,
        segment_blocks: v.segment_blocks,
        threads: 1,
        key: v
            .key
            .map(|k| archive_format::auth::Key::from_secret(k).expect("key")),
    };
    let mut w =
        FullWriter::new(Vec::new(), v.file, &options, disk.len() as u64, &(v.meta)()).expect("new");
    for block in disk.chunks(v.block_size as usize) {
        w.push_block(block).expect("push_block");
    }
    w.finish().expect("finish").0
}

#[test]
fn every_vector_reads_and_verifies() {
    for v in VECTORS {
        let file = read_vector(v.file);
        let disk = (v.disk)();
        let what = v.file;
        let image = open(&file).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        let h = image.header().clone();
        assert_eq!(
            (h.version_major, h.version_minor),
            v.version,
            "{what}: version"
        );
        assert_eq!(h.codec, v.codec, "{what}");
        assert_eq!(h.block_size, v.block_size, "{what}");
        assert_eq!(h.segment_blocks, v.segment_blocks, "{what}");
        assert_eq!(h.image_size, disk.len() as u64, "{what}");
        assert_eq!(&(v.meta)(), image.meta(), "{what}: metadata");
        assert_eq!(
            hex(&image.identity()),
            v.identity,
            "{what}: recorded identity"
        );
        assert_eq!(
            hex(&expected_identity(&disk, v.block_size)),
            v.identity,
            "{what}: identity of the generated disk"
        );

        match v.key {
            Some(k) => {
                let key = archive_format::auth::Key::from_secret(k).expect("key");
                image
                    .authenticate(&key)
                    .unwrap_or_else(|e| panic!("{what}: authenticate: {e}"));
                let other = archive_format::auth::Key::from_secret(&[0u8; 32]).expect("key");
                assert!(image.authenticate(&other).is_err(), "{what}: another key");
            }
            None => assert!(image.auth().is_none(), "{what}: no AUTH record"),
        }
        let report =
            verify_full(&image, 1, &mut |_| {}).unwrap_or_else(|e| panic!("{what}: verify: {e}"));
        assert_eq!(hex(&report.identity), v.identity, "{what}");
        assert_eq!(
            report.blocks,
            disk.len().div_ceil(v.block_size as usize) as u64,
            "{what}"
        );
        assert_eq!(
            report.zero_blocks,
            fixture::count_zero_blocks(&disk, v.block_size as usize),
            "{what}"
        );

        let mut check = MemberCheck::new(h.codec, &h).expect("MemberCheck");
        let mut out = Vec::new();
        for (b, expected) in disk.chunks(v.block_size as usize).enumerate() {
            image
                .read_block(b as u64, &mut out, &mut check)
                .unwrap_or_else(|e| panic!("{what}: block {b}: {e}"));
            assert_same_bytes(&out, expected, &format!("{what}: block {b}"));
        }
        assert_same_bytes(
            &stock_decode(v.codec, &file).expect("decode"),
            &disk,
            &format!("{what}: independent decoder"),
        );
        let tool: &[&str] = match v.codec {
            Codec::Gzip => &["gzip", "-dc"],
            Codec::Zstd => &["zstd", "-dc", "-q"],
        };
        if let Some(out) = run_tool(tool[0], &tool[1..], &file) {
            assert!(
                out.status.success(),
                "{what}: {tool:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_same_bytes(&out.stdout, &disk, &format!("{what}: {tool:?}"));
        }
    }
}

#[test]
fn vectors_of_the_current_version_are_what_the_writer_writes() {
    // The writer writes 1.0 without a key and 1.1 with one (SPEC.md §2).
    let written_versions = [
        (VERSION_MAJOR, VERSION_MINOR),
        (VERSION_MAJOR, archive_format::layout::VERSION_MINOR_AUTH),
    ];
    let current = written_versions[0];
    for codec in [Codec::Gzip, Codec::Zstd] {
        assert!(
            VECTORS.iter().any(|v| v.version == current && v.codec == codec),
            "the library writes format version {}.{} but there is no {} vector for it: {BLESS_HINT}",
            current.0,
            current.1,
            codec.name()
        );
    }
    let mut stale = Vec::new();
    for v in VECTORS
        .iter()
        .filter(|v| written_versions.contains(&v.version))
    {
        let written = write_vector(v);
        stale.extend(bless_or_compare(v.file, &written));
    }
    assert!(
        stale.is_empty(),
        "the writer no longer reproduces these golden vectors byte for byte: {}.\n\
         A compressor upgrade (libdeflate, zstd) can do this without any format change; \
         then check that every_vector_reads_and_verifies passes and bless. Otherwise, {BLESS_HINT}.",
        stale.join(", ")
    );
}

/// The README says how big each vector is and what its identity is; a
/// blessed vector whose README was not updated fails here.
#[test]
fn readme_describes_every_vector() {
    let readme_path = vectors_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("tests/vectors/README.md");
    for v in VECTORS {
        let len = read_vector(v.file).len();
        let row = readme
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", v.file)))
            .unwrap_or_else(|| panic!("README.md has no table row for {}", v.file));
        assert!(
            row.contains(&format!("| {len} |")),
            "README.md row for {} does not give its size, {len} bytes: {row}",
            v.file
        );
        assert!(
            row.contains(v.identity),
            "README.md row for {} does not give its identity {}: {row}",
            v.file,
            v.identity
        );
    }
}
