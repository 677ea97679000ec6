//! What every end-to-end test needs: the built `sdar`, a scratch folder,
//! seeded sample disks with hand-written VMDK descriptors, stock tools that
//! must be installed (never silently skipped), and ways to damage a file at
//! a chosen block.
//!
//! Kept as `common/mod.rs`, the usual place for code shared by integration
//! tests, so that nobody mistakes it for a test target of its own.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

pub mod pty;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

pub const SDAR: &str = env!("CARGO_BIN_EXE_sdar");

/// Exit codes documented in `sdar --help`.
pub const EXIT_OK: i32 = 0;
pub const EXIT_INTEGRITY: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_OTHER: i32 = 3;

/// A fresh folder, removed when the test ends.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sdar-e2e.")
        .tempdir()
        .expect("cannot create a scratch folder")
}

/// What a finished command left behind.
pub struct Outcome {
    /// The command line, for failure messages.
    pub what: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics, showing stderr, unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            code,
            "`{}` exited with {} instead of {code}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code,
            self.stdout_text(),
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(self) -> Self {
        self.expect_code(EXIT_OK)
    }
}

/// Runs `program args` in `dir` and waits for it.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    run_command(format!("{} {}", program, args.join(" ")), &mut cmd)
}

/// Runs a prepared command (program, arguments, folder, environment,
/// stdin) and waits for it; `what` is the command line for messages.
pub fn run_command(what: String, cmd: &mut Command) -> Outcome {
    // A program this test process just wrote (a damaged copy of an archive)
    // can be briefly "busy" (ETXTBSY) while a child forked by another test
    // thread still holds the writing descriptor: wait and try again.
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    let out = loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.unwrap_or_else(|e| panic!("cannot run `{what}`: {e}")),
        }
    };
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("`{what}` was killed by a signal ({})", out.status));
    Outcome {
        what,
        code,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the built `sdar` in `dir`.
pub fn sdar(dir: &Path, args: &[&str]) -> Outcome {
    let mut out = run_in(dir, SDAR, args);
    out.what = format!("sdar {}", args.join(" "));
    out
}

/// Fails the test with a clear message when `name` is not on the PATH:
/// CI installs every tool these tests use, so a missing one is a broken
/// machine, not a reason to pass.
#[track_caller]
pub fn require_tool(name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    assert!(
        found,
        "`{name}` is not installed (not found on PATH); these tests need it: \
         install it (Debian/Ubuntu: apt-get install gzip pigz zstd)"
    );
}

/// Runs a stock tool in `dir`, after checking that it is installed.
#[track_caller]
pub fn stock(dir: &Path, tool: &str, args: &[&str]) -> Outcome {
    require_tool(tool);
    run_in(dir, tool, args)
}

/// Writes `sdar sample-disk` output of `size` bytes for `seed` to `dir/name`
/// and returns the bytes.
pub fn sample_disk(dir: &Path, name: &str, size: u64, seed: u64) -> Vec<u8> {
    write_sample_disk(dir, name, size, seed);
    let bytes = fs::read(dir.join(name)).expect("cannot read the sample disk");
    assert_eq!(bytes.len() as u64, size, "sample-disk wrote the wrong size");
    bytes
}

/// Writes `sdar sample-disk` output of `size` bytes for `seed` to
/// `dir/name`, without reading it back (for disks of gigabytes).
pub fn write_sample_disk(dir: &Path, name: &str, size: u64, seed: u64) {
    sdar(
        dir,
        &[
            "sample-disk",
            name,
            "--size",
            &size.to_string(),
            "--seed",
            &seed.to_string(),
        ],
    )
    .success();
}

/// The two descriptor layouts `sdar full` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// createType "monolithicFlat", extent `RW n FLAT "file" offset`.
    MonolithicFlat,
    /// createType "vmfs", extent `RW n VMFS "file"`, as on an ESXi datastore.
    Vmfs,
}

