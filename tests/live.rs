//! `sdar live` driven by the clients an operator really uses: libnbd's
//! `nbdinfo` and `nbdcopy`, and QEMU's `qemu-io` and `qemu-img`. Each test
//! starts its own `sdar live` on its own socket in a scratch folder (killed
//! by a guard if the test fails), on a disk of a few MiB whose zero blocks
//! are chosen, and checks what the clients see against the disk that was
//! backed up, with the guest's writes applied: reads of absent and present
//! blocks, writes at block edges, concurrent clients, the restored disk at
//! completion, a damaged block in the full, validate mode and its overlay
//! bound, and the files and sockets it must not touch.
//!
//! The crash campaign (`tests/live_crash.rs`) and the booted VM
//! (`tests/live_vm.rs`) are elsewhere.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BLOCK: u64 = 65_536;
const SECTOR: u64 = 512;
/// 4 MiB: big enough for edges, three-block writes and a 1 MiB overlay
/// bound, small enough that the whole file runs in seconds.
const BLOCKS: u64 = 64;
const DISK_LEN: u64 = BLOCKS * BLOCK;
/// Blocks the fixture zeroes in the sample disk, so that the backup holds
/// zero blocks at the start, the end, in a run and alone.
const ZERO_BLOCKS: [u64; 7] = [2, 6, 7, 8, 30, 31, 63];
/// How long `sdar live` may take to say `serving`, and to exit.
const START_WAIT: Duration = Duration::from_secs(30);
const EXIT_WAIT: Duration = Duration::from_secs(60);
/// The longest any client may run (passed to timeout(1)).
const CLIENT_SECONDS: &str = "60";
/// Slow enough that the background restore leaves the disk's blocks
/// absent while a test reads and writes them.
const CRAWL: &str = "1K";

const FULL: &str = "backup/vm.full.gz";
/// The empty delta `sdar full` writes beside the full.
const ARCHIVE: &str = "backup/vm.sdar";
const DELTA: &str = "backup/vm-1.sdar";
const DEST: &str = "restore/crm.vmdk";
const SOCK: &str = "s.sock";

