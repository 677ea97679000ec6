//! Campaigns: many seeded damaged inputs, and many processes killed at
//! random moments, each ending with a tally line on standard error
//! (shown with `--nocapture`) and failing on any bad count.
//!
//! * `corruption_campaign`: single-bit flips, truncations (at every section
//!   boundary ±1 and at random points) and zeroed 4 KiB pages, each in a
//!   copy of a full image or of a delta archive, for two pairs: a gzip full
//!   of 64 KiB blocks with a zstd delta holding DATA, ZERO and PATCH
//!   blocks, and a zstd full of 4 KiB blocks in two segments with a gzip
//!   delta. In a delta every other damage lands in the payload: the rest
//!   of the file is the runtime, which `sdar verify` and `sdar restore
//!   X.sdar` carry but never run (nor do these tests). Every damaged input
//!   goes through `sdar verify` and `sdar restore`, each killed after 20 s
//!   (a hang). A restore must fail (exit 1, or 3 for an unreadable file)
//!   leaving no disk, or give the disk byte for byte; never panic, hang,
//!   change its inputs, or fail after `sdar verify` passed.
//!   `SDAR_CAMPAIGN_FLIPS=N` sets the bit flips per file (default 200).
//!   The long run, 1000 flips per file, is the ignored
//!   `corruption_campaign_long`:
//!   `cargo test --release -p sdar --test campaign -- --ignored --nocapture`,
//!   or any count:
//!   `SDAR_CAMPAIGN_FLIPS=1000 cargo test --release -p sdar --test campaign -- --nocapture corruption_campaign`.
//! * `crash_campaign_restore`: restores SIGKILLed after a seeded random
//!   delay up to a little more than an uninterrupted restore takes (timed
//!   again as the campaign goes, since the machine's load changes it). No
//!   file has its final name unless it holds the whole proven disk (the
//!   flat extent) or its descriptor; a kill between the two renames, which
//!   leaves the whole flat extent and no descriptor, is counted and
//!   reported. The backups are unchanged, and a fresh restore (`--resume`,
//!   `--force`, or to a new folder) gives the disk byte for byte.
//! * `crash_campaign_full_and_delta`: the same for `sdar full` and `sdar
//!   delta`: an interrupted write leaves only hidden `.NAME.*.partial`
//!   files, the sources are unchanged, and an output under its final name
//!   verifies, with the identity of an uninterrupted run.
//!
//! `SDAR_CAMPAIGN_KILLS=N` sets the restores killed (default 60; `sdar
//! full` and `sdar delta` get half as many each).
//!
//! The campaigns run a private copy of the built `sdar`, so that a rebuild
//! during a long run cannot change the program half-way through.

mod common;

use archive_format::ChangeKind;
use common::*;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

const MIB: u64 = 1 << 20;
const PAGE: usize = 4096;
const SIGKILL: i32 = 9;
const EXIT_PANIC: i32 = 101;
/// A command still running after this long is killed and counted as a hang.
const HANG_LIMIT: Duration = Duration::from_secs(20);

const DEFAULT_FLIPS: usize = 200;
const LONG_FLIPS: usize = 1000;
/// Random truncation points and zeroed pages per file.
const RANDOM_TRUNCATIONS: usize = 16;
const ZEROED_PAGES: usize = 16;
/// Member boundaries (starts and ends) used as truncation points per file,
/// besides every record boundary.
const MEMBER_BOUNDARIES: usize = 10;

const DEFAULT_KILLS: usize = 60;
/// Disk of the crash campaign: big enough that a restore takes a while.
const CRASH_DISK: u64 = 32 * MIB;

/// Restore destination in every folder a campaign restores into.
const DEST: &str = "d.vmdk";
const FLAT: &str = "d-flat.vmdk";
const FLAT_PARTIAL: &str = ".d-flat.vmdk.sdar-partial";
const DESCRIPTOR_PARTIAL: &str = ".d.vmdk.sdar-descriptor";
/// The restore mark (SPEC.md §19.1): it stays with an interrupted restore,
/// so that `--resume` can prove the partial file is that restore's.
const RESTORE_MARK: &str = ".d.vmdk.sdar-restore";

/// A count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a count")),
        Err(_) => default,
    }
}

/// Copies the built `sdar` into `dir` and returns the copy's path.
fn private_sdar(dir: &Path) -> PathBuf {
    let p = dir.join("sdar-under-test");
    fs::copy(SDAR, &p).unwrap_or_else(|e| panic!("cannot copy {SDAR}: {e}"));
    p
}

/// `program args` in `cwd`, without the caller's SDAR_FULL_PATH.
fn command(program: &Path, cwd: &Path, args: &[&str]) -> (String, Command) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SDAR_FULL_PATH")
        .stdin(Stdio::null());
    (format!("{} {}", program.display(), args.join(" ")), cmd)
}

/// Starts `cmd`, trying again while the program is briefly "busy"
/// (ETXTBSY: a child forked by another test thread may still hold a
/// descriptor that wrote it).
fn spawn(cmd: &mut Command, what: &str) -> Child {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.unwrap_or_else(|e| panic!("cannot run `{what}`: {e}")),
        }
    }
}

/// How a command run under a time limit ended.
struct Limited {
    what: String,
    /// None when it was still running at the limit (and was killed).
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Limited {
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn hung(&self) -> bool {
        self.status.is_none()
    }

    /// A Rust panic, or death by a signal we did not send.
    fn crashed(&self) -> bool {
        self.code() == Some(EXIT_PANIC)
            || self.stderr.contains("panicked")
            || self.status.is_some_and(|s| s.signal().is_some())
    }

    /// What it said first on stderr, for reports.
    fn said(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().take(3).collect();
        lines.join(" / ")
    }

    fn ended(&self) -> String {
        match self.status {
            None => "hung".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (_, Some(sig)) => format!("signal {sig}"),
                _ => s.to_string(),
            },
        }
    }

    #[track_caller]
    fn success(self) -> Self {
        assert_eq!(
            self.code(),
            Some(EXIT_OK),
            "`{}` ended with {}:\n{}",
            self.what,
            self.ended(),
            self.stderr
        );
        self
    }
}

