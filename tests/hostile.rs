//! Hostile inputs. Valid small files are made with `sdar`, then rewritten
//! field by field as SPEC.md describes them, every CRC-32 recomputed, so
//! that the readers get past their checksums and must refuse the lie itself:
//! sizes up to 2^64 − 1, counts larger than the file, offsets outside the
//! file or into other structures, members that inflate past their block,
//! metadata names made of `..`, `/`, NUL and terminal escapes, and VMDK
//! descriptors with huge lines, many extents or extents outside their folder.
//!
//! Every case checks the exit code, a message naming the file (and the byte
//! or block where there is one), no panic, nothing written but what is
//! expected, and a peak resident set under 128 MiB, measured by running the
//! command under `/usr/bin/time -v` (Debian/Ubuntu package `time`; without
//! it the measurement is reported as NOT RUN and the rest still runs).
//!
//! Ignored by default: the 4 GiB memory check, run with
//! `cargo test --release -p sdar --test hostile -- --ignored --nocapture four_gib`,
//! and the cases that show a bug, marked `bug: ...`. With `HOSTILE_SHOW=1`
//! and `--nocapture`, every command is printed with its exit code and message.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Once;

// ---------------------------------------------------------------------------
// Running commands under /usr/bin/time -v

/// The most any command may keep resident, whatever its input.
const RSS_LIMIT_KIB: u64 = 128 * 1024;

const TIME: &str = "/usr/bin/time";

/// What a command did, and its peak resident set when it could be measured.
struct Measured {
    out: Outcome,
    peak_kib: Option<u64>,
}

fn time_available() -> bool {
    static NOTE: Once = Once::new();
    let there = Path::new(TIME).is_file();
    if !there {
        NOTE.call_once(|| {
            eprintln!(
                "NOT RUN: peak memory is not measured: {TIME} is missing (apt-get install time)"
            )
        });
    }
    there
}

/// Runs `program args` in `dir` under `/usr/bin/time -v`, and fails the test
/// on a panic, a signal or a peak resident set over the limit.
#[track_caller]
fn measured(dir: &Path, program: &str, args: &[&str]) -> Measured {
    let shown = if program == SDAR { "sdar" } else { program };
    let what = format!("{shown} {}", args.join(" "));
    if !time_available() {
        let mut out = run_in(dir, program, args);
        out.what = what;
        assert_no_panic(&out);
        show(&out, None);
        return Measured {
            out,
            peak_kib: None,
        };
    }
    let mut tries = 0;
    let (out, report) = loop {
        let mut cmd = Command::new(TIME);
        cmd.arg("-v").arg(program).args(args).current_dir(dir);
        let mut out = run_command(what.clone(), &mut cmd);
        // time's own lines follow the program's error output.
        let split = [
            "Command exited with non-zero status",
            "Command terminated by signal",
            "\tCommand being timed:",
        ]
        .iter()
        .filter_map(|m| out.stderr.find(m))
        .min()
        .unwrap_or_else(|| panic!("`{what}`: no /usr/bin/time report in:\n{}", out.stderr));
        let report = out.stderr.split_off(split);
        // An archive this test just wrote can be briefly busy (ETXTBSY)
        // while another test thread's child still holds the writing descriptor.
        if report.contains("Text file busy") || out.stderr.contains("Text file busy") {
            tries += 1;
            assert!(tries < 100, "`{what}`: text file busy");
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        break (out, report);
    };
    assert!(
        !report.contains("Command terminated by signal"),
        "`{what}` was killed by a signal:\n{}\n{report}",
        out.stderr
    );
    assert_no_panic(&out);
    let peak = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("`{what}`: no peak resident set in:\n{report}"));
    assert!(
        peak < RSS_LIMIT_KIB,
        "`{what}` peaked at {peak} KiB resident, over the {RSS_LIMIT_KIB} KiB limit\nstderr:\n{}",
        out.stderr
    );
    show(&out, Some(peak));
    Measured {
        out,
        peak_kib: Some(peak),
    }
}

/// With `HOSTILE_SHOW` set: the command, its exit code, peak and message.
fn show(out: &Outcome, peak_kib: Option<u64>) {
    if std::env::var_os("HOSTILE_SHOW").is_some() {
        let peak = peak_kib.map_or("not measured".into(), |k| format!("{k} KiB"));
        eprintln!(
            "{} -> exit {}, peak {peak}: {}",
            out.what,
            out.code,
            out.stderr.trim_end()
        );
    }
}

#[track_caller]
fn assert_no_panic(out: &Outcome) {
    assert!(
        out.code != 101 && !out.stderr.contains("panicked"),
        "`{}` panicked (exit {}):\n{}",
        out.what,
        out.code,
        out.stderr
    );
}

/// Runs `sdar args` in `dir`, measured, and checks the exit code and that
/// the error output says each of `says` (the file's name first of all).
#[track_caller]
fn expect(dir: &Path, args: &[&str], code: i32, says: &[String]) -> Outcome {
    expect_program(dir, SDAR, args, code, says)
}

#[track_caller]
fn expect_program(dir: &Path, program: &str, args: &[&str], code: i32, says: &[String]) -> Outcome {
    let out = measured(dir, program, args).out.expect_code(code);
    for s in says {
        assert!(
            out.stderr.contains(s.as_str()),
            "`{}` should say `{s}`; it said:\n{}",
            out.what,
            out.stderr
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Bytes, checksums and records

fn u32_at(b: &[u8], at: u64) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: u64, v: u32) {
    let at = at as usize;
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: u64, v: u64) {
    let at = at as usize;
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// SPEC.md §4 "Records": the record header is tag, body_len, crc, reserved.
const RECORD_HEADER: u64 = 16;

/// Recomputes the CRC of the record whose header starts at `rec`: over the
/// tag and length, then the body (SPEC.md §4).
fn reseal(b: &mut [u8], rec: u64) {
    let len = u32_at(b, rec + 4) as u64;
    let r = rec as usize;
    let mut covered = b[r..r + 8].to_vec();
    covered.extend_from_slice(&b[r + 16..(rec + RECORD_HEADER + len) as usize]);
    let crc = crc32(&covered);
    put_u32(b, rec + 8, crc);
}

/// The entries of the META record at `rec` (SPEC.md §6): key, offset of the
/// value, its length.
fn meta_entries(b: &[u8], rec: u64) -> Vec<(u16, u64, u64)> {
    let body = rec + RECORD_HEADER;
    let end = body + u32_at(b, rec + 4) as u64;
    let mut at = body;
    let mut entries = Vec::new();
    while at < end {
        let key = u16::from_le_bytes([b[at as usize], b[at as usize + 1]]);
        let len = u32_at(b, at + 2) as u64;
        entries.push((key, at + 6, len));
        at += 6 + len;
    }
    entries
}

/// SPEC.md §6.1 metadata keys used here.
const KEY_VM_NAME: u16 = 1;
const KEY_SCSI_ID: u16 = 3;
const KEY_DISK_NAME: u16 = 4;
const KEY_ADAPTER: u16 = 6;
const KEY_HW_VERSION: u16 = 8;
const KEY_DISK_UUID: u16 = 9;
const KEY_BASE_NAME: u16 = 13;

/// Replaces the value of `key` in the META record at `rec` by `value`, of
/// the same length, and reseals the record.
#[track_caller]
fn set_meta(b: &mut [u8], rec: u64, key: u16, value: &[u8]) {
    let (_, at, len) = *meta_entries(b, rec)
        .iter()
        .find(|e| e.0 == key)
        .unwrap_or_else(|| panic!("no metadata key {key}"));
    assert_eq!(len, value.len() as u64, "key {key}: placeholder length");
    b[at as usize..(at + len) as usize].copy_from_slice(value);
    reseal(b, rec);
}

// ---------------------------------------------------------------------------
// Where things are in a full image (SPEC.md §1–§9)

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Codec {
    Gzip,
    Zstd,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// Bytes of container in front of a record (SPEC.md §4.2, §4.3).
    fn record_in_container(self) -> u64 {
        match self {
            Codec::Gzip => 16,
            Codec::Zstd => 8,
        }
    }

    /// Bytes a record with a 64-byte body spans (HEAD and FOOT).
    fn span_64(self) -> u64 {
        record_span(self.name(), 64)
    }
}

/// Record offsets (where each record's header starts) and container offsets
/// of a full image.
struct FullMap {
    codec: Codec,
    head: u64,
    meta: u64,
    /// Container offset of each INDX record, and of DIRS and FOOT.
    index_containers: Vec<u64>,
    dirs_container: u64,
    foot_container: u64,
    members: Vec<Member>,
    data_start: u64,
}

impl FullMap {
    fn rec(&self, container: u64) -> u64 {
        container + self.codec.record_in_container()
    }
    fn index(&self, s: usize) -> u64 {
        self.rec(self.index_containers[s])
    }
    fn dirs(&self) -> u64 {
        self.rec(self.dirs_container)
    }
    fn foot(&self) -> u64 {
        self.rec(self.foot_container)
    }
    /// Offset of the body field at `field` of the record at `rec`.
    fn body(rec: u64, field: u64) -> u64 {
        rec + RECORD_HEADER + field
    }
}

fn full_map(path: &Path) -> FullMap {
    let bytes = fs::read(path).unwrap();
    let codec = if bytes.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else {
        Codec::Zstd
    };
    let l = layout(path);
    let c = codec.record_in_container();
    FullMap {
        codec,
        head: c,
        meta: codec.span_64() + c,
        index_containers: l.index_records.clone(),
        dirs_container: l.directory,
        foot_container: l.file_len - codec.span_64(),
        members: l.members,
        data_start: l.data_start,
    }
}

// ---------------------------------------------------------------------------
// Where things are in a delta archive (SPEC.md §13–§18)

struct DeltaMap {
    trailer: u64,
    payload: u64,
    dhed: u64,
    meta: u64,
    dfot: u64,
    ddir: u64,
    /// File offset of each DMAP record.
    dmaps: Vec<u64>,
}

fn delta_map(b: &[u8]) -> DeltaMap {
    let trailer = b.len() as u64 - 32;
    let payload = u64_at(b, trailer + 8);
    let payload_len = u64_at(b, trailer + 16);
    let dhed = payload;
    let meta = dhed + RECORD_HEADER + u32_at(b, dhed + 4) as u64;
    let dfot = payload + payload_len - (RECORD_HEADER + 64);
    let ddir = payload + u64_at(b, dfot + RECORD_HEADER + 32);
    let groups = u64_at(b, ddir + RECORD_HEADER);
    let dmaps = (0..groups)
        .map(|g| payload + u64_at(b, ddir + RECORD_HEADER + 8 + 16 * g))
        .collect();
    DeltaMap {
        trailer,
        payload,
        dhed,
        meta,
        dfot,
        ddir,
        dmaps,
    }
}

/// SPEC.md §13: the trailer's CRC covers its first 28 bytes.
fn reseal_trailer(b: &mut [u8]) {
    let t = b.len() - 32;
    let crc = crc32(&b[t..t + 28]);
    put_u32(b, t as u64 + 28, crc);
}

// ---------------------------------------------------------------------------
// Members that inflate past their block

/// A gzip member (SPEC.md §3.1) of exactly `len` bytes claiming a block of
/// `block_len`, whose deflate stream is one fixed-Huffman block: a literal,
/// then copies of 258 bytes at distance 1 filling the space, then the end
/// of block; it inflates to hundreds of times its size, far past the block.
fn gzip_bomb(len: usize, block_len: usize) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        /// Appends `count` bits of `v`, least significant first (RFC 1951 §3.1.1).
        fn put(&mut self, v: u32, count: u32) {
            self.acc |= (v as u64) << self.n;
            self.n += count;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, count: u32) {
            let reversed = code.reverse_bits() >> (32 - count);
            self.put(reversed, count);
        }
    }
    let room_bits = (len - 18) * 8;
    // 3 header bits, an 8-bit literal, 7-bit end of block; 13 bits a copy.
    let copies = (room_bits - 3 - 8 - 7) / 13;
    assert!(
        1 + 258 * copies > block_len,
        "a {len}-byte member is too short to hold a bomb for {block_len} bytes"
    );
    let mut bits = Bits {
        out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE 01: fixed Huffman codes
    bits.code(0x30 + b'A' as u32, 8); // literal 'A'
    for _ in 0..copies {
        bits.code(0xc0 + (285 - 280), 8); // length 258
        bits.code(0, 5); // distance 1
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7); // flush
    let mut member = bits.out;
    member.resize(len - 8, 0);
    member.extend_from_slice(&crc32(&vec![b'A'; block_len]).to_le_bytes());
    member.extend_from_slice(&(block_len as u32).to_le_bytes());
    assert_eq!(member.len(), len);
    member
}

/// A zstd frame (RFC 8878) of exactly `len` bytes whose header declares
/// `block_len` bytes of content (single segment, so a window of that size),
/// followed by RLE blocks of `block_len` bytes each: it regenerates far more
/// than it declares.
fn zstd_bomb(len: usize, block_len: usize) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    f.push(0b1010_0000); // FCS field 4 bytes, Single_Segment
    f.extend_from_slice(&(block_len as u32).to_le_bytes());
    let room = len - f.len() - 3; // a raw block pads to the exact length
    let rle = room / 4;
    assert!(rle >= 2, "a {len}-byte member is too short for a bomb");
    let pad = room - rle * 4;
    let block_header = |size: usize, kind: u32, last: bool| {
        let h = (size as u32) << 3 | kind << 1 | last as u32;
        h.to_le_bytes()[..3].to_vec()
    };
    f.extend(block_header(pad, 0, false));
    f.extend(std::iter::repeat_n(b'A', pad));
    for i in 0..rle {
        f.extend(block_header(block_len, 1, i + 1 == rle));
        f.push(b'A');
    }
    assert_eq!(f.len(), len);
    f
}

/// A zstd frame of exactly `len` bytes that declares the right content size
/// but a window of 2 GiB (Window_Descriptor exponent 21): a decoder that
/// honoured it would allocate the window.
fn zstd_huge_window(len: usize, block_len: usize) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    f.push(0b1000_0000); // FCS field 4 bytes, not single segment
    f.push(21 << 3); // window 2^(10 + 21) bytes
    f.extend_from_slice(&(block_len as u32).to_le_bytes());
    // One raw block of what is left, the last.
    let size = len - f.len() - 3;
    f.extend_from_slice(&((size as u32) << 3 | 1).to_le_bytes()[..3]);
    f.resize(len, b'A');
    f
}

