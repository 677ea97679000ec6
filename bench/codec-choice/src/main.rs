//! Measurements that decide sdar's codec libraries and block size.
//!
//! Every number comes from the same 256 MiB sample disk (seed 1) that the demo and
//! tests use, so sizes can be compared across codecs and against the stock tools
//! (`gzip`, `pigz`, `zstd`, `b3sum`) that sdar has to beat. See README.md.

#[path = "../../../packer/src/sample.rs"]
mod sample;

use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SAMPLE_LEN: usize = 256 << 20;
const SAMPLE_SEED: u64 = 1;
const KIB: usize = 1 << 10;
const BLOCK_LENS: [usize; 6] = [
    16 * KIB,
    32 * KIB,
    64 * KIB,
    128 * KIB,
    256 * KIB,
    1024 * KIB,
];
/// Where the per-level and per-content-class comparisons are made.
const PROBE_BLOCK_LEN: usize = 64 * KIB;
/// Cores on the target machine; the 2-thread columns answer "2x pigz on 2 cores".
const THREADS: usize = 2;
/// Fixed gzip header: magic, CM=8, no flags, no mtime, XFL 0, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Header plus CRC32 and ISIZE trailer.
const GZIP_MEMBER_OVERHEAD: usize = 18;

fn main() {
    let started = Instant::now();
    let mut disk = Vec::with_capacity(SAMPLE_LEN);
    sample::write_sample_disk(&mut disk, SAMPLE_LEN as u64, SAMPLE_SEED).expect("writing to a Vec");
    println!("Sample disk: {} MiB, seed {SAMPLE_SEED}.", SAMPLE_LEN >> 20);
    print_load("before");
    println!(
        "MB/s are 10^6 bytes of *uncompressed* data per second of the measuring thread's CPU time \
         (single thread unless said), so a busy machine does not skew them; \"wall\" columns are \
         elapsed time and only mean something on a quiet machine.\n"
    );

    let pigz = reference_tools(&disk);

    // Pre-touched output buffers reused by every run, so that page faults on fresh
    // memory (slow in this VM) are not billed to the codecs.
    let mut arenas: Vec<Vec<u8>> = (0..THREADS)
        .map(|_| vec![1u8; SAMPLE_LEN + SAMPLE_LEN / 4])
        .collect();

    deflate_table(&disk, &mut arenas, pigz);
    zero_table(&disk);
    content_class_table(&disk, &mut arenas[0]);
    zstd_table(&disk, &mut arenas, pigz);
    blake3_table(&disk);

    print_load("after");
    println!("Total run time: {:.0} s", started.elapsed().as_secs_f64());
}

/// Other work on the machine skews the wall-clock numbers, so say how busy it was.
fn print_load(when: &str) {
    if let Ok(load) = fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!("Load average {when} the run: {}", load.join(" "));
    }
}

// ---------------------------------------------------------------------------
// Time.

/// CPU time of the calling thread. The development machines are shared (a build
/// next door halves wall-clock throughput), and time spent waiting for a core is
/// not the codec's.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of all waited-for children, for the stock tools.
fn children_cpu_time() -> Duration {
    // SAFETY: all-zero bytes are a valid `rusage`, which getrusage then fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_CHILDREN)");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Stopwatch {
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// CPU time this thread has used since `start`.
    fn busy(&self) -> Duration {
        thread_cpu_time() - self.cpu
    }

    fn wall(&self) -> Duration {
        self.wall.elapsed()
    }
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> String {
    format!("{:.0}", bytes as f64 / elapsed.as_secs_f64() / 1e6)
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.2}", elapsed.as_secs_f64())
}

fn percent_of(part: usize, whole: usize) -> String {
    format!("{:+.2}%", (part as f64 / whole as f64 - 1.0) * 100.0)
}

fn kib(block_len: usize) -> String {
    if block_len >= 1 << 20 {
        format!("{} MiB", block_len >> 20)
    } else {
        format!("{} KiB", block_len >> 10)
    }
}

// ---------------------------------------------------------------------------
// Codecs: each turns one block into one self-contained member or frame.

trait BlockCodec {
    /// Compresses `block` into `out` (always large enough) and returns the length.
    fn compress(&mut self, block: &[u8], out: &mut [u8]) -> usize;
    /// Decompresses one member into `out`, whose length is the block's.
    fn decompress(&mut self, member: &[u8], out: &mut [u8]);
}

