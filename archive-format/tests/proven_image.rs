//! The proven image (archive-format/src/image.rs): the map proven before any
//! block is used and without reading block data, then any block read and
//! proven on its own, from many threads through one open file.

mod fixture;

use archive_format::image::{Block, Origin, ProvenImage};
use archive_format::layout::{VERSION_MAJOR, VERSION_MINOR};
use archive_format::restore::restore;
use archive_format::{
    write_delta, Cancel, Codec, DeltaArchive, DeltaHeader, DeltaOptions, DeltaWriter, Error,
    FullImage, Limits, ReadAt,
};
use fixture::{assert_same_bytes, disk, options, sample_meta, write_pushed, Collect, Rng};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Four 4 KiB pages a block, so that a delta can patch one.
const BLOCK: usize = 16384;
/// 600 blocks and a short tail: in segments of 4 blocks, 151 segments,
/// more than the readers cache, so records are read again after the proof.
const DISK_LEN: usize = 600 * BLOCK + 1234;

struct Pair {
    _dir: tempfile::TempDir,
    full: PathBuf,
    delta: PathBuf,
    new_disk: Vec<u8>,
}

/// A full of a seeded disk and a delta of a changed copy, in files: whole
/// blocks rewritten, pages patched, blocks zeroed, and change maps of 8
/// entries so there are many.
fn pair(codec: Codec) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = disk(DISK_LEN, BLOCK, 7);
    let (full_bytes, _) = write_pushed(&old, &options(codec, BLOCK as u32, 4, 1), &sample_meta());
    let full = dir.path().join("base.full");
    std::fs::write(&full, &full_bytes).expect("write full");

    let mut new_disk = old.clone();
    let mut rng = Rng::new(99);
    for b in (0..600).step_by(7) {
        let at = b * BLOCK;
        match b % 3 {
            0 => new_disk[at..at + BLOCK].fill(0),
            1 => new_disk[at + 100] ^= 0x5A,
            _ => {
                for x in &mut new_disk[at..at + BLOCK] {
                    *x = rng.below(256) as u8;
                }
            }
        }
    }
    new_disk[DISK_LEN - 1] ^= 1;

    let base = FullImage::open(File::open(&full).unwrap(), &full, &Limits::default()).unwrap();
    let header = DeltaHeader {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        compat_flags: 0,
        incompat_flags: 0,
        codec,
        block_size: BLOCK as u32,
        map_entries: 8,
        image_size: DISK_LEN as u64,
        base_image_size: DISK_LEN as u64,
        base_identity: base.identity(),
    };
    let writer =
        DeltaWriter::new(Vec::new(), "d.sdar", b"#!runtime\n", header, &sample_meta()).unwrap();
    let options = DeltaOptions {
        codec,
        level: None,
        threads: 2,
        index_only: false,
    };
    let (delta_bytes, summary) = write_delta(
        &new_disk[..],
        Path::new("new.raw"),
        &base,
        writer,
        &options,
        &mut |_| {},
    )
    .expect("write_delta");
    assert!(
        summary.patch_blocks > 0 && summary.zero_blocks > 0 && summary.data_blocks > 0,
        "{summary:?}"
    );
    let delta = dir.path().join("d.sdar");
    std::fs::write(&delta, &delta_bytes).expect("write delta");
    Pair {
        _dir: dir,
        full,
        delta,
        new_disk,
    }
}

fn open_image<B: ReadAt, D: ReadAt>(p: &Pair, base: B, delta: D) -> ProvenImage<B, D> {
    let base = FullImage::open(base, &p.full, &Limits::default()).expect("open full");
    let delta = DeltaArchive::open(delta, &p.delta, &Limits::default()).expect("open delta");
    ProvenImage::of_delta(delta, base).expect("prove the map")
}

/// A file that records every range read from it.
struct Recorded {
    file: File,
    reads: Mutex<Vec<(u64, u64)>>,
}

impl Recorded {
    fn new(path: &Path) -> Self {
        Recorded {
            file: File::open(path).unwrap(),
            reads: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.reads.lock().unwrap())
    }
}

impl ReadAt for Recorded {
    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads
            .lock()
            .unwrap()
            .push((offset, offset + buf.len() as u64));
        FileExt::read_exact_at(&self.file, buf, offset)
    }
}

#[test]
fn sixteen_threads_reading_random_blocks_agree_with_a_sequential_restore() {
    for codec in [Codec::Gzip, Codec::Zstd] {
        let p = pair(codec);
        // One open file each, shared by every thread.
        let image = open_image(
            &p,
            File::open(&p.full).unwrap(),
            File::open(&p.delta).unwrap(),
        );
        let mut sink = Collect(vec![0; DISK_LEN]);
        let report = restore(&image, &mut sink, 2, None, &mut |_| {}, &Cancel::new())
            .expect("sequential restore");
        assert_eq!(report.identity, image.identity());
        assert_same_bytes(&sink.0, &p.new_disk, "restore");
        let restored = &sink.0;
        std::thread::scope(|scope| {
            for t in 0..16u64 {
                let image = &image;
                scope.spawn(move || {
                    let mut rng = Rng::new(1000 + t);
                    let mut out = Vec::new();
                    for _ in 0..400 {
                        let n = rng.below(image.block_count());
                        let start = n as usize * BLOCK;
                        let expected = &restored[start..start + image.block_len(n)];
                        match image.read_block(n, &mut out).expect("read_block") {
                            Block::Data => assert_eq!(&out[..], expected, "thread {t} block {n}"),
                            Block::Zero => assert!(
                                expected.iter().all(|&b| b == 0),
                                "thread {t}: block {n} said zero"
                            ),
                        }
                        assert_eq!(image.hash(n).unwrap(), *blake3::hash(expected).as_bytes());
                    }
                });
            }
        });
    }
}

