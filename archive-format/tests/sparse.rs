//! Sparse sources: a disk read from a file with holes (a thin-provisioned
//! flat disk) gives, byte for byte, the full image and the delta that the
//! same bytes give when read densely, wherever its holes start and end.
//! The holes come from the file system (files made sparse with `set_len`
//! and writes at offsets) and from hole maps given by hand, which can put
//! a hole's edge at any byte and can answer as a file system that knows
//! nothing of holes does.

// A list of holes that holds one hole is what is meant.
#![allow(clippy::single_range_in_vec_init)]

mod fixture;

use archive_format::layout::{DEFAULT_MAP_ENTRIES, VERSION_MAJOR, VERSION_MINOR};
use archive_format::{
    write_delta, write_full, Codec, DeltaHeader, DeltaOptions, DeltaWriter, DiskBytes, DiskSource,
    FullImage, FullOptions, FullWriter, Limits,
};
use fixture::{assert_same_bytes, disk, options, sample_meta, CODECS};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Cursor};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

const BLOCK: usize = 4096;
/// The writers read about 1 MiB per batch; holes are placed around batch
/// edges as well as block edges.
const MIB: usize = 1 << 20;

/// A disk of `size` bytes of every kind of block, zero in `holes`.
fn content_with_holes(size: usize, seed: u64, holes: &[Range<usize>]) -> Vec<u8> {
    let mut content = disk(size, BLOCK, seed);
    for h in holes {
        content[h.clone()].fill(0);
    }
    content
}

/// The ranges of `0..size` outside `holes` (which are sorted and apart).
fn data_ranges(size: usize, holes: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut data = Vec::new();
    let mut at = 0;
    for h in holes {
        if h.start > at {
            data.push(at..h.start);
        }
        at = at.max(h.end);
    }
    if at < size {
        data.push(at..size);
    }
    data
}

/// Writes `content` to a new file leaving `holes` unwritten, so that the
/// file system makes holes of the whole pages they cover.
fn write_sparse(path: &Path, content: &[u8], holes: &[Range<usize>]) {
    let file = File::create(path).expect("create");
    file.set_len(content.len() as u64).expect("set_len");
    for r in data_ranges(content.len(), holes) {
        file.write_all_at(&content[r.clone()], r.start as u64)
            .expect("write");
    }
}

/// A disk in memory with a hole map given by hand, as `lseek` would report
/// it, that records in `read` what the writers read of it.
struct HandMapped<'a> {
    content: &'a [u8],
    /// Sorted runs of data; `None` answers as a file system without holes.
    data: Option<Vec<Range<u64>>>,
    read: &'a RefCell<Vec<Range<u64>>>,
}

impl<'a> HandMapped<'a> {
    fn new(
        content: &'a [u8],
        holes: Option<&[Range<usize>]>,
        read: &'a RefCell<Vec<Range<u64>>>,
    ) -> Self {
        let data = holes.map(|h| {
            data_ranges(content.len(), h)
                .into_iter()
                .map(|r| r.start as u64..r.end as u64)
                .collect()
        });
        HandMapped {
            content,
            data,
            read,
        }
    }
}

impl DiskBytes for HandMapped<'_> {
    fn fill_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut read = self.read.borrow_mut();
        assert!(
            read.last().is_none_or(|r| r.end <= offset),
            "read at {offset} after {:?}",
            read.last()
        );
        let start = (offset as usize).min(self.content.len());
        let n = buf.len().min(self.content.len() - start);
        buf[..n].copy_from_slice(&self.content[start..start + n]);
        read.push(offset..offset + n as u64);
        Ok(n)
    }

    fn data_from(&mut self, offset: u64) -> io::Result<Range<u64>> {
        let Some(data) = &self.data else {
            return Ok(offset..u64::MAX);
        };
        Ok(data
            .iter()
            .find(|r| r.end > offset)
            .map_or(u64::MAX..u64::MAX, |r| r.start.max(offset)..r.end))
    }
}

fn bytes_read(read: RefCell<Vec<Range<u64>>>) -> u64 {
    read.into_inner().iter().map(|r| r.end - r.start).sum()
}

