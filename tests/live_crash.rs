//! Crash safety of `sdar live` against a model (issue 14).
//!
//! A seeded 8 MiB disk (zero blocks included, 64 KiB blocks) is backed up
//! as a full and a delta that changes some of its blocks. Each trial serves
//! the delta with `sdar live ARCHIVE --to DEST --listen unix:SOCK
//! --exit-when-complete [--rate R] [--raw]`, and a hand-written NBD client
//! (fixed newstyle, NBD_OPT_GO, simple replies, one request at a time, on
//! one connection or two when multi-conn is advertised) sends seeded random
//! writes (inside a block, across block edges, whole blocks, a few bytes,
//! byte-unaligned ones), FUA writes, write-zeroes, trims, flushes and reads.
//! sdar is killed with SIGKILL at a seeded point: right after `serving`,
//! after a number of acknowledged requests, after a delay with a request in
//! flight, at each step of its completion, or right after `complete:`. The
//! same command is started again and the disk read back through it is
//! checked against the model; after the last kill the trial lets sdar
//! finish, and compares the DEST it leaves with the model, byte for byte
//! and with `qemu-img compare`. `qemu_io_writes_survive_kills` does the same
//! with QEMU's own client (qemu-io, qemu-img).
//!
//! What is checked, per 512-byte sector:
//! - after a kill, a sector holds what it held at the last acknowledged
//!   flush (or FUA write covering it whole), or what it held right after
//!   one of the writes to it since (acknowledged or in flight): writes to
//!   one sector are not torn apart or reordered, and nothing else appears;
//! - so a sector no write touched reads as the backup's disk, and a sector
//!   whose last write was flushed reads as that write;
//! - while sdar runs, every read returns exactly what the model says;
//! - trimmed sectors may read as anything (NBD promises nothing for them)
//!   until a whole-sector write covers them again;
//! - the final DEST equals the model, and nothing hidden is left beside it.
//!
//! And per run: the same command goes on after every kill (it may refuse,
//! with exit 2, only a DEST that a run before put in place, naming the
//! state file to remove if that run was killed before removing it; and a
//! run that finds every block in may complete and exit before a client
//! connects);
//! every block present or written at an acknowledged flush is counted
//! "already there" when it starts again (nothing present is fetched again).
//!
//! Figures are printed (`--nocapture`): trials, kills, writes checked,
//! flushed writes lost, mismatching untouched bytes, and the rest; every
//! figure of something wrong must be 0.
//!
//! The long campaign (60 trials of seeded kinds, about two minutes):
//!
//! ```text
//! cargo test -p sdar --test live_crash -- --ignored --nocapture
//! ```
//!
//! `LIVE_CRASH_SEED=N` with `--ignored` runs the one trial of seed N
//! (every failure names its seed); `LIVE_CRASH_TRIALS=N` sets the count;
//! `LIVE_CRASH_VERBOSE=1` prints what each trial did.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

const BLOCK: usize = 65_536;
const SECTOR: usize = 512;
const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
const DISK_LEN: usize = 8 * MIB;

/// How long sdar may take to say `serving`, and to finish once asked.
const START_LIMIT: Duration = Duration::from_secs(30);
const FINISH_LIMIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// The backup

/// A scratch folder with the full and the delta of a seeded disk.
struct Backup {
    dir: tempfile::TempDir,
    /// What the delta restores: the bytes every untouched sector must read as.
    disk: Vec<u8>,
}

impl Backup {
    /// `backup/vm-1.sdar`, with `backup/vm.full.gz` beside it.
    fn archive(&self) -> PathBuf {
        self.dir.path().join("backup/vm-1.sdar")
    }
}

/// The disk of `sdar sample-disk --seed seed` (zero regions, text, random
/// data), its full, and a delta of it changed as a running VM would: a
/// page of random bytes in every fifth block, zero blocks included, and one
/// block of data zeroed.
fn backup(seed: u64) -> Backup {
    let dir = scratch();
    let d = dir.path();
    for sub in ["vm", "backup"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    let sectors = (DISK_LEN / SECTOR) as u64;
    let base = sample_vmdk(
        &d.join("vm"),
        "base",
        DescriptorKind::MonolithicFlat,
        sectors,
        seed,
    );
    // Whatever the seed, a few zero blocks (the sample has zero regions,
    // not always block-aligned ones in a few MiB).
    let mut base_disk = base.disk;
    for b in [1, 2, 33, 47] {
        base_disk[b * BLOCK..(b + 1) * BLOCK].fill(0);
    }
    fs::write(d.join("vm").join(&base.flat), &base_disk).unwrap();
    sdar(
        d,
        &["full", "vm/base.vmdk", "-o", "backup/vm.full.gz", "-q"],
    )
    .success();
    let mut disk = base_disk;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let blocks = DISK_LEN / BLOCK;
    for b in (0..blocks).step_by(5) {
        let at = b * BLOCK + rng.below(BLOCK / PAGE) * PAGE;
        rng.fill(&mut disk[at..at + PAGE]);
    }
    let zeroed = (blocks / 2..blocks)
        .find(|&b| disk[b * BLOCK..(b + 1) * BLOCK].iter().any(|&x| x != 0))
        .expect("the sample disk has data in its second half");
    disk[zeroed * BLOCK..(zeroed + 1) * BLOCK].fill(0);
    fs::write(d.join("vm/now-flat.vmdk"), &disk).unwrap();
    let descriptor = descriptor_text(DescriptorKind::MonolithicFlat, sectors, "now-flat.vmdk", 0);
    fs::write(d.join("vm/now.vmdk"), descriptor).unwrap();
    let args = [
        "delta",
        "vm/now.vmdk",
        "--full",
        "backup/vm.full.gz",
        "-o",
        "backup/vm-1.sdar",
        "-q",
    ];
    sdar(d, &args).success();
    Backup { dir, disk }
}

// ---------------------------------------------------------------------------
// A minimal NBD client: fixed newstyle, NBD_OPT_GO, simple replies
// (NetworkBlockDevice/nbd doc/proto.md).

const NBD_MAGIC: &[u8; 8] = b"NBDMAGIC";
const IHAVEOPT: &[u8; 8] = b"IHAVEOPT";
const NBD_REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1;
const NBD_FLAG_NO_ZEROES: u16 = 2;
const NBD_OPT_GO: u32 = 7;
const NBD_REP_ACK: u32 = 1;
const NBD_REP_INFO: u32 = 3;
const NBD_INFO_EXPORT: u16 = 0;
const NBD_FLAG_READ_ONLY: u16 = 1 << 1;
const NBD_FLAG_SEND_FLUSH: u16 = 1 << 2;
const NBD_FLAG_SEND_FUA: u16 = 1 << 3;
const NBD_FLAG_SEND_TRIM: u16 = 1 << 5;
const NBD_FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
const NBD_FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
const NBD_CMD_READ: u16 = 0;
const NBD_CMD_WRITE: u16 = 1;
const NBD_CMD_DISC: u16 = 2;
const NBD_CMD_FLUSH: u16 = 3;
const NBD_CMD_TRIM: u16 = 4;
const NBD_CMD_WRITE_ZEROES: u16 = 6;
const NBD_CMD_FLAG_FUA: u16 = 1;
const NBD_CMD_FLAG_NO_HOLE: u16 = 1 << 1;

#[derive(Debug)]
enum NbdError {
    /// The connection ended: the server is gone (killed, we hope).
    Lost(io::Error),
    /// The server answered with this error number.
    Refused(u32),
}

type NbdResult<T> = Result<T, NbdError>;

fn lost(e: io::Error) -> NbdError {
    // A reply that never comes while the server lives is a hang, not a kill.
    assert!(
        !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "no answer from sdar within the read timeout: {e}"
    );
    NbdError::Lost(e)
}

struct Nbd {
    sock: UnixStream,
    size: u64,
    flags: u16,
    cookie: u64,
}

impl Nbd {
    /// Handshake to transmission on the default export.
    fn connect(path: &Path) -> NbdResult<Nbd> {
        let mut sock = UnixStream::connect(path).map_err(lost)?;
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut greeting = [0u8; 18];
        sock.read_exact(&mut greeting).map_err(lost)?;
        assert_eq!(&greeting[..8], NBD_MAGIC, "greeting magic");
        assert_eq!(&greeting[8..16], IHAVEOPT, "fixed newstyle greeting");
        let server = u16::from_be_bytes([greeting[16], greeting[17]]);
        assert_ne!(server & NBD_FLAG_FIXED_NEWSTYLE, 0, "fixed newstyle");
        let client = u32::from(NBD_FLAG_FIXED_NEWSTYLE | (server & NBD_FLAG_NO_ZEROES));
        let mut go = Vec::new();
        go.extend_from_slice(&client.to_be_bytes());
        go.extend_from_slice(IHAVEOPT);
        go.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
        go.extend_from_slice(&6u32.to_be_bytes());
        go.extend_from_slice(&0u32.to_be_bytes()); // name: "" (the default export)
        go.extend_from_slice(&0u16.to_be_bytes()); // no information requests
        sock.write_all(&go).map_err(lost)?;
        let mut export = None;
        loop {
            let mut head = [0u8; 20];
            sock.read_exact(&mut head).map_err(lost)?;
            assert_eq!(be64(&head[0..8]), NBD_REP_MAGIC, "option reply magic");
            assert_eq!(be32(&head[8..12]), NBD_OPT_GO, "reply to GO");
            let kind = be32(&head[12..16]);
            let mut data = vec![0u8; be32(&head[16..20]) as usize];
            sock.read_exact(&mut data).map_err(lost)?;
            match kind {
                NBD_REP_ACK => break,
                NBD_REP_INFO if be16(&data[0..2]) == NBD_INFO_EXPORT => {
                    export = Some((be64(&data[2..10]), be16(&data[10..12])));
                }
                NBD_REP_INFO => {}
                other => panic!("NBD_OPT_GO answered {other:#x}"),
            }
        }
        let (size, flags) = export.expect("GO sent no NBD_INFO_EXPORT");
        assert_eq!(flags & NBD_FLAG_READ_ONLY, 0, "the export is read-only");
        assert_ne!(flags & NBD_FLAG_SEND_FLUSH, 0, "flush is not advertised");
        assert_ne!(flags & NBD_FLAG_SEND_FUA, 0, "FUA is not advertised");
        Ok(Nbd {
            sock,
            size,
            flags,
            cookie: 0,
        })
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Sends one request and reads its simple reply's header.
    fn request(
        &mut self,
        flags: u16,
        kind: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) -> NbdResult<()> {
        self.cookie += 1;
        let mut m = Vec::with_capacity(28 + payload.len());
        m.extend_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&self.cookie.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(payload);
        self.sock.write_all(&m).map_err(lost)?;
        let mut reply = [0u8; 16];
        self.sock.read_exact(&mut reply).map_err(lost)?;
        assert_eq!(
            be32(&reply[0..4]),
            NBD_SIMPLE_REPLY_MAGIC,
            "simple reply magic"
        );
        assert_eq!(be64(&reply[8..16]), self.cookie, "reply to another request");
        match be32(&reply[4..8]) {
            0 => Ok(()),
            errno => Err(NbdError::Refused(errno)),
        }
    }

    fn read(&mut self, offset: u64, len: usize) -> NbdResult<Vec<u8>> {
        self.request(0, NBD_CMD_READ, offset, len as u32, &[])?;
        let mut data = vec![0u8; len];
        self.sock.read_exact(&mut data).map_err(lost)?;
        Ok(data)
    }

    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> NbdResult<()> {
        let flags = if fua { NBD_CMD_FLAG_FUA } else { 0 };
        self.request(flags, NBD_CMD_WRITE, offset, data.len() as u32, data)
    }

    fn write_zeroes(&mut self, offset: u64, len: usize, no_hole: bool) -> NbdResult<()> {
        let flags = if no_hole { NBD_CMD_FLAG_NO_HOLE } else { 0 };
        self.request(flags, NBD_CMD_WRITE_ZEROES, offset, len as u32, &[])
    }

    fn trim(&mut self, offset: u64, len: usize) -> NbdResult<()> {
        self.request(0, NBD_CMD_TRIM, offset, len as u32, &[])
    }

    fn flush(&mut self) -> NbdResult<()> {
        self.request(0, NBD_CMD_FLUSH, 0, 0, &[])
    }

    /// NBD_CMD_DISC (no reply), then waits for the server to close.
    fn disconnect(mut self) {
        self.cookie += 1;
        let mut m = Vec::new();
        m.extend_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        m.extend_from_slice(&0u16.to_be_bytes());
        m.extend_from_slice(&NBD_CMD_DISC.to_be_bytes());
        m.extend_from_slice(&self.cookie.to_be_bytes());
        m.extend_from_slice(&[0; 12]);
        self.sock.write_all(&m).expect("cannot send NBD_CMD_DISC");
        let mut rest = Vec::new();
        let _ = self.sock.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{} bytes after NBD_CMD_DISC", rest.len());
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes(b.try_into().unwrap())
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}
fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().unwrap())
}

// ---------------------------------------------------------------------------
// The model

/// A sector's content, by fingerprint.
type Print = u64;
/// What a trimmed sector may hold: anything.
const ANY: Print = u64::MAX;

fn print(sector: &[u8]) -> Print {
    let h = blake3::hash(sector);
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()).min(ANY - 1)
}