/// A scratch folder with a VM disk (`vm/base.vmdk`), its full and empty
/// delta in `backup/`, an empty `restore/`, and after `add_delta` a changed
/// disk (`vm/now.vmdk`) and its delta `backup/vm-1.sdar`.
struct Fixture {
    dir: tempfile::TempDir,
    base: Vec<u8>,
    now: Vec<u8>,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        let dir = scratch();
        let d = dir.path();
        for sub in ["vm", "backup", "restore"] {
            fs::create_dir(d.join(sub)).unwrap();
        }
        // Seeded bytes, half of each block compressible, with chosen zero blocks.
        let mut base = Rng::new(seed).bytes(DISK_LEN as usize);
        for b in 0..BLOCKS {
            let at = (b * BLOCK) as usize;
            base[at..at + BLOCK as usize / 2].fill(b as u8);
        }
        for b in ZERO_BLOCKS {
            base[range(b, 1)].fill(0);
        }
        // A data block that is mostly zeros is still data.
        base[range(40, 1)].fill(0);
        base[(40 * BLOCK + 4095) as usize] = 1;
        write_vmdk(&d.join("vm"), "base", &base);
        sdar(d, &["full", "vm/base.vmdk", "-o", FULL, "-q"]).success();
        assert_eq!(listing(&d.join("backup")), ["vm.full.gz", "vm.sdar"]);
        let zero: Vec<u64> = layout(&d.join(FULL))
            .members
            .iter()
            .filter(|m| m.zero)
            .map(|m| m.block)
            .collect();
        assert_eq!(zero, ZERO_BLOCKS, "the full should store these zero blocks");
        Fixture {
            dir,
            base,
            now: Vec::new(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn sock(&self) -> String {
        let p = self.path(SOCK);
        assert!(p.as_os_str().len() < 100, "{} is too long", p.display());
        p.to_str().unwrap().to_string()
    }

    fn listen(&self) -> String {
        format!("unix:{}", self.sock())
    }

    /// The base disk changed as a VM would change it (data into zero
    /// blocks, data blocks zeroed, pages rewritten, a run across blocks),
    /// and its delta against the full.
    fn add_delta(&mut self, seed: u64) {
        let mut now = self.base.clone();
        let mut rng = Rng::new(seed);
        now[(7 * BLOCK + 1000) as usize..(7 * BLOCK + 4000) as usize]
            .copy_from_slice(&rng.bytes(3000));
        now[range(12, 1)].fill(0);
        now[range(50, 1)].fill(0);
        for _ in 0..12 {
            let page = rng.below((DISK_LEN / 4096) as usize);
            now[page * 4096..(page + 1) * 4096].copy_from_slice(&rng.bytes(4096));
        }
        let start = (20 * BLOCK - 777) as usize;
        now[start..start + 200_000].copy_from_slice(&rng.bytes(200_000));
        write_vmdk(&self.path("vm"), "now", &now);
        sdar(
            self.root(),
            &["delta", "vm/now.vmdk", "--full", FULL, "-o", DELTA, "-q"],
        )
        .success();
        self.now = now;
    }

    /// `sdar live ARCHIVE --to DEST --listen unix:SOCK EXTRA`, serving.
    fn live(&self, archive: &str, extra: &[&str]) -> Live {
        Live::start(self.root(), &self.live_args(archive, extra))
    }

    fn live_args(&self, archive: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["live", archive, "--to", DEST, "--listen", &self.listen()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn range(block: u64, blocks: u64) -> std::ops::Range<usize> {
    (block * BLOCK) as usize..((block + blocks) * BLOCK) as usize
}

/// `dir/NAME-flat.vmdk` holding `disk`, and its monolithicFlat descriptor.
fn write_vmdk(dir: &Path, name: &str, disk: &[u8]) {
    let flat = format!("{name}-flat.vmdk");
    fs::write(dir.join(&flat), disk).unwrap();
    fs::write(
        dir.join(format!("{name}.vmdk")),
        descriptor_text(
            DescriptorKind::MonolithicFlat,
            disk.len() as u64 / SECTOR,
            &flat,
            0,
        ),
    )
    .unwrap();
}

/// A running `sdar live`, killed (SIGKILL) when dropped unless a test
/// stopped it first.
struct Live {
    child: Option<Child>,
    what: String,
    uri: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a `sdar live` ended.
struct Ended {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ended {
    #[track_caller]
    fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "`{}` ended with {:?} instead of exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
}

impl Live {
    /// Starts `sdar ARGS` in `dir` and waits for its `serving URI` line;
    /// panics, showing its output, if it ends first.
    #[track_caller]
    fn start(dir: &Path, args: &[String]) -> Live {
        match Live::try_start(dir, args) {
            Ok(live) => live,
            Err(ended) => panic!(
                "`{}` ended with {:?} before serving\nstdout:\n{}\nstderr:\n{}",
                ended.what, ended.code, ended.stdout, ended.stderr
            ),
        }
    }

    /// `Ok` once it serves, `Err` with its output if it ends before.
    fn try_start(dir: &Path, args: &[String]) -> Result<Live, Ended> {
        Live::try_start_with(dir, args, |_| {})
    }

    fn try_start_with(
        dir: &Path,
        args: &[String],
        setup: impl FnOnce(&mut Command),
    ) -> Result<Live, Ended> {
        let what = format!("sdar {}", args.join(" "));
        let mut cmd = Command::new(SDAR);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
        let (stdout, stderr): (Arc<Mutex<String>>, Arc<Mutex<String>>) = Default::default();
        let (tx, rx) = mpsc::channel::<String>();
        let out = child.stdout.take().unwrap();
        let out_text = Arc::clone(&stdout);
        let mut readers = vec![std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut t = out_text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
                let _ = tx.send(line);
            }
        })];
        let mut err = child.stderr.take().unwrap();
        let err_text = Arc::clone(&stderr);
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }));
        let mut live = Live {
            child: Some(child),
            what,
            uri: String::new(),
            stdout,
            stderr,
            readers,
        };
        let deadline = Instant::now() + START_WAIT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(uri) = line.strip_prefix("serving ") {
                        live.uri = uri.trim().to_string();
                        return Ok(live);
                    }
                }
                // Stdout closed: it ended, or is about to.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(live.wait(EXIT_WAIT)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() > deadline {
                        let ended = live.kill();
                        panic!(
                            "`{}` did not say `serving` within {START_WAIT:?}\nstdout:\n{}\nstderr:\n{}",
                            ended.what, ended.stdout, ended.stderr
                        );
                    }
                }
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Its stdout once it holds `text` (the lines after `serving` may come
    /// a moment later); panics after START_WAIT.
    #[track_caller]
    fn stdout_with(&self, text: &str) -> String {
        let deadline = Instant::now() + START_WAIT;
        loop {
            let out = self.stdout();
            if out.contains(text) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` does not print `{text}`:\n{out}\nstderr:\n{}",
                self.what,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its stderr once it holds `text`: the reader thread may be a moment
    /// behind the request that made sdar say it. False after START_WAIT.
    fn stderr_has(&self, text: &str) -> bool {
        let deadline = Instant::now() + START_WAIT;
        while !self.stderr().contains(text) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// True while the process has not ended.
    fn running(&mut self) -> bool {
        let child = self.child.as_mut().expect("already ended");
        child.try_wait().unwrap().is_none()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let child = self.child.as_ref().expect("already ended");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// SIGTERM, then its end.
    fn terminate(self) -> Ended {
        self.signal(rustix::process::Signal::TERM);
        self.wait(EXIT_WAIT)
    }

    /// SIGINT (Ctrl-C), then its end.
    fn interrupt(self) -> Ended {
        self.signal(rustix::process::Signal::INT);
        self.wait(EXIT_WAIT)
    }

    /// SIGKILL, as a crash.
    fn kill(mut self) -> Ended {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.wait(EXIT_WAIT)
    }

    /// Waits for it to end by itself; kills it and panics after `limit`.
    fn wait(mut self, limit: Duration) -> Ended {
        let mut child = self.child.take().expect("already ended");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                panic!(
                    "`{}` did not end within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.what,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Ended {
            what: self.what.clone(),
            code: status.code(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The URI of `export` on the server `uri` names (`nbd+unix:///?socket=P`
/// or `nbd://HOST:PORT`).
fn export_uri(uri: &str, export: &str) -> String {
    if let Some(rest) = uri.strip_prefix("nbd+unix:///") {
        let query = rest.trim_start_matches(|c| c != '?');
        format!("nbd+unix:///{export}{query}")
    } else {
        format!("{}/{export}", uri.trim_end_matches('/'))
    }
}

/// Runs a client tool, at most CLIENT_SECONDS (a hung server fails the
/// test rather than hanging it).
#[track_caller]
fn tool(dir: &Path, program: &str, args: &[&str]) -> Outcome {
    require_tool(program);
    require_tool("timeout");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", CLIENT_SECONDS, program])
        .args(args)
        .current_dir(dir);
    let out = run_command(format!("{program} {}", args.join(" ")), &mut cmd);
    assert_ne!(out.code, 124, "`{}` timed out", out.what);
    out
}

/// `qemu-io -f raw URI -c CMD...`.
fn qemu_io(dir: &Path, uri: &str, cmds: &[String]) -> Outcome {
    let mut args = vec!["-f", "raw", uri];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    tool(dir, "qemu-io", &args)
}

/// Panics unless every command of a qemu-io run succeeded.
#[track_caller]
fn qemu_io_ok(dir: &Path, uri: &str, cmds: &[String]) -> Outcome {
    let out = qemu_io(dir, uri, cmds);
    let text = format!("{}{}", out.stdout_text(), out.stderr);
    assert!(
        out.code == 0
            && !text.contains("failed")
            && !text.contains("error")
            && !text.contains("Error"),
        "`{}` failed ({}):\n{text}",
        out.what,
        out.code
    );
    out
}

/// The whole export through `nbdcopy`.
#[track_caller]
fn nbdcopy(dir: &Path, uri: &str, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    let _ = fs::remove_file(&out);
    tool(dir, "nbdcopy", &[uri, out.to_str().unwrap()]).success();
    let bytes = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    bytes
}

/// `len` bytes at `offset` of the default export on the Unix socket
/// `sock`, through `qemu-img convert` of a raw window on it.
#[track_caller]
fn read_window(dir: &Path, sock: &str, offset: u64, len: u64) -> Vec<u8> {
    let out = dir.join("window.raw");
    let _ = fs::remove_file(&out);
    let opts = format!(
        "driver=raw,offset={offset},size={len},file.driver=nbd,file.server.type=unix,file.server.path={sock}"
    );
    tool(
        dir,
        "qemu-img",
        &[
            "convert",
            "--image-opts",
            &opts,
            "-O",
            "raw",
            out.to_str().unwrap(),
        ],
    )
    .success();
    let bytes = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    bytes
}

/// One extent of `nbdinfo --map`: offset, length, type (bit 0 hole, bit 1
/// zero).
#[derive(Debug)]
struct Extent {
    offset: u64,
    length: u64,
    kind: u64,
}

#[track_caller]
fn map(dir: &Path, uri: &str) -> Vec<Extent> {
    let out = tool(dir, "nbdinfo", &["--map", "--json", uri]).success();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("nbdinfo --map --json: {e}\n{}", out.stdout_text()));
    let extents: Vec<Extent> = v
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| Extent {
            offset: e["offset"].as_u64().unwrap(),
            length: e["length"].as_u64().unwrap(),
            kind: e["type"].as_u64().unwrap(),
        })
        .collect();
    let mut at = 0;
    for e in &extents {
        assert_eq!(e.offset, at, "the map has a gap or overlap: {extents:?}");
        at += e.length;
    }
    assert_eq!(at, DISK_LEN, "the map does not cover the disk: {extents:?}");
    extents
}

/// The type bits the map gives each block, checking that a block is not
/// split between types.
fn block_types(extents: &[Extent]) -> Vec<u64> {
    (0..BLOCKS)
        .map(|b| {
            let (start, end) = (b * BLOCK, (b + 1) * BLOCK);
            let kinds: Vec<u64> = extents
                .iter()
                .filter(|e| e.offset < end && e.offset + e.length > start)
                .map(|e| e.kind)
                .collect();
            assert!(
                kinds.windows(2).all(|w| w[0] == w[1]),
                "block {b} has several types: {extents:?}"
            );
            kinds[0]
        })
        .collect()
}

/// Checks the map against the disk: a block reported zero reads as zeros
/// (else a client skipping zeros loses data), and every block in `zero`
/// is reported zero (so that clients can skip it).
#[track_caller]
fn check_map(extents: &[Extent], disk: &[u8], zero: &[u64]) {
    for (b, kind) in block_types(extents).into_iter().enumerate() {
        let b = b as u64;
        let is_zero = disk[range(b, 1)].iter().all(|&x| x == 0);
        if kind & 2 != 0 {
            assert!(
                is_zero,
                "block {b} holds data but the map says zero ({kind})"
            );
        }
        if zero.contains(&b) {
            assert_eq!(
                kind & 3,
                3,
                "block {b} is zero in the backup; the map says {kind}"
            );
        }
    }
}

/// A free TCP port on 127.0.0.1 (taken by the OS, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A guest write: `len` bytes of `pattern` at `offset`.
#[derive(Clone, Copy, Debug)]
struct Write {
    offset: u64,
    len: u64,
    pattern: u8,
}

impl Write {
    const fn new(offset: u64, len: u64, pattern: u8) -> Write {
        Write {
            offset,
            len,
            pattern,
        }
    }

    fn write_cmd(&self) -> String {
        format!("write -P {:#x} {} {}", self.pattern, self.offset, self.len)
    }

    fn read_cmd(&self) -> String {
        format!("read -P {:#x} {} {}", self.pattern, self.offset, self.len)
    }

    fn apply(&self, disk: &mut [u8]) {
        disk[self.offset as usize..(self.offset + self.len) as usize].fill(self.pattern);
    }
}

fn read_cmds(writes: &[Write]) -> Vec<String> {
    writes.iter().map(Write::read_cmd).collect()
}

// ---------------------------------------------------------------------------
// 1. Reading the backup: nbdinfo, nbdinfo --map, nbdcopy, qemu-img compare.

#[test]
fn clients_read_the_full_over_a_unix_socket() {
    let f = Fixture::new(1);
    let d = f.root();
    // Crawling: the clients' reads find absent blocks and fetch them.
    let live = f.live(ARCHIVE, &["--rate", CRAWL]);
    assert_eq!(live.uri, format!("nbd+unix:///?socket={}", f.sock()));

    let size = tool(d, "nbdinfo", &["--size", &live.uri]).success();
    assert_eq!(size.stdout_text().trim(), DISK_LEN.to_string());

    let list = tool(d, "nbdinfo", &["--list", "--json", &live.uri]).success();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let mut names: Vec<String> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["export-name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["", "base.vmdk", "crm.vmdk"],
        "exports: {}",
        list.stdout_text()
    );
    for e in v["exports"].as_array().unwrap() {
        assert_eq!(e["export-size"].as_u64(), Some(DISK_LEN), "{e}");
        assert_eq!(e["can_multi_conn"].as_bool(), Some(true), "{e}");
        assert_eq!(e["can_flush"].as_bool(), Some(true), "{e}");
    }

    // The map before any read (every block absent), of both exports.
    check_map(&map(d, &live.uri), &f.base, &ZERO_BLOCKS);
    let named = export_uri(&live.uri, "crm.vmdk");
    check_map(&map(d, &named), &f.base, &ZERO_BLOCKS);

    assert_same_bytes(&nbdcopy(d, &live.uri, "copy.raw"), &f.base, "nbdcopy");
    assert_same_bytes(
        &nbdcopy(d, &named, "copy.raw"),
        &f.base,
        "nbdcopy of crm.vmdk",
    );
    // The map once every block is present says the same.
    check_map(&map(d, &live.uri), &f.base, &ZERO_BLOCKS);
    for uri in [&live.uri, &named] {
        let out = tool(
            d,
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                uri,
                "vm/base-flat.vmdk",
            ],
        )
        .success();
        assert!(
            out.stdout_text().contains("identical"),
            "{}",
            out.stdout_text()
        );
    }
    // qemu-img compare can fail: against another disk it must.
    fs::write(d.join("other.raw"), &f.base[..]).unwrap();
    flip_byte(&d.join("other.raw"), 5 * BLOCK + 3);
    let out = tool(
        d,
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", &live.uri, "other.raw"],
    );
    assert_eq!(out.code, 1, "qemu-img compare against a changed disk");

    live.terminate().expect_code(EXIT_OK);
}