fn full_of(source: impl DiskBytes, size: usize, opts: &FullOptions) -> Vec<u8> {
    let w = FullWriter::new(Vec::new(), "t.full", opts, size as u64, &sample_meta())
        .expect("FullWriter::new");
    write_full(source, Path::new("source.raw"), w, &mut |_| {})
        .expect("write_full")
        .0
}

/// Holes at the start, at the end, over whole batches, at odd bytes inside
/// blocks, none at all, and everywhere, on disks of awkward sizes.
fn cases() -> Vec<(&'static str, usize, Vec<Range<usize>>)> {
    let size = 3 * MIB + 3 * BLOCK + 100;
    let mut comb = Vec::new();
    let mut at = 5 * BLOCK + 1234;
    while at + 4 * BLOCK < size {
        comb.push(at..at + 3 * BLOCK + 77);
        at += 7 * BLOCK + 4321;
    }
    vec![
        ("no holes", size, vec![]),
        ("hole at the start", size, vec![0..MIB + 2 * BLOCK + 17]),
        ("hole at the end", size, vec![2 * MIB + 5000..size]),
        (
            "hole over a whole batch, edges inside blocks",
            size,
            vec![MIB - 3 * BLOCK + 1..2 * MIB + 2 * BLOCK - 1],
        ),
        (
            "holes on block edges",
            size,
            vec![BLOCK..3 * BLOCK, MIB..MIB + BLOCK, 2 * MIB - BLOCK..3 * MIB],
        ),
        ("many small holes", size, comb),
        ("all hole", size, vec![0..size]),
        (
            "data only in single bytes",
            size,
            vec![0..MIB + 7, MIB + 8..3 * MIB + 1, 3 * MIB + 2..size],
        ),
        ("one byte, a hole", 1, vec![0..1]),
        ("block less one, a hole", BLOCK - 1, vec![0..BLOCK - 1]),
        ("one block, a hole at the end", BLOCK, vec![100..BLOCK]),
        (
            "block and one, the last byte a hole",
            BLOCK + 1,
            vec![BLOCK..BLOCK + 1],
        ),
        ("empty", 0, vec![]),
    ]
}

#[test]
fn full_from_a_hole_map_matches_the_dense_read() {
    for (n, (case, size, holes)) in cases().into_iter().enumerate() {
        let content = content_with_holes(size, n as u64, &holes);
        for codec in CODECS {
            for threads in [1, 2] {
                let opts = options(codec, BLOCK as u32, 64, threads);
                let what = format!("{case}, {}, {threads} threads", codec.name());
                let dense = full_of(&content[..], size, &opts);
                let read = RefCell::new(Vec::new());
                let sparse = full_of(HandMapped::new(&content, Some(&holes), &read), size, &opts);
                assert_same_bytes(&sparse, &dense, &what);
                // Exactly the blocks that hold a byte of data were read.
                let read = bytes_read(read);
                let needed: u64 = content
                    .chunks(BLOCK)
                    .enumerate()
                    .filter(|(i, _)| {
                        let b = i * BLOCK..(i + 1) * BLOCK;
                        data_ranges(size, &holes)
                            .iter()
                            .any(|d| d.start < b.end && b.start < d.end)
                    })
                    .map(|(_, b)| b.len() as u64)
                    .sum();
                assert_eq!(read, needed, "{what}: bytes read");
                // A file system that cannot tell holes has everything read.
                let read = RefCell::new(Vec::new());
                let all = full_of(HandMapped::new(&content, None, &read), size, &opts);
                assert_same_bytes(&all, &dense, &format!("{what}: no hole map"));
                let read = bytes_read(read);
                assert_eq!(read, size as u64, "{what}: bytes read without a map");
            }
        }
    }
}