// ---------------------------------------------------------------------------
// Fixtures

/// A 2 MiB disk with no zero block (seed 4), its full image (and the empty
/// delta beside it, `f.sdar`), and a delta to another disk of that size
/// (seed 5) with every changed block stored whole (`x.sdar`).
struct Small {
    dir: tempfile::TempDir,
    full: String,
    delta: String,
}

fn small(full_codec: Codec, delta_codec: Codec) -> Small {
    let dir = scratch();
    let d = dir.path();
    let ext = match full_codec {
        Codec::Gzip => "gz",
        Codec::Zstd => "zst",
    };
    let full = format!("f.full.{ext}");
    sample_disk(d, "d.img", 2 << 20, 4);
    sdar(
        d,
        &[
            "full",
            "d.img",
            "-o",
            &full,
            "--codec",
            full_codec.name(),
            "-q",
        ],
    )
    .success();
    sample_disk(d, "n.img", 2 << 20, 5);
    sdar(
        d,
        &[
            "delta",
            "n.img",
            "--full",
            &full,
            "-o",
            "x.sdar",
            "--index-only",
            "--codec",
            delta_codec.name(),
            "-q",
        ],
    )
    .success();
    Small {
        dir,
        full,
        delta: "x.sdar".into(),
    }
}

/// A 17 MiB disk in 4 KiB blocks (5 segments of 1024 blocks) and its full
/// image, and a delta to a disk of the same size holding only 0x55 bytes:
/// 4352 DATA entries, in two DMAP groups of at most 4096.
fn multi() -> Small {
    let dir = scratch();
    let d = dir.path();
    sample_disk(d, "d.img", 17 << 20, 4);
    sdar(
        d,
        &[
            "full",
            "d.img",
            "-o",
            "f.full.gz",
            "--block-size",
            "4K",
            "-q",
        ],
    )
    .success();
    fs::write(d.join("v.img"), vec![0x55u8; 17 << 20]).unwrap();
    sdar(
        d,
        &[
            "delta",
            "v.img",
            "--full",
            "f.full.gz",
            "-o",
            "x.sdar",
            "--index-only",
            "-q",
        ],
    )
    .success();
    Small {
        dir,
        full: "f.full.gz".into(),
        delta: "x.sdar".into(),
    }
}

// ---------------------------------------------------------------------------
// Cases

/// How far a reader gets before it meets the lie, which decides what each
/// command does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Opening the file finds it: every command fails alike.
    Open,
    /// A full's index (INDX, DIRS entries): `info` reads every INDX record,
    /// so it fails too.
    Index,
    /// A delta's change maps or a member: `info` does not read them and
    /// succeeds; `verify` and `restore` fail.
    Data,
}

/// Rewrites a copy of the pristine file into the hostile one.
type Craft = Box<dyn Fn(&mut Vec<u8>)>;

struct Case {
    name: &'static str,
    craft: Craft,
    stage: Stage,
    code: i32,
    /// What the message must say besides the file's name.
    says: Vec<String>,
    /// The file the message must name, when it is not the case's file.
    named: Option<&'static str>,
}

impl Case {
    fn naming(mut self, file: &'static str) -> Case {
        self.named = Some(file);
        self
    }
}

fn case(
    name: &'static str,
    stage: Stage,
    code: i32,
    says: &[&str],
    craft: impl Fn(&mut Vec<u8>) + 'static,
) -> Case {
    Case {
        name,
        craft: Box::new(craft),
        stage,
        code,
        says: says.iter().map(|s| s.to_string()).collect(),
        named: None,
    }
}

/// Writes each case's file into a folder of its own in `fx`, runs `info`,
/// `verify` and a restore that reads it, and checks that each fails (or, for
/// `info` past `Stage::Open`/`Index`, succeeds) as the case says, and that
/// nothing but the case's file is left anywhere in the scratch folder.
fn run_full_cases(fx: &Small, cases: Vec<Case>) {
    let root = fx.dir.path();
    let pristine = fs::read(root.join(&fx.full)).unwrap();
    let ext = fx.full.rsplit('.').next().unwrap();
    for c in cases {
        let before = listing(root);
        let folder = root.join(c.name);
        fs::create_dir(&folder).unwrap();
        fs::create_dir(folder.join("out")).unwrap();
        let file = format!("{}.full.{ext}", c.name);
        let mut bytes = pristine.clone();
        (c.craft)(&mut bytes);
        assert_ne!(bytes, pristine, "{}: the case changes nothing", c.name);
        fs::write(folder.join(&file), &bytes).unwrap();
        let mut says = vec![c.named.map_or(file.clone(), String::from)];
        says.extend(c.says.iter().cloned());
        let info_code = if c.stage == Stage::Data {
            EXIT_OK
        } else {
            c.code
        };
        let info_says = if info_code == EXIT_OK {
            &[][..]
        } else {
            &says[..]
        };
        expect(&folder, &["info", &file], info_code, info_says);
        expect(&folder, &["info", &file, "--json"], info_code, info_says);
        expect(&folder, &["verify", &file], c.code, &says);
        let empty_delta = format!(
            "../{}",
            fx.full.split(".full.").next().unwrap().to_owned() + ".sdar"
        );
        expect(
            &folder,
            &[
                "restore",
                &empty_delta,
                "--full",
                &file,
                "--to",
                "out/r.vmdk",
            ],
            c.code,
            &says,
        );
        assert_left_alone(root, &before, c.name, &file, &bytes);
    }
}