struct Libdeflate {
    compressor: libdeflater::Compressor,
    decompressor: libdeflater::Decompressor,
}

impl Libdeflate {
    fn new(level: i32) -> Self {
        let level = libdeflater::CompressionLvl::new(level).expect("valid libdeflate level");
        Libdeflate {
            compressor: libdeflater::Compressor::new(level),
            decompressor: libdeflater::Decompressor::new(),
        }
    }
}

impl BlockCodec for Libdeflate {
    fn compress(&mut self, block: &[u8], out: &mut [u8]) -> usize {
        self.compressor
            .gzip_compress(block, out)
            .expect("libdeflate gzip_compress")
    }

    fn decompress(&mut self, member: &[u8], out: &mut [u8]) {
        let n = self
            .decompressor
            .gzip_decompress(member, out)
            .expect("libdeflate gzip_decompress");
        assert_eq!(n, out.len());
    }
}

/// libdeflate that stores blocks whose byte histogram says deflate cannot win,
/// because its match finder spends as long on data it cannot shrink as on text.
struct GatedLibdeflate {
    inner: Libdeflate,
    stored: libdeflater::Compressor,
}

impl GatedLibdeflate {
    fn new(level: i32) -> Self {
        let stored = libdeflater::CompressionLvl::new(0).expect("level 0 is stored blocks");
        GatedLibdeflate {
            inner: Libdeflate::new(level),
            stored: libdeflater::Compressor::new(stored),
        }
    }
}

/// Above this order-0 entropy (bits per byte) a block is treated as incompressible;
/// 64 KiB of uniform random bytes measures about 7.997.
const STORE_ENTROPY_BITS: f64 = 7.95;