fn add(set: &mut Vec<Print>, p: Print) {
    if !set.contains(&p) {
        set.push(p);
    }
}

#[derive(Clone)]
struct SectorState {
    /// What it may hold after a kill if no later write was kept: one content,
    /// or several after a kill left it undecided.
    durable: Vec<Print>,
    /// What the writes since the last flush gave it (acknowledged or in flight).
    pending: Vec<(usize, Print)>,
    /// Trimmed: reads may show anything.
    any: bool,
    /// The last write to it (None: never written).
    last: Option<usize>,
    /// Every content in `durable` was flushed: no write to it was pending
    /// at a kill since its last flush.
    settled: bool,
}

/// One write-type request (write, write-zeroes, trim).
struct Op {
    what: String,
    sectors: Range<usize>,
    session: usize,
    acked: bool,
    flushed: bool,
    checked: bool,
}

struct Model {
    backup: Vec<u8>,
    /// What a read returns now, except in `any` sectors.
    now: Vec<u8>,
    sectors: Vec<SectorState>,
    ops: Vec<Op>,
    /// Sectors written since sdar last started.
    written_since_start: BTreeSet<usize>,
}

/// The sectors that `len` bytes at `offset` touch.
fn sectors_of(offset: usize, len: usize) -> Range<usize> {
    offset / SECTOR..(offset + len).div_ceil(SECTOR)
}

/// A sector that a read after a kill found wrong.
#[derive(Debug, PartialEq)]
enum Wrong {
    /// Never written, and not the backup's bytes: this many bytes differ.
    Untouched(usize),
    /// Everything written to it had been flushed, and it is not that.
    FlushedLost,
    /// Written since the last flush, and neither what it held then nor any later write.
    Torn,
}

impl Model {
    fn new(backup: &[u8]) -> Model {
        let sectors = (0..backup.len() / SECTOR)
            .map(|s| SectorState {
                durable: vec![print(&backup[s * SECTOR..(s + 1) * SECTOR])],
                pending: Vec::new(),
                any: false,
                last: None,
                settled: true,
            })
            .collect();
        Model {
            backup: backup.to_vec(),
            now: backup.to_vec(),
            sectors,
            ops: Vec::new(),
            written_since_start: BTreeSet::new(),
        }
    }

    fn sector(&self, s: usize) -> &[u8] {
        &self.now[s * SECTOR..(s + 1) * SECTOR]
    }

    fn current(&self, s: usize) -> Print {
        if self.sectors[s].any {
            ANY
        } else {
            print(self.sector(s))
        }
    }

    /// A write-type request about to be sent.
    fn begin(&mut self, what: String, offset: usize, len: usize, session: usize) -> usize {
        self.ops.push(Op {
            what,
            sectors: sectors_of(offset, len),
            session,
            acked: false,
            flushed: false,
            checked: false,
        });
        self.ops.len() - 1
    }

    /// `data` written at `offset` by request `op` (before its answer: a
    /// request in flight may or may not have happened).
    fn write(&mut self, op: usize, offset: usize, data: &[u8]) {
        self.now[offset..offset + data.len()].copy_from_slice(data);
        for s in sectors_of(offset, data.len()) {
            let whole = offset <= s * SECTOR && (s + 1) * SECTOR <= offset + data.len();
            let st = &mut self.sectors[s];
            if whole {
                st.any = false;
            }
            st.last = Some(op);
            let c = self.current(s);
            self.sectors[s].pending.push((op, c));
            self.written_since_start.insert(s);
        }
    }

    /// A trim of whole sectors: they may read as anything from now on.
    fn trim(&mut self, op: usize, offset: usize, len: usize) {
        assert!(offset.is_multiple_of(SECTOR) && len.is_multiple_of(SECTOR));
        for s in sectors_of(offset, len) {
            let st = &mut self.sectors[s];
            st.any = true;
            st.last = Some(op);
            st.pending.push((op, ANY));
            self.written_since_start.insert(s);
        }
    }

    fn acked(&mut self, op: usize) {
        self.ops[op].acked = true;
    }

    /// A FUA write acknowledged: the sectors it covers whole are durable.
    fn fua(&mut self, offset: usize, len: usize) {
        for s in sectors_of(offset, len) {
            if offset <= s * SECTOR && (s + 1) * SECTOR <= offset + len {
                let c = self.current(s);
                let st = &mut self.sectors[s];
                st.durable = vec![c];
                st.pending.clear();
                st.settled = true;
            }
        }
    }

    /// A flush acknowledged: everything acknowledged before it is durable.
    fn flushed(&mut self) {
        for s in 0..self.sectors.len() {
            let c = self.current(s);
            let st = &mut self.sectors[s];
            st.durable = vec![c];
            st.pending.clear();
            st.settled = true;
        }
        for op in &mut self.ops {
            op.flushed |= op.acked;
        }
    }

    /// A flush acknowledged while other connections wrote: the writes
    /// acknowledged before it was sent (`acked`, by op) are durable. Each
    /// sector is written by one connection only, so its pending writes
    /// acknowledged then are the first ones.
    fn flushed_upto(&mut self, acked: &[bool]) {
        for st in &mut self.sectors {
            if let Some(i) = st
                .pending
                .iter()
                .rposition(|&(op, _)| acked.get(op).copied().unwrap_or(false))
            {
                st.durable = vec![st.pending[i].1];
                st.pending.drain(..=i);
                st.settled = true;
            }
        }
        for (op, &a) in self.ops.iter_mut().zip(acked) {
            op.flushed |= a;
        }
    }

    /// What every op's acknowledgement says now, for `flushed_upto`.
    fn acked_now(&self) -> Vec<bool> {
        self.ops.iter().map(|o| o.acked).collect()
    }

    /// sdar was killed: each sector now holds its durable content or one of
    /// the contents written since, and reads decide which.
    fn killed(&mut self) {
        for st in &mut self.sectors {
            st.settled &= st.pending.is_empty();
            for (_, c) in std::mem::take(&mut st.pending) {
                add(&mut st.durable, c);
            }
            st.any = st.durable.contains(&ANY);
        }
    }