/// Like `run_full_cases` for a delta: `info`, `verify --full`, and a
/// restore through `sdar restore`.
fn run_delta_cases(fx: &Small, cases: Vec<Case>) {
    let root = fx.dir.path();
    let pristine = fs::read(root.join(&fx.delta)).unwrap();
    let full = format!("../{}", fx.full);
    let full_state = watch(&root.join(&fx.full));
    for c in cases {
        let before = listing(root);
        let folder = root.join(c.name);
        fs::create_dir(&folder).unwrap();
        fs::create_dir(folder.join("out")).unwrap();
        let file = format!("{}.sdar", c.name);
        let mut bytes = pristine.clone();
        (c.craft)(&mut bytes);
        assert_ne!(bytes, pristine, "{}: the case changes nothing", c.name);
        fs::write(folder.join(&file), &bytes).unwrap();
        let mut says = vec![c.named.map_or(file.clone(), String::from)];
        says.extend(c.says.iter().cloned());
        let info_code = if c.stage == Stage::Open {
            c.code
        } else {
            EXIT_OK
        };
        let info_says = if info_code == EXIT_OK {
            &[][..]
        } else {
            &says[..]
        };
        expect(&folder, &["info", &file], info_code, info_says);
        expect(&folder, &["info", &file, "--json"], info_code, info_says);
        expect(&folder, &["verify", &file, "--full", &full], c.code, &says);
        expect(
            &folder,
            &["restore", &file, "--full", &full, "--to", "out/r.vmdk"],
            c.code,
            &says,
        );
        assert_left_alone(root, &before, c.name, &file, &bytes);
    }
    full_state.assert_unchanged("the hostile deltas");
}

/// The scratch root gained only the case's folder, which holds only the
/// case's file (unchanged) and an empty `out`.
#[track_caller]
fn assert_left_alone(root: &Path, before: &[String], name: &str, file: &str, bytes: &[u8]) {
    let mut expected = before.to_vec();
    expected.push(name.to_string());
    expected.sort();
    assert_eq!(
        listing(root),
        expected,
        "{name}: files appeared in the scratch folder"
    );
    let folder = root.join(name);
    let mut expected = vec![file.to_string(), "out".to_string()];
    expected.sort();
    assert_eq!(
        listing(&folder),
        expected,
        "{name}: files appeared beside the case's file"
    );
    assert!(
        listing(&folder.join("out")).is_empty(),
        "{name}: a failed restore left {:?}",
        listing(&folder.join("out"))
    );
    assert_same_bytes(&fs::read(folder.join(file)).unwrap(), bytes, file);
}

fn byte(at: u64) -> String {
    format!("byte {at}")
}

// ---------------------------------------------------------------------------
// Full images: HEAD, FOOT and record lengths

/// SPEC.md §5 HEAD body fields, §9 FOOT body fields.
const HEAD_BLOCK_SIZE: u64 = 24;
const HEAD_SEGMENT_BLOCKS: u64 = 28;
const HEAD_IMAGE_SIZE: u64 = 32;
const FOOT_DIRECTORY_OFFSET: u64 = 32;
const FOOT_SEGMENT_COUNT: u64 = 40;
const FOOT_FILE_LEN: u64 = 48;

fn full_header_cases(fx: &Small) -> Vec<Case> {
    let m = full_map(&fx.dir.path().join(&fx.full));
    let (head, foot, foot_c) = (m.head, m.foot(), m.foot_container);
    let set_head = move |field: u64, v: u64, wide: bool| {
        move |b: &mut Vec<u8>| {
            let at = FullMap::body(head, field);
            if wide {
                put_u64(b, at, v)
            } else {
                put_u32(b, at, v as u32)
            }
            reseal(b, head);
        }
    };
    let set_foot = move |field: u64, v: u64| {
        move |b: &mut Vec<u8>| {
            put_u64(b, FullMap::body(foot, field), v);
            reseal(b, foot);
        }
    };
    // 2^48 bytes is the largest image the reader accepts: 2^32 blocks of
    // 64 KiB in 4 Mi segments, in a file of a few kilobytes.
    let huge = 1u64 << 48;
    let huge_segments = (huge >> 16).div_ceil(1024);
    vec![
        case(
            "head-image-size-max",
            Stage::Open,
            EXIT_OTHER,
            &["image size is 18446744073709551615, above the limit"],
            set_head(HEAD_IMAGE_SIZE, u64::MAX, true),
        ),
        case(
            "head-image-size-2p48",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(foot_c), &format!("needs {huge_segments}")],
            set_head(HEAD_IMAGE_SIZE, huge, true),
        ),
        case(
            "head-and-foot-claim-2p48",
            Stage::Open,
            EXIT_INTEGRITY,
            &[
                &byte(foot_c),
                "directory offset does not lead to the footer",
            ],
            move |b| {
                set_head(HEAD_IMAGE_SIZE, huge, true)(b);
                set_foot(FOOT_SEGMENT_COUNT, huge_segments)(b);
            },
        ),
        case(
            "head-block-size-zero",
            Stage::Open,
            EXIT_INTEGRITY,
            &["block size 0"],
            set_head(HEAD_BLOCK_SIZE, 0, false),
        ),
        case(
            "head-block-size-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &["block size 4294967295"],
            set_head(HEAD_BLOCK_SIZE, u32::MAX as u64, false),
        ),
        case(
            "head-segment-blocks-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &["segment_blocks 4294967295"],
            set_head(HEAD_SEGMENT_BLOCKS, u32::MAX as u64, false),
        ),
        case(
            "foot-directory-offset-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(foot_c), "directory offset"],
            set_foot(FOOT_DIRECTORY_OFFSET, u64::MAX),
        ),
        case(
            "foot-directory-offset-zero",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(foot_c), "directory offset"],
            set_foot(FOOT_DIRECTORY_OFFSET, 0),
        ),
        case(
            "foot-directory-offset-itself",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(foot_c), "directory offset"],
            set_foot(FOOT_DIRECTORY_OFFSET, foot_c),
        ),
        case(
            "foot-segment-count-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(foot_c), "18446744073709551615 segments"],
            set_foot(FOOT_SEGMENT_COUNT, u64::MAX),
        ),
        case(
            "foot-file-len-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(foot_c), "18446744073709551615 bytes"],
            set_foot(FOOT_FILE_LEN, u64::MAX),
        ),
    ]
}

/// Every record of a full with its body length (gzip) or frame size (zstd)
/// set to 2^32 − 1.
fn full_record_length_cases(fx: &Small) -> Vec<Case> {
    let m = full_map(&fx.dir.path().join(&fx.full));
    let codec = m.codec;
    let records: [(&'static str, u64, Stage); 5] = [
        ("head", 0, Stage::Open),
        ("meta", codec.span_64(), Stage::Open),
        ("indx", m.index_containers[0], Stage::Index),
        ("dirs", m.dirs_container, Stage::Open),
        ("foot", m.foot_container, Stage::Open),
    ];
    records
        .into_iter()
        .map(|(what, container, stage)| {
            let name: &'static str = Box::leak(format!("{what}-length-max").into_boxed_str());
            // The length field a reader meets first (common::length_field_top_byte).
            let field = container + length_field_top_byte(codec.name()) - 3;
            case(name, stage, EXIT_INTEGRITY, &[&byte(container)], move |b| {
                put_u32(b, field, u32::MAX)
            })
        })
        .collect()
}

#[test]
fn full_header_footer_and_record_lengths_lie() {
    for codec in [Codec::Gzip, Codec::Zstd] {
        let fx = small(codec, Codec::Zstd);
        let mut cases = full_header_cases(&fx);
        cases.extend(full_record_length_cases(&fx));
        run_full_cases(&fx, cases);
    }
}

// ---------------------------------------------------------------------------
// Full images: INDX, DIRS, META entries

/// SPEC.md §7 INDX body fields, §7.1 entry fields.
const INDX_DATA_OFFSET: u64 = 8;
const INDX_COUNT: u64 = 16;
const INDX_ENTRIES: u64 = 24;
const ENTRY_LEN: u64 = 40;
const ENTRY_LEN_FLAGS: u64 = 32;
const ENTRY_MEMBER_CRC: u64 = 36;

#[test]
fn full_index_and_directory_offsets_lie() {
    let fx = multi();
    let m = full_map(&fx.dir.path().join(&fx.full));
    assert!(
        m.index_containers.len() >= 3,
        "the fixture has several segments"
    );
    let (i0, i1, dirs, dirs_c) = (m.index(0), m.index(1), m.dirs(), m.dirs_container);
    let (seg0, seg1) = (m.index_containers[0], m.index_containers[1]);
    let data_start = m.data_start;
    let set_dir = move |entry: u64, v: u64| {
        move |b: &mut Vec<u8>| {
            put_u64(b, FullMap::body(dirs, 8 + 8 * entry), v);
            reseal(b, dirs);
        }
    };
    let set_indx = move |rec: u64, field: u64, v: u64, wide: bool| {
        move |b: &mut Vec<u8>| {
            let at = FullMap::body(rec, field);
            if wide {
                put_u64(b, at, v)
            } else {
                put_u32(b, at, v as u32)
            }
            reseal(b, rec);
        }
    };
    let last = m.index_containers.len() as u64 - 1;
    let cases = vec![
        case(
            "dirs-offset-past-the-file",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dirs_c), "DIRS record"],
            set_dir(last, u64::MAX),
        ),
        case(
            "dirs-offsets-equal",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dirs_c), "DIRS record"],
            set_dir(1, seg0),
        ),
        case(
            "dirs-offset-at-the-head",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(0), "HEAD record where a INDX record belongs"],
            set_dir(0, 0),
        ),
        case(
            "dirs-offset-into-a-member",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(data_start + 1)],
            set_dir(0, data_start + 1),
        ),
        case(
            "dirs-offset-into-a-later-member",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg1 - 7)],
            set_dir(0, seg1 - 7),
        ),
        case(
            "dirs-offset-into-an-index",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg0 + 20)],
            set_dir(1, seg0 + 20),
        ),
        case(
            "indx-data-offset-max",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg0), "overflow"],
            set_indx(i0, INDX_DATA_OFFSET, u64::MAX, true),
        ),
        case(
            "indx-data-offset-zero",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg0), "from byte 0"],
            set_indx(i0, INDX_DATA_OFFSET, 0, true),
        ),
        case(
            "indx-data-offset-into-previous-index",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg1)],
            set_indx(i1, INDX_DATA_OFFSET, seg0 + 3, true),
        ),
        case(
            "indx-count-max",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg0), "4294967295 blocks"],
            set_indx(i0, INDX_COUNT, u32::MAX as u64, false),
        ),
        case(
            "indx-member-len-max",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg1), "block 1024", "member length 268435455"],
            set_indx(i1, INDX_ENTRIES + ENTRY_LEN_FLAGS, 0x0fff_ffff, false),
        ),
        case(
            "indx-member-len-max-zero-flag",
            Stage::Index,
            EXIT_INTEGRITY,
            &[&byte(seg0), "block 0"],
            set_indx(i0, INDX_ENTRIES + ENTRY_LEN_FLAGS, u32::MAX as u64, false),
        ),
    ];
    run_full_cases(&fx, cases);
}