/// Order-0 entropy in bits per byte; four histograms so that runs of one byte value
/// do not serialise on one counter.
fn entropy_bits_per_byte(block: &[u8]) -> f64 {
    let mut counts = [[0u32; 256]; 4];
    let mut quads = block.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let total = block.len() as f64;
    (0..256)
        .map(|i| counts.iter().map(|c| c[i]).sum::<u32>())
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

impl BlockCodec for GatedLibdeflate {
    fn compress(&mut self, block: &[u8], out: &mut [u8]) -> usize {
        if entropy_bits_per_byte(block) >= STORE_ENTROPY_BITS {
            self.stored
                .gzip_compress(block, out)
                .expect("libdeflate stored")
        } else {
            self.inner.compress(block, out)
        }
    }

    fn decompress(&mut self, member: &[u8], out: &mut [u8]) {
        self.inner.decompress(member, out)
    }
}

/// The gate's own cost: computes the entropy and writes nothing.
struct EntropyOnly;

impl BlockCodec for EntropyOnly {
    fn compress(&mut self, block: &[u8], _: &mut [u8]) -> usize {
        usize::from(std::hint::black_box(entropy_bits_per_byte(block)) > 9.0)
    }

    fn decompress(&mut self, _: &[u8], _: &mut [u8]) {
        unreachable!("the entropy estimate is not a codec")
    }
}

/// flate2's default backend, driven exactly as flate2 1.1 drives it: one flate2
/// build cannot hold two backends, and this one is what `default-features` gives.
struct Miniz {
    compressor: Box<miniz_oxide::deflate::core::CompressorOxide>,
    inflater: Box<miniz_oxide::inflate::stream::InflateState>,
}

impl Miniz {
    fn new(level: u8) -> Self {
        let mut compressor: Box<miniz_oxide::deflate::core::CompressorOxide> = Box::default();
        compressor.set_format_and_level(miniz_oxide::DataFormat::Raw, level);
        Miniz {
            compressor,
            inflater: miniz_oxide::inflate::stream::InflateState::new_boxed(
                miniz_oxide::DataFormat::Raw,
            ),
        }
    }
}

impl BlockCodec for Miniz {
    fn compress(&mut self, block: &[u8], out: &mut [u8]) -> usize {
        self.compressor.reset();
        let body = &mut out[GZIP_HEADER.len()..];
        let res = miniz_oxide::deflate::stream::deflate(
            &mut self.compressor,
            block,
            body,
            miniz_oxide::MZFlush::Finish,
        );
        assert_eq!(res.status, Ok(miniz_oxide::MZStatus::StreamEnd));
        assert_eq!(res.bytes_consumed, block.len());
        finish_gzip_member(out, res.bytes_written, crc32fast::hash(block), block.len())
    }

    fn decompress(&mut self, member: &[u8], out: &mut [u8]) {
        self.inflater.reset(miniz_oxide::DataFormat::Raw);
        let body = &member[GZIP_HEADER.len()..member.len() - 8];
        let res = miniz_oxide::inflate::stream::inflate(
            &mut self.inflater,
            body,
            out,
            miniz_oxide::MZFlush::Finish,
        );
        assert_eq!(res.status, Ok(miniz_oxide::MZStatus::StreamEnd));
        assert_eq!(res.bytes_written, out.len());
        check_gzip_trailer(member, crc32fast::hash(out), out.len());
    }
}

/// flate2 built with its `zlib-rs` backend.
struct ZlibRs {
    compressor: flate2::Compress,
    decompressor: flate2::Decompress,
}

impl ZlibRs {
    fn new(level: u32) -> Self {
        ZlibRs {
            compressor: flate2::Compress::new(flate2::Compression::new(level), false),
            decompressor: flate2::Decompress::new(false),
        }
    }
}

fn flate2_crc(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

impl BlockCodec for ZlibRs {
    fn compress(&mut self, block: &[u8], out: &mut [u8]) -> usize {
        self.compressor.reset();
        let body = &mut out[GZIP_HEADER.len()..];
        let status = self
            .compressor
            .compress(block, body, flate2::FlushCompress::Finish)
            .expect("zlib-rs deflate");
        assert_eq!(status, flate2::Status::StreamEnd);
        let written = self.compressor.total_out() as usize;
        finish_gzip_member(out, written, flate2_crc(block), block.len())
    }

    fn decompress(&mut self, member: &[u8], out: &mut [u8]) {
        self.decompressor.reset(false);
        let body = &member[GZIP_HEADER.len()..member.len() - 8];
        let status = self
            .decompressor
            .decompress(body, out, flate2::FlushDecompress::Finish)
            .expect("zlib-rs inflate");
        assert_eq!(status, flate2::Status::StreamEnd);
        assert_eq!(self.decompressor.total_out() as usize, out.len());
        check_gzip_trailer(member, flate2_crc(out), out.len());
    }
}

fn finish_gzip_member(out: &mut [u8], body_len: usize, crc: u32, len: usize) -> usize {
    out[..GZIP_HEADER.len()].copy_from_slice(&GZIP_HEADER);
    let trailer = GZIP_HEADER.len() + body_len;
    out[trailer..trailer + 4].copy_from_slice(&crc.to_le_bytes());
    out[trailer + 4..trailer + 8].copy_from_slice(&(len as u32).to_le_bytes());
    body_len + GZIP_MEMBER_OVERHEAD
}

fn check_gzip_trailer(member: &[u8], crc: u32, len: usize) {
    let trailer = &member[member.len() - 8..];
    assert_eq!(trailer[..4], crc.to_le_bytes());
    assert_eq!(trailer[4..], (len as u32).to_le_bytes());
}

struct Zstd {
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl Zstd {
    fn new(level: i32) -> Self {
        Zstd {
            compressor: zstd::bulk::Compressor::new(level).expect("zstd compressor"),
            decompressor: zstd::bulk::Decompressor::new().expect("zstd decompressor"),
        }
    }
}

impl BlockCodec for Zstd {
    fn compress(&mut self, block: &[u8], out: &mut [u8]) -> usize {
        self.compressor
            .compress_to_buffer(block, out)
            .expect("zstd compress")
    }

    fn decompress(&mut self, frame: &[u8], out: &mut [u8]) {
        let n = self
            .decompressor
            .decompress_to_buffer(frame, out)
            .expect("zstd decompress");
        assert_eq!(n, out.len());
    }
}

/// Decompression only: the pure-Rust decoder a restore stub could embed.
struct Ruzstd(ruzstd::decoding::FrameDecoder);

impl BlockCodec for Ruzstd {
    fn compress(&mut self, _: &[u8], _: &mut [u8]) -> usize {
        unreachable!("ruzstd is measured as a decoder only")
    }

    fn decompress(&mut self, frame: &[u8], out: &mut [u8]) {
        let n = self.0.decode_all(frame, out).expect("ruzstd decode");
        assert_eq!(n, out.len());
    }
}

// ---------------------------------------------------------------------------
// Running a codec over the disk.

/// Vectorises to wide ORs and still stops at the first non-zero 64-byte line.
fn is_zero(block: &[u8]) -> bool {
    let mut lines = block.chunks_exact(64);
    lines.all(|line| line.iter().fold(0, |acc, &b| acc | b) == 0)
        && lines.remainder().iter().all(|&b| b == 0)
}

/// Compressed disk: members back to back in an arena, one range per block.
struct Packed {
    members: Vec<Range<usize>>,
    /// Blocks written through the zero fast path, which restore also skips.
    zero: Vec<bool>,
    compressed_len: usize,
    busy: Duration,
}

/// Compresses every block on one thread; all-zero blocks take the fast path (a
/// member compressed once in advance), as sdar's writer will.
fn pack(disk: &[u8], block_len: usize, codec: &mut dyn BlockCodec, arena: &mut [u8]) -> Packed {
    let zero_member = compress_to_vec(codec, &vec![0; block_len]);
    let mut members = Vec::with_capacity(disk.len() / block_len + 1);
    let mut zero = Vec::with_capacity(disk.len() / block_len + 1);
    let mut pos = 0;
    let clock = Stopwatch::start();
    for block in disk.chunks(block_len) {
        let is_zero_block = block.len() == block_len && is_zero(block);
        zero.push(is_zero_block);
        let n = if is_zero_block {
            arena[pos..pos + zero_member.len()].copy_from_slice(&zero_member);
            zero_member.len()
        } else {
            codec.compress(block, &mut arena[pos..])
        };
        members.push(pos..pos + n);
        pos += n;
    }
    Packed {
        members,
        zero,
        compressed_len: pos,
        busy: clock.busy(),
    }
}

fn compress_to_vec(codec: &mut dyn BlockCodec, block: &[u8]) -> Vec<u8> {
    let mut out = vec![0; block.len() + block.len() / 4 + 1024];
    let n = codec.compress(block, &mut out);
    out.truncate(n);
    out
}

/// What `pack_parallel` measured.
struct Parallel {
    compressed_len: usize,
    wall: Duration,
    /// CPU time of all threads together.
    busy: Duration,
}

/// Same work as `pack`, split over `THREADS` threads that take blocks in turn, as
/// a real parallel writer would.
fn pack_parallel<C: BlockCodec + Send>(
    disk: &[u8],
    block_len: usize,
    make_codec: impl Fn() -> C,
    arenas: &mut [Vec<u8>],
) -> Parallel {
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0usize, Duration::ZERO));
    let blocks = disk.len().div_ceil(block_len);
    let prepared: Vec<(C, Vec<u8>)> = arenas
        .iter()
        .map(|_| {
            let mut codec = make_codec();
            let zero_member = compress_to_vec(&mut codec, &vec![0; block_len]);
            (codec, zero_member)
        })
        .collect();
    let clock = Stopwatch::start();
    std::thread::scope(|scope| {
        for ((mut codec, zero_member), arena) in prepared.into_iter().zip(arenas.iter_mut()) {
            let (next, totals) = (&next, &totals);
            scope.spawn(move || {
                let thread_clock = Stopwatch::start();
                let mut pos = 0;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= blocks {
                        break;
                    }
                    let block = &disk[index * block_len..((index + 1) * block_len).min(disk.len())];
                    pos += if block.len() == block_len && is_zero(block) {
                        arena[pos..pos + zero_member.len()].copy_from_slice(&zero_member);
                        zero_member.len()
                    } else {
                        codec.compress(block, &mut arena[pos..])
                    };
                }
                let busy = thread_clock.busy();
                let mut totals = totals.lock().unwrap();
                totals.0 += pos;
                totals.1 += busy;
            });
        }
    });
    let wall = clock.wall();
    let (compressed_len, busy) = totals.into_inner().unwrap();
    Parallel {
        compressed_len,
        wall,
        busy,
    }
}