/// What the hand-written descriptors say about the disk, so tests can check
/// that `sdar info` reports exactly this.
pub const ADAPTER: &str = "lsilogic";
pub const HEADS: u32 = 64;
pub const TRACK_SECTORS: u32 = 32;
pub const DISK_UUID: &str = "60 00 c2 9b 5e 1d 4a 21-9f 3c 8a 77 10 42 d3 e5";
pub const HW_VERSION: &str = "19";

/// Cylinders as VMware writes them for small disks (64 heads, 32 sectors).
pub fn cylinders(sectors: u64) -> u32 {
    (sectors / (HEADS as u64 * TRACK_SECTORS as u64)).max(1) as u32
}

/// A VMDK descriptor declaring `sectors` sectors of `flat`, starting at
/// sector `offset` (monolithicFlat only; vmfs extents have no offset).
pub fn descriptor_text(kind: DescriptorKind, sectors: u64, flat: &str, offset: u64) -> String {
    descriptor_text_with_adapter(kind, sectors, flat, offset, ADAPTER)
}

/// `descriptor_text` with another `ddb.adapterType`, such as `buslogic`,
/// to tell a value carried from the source from a default.
pub fn descriptor_text_with_adapter(
    kind: DescriptorKind,
    sectors: u64,
    flat: &str,
    offset: u64,
    adapter: &str,
) -> String {
    let (create_type, extent) = match kind {
        DescriptorKind::MonolithicFlat => (
            "monolithicFlat",
            format!("RW {sectors} FLAT \"{flat}\" {offset}"),
        ),
        DescriptorKind::Vmfs => {
            assert_eq!(offset, 0, "vmfs extents have no offset");
            ("vmfs", format!("RW {sectors} VMFS \"{flat}\""))
        }
    };
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID=fffffffe\n\
         parentCID=ffffffff\n\
         createType=\"{create_type}\"\n\
         \n\
         # Extent description\n\
         {extent}\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"{adapter}\"\n\
         ddb.geometry.cylinders = \"{}\"\n\
         ddb.geometry.heads = \"{HEADS}\"\n\
         ddb.geometry.sectors = \"{TRACK_SECTORS}\"\n\
         ddb.longContentID = \"8f1a1b2c3d4e5f60718293a4fffffffe\"\n\
         ddb.uuid = \"{DISK_UUID}\"\n\
         ddb.virtualHWVersion = \"{HW_VERSION}\"\n",
        cylinders(sectors)
    )
}

/// A VMDK made of a descriptor and its flat extent in one folder.
pub struct Vmdk {
    /// The descriptor's file name, such as `crm.vmdk`.
    pub descriptor: String,
    /// The flat extent's file name, such as `crm-flat.vmdk`.
    pub flat: String,
    /// The disk's bytes: exactly what a restore must give back.
    pub disk: Vec<u8>,
}

/// Writes `name.vmdk` and `name-flat.vmdk` holding a seeded sample disk of
/// `sectors` sectors.
pub fn sample_vmdk(dir: &Path, name: &str, kind: DescriptorKind, sectors: u64, seed: u64) -> Vmdk {
    let descriptor = format!("{name}.vmdk");
    let flat = format!("{name}-flat.vmdk");
    let disk = sample_disk(dir, &flat, sectors * 512, seed);
    fs::write(
        dir.join(&descriptor),
        descriptor_text(kind, sectors, &flat, 0),
    )
    .unwrap();
    Vmdk {
        descriptor,
        flat,
        disk,
    }
}

/// What the hand-written .vmx says about the VM.
pub const VM_UUID: &str = "56 4d 9a 3c 11 22 33 44-55 66 77 88 99 aa bb cc";