    /// Sectors a kill left undecided: they must be read before anything
    /// else writes into them.
    fn undecided(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.sectors.len()).filter(|&s| self.sectors[s].durable.len() > 1)
    }

    /// Sector `s` read as `got` after a kill (before any write to it since).
    fn check_after_kill(&mut self, s: usize, got: &[u8]) -> Option<Wrong> {
        let p = print(got);
        let st = &mut self.sectors[s];
        assert!(st.pending.is_empty(), "sector {s} checked after a write");
        let ok = st.any || st.durable.contains(&p);
        let wrong = if ok {
            None
        } else if st.last.is_none() {
            let want = &self.backup[s * SECTOR..(s + 1) * SECTOR];
            Some(Wrong::Untouched(
                got.iter().zip(want).filter(|(a, b)| a != b).count(),
            ))
        } else if st.settled {
            Some(Wrong::FlushedLost)
        } else {
            Some(Wrong::Torn)
        };
        if wrong.is_some() {
            // Go on from what is there, so one loss is counted once.
            st.durable = vec![p];
        }
        if !st.any {
            self.now[s * SECTOR..(s + 1) * SECTOR].copy_from_slice(got);
        }
        wrong
    }

    /// Bytes of a live read at `offset` that differ from the model.
    fn check_read(&self, offset: usize, got: &[u8]) -> Vec<usize> {
        (0..got.len())
            .filter(|&i| {
                let at = offset + i;
                !self.sectors[at / SECTOR].any && got[i] != self.now[at]
            })
            .map(|i| offset + i)
            .collect()
    }

    /// What the ops that wrote sector `s` were, for messages.
    fn history(&self, s: usize) -> String {
        let ops: Vec<String> = self
            .ops
            .iter()
            .filter(|op| op.sectors.contains(&s))
            .map(|op| {
                format!(
                    "{} [session {}{}{}]",
                    op.what,
                    op.session,
                    if op.acked {
                        ", acknowledged"
                    } else {
                        ", in flight"
                    },
                    if op.flushed { ", flushed" } else { "" }
                )
            })
            .collect();
        if ops.is_empty() {
            "never written".into()
        } else {
            ops.join("; ")
        }
    }
}

// ---------------------------------------------------------------------------
// sdar live as a child process

/// A running `sdar live`, killed (SIGKILL) and reaped when dropped.
struct Live {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line so far.
    stdout: Vec<String>,
    stderr_path: PathBuf,
    what: String,
}

/// `sdar live` ended before it said `serving`.
struct Exited {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Live {
    /// Starts `sdar args` in `dir` and waits for its `serving` line; when
    /// `kill_on` is given, the stdout reader kills sdar the moment a line
    /// starting with it appears.
    fn start(
        dir: &Path,
        args: &[String],
        log: &str,
        kill_on: Option<&'static str>,
    ) -> Result<Live, Exited> {
        let stderr_path = dir.join(log);
        let what = format!("sdar {}", args.join(" "));
        let mut child = Command::new(SDAR)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
        let pid = child.id();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if kill_on.is_some_and(|p| line.starts_with(p)) {
                    sigkill(pid);
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut live = Live {
            child,
            lines,
            stdout: Vec::new(),
            stderr_path,
            what,
        };
        if live.wait_for("serving ", START_LIMIT).is_some() {
            return Ok(live);
        }
        let status = live.child.wait().unwrap();
        Err(Exited {
            status,
            stdout: std::mem::take(&mut live.stdout),
            stderr: live.stderr(),
        })
    }

    /// Waits for a stdout line starting with `prefix`; None when stdout
    /// closed first. Panics after `limit`.
    fn wait_for(&mut self, prefix: &str, limit: Duration) -> Option<String> {
        if let Some(l) = self.stdout.iter().find(|l| l.starts_with(prefix)) {
            return Some(l.clone());
        }
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "`{}` printed no `{prefix}` line within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.what,
                    self.stdout.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Whether a line starting with `prefix` was printed (so far).
    fn printed(&mut self, prefix: &str) -> bool {
        self.drain();
        self.stdout.iter().any(|l| l.starts_with(prefix))
    }

    /// Its exit status if it exits within `limit`.
    fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; take its last lines.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.stdout.push(line);
                }
                return Some(status);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Takes the lines printed so far.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for sdar to end: None when SIGKILL ended it, its status when
    /// it exited by itself. Panics when another signal ended it.
    fn reap(self) -> Option<ExitStatus> {
        let what = self.what.clone();
        self.reap_as(&what)
    }

    fn reap_as(mut self, what: &str) -> Option<ExitStatus> {
        let status = self.child.wait().unwrap();
        self.drain();
        match status.signal() {
            Some(9) => None,
            None => Some(status),
            Some(_) => panic!(
                "{what}: sdar died of {status}\nstdout:\n{}\nstderr:\n{}",
                self.stdout.join("\n"),
                self.stderr()
            ),
        }
    }

    /// Waits for sdar to exit by itself; panics after `limit`.
    fn wait_exit(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; take its last lines.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.stdout.push(line);
                }
                return (status, std::mem::take(&mut self.stdout), self.stderr());
            }
            assert!(
                Instant::now() < end,
                "`{}` did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                self.what,
                self.stdout.join("\n"),
                self.stderr()
            );
            self.drain();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sigkill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    // The child is not reaped until its owner waits, so the pid is still its own.
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
}

/// Sends SIGKILL to `pid` after `delay`, from another thread.
struct Timer(std::thread::JoinHandle<()>);

impl Timer {
    fn start(pid: u32, delay: Duration) -> Timer {
        Timer(std::thread::spawn(move || {
            std::thread::sleep(delay);
            sigkill(pid);
        }))
    }

    /// Waits for the kill to be sent.
    fn join(self) {
        self.0.join().unwrap();
    }
}

/// Sends SIGKILL to `pid` the moment one of `paths` exists (polled
/// without pause, from another thread), or after [`FINISH_LIMIT`].
struct Watch(std::thread::JoinHandle<bool>);

impl Watch {
    fn start(pid: u32, paths: Vec<PathBuf>) -> Watch {
        Watch(std::thread::spawn(move || {
            let end = Instant::now() + FINISH_LIMIT;
            let seen = loop {
                if paths.iter().any(|p| p.symlink_metadata().is_ok()) {
                    break true;
                }
                if Instant::now() > end {
                    break false;
                }
                std::thread::yield_now();
            };
            sigkill(pid);
            seen
        }))
    }

    /// Whether one of the paths appeared before the time limit.
    fn join(self) -> bool {
        self.0.join().unwrap()
    }
}

// ---------------------------------------------------------------------------
// Trials

/// What the trials counted. The last five must be 0.
#[derive(Default, Clone, Copy, Debug)]
struct Figures {
    trials: u64,
    kills: u64,
    /// Write-type requests acknowledged (write, FUA write, write-zeroes, trim).
    writes: u64,
    flushes: u64,
    reads: u64,
    /// Acknowledged writes whose every sector was read back after a later
    /// kill (or found in the final DEST) and matched the model.
    writes_checked: u64,
    /// Sector reads checked against the model after a kill, and in the final DEST.
    sectors_checked: u64,
    /// Flushed writes (acknowledged before a flush, or FUA) not all there after a kill.
    flushed_writes_lost: u64,
    /// Sectors whose flushed content was not there after a kill.
    flushed_sectors_lost: u64,
    untouched_bytes_wrong: u64,
    torn_sectors: u64,
    live_bytes_wrong: u64,
    /// Requests that sdar refused with an error.
    refused: u64,
    /// Runs that found DEST complete and exited at once (exit 2).
    restarts_after_completion: u64,
    /// Of those, runs that found the state file of a run killed as it
    /// finished, and said to remove it.
    state_files_removed: u64,
    /// Blocks present at an acknowledged flush that a restart did not find
    /// there (they would be fetched again).
    refetched_blocks: u64,
    /// Kills that left DEST in place with the state file still beside it.
    kills_after_final_rename: u64,
    /// Runs that completed and exited before a client could connect.
    finished_unconnected: u64,
    /// Runs of the same command that refused to go on with what a kill left.
    not_continued: u64,
    /// Trials with any problem.
    failed_trials: u64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.trials += o.trials;
        self.kills += o.kills;
        self.writes += o.writes;
        self.flushes += o.flushes;
        self.reads += o.reads;
        self.writes_checked += o.writes_checked;
        self.sectors_checked += o.sectors_checked;
        self.flushed_writes_lost += o.flushed_writes_lost;
        self.flushed_sectors_lost += o.flushed_sectors_lost;
        self.untouched_bytes_wrong += o.untouched_bytes_wrong;
        self.torn_sectors += o.torn_sectors;
        self.live_bytes_wrong += o.live_bytes_wrong;
        self.refused += o.refused;
        self.restarts_after_completion += o.restarts_after_completion;
        self.state_files_removed += o.state_files_removed;
        self.finished_unconnected += o.finished_unconnected;
        self.kills_after_final_rename += o.kills_after_final_rename;
        self.not_continued += o.not_continued;
        self.refetched_blocks += o.refetched_blocks;
        self.failed_trials += o.failed_trials;
    }

    fn bad(&self) -> u64 {
        self.flushed_writes_lost
            + self.flushed_sectors_lost
            + self.untouched_bytes_wrong
            + self.torn_sectors
            + self.live_bytes_wrong
            + self.refused
            + self.not_continued
            + self.refetched_blocks
            + self.failed_trials
    }

    fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} trials, {} kills ({} after the final rename), {} writes ({} checked after a kill or in the final DEST), \
             {} flushes, {} reads, {} sectors checked, {} restarts refused after completion \
             ({} of them naming a state file to remove), {} runs complete before a client came; \
             flushed writes lost: {} ({} sectors), mismatching untouched bytes: {}, torn sectors: {}, \
             wrong live bytes: {}, refused requests: {}, restarts that did not continue: {}, \
             flushed blocks not found present: {}; failed trials: {}",
            self.trials,
            self.kills,
            self.kills_after_final_rename,
            self.writes,
            self.writes_checked,
            self.flushes,
            self.reads,
            self.sectors_checked,
            self.restarts_after_completion,
            self.state_files_removed,
            self.finished_unconnected,
            self.flushed_writes_lost,
            self.flushed_sectors_lost,
            self.untouched_bytes_wrong,
            self.torn_sectors,
            self.live_bytes_wrong,
            self.refused,
            self.not_continued,
            self.refetched_blocks,
            self.failed_trials
        )
    }
}

/// Where sdar is killed in one run.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// As soon as it says `serving`, before any client connects.
    AtServing,
    /// After this many acknowledged requests (a kill between requests).
    AfterRequests(usize),
    /// After this long, requests going on (usually one in flight).
    AfterDelay(Duration),
    /// After this long, two connections sending requests at once, each to
    /// its own 4 KiB pages (every other page): so both write into the same
    /// blocks, absent ones included, and one's flush covers the other's
    /// acknowledged writes.
    Concurrent(Duration),
    /// The moment it prints `complete:` (requests going on until then).
    AtComplete,
    /// The moment sdar's completion reaches this step, or a later one
    /// (requests going on until then): an index in [`COMMIT_FILES`].
    AtCommit(usize),
}

/// The shape of one trial.
#[derive(Clone, Debug)]
struct Plan {
    seed: u64,
    rate: Option<&'static str>,
    kills: Vec<Kill>,
    /// Requests in the last run, before the final flush.
    final_requests: usize,
    /// Use a second connection when multi-conn is advertised.
    two_connections: bool,
    /// `--raw`: DEST is a raw image, not a VMDK.
    raw: bool,
}

impl Plan {
    /// A random trial: 2 to 5 kills of random kinds.
    fn random(seed: u64) -> Plan {
        let mut rng = Rng::new(seed);
        let rate = [Some("1M"), Some("2M"), Some("4M")][rng.below(3)];
        let kills = (0..2 + rng.below(4))
            .map(|_| random_kill(&mut rng))
            .collect();
        Plan {
            seed,
            rate,
            kills,
            final_requests: rng.below(40),
            two_connections: rng.below(2) == 0,
            raw: rng.below(4) == 0,
        }
    }

    /// Two connections at once, killed after 3 or 4 random delays.
    fn concurrent(seed: u64) -> Plan {
        let mut rng = Rng::new(seed);
        let kills = (0..3 + rng.below(2))
            .map(|_| Kill::Concurrent(Duration::from_millis(50 + rng.below(350) as u64)))
            .collect();
        Plan {
            seed,
            rate: [Some("1M"), Some("2M")][rng.below(2)],
            kills,
            final_requests: rng.below(20),
            two_connections: true,
            raw: false,
        }
    }

    /// Killed in its very first moments, again and again.
    fn first_moments(seed: u64) -> Plan {
        let mut rng = Rng::new(seed);
        Plan {
            seed,
            rate: Some("2M"),
            kills: vec![
                Kill::AtServing,
                Kill::AfterRequests(0),
                Kill::AfterRequests(1 + rng.below(3)),
                Kill::AfterDelay(Duration::from_millis(rng.below(30) as u64)),
                Kill::AtServing,
            ],
            final_requests: 10,
            two_connections: false,
            raw: false,
        }
    }

    /// Killed as it completes: when the restored extent gets its name
    /// (`at`: AtCommit), or when it says `complete:` (AtComplete).
    fn at_completion(seed: u64, at: Kill) -> Plan {
        let mut rng = Rng::new(seed);
        Plan {
            seed,
            rate: Some("4M"),
            kills: vec![Kill::AfterRequests(rng.below(20)), at],
            final_requests: 10,
            two_connections: false,
            raw: false,
        }
    }
}

/// One connection's requests in [`Kill::Concurrent`]: writes, FUA writes,
/// write-zeroes, flushes and reads, each inside one 4 KiB page of those
/// numbered `owner` modulo 2 in the 16 blocks from `window`, until the
/// connection is lost. Returns what it counted and what went wrong.
fn guest(
    model: &Mutex<Model>,
    nbd: &mut Nbd,
    mut rng: Rng,
    owner: usize,
    window: usize,
    session: usize,
) -> (Figures, Vec<String>) {
    let lock = || model.lock().unwrap();
    let mut fig = Figures::default();
    let mut problems = Vec::new();
    let mut i = 0;
    loop {
        i += 1;
        // First a sweep of the window, both connections in step, 4 requests
        // to a block, none paced: they meet in blocks still absent.
        let block = if i <= 64 {
            (i - 1) / 4
        } else {
            if rng.below(2) == 0 {
                std::thread::sleep(Duration::from_micros(rng.below(1000) as u64));
            }
            rng.below(16)
        };
        let page = window + block * BLOCK + (rng.below(BLOCK / PAGE / 2) * 2 + owner) * PAGE;
        let (off, len) = match rng.below(3) {
            0 => (page, PAGE),
            1 => {
                let first = rng.below(PAGE / SECTOR);
                let n = 1 + rng.below(PAGE / SECTOR - first);
                (page + first * SECTOR, n * SECTOR)
            }
            _ => {
                let first = rng.below(PAGE);
                (page + first, 1 + rng.below(PAGE - first))
            }
        };
        let pick = rng.below(10);
        let r = match pick {
            0..=5 => {
                let fua = pick == 5;
                let zeroes = pick == 4 && nbd.has(NBD_FLAG_SEND_WRITE_ZEROES);
                let data = if zeroes { vec![0; len] } else { rng.bytes(len) };
                let what = format!(
                    "{} {off}+{len} (connection {owner})",
                    if zeroes { "zeroes" } else if fua { "write fua" } else { "write" }
                );
                let op = {
                    let mut m = lock();
                    let op = m.begin(what, off, len, session);
                    m.write(op, off, &data);
                    op
                };
                let r = if zeroes {
                    nbd.write_zeroes(off as u64, len, false)
                } else {
                    nbd.write(off as u64, &data, fua)
                };
                if r.is_ok() {
                    let mut m = lock();
                    m.acked(op);
                    if fua {
                        m.fua(off, len);
                    }
                    fig.writes += 1;
                }
                r
            }
            6..=7 => {
                let acked = lock().acked_now();
                let r = nbd.flush();
                if r.is_ok() {
                    lock().flushed_upto(&acked);
                    fig.flushes += 1;
                }
                r
            }
            _ => nbd.read(off as u64, len).map(|data| {
                fig.reads += 1;
                let wrong = lock().check_read(off, &data);
                if !wrong.is_empty() {
                    fig.live_bytes_wrong += wrong.len() as u64;
                    let s = wrong[0] / SECTOR;
                    problems.push(format!(
                        "run {session}, connection {owner}: read {off}+{len}: {} bytes differ from the model, first at byte {}; its writes: {}",
                        wrong.len(),
                        wrong[0],
                        lock().history(s)
                    ));
                }
            }),
        };
        match r {
            Ok(()) => {}
            Err(NbdError::Lost(_)) => return (fig, problems),
            Err(NbdError::Refused(errno)) => {
                fig.refused += 1;
                problems.push(format!(
                    "run {session}, connection {owner}: a request at {off}+{len}: sdar answered error {errno}"
                ));
            }
        }
    }
}

/// The files sdar's completion makes, in order: the descriptor under its
/// temporary name, the extent under its final name, the descriptor.
const COMMIT_FILES: [&str; 3] = [".disk.vmdk.sdar-descriptor", "disk-flat.vmdk", "disk.vmdk"];

fn random_kill(rng: &mut Rng) -> Kill {
    match rng.below(10) {
        0 => Kill::AtServing,
        1..=4 => Kill::AfterRequests(rng.below(60)),
        _ => Kill::AfterDelay(Duration::from_millis(rng.below(400) as u64)),
    }
}

struct Trial<'a> {
    backup: &'a Backup,
    plan: Plan,
    dir: PathBuf,
    rng: Rng,
    model: Model,
    fig: Figures,
    /// Runs of sdar so far.
    session: usize,
    /// What went wrong, for the failure message.
    problems: Vec<String>,
    /// Flushed writes found lost.
    lost_ops: BTreeSet<usize>,
    /// Blocks that acknowledged requests of this run made present or
    /// written, not yet flushed.
    held: BTreeSet<usize>,
    /// Blocks present or written at an acknowledged flush: a restart must
    /// find at least this many already there (nothing fetched again).
    durable_held: BTreeSet<usize>,
    /// What happened, for the failure message.
    log: Vec<String>,
}

/// How a run of requests ended.
enum Ended {
    /// The plan's number of requests was reached.
    Done,
    /// The connection was lost (sdar killed).
    Lost,
}

