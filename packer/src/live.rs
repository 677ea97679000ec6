//! `sdar live`: the disk a backup holds, served over NBD at once while it
//! is restored behind the guest (the library's live job), or served over a
//! discarded overlay (`--validate`).
//!
//! Threads: the NBD server (a thread per connection), the background fill
//! (its workers), a flusher that makes the fill's progress durable every
//! second, a thread waiting for SIGINT/SIGTERM, and this one, which reacts
//! to them.

use crate::cli::LiveArgs;
use crate::{usage_if_invalid, UsageError};
use anyhow::{anyhow, Result};
use archive_format::job::{
    prepare_validate, FullSource, LiveImage, LiveJob, LiveRequest, ValidateRequest,
};
use archive_format::target::TargetKind;
use archive_format::{Error, Limits};
use sdar_nbd::{Errno, Export, ExportSet, Server, ServerLimits};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A line on stdout, flushed; a closed stdout (`| head`) is not an error
/// that may stop a disk being served.
macro_rules! say {
    ($($t:tt)*) => {{
        let mut out = std::io::stdout();
        let _ = writeln!(out, $($t)*);
        let _ = out.flush();
    }};
}

/// A line on stderr; a closed stderr is not an error either.
macro_rules! note {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// How often the states of blocks that came in are made durable (when
/// any did). Each time costs an `fdatasync` of the destination: at a
/// quarter second, a cold sequential read was a fifth slower than at one
/// second (bench/live, 4 GiB).
const STATE_INTERVAL: Duration = Duration::from_secs(1);

/// Where to serve.
enum Listen {
    Unix(PathBuf),
    Tcp(String),
}

enum Listener {
    Unix(UnixListener, PathBuf, (u64, u64)),
    Tcp(TcpListener),
}

/// What the main thread waits for.
enum Event {
    Signal(i32),
    Filled(archive_format::Result<archive_format::live::FillReport>),
}

pub fn run(args: LiveArgs) -> Result<()> {
    // Before any thread exists, so that every thread inherits the mask and
    // only the signal thread receives them.
    let signals = crate::signals::block();
    let listen = match &args.listen {
        Some(l) => parse_listen(l)?,
        None => Listen::Unix(default_socket(&args)),
    };
    if args.rate == Some(0) {
        return Err(anyhow::Error::new(UsageError(
            "--rate 0 would never restore the disk; give bytes a second, such as 50M".into(),
        )));
    }
    if let Ok((_, archive_format::container::FileKind::Full(_))) =
        archive_format::container::open_classified(&args.archive)
    {
        let companion = crate::naming::beside_full(&args.archive);
        return Err(anyhow::Error::new(UsageError(format!(
            "{} is a full image; sdar live serves a delta archive: give {} (the one beside every full; `sdar companion {}` writes it again)",
            args.archive.display(),
            companion.display(),
            args.archive.display()
        ))));
    }
    let key = crate::key::read(args.key.as_deref())?;
    let full = match &args.full {
        Some(p) => FullSource::Path(p.clone()),
        None => FullSource::Search {
            search_path: std::env::var_os("SDAR_FULL_PATH"),
        },
    };
    let log: archive_format::job::LiveLog = Box::new(|m| note!("sdar live: {m}"));
    let (disk, mut job, name) = if args.validate {
        let overlay_dir = args.overlay_dir.clone().unwrap_or_else(|| {
            std::env::var_os("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        });
        let (disk, meta) = prepare_validate(
            ValidateRequest {
                archive: args.archive.clone(),
                full,
                overlay_dir,
                overlay_max: args.overlay_max,
                key,
                limits: Limits::default(),
            },
            log,
        )
        .map_err(usage_if_invalid)?;
        (disk, None, disk_name(&meta))
    } else {
        let to = args.to.clone().ok_or_else(|| {
            anyhow::Error::new(UsageError("--to DEST is required (or --validate)".into()))
        })?;
        let mut request = LiveRequest::new(&args.archive, &to);
        request.full = full;
        request.kind = if args.raw {
            TargetKind::Raw
        } else {
            TargetKind::Vmdk { vmfs: false }
        };
        request.force = args.force;
        request.key = key;
        let job = LiveJob::prepare(request, log).map_err(usage_if_invalid)?;
        let name = disk_name(job.meta());
        (job.disk().clone(), Some(job), name)
    };
    let listener = bind(&listen)?;
    let export: Arc<dyn Export> = Arc::new(LiveExport { disk: disk.clone() });
    // The default export, the backup's disk name and the destination's file
    // name: one disk under each.
    let mut names = vec![String::new(), name];
    if let Some(dest) = job.as_ref().and_then(|j| j.destination()) {
        names.extend(dest.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    names.dedup();
    let mut exports: BTreeMap<String, Arc<dyn Export>> = BTreeMap::new();
    for n in &names {
        exports.insert(n.clone(), export.clone());
    }
    let server = Arc::new(Server::new(
        Arc::new(exports) as Arc<dyn ExportSet>,
        ServerLimits::default(),
    ));
    let uri = spawn_server(&server, &listener)?;
    print_ready(&uri, &listener, &names, &args, &job);

    let (tx, rx) = mpsc::channel();
    crate::signals::forward(signals, "live-signals", tx.clone(), Event::Signal);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    if job.is_some() {
        let (fill_disk, fill_stop, fill_tx) = (disk.clone(), stop.clone(), tx.clone());
        let (threads, rate) = (args.run.threads, args.rate);
        std::thread::Builder::new()
            .name("live-fill".into())
            .spawn(move || {
                let r = fill_disk.fill(threads, rate, &fill_stop);
                let _ = fill_tx.send(Event::Filled(r));
            })?;
        let (flush_disk, flush_stop) = (disk.clone(), stop.clone());
        std::thread::Builder::new()
            .name("live-flush".into())
            .spawn(move || {
                while !flush_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(STATE_INTERVAL);
                    if !flush_disk.has_unflushed_states() {
                        continue;
                    }
                    if let Err(e) = flush_disk.flush() {
                        note!("sdar live: the state could not be made durable: {e}");
                    }
                }
            })?;
    }
    drop(tx);

    let mut filled = job.is_none();
    let mut complete = false;
    let mut failure: Option<anyhow::Error> = None;
    let mut last_progress = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Signal(sig)) => {
                if !args.run.quiet {
                    note!("sdar live: signal {sig}: stopping");
                }
                break;
            }
            Ok(Event::Filled(Ok(_))) => {
                filled = true;
                let bad = disk.bad_blocks();
                if !bad.is_empty() {
                    note!(
                        "sdar live: the background restore is done, but {} block(s) of the backup failed their proof: {}; reading them fails with EIO (a guest write covering one makes it whole)",
                        bad.len(),
                        list(bad.keys())
                    );
                }
            }
            Ok(Event::Filled(Err(e))) => {
                filled = true;
                note!(
                    "sdar live: the background restore stopped: {e}; the disk is still served, and the same command continues the restore"
                );
                failure.get_or_insert(anyhow!("the background restore stopped: {e}"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(j) = job.as_mut() {
            if !complete && filled && disk.absent() == 0 {
                match j.complete() {
                    Ok(restored) => {
                        complete = true;
                        let c = disk.counts();
                        say!(
                            "complete: {} blocks from the backup, {} written by the guest, in {:.1} s; the disk is {}",
                            c.present,
                            c.written,
                            started.elapsed().as_secs_f64(),
                            restored.destination.display()
                        );
                    }
                    Err(e) => {
                        note!("sdar live: the restored disk could not be put in place: {e}");
                        failure.get_or_insert(anyhow::Error::new(e));
                        // Not tried again in a loop: the state file keeps it for the next run.
                        filled = false;
                    }
                }
            }
            if !args.run.quiet && !complete && last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                let c = disk.counts();
                let total = c.absent + c.present + c.written;
                note!(
                    "sdar live: {} of {} blocks restored ({} from the backup, {} written by the guest)",
                    c.present + c.written,
                    total,
                    c.present,
                    c.written
                );
            }
        }
        if args.exit_when_complete && filled && server.connections() == 0 {
            let bad = !disk.bad_blocks().is_empty();
            if complete || bad || failure.is_some() {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flushed = disk.flush();
    if let Listener::Unix(_, path, id) = &listener {
        remove_socket(path, *id);
    }
    flushed.map_err(|e| anyhow!("the last flush failed: {e}"))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let bad = disk.bad_blocks();
    if !bad.is_empty() {
        let first = bad.values().next().cloned().unwrap_or_default();
        note!(
            "sdar: error: {} block(s) of the backup failed their proof and are not restored: {}; the first: {}. The state is kept beside the destination: the same command serves the disk again (a guest write covering a bad block whole replaces it)",
            bad.len(),
            list(bad.keys()),
            archive_format::display::escape_lines(&first)
        );
        return Err(anyhow::Error::new(crate::RuntimeExit(
            crate::EXIT_INTEGRITY,
        )));
    }
    let damaged = disk.damaged_blocks();
    if !damaged.is_empty() {
        note!(
            "sdar: error: {} block(s) of the backup failed their proof: {}; the guest wrote over them, so the disk is whole, but the backup is damaged: make a new full",
            damaged.len(),
            list(damaged.keys())
        );
        return Err(anyhow::Error::new(crate::RuntimeExit(
            crate::EXIT_INTEGRITY,
        )));
    }
    if let Some(j) = &job {
        if !complete && !args.run.quiet {
            let c = disk.counts();
            note!(
                "sdar live: stopped with {} block(s) still to restore; the same command continues ({})",
                c.absent,
                j.state_path().display()
            );
        }
    }
    Ok(())
}

/// The NBD view of a live disk.
struct LiveExport {
    disk: Arc<LiveImage>,
}

impl LiveExport {
    fn errno(&self, what: &str, e: Error) -> Errno {
        let no_space = matches!(e, Error::NoSpace { .. })
            || matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(28));
        if no_space && self.disk.is_overlay() {
            note!(
                "sdar live: {what}: {}: the guest's write is refused (ENOSPC); reads go on (--overlay-max raises the bound)",
                archive_format::live::OVERLAY_FULL
            );
        } else if !e.is_integrity() {
            // Integrity failures were named once, by block, when found.
            note!("sdar live: {what}: {e}");
        }
        match e {
            _ if no_space => Errno::NoSpc,
            Error::InvalidInput { .. } => Errno::Inval,
            _ => Errno::Io,
        }
    }
}

impl Export for LiveExport {
    fn size(&self) -> u64 {
        self.disk.size()
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.disk
            .read(offset, buf)
            .map_err(|e| self.errno("read", e))
    }

    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), Errno> {
        // The server flushes after a FUA request.
        self.disk
            .write(offset, data, false)
            .map_err(|e| self.errno("write", e))
    }

    fn flush(&self) -> Result<(), Errno> {
        self.disk.flush().map_err(|e| self.errno("flush", e))
    }

    fn trim(&self, offset: u64, len: u32) -> Result<(), Errno> {
        self.disk
            .trim(offset, len as u64)
            .map_err(|e| self.errno("trim", e))
    }

    fn write_zeroes(&self, offset: u64, len: u32, no_hole: bool) -> Result<(), Errno> {
        self.disk
            .write_zeroes(offset, len as u64, no_hole, false)
            .map_err(|e| self.errno("write zeroes", e))
    }

    fn block_status(&self, offset: u64, len: u32) -> Vec<(u32, u32)> {
        self.disk.block_status(offset, len as u64)
    }

    fn read_only(&self) -> bool {
        false
    }

    /// A flush syncs the whole file, whichever connection wrote.
    fn multi_conn(&self) -> bool {
        true
    }
}

fn parse_listen(s: &str) -> Result<Listen> {
    let usage = || {
        anyhow::Error::new(UsageError(format!(
            "--listen {s}: give unix:PATH or tcp:ADDR:PORT (tcp:PORT listens on 127.0.0.1)"
        )))
    };
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(usage());
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    let Some(rest) = s.strip_prefix("tcp:") else {
        return Err(usage());
    };
    if rest.parse::<u16>().is_ok() {
        return Ok(Listen::Tcp(format!("127.0.0.1:{rest}")));
    }
    match rest.rsplit_once(':') {
        Some((addr, port)) if !addr.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(Listen::Tcp(rest.to_string()))
        }
        _ => Err(usage()),
    }
}

/// `/tmp/sdar-live-ID.sock`, ID from the destination's (or, validating,
/// the archive's) absolute name: the same command gets the same socket, so
/// that a VM reconnects to the run that continues a killed one.
fn default_socket(args: &LiveArgs) -> PathBuf {
    let (what, of) = match &args.to {
        Some(to) if !args.validate => ("live", to),
        _ => ("validate", &args.archive),
    };
    let abs = std::path::absolute(of).unwrap_or_else(|_| of.clone());
    let id = blake3::hash(abs.as_os_str().as_encoded_bytes());
    let hex = archive_format::hex(&id.as_bytes()[..6]);
    std::env::temp_dir().join(format!("sdar-{what}-{hex}.sock"))
}

fn bind(listen: &Listen) -> Result<Listener> {
    match listen {
        Listen::Tcp(addr) => {
            let addrs: Vec<_> = addr
                .to_socket_addrs()
                .map_err(|e| anyhow::Error::new(UsageError(format!("--listen tcp:{addr}: {e}"))))?
                .collect();
            let l = TcpListener::bind(&addrs[..])
                .map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
            Ok(Listener::Tcp(l))
        }
        Listen::Unix(path) => bind_unix(path),
    }
}

/// Binds a Unix socket at `path`, readable by this user only. A socket
/// left there by a killed run (nobody answers on it) is replaced; anything
/// else at the name is left as it is and refused.
fn bind_unix(path: &Path) -> Result<Listener> {
    if path.as_os_str().len() > 100 {
        return Err(anyhow::Error::new(UsageError(format!(
            "{}: a Unix socket's path must be shorter than 100 bytes; give a shorter one with --listen unix:PATH",
            path.display()
        ))));
    }
    if let Ok(meta) = path.symlink_metadata() {
        if !meta.file_type().is_socket() {
            return Err(anyhow::Error::new(UsageError(format!(
                "{} exists and is not a socket; it is left as it is: give another --listen unix:PATH",
                path.display()
            ))));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(anyhow::Error::new(UsageError(format!(
                "another program is serving on {}; stop it, or give another --listen unix:PATH",
                path.display()
            ))));
        }
        std::fs::remove_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    // The socket is created readable by this user only: the disk is the
    // user's data. No other thread runs yet to be surprised by the umask.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let l = bound.map_err(|e| anyhow!("cannot listen on {}: {e}", path.display()))?;
    let meta = path
        .symlink_metadata()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Listener::Unix(
        l,
        path.to_path_buf(),
        (meta.dev(), meta.ino()),
    ))
}

/// Removes our socket, if its name still is ours.
fn remove_socket(path: &Path, id: (u64, u64)) {
    if path
        .symlink_metadata()
        .is_ok_and(|m| (m.dev(), m.ino()) == id)
    {
        let _ = std::fs::remove_file(path);
    }
}

fn spawn_server(server: &Arc<Server>, listener: &Listener) -> Result<String> {
    let log = |m: String| note!("sdar live: {m}");
    let server = server.clone();
    let (uri, run): (String, Box<dyn FnOnce() + Send>) = match listener {
        Listener::Unix(l, path, _) => {
            let l = l.try_clone()?;
            (
                unix_uri(path),
                Box::new(move || {
                    if let Err(e) = server.run_unix(&l, log) {
                        note!("sdar live: the socket failed: {e}");
                    }
                }),
            )
        }
        Listener::Tcp(l) => {
            let addr = l.local_addr()?;
            let l = l.try_clone()?;
            (
                format!("nbd://{addr}"),
                Box::new(move || {
                    if let Err(e) = server.run_tcp(&l, log) {
                        note!("sdar live: the socket failed: {e}");
                    }
                }),
            )
        }
    };
    std::thread::Builder::new()
        .name("nbd-accept".into())
        .spawn(run)?;
    Ok(uri)
}

fn print_ready(
    uri: &str,
    listener: &Listener,
    names: &[String],
    args: &LiveArgs,
    job: &Option<LiveJob>,
) {
    let mut out = String::new();
    out.push_str(&format!("serving {uri}\n"));
    // QEMU's -drive takes the URI the server printed; libvirt names the
    // socket or the host and port.
    let libvirt_host = match listener {
        Listener::Unix(_, path, _) => format!(
            "<host transport='unix' socket='{}'/>",
            xml_escape(&path.to_string_lossy())
        ),
        Listener::Tcp(l) => {
            let a = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let (host, port) = a.rsplit_once(':').unwrap_or((&a, ""));
            format!(
                "<host name='{}' port='{port}'/>",
                host.trim_matches(|c| c == '[' || c == ']')
            )
        }
    };
    out.push_str(&format!(
        "  exports: \"\" (the default){}\n  QEMU:    -drive file={},format=raw,cache=none,file.reconnect-delay=30\n  libvirt: <disk type='network' device='disk'><driver name='qemu' type='raw' cache='none'/><source protocol='nbd'>{libvirt_host}<reconnect delay='30'/></source><target dev='vda' bus='virtio'/></disk>\n",
        names
            .iter()
            .filter(|n| !n.is_empty())
            .map(|n| format!(", \"{n}\""))
            .collect::<String>(),
        // QEMU's option syntax: a comma in a value is doubled.
        uri.replace(',', ",,")
    ));
    if let Some(j) = job {
        let c = j.disk().counts();
        out.push_str(&format!(
            "  restoring into {} ({}): {} of {} blocks already there{}\n",
            j.destination()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            j.partial_path()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            c.present + c.written,
            c.absent + c.present + c.written,
            if j.continued() { ", continuing" } else { "" }
        ));
    } else if args.validate {
        out.push_str("  validate mode: nothing is written to any disk; the guest's writes are discarded at the end\n");
    }
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// `nbd+unix:///?socket=PATH`, the path percent-encoded where a URI
/// needs it (a space, `%`, `&`, `#`...).
fn unix_uri(path: &Path) -> String {
    let mut out = String::from("nbd+unix:///?socket=");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('\'', "&apos;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The backup's disk name (made safe), else the VM's, else "disk": the
/// name of the export that is not the default.
fn disk_name(meta: &archive_format::Metadata) -> String {
    let safe = |n: &str| archive_format::display::safe_file_name(n, 200);
    meta.disk_name
        .as_deref()
        .or(meta.vm_name.as_deref())
        .map(safe)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "disk".into())
}

fn list<'a>(blocks: impl Iterator<Item = &'a u64>) -> String {
    let v: Vec<String> = blocks.take(20).map(|b| b.to_string()).collect();
    v.join(", ")
}