#[test]
fn the_map_proof_reads_no_block_data() {
    let p = pair(Codec::Gzip);
    let base = Recorded::new(&p.full);
    let delta = Recorded::new(&p.delta);
    let image = open_image(&p, &base, &delta);
    let (base_reads, delta_reads) = (base.take(), delta.take());
    // Every member of both files, from the proven map.
    let mut base_members = Vec::new();
    let mut delta_members = Vec::new();
    for n in 0..image.block_count() {
        let origin = image.origin(n).unwrap();
        if let Origin::Data(e) | Origin::Patch(e) = origin {
            let at = image.delta().unwrap().member_file_offset(&e);
            delta_members.push((at, at + e.member_len as u64));
        }
        // The full and the new image have the same size here.
        let (seg, i) = image.base().locate(n).unwrap();
        let at = seg.member_offset(i);
        base_members.push((at, at + seg.entries[i].member_len as u64));
    }
    let overlaps = |reads: &[(u64, u64)], members: &[(u64, u64)]| {
        reads
            .iter()
            .filter(|r| members.iter().any(|m| r.0 < m.1 && m.0 < r.1))
            .count()
    };
    assert!(!base_reads.is_empty() && !delta_reads.is_empty());
    assert_eq!(
        overlaps(&base_reads, &base_members),
        0,
        "the full's block data was read"
    );
    assert_eq!(
        overlaps(&delta_reads, &delta_members),
        0,
        "the delta's block data was read"
    );
    let read: u64 = base_reads
        .iter()
        .chain(&delta_reads)
        .map(|r| r.1 - r.0)
        .sum();
    let member_bytes: u64 = base_members.iter().map(|m| m.1 - m.0).sum();
    assert!(
        read < member_bytes / 4,
        "the proof read {read} bytes, against {member_bytes} of members"
    );
}

#[test]
fn a_damaged_block_is_named_by_read_block_without_reading_the_rest() {
    let p = pair(Codec::Zstd);
    // Damage the member of an unchanged block in the full, and the member
    // of a block stored whole in the delta.
    let (base_block, base_at, delta_block, delta_at) = {
        let image = open_image(
            &p,
            File::open(&p.full).unwrap(),
            File::open(&p.delta).unwrap(),
        );
        let unchanged = (0..image.block_count())
            .find(|&n| matches!(image.origin(n).unwrap(), Origin::Full(e) if !e.zero))
            .unwrap();
        let (seg, i) = image.base().locate(unchanged).unwrap();
        let (changed, e) = (0..image.block_count())
            .find_map(|n| match image.origin(n).unwrap() {
                Origin::Data(e) => Some((n, e)),
                _ => None,
            })
            .unwrap();
        let at = image.delta().unwrap().member_file_offset(&e);
        (unchanged, seg.member_offset(i), changed, at)
    };
    for (path, at) in [(&p.full, base_at), (&p.delta, delta_at)] {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at as usize + 3] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }
    let base = Recorded::new(&p.full);
    let delta = Recorded::new(&p.delta);
    // The proof reads no block data, so it passes.
    let image = open_image(&p, &base, &delta);
    base.take();
    delta.take();
    let mut out = Vec::new();
    for (n, file, at) in [
        (base_block, &p.full, base_at),
        (delta_block, &p.delta, delta_at),
    ] {
        let err = image.read_block(n, &mut out).unwrap_err();
        let text = err.to_string();
        assert!(err.is_integrity(), "block {n}: {err:?}");
        assert!(text.contains(&format!("block {n}")), "{text}");
        assert!(text.contains(&file.display().to_string()), "{text}");
        match &err {
            Error::Corrupt { offset, .. } | Error::BlockMismatch { offset, .. } => {
                assert_eq!(*offset, at, "{text}")
            }
            other => panic!("block {n}: {other:?}"),
        }
    }
    // What was read: the two members (and the records that find them),
    // nothing like the rest of the image.
    let read: u64 = base
        .take()
        .iter()
        .chain(&delta.take())
        .map(|r| r.1 - r.0)
        .sum();
    assert!(
        read < 64 * 1024,
        "read_block of two blocks read {read} bytes"
    );
    // Every other block still reads.
    for n in (0..image.block_count()).filter(|&n| n != base_block && n != delta_block) {
        image.read_block(n, &mut out).unwrap();
    }
}

#[test]
fn a_restore_cancelled_mid_run_stops_between_batches() {
    let p = pair(Codec::Gzip);
    let image = open_image(
        &p,
        File::open(&p.full).unwrap(),
        File::open(&p.delta).unwrap(),
    );
    let cancel = Cancel::new();
    let mut sink = Collect(vec![0; DISK_LEN]);
    let mut calls = 0;
    let err = restore(
        &image,
        &mut sink,
        2,
        None,
        &mut |p| {
            calls += 1;
            if p.done > 0 {
                cancel.cancel();
            }
        },
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(calls >= 1);
}