impl<'a> Trial<'a> {
    fn new(backup: &'a Backup, plan: Plan) -> Trial<'a> {
        let dir = backup.dir.path().join(format!("t{}", plan.seed));
        fs::create_dir(&dir).unwrap();
        Trial {
            backup,
            rng: Rng::new(plan.seed ^ 0xc4a5),
            plan,
            dir,
            model: Model::new(&backup.disk),
            fig: Figures {
                trials: 1,
                ..Figures::default()
            },
            session: 0,
            problems: Vec::new(),
            lost_ops: BTreeSet::new(),
            held: BTreeSet::new(),
            durable_held: BTreeSet::new(),
            log: Vec::new(),
        }
    }

    fn dest(&self) -> PathBuf {
        self.dir.join(if self.plan.raw {
            "disk.raw"
        } else {
            "disk.vmdk"
        })
    }

    /// The file that holds the finished disk's bytes.
    fn data_name(&self) -> &'static str {
        if self.plan.raw {
            "disk.raw"
        } else {
            "disk-flat.vmdk"
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("s")
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "live".to_string(),
            self.backup.archive().display().to_string(),
            "--to".into(),
            self.dest().display().to_string(),
            "--listen".into(),
            format!("unix:{}", self.socket().display()),
            "--exit-when-complete".into(),
        ];
        if self.plan.raw {
            a.push("--raw".into());
        }
        if let Some(rate) = self.plan.rate {
            a.push("--rate".into());
            a.push(rate.into());
        }
        a
    }