/// Runs `cmd` with its output in `log.out` and `log.err`, killing it after
/// `limit`.
fn run_limited(what: String, mut cmd: Command, log: &Path, limit: Duration) -> Limited {
    let out_path = log.with_extension("out");
    let err_path = log.with_extension("err");
    cmd.stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = spawn(&mut cmd, &what);
    let started = Instant::now();
    let mut nap = Duration::from_micros(200);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(4));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap()).into_owned();
    Limited {
        what,
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Runs `sdar args` in `cwd` under the hang limit.
fn sdar_limited(bin: &Path, cwd: &Path, args: &[&str], log: &Path) -> Limited {
    let (what, cmd) = command(bin, cwd, args);
    run_limited(what, cmd, log, HANG_LIMIT)
}

/// The 64 hex digits after `identity ` in what `sdar verify` printed.
fn identity_in(text: &str) -> Option<String> {
    text.match_indices("identity ").find_map(|(at, w)| {
        let id = text.get(at + w.len()..at + w.len() + 64)?;
        id.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| id.to_string())
    })
}

/// A file's bytes and modification time, to tell whether anything wrote it.
struct Snapshot {
    path: PathBuf,
    bytes: Vec<u8>,
    modified: SystemTime,
}

impl Snapshot {
    fn take(path: &Path) -> Self {
        Snapshot {
            path: path.to_path_buf(),
            bytes: fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            modified: fs::metadata(path).unwrap().modified().unwrap(),
        }
    }

    fn changed(&self) -> bool {
        let modified = fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        modified != Some(self.modified) || fs::read(&self.path).ok().as_ref() != Some(&self.bytes)
    }
}

/// Removes everything in `dir`.
fn empty_folder(dir: &Path) {
    for name in listing(dir) {
        let p = dir.join(name);
        if p.is_dir() {
            fs::remove_dir_all(&p).unwrap();
        } else {
            fs::remove_file(&p).unwrap();
        }
    }
}

/// Names in `dir` that look like a disk: not hidden, ending in `.vmdk`.
fn visible_disks(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') && n.ends_with(".vmdk"))
        .collect()
}