/// A .vmx for a VM named `display_name` whose SCSI slot `slot` (such as
/// `0:1`) holds `disk` given by its datastore path, with a system disk in 0:0.
pub fn vmx_text(display_name: &str, slot: &str, disk: &str) -> String {
    format!(
        ".encoding = \"UTF-8\"\n\
         config.version = \"8\"\n\
         virtualHW.version = \"{HW_VERSION}\"\n\
         displayName = \"{display_name}\"\n\
         uuid.bios = \"{VM_UUID}\"\n\
         scsi0.present = \"TRUE\"\n\
         scsi0.virtualDev = \"{ADAPTER}\"\n\
         scsi0:0.present = \"TRUE\"\n\
         scsi0:0.fileName = \"system.vmdk\"\n\
         scsi{slot}.present = \"TRUE\"\n\
         scsi{slot}.fileName = \"/vmfs/volumes/datastore1/{display_name}/{disk}\"\n"
    )
}

/// The hex identity from `sdar full` or `sdar verify` output.
#[track_caller]
pub fn printed_identity(stdout: &str) -> String {
    let id = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("identity "))
        .unwrap_or_else(|| panic!("no identity line in:\n{stdout}"))
        .trim()
        .to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "identity `{id}` is not 32 bytes of hex"
    );
    id
}

/// Blocks of `block_size` in `disk` that hold only zeros (the last may be short).
pub fn zero_blocks(disk: &[u8], block_size: usize) -> u64 {
    disk.chunks(block_size)
        .filter(|c| c.iter().all(|&b| b == 0))
        .count() as u64
}

/// A file's bytes and modification time, to prove a command left it alone.
pub struct FileState {
    path: PathBuf,
    bytes: Vec<u8>,
    modified: SystemTime,
}

/// Starts watching `path`: sets its modification time to 2001, so that a
/// later write shows whatever the filesystem's time granularity, and keeps
/// its bytes.
pub fn watch(path: &Path) -> FileState {
    let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(old))
        .unwrap_or_else(|e| panic!("cannot set the time of {}: {e}", path.display()));
    read_state(path)
}

fn read_state(path: &Path) -> FileState {
    FileState {
        path: path.to_path_buf(),
        bytes: fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        modified: fs::metadata(path).unwrap().modified().unwrap(),
    }
}

impl FileState {
    /// Panics unless the file still has the same bytes and modification time.
    #[track_caller]
    pub fn assert_unchanged(&self, after: &str) {
        let now = read_state(&self.path);
        if let Some(at) = first_difference(&self.bytes, &now.bytes) {
            panic!(
                "{} changed after {after}: {} bytes before, {} after, first difference at byte {at}",
                self.path.display(),
                self.bytes.len(),
                now.bytes.len()
            );
        }
        assert_eq!(
            self.modified,
            now.modified,
            "{}: modification time changed after {after}",
            self.path.display()
        );
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// Asserts `actual == expected` without printing megabytes when they differ.
#[track_caller]
pub fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if let Some(at) = first_difference(actual, expected) {
        panic!(
            "{what}: {} bytes, expected {}; first difference at byte {at}",
            actual.len(),
            expected.len()
        );
    }
}

/// The names in `dir`, sorted: to prove a command left no file behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Inverts every bit of the byte at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    let at = usize::try_from(offset).unwrap();
    assert!(
        at < bytes.len(),
        "byte {offset} is past the end of {}",
        path.display()
    );
    bytes[at] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

/// Inverts bit `bit` (0 = least significant) of the byte at `offset`.
pub fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    let at = usize::try_from(offset).unwrap();
    assert!(
        at < bytes.len(),
        "byte {offset} is past the end of {}",
        path.display()
    );
    bytes[at] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

/// Cuts `path` to its first `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Where one block's compressed member lies in a full image.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub block: u64,
    pub offset: u64,
    pub len: u64,
    pub zero: bool,
}

/// How a full image is laid out, read with the library so that damage can
/// be aimed at one block, one index record or the footer.
pub struct Layout {
    pub members: Vec<Member>,
    /// File offset of each segment's INDX record.
    pub index_records: Vec<u64>,
    /// Where block data begins (after HEAD and META).
    pub data_start: u64,
    /// File offset of the DIRS record.
    pub directory: u64,
    pub file_len: u64,
}