    /// Starts the trial's command again; `Err` when it exits before serving.
    fn start(&mut self, kill_on: Option<&'static str>) -> Result<Live, Exited> {
        self.session += 1;
        let log = format!("stderr.{}", self.session);
        let mut live = Live::start(&self.dir, &self.args(), &log, kill_on)?;
        // "  restoring into DEST (PARTIAL): N of M blocks already there[, continuing]"
        if let Some(line) = live.wait_for("  restoring into", START_LIMIT) {
            let there = line
                .rsplit_once(": ")
                .and_then(|(_, t)| t.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no block count in `{line}`"));
            self.log.push(format!(
                "run {}: {there} blocks already there",
                self.session
            ));
            if there < self.durable_held.len() {
                self.fig.refetched_blocks += (self.durable_held.len() - there) as u64;
                self.problems.push(format!(
                    "run {}: {there} blocks already there, but {} were present or written at an acknowledged flush",
                    self.session,
                    self.durable_held.len()
                ));
            }
        }
        Ok(live)
    }

    /// Blocks an acknowledged request touched (trim: whole blocks only).
    fn touched(&mut self, off: usize, len: usize, whole_only: bool) {
        let (first, end) = if whole_only {
            (off.div_ceil(BLOCK), (off + len) / BLOCK)
        } else {
            (off / BLOCK, (off + len).div_ceil(BLOCK))
        };
        self.held.extend(first..end.max(first));
    }

    /// An acknowledged flush (or FUA write): what this run holds is durable.
    fn held_durable(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.durable_held.extend(held);
    }

    /// sdar ended before serving: fine only when a run before had put DEST
    /// in place and this one refuses (exit 2) to start over it: either that
    /// run finished (its state file gone), or it was killed before removing
    /// its state file, and the refusal says the recovery finished and names
    /// that file, which is then removed as it says. Otherwise the same
    /// command did not continue: a problem. Either way DEST is checked next.
    fn ended_before_serving(&mut self, e: Exited) {
        let hidden = self.hidden();
        let state = format!(
            ".{}.sdar-live",
            self.dest().file_name().unwrap().to_string_lossy()
        );
        self.log.push(format!(
            "run {}: exited ({}) before serving: {}",
            self.session,
            e.status,
            e.stderr.trim()
        ));
        let refused = e.status.code() == Some(EXIT_USAGE) && self.dest().exists();
        if refused && hidden.is_empty() {
            self.fig.restarts_after_completion += 1;
            return;
        }
        if refused
            && hidden == [state.clone()]
            && e.stderr.contains("finished")
            && e.stderr.contains(&state)
        {
            self.fig.restarts_after_completion += 1;
            self.fig.state_files_removed += 1;
            fs::remove_file(self.dir.join(&state)).unwrap();
            self.log
                .push(format!("run {}: removed {state} as told", self.session));
            return;
        }
        self.fig.not_continued += 1;
        self.problems.push(format!(
            "run {}: the same command did not continue: `sdar {}` exited ({}) before serving, leaving {:?}\nstdout:\n{}\nstderr:\n{}",
            self.session,
            self.args().join(" "),
            e.status,
            listing(&self.dir),
            e.stdout.join("\n"),
            e.stderr
        ));
    }

    /// Files whose names start with a dot: sdar's partial file and bitmap.
    fn hidden(&self) -> Vec<String> {
        listing(&self.dir)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    /// Connects once `serving` is printed. None when sdar finished first:
    /// a run that finds every block in (a finished disk served again, with
    /// --exit-when-complete) may complete and exit before a client comes.
    fn connect(&mut self, live: &mut Live) -> Option<Vec<Nbd>> {
        let first = match Nbd::connect(&self.socket()) {
            Ok(c) => c,
            Err(e) => {
                let status = live.exited_within(Duration::from_secs(10));
                let finished = status.is_some_and(|s| s.success()) && live.printed("complete:");
                assert!(
                    finished,
                    "trial seed {}: cannot connect after `serving`: {e:?} (sdar: {status:?})\nstderr:\n{}",
                    self.plan.seed,
                    live.stderr()
                );
                self.log.push(format!(
                    "run {}: complete and gone before a client connected",
                    self.session
                ));
                self.fig.finished_unconnected += 1;
                return None;
            }
        };
        assert_eq!(first.size, DISK_LEN as u64, "export size");
        let mut conns = vec![first];
        if self.plan.two_connections && conns[0].has(NBD_FLAG_CAN_MULTI_CONN) {
            conns.push(Nbd::connect(&self.socket()).unwrap());
        }
        Some(conns)
    }

    /// Runs the whole plan, then checks the final DEST.
    /// The figures, and the failure message when something went wrong.
    fn run(mut self) -> (Figures, Option<String>) {
        let started = Instant::now();
        let kills = self.plan.kills.clone();
        let mut done = false;
        for kill in kills {
            self.log.push(format!("run {}: {kill:?}", self.session + 1));
            if !self.one_run(kill) {
                done = true;
                break;
            }
        }
        if !done {
            self.finish();
        }
        self.check_dest();
        self.log.push(format!("done in {:?}", started.elapsed()));
        if std::env::var_os("LIVE_CRASH_VERBOSE").is_some() {
            println!(
                "seed {}: {:?}\n  {}",
                self.plan.seed,
                self.plan,
                self.log.join("\n  ")
            );
        }
        let failure = (!self.problems.is_empty()).then(|| {
            format!(
                "trial seed {} ({:?}): {}\n{}\nlog:\n{}",
                self.plan.seed,
                self.plan,
                self.fig.report("figures"),
                first_of(&self.problems, 30),
                self.log.join("\n")
            )
        });
        (self.fig, failure)
    }

    /// One run of sdar ended by `kill`; false when sdar finished instead
    /// (DEST complete).
    fn one_run(&mut self, kill: Kill) -> bool {
        let kill_on = matches!(kill, Kill::AtComplete).then_some("complete:");
        let live = match self.start(kill_on) {
            Ok(live) => live,
            Err(e) => {
                self.ended_before_serving(e);
                return false;
            }
        };
        let watch = match kill {
            // A raw restore's completion is one rename.
            Kill::AtCommit(_) if self.plan.raw => Some(Watch::start(live.pid(), vec![self.dest()])),
            Kill::AtCommit(step) => Some(Watch::start(
                live.pid(),
                COMMIT_FILES[step..]
                    .iter()
                    .map(|f| self.dir.join(f))
                    .collect(),
            )),
            _ => None,
        };
        if let Kill::AtServing = kill {
            sigkill(live.pid());
            if let Some(status) = live.reap() {
                // It finished first (no client holds it with --exit-when-complete).
                assert!(
                    status.success(),
                    "trial seed {}: exited {status}",
                    self.plan.seed
                );
                self.log
                    .push(format!("run {}: finished before the kill", self.session));
                return false;
            }
            self.killed();
            return true;
        }
        let mut live = live;
        let Some(mut conns) = self.connect(&mut live) else {
            return false;
        };
        if self.verify_after_kill(&mut conns).is_err() {
            // Killed while checking (at `complete:`).
            self.reap_killed(live);
            return true;
        }
        match kill {
            Kill::AtServing => unreachable!(),
            Kill::AfterRequests(n) => {
                if let Ended::Lost = self.requests(&mut conns, n) {
                    panic!(
                        "trial seed {}: connection lost with no kill\nstderr:\n{}\nlog:\n{}",
                        self.plan.seed,
                        live.stderr(),
                        self.log.join("\n")
                    );
                }
                sigkill(live.pid());
            }
            Kill::AfterDelay(d) => {
                let timer = Timer::start(live.pid(), d);
                while let Ended::Done = self.requests(&mut conns, 50) {}
                timer.join();
            }
            Kill::Concurrent(d) => {
                assert_eq!(conns.len(), 2, "multi-conn is not advertised");
                let timer = Timer::start(live.pid(), d);
                self.concurrent(&mut conns);
                timer.join();
            }
            Kill::AtComplete | Kill::AtCommit(_) => {
                let end = Instant::now() + FINISH_LIMIT;
                while let Ended::Done = self.requests(&mut conns, 5) {
                    if Instant::now() > end {
                        self.problems.push(format!(
                            "run {}: sdar did not complete within {FINISH_LIMIT:?}",
                            self.session
                        ));
                        sigkill(live.pid());
                    }
                }
            }
        }
        if let Some(w) = watch {
            if !w.join() {
                self.problems.push(format!(
                    "run {}: sdar did not reach {kill:?} within {FINISH_LIMIT:?}",
                    self.session
                ));
            }
        }
        drop(conns);
        self.reap_killed(live);
        true
    }

    /// Waits for a kill already sent; panics unless SIGKILL ended sdar.
    fn reap_killed(&mut self, live: Live) {
        let what = format!("trial seed {}, run {}", self.plan.seed, self.session);
        if let Some(status) = live.reap_as(&what) {
            panic!("{what}: sdar ended by itself ({status}) instead of being killed");
        }
        self.killed();
    }

    fn killed(&mut self) {
        self.model.killed();
        self.held.clear();
        self.fig.kills += 1;
        let files: Vec<String> = listing(&self.dir)
            .into_iter()
            .filter(|n| n.starts_with('.') || n.starts_with("disk"))
            .collect();
        self.log
            .push(format!("run {}: killed, leaving {files:?}", self.session));
        let state = format!(
            ".{}.sdar-live",
            self.dest().file_name().unwrap().to_string_lossy()
        );
        if self.dest().exists() && files.contains(&state) {
            self.fig.kills_after_final_rename += 1;
        }
    }

    /// The last run: check, a few requests, flush, leave, let sdar finish.
    fn finish(&mut self) {
        self.log
            .push(format!("run {}: to the end", self.session + 1));
        let mut live = match self.start(None) {
            Ok(live) => live,
            Err(e) => return self.ended_before_serving(e),
        };
        let Some(mut conns) = self.connect(&mut live) else {
            return;
        };
        self.verify_after_kill(&mut conns)
            .unwrap_or_else(|_| panic!("trial seed {}: connection lost", self.plan.seed));
        let n = self.plan.final_requests;
        if let Ended::Lost = self.requests(&mut conns, n) {
            panic!(
                "trial seed {}: connection lost in the last run",
                self.plan.seed
            );
        }
        if let Err(e) = conns[0].flush() {
            panic!("trial seed {}: final flush: {e:?}", self.plan.seed);
        }
        self.model.flushed();
        self.held_durable();
        for c in conns {
            c.disconnect();
        }
        let (status, stdout, stderr) = live.wait_exit(FINISH_LIMIT);
        assert!(
            status.success(),
            "trial seed {}: the last run exited with {status}\nstdout:\n{}\nstderr:\n{stderr}",
            self.plan.seed,
            stdout.join("\n")
        );
        assert!(
            stdout.iter().any(|l| l.starts_with("complete:")),
            "trial seed {}: no `complete:` line\nstdout:\n{}",
            self.plan.seed,
            stdout.join("\n")
        );
    }

    /// Reads back, after a kill, every sector a kill left undecided, every
    /// sector written in the run before, and one block in eight of the rest.
    fn verify_after_kill(&mut self, conns: &mut [Nbd]) -> Result<(), ()> {
        let mut blocks: BTreeSet<usize> =
            self.model.undecided().map(|s| s * SECTOR / BLOCK).collect();
        blocks.extend(
            self.model
                .written_since_start
                .iter()
                .map(|s| s * SECTOR / BLOCK),
        );
        for b in 0..DISK_LEN / BLOCK {
            if self.rng.below(8) == 0 {
                blocks.insert(b);
            }
        }
        let mut verified = vec![false; self.model.sectors.len()];
        for b in blocks {
            let data = match conns[0].read((b * BLOCK) as u64, BLOCK) {
                Ok(d) => d,
                Err(NbdError::Lost(_)) => return Err(()),
                Err(NbdError::Refused(e)) => {
                    self.refused(format!("read of block {b} after a kill"), e);
                    continue;
                }
            };
            self.fig.reads += 1;
            self.touched(b * BLOCK, BLOCK, false);
            for (i, sector) in data.chunks(SECTOR).enumerate() {
                let s = b * BLOCK / SECTOR + i;
                self.check_sector(s, sector, "after a kill");
                verified[s] = true;
            }
        }
        self.count_checked(&verified);
        self.model.written_since_start.clear();
        Ok(())
    }

    fn check_sector(&mut self, s: usize, got: &[u8], when: &str) {
        self.fig.sectors_checked += 1;
        let Some(wrong) = self.model.check_after_kill(s, got) else {
            return;
        };
        match wrong {
            Wrong::Untouched(n) => self.fig.untouched_bytes_wrong += n as u64,
            Wrong::FlushedLost => {
                self.fig.flushed_sectors_lost += 1;
                let op = self.model.sectors[s].last;
                self.lost_ops.extend(op);
                self.fig.flushed_writes_lost = self.lost_ops.len() as u64;
            }
            Wrong::Torn => self.fig.torn_sectors += 1,
        }
        let msg = format!(
            "run {}, {when}: sector {s} (byte {}, block {}) is wrong: {wrong:?}; its writes: {}",
            self.session,
            s * SECTOR,
            s * SECTOR / BLOCK,
            self.model.history(s)
        );
        self.log.push(msg.clone());
        self.problems.push(msg);
    }

    /// Counts the acknowledged writes whose every sector is now verified.
    fn count_checked(&mut self, verified: &[bool]) {
        for op in &mut self.model.ops {
            if op.acked && !op.checked && op.sectors.clone().all(|s| verified[s]) {
                op.checked = true;
                self.fig.writes_checked += 1;
            }
        }
    }

    fn refused(&mut self, what: String, errno: u32) {
        self.fig.refused += 1;
        let msg = format!("run {}: {what}: sdar answered error {errno}", self.session);
        self.log.push(msg.clone());
        self.problems.push(msg);
    }

    /// Two threads, one per connection, sending random requests into their
    /// own pages until the connection is lost (sdar killed); the model is
    /// shared, each request entered before it is sent.
    fn concurrent(&mut self, conns: &mut [Nbd]) {
        let model = Mutex::new(std::mem::replace(&mut self.model, Model::new(&[])));
        let session = self.session;
        let seeds = [self.rng.next(), self.rng.next()];
        // Both in the same 16 blocks, so that they meet in blocks still absent.
        let window = self.rng.below(DISK_LEN / BLOCK - 15) * BLOCK;
        let results: Vec<(Figures, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = conns
                .iter_mut()
                .enumerate()
                .map(|(owner, nbd)| {
                    let model = &model;
                    let seed = seeds[owner];
                    scope.spawn(move || guest(model, nbd, Rng::new(seed), owner, window, session))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        self.model = model.into_inner().unwrap();
        for (fig, problems) in results {
            self.fig.add(&fig);
            self.problems.extend(problems);
        }
        // What the guests touched is not tracked per block here.
        self.held.clear();
    }

    /// `n` random requests, each on a random connection, paced as a guest
    /// might (half of them after a pause of up to 2 ms); stops early when
    /// the connection is lost.
    fn requests(&mut self, conns: &mut [Nbd], n: usize) -> Ended {
        for _ in 0..n {
            if self.rng.below(2) == 0 {
                std::thread::sleep(Duration::from_micros(self.rng.below(2000) as u64));
            }
            let c = self.rng.below(conns.len());
            if let Err(NbdError::Lost(_)) = self.one_request(&mut conns[c]) {
                return Ended::Lost;
            }
        }
        Ended::Done
    }

    /// A random range: inside a block, across a block edge, whole blocks,
    /// or a few bytes; byte-unaligned one time in four unless `aligned`.
    fn range(&mut self, aligned: bool) -> (usize, usize) {
        let r = &mut self.rng;
        let unaligned = !aligned && r.below(4) == 0;
        let (mut off, mut len) = match r.below(8) {
            0..=2 => {
                let b = r.below(DISK_LEN / BLOCK);
                let off = r.below(BLOCK);
                (b * BLOCK + off, 1 + r.below(BLOCK - off))
            }
            3..=4 => {
                let edge = (1 + r.below(DISK_LEN / BLOCK - 1)) * BLOCK;
                let before = 1 + r.below(8 * SECTOR);
                (edge - before, before + 1 + r.below(8 * SECTOR))
            }
            5..=6 => {
                let n = 1 + r.below(3);
                let b = r.below(DISK_LEN / BLOCK - n + 1);
                (b * BLOCK, n * BLOCK)
            }
            _ => (r.below(DISK_LEN - 16), 1 + r.below(16)),
        };
        if !unaligned {
            off = off / SECTOR * SECTOR;
            len = len.div_ceil(SECTOR) * SECTOR;
        }
        len = len.min(DISK_LEN - off).max(1);
        (off, len)
    }

    /// One random request: writes, FUA writes, write-zeroes, trims, flushes
    /// and reads, in roughly 40/8/8/6/15/23 proportions.
    fn one_request(&mut self, nbd: &mut Nbd) -> NbdResult<()> {
        let session = self.session;
        let pick = self.rng.below(100);
        let (kind, aligned) = match pick {
            0..=39 => ("write", false),
            40..=47 => ("write fua", false),
            48..=55 if nbd.has(NBD_FLAG_SEND_WRITE_ZEROES) => ("zeroes", false),
            56..=61 if nbd.has(NBD_FLAG_SEND_TRIM) => ("trim", true),
            62..=76 => ("flush", true),
            _ => ("read", false),
        };
        match kind {
            "flush" => {
                let r = nbd.flush();
                self.answered(r, "flush")?;
                self.model.flushed();
                self.held_durable();
                self.fig.flushes += 1;
                Ok(())
            }
            "read" => {
                let (off, len) = self.range(aligned);
                match nbd.read(off as u64, len) {
                    Ok(data) => {
                        self.fig.reads += 1;
                        self.touched(off, len, false);
                        let wrong = self.model.check_read(off, &data);
                        if !wrong.is_empty() {
                            self.fig.live_bytes_wrong += wrong.len() as u64;
                            let s = wrong[0] / SECTOR;
                            let msg = format!(
                                "run {session}: read {off}+{len}: {} bytes differ from the model, first at byte {} (sector {s}); its writes: {}",
                                wrong.len(),
                                wrong[0],
                                self.model.history(s)
                            );
                            self.problems.push(msg);
                            // Go on from what sdar shows.
                            self.model.now[off..off + len].copy_from_slice(&data);
                        }
                        Ok(())
                    }
                    Err(e) => self.answered(Err(e), &format!("read {off}+{len}")),
                }
            }
            _ => {
                let (off, len) = self.range(aligned);
                let fua = kind == "write fua";
                let what = format!("{kind} {off}+{len}");
                let op = self.model.begin(what.clone(), off, len, session);
                let r = match kind {
                    "trim" => {
                        self.model.trim(op, off, len);
                        nbd.trim(off as u64, len)
                    }
                    "zeroes" => {
                        self.model.write(op, off, &vec![0; len]);
                        let no_hole = self.rng.below(2) == 0;
                        nbd.write_zeroes(off as u64, len, no_hole)
                    }
                    _ => {
                        let data = self.rng.bytes(len);
                        self.model.write(op, off, &data);
                        nbd.write(off as u64, &data, fua)
                    }
                };
                self.answered(r, &what)?;
                self.model.acked(op);
                self.touched(off, len, kind == "trim");
                if fua {
                    self.model.fua(off, len);
                    // sdar answers FUA with a flush of everything.
                    self.held_durable();
                }
                self.fig.writes += 1;
                Ok(())
            }
        }
    }

    /// Passes a lost connection on; counts a refusal as a problem and goes on.
    fn answered(&mut self, r: NbdResult<()>, what: &str) -> NbdResult<()> {
        match r {
            Ok(()) => Ok(()),
            Err(NbdError::Lost(e)) => {
                self.log.push(format!(
                    "run {}: {what}: connection lost ({e})",
                    self.session
                ));
                Err(NbdError::Lost(e))
            }
            Err(NbdError::Refused(errno)) => {
                self.refused(what.to_string(), errno);
                Err(NbdError::Refused(errno))
            }
        }
    }

    /// The DEST a finished sdar leaves: a VMDK (or raw image) whose data
    /// holds in every sector what the model allows, and nothing hidden left
    /// behind; then `qemu-img compare` of it with the model, trimmed sectors
    /// taken from DEST.
    fn check_dest(&mut self) {
        let hidden = self.hidden();
        if !hidden.is_empty() {
            self.problems.push(format!(
                "sdar left {hidden:?} behind (all: {:?})",
                listing(&self.dir)
            ));
        }
        if !self.dest().exists() {
            self.problems
                .push(format!("no DEST (all: {:?})", listing(&self.dir)));
        }
        let flat_path = self.dir.join(self.data_name());
        let flat = fs::read(&flat_path).unwrap_or_else(|e| {
            panic!(
                "trial seed {}: no {}: {e} (all: {:?})",
                self.plan.seed,
                flat_path.display(),
                listing(&self.dir)
            )
        });
        assert_eq!(flat.len(), DISK_LEN, "the extent's length");
        // Everything was flushed (or sdar was killed): what the model allows
        // is what a read after a kill may show.
        self.model.killed();
        let mut verified = vec![true; self.model.sectors.len()];
        for (s, got) in flat.chunks(SECTOR).enumerate() {
            let wrong_before = self.problems.len();
            self.check_sector(s, got, "in the final DEST");
            verified[s] = self.problems.len() == wrong_before;
        }
        self.count_checked(&verified);
        let mut model = self.model.now.clone();
        for (s, st) in self.model.sectors.iter().enumerate() {
            if st.any {
                model[s * SECTOR..(s + 1) * SECTOR]
                    .copy_from_slice(&flat[s * SECTOR..(s + 1) * SECTOR]);
            }
        }
        let model_path = self.dir.join("model.raw");
        fs::write(&model_path, &model).unwrap();
        let (format, dest) = if self.plan.raw {
            ("raw", "disk.raw")
        } else {
            ("vmdk", "disk.vmdk")
        };
        let out = stock(
            &self.dir,
            "qemu-img",
            &["compare", "-f", format, "-F", "raw", dest, "model.raw"],
        );
        if out.code != 0 {
            self.problems.push(format!(
                "qemu-img compare {dest} model.raw: exit {}: {}{}",
                out.code,
                out.stdout_text(),
                out.stderr
            ));
        }
        fs::remove_file(model_path).unwrap();
    }
}

// ---------------------------------------------------------------------------
// The same with QEMU's client, one qemu-io command at a time

/// What one qemu-io command does to the disk.
#[derive(Clone, Copy, Debug)]
enum QemuOp {
    /// `write -P pattern`.
    Pattern(u8),
    /// `write -z`.
    Zeroes,
    /// `discard` (whole sectors).
    Discard,
}

impl Trial<'_> {
    fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket().display())
    }

    /// Runs qemu-io with `commands` on the export; the text it printed,
    /// and whether it exited 0 with no failure in it.
    fn qemu_io(&self, commands: &[String]) -> (bool, String) {
        let mut args = vec!["-f".to_string(), "raw".into()];
        for c in commands {
            args.push("-c".into());
            args.push(c.clone());
        }
        args.push(self.uri());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = stock(&self.dir, "qemu-io", &args);
        let text = format!("{}{}", out.stdout_text(), out.stderr);
        let failed = ["fail", "error", "Error"].iter().any(|w| text.contains(w));
        (out.code == 0 && !failed, text)
    }

    fn qemu_command(op: QemuOp, offset: usize, len: usize) -> String {
        match op {
            QemuOp::Pattern(p) => format!("write -P {p:#x} {offset} {len}"),
            QemuOp::Zeroes => format!("write -z {offset} {len}"),
            QemuOp::Discard => format!("discard {offset} {len}"),
        }
    }

    /// Enters `op` in the model as sent (not yet answered).
    fn qemu_model(&mut self, op: QemuOp, offset: usize, len: usize) -> usize {
        let what = Self::qemu_command(op, offset, len);
        let id = self.model.begin(what, offset, len, self.session);
        match op {
            QemuOp::Pattern(p) => self.model.write(id, offset, &vec![p; len]),
            QemuOp::Zeroes => self.model.write(id, offset, &vec![0; len]),
            QemuOp::Discard => self.model.trim(id, offset, len),
        }
        id
    }

    /// One qemu-io run of `op`, then `flush` when `flush`; must succeed.
    fn qemu_write(&mut self, op: QemuOp, offset: usize, len: usize, flush: bool) {
        let id = self.qemu_model(op, offset, len);
        let mut commands = vec![Self::qemu_command(op, offset, len)];
        if flush {
            commands.push("flush".into());
        }
        let (ok, text) = self.qemu_io(&commands);
        assert!(ok, "qemu-io {commands:?} failed:\n{text}");
        self.model.acked(id);
        self.fig.writes += 1;
        if flush {
            self.model.flushed();
            self.fig.flushes += 1;
        }
    }

    /// After a kill: qemu-io `read -P` of every flushed write still the
    /// last one in its sectors; then, read by `qemu-img convert`, the blocks
    /// written since the last start, those a kill left undecided and one in
    /// eight of the rest (or every block, with `all`, which completes the
    /// restore), checked sector by sector against the model.
    fn qemu_verify(&mut self, ops: &[(usize, QemuOp, usize, usize)], all: bool) {
        for &(id, op, offset, len) in ops {
            let pattern = match op {
                QemuOp::Pattern(p) => p,
                QemuOp::Zeroes => 0,
                QemuOp::Discard => continue,
            };
            let current = self.model.sectors[sectors_of(offset, len)]
                .iter()
                .all(|st| st.last == Some(id));
            if !(self.model.ops[id].flushed && current) {
                continue;
            }
            let (ok, text) = self.qemu_io(&[format!("read -P {pattern:#x} {offset} {len}")]);
            self.fig.reads += 1;
            if !ok || text.contains("Pattern verification failed") {
                self.fig.flushed_writes_lost += 1;
                self.problems.push(format!(
                    "run {}: qemu-io read -P {pattern:#x} {offset} {len} (a flushed write): {text}",
                    self.session
                ));
            }
        }
        let mut blocks: BTreeSet<usize> =
            self.model.undecided().map(|s| s * SECTOR / BLOCK).collect();
        blocks.extend(
            self.model
                .written_since_start
                .iter()
                .map(|s| s * SECTOR / BLOCK),
        );
        for b in 0..DISK_LEN / BLOCK {
            if all || self.rng.below(8) == 0 {
                blocks.insert(b);
            }
        }
        let mut verified = vec![false; self.model.sectors.len()];
        let blocks: Vec<usize> = blocks.into_iter().collect();
        // Runs of consecutive blocks, one `qemu-img convert` each (of the
        // export seen through a raw layer with an offset and a size).
        for run in blocks.chunk_by(|a, b| a + 1 == *b) {
            let (first, count) = (run[0], run.len());
            let source = format!(
                "driver=raw,offset={},size={},file.driver=nbd,file.server.type=unix,file.server.path={}",
                first * BLOCK,
                count * BLOCK,
                self.socket().display()
            );
            let out = stock(
                &self.dir,
                "qemu-img",
                &[
                    "convert",
                    "--image-opts",
                    &source,
                    "-O",
                    "raw",
                    "blocks.raw",
                ],
            );
            assert_eq!(out.code, 0, "qemu-img convert: {}", out.stderr);
            let data = fs::read(self.dir.join("blocks.raw")).unwrap();
            fs::remove_file(self.dir.join("blocks.raw")).unwrap();
            assert_eq!(data.len(), count * BLOCK, "qemu-img convert's copy");
            self.fig.reads += 1;
            for (i, got) in data.chunks(SECTOR).enumerate() {
                let s = first * BLOCK / SECTOR + i;
                self.check_sector(s, got, "read by qemu-img convert after a kill");
                verified[s] = true;
            }
        }
        self.count_checked(&verified);
        self.model.written_since_start.clear();
    }
}

/// The first `n` lines of `lines`, and how many more there are.
fn first_of(lines: &[String], n: usize) -> String {
    let mut s = lines[..lines.len().min(n)].join("\n");
    if lines.len() > n {
        s.push_str(&format!("\n... and {} more", lines.len() - n));
    }
    s
}

/// Runs `plans` one after another against one backup; prints and returns
/// the figures.
fn campaign(what: &str, backup_seed: u64, plans: Vec<Plan>) -> Figures {
    let (total, failures) = campaign_run(backup_seed, plans);
    println!("{}", total.report(what));
    assert!(
        failures.is_empty(),
        "{}\n\n{}",
        failures.join("\n\n"),
        total.report(what)
    );
    total
}

/// Runs `plans` one after another against one backup, each to its end
/// whatever the others found; prints each trial's figures.
fn campaign_run(backup_seed: u64, plans: Vec<Plan>) -> (Figures, Vec<String>) {
    let b = backup(backup_seed);
    let mut total = Figures::default();
    let mut failures = Vec::new();
    for plan in plans {
        let seed = plan.seed;
        let started = Instant::now();
        let (mut fig, failure) = Trial::new(&b, plan).run();
        if let Some(f) = failure {
            fig.failed_trials = 1;
            println!("FAILED: {f}");
            failures.push(f);
        }
        println!(
            "{}  [{:.1} s]",
            fig.report(&format!("seed {seed}")),
            started.elapsed().as_secs_f64()
        );
        total.add(&fig);
    }
    (total, failures)
}

#[test]
fn random_kills_keep_every_flushed_write() {
    require_tool("qemu-img");
    let fig = campaign(
        "random kills",
        11,
        vec![
            Plan::random(101),
            Plan::random(102),
            Plan {
                raw: true,
                ..Plan::random(103)
            },
            Plan::random(104),
        ],
    );
    assert!(fig.kills >= 4, "{fig:?}");
    assert!(fig.writes_checked > 0, "{fig:?}");
}

#[test]
fn killed_in_its_first_moments() {
    require_tool("qemu-img");
    let fig = campaign("first moments", 12, vec![Plan::first_moments(201)]);
    assert_eq!(fig.kills, 5, "{fig:?}");
}

/// Two connections writing into the same blocks at once, killed mid-way.
#[test]
fn concurrent_connections_keep_every_flushed_write() {
    require_tool("qemu-img");
    let fig = campaign("two connections", 15, vec![Plan::concurrent(501)]);
    assert!(fig.writes > 0, "{fig:?}");
}

/// Killed once it says `complete:` (DEST in place, the state file gone):
/// the same command may only refuse, with exit 2, to replace that DEST.
#[test]
fn killed_as_it_completes() {
    require_tool("qemu-img");
    campaign(
        "once complete",
        13,
        vec![
            Plan::at_completion(303, Kill::AtComplete),
            Plan {
                raw: true,
                ..Plan::at_completion(305, Kill::AtComplete)
            },
        ],
    );
}

/// Killed while completion puts DEST in place: as the descriptor is written
/// under its temporary name, the moment the data gets its final name (VMDK:
/// the extent; raw: the image), before the state file is removed. The same
/// command must go on, or refuse saying the recovery finished and which
/// state file to remove; DEST must be the model.
#[test]
fn killed_while_completion_puts_dest_in_place() {
    require_tool("qemu-img");
    campaign(
        "while completing",
        13,
        vec![
            Plan::at_completion(301, Kill::AtCommit(0)),
            Plan::at_completion(302, Kill::AtCommit(1)),
            Plan {
                raw: true,
                ..Plan::at_completion(304, Kill::AtCommit(0))
            },
        ],
    );
}

/// The model again, with QEMU's own NBD client: qemu-io writes (patterns
/// at a block edge, inside a block, unaligned, write-zeroes, discard), each
/// run flushed, then one left unflushed, and one in flight when sdar is
/// killed; after each restart qemu-io `read -P` checks the flushed writes
/// and `qemu-img convert` reads the whole export for the model; the final
/// DEST is compared with `qemu-img compare`.
#[test]
fn qemu_io_writes_survive_kills() {
    require_tool("qemu-io");
    let b = backup(14);
    let plan = Plan {
        seed: 401,
        rate: Some("1M"),
        kills: Vec::new(),
        final_requests: 0,
        two_connections: false,
        raw: false,
    };
    let mut t = Trial::new(&b, plan);
    let mut ops = Vec::new();
    let live = t
        .start(None)
        .unwrap_or_else(|e| panic!("sdar live: {}", e.stderr));
    for (op, offset, len) in [
        (QemuOp::Pattern(0x11), 3 * BLOCK - 1536, 4096),
        (QemuOp::Zeroes, 5 * BLOCK, BLOCK),
        (QemuOp::Pattern(0x22), 9 * BLOCK + 1000, 3000),
        (QemuOp::Discard, 12 * BLOCK, BLOCK),
        (QemuOp::Pattern(0x23), 20 * BLOCK, 2 * BLOCK + 512),
        (QemuOp::Zeroes, 30 * BLOCK + 512, 1024),
    ] {
        let id = t.model.ops.len();
        t.qemu_write(op, offset, len, true);
        ops.push((id, op, offset, len));
    }
    // Answered, never flushed by a command (qemu-io may flush as it exits).
    t.qemu_write(QemuOp::Pattern(0x33), 40 * BLOCK - 700, 1400, false);
    sigkill(live.pid());
    t.reap_killed(live);

    let live = t
        .start(None)
        .unwrap_or_else(|e| panic!("sdar live: {}", e.stderr));
    t.qemu_verify(&ops, false);
    let id = t.model.ops.len();
    t.qemu_write(QemuOp::Pattern(0x44), 3 * BLOCK, 512, true);
    ops.push((id, QemuOp::Pattern(0x44), 3 * BLOCK, 512));
    // 256 writes of 4 KiB in one qemu-io run, and sdar killed while it
    // runs them: those qemu-io reports as written were answered.
    let mut io_ops = Vec::new();
    let mut args = vec!["-f".to_string(), "raw".into()];
    for i in 0..256 {
        let offset = 44 * BLOCK + 512 + i * PAGE;
        let id = t.qemu_model(QemuOp::Pattern(0x55), offset, PAGE);
        io_ops.push((id, offset));
        args.push("-c".into());
        args.push(Trial::qemu_command(QemuOp::Pattern(0x55), offset, PAGE));
    }
    args.extend(["-c".into(), "flush".into(), t.uri()]);
    let io = Command::new("qemu-io")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20 + t.rng.below(40) as u64));
    sigkill(live.pid());
    let out = io.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut answered = 0;
    for (id, offset) in io_ops {
        if text.contains(&format!("wrote {PAGE}/{PAGE} bytes at offset {offset}\n")) {
            t.model.acked(id);
            t.fig.writes += 1;
            answered += 1;
        }
    }
    t.log.push(format!(
        "qemu-io had 256 writes answered when sdar was killed: {answered}"
    ));
    println!("qemu-io: {answered} of 256 writes answered before the kill");
    t.reap_killed(live);