#[test]
fn clients_read_a_delta_over_tcp() {
    let mut f = Fixture::new(2);
    f.add_delta(3);
    let d = f.root();
    let port = free_port();
    let listen = format!("tcp:127.0.0.1:{port}");
    let live = Live::start(
        d,
        &[DELTA, "--to", DEST, "--listen", &listen, "--rate", CRAWL]
            .iter()
            .fold(vec!["live".to_string()], |mut v, s| {
                v.push(s.to_string());
                v
            }),
    );
    assert_eq!(live.uri, format!("nbd://127.0.0.1:{port}"));

    let size = tool(d, "nbdinfo", &["--size", &live.uri]).success();
    assert_eq!(size.stdout_text().trim(), DISK_LEN.to_string());
    let list = tool(d, "nbdinfo", &["--list", &live.uri]).success();
    let text = list.stdout_text();
    assert!(
        text.contains("export=\"\"") && text.contains("export=\"crm.vmdk\""),
        "nbdinfo --list:\n{text}"
    );

    // Zero blocks of the changed disk: the base's, less block 7 (written
    // into), plus blocks 12 and 50 (zeroed), unless a page write hit them.
    let zero: Vec<u64> = (0..BLOCKS)
        .filter(|&b| f.now[range(b, 1)].iter().all(|&x| x == 0))
        .collect();
    assert!(zero.contains(&12) && !zero.contains(&7), "{zero:?}");
    check_map(&map(d, &live.uri), &f.now, &zero);

    let named = export_uri(&live.uri, "crm.vmdk");
    assert_same_bytes(
        &nbdcopy(d, &named, "copy.raw"),
        &f.now,
        "nbdcopy of the delta",
    );
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &f.now,
        "nbdcopy of the delta",
    );
    tool(
        d,
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            &live.uri,
            "vm/now-flat.vmdk",
        ],
    )
    .success();
    // Not the base: the delta's blocks are served, not the full's.
    assert_eq!(
        tool(
            d,
            "qemu-img",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                &live.uri,
                "vm/base-flat.vmdk"
            ],
        )
        .code,
        1
    );
    check_map(&map(d, &live.uri), &f.now, &zero);
    live.terminate().expect_code(EXIT_OK);
}

#[test]
fn guest_writes_merge_with_every_kind_of_delta_block() {
    use archive_format::ChangeKind;
    let mut f = Fixture::new(16);
    f.add_delta(17);
    let d = f.root();
    // The full in another folder, given with --full.
    fs::create_dir(d.join("elsewhere")).unwrap();
    fs::rename(f.path(FULL), d.join("elsewhere/vm.full.gz")).unwrap();
    let changes = delta_layout(&f.path(DELTA)).members;
    let of_kind = |want: fn(&ChangeKind) -> bool| -> u64 {
        changes
            .iter()
            .find(|m| want(&m.kind))
            .unwrap_or_else(|| panic!("the delta has no such block: {changes:?}"))
            .block
    };
    let patch = of_kind(|k| matches!(k, ChangeKind::Patch { .. }));
    let data = of_kind(|k| matches!(k, ChangeKind::Data));
    let zero = of_kind(|k| matches!(k, ChangeKind::Zero));
    let unchanged = (0..BLOCKS)
        .find(|b| !changes.iter().any(|m| m.block == *b) && !ZERO_BLOCKS.contains(b))
        .unwrap();
    let writes: Vec<Write> = [patch, data, zero, unchanged]
        .iter()
        .enumerate()
        .map(|(i, &b)| Write::new(b * BLOCK + 4000 + i as u64 * 100, 5000, 0x70 + i as u8))
        .collect();
    let args = f.live_args(DELTA, &["--full", "elsewhere/vm.full.gz", "--rate", CRAWL]);
    let live = Live::start(d, &args);
    let mut cmds: Vec<String> = writes.iter().map(Write::write_cmd).collect();
    cmds.push("flush".into());
    qemu_io_ok(d, &live.uri, &cmds);
    let mut model = f.now.clone();
    for w in &writes {
        w.apply(&mut model);
    }
    qemu_io_ok(d, &live.uri, &read_cmds(&writes));
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &model,
        "delta blocks with writes",
    );
    live.terminate().expect_code(EXIT_OK);
    if !d.join(DEST).exists() {
        let mut args = args;
        args.truncate(args.len() - 2);
        args.push("--exit-when-complete".into());
        Live::start(d, &args).wait(EXIT_WAIT).expect_code(EXIT_OK);
    }
    assert_same_bytes(
        &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
        &model,
        "DEST",
    );

    // Validate mode serves the delta too.
    let mut v = validate_args(&f, &["--full", "elsewhere/vm.full.gz"]);
    v[1] = DELTA.into();
    fs::create_dir(d.join("tmp")).unwrap();
    let live = start_validate(d, &v);
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &f.now,
        "validate of the delta",
    );
    live.terminate().expect_code(EXIT_OK);
}

// ---------------------------------------------------------------------------
// 2. Writes at block edges, read back, kept across a restart.

/// Writes that start and end at every kind of edge, into blocks in every
/// state (block 20 is read first, so present; the rest are absent while
/// the fill crawls; 2, 6, 30 and 63 are zero in the backup).
const EDGE_WRITES: [Write; 11] = [
    Write::new(0, 1, 0xa0),                           // the disk's first byte
    Write::new(BLOCK - 1, 2, 0xa1),                   // 65535: one byte each side of an edge
    Write::new(2 * BLOCK - 512, 512, 0xa2),           // a block's last sector
    Write::new(3 * BLOCK - 1000, 3000, 0xa3),         // across a zero and a data block
    Write::new(5 * BLOCK - 100, BLOCK + 200, 0xa4),   // across three blocks
    Write::new(20 * BLOCK + 4096, 4096, 0xa5),        // inside a present block
    Write::new(25 * BLOCK + 777, 1234, 0xa6),         // inside an absent data block
    Write::new(30 * BLOCK + 100, 200, 0xa7),          // inside an absent zero block
    Write::new(44 * BLOCK, 2 * BLOCK, 0xa8),          // two whole blocks
    Write::new(47 * BLOCK + 512, BLOCK - 1024, 0xa9), // all but a sector each side
    Write::new(DISK_LEN - 1, 1, 0xaa),                // the disk's last byte
];