/// 2-thread throughput if each thread had a core to itself: all the CPU time spread
/// evenly over the threads. Differs from wall-clock throughput only when something
/// else competes for the cores.
fn parallel_cpu_mb_per_s(bytes: usize, parallel: &Parallel) -> String {
    mb_per_s(bytes, parallel.busy / THREADS as u32)
}

/// Decompresses every member, timing the decoding (or, for zero blocks, the zero
/// fill a restore does instead), then checks every block against the original in
/// an untimed second pass.
fn unpack(
    disk: &[u8],
    block_len: usize,
    packed: &Packed,
    arena: &[u8],
    codec: &mut dyn BlockCodec,
) -> Duration {
    let mut out = vec![0u8; block_len];
    let blocks = || {
        disk.chunks(block_len)
            .zip(&packed.members)
            .zip(&packed.zero)
    };
    let clock = Stopwatch::start();
    for ((block, member), &zero) in blocks() {
        let out = &mut out[..block.len()];
        if zero {
            out.fill(0);
        } else {
            codec.decompress(&arena[member.clone()], out);
        }
        std::hint::black_box(&out);
    }
    let busy = clock.busy();
    for ((block, member), &zero) in blocks() {
        let out = &mut out[..block.len()];
        if !zero {
            codec.decompress(&arena[member.clone()], out);
            assert!(out == block, "round trip mismatch");
        }
    }
    busy
}