pub fn layout(path: &Path) -> Layout {
    use archive_format::{FullImage, Limits};
    let file = fs::File::open(path).unwrap();
    let image = FullImage::open(file, path, &Limits::default())
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut members = Vec::new();
    let mut index_records = Vec::new();
    let per_segment = image.header().segment_blocks as u64;
    for s in 0..image.segment_count() {
        let seg = image.index_segment(s).unwrap();
        for (i, e) in seg.entries.iter().enumerate() {
            members.push(Member {
                block: s * per_segment + i as u64,
                offset: seg.member_offset(i),
                len: e.member_len as u64,
                zero: e.zero,
            });
        }
        index_records.push(seg.data_end());
    }
    Layout {
        members,
        index_records,
        data_start: image.data_start(),
        directory: image.footer().directory_offset,
        file_len: image.file_len(),
    }
}

/// Bytes a record with a body of `body_len` takes in its container: the
/// 16-byte record header (SPEC.md §4 "Record") inside a gzip member with a
/// 16-byte head and a 10-byte empty-deflate suffix (§4.2), or a zstd
/// skippable frame with an 8-byte head (§4.3).
pub fn record_span(codec: &str, body_len: u64) -> u64 {
    match codec {
        "gzip" => 16 + 16 + body_len + 10,
        "zstd" => 8 + 16 + body_len,
        _ => panic!("unknown codec {codec}"),
    }
}

/// Offset, from a record's first byte, of the most significant byte of the
/// first length field a reader meets: the record's `body_len` in gzip
/// (after the member head and the tag), the frame size in zstd.
pub fn length_field_top_byte(codec: &str) -> u64 {
    match codec {
        "gzip" => 16 + 4 + 3,
        "zstd" => 4 + 3,
        _ => panic!("unknown codec {codec}"),
    }
}