#[test]
fn qemu_io_writes_at_block_edges_read_back_and_survive_a_restart() {
    let f = Fixture::new(4);
    let d = f.root();
    let args = f.live_args(ARCHIVE, &["--rate", CRAWL]);
    let live = Live::start(d, &args);
    qemu_io_ok(d, &live.uri, &[format!("read {} {BLOCK}", 20 * BLOCK)]);

    let mut model = f.base.clone();
    let mut cmds: Vec<String> = Vec::new();
    for (i, w) in EDGE_WRITES.iter().enumerate() {
        // Every other write with FUA, the rest made durable by the flush.
        let c = w.write_cmd();
        cmds.push(if i % 2 == 1 {
            c.replacen("write", "write -f", 1)
        } else {
            c
        });
        w.apply(&mut model);
    }
    cmds.push("flush".into());
    qemu_io_ok(d, &live.uri, &cmds);
    // Read back on a new connection, sector by sector and whole.
    qemu_io_ok(d, &live.uri, &read_cmds(&EDGE_WRITES));
    // The bytes around each write are the backup's.
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &model,
        "after the writes",
    );
    // A write is seen by the next read on another connection without a flush.
    let late = Write::new(33 * BLOCK + 10, 20, 0xab);
    qemu_io_ok(d, &live.uri, &[late.write_cmd()]);
    late.apply(&mut model);
    qemu_io_ok(d, &live.uri, &[late.read_cmd()]);
    // And a read pattern that is not there fails: the reads above can fail.
    let wrong = Write::new(25 * BLOCK + 777, 1234, 0xa5);
    assert_ne!(qemu_io(d, &live.uri, &[wrong.read_cmd()]).code, 0);

    let ended = live.terminate().expect_code(EXIT_OK);
    assert!(
        !ended.stdout.contains("complete:"),
        "the fill crawls: {}",
        ended.stdout
    );

    let live = Live::start(d, &args);
    let mut all = EDGE_WRITES.to_vec();
    all.push(late);
    qemu_io_ok(d, &live.uri, &read_cmds(&all));
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &model,
        "after a restart",
    );
    // Zero blocks the guest wrote into are data now; the others still zero.
    check_map(&map(d, &live.uri), &model, &[7, 8, 31]);
    live.terminate().expect_code(EXIT_OK);

    // Complete: the restart found every block present if the copies above
    // read them all (a map that reports zero blocks lets nbdcopy skip
    // them); if not, the same command without the crawl completes it.
    if !d.join(DEST).exists() {
        let mut args = args;
        args.truncate(args.len() - 2);
        args.push("--exit-when-complete".into());
        let ended = Live::start(d, &args).wait(EXIT_WAIT).expect_code(EXIT_OK);
        assert!(ended.stdout.contains("complete:"), "{}", ended.stdout);
    }
    assert_eq!(listing(&d.join("restore")), ["crm-flat.vmdk", "crm.vmdk"]);
    assert_same_bytes(
        &fs::read(f.path("restore/crm-flat.vmdk")).unwrap(),
        &model,
        "DEST",
    );
}

/// `actual` equals `model` outside `unspecified` (ranges a TRIM left
/// undefined).
#[track_caller]
fn assert_same_except(actual: &[u8], model: &[u8], unspecified: &[(u64, u64)], what: &str) {
    let mut expected = model.to_vec();
    for &(at, len) in unspecified {
        let r = at as usize..(at + len) as usize;
        expected[r.clone()].copy_from_slice(&actual[r]);
    }
    assert_same_bytes(actual, &expected, what);
}

#[test]
fn write_zeroes_and_trim_keep_the_rest_of_their_blocks() {
    let f = Fixture::new(14);
    let d = f.root();
    let args = f.live_args(ARCHIVE, &["--rate", CRAWL]);
    let live = Live::start(d, &args);
    // WRITE_ZEROES inside, across and over absent data blocks, with and
    // without leave to punch holes; TRIM inside one and over another.
    let zeroes = [
        (25 * BLOCK + 100, 1000, ""),
        (4 * BLOCK - 300, BLOCK + 600, ""),
        (10 * BLOCK, BLOCK, ""),
        (12 * BLOCK, 2 * BLOCK, " -u"),
        (20 * BLOCK + 4096, 8192, " -u"),
    ];
    let trims = [(15 * BLOCK + 512, 4096), (17 * BLOCK, BLOCK)];
    let mut model = f.base.clone();
    let mut cmds = Vec::new();
    for (at, len, unmap) in zeroes {
        cmds.push(format!("write -z{unmap} {at} {len}"));
        model[at as usize..(at + len) as usize].fill(0);
    }
    for (at, len) in trims {
        cmds.push(format!("discard {at} {len}"));
    }
    cmds.push("flush".into());
    qemu_io_ok(d, &live.uri, &cmds);
    let reads: Vec<String> = zeroes
        .iter()
        .map(|(at, len, _)| format!("read -P 0 {at} {len}"))
        .collect();
    qemu_io_ok(d, &live.uri, &reads);
    let copy = nbdcopy(d, &live.uri, "copy.raw");
    assert_same_except(&copy, &model, &trims, "after zeroes and trims");
    check_map(&map(d, &live.uri), &copy, &[]);
    live.terminate().expect_code(EXIT_OK);

    // Kept across a restart, and in the completed disk.
    let live = Live::start(d, &args);
    qemu_io_ok(d, &live.uri, &reads);
    let copy = nbdcopy(d, &live.uri, "copy.raw");
    assert_same_except(&copy, &model, &trims, "after a restart");
    live.terminate().expect_code(EXIT_OK);
    if !d.join(DEST).exists() {
        let mut args = args;
        args.truncate(args.len() - 2);
        args.push("--exit-when-complete".into());
        Live::start(d, &args).wait(EXIT_WAIT).expect_code(EXIT_OK);
    }
    let restored = fs::read(d.join("restore/crm-flat.vmdk")).unwrap();
    assert_same_except(&restored, &model, &trims, "DEST");
}

/// Not the crash campaign (tests/live_crash.rs): one write at a time,
/// acknowledged as durable (FUA, or a flush), then SIGKILL at once, well
/// inside the second in which the state would be saved anyway.
#[test]
fn a_fua_or_flushed_write_survives_sigkill_at_once() {
    let f = Fixture::new(20);
    let d = f.root();
    let args = f.live_args(ARCHIVE, &["--rate", CRAWL]);
    let mut model = f.base.clone();
    let mut kept: Vec<Write> = Vec::new();
    for round in 0..4u64 {
        let live = Live::start(d, &args);
        // Into absent data blocks (a partial write: merged with the
        // backup's block), a zero block, and whole blocks.
        let w = match round {
            0 => Write::new(21 * BLOCK + 300, 700, 0x31),
            1 => Write::new(30 * BLOCK + 5, 10, 0x32),
            2 => Write::new(34 * BLOCK, 2 * BLOCK, 0x33),
            _ => Write::new(37 * BLOCK - 1, 3, 0x34),
        };
        let cmds = if round % 2 == 0 {
            vec![w.write_cmd().replacen("write", "write -f", 1)]
        } else {
            vec![w.write_cmd(), "flush".into()]
        };
        qemu_io_ok(d, &live.uri, &cmds);
        live.kill();
        w.apply(&mut model);
        kept.push(w);
        let live = Live::start(d, &args);
        qemu_io_ok(d, &live.uri, &read_cmds(&kept));
        live.kill();
    }
    let live = Live::start(d, &args);
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &model,
        "after the kills",
    );
    live.terminate().expect_code(EXIT_OK);
}

#[test]
fn many_readers_of_absent_blocks_agree() {
    let f = Fixture::new(21);
    let d = f.root();
    let live = f.live(ARCHIVE, &["--rate", CRAWL]);
    let named = export_uri(&live.uri, "crm.vmdk");
    // Four nbdcopy processes (each with several connections) and qemu-io
    // reads of single sectors, all at once on absent blocks.
    std::thread::scope(|s| {
        let copies: Vec<_> = (0..4)
            .map(|i| {
                let uri = if i % 2 == 0 { &live.uri } else { &named };
                s.spawn(move || nbdcopy(d, uri, &format!("copy{i}.raw")))
            })
            .collect();
        let sectors: Vec<String> = (0..BLOCKS)
            .rev()
            .map(|b| format!("read {} 512", b * BLOCK + 512 * (b % 128)))
            .collect();
        qemu_io_ok(d, &live.uri, &sectors);
        for c in copies {
            assert_same_bytes(&c.join().unwrap(), &f.base, "a concurrent nbdcopy");
        }
    });
    live.terminate().expect_code(EXIT_OK);
}