// ---------------------------------------------------------------------------
// Tables.

struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: &str, header: &[&str]) -> Self {
        Table {
            title: title.to_string(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    fn print(&self) {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].len())
                    .chain([self.header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        println!("### {}\n", self.title);
        line(&self.header);
        println!(
            "|{}|",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &self.rows {
            line(row);
        }
        println!();
    }
}

fn deflate_table(disk: &[u8], arenas: &mut [Vec<u8>], pigz: Option<ToolRun>) {
    let mut table = Table::new(
        "Deflate, one gzip member per block (zero blocks skipped by the fast path on both sides)",
        &[
            "block",
            "library",
            "level",
            "compressed bytes",
            "vs pigz -6",
            "CPU s",
            "compress MB/s",
            "2 threads MB/s",
            "2 threads MB/s wall",
            "decompress MB/s",
        ],
    );
    for &block_len in &BLOCK_LENS {
        let mut runs: Vec<(&str, i32, Box<dyn BlockCodec>)> = vec![
            ("libdeflate", 6, Box::new(Libdeflate::new(6))),
            ("flate2/miniz_oxide", 6, Box::new(Miniz::new(6))),
            ("flate2/zlib-rs", 6, Box::new(ZlibRs::new(6))),
        ];
        if block_len == PROBE_BLOCK_LEN {
            for level in [1, 4, 9] {
                runs.push(("libdeflate", level, Box::new(Libdeflate::new(level))));
            }
            for level in [4, 6] {
                runs.push((
                    "libdeflate + entropy gate",
                    level,
                    Box::new(GatedLibdeflate::new(level)),
                ));
            }
        }
        for (name, level, mut codec) in runs {
            let packed = pack(disk, block_len, codec.as_mut(), &mut arenas[0]);
            let unpack_busy = unpack(disk, block_len, &packed, &arenas[0], codec.as_mut());
            let parallel = match name {
                "libdeflate" => Some(pack_parallel(
                    disk,
                    block_len,
                    || Libdeflate::new(level),
                    arenas,
                )),
                "libdeflate + entropy gate" => Some(pack_parallel(
                    disk,
                    block_len,
                    || GatedLibdeflate::new(level),
                    arenas,
                )),
                _ => None,
            };
            if let Some(p) = &parallel {
                assert_eq!(p.compressed_len, packed.compressed_len);
            }
            table.row(vec![
                kib(block_len),
                name.to_string(),
                level.to_string(),
                packed.compressed_len.to_string(),
                pigz.map_or("-".into(), |p| {
                    percent_of(packed.compressed_len, p.output_len)
                }),
                seconds(packed.busy),
                mb_per_s(disk.len(), packed.busy),
                parallel
                    .as_ref()
                    .map_or("-".into(), |p| parallel_cpu_mb_per_s(disk.len(), p)),
                parallel
                    .as_ref()
                    .map_or("-".into(), |p| mb_per_s(disk.len(), p.wall)),
                mb_per_s(disk.len(), unpack_busy),
            ]);
        }
    }
    table.print();
}

fn zero_table(disk: &[u8]) {
    let mut table = Table::new(
        "Zero blocks: how many, and what the fast path saves",
        &[
            "block",
            "zero blocks",
            "share of disk",
            "is_zero over whole disk MB/s",
            "libdeflate-6 zero member bytes",
            "libdeflate inflating that member MB/s",
        ],
    );
    for &block_len in &BLOCK_LENS {
        let clock = Stopwatch::start();
        let zero_blocks = disk.chunks(block_len).filter(|b| is_zero(b)).count();
        let scan = clock.busy();
        let mut codec = Libdeflate::new(6);
        let member = compress_to_vec(&mut codec, &vec![0; block_len]);
        let mut out = vec![0u8; block_len];
        let repeats = (16 << 20) / block_len;
        let clock = Stopwatch::start();
        for _ in 0..repeats {
            codec.decompress(std::hint::black_box(&member), &mut out);
        }
        let inflate = clock.busy();
        table.row(vec![
            kib(block_len),
            format!("{zero_blocks} of {}", disk.len().div_ceil(block_len)),
            format!(
                "{:.1}%",
                (zero_blocks * block_len) as f64 * 100.0 / disk.len() as f64
            ),
            mb_per_s(disk.len(), scan),
            member.len().to_string(),
            mb_per_s(repeats * block_len, inflate),
        ]);
    }
    table.print();

    let zeros = vec![0u8; disk.len()];
    let mut table = Table::new(
        "Zero check vs compressing the zero block (64 KiB blocks, all-zero input: the full-scan worst case)",
        &["method", "MB/s"],
    );
    let byte_loop = |b: &[u8]| b.iter().all(|&x| x == 0);
    let reference = vec![0u8; PROBE_BLOCK_LEN];
    let memcmp = |b: &[u8]| b == &reference[..b.len()];
    type ZeroCheck<'a> = &'a dyn Fn(&[u8]) -> bool;
    let checks: [(&str, ZeroCheck); 3] = [
        ("byte loop with early exit (`iter().all`)", &byte_loop),
        ("OR-fold per 64-byte line (`is_zero`)", &is_zero),
        ("compare with a zero block (memcmp)", &memcmp),
    ];
    for (name, check) in checks {
        let passes = 8;
        let clock = Stopwatch::start();
        let mut found = 0;
        for _ in 0..passes {
            found += zeros
                .chunks(PROBE_BLOCK_LEN)
                .filter(|b| std::hint::black_box(check(b)))
                .count();
        }
        let busy = clock.busy();
        assert_eq!(found, passes * disk.len() / PROBE_BLOCK_LEN);
        table.row(vec![name.to_string(), mb_per_s(passes * disk.len(), busy)]);
    }
    for level in [1, 6] {
        let mut codec = Libdeflate::new(level);
        let mut out = vec![0u8; PROBE_BLOCK_LEN * 2];
        let blocks = 512;
        let clock = Stopwatch::start();
        for _ in 0..blocks {
            std::hint::black_box(codec.compress(&zeros[..PROBE_BLOCK_LEN], &mut out));
        }
        let busy = clock.busy();
        table.row(vec![
            format!("libdeflate level {level} compressing the zero block"),
            mb_per_s(blocks * PROBE_BLOCK_LEN, busy),
        ]);
    }
    table.print();
}

/// Splits the 64 KiB blocks by how compressible they are, so the cost of
/// incompressible (random) data can be seen apart from text.
fn content_class_table(disk: &[u8], arena: &mut [u8]) {
    let mut classes: [(&str, Vec<u8>); 4] = [
        ("zero", Vec::new()),
        ("incompressible (>= 98%)", Vec::new()),
        ("mixed (40-98%)", Vec::new()),
        ("compressible (< 40%)", Vec::new()),
    ];
    let mut probe = Libdeflate::new(1);
    let mut out = vec![0u8; PROBE_BLOCK_LEN * 2];
    for block in disk.chunks(PROBE_BLOCK_LEN) {
        let class = if is_zero(block) {
            0
        } else {
            let ratio = probe.compress(block, &mut out) as f64 / block.len() as f64;
            if ratio >= 0.98 {
                1
            } else if ratio >= 0.40 {
                2
            } else {
                3
            }
        };
        classes[class].1.extend_from_slice(block);
    }

    let mut header = vec!["codec".to_string()];
    header.extend(
        classes
            .iter()
            .map(|(name, data)| format!("{name}: {} MiB", data.len() >> 20)),
    );
    let mut table = Table {
        title: "By content class (class = libdeflate-1 ratio), 64 KiB blocks, no zero fast path: MB/s (compressed/input)"
            .into(),
        header,
        rows: Vec::new(),
    };
    type MakeCodec = Box<dyn Fn() -> Box<dyn BlockCodec>>;
    let codecs: Vec<(&str, MakeCodec)> = vec![
        ("libdeflate 1", Box::new(|| Box::new(Libdeflate::new(1)))),
        ("libdeflate 4", Box::new(|| Box::new(Libdeflate::new(4)))),
        ("libdeflate 6", Box::new(|| Box::new(Libdeflate::new(6)))),
        (
            "libdeflate 0 (stored)",
            Box::new(|| Box::new(Libdeflate::new(0))),
        ),
        (
            "libdeflate 6 + entropy gate",
            Box::new(|| Box::new(GatedLibdeflate::new(6))),
        ),
        ("entropy estimate alone", Box::new(|| Box::new(EntropyOnly))),
        ("flate2/miniz_oxide 6", Box::new(|| Box::new(Miniz::new(6)))),
        ("flate2/zlib-rs 6", Box::new(|| Box::new(ZlibRs::new(6)))),
        ("zstd 3", Box::new(|| Box::new(Zstd::new(3)))),
    ];
    let mut decompress_row = vec!["libdeflate 6, decompress".to_string()];
    for (name, make) in &codecs {
        let mut row = vec![name.to_string()];
        for (_, data) in &classes {
            if data.is_empty() {
                row.push("-".into());
                continue;
            }
            let mut codec = make();
            let mut members = Vec::new();
            let mut pos = 0;
            let clock = Stopwatch::start();
            for block in data.chunks(PROBE_BLOCK_LEN) {
                let n = codec.compress(block, &mut arena[pos..]);
                members.push(pos..pos + n);
                pos += n;
            }
            let busy = clock.busy();
            row.push(if *name == "entropy estimate alone" {
                mb_per_s(data.len(), busy)
            } else {
                format!(
                    "{} ({:.3})",
                    mb_per_s(data.len(), busy),
                    pos as f64 / data.len() as f64
                )
            });
            if *name == "libdeflate 6" {
                let zero = vec![false; members.len()];
                let packed = Packed {
                    members,
                    zero,
                    compressed_len: pos,
                    busy,
                };
                decompress_row.push(mb_per_s(
                    data.len(),
                    unpack(data, PROBE_BLOCK_LEN, &packed, arena, codec.as_mut()),
                ));
            }
        }
        table.rows.push(row);
    }
    table.rows.push(decompress_row);
    table.print();
}

fn zstd_table(disk: &[u8], arenas: &mut [Vec<u8>], pigz: Option<ToolRun>) {
    let mut table = Table::new(
        "zstd, one frame per block (zero blocks skipped by the fast path on both sides)",
        &[
            "block",
            "level",
            "compressed bytes",
            "vs pigz -6",
            "compress MB/s",
            "2 threads MB/s",
            "2 threads MB/s wall",
            "C decompress MB/s",
            "ruzstd decompress MB/s",
        ],
    );
    for &block_len in &BLOCK_LENS {
        for level in [1, 3] {
            let mut codec = Zstd::new(level);
            let packed = pack(disk, block_len, &mut codec, &mut arenas[0]);
            let c_busy = unpack(disk, block_len, &packed, &arenas[0], &mut codec);
            let mut ruzstd = Ruzstd(ruzstd::decoding::FrameDecoder::new());
            let rust_busy = unpack(disk, block_len, &packed, &arenas[0], &mut ruzstd);
            let parallel = pack_parallel(disk, block_len, || Zstd::new(level), arenas);
            assert_eq!(parallel.compressed_len, packed.compressed_len);
            table.row(vec![
                kib(block_len),
                level.to_string(),
                packed.compressed_len.to_string(),
                pigz.map_or("-".into(), |p| {
                    percent_of(packed.compressed_len, p.output_len)
                }),
                mb_per_s(disk.len(), packed.busy),
                parallel_cpu_mb_per_s(disk.len(), &parallel),
                mb_per_s(disk.len(), parallel.wall),
                mb_per_s(disk.len(), c_busy),
                mb_per_s(disk.len(), rust_busy),
            ]);
        }
    }
    table.print();
}

fn blake3_table(disk: &[u8]) {
    let mut table = Table::new("BLAKE3, single thread", &["input", "MB/s"]);
    for block_len in [PROBE_BLOCK_LEN, 1 << 20] {
        let clock = Stopwatch::start();
        let mut acc = 0u8;
        for block in disk.chunks(block_len) {
            acc ^= blake3::hash(block).as_bytes()[0];
        }
        std::hint::black_box(acc);
        let busy = clock.busy();
        table.row(vec![
            format!("one `blake3::hash` per {} block", kib(block_len)),
            mb_per_s(disk.len(), busy),
        ]);
    }
    let clock = Stopwatch::start();
    std::hint::black_box(blake3::hash(disk));
    let busy = clock.busy();
    table.row(vec![
        "one call over the whole 256 MiB".into(),
        mb_per_s(disk.len(), busy),
    ]);
    table.print();
}

// ---------------------------------------------------------------------------
// Stock tools on the same bytes.

#[derive(Clone, Copy)]
struct ToolRun {
    output_len: usize,
}

struct ToolTime {
    wall: Duration,
    cpu: Duration,
}

/// Runs `program args` with stdin from `input` and stdout to `output`; None when
/// the tool is missing or fails.
fn timed(program: &str, args: &[&str], input: Option<&Path>, output: &Path) -> Option<ToolTime> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdout(File::create(output).ok()?)
        .stderr(Stdio::null());
    if let Some(input) = input {
        command.stdin(File::open(input).ok()?);
    }
    let cpu = children_cpu_time();
    let start = Instant::now();
    let status = command.status().ok()?;
    let wall = start.elapsed();
    status.success().then(|| ToolTime {
        wall,
        cpu: children_cpu_time() - cpu,
    })
}

/// Returns pigz -6's run, the yardstick of the other tables.
fn reference_tools(disk: &[u8]) -> Option<ToolRun> {
    let dir = std::env::temp_dir();
    let path =
        |ext: &str| -> PathBuf { dir.join(format!("codec-choice-{}.{ext}", std::process::id())) };
    let (img, gz, pigz, zst) = (
        path("img"),
        path("img.gz"),
        path("img.pigz.gz"),
        path("img.zst"),
    );
    let null = Path::new("/dev/null");
    fs::write(&img, disk).expect("writing the sample to a temp file");
    let img_arg = img.to_str().expect("utf-8 temp path");

    let mut table = Table::new(
        "Stock tools on the same 256 MiB (file in page cache, 2 cores)",
        &[
            "command",
            "output bytes",
            "ratio",
            "CPU s",
            "wall s",
            "MB/s wall",
        ],
    );
    let mut add = |label: &str, output: Option<&Path>, time: Option<ToolTime>| {
        let len = output
            .and_then(|o| fs::metadata(o).ok())
            .map(|m| m.len() as usize);
        table.row(vec![
            format!("`{label}`"),
            len.map_or("-".into(), |l| l.to_string()),
            len.map_or("-".into(), |l| {
                format!("{:.3}", l as f64 / disk.len() as f64)
            }),
            time.as_ref().map_or("not run".into(), |t| seconds(t.cpu)),
            time.as_ref().map_or("not run".into(), |t| seconds(t.wall)),
            time.as_ref()
                .map_or("-".into(), |t| mb_per_s(disk.len(), t.wall)),
        ]);
        len.filter(|_| time.is_some())
            .map(|output_len| ToolRun { output_len })
    };
    let t = timed("gzip", &["-6", "-c"], Some(&img), &gz);
    add("gzip -6", Some(&gz), t);
    let t = timed("pigz", &["-6", "-p", "2", "-c"], Some(&img), &pigz);
    let pigz_run = add("pigz -6 -p 2", Some(&pigz), t);
    let t = timed("zstd", &["-3", "-T0", "-q", "-c"], Some(&img), &zst);
    add("zstd -3 -T0", Some(&zst), t);
    let t = timed("zcat", &[], Some(&gz), null);
    add("zcat > /dev/null", None, t);
    let t = timed("pigz", &["-d", "-c", "-p", "2"], Some(&pigz), null);
    add("pigz -d > /dev/null", None, t);
    let t = timed("zstd", &["-d", "-q", "-c"], Some(&zst), null);
    add("zstd -d > /dev/null", None, t);
    let t = timed("b3sum", &[img_arg], None, null);
    add("b3sum (mmap, all cores)", None, t);
    let t = timed("b3sum", &["--num-threads", "1", img_arg], None, null);
    add("b3sum --num-threads 1", None, t);
    table.print();

    for p in [&img, &gz, &pigz, &zst] {
        let _ = fs::remove_file(p);
    }
    pigz_run
}