#[test]
fn full_metadata_lengths_lie() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    let m = full_map(&fx.dir.path().join(&fx.full));
    let meta = m.meta;
    let meta_c = meta - m.codec.record_in_container();
    let cases = vec![
        case(
            "meta-value-len-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &["META record", "claims 4294967295 bytes"],
            move |b| {
                put_u32(b, meta + RECORD_HEADER + 2, u32::MAX);
                reseal(b, meta);
            },
        ),
        case(
            "meta-value-not-utf8",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(meta_c), "not UTF-8"],
            move |b| {
                let (_, at, _) = meta_entries(b, meta)[0];
                b[at as usize] = 0xff;
                reseal(b, meta);
            },
        ),
        case(
            "meta-key-must-understand",
            Stage::Open,
            EXIT_OTHER,
            &["metadata key 0xffff"],
            move |b| {
                // The last entry (the tool's name) gets the highest key.
                let (_, at, _) = *meta_entries(b, meta).last().unwrap();
                let key_at = (at - 6) as usize;
                b[key_at..key_at + 2].copy_from_slice(&0xffffu16.to_le_bytes());
                reseal(b, meta);
            },
        ),
    ];
    run_full_cases(&fx, cases);
}

// ---------------------------------------------------------------------------
// Members that inflate past their block, in fulls and deltas

/// Replaces the member of the largest non-zero block of a full by `bomb`
/// (same length), with its INDX entry's member CRC fixed.
fn full_bomb_case(fx: &Small, name: &'static str, bomb: fn(usize, usize) -> Vec<u8>) -> Case {
    let m = full_map(&fx.dir.path().join(&fx.full));
    let target = *m
        .members
        .iter()
        .filter(|x| !x.zero)
        .max_by_key(|x| x.len)
        .unwrap();
    let rec = m.index(0);
    let entry = FullMap::body(rec, INDX_ENTRIES + ENTRY_LEN * target.block);
    case(
        name,
        Stage::Data,
        EXIT_INTEGRITY,
        &[&format!("block {}", target.block), &byte(target.offset)],
        move |b| {
            let member = bomb(target.len as usize, 64 << 10);
            let at = target.offset as usize;
            b[at..at + member.len()].copy_from_slice(&member);
            put_u32(b, entry + ENTRY_MEMBER_CRC, crc32(&member));
            reseal(b, rec);
        },
    )
}

#[test]
fn full_members_that_inflate_past_their_block() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    run_full_cases(
        &fx,
        vec![full_bomb_case(&fx, "gzip-member-bomb", gzip_bomb)],
    );
    let fx = small(Codec::Zstd, Codec::Zstd);
    run_full_cases(
        &fx,
        vec![
            full_bomb_case(&fx, "zstd-member-bomb", zstd_bomb),
            full_bomb_case(&fx, "zstd-member-2gib-window", zstd_huge_window),
        ],
    );
}

/// SPEC.md §16 DMAP body fields, §16.1 entry fields.
const DMAP_DATA_START: u64 = 8;
const DMAP_COUNT: u64 = 16;
const DMAP_ENTRIES: u64 = 24;
const CHANGE_LEN: u64 = 64;
const CHANGE_BLOCK: u64 = 0;
const CHANGE_DATA_OFFSET: u64 = 16;
const CHANGE_MEMBER_LEN: u64 = 24;
const CHANGE_MEMBER_CRC: u64 = 28;

/// Replaces the largest DATA member of the delta by `bomb` (same length),
/// with its DMAP entry's member CRC fixed.
fn delta_bomb_case(fx: &Small, name: &'static str, bomb: fn(usize, usize) -> Vec<u8>) -> Case {
    let path = fx.dir.path().join(&fx.delta);
    let l = delta_layout(&path);
    let target = *l
        .members
        .iter()
        .filter(|x| x.kind == archive_format::ChangeKind::Data)
        .max_by_key(|x| x.len)
        .expect("the delta stores whole blocks");
    let bytes = fs::read(&path).unwrap();
    let dm = delta_map(&bytes);
    let dmap = dm.dmaps[0];
    let count = u32_at(&bytes, dmap + RECORD_HEADER + DMAP_COUNT) as u64;
    let entry = (0..count)
        .map(|i| dmap + RECORD_HEADER + DMAP_ENTRIES + CHANGE_LEN * i)
        .find(|&e| u64_at(&bytes, e + CHANGE_BLOCK) == target.block)
        .unwrap();
    case(
        name,
        Stage::Data,
        EXIT_INTEGRITY,
        &[&format!("block {}", target.block), &byte(target.offset)],
        move |b| {
            let member = bomb(target.len as usize, 64 << 10);
            let at = target.offset as usize;
            b[at..at + member.len()].copy_from_slice(&member);
            put_u32(b, entry + CHANGE_MEMBER_CRC, crc32(&member));
            reseal(b, dmap);
        },
    )
}

#[test]
fn delta_members_that_inflate_past_their_block() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    run_delta_cases(
        &fx,
        vec![
            delta_bomb_case(&fx, "zstd-data-bomb", zstd_bomb),
            delta_bomb_case(&fx, "zstd-data-2gib-window", zstd_huge_window),
        ],
    );
    let fx = small(Codec::Gzip, Codec::Gzip);
    run_delta_cases(&fx, vec![delta_bomb_case(&fx, "gzip-data-bomb", gzip_bomb)]);
}

// ---------------------------------------------------------------------------
// Deltas: trailer, DHED, DFOT, META

/// SPEC.md §15 DHED body fields, §18 DFOT body fields.
const DHED_BLOCK_SIZE: u64 = 24;
const DHED_MAP_ENTRIES: u64 = 28;
const DHED_IMAGE_SIZE: u64 = 32;
const DHED_BASE_IMAGE_SIZE: u64 = 40;
const DFOT_DIRECTORY_OFFSET: u64 = 32;
const DFOT_GROUP_COUNT: u64 = 40;
const DFOT_ENTRY_COUNT: u64 = 48;

#[test]
fn delta_trailer_header_and_footer_lie() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let dm = delta_map(&bytes);
    let (t, payload, dhed, dfot, meta) = (dm.trailer, dm.payload, dm.dhed, dm.dfot, dm.meta);
    let payload_len = t - payload;
    let set_trailer = move |offset: u64, len: u64| {
        move |b: &mut Vec<u8>| {
            put_u64(b, t + 8, offset);
            put_u64(b, t + 16, len);
            reseal_trailer(b);
        }
    };
    let set = move |rec: u64, field: u64, v: u64, wide: bool| {
        move |b: &mut Vec<u8>| {
            let at = rec + RECORD_HEADER + field;
            if wide {
                put_u64(b, at, v)
            } else {
                put_u32(b, at, v as u32)
            }
            reseal(b, rec);
        }
    };
    let huge = 1u64 << 48;
    let cases = vec![
        case(
            "trailer-payload-offset-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(t), "archive trailer"],
            set_trailer(u64::MAX, payload_len),
        ),
        case(
            "trailer-payload-len-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(t), "archive trailer"],
            set_trailer(payload, u64::MAX),
        ),
        case(
            "trailer-sum-wraps",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(t), "archive trailer"],
            set_trailer(1 << 63, (1u64 << 63).wrapping_add(t)),
        ),
        case(
            "trailer-payload-over-the-runtime",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(0)],
            set_trailer(0, t),
        ),
        case(
            "trailer-payload-one-byte-late",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(payload + 1)],
            set_trailer(payload + 1, payload_len - 1),
        ),
        case(
            "dhed-image-size-max",
            Stage::Open,
            EXIT_OTHER,
            &["image size is 18446744073709551615, above the limit"],
            set(dhed, DHED_IMAGE_SIZE, u64::MAX, true),
        ),
        case(
            "dhed-base-image-size-max",
            Stage::Open,
            EXIT_OTHER,
            &["image size is 18446744073709551615, above the limit"],
            set(dhed, DHED_BASE_IMAGE_SIZE, u64::MAX, true),
        ),
        // The message blames the full, which is fine: a bug, shown by
        // `delta_lying_about_its_base_size_is_named`.
        case(
            "dhed-base-image-size-2p48",
            Stage::Data,
            EXIT_INTEGRITY,
            &["DHED says its full holds"],
            set(dhed, DHED_BASE_IMAGE_SIZE, huge, true),
        )
        .naming("f.full.gz"),
        case(
            "dhed-block-size-zero",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dhed), "block size 0"],
            set(dhed, DHED_BLOCK_SIZE, 0, false),
        ),
        case(
            "dhed-map-entries-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dhed), "map_entries 4294967295"],
            set(dhed, DHED_MAP_ENTRIES, u32::MAX as u64, false),
        ),
        case(
            "dfot-directory-offset-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dfot), "directory offset"],
            set(dfot, DFOT_DIRECTORY_OFFSET, u64::MAX, true),
        ),
        case(
            "dfot-directory-offset-zero",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dfot), "directory offset"],
            set(dfot, DFOT_DIRECTORY_OFFSET, 0, true),
        ),
        case(
            "dfot-directory-offset-itself",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(dfot), "directory offset"],
            set(dfot, DFOT_DIRECTORY_OFFSET, dfot - payload, true),
        ),
        case(
            "dfot-group-count-max",
            Stage::Open,
            EXIT_OTHER,
            &["delta directory length is 18446744073709551615, above the limit"],
            set(dfot, DFOT_GROUP_COUNT, u64::MAX, true),
        ),
        case(
            "dfot-entry-count-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &["18446744073709551615 changed blocks cannot fit"],
            set(dfot, DFOT_ENTRY_COUNT, u64::MAX, true),
        ),
        case(
            "meta-value-len-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &["META record", "claims 4294967295 bytes"],
            move |b| {
                put_u32(b, meta + RECORD_HEADER + 2, u32::MAX);
                reseal(b, meta);
            },
        ),
    ];
    run_delta_cases(&fx, cases);
}