/// Guest writes all over the disk while the background restore runs at
/// speed: the fill must never put the backup's block over a block the
/// guest has written (nor a merge lose either side).
#[test]
fn guest_writes_racing_the_fill_are_never_overwritten() {
    for round in 0..3u64 {
        let f = Fixture::new(22 + round);
        let d = f.root();
        let live = f.live(ARCHIVE, &["--rate", "8M"]);
        let mut rng = Rng::new(round);
        let mut order: Vec<u64> = (0..BLOCKS).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let writes: Vec<Write> = order
            .iter()
            .map(|&b| {
                let at = rng.below(BLOCK as usize - 600) as u64;
                Write::new(
                    b * BLOCK + at,
                    1 + rng.below(500) as u64,
                    0x80 + (b as u8 & 0x3f),
                )
            })
            .collect();
        let mut model = f.base.clone();
        for w in &writes {
            w.apply(&mut model);
        }
        let (first, second) = writes.split_at(writes.len() / 2);
        std::thread::scope(|s| {
            for half in [first, second] {
                let uri = &live.uri;
                s.spawn(move || {
                    let mut cmds: Vec<String> = half.iter().map(Write::write_cmd).collect();
                    cmds.push("flush".into());
                    qemu_io_ok(d, uri, &cmds);
                });
            }
        });
        qemu_io_ok(d, &live.uri, &read_cmds(&writes));
        live.stdout_with("complete:");
        assert_same_bytes(
            &nbdcopy(d, &live.uri, "copy.raw"),
            &model,
            "served after the race",
        );
        live.terminate().expect_code(EXIT_OK);
        assert_same_bytes(
            &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
            &model,
            &format!("DEST after the race, round {round}"),
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Concurrent clients.

#[test]
fn four_clients_at_once_read_and_write_disjoint_ranges() {
    let f = Fixture::new(5);
    let d = f.root();
    let live = f.live(ARCHIVE, &["--rate", CRAWL]);
    let uri = live.uri.clone();
    let named = export_uri(&uri, "crm.vmdk");

    // Two writers share blocks 10..26 (each writes half of every block, in
    // 4 KiB pieces interleaved with the other's, so two merges of one
    // absent block race); a third writes whole and straddling ranges in
    // 48..56; two readers copy and check the rest while they write.
    let mut first = Vec::new();
    let mut second = Vec::new();
    for b in 10..26 {
        for piece in 0..8 {
            let at = b * BLOCK + piece * 4096;
            first.push(Write::new(at, 4096, 0xb1));
            second.push(Write::new(at + BLOCK / 2, 4096, 0xb2));
        }
    }
    second.reverse();
    let third = vec![
        Write::new(48 * BLOCK, BLOCK, 0xb3),
        Write::new(50 * BLOCK - 300, 2 * BLOCK + 600, 0xb4),
        Write::new(53 * BLOCK + 1, 3 * BLOCK - 2, 0xb5),
    ];
    let mut model = f.base.clone();
    for w in first.iter().chain(&second).chain(&third) {
        w.apply(&mut model);
    }
    let untouched = |copy: &[u8], what: &str| {
        for b in (0..10).chain(26..48).chain(56..BLOCKS) {
            assert_same_bytes(
                &copy[range(b, 1)],
                &f.base[range(b, 1)],
                &format!("{what}, block {b}"),
            );
        }
    };
    let writer = |writes: &[Write]| {
        let mut cmds: Vec<String> = writes.iter().map(Write::write_cmd).collect();
        cmds.push("flush".into());
        cmds.extend(read_cmds(writes));
        qemu_io_ok(d, &uri, &cmds);
    };
    std::thread::scope(|s| {
        // One writer on the named export: both exports are one disk.
        let a = s.spawn(|| {
            let mut cmds: Vec<String> = first.iter().map(Write::write_cmd).collect();
            cmds.push("flush".into());
            qemu_io_ok(d, &named, &cmds);
            qemu_io_ok(d, &uri, &read_cmds(&first));
        });
        let b = s.spawn(|| writer(&second));
        let c = s.spawn(|| writer(&third));
        let copy = s.spawn(|| nbdcopy(d, &named, "copy1.raw"));
        let copy2 = nbdcopy(d, &uri, "copy2.raw");
        untouched(&copy2, "nbdcopy during the writes");
        untouched(
            &copy.join().unwrap(),
            "nbdcopy of crm.vmdk during the writes",
        );
        for t in [a, b, c] {
            t.join().unwrap();
        }
    });
    assert_same_bytes(
        &nbdcopy(d, &uri, "copy.raw"),
        &model,
        "after the concurrent writes",
    );
    let all: Vec<Write> = first.iter().chain(&second).chain(&third).copied().collect();
    qemu_io_ok(d, &uri, &read_cmds(&all));
    live.terminate().expect_code(EXIT_OK);
}

// ---------------------------------------------------------------------------
// 4. Completion.

/// Starts `sdar live` with --exit-when-complete and a fill slow enough for
/// a guest write to land first, writes, and waits for it to exit.
fn complete_with_a_guest_write(f: &Fixture, extra: &[&str]) -> (Ended, Vec<u8>) {
    let d = f.root();
    let mut args = vec!["--exit-when-complete", "--rate", "1M"];
    args.extend_from_slice(extra);
    let live = f.live(ARCHIVE, &args);
    let writes = [
        Write::new(3 * BLOCK - 10, 20, 0xc1),
        Write::new(30 * BLOCK, BLOCK, 0xc2),
        Write::new(DISK_LEN - BLOCK - 5, 5, 0xc3),
    ];
    let mut cmds: Vec<String> = writes.iter().map(Write::write_cmd).collect();
    cmds.push("flush".into());
    let started = Instant::now();
    qemu_io_ok(d, &live.uri, &cmds);
    let mut model = f.base.clone();
    for w in &writes {
        w.apply(&mut model);
    }
    let ended = live.wait(EXIT_WAIT).expect_code(EXIT_OK);
    let complete = ended
        .stdout
        .lines()
        .find(|l| l.starts_with("complete:"))
        .unwrap_or_else(|| panic!("no complete: line in\n{}", ended.stdout))
        .to_string();
    // 4 MiB at 1M a second cannot be done before the guest's write.
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "completed in {:?}: was --rate 1M ignored?\n{}",
        started.elapsed(),
        ended.stdout
    );
    assert!(complete.contains(" written by the guest"), "{complete}");
    assert!(
        ended.stderr.lines().all(|l| !l.contains("failed")),
        "{}",
        ended.stderr
    );
    (ended, model)
}

#[test]
fn exit_when_complete_leaves_the_vmdk_with_the_guests_writes() {
    let f = Fixture::new(6);
    let d = f.root();
    let (ended, model) = complete_with_a_guest_write(&f, &[]);
    // Whole block 30 and parts of three others were written by the guest.
    let c = ended
        .stdout
        .lines()
        .find(|l| l.starts_with("complete:"))
        .unwrap();
    assert!(
        number_after(c, "the backup,").is_some() || c.contains("written by the guest"),
        "{c}"
    );
    assert_eq!(listing(&d.join("restore")), ["crm-flat.vmdk", "crm.vmdk"]);
    assert!(!d.join(SOCK).exists(), "the socket is left behind");
    assert_same_bytes(
        &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
        &model,
        "DEST-flat.vmdk",
    );
    fs::write(d.join("model.raw"), &model).unwrap();
    let out = tool(d, "qemu-img", &["compare", "-F", "raw", DEST, "model.raw"]).success();
    assert!(out.stdout_text().contains("identical"));
    let info = tool(d, "qemu-img", &["info", DEST]).success();
    assert!(
        info.stdout_text().contains("file format: vmdk"),
        "{}",
        info.stdout_text()
    );
    // The restored VMDK is a disk sdar can back up again, to the same image.
    sdar(d, &["full", DEST, "-o", "backup/again.full.gz", "-q"]).success();
}

#[test]
fn a_client_connected_at_completion_holds_the_exit_and_its_writes_land_in_dest() {
    let f = Fixture::new(15);
    let d = f.root();
    // 4 MiB at 1M a second: the client is connected long before the end.
    let mut live = f.live(ARCHIVE, &["--exit-when-complete", "--rate", "1M"]);
    require_tool("qemu-io");
    let mut client = Command::new("qemu-io")
        .args(["-f", "raw", &live.uri])
        .current_dir(d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    // The client connects, and stays connected while the fill completes.
    std::io::Write::write_all(&mut stdin, b"read 0 512\n").unwrap();
    live.stdout_with("complete:");
    std::thread::sleep(Duration::from_millis(700));
    assert!(live.running(), "exited while a client is connected");
    assert!(d.join(DEST).exists(), "complete, but no DEST");
    let w = Write::new(33 * BLOCK - 2, 4, 0xf1);
    let script = format!("{}\nflush\n{}\nquit\n", w.write_cmd(), w.read_cmd());
    std::io::Write::write_all(&mut stdin, script.as_bytes()).unwrap();
    drop(stdin);
    let out = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("failed") && text.contains("wrote 4/4"),
        "qemu-io after completion:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = live.wait(EXIT_WAIT).expect_code(EXIT_OK);
    assert!(ended.stdout.contains("complete:"));
    let mut model = f.base.clone();
    w.apply(&mut model);
    assert_eq!(listing(&d.join("restore")), ["crm-flat.vmdk", "crm.vmdk"]);
    assert_same_bytes(
        &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
        &model,
        "DEST",
    );
}

#[test]
fn exit_when_complete_raw_leaves_a_raw_image() {
    let f = Fixture::new(7);
    let d = f.root();
    let dest = "restore/crm.img";
    let mut args: Vec<String> = f.live_args(ARCHIVE, &["--raw"]);
    args[3] = dest.into();
    let crawl: Vec<String> = args
        .iter()
        .cloned()
        .chain(["--rate".into(), CRAWL.into()])
        .collect();
    let live = Live::start(d, &crawl);
    live.stdout_with(".crm.img.sdar-partial");
    // Raw names: the partial and the state beside DEST.
    let hidden = listing(&d.join("restore"));
    assert!(
        hidden.iter().all(|n| n.starts_with(".crm.img.")),
        "while live: {hidden:?}"
    );
    live.terminate().expect_code(EXIT_OK);

    args.extend(["--exit-when-complete".into(), "--rate".into(), "1M".into()]);
    let live = Live::start(d, &args);
    let w = Write::new(9 * BLOCK - 1, 2, 0xc4);
    qemu_io_ok(d, &live.uri, &[w.write_cmd(), "flush".into()]);
    let ended = live.wait(EXIT_WAIT).expect_code(EXIT_OK);
    assert!(ended.stdout.contains("complete:"), "{}", ended.stdout);
    let mut model = f.base.clone();
    w.apply(&mut model);
    assert_eq!(listing(&d.join("restore")), ["crm.img"]);
    assert_same_bytes(&fs::read(d.join(dest)).unwrap(), &model, "the raw DEST");
    fs::write(d.join("model.raw"), &model).unwrap();
    tool(
        d,
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", dest, "model.raw"],
    )
    .success();
}

// ---------------------------------------------------------------------------
// 5. A damaged block in the full.

/// The full with one bit flipped in the middle of block `bad`'s member.
fn damage_block(f: &Fixture, bad: u64) {
    let member = layout(&f.path(FULL)).members[bad as usize];
    assert!(!member.zero && member.len > 8, "{member:?}");
    flip_bit(&f.path(FULL), member.offset + member.len / 2, 3);
}

#[test]
fn a_damaged_block_fails_only_its_reads() {
    let f = Fixture::new(8);
    let d = f.root();
    let bad = 13;
    damage_block(&f, bad);
    let live = f.live(ARCHIVE, &[]);
    let sock = f.sock();

    let failing = [
        format!("read {} {BLOCK}", bad * BLOCK),
        format!("read {} 512", bad * BLOCK + 4096),
        format!("read {} {}", (bad - 1) * BLOCK, 3 * BLOCK),
        format!("read {} 2", (bad + 1) * BLOCK - 1),
    ];
    for cmd in &failing {
        let out = qemu_io(d, &live.uri, std::slice::from_ref(cmd));
        let text = format!("{}{}", out.stdout_text(), out.stderr);
        assert!(
            out.code != 0 && text.contains("Input/output error"),
            "`{cmd}` of the damaged block {bad}: exit {}\n{text}",
            out.code
        );
    }
    // The rest of the disk reads, on both sides, to the last byte.
    let before = read_window(d, &sock, 0, bad * BLOCK);
    assert_same_bytes(
        &before,
        &f.base[..(bad * BLOCK) as usize],
        "blocks before the bad one",
    );
    let after = read_window(d, &sock, (bad + 1) * BLOCK, DISK_LEN - (bad + 1) * BLOCK);
    assert_same_bytes(
        &after,
        &f.base[((bad + 1) * BLOCK) as usize..],
        "blocks after the bad one",
    );
    // A write that covers part of it needs the rest of the block: it fails
    // too, and so does a partial WRITE_ZEROES; the block is unchanged.
    for cmd in [
        format!("write -P 0x5a {} 100", bad * BLOCK + 100),
        format!("write -z {} 4096", bad * BLOCK + 8192),
    ] {
        let out = qemu_io(d, &live.uri, std::slice::from_ref(&cmd));
        let text = format!("{}{}", out.stdout_text(), out.stderr);
        assert!(
            out.code != 0 && text.contains("Input/output error"),
            "`{cmd}` into the damaged block {bad}: exit {}\n{text}",
            out.code
        );
    }
    // Still failing the second time: a bad block is never served as good.
    assert_ne!(
        qemu_io(d, &live.uri, &[format!("read {} 4096", bad * BLOCK)]).code,
        0
    );
    assert!(
        live.stderr_has(&format!("block {bad}")),
        "stderr does not name block {bad}:\n{}",
        live.stderr()
    );
    let ended = live.terminate().expect_code(EXIT_INTEGRITY);
    assert!(ended.stderr.contains(&format!("{bad}")), "{}", ended.stderr);

    // With --exit-when-complete: the fill ends, sdar exits 1 naming it,
    // and no DEST is made of a disk with a hole in it.
    let ended = Live::start(d, &f.live_args(ARCHIVE, &["--exit-when-complete"]))
        .wait(EXIT_WAIT)
        .expect_code(EXIT_INTEGRITY);
    assert!(
        ended.stderr.contains(&format!("block {bad}"))
            || ended.stderr.contains(&format!(": {bad} ")),
        "the exit does not name block {bad}:\n{}",
        ended.stderr
    );
    assert!(!ended.stdout.contains("complete:"), "{}", ended.stdout);
    assert!(!d.join(DEST).exists() && !d.join("restore/crm-flat.vmdk").exists());

    // A guest write of the whole block replaces the bad data; its reads work.
    let live = f.live(ARCHIVE, &[]);
    let w = Write::new(bad * BLOCK, BLOCK, 0xd1);
    qemu_io_ok(d, &live.uri, &[w.write_cmd(), "flush".into(), w.read_cmd()]);
    let mut model = f.base.clone();
    w.apply(&mut model);
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &model,
        "after rewriting the bad block",
    );
    // Every block is now there: the backup's, or the guest's over the bad
    // one. The disk is complete; sdar still exits 1 on SIGTERM, as the
    // backup had a bad block, but must not say the disk is unfinished.
    live.stdout_with("complete:");
    let ended = live.terminate().expect_code(EXIT_INTEGRITY);
    assert!(ended.stderr.contains(&format!("{bad}")), "{}", ended.stderr);
    assert_eq!(listing(&d.join("restore")), ["crm-flat.vmdk", "crm.vmdk"]);
    assert_same_bytes(
        &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
        &model,
        "DEST",
    );
    assert!(
        !ended.stderr.contains("were not restored") && !ended.stderr.contains("the state is kept"),
        "the disk is complete (DEST written, state removed), yet sdar says:\n{}",
        ended.stderr
    );
}

#[test]
fn a_damaged_block_in_the_delta_fails_only_its_reads() {
    use archive_format::ChangeKind;
    let mut f = Fixture::new(18);
    f.add_delta(19);
    let d = f.root();
    let member = delta_layout(&f.path(DELTA))
        .members
        .into_iter()
        .find(|m| matches!(m.kind, ChangeKind::Data) && m.len > 8)
        .expect("a data block in the delta");
    let bad = member.block;
    flip_bit(&f.path(DELTA), member.offset + member.len / 2, 5);
    let started = Live::try_start(d, &f.live_args(DELTA, &[]));
    let live = match started {
        Ok(live) => live,
        Err(e) => panic!(
            "a delta with one bad block is not served: exit {:?}\n{}",
            e.code, e.stderr
        ),
    };
    let out = qemu_io(d, &live.uri, &[format!("read {} 4096", bad * BLOCK)]);
    let text = format!("{}{}", out.stdout_text(), out.stderr);
    assert!(
        out.code != 0 && text.contains("Input/output error"),
        "a read of the delta's damaged block {bad}: exit {}\n{text}",
        out.code
    );
    let sock = f.sock();
    let before = read_window(d, &sock, 0, bad * BLOCK);
    assert_same_bytes(
        &before,
        &f.now[..(bad * BLOCK) as usize],
        "blocks before the bad one",
    );
    let after = read_window(d, &sock, (bad + 1) * BLOCK, DISK_LEN - (bad + 1) * BLOCK);
    assert_same_bytes(
        &after,
        &f.now[((bad + 1) * BLOCK) as usize..],
        "blocks after the bad one",
    );
    let ended = live.terminate().expect_code(EXIT_INTEGRITY);
    assert!(
        ended.stderr.contains(&format!("block {bad}")),
        "{}",
        ended.stderr
    );
}

// ---------------------------------------------------------------------------
// 6. Validate mode.

/// Every path under `dir` with its size and modification time.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if m.is_dir() {
                stack.push(e.path());
                out.push(format!("{rel}/"));
            } else {
                out.push(format!("{rel} {} {:?}", m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn validate_args(f: &Fixture, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["live", ARCHIVE, "--validate", "--listen", &f.listen()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `sdar live --validate`, with TMPDIR (its default overlay folder) set to
/// `tmp/` in the scratch folder, so that a file left there shows.
fn start_validate(d: &Path, args: &[String]) -> Live {
    Live::try_start_with(d, args, |c| {
        c.env("TMPDIR", d.join("tmp"));
    })
    .unwrap_or_else(|e| {
        panic!(
            "`{}` ended with {:?} before serving:\n{}",
            e.what, e.code, e.stderr
        )
    })
}

#[test]
fn validate_serves_the_backup_and_writes_nothing_but_the_socket() {
    let f = Fixture::new(9);
    let d = f.root();
    fs::create_dir(d.join("tmp")).unwrap();
    // The clients' own files go elsewhere.
    let out = scratch();
    let o = out.path();
    let full = watch(&f.path(FULL));
    let archive = watch(&f.path(ARCHIVE));
    let before = tree(d);
    let args = validate_args(&f, &[]);
    let live = start_validate(d, &args);
    live.stdout_with("validate mode");

    assert_same_bytes(
        &nbdcopy(o, &live.uri, "copy.raw"),
        &f.base,
        "validate reads",
    );
    check_map(&map(o, &live.uri), &f.base, &ZERO_BLOCKS);
    let mut model = f.base.clone();
    let mut cmds: Vec<String> = EDGE_WRITES.iter().map(Write::write_cmd).collect();
    cmds.push("flush".into());
    qemu_io_ok(o, &live.uri, &cmds);
    for w in &EDGE_WRITES {
        w.apply(&mut model);
    }
    qemu_io_ok(o, &live.uri, &read_cmds(&EDGE_WRITES));
    assert_same_bytes(
        &nbdcopy(o, &live.uri, "copy.raw"),
        &model,
        "validate after writes",
    );

    let sock_entry = |t: &[String]| t.iter().filter(|e| e.starts_with("s.sock ")).count();
    let during = tree(d);
    assert_eq!(sock_entry(&during), 1, "no socket: {during:?}");
    let others: Vec<String> = during
        .into_iter()
        .filter(|e| !e.starts_with("s.sock "))
        .collect();
    assert_eq!(others, before, "validate wrote into the scratch folder");
    assert!(fs::symlink_metadata(d.join(SOCK))
        .unwrap()
        .file_type()
        .is_socket());

    live.terminate().expect_code(EXIT_OK);
    assert_eq!(tree(d), before, "validate left something behind");
    full.assert_unchanged("sdar live --validate");
    archive.assert_unchanged("sdar live --validate");

    // The writes were discarded with the overlay.
    let live = start_validate(d, &args);
    assert_same_bytes(
        &nbdcopy(o, &live.uri, "copy.raw"),
        &f.base,
        "validate again",
    );
    live.interrupt().expect_code(EXIT_OK);
    assert_eq!(tree(d), before, "validate left something behind");
}

/// The offsets of the `wrote LEN/LEN bytes at offset N` lines of qemu-io.
fn wrote_offsets(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.starts_with("wrote "))
        .filter_map(|l| number_after(l, "offset"))
        .collect()
}

#[test]
fn validate_overlay_bound_refuses_writes_with_enospc_and_reads_go_on() {
    let f = Fixture::new(10);
    let d = f.root();
    for sub in ["tmp", "ov"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    let out = scratch();
    let o = out.path();
    let args = validate_args(&f, &["--overlay-max", "1M", "--overlay-dir", "ov"]);
    let live = start_validate(d, &args);

    // 2 MiB of distinct whole blocks into a 1 MiB overlay.
    let writes: Vec<Write> = (0..32)
        .map(|i| Write::new((2 * i + 1) * BLOCK, BLOCK, 0x40 + i as u8))
        .collect();
    let cmds: Vec<String> = writes.iter().map(Write::write_cmd).collect();
    let run = qemu_io(o, &live.uri, &cmds);
    let text = format!("{}{}", run.stdout_text(), run.stderr);
    assert!(
        text.contains("No space left on device"),
        "no ENOSPC:\n{text}"
    );
    assert!(
        !text.contains("Input/output error"),
        "EIO, not ENOSPC:\n{text}"
    );
    let wrote = wrote_offsets(&run.stdout_text());
    assert!(
        !wrote.is_empty() && wrote.len() as u64 <= (1 << 20) / BLOCK,
        "{} blocks of 64 KiB went into a 1 MiB overlay:\n{text}",
        wrote.len()
    );
    assert!(
        live.stderr_has("ENOSPC"),
        "nothing said loudly:\n{}",
        live.stderr()
    );
    assert_eq!(
        listing(&d.join("ov")),
        Vec::<String>::new(),
        "the overlay has a name"
    );

    let mut model = f.base.clone();
    let kept: Vec<Write> = writes
        .iter()
        .filter(|w| wrote.contains(&w.offset))
        .copied()
        .collect();
    for w in &kept {
        w.apply(&mut model);
    }
    // Reads go on, with the writes that were taken.
    qemu_io_ok(o, &live.uri, &read_cmds(&kept));
    assert_same_bytes(
        &nbdcopy(o, &live.uri, "copy.raw"),
        &model,
        "reads of a full overlay",
    );
    // A write into a block the overlay already holds takes no more room;
    // one into a new block is refused.
    let again = Write::new(kept[0].offset + 512, 512, 0x99);
    qemu_io_ok(o, &live.uri, &[again.write_cmd(), again.read_cmd()]);
    let refused = qemu_io(o, &live.uri, &[format!("write -P 0x98 {} 512", 62 * BLOCK)]);
    assert!(
        refused.code != 0 && refused.stderr.contains("No space left on device")
            || refused.stdout_text().contains("No space left on device"),
        "a write into a new block of a full overlay: {}\n{}",
        refused.stdout_text(),
        refused.stderr
    );
    qemu_io_ok(o, &live.uri, &[format!("read -P 0 {} {BLOCK}", 63 * BLOCK)]);
    live.terminate().expect_code(EXIT_OK);
    assert_eq!(listing(&d.join("ov")), Vec::<String>::new());
    assert_eq!(listing(&d.join("tmp")), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 7. Hostile or odd surroundings.

/// Panics unless `sdar live` refused to start with one of `codes`.
#[track_caller]
fn refused(d: &Path, args: &[String], codes: &[i32], why: &str) -> Ended {
    match Live::try_start(d, args) {
        Ok(live) => {
            let ended = live.kill();
            panic!(
                "`{}` served {why}\nstdout:\n{}\nstderr:\n{}",
                ended.what, ended.stdout, ended.stderr
            )
        }
        Err(e) => {
            eprintln!("refused {why}: exit {:?}: {}", e.code, e.stderr.trim());
            assert!(
                e.code.is_some_and(|c| codes.contains(&c)),
                "`{}` {why}: exit {:?}, expected one of {codes:?}\n{}",
                e.what,
                e.code,
                e.stderr
            );
            e
        }
    }
}

#[test]
fn an_existing_destination_is_refused_without_force() {
    let f = Fixture::new(11);
    let d = f.root();
    let args = f.live_args(ARCHIVE, &[]);
    for existing in ["crm.vmdk", "crm-flat.vmdk"] {
        let path = d.join("restore").join(existing);
        fs::write(&path, b"somebody's disk\n").unwrap();
        let state = watch(&path);
        refused(
            d,
            &args,
            &[EXIT_USAGE],
            &format!("over an existing {existing}"),
        );
        state.assert_unchanged("sdar live without --force");
        assert_eq!(listing(&d.join("restore")), [existing], "left behind");
        assert!(!d.join(SOCK).exists(), "the socket is left behind");
        fs::remove_file(&path).unwrap();
    }
    // With --force it replaces them once complete.
    fs::write(d.join(DEST), b"somebody's disk\n").unwrap();
    fs::write(d.join("restore/crm-flat.vmdk"), b"somebody's extent\n").unwrap();
    let ended = Live::start(
        d,
        &f.live_args(ARCHIVE, &["--force", "--exit-when-complete"]),
    )
    .wait(EXIT_WAIT)
    .expect_code(EXIT_OK);
    assert!(ended.stdout.contains("complete:"));
    assert_eq!(listing(&d.join("restore")), ["crm-flat.vmdk", "crm.vmdk"]);
    assert_same_bytes(
        &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
        &f.base,
        "forced DEST",
    );
}

#[test]
fn a_missing_or_wrong_full_or_a_full_as_archive_is_refused_and_leaves_nothing() {
    let f = Fixture::new(25);
    let d = f.root();
    let other = Fixture::new(26);
    let other_full = other.path(FULL);
    let cases: Vec<(&str, Vec<String>, &[i32])> = vec![
        (
            "a full that is not the archive's",
            f.live_args(ARCHIVE, &["--full", other_full.to_str().unwrap()]),
            &[EXIT_INTEGRITY, EXIT_USAGE],
        ),
        (
            "a full given as the archive",
            f.live_args(FULL, &[]),
            &[EXIT_USAGE, EXIT_INTEGRITY],
        ),
        (
            "a missing --full",
            f.live_args(ARCHIVE, &["--full", "backup/nothing.full.gz"]),
            &[EXIT_USAGE, EXIT_OTHER],
        ),
    ];
    for (why, args, codes) in cases {
        refused(d, &args, codes, why);
        assert_eq!(
            listing(&d.join("restore")),
            Vec::<String>::new(),
            "{why}: left behind"
        );
        assert!(!d.join(SOCK).exists(), "{why}: the socket is left behind");
    }
    // No full beside the archive, and none on SDAR_FULL_PATH.
    fs::rename(f.path(FULL), d.join("vm/moved.full.gz")).unwrap();
    let args = f.live_args(ARCHIVE, &[]);
    match Live::try_start_with(d, &args, |c| {
        c.env_remove("SDAR_FULL_PATH");
    }) {
        Ok(live) => panic!("served without its full:\n{}", live.kill().stderr),
        Err(e) => assert!(
            matches!(e.code, Some(EXIT_USAGE | EXIT_OTHER | EXIT_INTEGRITY)),
            "no full: exit {:?}\n{}",
            e.code,
            e.stderr
        ),
    }
    assert_eq!(listing(&d.join("restore")), Vec::<String>::new());
    // Found on SDAR_FULL_PATH, it serves.
    let live = Live::try_start_with(d, &args, |c| {
        c.env("SDAR_FULL_PATH", d.join("vm"));
    })
    .unwrap_or_else(|e| panic!("SDAR_FULL_PATH: exit {:?}\n{}", e.code, e.stderr));
    assert_same_bytes(
        &nbdcopy(d, &live.uri, "copy.raw"),
        &f.base,
        "full found on SDAR_FULL_PATH",
    );
    live.terminate().expect_code(EXIT_OK);
}

#[test]
fn the_printed_uri_works_for_a_socket_path_with_a_space() {
    let f = Fixture::new(27);
    let d = f.root();
    fs::create_dir(d.join("my vms")).unwrap();
    let sock = d.join("my vms/s.sock");
    let mut args = f.live_args(ARCHIVE, &["--rate", CRAWL]);
    args[5] = format!("unix:{}", sock.display());
    let live = Live::start(d, &args);
    // What an operator copies from the `serving` line must reach the disk.
    let out = tool(d, "nbdinfo", &["--size", &live.uri]);
    assert!(
        out.code == 0 && out.stdout_text().trim() == DISK_LEN.to_string(),
        "the printed URI `{}` does not work: {}",
        live.uri,
        out.stderr
    );
    live.terminate().expect_code(EXIT_OK);
}

#[test]
fn another_backups_live_state_is_not_continued_without_force() {
    let mut f = Fixture::new(28);
    f.add_delta(29);
    let d = f.root();
    let live = f.live(ARCHIVE, &["--rate", CRAWL]);
    let w = Write::new(9 * BLOCK + 10, 100, 0x61);
    qemu_io_ok(d, &live.uri, &[w.write_cmd(), "flush".into()]);
    live.terminate().expect_code(EXIT_OK);
    let hidden = listing(&d.join("restore"));
    let partial = watch(&d.join("restore/.crm-flat.vmdk.sdar-partial"));

    // The delta's disk into the DEST the full's recovery left: refused.
    refused(
        d,
        &f.live_args(DELTA, &["--rate", CRAWL]),
        &[EXIT_USAGE],
        "into another backup's live state",
    );
    partial.assert_unchanged("sdar live of another backup without --force");
    assert_eq!(listing(&d.join("restore")), hidden);

    // With --force it starts over: the delta's disk, the guest's write gone.
    let live = f.live(DELTA, &["--force", "--rate", CRAWL]);
    live.stdout_with("0 of 64 blocks already there");
    assert_same_bytes(&nbdcopy(d, &live.uri, "copy.raw"), &f.now, "started over");
    live.terminate().expect_code(EXIT_OK);
    // And the first backup's run, again without --force, is refused now.
    refused(
        d,
        &f.live_args(ARCHIVE, &[]),
        &[EXIT_USAGE],
        "into the delta's live state",
    );
}

#[test]
fn symlinks_planted_at_the_hidden_names_never_write_their_targets() {
    for (hidden, force) in [
        ".crm.vmdk.sdar-live",
        ".crm-flat.vmdk.sdar-partial",
        ".crm.vmdk.sdar-restore",
    ]
    .into_iter()
    .flat_map(|h| [(h, false), (h, true)])
    {
        let f = Fixture::new(12);
        let d = f.root();
        let victim = d.join("victim");
        fs::write(&victim, Rng::new(99).bytes(20_000)).unwrap();
        let state = watch(&victim);
        let link = d.join("restore").join(hidden);
        std::os::unix::fs::symlink("../victim", &link).unwrap();
        let mut extra = vec!["--exit-when-complete"];
        if force {
            extra.push("--force");
        }
        let args = f.live_args(ARCHIVE, &extra);
        let started = Live::try_start(d, &args);
        if let Err(e) = &started {
            eprintln!(
                "{hidden} (force {force}): refused: exit {:?}: {}",
                e.code,
                e.stderr.trim()
            );
        }
        match started {
            Err(e) => assert!(
                e.code == Some(EXIT_USAGE) || e.code == Some(EXIT_OTHER),
                "{hidden} a symlink: `{}` exit {:?}\n{}",
                e.what,
                e.code,
                e.stderr
            ),
            Ok(live) => {
                // Serving is fine if it made its own file: then it completes.
                let ended = live.wait(EXIT_WAIT).expect_code(EXIT_OK);
                assert!(ended.stdout.contains("complete:"), "{}", ended.stdout);
                assert_same_bytes(
                    &fs::read(d.join("restore/crm-flat.vmdk")).unwrap(),
                    &f.base,
                    "DEST beside a planted link",
                );
            }
        }
        state.assert_unchanged(&format!("sdar live with a symlink at {hidden}"));
        if let Ok(m) = fs::symlink_metadata(&link) {
            assert!(
                m.file_type().is_symlink()
                    && fs::read_link(&link).unwrap() == Path::new("../victim"),
                "{hidden}: the link was replaced by something else"
            );
        }
    }
}

#[test]
fn a_stale_socket_is_reused_but_a_live_one_or_a_file_is_not() {
    let f = Fixture::new(13);
    let d = f.root();
    let args = f.live_args(ARCHIVE, &["--rate", CRAWL]);
    let live = Live::start(d, &args);
    // The disk is the user's data: the socket is theirs alone.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(f.sock()).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the socket is open to others: {mode:o}");
    let w = Write::new(11 * BLOCK - 7, 14, 0xe1);
    qemu_io_ok(d, &live.uri, &[w.write_cmd(), "flush".into()]);

    // Another sdar on the same socket is refused; the first still serves.
    let mut other = args.clone();
    other[3] = "restore/other.vmdk".into();
    refused(d, &other, &[EXIT_USAGE], "on a socket in use");
    tool(d, "nbdinfo", &["--size", &live.uri]).success();
    qemu_io_ok(d, &live.uri, &[w.read_cmd()]);
    // So is a second sdar restoring into the same DEST from another socket.
    let mut same_dest = args.clone();
    same_dest[5] = format!("unix:{}", d.join("t.sock").display());
    refused(
        d,
        &same_dest,
        &[EXIT_USAGE, EXIT_OTHER],
        "into a DEST another sdar restores",
    );
    qemu_io_ok(d, &live.uri, &[w.read_cmd()]);

    // Killed: the socket stays, and the same command takes it over.
    let ended = live.kill();
    assert_eq!(ended.code, None, "killed by SIGKILL");
    let sock = d.join(SOCK);
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    let live = Live::start(d, &args);
    live.stdout_with("continuing");
    qemu_io_ok(d, &live.uri, &[w.read_cmd()]);
    live.terminate().expect_code(EXIT_OK);
    assert!(!sock.exists(), "the socket is left behind after SIGTERM");

    // Anything else at the socket's name is left alone.
    fs::write(&sock, b"not a socket\n").unwrap();
    let state = watch(&sock);
    refused(d, &args, &[EXIT_USAGE, EXIT_OTHER], "over a regular file");
    state.assert_unchanged("sdar live --listen over a file");
    fs::remove_file(&sock).unwrap();
    fs::create_dir(&sock).unwrap();
    refused(d, &args, &[EXIT_USAGE, EXIT_OTHER], "over a folder");
    assert!(sock.is_dir());
    fs::remove_dir(&sock).unwrap();
    std::os::unix::fs::symlink("victim", &sock).unwrap();
    fs::write(d.join("victim"), b"precious\n").unwrap();
    let victim = watch(&d.join("victim"));
    refused(d, &args, &[EXIT_USAGE, EXIT_OTHER], "over a symlink");
    victim.assert_unchanged("sdar live --listen over a symlink");
    assert!(fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_symlink());
}