/// A hole map that answers oddly (an empty run, a run that starts before
/// the offset asked) still gives the right image: the writers read what
/// they cannot rule out.
#[test]
fn odd_hole_map_answers_read_the_data() {
    struct Odd<'a>(HandMapped<'a>);
    impl DiskBytes for Odd<'_> {
        fn fill_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            self.0.fill_at(offset, buf)
        }
        fn data_from(&mut self, offset: u64) -> io::Result<Range<u64>> {
            Ok(match offset % 3 {
                0 => offset..offset,
                1 => 0..offset + 1,
                _ => self.0.data_from(offset)?,
            })
        }
    }
    let size = 2 * MIB + 3 * BLOCK + 5;
    let holes = vec![BLOCK + 1..MIB + 3, MIB + 9 * BLOCK..size - 1];
    let content = content_with_holes(size, 3, &holes);
    let opts = options(Codec::Gzip, BLOCK as u32, 64, 2);
    let dense = full_of(&content[..], size, &opts);
    let read = RefCell::new(Vec::new());
    let odd = full_of(
        Odd(HandMapped::new(&content, Some(&holes), &read)),
        size,
        &opts,
    );
    assert_same_bytes(&odd, &dense, "odd hole map");
}

/// The same through real sparse files: the image of a sparse file is the
/// image of the dense file with the same bytes, and of the same bytes in
/// memory.
#[test]
fn full_of_a_sparse_file_matches_the_dense_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, (case, size, holes)) in cases().into_iter().enumerate() {
        let content = content_with_holes(size, 100 + n as u64, &holes);
        let dense_path = dir.path().join(format!("dense{n}.raw"));
        let sparse_path = dir.path().join(format!("sparse{n}.raw"));
        std::fs::write(&dense_path, &content).expect("write");
        write_sparse(&sparse_path, &content, &holes);
        if case == "hole at the start" {
            let mut source = DiskSource::open(&sparse_path).expect("open");
            let first = source.reader().data_from(0).expect("data_from").start;
            if first == 0 {
                eprintln!(
                    "the file system of {dir:?} reports no holes: sparse files are read whole"
                );
            } else {
                assert!(first >= MIB as u64, "{case}: data from {first}");
            }
        }
        // The file system's holes are whole pages: blocks of 64 KiB put
        // their edges inside blocks.
        for (codec, block_size) in [(Codec::Gzip, BLOCK), (Codec::Zstd, 16 * BLOCK)] {
            let opts = options(codec, block_size as u32, 64, 2);
            let what = format!("{case}, {}, blocks of {block_size}", codec.name());
            let expected = full_of(&content[..], size, &opts);
            let mut dense = DiskSource::open(&dense_path).expect("open dense");
            assert_same_bytes(&full_of(dense.reader(), size, &opts), &expected, &what);
            let mut sparse = DiskSource::open(&sparse_path).expect("open sparse");
            assert_same_bytes(&full_of(sparse.reader(), size, &opts), &expected, &what);
        }
    }
}

/// A flat extent that starts inside its file, after bytes that are not
/// the disk's: holes are found in the file and counted from the extent.
#[test]
fn full_of_a_sparse_flat_extent_at_an_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 3 * MIB + 5 * BLOCK + 512;
    let holes = vec![0..MIB + 700, 2 * MIB + 3 * BLOCK..size - 512];
    let content = content_with_holes(size, 77, &holes);
    let skip = 16 * 512;
    let mut file_content = vec![0xa5u8; skip];
    file_content.extend_from_slice(&content);
    file_content.extend_from_slice(&[0x5au8; 3 * BLOCK]);
    let file_holes: Vec<_> = holes.iter().map(|h| h.start + skip..h.end + skip).collect();
    write_sparse(&dir.path().join("d-flat.vmdk"), &file_content, &file_holes);
    let descriptor = dir.path().join("d.vmdk");
    std::fs::write(
        &descriptor,
        format!(
            "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n\
             RW {} FLAT \"d-flat.vmdk\" {}\nddb.adapterType = \"lsilogic\"\n",
            size / 512,
            skip / 512
        ),
    )
    .expect("write descriptor");
    let mut source = DiskSource::open(&descriptor).expect("open");
    assert_eq!((source.size, source.start), (size as u64, skip as u64));
    for codec in CODECS {
        let opts = options(codec, BLOCK as u32, 64, 2);
        assert_same_bytes(
            &full_of(source.reader(), size, &opts),
            &full_of(&content[..], size, &opts),
            codec.name(),
        );
    }
}