/// The number right after `word ` in `text`, such as 17 for `block 17:`.
pub fn number_after(text: &str, word: &str) -> Option<u64> {
    let pattern = format!("{word} ");
    text.match_indices(&pattern).find_map(|(at, _)| {
        let rest = &text[at + pattern.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Seconds since the Unix epoch for a `YYYYMMDDTHHMMSSZ` stamp, counted
/// day by day rather than with the formula `sdar` uses, so the two check
/// each other. None when the text is not such a stamp.
pub fn stamp_to_unix(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = stamp.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_len = |y: i64, m: i64| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > month_len(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut days = 0;
    for y in 1970..year {
        days += if leap(y) { 366 } else { 365 };
    }
    for m in 1..month {
        days += month_len(year, m);
    }
    days += day - 1;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One changed block's stored member in a delta archive.
#[derive(Clone, Copy, Debug)]
pub struct DeltaMember {
    pub block: u64,
    pub kind: archive_format::ChangeKind,
    /// File offset of the member (0 and `len` 0 for zero blocks).
    pub offset: u64,
    pub len: u64,
}

/// How a delta archive is laid out, read with the library so that damage
/// can be aimed at one changed block.
pub struct DeltaLayout {
    pub members: Vec<DeltaMember>,
    /// Where the payload starts (the runtime's length).
    pub payload_offset: u64,
    pub file_len: u64,
}

pub fn delta_layout(path: &Path) -> DeltaLayout {
    use archive_format::{DeltaArchive, Limits};
    let file = fs::File::open(path).unwrap();
    let delta = DeltaArchive::open(file, path, &Limits::default())
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut members = Vec::new();
    for g in 0..delta.group_count() {
        for e in delta.group(g).unwrap() {
            members.push(DeltaMember {
                block: e.block,
                kind: e.kind,
                offset: if e.member_len == 0 {
                    0
                } else {
                    delta.member_file_offset(&e)
                },
                len: e.member_len as u64,
            });
        }
    }
    DeltaLayout {
        members,
        payload_offset: delta.trailer().payload_offset,
        file_len: delta.file_len(),
    }
}

/// xorshift64: the same seed gives the same bytes on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// The restore mark's name for a restore to `dest` (SPEC.md §19.1).
pub fn restore_mark_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap().to_string_lossy();
    dest.with_file_name(format!(".{name}.sdar-restore"))
}

/// Leaves the restore mark (SPEC.md §19.1) that an sdar restore of the
/// image of `delta` to `dest` writes for its data file `data`: what
/// `--resume` needs before it takes a file over. `renamed` is the stage of
/// a restore that died between renaming its extent and its descriptor.
/// Encoded here from the spec's table, not by the library.
pub fn plant_restore_mark(delta: &Path, dest: &Path, vmdk: bool, data: &Path, renamed: bool) {
    let archive = archive_format::DeltaArchive::open(
        fs::File::open(delta).unwrap(),
        delta,
        &archive_format::Limits::default(),
    )
    .unwrap();
    let (identity, size) = (archive.identity(), archive.header().image_size);
    write_restore_mark(dest, vmdk, &identity, size, data, renamed);
}

/// A restore mark with the given fields (SPEC.md §19.1 "Restore mark").
pub fn write_restore_mark(
    dest: &Path,
    vmdk: bool,
    identity: &[u8; 32],
    image_size: u64,
    data: &Path,
    renamed: bool,
) {
    use std::os::unix::fs::MetadataExt;
    let mut b = Vec::new();
    b.extend_from_slice(b"\x89SDARMK\n");
    b.extend_from_slice(&1u16.to_le_bytes());
    b.push(vmdk as u8);
    b.push(if renamed { 2 } else { 1 });
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(identity);
    b.extend_from_slice(&image_size.to_le_bytes());
    b.extend_from_slice(&fs::metadata(data).unwrap().ino().to_le_bytes());
    let crc = crc32(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(b.len(), 68);
    fs::write(restore_mark_path(dest), b).unwrap();
}

/// CRC-32 as gzip computes it, bit by bit: tests compute checksums
/// themselves rather than trust the code under test.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A loop device attached to a file (root only), detached when dropped.
/// Tests that need one say `NOT RUN: <why>` and return when `attach`
/// answers `Err`.
pub struct LoopDevice {
    dev: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` to a free loop device; `Err` says why it cannot.
    pub fn attach(backing: &Path) -> Result<LoopDevice, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(backing)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup -f --show failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(LoopDevice {
            dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        })
    }

    /// A loop device of `len` bytes, every byte 0xff (so that zeros written
    /// to it show).
    pub fn filled(backing: &Path, len: usize) -> Result<LoopDevice, String> {
        fs::write(backing, vec![0xffu8; len]).unwrap();
        LoopDevice::attach(backing)
    }

    /// The device node, such as `/dev/loop3`.
    pub fn dev(&self) -> &Path {
        &self.dev
    }

    pub fn path(&self) -> &str {
        self.dev.to_str().unwrap()
    }

    /// Reads the device's first `len` bytes through the device itself.
    pub fn read(&self, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        fs::File::open(&self.dev)
            .unwrap()
            .read_exact_at(&mut buf, 0)
            .unwrap();
        buf
    }

    /// Writes `bytes` at `offset` through the device, synced.
    pub fn write(&self, bytes: &[u8], offset: u64) {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&self.dev).unwrap();
        f.write_all_at(bytes, offset).unwrap();
        f.sync_all().unwrap();
    }

    #[track_caller]
    pub fn assert_still_a_device(&self, after: &str) {
        use std::os::unix::fs::FileTypeExt;
        let meta = fs::symlink_metadata(&self.dev).unwrap();
        assert!(
            meta.file_type().is_block_device(),
            "{} is no longer a block device after `{after}`",
            self.dev.display()
        );
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}