    let live = t
        .start(None)
        .unwrap_or_else(|e| panic!("sdar live: {}", e.stderr));
    t.qemu_verify(&ops, false);
    t.qemu_write(QemuOp::Pattern(0x66), DISK_LEN - 4096, 4096, true);
    // Reading every block completes the restore; sdar exits once qemu-img leaves.
    t.qemu_verify(&ops, true);
    let (status, stdout, stderr) = live.wait_exit(FINISH_LIMIT);
    assert!(
        status.success(),
        "{status}\n{}\n{stderr}",
        stdout.join("\n")
    );
    t.check_dest();
    assert!(
        t.problems.is_empty(),
        "{}\nlog:\n{}",
        t.problems.join("\n"),
        t.log.join("\n")
    );
    println!("{}", t.fig.report("qemu-io"));
}

/// The long campaign: 60 trials, one in six killed in its first moments,
/// one in six as it completes, the rest at random points.
#[test]
#[ignore = "long: cargo test -p sdar --test live_crash -- --ignored --nocapture"]
fn long_campaign() {
    require_tool("qemu-img");
    if let Some(seed) = env_u64("LIVE_CRASH_SEED") {
        let plan = plan_for(seed);
        campaign(&format!("seed {seed}"), 1000 + seed % 7, vec![plan]);
        return;
    }
    let trials = env_u64("LIVE_CRASH_TRIALS").unwrap_or(60);
    let mut total = Figures::default();
    let mut failures = Vec::new();
    // Seven backups, trials spread over them.
    for backup_seed in 0..7u64 {
        let plans: Vec<Plan> = (1..=trials)
            .filter(|s| s % 7 == backup_seed)
            .map(plan_for)
            .collect();
        if plans.is_empty() {
            continue;
        }
        let (fig, f) = campaign_run(1000 + backup_seed, plans);
        total.add(&fig);
        failures.extend(f);
    }
    println!("{}", total.report("long campaign"));
    assert!(
        failures.is_empty() && total.bad() == 0,
        "{}\n\n{}",
        failures.join("\n\n"),
        total.report("long campaign")
    );
    assert!(total.trials >= trials, "{total:?}");
}

fn plan_for(seed: u64) -> Plan {
    match seed % 6 {
        0 => Plan::first_moments(seed),
        4 => Plan::concurrent(seed),
        3 => Plan {
            raw: seed % 4 == 3,
            ..Plan::at_completion(seed, Kill::AtCommit((seed / 6 % 3) as usize))
        },
        5 if seed % 12 == 5 => Plan::at_completion(seed, Kill::AtComplete),
        _ => Plan::random(seed),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}