/// Changes `disk` as a running VM would, the same way for the same seed:
/// in every ninth block a page rewritten (a PATCH, or a DATA when blocks
/// are one page), in every ninth another block rewritten whole (DATA, zero
/// blocks included), and in every ninth a third block zeroed (ZERO).
fn change_disk(disk: &mut [u8], block: usize, seed: u64) {
    let mut rng = Rng::new(seed ^ 0x5eed_c4a6);
    for b in 0..disk.len() / block {
        let r = b * block..(b + 1) * block;
        match b % 9 {
            1 => {
                let at = r.start + rng.below(block / PAGE) * PAGE;
                rng.fill(&mut disk[at..at + PAGE]);
            }
            4 => rng.fill(&mut disk[r]),
            7 => disk[r].fill(0),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Corruption campaign

/// One way to damage a file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Invert bit `bit` of the byte at `offset`.
    Flip { offset: u64, bit: u8 },
    /// Keep the first `len` bytes.
    Truncate { len: u64 },
    /// Zero 4 KiB from `offset` (less at the end of the file).
    ZeroPage { offset: u64 },
}

impl Damage {
    fn apply(self, original: &[u8]) -> Vec<u8> {
        let mut bytes = original.to_vec();
        match self {
            Damage::Flip { offset, bit } => bytes[offset as usize] ^= 1 << bit,
            Damage::Truncate { len } => bytes.truncate(len as usize),
            Damage::ZeroPage { offset } => {
                let end = (offset as usize + PAGE).min(bytes.len());
                bytes[offset as usize..end].fill(0);
            }
        }
        bytes
    }
}

/// The damages tried on one file of `len` bytes: `flips` single-bit flips,
/// truncations at every boundary ±1 and at random points, zeroed pages.
/// With `payload` (a delta's payload offset) every other flip, cut and page
/// lands in the payload. Each kind draws from its own seeded generator, so
/// that changing the number of flips leaves the other damages alone.
fn plan(
    len: u64,
    payload: Option<u64>,
    boundaries: &[u64],
    flips: usize,
    seed: u64,
) -> Vec<Damage> {
    let start = |i: usize| match payload {
        Some(p) if i % 2 == 1 => p,
        _ => 0,
    };
    let at = |rng: &mut Rng, from: u64| from + rng.next() % (len - from);
    let mut damages = Vec::new();
    let mut rng = Rng::new(seed);
    for i in 0..flips {
        let offset = at(&mut rng, start(i));
        damages.push(Damage::Flip {
            offset,
            bit: rng.below(8) as u8,
        });
    }
    let mut cuts: Vec<u64> = boundaries
        .iter()
        .flat_map(|&b| [b.wrapping_sub(1), b, b + 1])
        .filter(|&c| c < len)
        .collect();
    let mut rng = Rng::new(seed ^ 0x7275_6e63);
    for i in 0..RANDOM_TRUNCATIONS {
        cuts.push(at(&mut rng, start(i)));
    }
    cuts.sort_unstable();
    cuts.dedup();
    damages.extend(cuts.into_iter().map(|len| Damage::Truncate { len }));
    let mut rng = Rng::new(seed ^ 0x7a65_726f);
    for i in 0..ZEROED_PAGES {
        let offset = at(&mut rng, start(i));
        damages.push(Damage::ZeroPage { offset });
    }
    damages
}

/// `count` of `items`, spread over them: the first and last few, and some
/// seeded picks in between.
fn sample(items: &[u64], count: usize, rng: &mut Rng) -> Vec<u64> {
    if items.len() <= count {
        return items.to_vec();
    }
    let ends = count / 3;
    let mut picked: Vec<u64> = items[..ends].to_vec();
    picked.extend_from_slice(&items[items.len() - ends..]);
    while picked.len() < count {
        picked.push(items[rng.below(items.len())]);
    }
    picked
}

/// A scratch folder in memory (`/dev/shm`) when there is one: a restore
/// syncs what it writes, and on a disk shared with other work those syncs,
/// not sdar, would set the campaign's pace. Else an ordinary scratch folder.
fn memory_scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sdar-campaign.")
        .tempdir_in("/dev/shm")
        .unwrap_or_else(|_| scratch())
}

/// What a campaign runs against: a full, a delta made against it, and the
/// disk the delta restores.
struct Pair {
    label: &'static str,
    seed: u64,
    dir: tempfile::TempDir,
    /// Holds the private `sdar` (where programs may run, unlike a
    /// `noexec` /dev/shm).
    _bin_dir: tempfile::TempDir,
    bin: PathBuf,
    full_name: String,
    delta_name: String,
    full: Vec<u8>,
    delta: Vec<u8>,
    now: Vec<u8>,
}

struct PairSpec {
    label: &'static str,
    size: u64,
    block: usize,
    full_codec: &'static str,
    delta_codec: &'static str,
    seed: u64,
}

fn make_pair(spec: &PairSpec) -> Pair {
    let dir = memory_scratch();
    let d = dir.path();
    let bin_dir = scratch();
    let bin = private_sdar(bin_dir.path());
    let log = d.join("setup");
    let run = |args: &[&str]| sdar_limited(&bin, d, args, &log).success();
    let (size, seed) = (spec.size.to_string(), spec.seed.to_string());
    run(&["sample-disk", "base.img", "--size", &size, "--seed", &seed]);
    let mut now = fs::read(d.join("base.img")).unwrap();
    change_disk(&mut now, spec.block, spec.seed);
    fs::write(d.join("now.img"), &now).unwrap();
    let suffix = if spec.full_codec == "gzip" {
        "gz"
    } else {
        "zst"
    };
    let full_name = format!("vm.full.{suffix}");
    let delta_name = "vm-1.sdar".to_string();
    let block = spec.block.to_string();
    run(&[
        "full",
        "base.img",
        "-o",
        &full_name,
        "--codec",
        spec.full_codec,
        "--block-size",
        &block,
        "-q",
    ]);
    run(&[
        "delta",
        "now.img",
        "--full",
        &full_name,
        "--codec",
        spec.delta_codec,
        "-o",
        &delta_name,
        "-q",
    ]);
    Pair {
        label: spec.label,
        seed: spec.seed,
        full: fs::read(d.join(&full_name)).unwrap(),
        delta: fs::read(d.join(&delta_name)).unwrap(),
        dir,
        _bin_dir: bin_dir,
        bin,
        full_name,
        delta_name,
        now,
    }
}

impl Pair {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Truncation points of the full: every record boundary, and some
    /// member boundaries.
    fn full_boundaries(&self, rng: &mut Rng) -> Vec<u64> {
        let l = layout(&self.path(&self.full_name));
        let f = &self.full;
        let u16_at = |at: usize| u16::from_le_bytes([f[at], f[at + 1]]) as u64;
        let u32_at = |at: usize| u32::from_le_bytes(f[at..at + 4].try_into().unwrap()) as u64;
        // HEAD fits one container: a gzip member with XLEN at byte 10 and
        // a 10-byte empty-deflate suffix, or a skippable frame (SPEC.md §4).
        let (head_end, foot) = if self.full_name.ends_with(".gz") {
            (12 + u16_at(10) + 10, 106)
        } else {
            (8 + u32_at(4), 88)
        };
        let mut b = vec![
            0,
            head_end,
            l.data_start,
            l.directory,
            l.file_len - foot,
            l.file_len,
        ];
        b.extend(&l.index_records);
        let members: Vec<u64> = l
            .members
            .iter()
            .filter(|m| m.len > 0)
            .flat_map(|m| [m.offset, m.offset + m.len])
            .collect();
        b.extend(sample(&members, MEMBER_BOUNDARIES, rng));
        b
    }

    /// Truncation points of the delta: the payload's start, every record
    /// boundary, some member boundaries, and the trailer.
    fn delta_boundaries(&self, rng: &mut Rng) -> Vec<u64> {
        let l = delta_layout(&self.path(&self.delta_name));
        let len = l.file_len;
        let dfot = len - 32 - 80;
        // DFOT body: identity (32 bytes), then DDIR's payload offset.
        let at = (dfot + 16 + 32) as usize;
        let ddir = u64::from_le_bytes(self.delta[at..at + 8].try_into().unwrap());
        let mut b = vec![
            0,
            l.payload_offset,
            l.payload_offset + 16 + 96,
            l.payload_offset + ddir,
            dfot,
            len - 32,
            len,
        ];
        let members: Vec<u64> = l
            .members
            .iter()
            .filter(|m| m.len > 0)
            .flat_map(|m| [m.offset, m.offset + m.len])
            .collect();
        b.extend(sample(&members, MEMBER_BOUNDARIES, rng));
        b
    }
}

/// Which file of a pair a damage is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Full,
    Delta,
}

/// What happened to one damaged input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The restore failed with exit 1 or 3, and so did `sdar verify`.
    Detected,
    /// The restore gave the disk byte for byte.
    Identical,
    /// The restore exited 0 with a disk that differs.
    SilentWrong,
    /// Exit 101, "panicked", or a signal.
    Panic,
    Hang,
    /// An exit code that is not 0, 1 or 3.
    Other,
    /// `sdar verify` passed, the restore failed.
    VerifyMissed,
}

struct Trial {
    /// None for the undamaged baseline.
    damage: Option<Damage>,
    verdict: Verdict,
    /// The restore failed and left a non-hidden .vmdk.
    disk_left: bool,
    /// The restore failed and left its hidden partial file.
    partial_left: bool,
    /// Identical, though `sdar verify` refused the input.
    verify_stricter: bool,
    /// sdar changed one of its inputs.
    inputs_changed: bool,
    /// The damage lies wholly in a delta's runtime.
    in_runtime: bool,
    verify: String,
    restore: String,
}

/// A folder of its own for one worker: copies of the pair's files, and
/// an output folder.
struct Workspace<'a> {
    pair: &'a Pair,
    dir: PathBuf,
}

impl<'a> Workspace<'a> {
    fn new(pair: &'a Pair, n: usize) -> Self {
        let dir = pair.path(&format!("work-{n}"));
        fs::create_dir_all(dir.join("out")).unwrap();
        Workspace { pair, dir }
    }