/// Every record of a delta with its body length set to 2^32 − 1.
#[test]
fn delta_record_lengths_lie() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let dm = delta_map(&bytes);
    // A DMAP record's length is first read to find where the directory
    // must start, so that is the place named.
    let records: [(&'static str, u64, u64, Stage); 5] = [
        ("dhed-length-max", dm.dhed, dm.dhed, Stage::Open),
        ("meta-length-max", dm.meta, dm.meta, Stage::Open),
        ("dmap-length-max", dm.dmaps[0], dm.ddir, Stage::Data),
        ("ddir-length-max", dm.ddir, dm.ddir, Stage::Open),
        ("dfot-length-max", dm.dfot, dm.dfot, Stage::Open),
    ];
    let cases = records
        .into_iter()
        .map(|(name, rec, named, stage)| {
            case(name, stage, EXIT_INTEGRITY, &[&byte(named)], move |b| {
                put_u32(b, rec + 4, u32::MAX)
            })
        })
        .collect();
    run_delta_cases(&fx, cases);
}

#[test]
fn delta_directory_and_change_maps_lie() {
    let fx = multi();
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let dm = delta_map(&bytes);
    assert_eq!(dm.dmaps.len(), 2, "the fixture has two change maps");
    let (payload, ddir, d0, d1) = (dm.payload, dm.ddir, dm.dmaps[0], dm.dmaps[1]);
    let set_dir = move |group: u64, field: u64, v: u64| {
        move |b: &mut Vec<u8>| {
            put_u64(b, ddir + RECORD_HEADER + 8 + 16 * group + field, v);
            reseal(b, ddir);
        }
    };
    let set_map = move |rec: u64, field: u64, v: u64, wide: bool| {
        move |b: &mut Vec<u8>| {
            let at = rec + RECORD_HEADER + field;
            if wide {
                put_u64(b, at, v)
            } else {
                put_u32(b, at, v as u32)
            }
            reseal(b, rec);
        }
    };
    let cases = vec![
        case(
            "ddir-group-count-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(ddir), "group count"],
            move |b| {
                put_u64(b, ddir + RECORD_HEADER, u64::MAX);
                reseal(b, ddir);
            },
        ),
        case(
            "ddir-offset-past-the-file",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(ddir), "DDIR record"],
            set_dir(1, 0, u64::MAX),
        ),
        case(
            "ddir-offsets-equal",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(ddir), "DDIR record"],
            set_dir(1, 0, d0 - payload),
        ),
        case(
            "ddir-first-block-max",
            Stage::Open,
            EXIT_INTEGRITY,
            &[&byte(ddir), "DDIR record"],
            set_dir(1, 8, u64::MAX),
        ),
        case(
            "ddir-offset-at-the-header",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(payload), "DHED record where a DMAP record belongs"],
            set_dir(0, 0, 0),
        ),
        // The last group's record is first read to find where the
        // directory must start: that is the place named.
        case(
            "ddir-offset-into-a-map",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(ddir), "directory does not follow the last change map"],
            set_dir(1, 0, d0 + 40 - payload),
        ),
        case(
            "dmap-count-max",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(d1), "DMAP record 1"],
            set_map(d1, DMAP_COUNT, u32::MAX as u64, false),
        ),
        case(
            "dmap-data-start-zero",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(d0), "DMAP record 0", "start at 0"],
            set_map(d0, DMAP_DATA_START, 0, true),
        ),
        case(
            "dmap-block-max",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(d1), "block 18446744073709551615"],
            set_map(d1, DMAP_ENTRIES + CHANGE_LEN + CHANGE_BLOCK, u64::MAX, true),
        ),
        case(
            "dmap-data-offset-max",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(d0), "block 0"],
            set_map(d0, DMAP_ENTRIES + CHANGE_DATA_OFFSET, u64::MAX, true),
        ),
        case(
            "dmap-member-len-max",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(d0), "block 0"],
            set_map(d0, DMAP_ENTRIES + CHANGE_MEMBER_LEN, u32::MAX as u64, false),
        ),
    ];
    run_delta_cases(&fx, cases);
}

/// A delta whose DHED claims a base of 2^48 bytes, with the base identity
/// of a 2 MiB full: the delta contradicts itself, and the message should
/// say so, naming the delta rather than calling the (sound) full corrupt.
#[test]
fn delta_lying_about_its_base_size_is_named() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let dhed = delta_map(&bytes).dhed;
    run_delta_cases(
        &fx,
        vec![case(
            "dhed-base-image-size-2p48",
            Stage::Data,
            EXIT_INTEGRITY,
            &[],
            move |b| {
                put_u64(b, dhed + RECORD_HEADER + DHED_BASE_IMAGE_SIZE, 1 << 48);
                reseal(b, dhed);
            },
        )],
    );
}

/// DATA entries whose member offset or length points outside the file or
/// into other structures.
#[test]
fn delta_data_entries_lie() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let dm = delta_map(&bytes);
    let d0 = dm.dmaps[0];
    let first = d0 + RECORD_HEADER + DMAP_ENTRIES;
    let second = first + CHANGE_LEN;
    let block_of = |e: u64| u64_at(&bytes, e + CHANGE_BLOCK);
    let (b0, b1) = (block_of(first), block_of(second));
    assert_eq!(bytes[(first + 8) as usize], 1, "the first entry is DATA");
    let set = move |entry: u64, field: u64, v: u64, wide: bool| {
        move |b: &mut Vec<u8>| {
            if wide {
                put_u64(b, entry + field, v)
            } else {
                put_u32(b, entry + field, v as u32)
            }
            reseal(b, d0);
        }
    };
    let says = |block: u64| [byte(d0), format!("block {block}")];
    let cases = vec![
        case(
            "data-offset-max",
            Stage::Data,
            EXIT_INTEGRITY,
            &says(b0).each_ref().map(String::as_str),
            set(first, CHANGE_DATA_OFFSET, u64::MAX, true),
        ),
        case(
            "data-offset-at-the-header",
            Stage::Data,
            EXIT_INTEGRITY,
            &says(b0).each_ref().map(String::as_str),
            set(first, CHANGE_DATA_OFFSET, 0, true),
        ),
        case(
            "data-offset-into-the-map",
            Stage::Data,
            EXIT_INTEGRITY,
            &says(b1).each_ref().map(String::as_str),
            set(second, CHANGE_DATA_OFFSET, d0 - dm.payload, true),
        ),
        case(
            "member-len-max",
            Stage::Data,
            EXIT_INTEGRITY,
            &says(b0).each_ref().map(String::as_str),
            set(first, CHANGE_MEMBER_LEN, u32::MAX as u64, false),
        ),
        case(
            "member-len-past-the-map",
            Stage::Data,
            EXIT_INTEGRITY,
            &[&byte(d0)],
            move |b| {
                // Every length still within its bound, the last member
                // running into the map record.
                let count = u32_at(b, d0 + RECORD_HEADER + DMAP_COUNT) as u64;
                let last = d0 + RECORD_HEADER + DMAP_ENTRIES + CHANGE_LEN * (count - 1);
                let len = u32_at(b, last + CHANGE_MEMBER_LEN);
                put_u32(b, last + CHANGE_MEMBER_LEN, len + 16);
                reseal(b, d0);
            },
        ),
    ];
    run_delta_cases(&fx, cases);
}

/// SPEC.md §16.1: a PATCH entry of a short last block (9000 bytes, three
/// pages) whose mask names a fourth page, past the block's end: refused as
/// corrupt, naming the DMAP record and the block (it once reached
/// `apply_patch` and sliced past the block: a panic).
#[test]
fn delta_patch_mask_past_a_short_last_block() {
    const CHANGE_KIND: u64 = 8;
    const CHANGE_PAGES: u64 = 12;
    const KIND_PATCH: u8 = 3;
    let dir = scratch();
    let d = dir.path();
    let size = (2 << 20) + 9000;
    let mut disk = sample_disk(d, "d.img", size, 4);
    sdar(d, &["full", "d.img", "-o", "f.full.gz", "-q"]).success();
    // Ten bytes of the last block's first page change: a one-page PATCH.
    let last = disk.len() - 8900;
    disk[last..last + 10].copy_from_slice(b"0123456789");
    fs::write(d.join("n.img"), &disk).unwrap();
    sdar(
        d,
        &[
            "delta",
            "n.img",
            "--full",
            "f.full.gz",
            "-o",
            "x.sdar",
            "-q",
        ],
    )
    .success();
    let fx = Small {
        dir,
        full: "f.full.gz".into(),
        delta: "x.sdar".into(),
    };
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let d0 = delta_map(&bytes).dmaps[0];
    let entry = d0 + RECORD_HEADER + DMAP_ENTRIES;
    let block = u64_at(&bytes, entry + CHANGE_BLOCK);
    assert_eq!(block, size / 65536, "the only change is the last block");
    assert_eq!(bytes[(entry + CHANGE_KIND) as usize], KIND_PATCH);
    assert_eq!(u32_at(&bytes, entry + CHANGE_PAGES), 1);
    let cases = vec![case(
        "patch-page-past-the-block",
        Stage::Data,
        EXIT_INTEGRITY,
        &[&byte(d0), &format!("block {block}")],
        move |b| {
            put_u32(b, entry + CHANGE_PAGES, 0b1001);
            reseal(b, d0);
        },
    )];
    run_delta_cases(&fx, cases);
}