fn delta_of(
    source: impl DiskBytes,
    size: usize,
    base_file: &[u8],
    options: &DeltaOptions,
) -> Vec<u8> {
    let base = FullImage::open(Cursor::new(base_file), "base.full", &Limits::default())
        .expect("open base");
    let header = DeltaHeader {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        compat_flags: 0,
        incompat_flags: 0,
        codec: options.codec,
        block_size: base.header().block_size,
        map_entries: DEFAULT_MAP_ENTRIES,
        image_size: size as u64,
        base_image_size: base.header().image_size,
        base_identity: base.identity(),
    };
    let writer = DeltaWriter::new(Vec::new(), "t.sdar", b"runtime", header, &sample_meta())
        .expect("DeltaWriter::new");
    write_delta(
        source,
        Path::new("new.raw"),
        &base,
        writer,
        options,
        &mut |_| {},
    )
    .expect("write_delta")
    .0
}

/// A delta made from a sparse disk is the delta made from the same bytes
/// read densely: blocks that became holes are stored as zero blocks, holes
/// that were zero in the base are unchanged, and blocks half in a hole are
/// compared and patched as read.
#[test]
fn delta_of_a_sparse_disk_matches_the_dense_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, (case, size, holes)) in cases().into_iter().enumerate() {
        // The base has data where the new disk has holes, and holes of its
        // own where the new disk has data, at other edges.
        let base_holes = vec![size / 3..(size / 2 + 13).min(size)];
        let base_content = content_with_holes(size, 500 + n as u64, &base_holes);
        let mut content = base_content.clone();
        for (i, block) in content.chunks_mut(BLOCK).enumerate() {
            if i % 5 == 2 {
                block[i % block.len()] ^= 0x41;
            }
        }
        for h in &holes {
            content[h.clone()].fill(0);
        }
        let base = full_of(
            &base_content[..],
            size,
            &options(Codec::Gzip, BLOCK as u32, 64, 2),
        );
        let path = dir.path().join(format!("new{n}.raw"));
        write_sparse(&path, &content, &holes);
        for codec in CODECS {
            for (threads, index_only) in [(1, false), (2, false), (2, true)] {
                let opts = DeltaOptions {
                    codec,
                    level: None,
                    threads,
                    index_only,
                };
                let what = format!(
                    "{case}, {}, {threads} threads, index only {index_only}",
                    codec.name()
                );
                let dense = delta_of(&content[..], size, &base, &opts);
                let read = RefCell::new(Vec::new());
                let mapped = delta_of(
                    HandMapped::new(&content, Some(&holes), &read),
                    size,
                    &base,
                    &opts,
                );
                assert_same_bytes(&mapped, &dense, &format!("{what}: hole map"));
                let mut source = DiskSource::open(&path).expect("open");
                let file = delta_of(source.reader(), size, &base, &opts);
                assert_same_bytes(&file, &dense, &format!("{what}: sparse file"));
            }
        }
    }
}

/// A sparse file cut short after it was opened is reported as a source
/// that ended early, as a dense one is, not read as a disk ending in zeros.
#[test]
fn a_sparse_file_cut_short_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 2 * MIB + 3 * BLOCK;
    let holes = vec![MIB..size];
    let content = content_with_holes(size, 9, &holes);
    let path = dir.path().join("cut.raw");
    write_sparse(&path, &content, &holes);
    let mut source = DiskSource::open(&path).expect("open");
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(MIB as u64 + 100))
        .expect("cut");
    let opts = options(Codec::Gzip, BLOCK as u32, 64, 1);
    let w = FullWriter::new(Vec::new(), "t.full", &opts, size as u64, &sample_meta())
        .expect("FullWriter::new");
    let err = write_full(source.reader(), Path::new("cut.raw"), w, &mut |_| {})
        .expect_err("a file cut short must fail");
    assert!(
        matches!(err, archive_format::Error::Source { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&(MIB + 100).to_string()), "{err}");
}