    /// Writes the two inputs (one of them damaged), runs `sdar verify` and
    /// `sdar restore`, and judges what they did.
    fn run(&self, target: Target, damage: Option<Damage>) -> Trial {
        let p = self.pair;
        let (full_path, delta_path) = (self.dir.join(&p.full_name), self.dir.join(&p.delta_name));
        let damaged = |original: &[u8], t: Target| match damage {
            Some(d) if t == target => d.apply(original),
            _ => original.to_vec(),
        };
        let inputs = [
            (full_path, damaged(&p.full, Target::Full)),
            (delta_path, damaged(&p.delta, Target::Delta)),
        ];
        let mut written = Vec::new();
        for (path, bytes) in &inputs {
            fs::write(path, bytes).unwrap();
            written.push(fs::metadata(path).unwrap().modified().unwrap());
        }
        let out = self.dir.join("out");
        empty_folder(&out);

        let log = self.dir.join("log");
        let verify_args: Vec<&str> = match target {
            Target::Full => vec!["verify", &p.full_name, "-q"],
            Target::Delta => vec!["verify", &p.delta_name, "--full", &p.full_name, "-q"],
        };
        let verify = sdar_limited(&p.bin, &self.dir, &verify_args, &log);
        let dest = format!("out/{DEST}");
        let restore_args = [
            "restore",
            &p.delta_name,
            "--to",
            &dest,
            "--full",
            &p.full_name,
            "-q",
        ];
        let restore = sdar_limited(&p.bin, &self.dir, &restore_args, &log);

        let inputs_changed = inputs.iter().zip(&written).any(|((path, bytes), time)| {
            fs::read(path).ok().as_ref() != Some(bytes)
                || fs::metadata(path).and_then(|m| m.modified()).ok() != Some(*time)
        });
        let restored_ok = restore.code() == Some(EXIT_OK);
        let identical = restored_ok
            && out.join(DEST).is_file()
            && fs::read(out.join(FLAT)).is_ok_and(|b| b == p.now);
        let acceptable = |c: Option<i32>| matches!(c, Some(EXIT_OK | EXIT_INTEGRITY | EXIT_OTHER));
        let verdict = if verify.crashed() || restore.crashed() {
            Verdict::Panic
        } else if verify.hung() || restore.hung() {
            Verdict::Hang
        } else if restored_ok && !identical {
            Verdict::SilentWrong
        } else if !acceptable(verify.code()) || !acceptable(restore.code()) {
            Verdict::Other
        } else if identical {
            Verdict::Identical
        } else if verify.code() == Some(EXIT_OK) {
            Verdict::VerifyMissed
        } else {
            Verdict::Detected
        };
        let trial = Trial {
            damage,
            verdict,
            disk_left: !restored_ok && !visible_disks(&out).is_empty(),
            partial_left: !restored_ok && out.join(FLAT_PARTIAL).exists(),
            verify_stricter: identical && verify.code() != Some(EXIT_OK),
            inputs_changed,
            in_runtime: false,
            verify: format!("{}: {}", verify.ended(), verify.said()),
            restore: format!("{}: {}", restore.ended(), restore.said()),
        };
        empty_folder(&out);
        trial
    }
}

#[derive(Default)]
struct Tally {
    flips: usize,
    truncations: usize,
    zeroed: usize,
    detected: usize,
    identical: usize,
    verify_stricter: usize,
    silent_wrong: usize,
    panics: usize,
    hangs: usize,
    other: usize,
    verify_missed: usize,
    disks_left: usize,
    partials_left: usize,
    inputs_changed: usize,
    in_runtime: usize,
    in_runtime_identical: usize,
}

impl Tally {
    fn add(&mut self, t: &Trial) {
        match t.damage {
            Some(Damage::Flip { .. }) => self.flips += 1,
            Some(Damage::Truncate { .. }) => self.truncations += 1,
            Some(Damage::ZeroPage { .. }) => self.zeroed += 1,
            None => {}
        }
        let slot = match t.verdict {
            Verdict::Detected => &mut self.detected,
            Verdict::Identical => &mut self.identical,
            Verdict::SilentWrong => &mut self.silent_wrong,
            Verdict::Panic => &mut self.panics,
            Verdict::Hang => &mut self.hangs,
            Verdict::Other => &mut self.other,
            Verdict::VerifyMissed => &mut self.verify_missed,
        };
        *slot += 1;
        self.verify_stricter += t.verify_stricter as usize;
        self.disks_left += t.disk_left as usize;
        self.partials_left += t.partial_left as usize;
        self.inputs_changed += t.inputs_changed as usize;
        self.in_runtime += t.in_runtime as usize;
        self.in_runtime_identical += (t.in_runtime && t.verdict == Verdict::Identical) as usize;
    }

    fn bad(&self) -> usize {
        self.silent_wrong
            + self.panics
            + self.hangs
            + self.verify_missed
            + self.disks_left
            + self.inputs_changed
    }
}