/// A delta claiming a 2^48-byte image (2^32 blocks) over a 2 MiB full and
/// 32 changed blocks: no block past 32 can come from anywhere.
fn huge_image_case(fx: &Small) -> Case {
    let bytes = fs::read(fx.dir.path().join(&fx.delta)).unwrap();
    let dhed = delta_map(&bytes).dhed;
    case(
        "dhed-image-size-2p48",
        Stage::Open,
        EXIT_INTEGRITY,
        &[
            &byte(dhed),
            "DHED claims an image of 4294967296 blocks, but its full has 32 and the delta changes 32",
        ],
        move |b| {
            put_u64(b, dhed + RECORD_HEADER + DHED_IMAGE_SIZE, 1 << 48);
            reseal(b, dhed);
        },
    )
}

/// A delta claiming more blocks than its full and its changes hold is
/// refused as corrupt when opened, naming the archive, before any space
/// check or loop over the claimed blocks.
#[test]
fn delta_claiming_a_huge_image_is_refused_as_corrupt() {
    let fx = small(Codec::Gzip, Codec::Zstd);
    let c = huge_image_case(&fx);
    run_delta_cases(&fx, vec![c]);
}

// ---------------------------------------------------------------------------
// Metadata that looks like paths or terminal commands

/// Hostile metadata for one run, and the .vmx name a restore must choose.
struct Names {
    tag: &'static str,
    vm_name: String,
    disk_name: String,
    scsi_id: String,
    base_name: String,
    adapter: String,
    hw_version: String,
    disk_uuid: String,
    /// The .vmx file name, or None when the VM name cannot make one and the
    /// restore falls back (to `restored.vmx`, or the disk's name with
    /// `--rename-disk`).
    vmx_file: Option<String>,
}

fn hostile_names(token: &str) -> Vec<Names> {
    let escape = "\x1b[2J\x1b]0;owned\x07\r\n\u{9b}31m";
    vec![
        Names {
            tag: "traversal",
            vm_name: format!("../../../../../../tmp/{token}-vm"),
            disk_name: format!("../../../../../../tmp/{token}-disk.vmdk"),
            scsi_id: "0:0/../../..".into(),
            base_name: format!("../../../../../../tmp/{token}-base.full.gz"),
            adapter: "../lsilogic".into(),
            hw_version: "../19".into(),
            disk_uuid: "../60 00".into(),
            vmx_file: None,
        },
        Names {
            tag: "absolute",
            vm_name: format!("/tmp/{token}-abs"),
            disk_name: "/etc/passwd".into(),
            scsi_id: "/dev/sda".into(),
            base_name: format!("/tmp/{token}-abs.full.gz"),
            adapter: "/lsilogic".into(),
            hw_version: "/19".into(),
            disk_uuid: "/60 00".into(),
            vmx_file: Some(format!("_tmp_{token}-abs.vmx")),
        },
        Names {
            tag: "control",
            vm_name: format!("a\0b{escape}"),
            disk_name: format!("d\0{escape}.vmdk"),
            scsi_id: format!("0:0{escape}"),
            base_name: format!("f\0{escape}.full.gz"),
            adapter: "lsilogic\"\nddb.evil = \"1".into(),
            hw_version: "19\nddb.evil = 1".into(),
            disk_uuid: "60 00\"\ncreateType=\"evil".into(),
            vmx_file: Some("a_b_[2J_]0;owned____31m.vmx".into()),
        },
        Names {
            tag: "dots",
            vm_name: "..".into(),
            disk_name: "..".into(),
            scsi_id: ".".into(),
            base_name: "..".into(),
            adapter: ".".into(),
            hw_version: ".".into(),
            disk_uuid: ".".into(),
            vmx_file: None,
        },
    ]
}

/// Characters a terminal could take as a command: anything `char::is_control`
/// (C0, DEL, C1) but the line feeds that separate lines.
#[track_caller]
fn assert_no_raw_controls(text: &[u8], what: &str) {
    let text = String::from_utf8_lossy(text);
    if let Some(c) = text.chars().find(|&c| c.is_control() && c != '\n') {
        panic!("{what} printed the raw control character {c:?}:\n{text:?}");
    }
}

/// JSON escapes the C0 controls, ESC among them, and leaves DEL and the C1
/// range as they are (RFC 8259 §7): check only what JSON must escape.
#[track_caller]
fn assert_json_escapes_controls(text: &[u8], what: &str) {
    let text = String::from_utf8_lossy(text);
    if let Some(c) = text.chars().find(|&c| c < ' ' && c != '\n') {
        panic!("{what} printed the raw control character {c:?}:\n{text:?}");
    }
}

/// Makes a full and a delta whose metadata holds placeholders of the right
/// lengths (given on the command line or read from a descriptor), then
/// writes the hostile names over them and reseals the META records.
fn hostile_metadata_files(dir: &Path, n: &Names) -> (String, String) {
    let ph = |c: char, s: &str| c.to_string().repeat(s.len());
    let descriptor = ph('D', &n.disk_name);
    let full = ph('B', &n.base_name);
    sample_disk(dir, "flat.vmdk", 2 << 20, 4);
    fs::write(
        dir.join(&descriptor),
        format!(
            "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n\
             RW 4096 FLAT \"flat.vmdk\" 0\n\
             ddb.adapterType = \"{}\"\nddb.virtualHWVersion = \"{}\"\nddb.uuid = \"{}\"\n",
            ph('A', &n.adapter),
            ph('H', &n.hw_version),
            ph('U', &n.disk_uuid)
        ),
    )
    .unwrap();
    fs::write(dir.join("vm.vmx"), vmx_text("VM", "0:1", "disk.vmdk")).unwrap();
    let (vm, scsi) = (ph('V', &n.vm_name), ph('S', &n.scsi_id));
    let meta = [
        "--vm-name",
        &vm,
        "--scsi-id",
        &scsi,
        "--vmx",
        "vm.vmx",
        "-q",
    ];
    let mut args = vec!["full", &descriptor, "-o", &full];
    args.extend(meta);
    sdar(dir, &args).success();
    let mut args = vec!["delta", &descriptor, "--full", &full, "-o", "x.sdar"];
    args.extend(meta);
    sdar(dir, &args).success();
    fs::remove_file(dir.join(format!("{full}.sdar"))).unwrap();
    let fields = [
        (KEY_VM_NAME, &n.vm_name),
        (KEY_SCSI_ID, &n.scsi_id),
        (KEY_DISK_NAME, &n.disk_name),
        (KEY_ADAPTER, &n.adapter),
        (KEY_HW_VERSION, &n.hw_version),
        (KEY_DISK_UUID, &n.disk_uuid),
    ];
    let path = dir.join(&full);
    let meta_rec = full_map(&path).meta;
    let mut b = fs::read(&path).unwrap();
    for (key, v) in fields {
        set_meta(&mut b, meta_rec, key, v.as_bytes());
    }
    fs::write(&path, b).unwrap();
    let path = dir.join("x.sdar");
    let mut b = fs::read(&path).unwrap();
    let meta_rec = delta_map(&b).meta;
    for (key, v) in fields.into_iter().chain([(KEY_BASE_NAME, &n.base_name)]) {
        set_meta(&mut b, meta_rec, key, v.as_bytes());
    }
    fs::write(&path, b).unwrap();
    (full, "x.sdar".into())
}

/// Names in /tmp that start with `token`: what a path in the metadata
/// would have created.
fn strays(token: &str) -> Vec<String> {
    listing(Path::new("/tmp"))
        .into_iter()
        .filter(|n| n.starts_with(token))
        .collect()
}

#[test]
fn metadata_names_never_become_paths_or_terminal_commands() {
    let token = format!("sdar-hostile-{}", std::process::id());
    for n in hostile_names(&token) {
        let scratch = scratch();
        let root = scratch.path();
        let dir = root.join("work");
        fs::create_dir(&dir).unwrap();
        let (full, delta) = hostile_metadata_files(&dir, &n);
        let changed = fs::read(dir.join("flat.vmdk")).unwrap();
        let before = listing(&dir);

        // info shows the names, with every control character neutralised
        // in text and escaped in JSON.
        for file in [&full, &delta] {
            let out = expect(&dir, &["info", file], EXIT_OK, &[]);
            assert_no_raw_controls(&out.stdout, &format!("{}: sdar info", n.tag));
            let out = expect(&dir, &["info", file, "--json"], EXIT_OK, &[]);
            assert_json_escapes_controls(&out.stdout, &format!("{}: sdar info --json", n.tag));
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{}: info --json is not JSON: {e}", n.tag));
            assert_eq!(doc["meta"]["vm_name"], n.vm_name.as_str(), "{}", n.tag);
            assert_eq!(doc["meta"]["disk_name"], n.disk_name.as_str(), "{}", n.tag);
            assert_eq!(doc["meta"]["scsi_id"], n.scsi_id.as_str(), "{}", n.tag);
        }
        expect(&dir, &["verify", &full], EXIT_OK, &[]);
        expect(&dir, &["verify", &delta, "--full", &full], EXIT_OK, &[]);
        // Found by identity, whatever base_name says.
        expect(&dir, &["verify", &delta], EXIT_OK, &[]);
        assert_eq!(listing(&dir), before, "{}: verify wrote something", n.tag);

        // A restore writes the disk at --to and the .vmx in --vmx DIR, under
        // a neutralised name, and nothing anywhere else; through `sdar
        // restore`, and by running the archive itself.
        let via: [(&str, Vec<&str>); 2] = [
            ("sdar", vec!["restore", &delta]),
            ("archive", vec!["restore"]),
        ];
        for (how, head) in via {
            let out_dir = format!("out-{how}");
            let vmx_dir = format!("vmx-{how}");
            fs::create_dir(dir.join(&out_dir)).unwrap();
            fs::create_dir(dir.join(&vmx_dir)).unwrap();
            let to = format!("{out_dir}/r.vmdk");
            let mut args = head.clone();
            args.extend(["--full", &full, "--to", &to, "--vmx", &vmx_dir]);
            if how == "archive" {
                args.push("--rename-disk");
                expect_program(&dir, &format!("./{delta}"), &args, EXIT_OK, &[]);
            } else {
                expect(&dir, &args, EXIT_OK, &[]);
            }
            assert_eq!(
                listing(&dir.join(&out_dir)),
                ["r-flat.vmdk", "r.vmdk"],
                "{}: {how}: the output folder",
                n.tag
            );
            let fallback = if how == "archive" {
                "r.vmx"
            } else {
                "restored.vmx"
            };
            let vmx_file = n.vmx_file.clone().unwrap_or(fallback.into());
            assert_eq!(
                listing(&dir.join(&vmx_dir)),
                [vmx_file],
                "{}: {how}: the .vmx folder",
                n.tag
            );
            assert_same_bytes(
                &fs::read(dir.join(&out_dir).join("r-flat.vmdk")).unwrap(),
                &changed,
                "the restored disk",
            );
            let descriptor = fs::read_to_string(dir.join(&out_dir).join("r.vmdk")).unwrap();
            assert!(
                !descriptor.contains("evil") && descriptor.matches("createType").count() == 1,
                "{}: {how}: metadata added lines to the descriptor:\n{descriptor}",
                n.tag
            );
            assert_no_raw_controls(descriptor.as_bytes(), "the restored descriptor");
        }
        let mut expected = before.clone();
        expected.extend(["out-archive", "out-sdar", "vmx-archive", "vmx-sdar"].map(String::from));
        expected.sort();
        assert_eq!(
            listing(&dir),
            expected,
            "{}: files appeared beside the archive",
            n.tag
        );
        assert_eq!(
            listing(root),
            ["work"],
            "{}: files appeared in the scratch root",
            n.tag
        );
        assert!(
            strays(&token).is_empty(),
            "{}: {:?} appeared in /tmp",
            n.tag,
            strays(&token)
        );
    }
}