/// Damages each file of a pair in turn; returns the tally lines and the
/// reproducers of every bad or unexpected outcome.
fn campaign_on(pair: &Pair, flips: usize, workers: usize) -> (Vec<String>, Vec<String>, usize) {
    // The undamaged pair verifies and restores: the baseline every
    // damage is judged against.
    let ws = Workspace::new(pair, 0);
    let base = ws.run(Target::Delta, None);
    assert_eq!(
        base.verdict,
        Verdict::Identical,
        "{}: the undamaged pair: verify {}, restore {}",
        pair.label,
        base.verify,
        base.restore
    );
    assert!(!base.verify_stricter, "{}: {}", pair.label, base.verify);

    let mut lines = Vec::new();
    let mut findings = Vec::new();
    let mut bad = 0;
    for (target, name, bytes) in [
        (Target::Full, &pair.full_name, &pair.full),
        (Target::Delta, &pair.delta_name, &pair.delta),
    ] {
        let seed = pair.seed * 1000 + target as u64;
        let mut rng = Rng::new(seed);
        let (boundaries, payload) = match target {
            Target::Full => (pair.full_boundaries(&mut rng), None),
            Target::Delta => (
                pair.delta_boundaries(&mut rng),
                Some(delta_layout(&pair.path(name)).payload_offset),
            ),
        };
        let damages = plan(bytes.len() as u64, payload, &boundaries, flips, seed);
        let mut trials: Vec<(usize, Trial)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let damages = &damages;
                    s.spawn(move || {
                        let ws = Workspace::new(pair, w);
                        (w..damages.len())
                            .step_by(workers)
                            .map(|i| (i, ws.run(target, Some(damages[i]))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        trials.sort_by_key(|(i, _)| *i);
        for (_, t) in &mut trials {
            t.in_runtime = match (payload, t.damage) {
                (Some(p), Some(Damage::Flip { offset, .. })) => offset < p,
                (Some(p), Some(Damage::ZeroPage { offset })) => offset + PAGE as u64 <= p,
                _ => false,
            };
        }
        let mut tally = Tally::default();
        for (_, t) in &trials {
            tally.add(t);
            let odd = !matches!(t.verdict, Verdict::Detected | Verdict::Identical)
                || t.disk_left
                || t.inputs_changed;
            if odd {
                findings.push(format!(
                    "{} {name} (plan seed {seed}): {:?} {:?}: verify {}; restore {}{}{}",
                    pair.label,
                    t.damage.expect("every trial here damages a file"),
                    t.verdict,
                    t.verify,
                    t.restore,
                    if t.disk_left { "; left a disk" } else { "" },
                    if t.inputs_changed {
                        "; changed its input"
                    } else {
                        ""
                    },
                ));
            }
        }
        lines.push(format!(
            "corruption campaign [{} {name}]: {} flips, {} truncations, {} zeroed pages; \
             detected {}, identical {}, silent-wrong {}, panics {}, hangs {} \
             (other exit codes {}, verify passed but restore failed {}, identical though verify refused {}, \
             disks left {}, partial files left {}, inputs changed {}; \
             flips and zeroed pages in the runtime {}, of which identical {})",
            pair.label,
            tally.flips,
            tally.truncations,
            tally.zeroed,
            tally.detected,
            tally.identical,
            tally.silent_wrong,
            tally.panics,
            tally.hangs,
            tally.other,
            tally.verify_missed,
            tally.verify_stricter,
            tally.disks_left,
            tally.partials_left,
            tally.inputs_changed,
            tally.in_runtime,
            tally.in_runtime_identical,
        ));
        bad += tally.bad();
    }
    (lines, findings, bad)
}

fn corruption(flips: usize) {
    let started = Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let specs = [
        PairSpec {
            label: "gzip full, 64K blocks, zstd delta",
            size: 2 * MIB,
            block: 65_536,
            full_codec: "gzip",
            delta_codec: "zstd",
            seed: 11,
        },
        PairSpec {
            label: "zstd full, 4K blocks, 2 segments, gzip delta",
            size: 5 * MIB,
            block: 4096,
            full_codec: "zstd",
            delta_codec: "gzip",
            seed: 12,
        },
    ];
    eprintln!(
        "corruption campaign: {flips} flips per file (SDAR_CAMPAIGN_FLIPS), {workers} workers"
    );
    let mut findings = Vec::new();
    let mut bad = 0;
    for spec in &specs {
        let pair = make_pair(spec);
        if spec.block == 65_536 {
            let kinds = delta_layout(&pair.path(&pair.delta_name)).members;
            for (what, found) in [
                ("DATA", kinds.iter().any(|m| m.kind == ChangeKind::Data)),
                ("ZERO", kinds.iter().any(|m| m.kind == ChangeKind::Zero)),
                (
                    "PATCH",
                    kinds
                        .iter()
                        .any(|m| matches!(m.kind, ChangeKind::Patch { .. })),
                ),
            ] {
                assert!(found, "{}: the delta has no {what} block", spec.label);
            }
        }
        let (lines, found, n) = campaign_on(&pair, flips, workers);
        for line in lines {
            eprintln!("{line}");
        }
        findings.extend(found);
        bad += n;
    }
    for f in &findings {
        eprintln!("  {f}");
    }
    eprintln!(
        "corruption campaign: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        bad,
        0,
        "the corruption campaign found bad outcomes:\n{}",
        findings.join("\n")
    );
}

/// Seeded single-bit flips, truncations and zeroed pages in a full and in
/// a delta of two pairs; `SDAR_CAMPAIGN_FLIPS` flips per file (default 200).
#[test]
fn corruption_campaign() {
    corruption(env_count("SDAR_CAMPAIGN_FLIPS", DEFAULT_FLIPS));
}

/// The long run: 1000 flips per file, or `SDAR_CAMPAIGN_FLIPS`.
/// `cargo test --release -p sdar --test campaign -- --ignored --nocapture`
#[test]
#[ignore = "long: a few minutes"]
fn corruption_campaign_long() {
    corruption(env_count("SDAR_CAMPAIGN_FLIPS", LONG_FLIPS));
}

// ---------------------------------------------------------------------------
// Crash campaign

/// A disk of `size`, its full, a changed copy and the delta restoring it,
/// in `backup/`; the disks in the folder itself.
struct CrashFixture {
    dir: tempfile::TempDir,
    bin: PathBuf,
    now: Vec<u8>,
}

const CRASH_FULL: &str = "backup/vm.full.gz";
const CRASH_DELTA: &str = "backup/vm-1.sdar";

impl CrashFixture {
    fn new(size: u64, seed: u64) -> Self {
        let dir = scratch();
        let d = dir.path();
        fs::create_dir(d.join("backup")).unwrap();
        let bin = private_sdar(d);
        let log = d.join("setup");
        let run = |args: &[&str]| sdar_limited(&bin, d, args, &log).success();
        let (size, seed_text) = (size.to_string(), seed.to_string());
        run(&[
            "sample-disk",
            "base.img",
            "--size",
            &size,
            "--seed",
            &seed_text,
        ]);
        let mut now = fs::read(d.join("base.img")).unwrap();
        change_disk(&mut now, 65_536, seed);
        fs::write(d.join("now.img"), &now).unwrap();
        run(&["full", "base.img", "-o", CRASH_FULL, "-q"]);
        run(&[
            "delta",
            "now.img",
            "--full",
            CRASH_FULL,
            "-o",
            CRASH_DELTA,
            "-q",
        ]);
        CrashFixture { dir, bin, now }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn folder(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// A restore of the delta to `folder/d.vmdk`: run as the archive
    /// itself (finding its full beside it), or as `sdar restore`.
    fn restore(&self, archive: bool, folder: &str, extra: &[&str]) -> (String, Command) {
        let dest = format!("{folder}/{DEST}");
        let mut args = vec!["--to", dest.as_str(), "-q"];
        args.extend_from_slice(extra);
        if archive {
            let mut all = vec!["restore"];
            all.extend(args);
            command(&self.path(CRASH_DELTA), self.dir.path(), &all)
        } else {
            let mut all = vec!["restore", CRASH_DELTA, "--full", CRASH_FULL];
            all.extend(args);
            command(&self.bin, self.dir.path(), &all)
        }
    }
}

/// How a command we meant to kill ended.
enum Killed {
    /// It finished first, with this exit code, after this long.
    Finished(i32, Duration),
    /// Our SIGKILL ended it.
    Killed,
}

/// Starts `cmd`, SIGKILLs it `delay` later unless it has ended.
fn kill_after(what: &str, mut cmd: Command, delay: Duration, log: &Path) -> (Killed, String) {
    let err = log.with_extension("err");
    cmd.stdout(Stdio::null())
        .stderr(fs::File::create(&err).unwrap());
    let mut child = spawn(&mut cmd, what);
    let started = Instant::now();
    let deadline = started + delay;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        let now = Instant::now();
        if now >= deadline {
            // It may end between the two calls; `kill` then does nothing.
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
    };
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&fs::read(&err).unwrap()).into_owned();
    let ended = match (status.code(), status.signal()) {
        (Some(c), _) => Killed::Finished(c, took),
        (_, Some(SIGKILL)) => Killed::Killed,
        _ => panic!("`{what}` ended with {status}: {stderr}"),
    };
    (ended, stderr)
}

/// How long a command takes, from its latest uninterrupted runs: the
/// machine's load changes it several times over during a campaign.
struct Timing(Vec<Duration>);

impl Timing {
    fn add(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The median of the last five runs.
    fn typical(&self) -> Duration {
        let mut last: Vec<Duration> = self.0.iter().rev().take(5).copied().collect();
        last.sort();
        last[last.len() / 2]
    }
}

/// Times `run` three times.
fn timing(mut run: impl FnMut()) -> Timing {
    Timing(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed()
            })
            .collect(),
    )
}

/// A seeded delay from 0 to 1.25 × `typical`.
fn random_delay(rng: &mut Rng, typical: Duration) -> Duration {
    let span = (typical.as_micros() as u64 * 5 / 4).max(1);
    Duration::from_micros(rng.next() % span)
}

/// What a restore left in `dir` after being killed: `Err` when a file
/// under a final name is not the whole proven disk (or its descriptor).
/// `Ok(true)` when the flat extent already had its final name.
fn judge_killed_restore(dir: &Path, now: &[u8], descriptor: &[u8]) -> Result<bool, String> {
    let names = listing(dir);
    let has = |n: &str| names.iter().any(|x| x == n);
    for name in &names {
        match name.as_str() {
            FLAT_PARTIAL | DESCRIPTOR_PARTIAL | RESTORE_MARK => {}
            FLAT => {
                let bytes = fs::read(dir.join(FLAT)).unwrap();
                if bytes != now {
                    return Err(format!(
                        "{FLAT} has its final name but not the disk ({} bytes of {})",
                        bytes.len(),
                        now.len()
                    ));
                }
            }
            DEST => {
                if !has(FLAT) {
                    return Err(format!("{DEST} exists without {FLAT}"));
                }
                if fs::read(dir.join(DEST)).unwrap() != descriptor {
                    return Err(format!("{DEST} is not the descriptor a restore writes"));
                }
            }
            other => return Err(format!("unexpected file {other}")),
        }
    }
    Ok(has(FLAT))
}

/// Checks that `dir` holds exactly the restored disk.
fn judge_restored(dir: &Path, now: &[u8], descriptor: &[u8]) -> Result<(), String> {
    let names = listing(dir);
    if names != [FLAT, DEST] {
        return Err(format!("the folder holds {names:?}"));
    }
    if fs::read(dir.join(FLAT)).unwrap() != now {
        return Err(format!("{FLAT} is not the disk"));
    }
    if fs::read(dir.join(DEST)).unwrap() != descriptor {
        return Err(format!("{DEST} is not the descriptor"));
    }
    Ok(())
}

/// Restores SIGKILLed at seeded random moments: nothing incomplete ever
/// has a final name, the backups are unchanged, and a fresh restore
/// (`--resume`, to a new folder, or `--force`) gives the disk byte for byte.
#[test]
fn crash_campaign_restore() {
    let started = Instant::now();
    let trials = env_count("SDAR_CAMPAIGN_KILLS", DEFAULT_KILLS);
    let f = CrashFixture::new(CRASH_DISK, 21);
    let backups = [
        Snapshot::take(&f.path(CRASH_FULL)),
        Snapshot::take(&f.path(CRASH_DELTA)),
    ];
    let log = f.path("log");

    // An uninterrupted restore: the descriptor every restore must write,
    // and how long a restore takes.
    f.folder("ref");
    let mut time = timing(|| {
        let (what, cmd) = f.restore(false, "ref", &["--force"]);
        run_limited(what, cmd, &log, HANG_LIMIT).success();
    });
    let descriptor = fs::read(f.path("ref").join(DEST)).unwrap();
    judge_restored(&f.path("ref"), &f.now, &descriptor).unwrap();

    let mut rng = Rng::new(21);
    let (mut killed, mut completed, mut with_partial, mut flat_only) = (0, 0, 0, 0);
    let (mut resumed, mut renamed, mut forced) = (0, 0, 0);
    let (mut incomplete, mut backups_changed, mut fresh_failed) = (0, 0, 0);
    let mut findings = Vec::new();
    for i in 0..trials {
        let dir = f.folder("r");
        let delay = random_delay(&mut rng, time.typical());
        let archive = i % 2 == 0;
        let (what, cmd) = f.restore(archive, "r", &[]);
        let (ended, stderr) = kill_after(&what, cmd, delay, &log);
        let mut final_names = false;
        match ended {
            Killed::Finished(0, took) => {
                completed += 1;
                time.add(took);
                if let Err(e) = judge_restored(&dir, &f.now, &descriptor) {
                    incomplete += 1;
                    findings.push(format!("trial {i}: `{what}` completed, but {e}"));
                }
                final_names = true;
            }
            Killed::Finished(code, _) => {
                fresh_failed += 1;
                findings.push(format!("trial {i}: `{what}` failed with {code}: {stderr}"));
            }
            Killed::Killed => {
                killed += 1;
                with_partial += dir.join(FLAT_PARTIAL).exists() as usize;
                match judge_killed_restore(&dir, &f.now, &descriptor) {
                    Ok(flat) => {
                        flat_only += (flat && !dir.join(DEST).exists()) as usize;
                        final_names = flat;
                    }
                    Err(e) => {
                        incomplete += 1;
                        findings.push(format!("trial {i}: `{what}` killed after {delay:?}: {e}"));
                    }
                }
            }
        }
        if backups.iter().any(Snapshot::changed) {
            backups_changed += 1;
            findings.push(format!("trial {i}: `{what}` changed a backup"));
        }

        // A fresh restore, by the other way of running it.
        let (folder, extra): (&str, &[&str]) = match i % 3 {
            _ if final_names => ("r", &["--force"]),
            0 => ("r", &["--resume"]),
            1 => ("fresh", &[]),
            _ => ("r", &["--force"]),
        };
        match (folder, extra) {
            ("fresh", _) => renamed += 1,
            (_, ["--resume"]) => resumed += 1,
            _ => forced += 1,
        }
        let fresh_dir = f.folder(folder);
        let (what, cmd) = f.restore(!archive, folder, extra);
        let t = Instant::now();
        let out = run_limited(what, cmd, &log, HANG_LIMIT);
        if extra != ["--resume"] {
            time.add(t.elapsed());
        }
        let judged = match out.code() {
            Some(EXIT_OK) => judge_restored(&fresh_dir, &f.now, &descriptor),
            _ => Err(format!("{}: {}", out.ended(), out.stderr)),
        };
        if let Err(e) = judged {
            fresh_failed += 1;
            findings.push(format!("trial {i}: fresh `{}`: {e}", out.what));
        }
        if backups.iter().any(Snapshot::changed) {
            backups_changed += 1;
            findings.push(format!("trial {i}: `{}` changed a backup", out.what));
        }
        empty_folder(&dir);
        empty_folder(&fresh_dir);
    }
    eprintln!(
        "crash campaign: restore {trials} trials (killed {killed}, completed {completed}); \
         incomplete disks under final name {incomplete}; backups changed {backups_changed}; \
         fresh restores failed {fresh_failed} \
         (a restore took {:?} at the end; killed with a partial file {with_partial}; \
         killed with the flat extent renamed but no descriptor yet {flat_only}; \
         fresh restores: --resume {resumed}, new folder {renamed}, --force {forced}; {:.1} s)",
        time.typical(),
        started.elapsed().as_secs_f64()
    );
    for line in &findings {
        eprintln!("  {line}");
    }
    assert!(
        incomplete + backups_changed + fresh_failed == 0,
        "crash campaign (restore):\n{}",
        findings.join("\n")
    );
    assert!(
        killed >= trials / 4 && with_partial > 0,
        "too few restores were killed part-way ({killed} killed, {with_partial} with a partial file, \
         of {trials}): the delays do not fit how long a restore takes ({:?})",
        time.typical()
    );
}

/// What an interrupted `sdar full` or `sdar delta` may leave: hidden
/// `.NAME.*.partial` files, the empty `.NAME.lock` that kept a second
/// writer out, and a final name only for an output that verifies with the
/// identity of an uninterrupted run.
struct Output<'a> {
    /// The final name, in the output folder.
    name: &'a str,
    /// `sdar verify` arguments after the file's path.
    verify_with: Vec<String>,
    identity: &'a str,
}

/// Checks the files in `dir` against the outputs `expected`; with
/// `complete`, every output must be there. Returns the final names found
/// and the partial files found.
fn judge_outputs(
    bin: &Path,
    dir: &Path,
    expected: &[Output],
    complete: bool,
    log: &Path,
) -> Result<(usize, usize), String> {
    let names = listing(dir);
    let (mut finals, mut partials) = (0, 0);
    for name in &names {
        let partial_of =
            |o: &Output| name.starts_with(&format!(".{}.", o.name)) && name.ends_with(".partial");
        let lock_of = |o: &Output| *name == format!(".{}.lock", o.name);
        if expected.iter().any(partial_of) {
            partials += 1;
        } else if expected.iter().any(lock_of) {
            let len = fs::metadata(dir.join(name)).map_or(u64::MAX, |m| m.len());
            if len != 0 {
                return Err(format!("the lock file {name} holds {len} bytes"));
            }
        } else if !expected.iter().any(|o| o.name == name) {
            return Err(format!("unexpected file {name}"));
        }
    }
    for o in expected {
        if !names.iter().any(|n| n == o.name) {
            if complete {
                return Err(format!("{} is missing", o.name));
            }
            continue;
        }
        finals += 1;
        let path = dir.join(o.name);
        let mut args = vec!["verify".to_string(), path.display().to_string()];
        args.extend(o.verify_with.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sdar_limited(bin, dir, &args, log);
        if out.code() != Some(EXIT_OK) {
            return Err(format!(
                "{} has its final name but does not verify: {}: {}",
                o.name,
                out.ended(),
                out.said()
            ));
        }
        let id = identity_in(&out.stdout).or_else(|| identity_in(&out.stderr));
        if id.as_deref() != Some(o.identity) {
            return Err(format!(
                "{} verifies with identity {id:?} instead of {}",
                o.name, o.identity
            ));
        }
    }
    Ok((finals, partials))
}

#[derive(Default)]
struct WriteTally {
    trials: usize,
    killed: usize,
    completed: usize,
    /// Killed with some final names present (e.g. the full written, the
    /// empty delta beside it not yet).
    killed_with_final: usize,
    partials_left: usize,
    bad_outputs: usize,
    sources_changed: usize,
}

/// Runs `args` (relative to the fixture's folder) `trials` times, killed
/// after seeded random delays, judging what each run left in `out`.
#[allow(clippy::too_many_arguments)]
fn kill_writes(
    f: &CrashFixture,
    args: &[&str],
    out: &Path,
    expected: &[Output],
    sources: &[Snapshot],
    trials: usize,
    time: &mut Timing,
    rng: &mut Rng,
    findings: &mut Vec<String>,
) -> WriteTally {
    let log = f.path("log");
    let mut t = WriteTally::default();
    for i in 0..trials {
        t.trials += 1;
        empty_folder(out);
        // Every fifth run is left to finish: how long it takes keeps the
        // delays fitting the machine's load.
        let delay = if i % 5 == 4 {
            HANG_LIMIT
        } else {
            random_delay(rng, time.typical())
        };
        let (what, cmd) = command(&f.bin, f.dir.path(), args);
        let (ended, stderr) = kill_after(&what, cmd, delay, &log);
        let complete = match ended {
            Killed::Finished(0, took) => {
                t.completed += 1;
                if i % 5 == 4 {
                    time.add(took);
                }
                true
            }
            Killed::Finished(code, _) => {
                t.bad_outputs += 1;
                findings.push(format!("trial {i}: `{what}` failed with {code}: {stderr}"));
                continue;
            }
            Killed::Killed => {
                t.killed += 1;
                false
            }
        };
        match judge_outputs(&f.bin, out, expected, complete, &log) {
            Ok((finals, partials)) => {
                t.killed_with_final += (!complete && finals > 0) as usize;
                t.partials_left += partials;
            }
            Err(e) => {
                t.bad_outputs += 1;
                findings.push(format!(
                    "trial {i}: `{what}` {} after {delay:?}: {e}",
                    if complete { "completed" } else { "killed" }
                ));
            }
        }
        if sources.iter().any(Snapshot::changed) {
            t.sources_changed += 1;
            findings.push(format!("trial {i}: `{what}` changed its source"));
        }
    }
    empty_folder(out);
    t
}

/// `sdar full` and `sdar delta` SIGKILLed at seeded random moments: an
/// interrupted write leaves only hidden partial files, an output under its
/// final name verifies with the right identity, and the sources are
/// unchanged.
#[test]
fn crash_campaign_full_and_delta() {
    let started = Instant::now();
    let trials = env_count("SDAR_CAMPAIGN_KILLS", DEFAULT_KILLS) / 2;
    let f = CrashFixture::new(CRASH_DISK, 22);
    let log = f.path("log");
    let run = |args: &[&str]| sdar_limited(&f.bin, f.dir.path(), args, &log).success();
    let full_id = identity_in(&run(&["verify", CRASH_FULL]).stdout).unwrap();
    let delta_args = ["verify", CRASH_DELTA, "--full", CRASH_FULL];
    let verified = run(&delta_args);
    let delta_id = identity_in(&verified.stdout)
        .or_else(|| identity_in(&verified.stderr))
        .unwrap();

    let out = f.folder("out");
    let full_args = ["full", "base.img", "-o", "out/vm.full.gz", "-q"];
    let delta_args = [
        "delta",
        "now.img",
        "--full",
        CRASH_FULL,
        "-o",
        "out/vm-1.sdar",
        "-q",
    ];
    let mut full_time = timing(|| {
        empty_folder(&out);
        run(&full_args);
    });
    let mut delta_time = timing(|| {
        empty_folder(&out);
        run(&delta_args);
    });

    let mut rng = Rng::new(22);
    let mut findings = Vec::new();
    let full_out = out.join("vm.full.gz").display().to_string();
    let full_outputs = [
        Output {
            name: "vm.full.gz",
            verify_with: vec![],
            identity: &full_id,
        },
        // The empty delta beside every full restores the full's disk.
        Output {
            name: "vm.sdar",
            verify_with: vec!["--full".into(), full_out],
            identity: &full_id,
        },
    ];
    let sources = [
        Snapshot::take(&f.path("base.img")),
        Snapshot::take(&f.path(CRASH_FULL)),
    ];
    let full = kill_writes(
        &f,
        &full_args,
        &out,
        &full_outputs,
        &sources[..1],
        trials,
        &mut full_time,
        &mut rng,
        &mut findings,
    );
    let delta_outputs = [Output {
        name: "vm-1.sdar",
        verify_with: vec!["--full".into(), f.path(CRASH_FULL).display().to_string()],
        identity: &delta_id,
    }];
    let sources = [
        Snapshot::take(&f.path("now.img")),
        Snapshot::take(&f.path(CRASH_FULL)),
    ];
    let delta = kill_writes(
        &f,
        &delta_args,
        &out,
        &delta_outputs,
        &sources,
        trials,
        &mut delta_time,
        &mut rng,
        &mut findings,
    );
    eprintln!(
        "crash campaign: full {} trials (killed {}, completed {}), delta {} trials (killed {}, completed {}); \
         interrupted outputs under final name {}; sources changed {} \
         (at the end full took {:?}, delta {:?}; killed after some final name was written: full {}, delta {}; \
         hidden partial files left: full {}, delta {}; {:.1} s)",
        full.trials,
        full.killed,
        full.completed,
        delta.trials,
        delta.killed,
        delta.completed,
        full.bad_outputs + delta.bad_outputs,
        full.sources_changed + delta.sources_changed,
        full_time.typical(),
        delta_time.typical(),
        full.killed_with_final,
        delta.killed_with_final,
        full.partials_left,
        delta.partials_left,
        started.elapsed().as_secs_f64()
    );
    for line in &findings {
        eprintln!("  {line}");
    }
    assert!(
        findings.is_empty(),
        "crash campaign (full and delta):\n{}",
        findings.join("\n")
    );
    for (what, t) in [("sdar full", &full), ("sdar delta", &delta)] {
        assert!(
            t.killed >= t.trials / 4,
            "too few runs of {what} were killed ({} of {}): the delays do not fit how long it takes",
            t.killed,
            t.trials
        );
    }
}