/// A .vmx whose displayName is a path names `sdar full`'s default output
/// in the current folder, with the path neutralised.
#[test]
fn vmx_display_name_never_becomes_an_output_path() {
    let token = format!("sdar-hostile-{}-vmx", std::process::id());
    let scratch = scratch();
    let root = scratch.path();
    let dir = root.join("work");
    fs::create_dir(&dir).unwrap();
    sample_disk(&dir, "disk.img", 1 << 20, 4);
    let name = format!("../../../../../../tmp/{token}\x1b[31m");
    fs::write(dir.join("vm.vmx"), vmx_text(&name, "0:0", "disk.img")).unwrap();
    expect(
        &dir,
        &["full", "disk.img", "--vmx", "vm.vmx", "-q"],
        EXIT_OK,
        &[],
    );
    let made = listing(&dir);
    assert_eq!(made.len(), 4, "{made:?}");
    for n in &made {
        assert!(
            !n.contains('/') && !n.contains('\x1b') && !n.starts_with('.'),
            "{n:?}"
        );
    }
    assert_eq!(listing(root), ["work"]);
    assert!(
        strays(&token).is_empty(),
        "{:?} appeared in /tmp",
        strays(&token)
    );
}

/// NAME_MAX is 255 bytes and a VM name may be 4096: the .vmx name must fit,
/// or the restore must refuse before it writes the disk.
#[test]
fn long_vm_name_still_gives_a_vmx_file() {
    let n = Names {
        tag: "long",
        vm_name: "v".repeat(300),
        disk_name: "disk.vmdk".into(),
        scsi_id: "0:0".into(),
        base_name: "f.full.gz".into(),
        adapter: "lsilogic".into(),
        hw_version: "19".into(),
        disk_uuid: "60 00".into(),
        vmx_file: None,
    };
    let scratch = scratch();
    let dir = scratch.path();
    let (full, delta) = hostile_metadata_files(dir, &n);
    fs::create_dir(dir.join("out")).unwrap();
    fs::create_dir(dir.join("vmx")).unwrap();
    let out = measured(
        dir,
        SDAR,
        &[
            "restore",
            &delta,
            "--full",
            &full,
            "--to",
            "out/r.vmdk",
            "--vmx",
            "vmx",
        ],
    )
    .out;
    match out.code {
        EXIT_OK => assert_eq!(listing(&dir.join("vmx")).len(), 1),
        _ => assert!(
            listing(&dir.join("out")).is_empty(),
            "`{}` exited {} after restoring the disk:\n{}",
            out.what,
            out.code,
            out.stderr
        ),
    }
}

// ---------------------------------------------------------------------------
// VMDK descriptors as `sdar full` sources

/// Writes `text` as `name` in a fresh folder beside `flat.vmdk` (1 MiB),
/// `sub/flat.vmdk`, and `outside-flat.vmdk` one folder up, runs `sdar full
/// name -o x.full.gz`, and checks the exit code, that the message names the
/// descriptor (or the extent, for a problem with the extent) and says
/// `says`, and that nothing was written.
#[track_caller]
fn refused_descriptor(root: &Path, name: &str, text: &[u8], code: i32, says: &[&str]) {
    refused_source(root, name, name, text, code, says)
}

#[track_caller]
fn refused_source(root: &Path, name: &str, named: &str, text: &[u8], code: i32, says: &[&str]) {
    let dir = root.join(name.replace('.', "-"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(name), text).unwrap();
    fs::write(dir.join("flat.vmdk"), vec![7u8; 1 << 20]).unwrap();
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/flat.vmdk"), vec![7u8; 1 << 20]).unwrap();
    let before = listing(&dir);
    let root_before = listing(root);
    let mut all = vec![named.to_string()];
    all.extend(says.iter().map(|s| s.to_string()));
    expect(&dir, &["full", name, "-o", "x.full.gz"], code, &all);
    assert_eq!(listing(&dir), before, "{name}: `sdar full` left files");
    assert_eq!(
        listing(root),
        root_before,
        "{name}: `sdar full` wrote outside"
    );
}

fn descriptor(extents: &str, extra: &str) -> Vec<u8> {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\n\n# Extent description\n{extents}\n\
         # The Disk Data Base\n#DDB\n{extra}"
    )
    .into_bytes()
}

#[test]
fn descriptors_with_paths_sizes_and_counts_that_lie() {
    let scratch = scratch();
    let root = scratch.path();
    fs::write(root.join("outside-flat.vmdk"), vec![7u8; 1 << 20]).unwrap();
    let outside = root.join("outside-flat.vmdk").display().to_string();
    let plain = "must be a plain file name beside the descriptor";
    for (name, extent) in [
        (
            "dotdot.vmdk",
            "RW 2048 FLAT \"../outside-flat.vmdk\" 0".to_string(),
        ),
        ("absolute.vmdk", format!("RW 2048 FLAT \"{outside}\" 0")),
        (
            "subfolder.vmdk",
            "RW 2048 FLAT \"sub/flat.vmdk\" 0".to_string(),
        ),
        (
            "vmfs-dotdot.vmdk",
            "RW 2048 VMFS \"../outside-flat.vmdk\"".to_string(),
        ),
    ] {
        refused_descriptor(root, name, &descriptor(&extent, ""), EXIT_OTHER, &[plain]);
    }
    let max = u64::MAX;
    refused_descriptor(
        root,
        "sectors-max.vmdk",
        &descriptor(&format!("RW {max} FLAT \"flat.vmdk\" 0"), ""),
        EXIT_OTHER,
        &["extent size overflows"],
    );
    refused_descriptor(
        root,
        "offset-max.vmdk",
        &descriptor(&format!("RW 2048 FLAT \"flat.vmdk\" {max}"), ""),
        EXIT_OTHER,
        &["extent offset overflows"],
    );
    refused_source(
        root,
        "sectors-past-the-flat.vmdk",
        "flat.vmdk",
        &descriptor("RW 4294967296 FLAT \"flat.vmdk\" 0", ""),
        EXIT_OTHER,
        &["declares 2199023255552 bytes"],
    );
    refused_descriptor(
        root,
        "sectors-not-a-number.vmdk",
        &descriptor("RW 99999999999999999999999 FLAT \"flat.vmdk\" 0", ""),
        EXIT_OTHER,
        &["line 8", "not a number"],
    );
    // Several extents are joined (#12); the second here runs past its file.
    refused_source(
        root,
        "two-extents.vmdk",
        "flat.vmdk",
        &descriptor(
            "RW 1 FLAT \"flat.vmdk\" 0\nRW 2048 FLAT \"flat.vmdk\" 1",
            "",
        ),
        EXIT_OTHER,
        &["extent 2", "declares 1048576 bytes from byte 512"],
    );
    let many: String = (0..513)
        .map(|i| format!("RW 1 FLAT \"flat.vmdk\" {i}\n"))
        .collect();
    refused_descriptor(
        root,
        "513-extents.vmdk",
        &descriptor(&many, ""),
        EXIT_OTHER,
        &["more than 512 extents"],
    );
    let lines = "#\n".repeat(2000);
    refused_descriptor(
        root,
        "2000-lines.vmdk",
        &descriptor("RW 2048 FLAT \"flat.vmdk\" 0", &lines),
        EXIT_OTHER,
        &["more than 1024 lines"],
    );
    refused_descriptor(
        root,
        "nul.vmdk",
        &descriptor("RW 2048 FLAT \"flat.vmdk\" 0", "ddb.uuid = \"60\0\"\n"),
        EXIT_OTHER,
        &["NUL byte"],
    );
    let mut bad = descriptor("RW 2048 FLAT \"flat.vmdk\" 0", "ddb.uuid = \"");
    bad.extend_from_slice(b"\xff\xfe\"\n");
    refused_descriptor(root, "not-utf8.vmdk", &bad, EXIT_OTHER, &["not UTF-8"]);
}

/// A 60 KB line under the descriptor size limit is fine when sdar has no
/// use for it: the full holds the extent's bytes.
#[test]
fn descriptor_with_a_long_line_reads_only_its_extent() {
    let scratch = scratch();
    let dir = scratch.path();
    sample_disk(dir, "flat.vmdk", 1 << 20, 4);
    let long = format!("ddb.comment = \"{}\"\n", "A".repeat(60_000));
    fs::write(
        dir.join("long.vmdk"),
        descriptor("RW 2048 FLAT \"flat.vmdk\" 0", &long),
    )
    .unwrap();
    expect(
        dir,
        &["full", "long.vmdk", "-o", "x.full.gz", "-q"],
        EXIT_OK,
        &[],
    );
    assert_eq!(
        listing(dir),
        ["flat.vmdk", "long.vmdk", "x.full.gz", "x.sdar"]
    );
    let out = sdar(dir, &["info", "x.full.gz", "--json"]).success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["image_size"], 1 << 20);
}

/// The descriptors the issue names: a 100 MB line, 100,000 extents, and a
/// disk UUID of 60 KB (under the 64 KiB descriptor limit). Whatever sdar
/// makes of them, it must not panic, must stay in bounded memory, and may
/// write only its `-o` output and the delta beside it, holding at most the
/// descriptor's own bytes. The stricter expectation (a refusal naming the
/// file) is in `descriptor_over_64_kib_is_refused` and
/// `descriptor_value_over_4096_bytes_names_the_descriptor`, ignored as bugs.
#[test]
fn oversized_descriptors_stay_bounded() {
    let scratch = scratch();
    let root = scratch.path();
    for (name, size) in oversized_descriptors(root) {
        let dir = root.join(name.replace('.', "-"));
        let before = listing(&dir);
        let out = measured(&dir, SDAR, &["full", name, "-o", "x.full.gz", "-q"]).out;
        match out.code {
            EXIT_OK => {
                let mut expected = before.clone();
                expected.extend(["x.full.gz".to_string(), "x.sdar".to_string()]);
                expected.sort();
                assert_eq!(listing(&dir), expected, "{name}");
                let info = sdar(&dir, &["info", "x.full.gz", "--json"]).success();
                let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
                // Read as a raw image: its own bytes, never the extents it names.
                assert_eq!(doc["image_size"], size, "{name}");
            }
            _ => assert_eq!(listing(&dir), before, "{name}: a refusal left files"),
        }
    }
}

/// Writes the oversized descriptors, each in a folder of its own beside a
/// 1 MiB `flat.vmdk`; returns their names and sizes.
fn oversized_descriptors(root: &Path) -> Vec<(&'static str, u64)> {
    let mut made = Vec::new();
    let mut put = |name: &'static str, write: &dyn Fn(&mut dyn Write)| {
        let dir = root.join(name.replace('.', "-"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("flat.vmdk"), vec![7u8; 1 << 20]).unwrap();
        let mut f = std::io::BufWriter::new(fs::File::create(dir.join(name)).unwrap());
        write(&mut f);
        f.flush().unwrap();
        made.push((name, fs::metadata(dir.join(name)).unwrap().len()));
    };
    put("100mb-line.vmdk", &|f| {
        f.write_all(&descriptor(
            "RW 2048 FLAT \"flat.vmdk\" 0",
            "ddb.comment = \"",
        ))
        .unwrap();
        let chunk = vec![b'A'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"\n").unwrap();
    });
    put("100k-extents.vmdk", &|f| {
        f.write_all(&descriptor("", "")).unwrap();
        for i in 0..100_000 {
            writeln!(f, "RW 1 FLAT \"flat.vmdk\" {i}").unwrap();
        }
    });
    put("60kb-uuid.vmdk", &|f| {
        let uuid = format!("ddb.uuid = \"{}\"\n", "6".repeat(60_000));
        f.write_all(&descriptor("RW 2048 FLAT \"flat.vmdk\" 0", &uuid))
            .unwrap();
    });
    made
}

/// What `oversized_descriptors_stay_bounded` cannot ask of today's sdar: a
/// refusal with exit code 3 that names the descriptor, leaving no file.
#[track_caller]
fn assert_descriptor_refused(name: &str) {
    let scratch = scratch();
    let root = scratch.path();
    oversized_descriptors(root);
    let dir = root.join(name.replace('.', "-"));
    let before = listing(&dir);
    expect(
        &dir,
        &["full", name, "-o", "x.full.gz", "-q"],
        EXIT_OTHER,
        &[name.to_string()],
    );
    assert_eq!(listing(&dir), before, "{name}: a refusal left files");
}

#[test]
fn descriptor_over_64_kib_is_refused() {
    assert_descriptor_refused("100mb-line.vmdk");
    assert_descriptor_refused("100k-extents.vmdk");
}

#[test]
fn descriptor_value_over_4096_bytes_names_the_descriptor() {
    assert_descriptor_refused("60kb-uuid.vmdk");
}

// ---------------------------------------------------------------------------
// Memory on a real-sized disk, and on a disk of a constant byte

/// A disk whose blocks all hold one non-zero byte compresses about 500:1,
/// so a restore that batches blocks by their stored size holds hundreds of
/// megabytes of decompressed blocks at once.
#[test]
fn constant_byte_disk_restores_in_bounded_memory() {
    let scratch = scratch();
    let dir = scratch.path();
    let mut f = std::io::BufWriter::new(fs::File::create(dir.join("ones.img")).unwrap());
    let chunk = vec![1u8; 1 << 20];
    for _ in 0..256 {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    expect(
        dir,
        &["full", "ones.img", "-o", "o.full.gz", "-q"],
        EXIT_OK,
        &[],
    );
    expect(dir, &["verify", "o.full.gz", "-q"], EXIT_OK, &[]);
    expect(
        dir,
        &["verify", "o.sdar", "--full", "o.full.gz", "-q"],
        EXIT_OK,
        &[],
    );
    fs::create_dir(dir.join("out")).unwrap();
    expect(
        dir,
        &[
            "restore",
            "o.sdar",
            "--full",
            "o.full.gz",
            "--to",
            "out/o.vmdk",
            "-q",
        ],
        EXIT_OK,
        &[],
    );
}

/// The same through a delta: a 1 MiB full, and a delta of a few megabytes
/// whose 4096 changed blocks (256 MiB) each hold one repeated byte.
#[test]
fn small_delta_of_constant_blocks_verifies_in_bounded_memory() {
    let scratch = scratch();
    let dir = scratch.path();
    sample_disk(dir, "small.img", 1 << 20, 4);
    sdar(dir, &["full", "small.img", "-o", "s.full.gz", "-q"]).success();
    let mut f = std::io::BufWriter::new(fs::File::create(dir.join("ones.img")).unwrap());
    let chunk = vec![1u8; 1 << 20];
    for _ in 0..256 {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let delta = [
        "delta",
        "ones.img",
        "--full",
        "s.full.gz",
        "-o",
        "ones.sdar",
        "--index-only",
        "-q",
    ];
    sdar(dir, &delta).success();
    fs::remove_file(dir.join("ones.img")).unwrap();
    expect(
        dir,
        &["verify", "ones.sdar", "--full", "s.full.gz", "-q"],
        EXIT_OK,
        &[],
    );
    fs::create_dir(dir.join("out")).unwrap();
    expect(
        dir,
        &[
            "restore",
            "ones.sdar",
            "--full",
            "s.full.gz",
            "--to",
            "out/o.vmdk",
            "-q",
        ],
        EXIT_OK,
        &[],
    );
}

/// 4 GiB, mostly holes with sample data at three places: its full, a delta
/// after a 3% change, then verify and restore of both, each under
/// /usr/bin/time -v with its peak resident set printed and bounded.
#[test]
#[ignore = "4 GiB of disk and minutes: cargo test --release -p sdar --test hostile -- --ignored --nocapture four_gib"]
fn four_gib_disk_verifies_and_restores_in_bounded_memory() {
    assert!(
        time_available(),
        "this test measures memory: install `time`"
    );
    let scratch = scratch();
    let dir = scratch.path();
    const GIB: u64 = 1 << 30;
    write_sample_disk(dir, "part.img", 256 << 20, 1);
    {
        let part = fs::read(dir.join("part.img")).unwrap();
        let disk = fs::File::create(dir.join("disk.img")).unwrap();
        disk.set_len(4 * GIB).unwrap();
        use std::os::unix::fs::FileExt;
        for at in [0, GIB + (123 << 12), 3 * GIB + (77 << 16)] {
            disk.write_all_at(&part, at).unwrap();
        }
        fs::remove_file(dir.join("part.img")).unwrap();
    }
    let mut rows = Vec::new();
    let mut step = |what: &str, args: &[&str]| {
        let started = std::time::Instant::now();
        let m = measured(dir, SDAR, args);
        m.out.success();
        rows.push((
            what.to_string(),
            m.peak_kib.unwrap(),
            started.elapsed().as_secs_f64(),
        ));
    };
    step(
        "full (gzip)",
        &["full", "disk.img", "-o", "d.full.gz", "-q"],
    );
    sdar(dir, &["sample-change", "disk.img", "--percent", "3"]).success();
    step(
        "delta",
        &[
            "delta",
            "disk.img",
            "--full",
            "d.full.gz",
            "-o",
            "d1.sdar",
            "-q",
        ],
    );
    step("verify full", &["verify", "d.full.gz", "-q"]);
    step(
        "verify delta",
        &["verify", "d1.sdar", "--full", "d.full.gz", "-q"],
    );
    fs::create_dir(dir.join("out")).unwrap();
    step(
        "restore delta",
        &[
            "restore",
            "d1.sdar",
            "--full",
            "d.full.gz",
            "--to",
            "out/d1.vmdk",
            "-q",
        ],
    );
    assert_files_equal(&dir.join("out/d1-flat.vmdk"), &dir.join("disk.img"));
    fs::remove_file(dir.join("out/d1-flat.vmdk")).unwrap();
    step(
        "restore full (its empty delta)",
        &[
            "restore",
            "d.sdar",
            "--full",
            "d.full.gz",
            "--to",
            "out/d.vmdk",
            "-q",
        ],
    );
    eprintln!("\n| 4 GiB disk | peak RSS | time |\n|---|---:|---:|");
    for (what, kib, secs) in &rows {
        eprintln!("| {what} | {:.1} MiB | {secs:.1} s |", *kib as f64 / 1024.0);
    }
}

/// Compares two large files a chunk at a time.
#[track_caller]
fn assert_files_equal(a: &Path, b: &Path) {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    let (mut ba, mut bb) = (vec![0u8; 4 << 20], vec![0u8; 4 << 20]);
    let mut at = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba);
        let m = read_full(&mut fb, &mut bb);
        assert_eq!(n, m);
        if n == 0 {
            break;
        }
        assert_same_bytes(&ba[..n], &bb[..n], &format!("bytes from {at}"));
        at += n as u64;
    }
    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
        let mut got = 0;
        while got < buf.len() {
            match f.read(&mut buf[got..]).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        got
    }
}

#[test]
fn crc32_is_the_gzip_crc() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}
