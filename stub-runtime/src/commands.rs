//! The runtime's commands, and the restore and verify that the menu runs too.

use crate::args::{Command, FullSource, Invocation, RestoreArgs};
use crate::report::{self, json_string, object, Reporter};
use crate::Failure;
use archive_format::display::{escape, safe_file_name};
use archive_format::full::FullStream;
use archive_format::input::{open_input, InputKind};
use archive_format::locate::{find_full, search_dirs};
use archive_format::restore::{
    check_base, nonzero_bytes, restore, restore_stream, BlockSink, DiscardSink, PriorImage,
    RestoreProgress, RestoreReport,
};
use archive_format::target::{
    check_destination_name, resolve_destination, DestinationKind, RestoreTarget, TargetKind,
    TargetOptions,
};
use archive_format::vmdk::DescriptorSpec;
use archive_format::{hex, DeltaArchive, FullImage, Hash, Limits, Metadata};
use std::fs::File;
use std::io::{StdinLock, Write};
use std::path::{Path, PathBuf};

pub fn dispatch(inv: &Invocation) -> Result<(), Failure> {
    let archive_path = archive_path(inv)?;
    let mut delta = open_delta(&archive_path)?;
    match &inv.command {
        Command::Help => Ok(()),
        Command::Menu => crate::menu::run(&mut delta, &archive_path, inv),
        Command::Info { json } => {
            let text = if *json {
                report::info_json(&delta)
            } else {
                report::info_text(&delta)
            };
            print_out(&text)
        }
        Command::ExtractVmx { output } => {
            let vmx = delta
                .meta()
                .vmx
                .clone()
                .ok_or_else(|| Failure::Other("this backup carries no .vmx file".into()))?;
            match output {
                Some(p) => write_new_file(p, &vmx, false),
                None => {
                    // Bytes for a pipe or a file; on a terminal, the text
                    // with anything that could drive the terminal escaped.
                    let out = std::io::stdout();
                    let shown = if std::io::IsTerminal::is_terminal(&out) {
                        archive_format::display::escape_lines(&String::from_utf8_lossy(&vmx))
                            .into_bytes()
                    } else {
                        vmx
                    };
                    out.lock()
                        .write_all(&shown)
                        .map_err(|e| Failure::Other(format!("cannot write to stdout: {e}")))
                }
            }
        }
        Command::Verify { full, json, key } => {
            let mut log = RunLog::default();
            let result = authenticate(&mut delta, key.as_deref(), inv)
                .and_then(|()| verify(&mut delta, &archive_path, full, inv, &mut log));
            if *json {
                print_out(&log.json("verified", &archive_path, &result, None))?;
            }
            result
        }
        Command::Restore(args) => {
            let mut log = RunLog::default();
            let result = authenticate(&mut delta, args.key.as_deref(), inv)
                .and_then(|()| run_restore(&mut delta, &archive_path, args, inv, &mut log));
            if args.json {
                print_out(&log.json("restored", &archive_path, &result, Some(args)))?;
            }
            result
        }
    }
}

/// With `--key FILE`, proves the archive's MAC before anything else is
/// read or written; an archive without a valid one is refused.
fn authenticate(
    delta: &mut DeltaArchive<File>,
    key: Option<&Path>,
    inv: &Invocation,
) -> Result<(), Failure> {
    let Some(path) = key else { return Ok(()) };
    // The library reads it bounded and refuses a FIFO or a device; what is
    // not a key file is a usage error, as in `sdar`.
    let key = match archive_format::auth::Key::from_file(path) {
        Ok(key) => key,
        Err(e @ archive_format::Error::InvalidInput { .. }) => {
            return Err(Failure::Usage(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    delta.authenticate(&key)?;
    if inv.chatty() {
        eprintln!(
            "authentic: {} was made by a holder of the key (key id {})",
            delta.name().display(),
            hex(&key.id())
        );
    }
    Ok(())
}

pub fn open_delta(path: &Path) -> Result<DeltaArchive<File>, Failure> {
    let file = open_input(path, InputKind::Regular)?;
    Ok(DeltaArchive::open(file, path, &Limits::default())?)
}

/// What a restore or verify did, for its summaries: filled in as it goes, so
/// that a failure reports how far it got.
#[derive(Debug, Default)]
pub struct RunLog {
    pub full: Option<PathBuf>,
    pub data_file: Option<PathBuf>,
    pub descriptor: Option<PathBuf>,
    pub vmx: Option<PathBuf>,
    /// A partial file left for `--resume` after a failure.
    pub partial_kept: Option<PathBuf>,
    pub resumed: bool,
    pub progress: RestoreProgress,
    pub identity: Option<Hash>,
    pub secs: f64,
}

impl RunLog {
    /// The one JSON object `--json` prints at the end, success or not.
    fn json(
        &self,
        outcome: &str,
        archive: &Path,
        result: &Result<(), Failure>,
        args: Option<&RestoreArgs>,
    ) -> String {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("null".into(), |p| json_string(&p.display().to_string()))
        };
        let p = &self.progress;
        let rate = p.done as f64 / self.secs.max(1e-3);
        let (outcome, code, error) = match result {
            Ok(()) => (outcome, 0, "null".to_string()),
            Err(e) => ("failed", e.exit_code(), json_string(&e.to_string())),
        };
        let mut fields = vec![
            ("outcome", json_string(outcome)),
            ("exit_code", code.to_string()),
            ("error", error),
            ("archive", json_string(&archive.display().to_string())),
            ("full", path(&self.full)),
        ];
        if let Some(a) = args {
            fields.extend([
                ("destination", json_string(&a.to.display().to_string())),
                ("data_file", path(&self.data_file)),
                ("descriptor", path(&self.descriptor)),
                ("vmx", path(&self.vmx)),
                ("partial_kept", path(&self.partial_kept)),
                ("resumed", self.resumed.to_string()),
                ("thin", a.thin.to_string()),
            ]);
        }
        fields.extend([
            ("image_bytes", p.image_size.to_string()),
            ("done_bytes", p.done.to_string()),
            ("from_full_bytes", p.from_full.to_string()),
            ("from_delta_bytes", p.from_delta.to_string()),
            ("kept_bytes", p.kept.to_string()),
            ("zero_blocks", p.zero_blocks.to_string()),
            ("zero_bytes", p.zero_bytes.to_string()),
            ("full_read_bytes", p.full_read.to_string()),
            ("delta_read_bytes", p.delta_read.to_string()),
            ("elapsed_seconds", format!("{:.3}", self.secs)),
            ("rate_bytes_per_sec", format!("{rate:.0}")),
            (
                "identity",
                self.identity
                    .map_or("null".into(), |h| json_string(&hex(&h))),
            ),
        ]);
        object(&fields) + "\n"
    }
}

/// Checks the archive and its full completely, writing nothing.
pub fn verify(
    delta: &mut DeltaArchive<File>,
    archive: &Path,
    full: &FullSource,
    inv: &Invocation,
    log: &mut RunLog,
) -> Result<(), Failure> {
    let mut reporter = Reporter::new(inv.progress, "verify");
    let base = open_base(delta, archive, full)?;
    log.full = Some(base.name().to_path_buf());
    let report = rebuild(
        delta,
        base,
        &mut DiscardSink,
        inv.threads,
        None,
        &mut reporter,
        log,
    )?;
    if inv.chatty() {
        eprintln!(
            "OK: {} verified against {}: {} blocks, identity {}",
            archive.display(),
            log.full.as_deref().unwrap_or(Path::new("-")).display(),
            report.blocks,
            hex(&report.identity)
        );
        eprintln!("{}", report::summary(&report.progress, log.secs));
    }
    Ok(())
}

/// Restores the disk to `args.to`, every block proven; with `--vmx`, writes
/// the .vmx beside it.
pub fn run_restore(
    delta: &mut DeltaArchive<File>,
    archive: &Path,
    args: &RestoreArgs,
    inv: &Invocation,
    log: &mut RunLog,
) -> Result<(), Failure> {
    let mut reporter = Reporter::new(inv.progress, "restore");
    let kind = if args.raw {
        TargetKind::Raw
    } else {
        TargetKind::Vmdk { vmfs: args.vmfs }
    };
    let size = delta.header().image_size;
    // Everything that can be refused is refused before the disk is written:
    // the destination's kind and name, the .vmx asked for, then the full
    // (found, opened and proven the right one), then the rest of the
    // destination (existing files, locks, room, a device's size).
    let to = destination_path(delta.meta(), &args.to, &kind)?;
    let vmx = match &args.vmx_dir {
        Some(dir) => {
            let rename = args.rename_disk.then_some(to.as_path());
            Some(VmxPlan::new(delta.meta(), dir, rename, args.force)?)
        }
        None => None,
    };
    let mut base = open_base(delta, archive, &args.full)?;
    log.full = Some(base.name().to_path_buf());
    let mut opts = TargetOptions::new(kind.clone());
    opts.force = args.force;
    opts.resume = args.resume;
    opts.thin = args.thin;
    opts.space_check = args.space_check;
    opts.identity = delta.identity();
    opts.block_size = delta.header().block_size;
    if let (true, true, Base::File(full)) = (args.thin, args.space_check, &mut base) {
        opts.thin_bytes = Some(nonzero_bytes(delta, full)?);
    }
    let mut target = RestoreTarget::create(&to, size, &opts)?;
    log.resumed = target.resumed();
    if target.resumed() && inv.chatty() {
        eprintln!(
            "resuming the interrupted restore in {}: blocks already written are read back and checked",
            target.partial_path().display()
        );
    }
    let prior = target.prior()?;
    let result = rebuild(
        delta,
        base,
        &mut target,
        inv.threads,
        prior.as_ref(),
        &mut reporter,
        log,
    );
    let report = match result {
        Ok(r) => r,
        Err(e) if target.is_device() => {
            return Err(device_failure(&target, e));
        }
        Err(e) => {
            // An interruption by the environment (a full disk, an I/O error)
            // leaves the proven blocks for --resume; so does any failure of a
            // resumed run. Bad data in a fresh run leaves nothing.
            let integrity = matches!(&e, Failure::Format(f) if f.is_integrity());
            if target.resumed() || !integrity {
                target.keep_partial();
                log.partial_kept = Some(target.partial_path().to_path_buf());
                return Err(Failure::Interrupted {
                    cause: Box::new(e),
                    partial: target.partial_path().to_path_buf(),
                });
            }
            return Err(e);
        }
    };
    let spec = match kind {
        TargetKind::Raw => None,
        TargetKind::Vmdk { vmfs } => {
            let flat = target
                .data_path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let cid = u32::from_le_bytes(report.identity[..4].try_into().expect("4 bytes"));
            let mut spec = DescriptorSpec::new(size, flat, vmfs, delta.meta(), cid);
            spec.thin = args.thin;
            Some(spec)
        }
    };
    let data_file = target.data_path().to_path_buf();
    let written = target.destination().to_path_buf();
    let device = target.is_device().then(|| {
        let unwritten = !target.wrote_any() && !target.resumed();
        (unwritten, data_file.clone())
    });
    target.commit(spec.as_ref()).map_err(|e| {
        let e = Failure::from(e);
        match device {
            Some((true, device)) => Failure::UnwrittenDevice {
                cause: Box::new(e),
                device,
            },
            Some((false, device)) => Failure::IncompleteDevice {
                cause: Box::new(e),
                device,
            },
            None => e,
        }
    })?;
    log.data_file = Some(data_file);
    if spec.is_some() {
        log.descriptor = Some(written.clone());
    }
    if inv.chatty() {
        // Say where the data went when a link was followed or a folder
        // given: the path typed is not the file written.
        let place = if written == args.to {
            written.display().to_string()
        } else {
            format!("{} -> {}", args.to.display(), written.display())
        };
        eprintln!(
            "restored {place} (every block verified, identity {})",
            hex(&report.identity)
        );
        eprintln!("{}", report::summary(&report.progress, log.secs));
    }
    if let Some(plan) = vmx {
        plan.write()?;
        if inv.chatty() {
            eprintln!("wrote {}{}", plan.path.display(), plan.note);
        }
        log.vmx = Some(plan.path);
    }
    Ok(())
}

/// `--to` as the restore uses it, decided before anything is written: an
/// existing folder gets the disk under the backup's own disk name; the
/// file name is one a descriptor can hold.
fn destination_path(meta: &Metadata, to: &Path, kind: &TargetKind) -> Result<PathBuf, Failure> {
    let place = resolve_destination(to)?;
    let path = match place.kind {
        DestinationKind::Folder => to.join(disk_file_name(meta, kind)),
        DestinationKind::Device => return Ok(to.to_path_buf()),
        DestinationKind::New | DestinationKind::File => {
            check_destination_name(&place.path, kind)?;
            return Ok(to.to_path_buf());
        }
    };
    let inner = resolve_destination(&path)?;
    if inner.kind == DestinationKind::Folder {
        return Err(Failure::Usage(format!(
            "{} is a folder, and so is {} in it; give the disk's file name",
            to.display(),
            path.display()
        )));
    }
    if inner.kind != DestinationKind::Device {
        check_destination_name(&inner.path, kind)?;
    }
    Ok(path)
}

/// The disk's file name in a folder given as `--to`: the backup's disk name
/// (made safe), `.vmdk` for a VMDK, `.img` for a raw image; else the VM's
/// name; else `restored`.
pub fn disk_file_name(meta: &Metadata, kind: &TargetKind) -> String {
    let safe = |n: &str| safe_file_name(n, 200).replace('"', "_");
    let stem = |n: String| {
        let n = n.strip_suffix(".vmdk").map(str::to_string).unwrap_or(n);
        n.strip_suffix("-flat").map(str::to_string).unwrap_or(n)
    };
    let base = meta
        .disk_name
        .as_deref()
        .map(|n| stem(safe(n)))
        .filter(|n| !n.is_empty())
        .or_else(|| meta.vm_name.as_deref().map(safe).filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "restored".into());
    match kind {
        TargetKind::Raw => format!("{base}.img"),
        TargetKind::Vmdk { .. } => format!("{base}.vmdk"),
    }
}

/// The full a delta is rebuilt from: a file, proven the right one, or a
/// stream on standard input, checked as it passes.
// One per run, moved once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Base {
    File(FullImage<File>),
    Stream(FullStream<StdinLock<'static>>),
}

impl Base {
    pub fn name(&self) -> &Path {
        match self {
            Base::File(f) => f.name(),
            Base::Stream(_) => Path::new(STDIN_NAME),
        }
    }
}

const STDIN_NAME: &str = "<standard input>";

/// Finds and opens the full `delta` needs, and proves a file to be the right
/// one before anything is written.
pub fn open_base(
    delta: &DeltaArchive<File>,
    archive: &Path,
    source: &FullSource,
) -> Result<Base, Failure> {
    let path = match source {
        FullSource::Path(p) => p.clone(),
        FullSource::Stdin => {
            let stream = FullStream::open(
                std::io::stdin().lock(),
                Path::new(STDIN_NAME),
                &Limits::default(),
            )?;
            return Ok(Base::Stream(stream));
        }
        FullSource::Search => {
            let search_path = std::env::var_os("SDAR_FULL_PATH");
            let dirs = search_dirs(archive, search_path.as_deref());
            let hint = delta.meta().base_name.as_deref();
            find_full(&dirs, hint, &delta.header().base_identity).ok_or_else(|| {
                Failure::Other(format!(
                    "the full image with identity {} was not found in {}; give it with --full PATH",
                    hex(&delta.header().base_identity),
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
        }
    };
    let file = open_input(&path, InputKind::Regular)?;
    let base = FullImage::open(file, &path, &Limits::default())?;
    check_base(delta, &base)?;
    Ok(Base::File(base))
}

/// Rebuilds the delta's image from `base` into `sink`, reporting progress
/// and recording it in `log`.
fn rebuild(
    delta: &mut DeltaArchive<File>,
    base: Base,
    sink: &mut dyn BlockSink,
    threads: usize,
    prior: Option<&PriorImage>,
    reporter: &mut Reporter,
    log: &mut RunLog,
) -> Result<RestoreReport, Failure> {
    let mut last = RestoreProgress::default();
    let mut progress = |p: &RestoreProgress| {
        reporter.update(p);
        last.clone_from(p);
    };
    let result = match base {
        Base::File(full) => archive_format::image::ProvenImage::of_delta(delta.by_ref(), full)
            .and_then(|image| {
                restore(
                    &image,
                    sink,
                    threads,
                    prior,
                    &mut progress,
                    &archive_format::Cancel::new(),
                )
            }),
        Base::Stream(stream) => restore_stream(
            delta,
            stream,
            Path::new(STDIN_NAME),
            sink,
            prior,
            &mut progress,
        ),
    };
    reporter.finish(&last);
    log.secs = reporter.elapsed();
    log.progress = last;
    let report = result?;
    log.progress = report.progress.clone();
    log.identity = Some(report.identity);
    Ok(report)
}

/// The .vmx a restore will write: its path and bytes, worked out (and
/// refused if they cannot be) before the disk is written.
pub struct VmxPlan {
    pub path: PathBuf,
    bytes: Vec<u8>,
    replace: bool,
    /// What was changed, for the user.
    pub note: String,
}

impl VmxPlan {
    /// The backup's .vmx into `dir` as `<VM name>.vmx`. With `rename`, the
    /// entry naming the original disk is pointed at that restored
    /// descriptor.
    pub fn new(
        meta: &Metadata,
        dir: &Path,
        rename: Option<&Path>,
        replace: bool,
    ) -> Result<Self, Failure> {
        let vmx = meta
            .vmx
            .as_deref()
            .ok_or_else(|| Failure::Other("this backup carries no .vmx file".into()))?;
        if !dir.is_dir() {
            return Err(Failure::Usage(format!(
                "{} is not a folder to write the .vmx into",
                dir.display()
            )));
        }
        let path = dir.join(vmx_file_name(meta, rename));
        // Refused now, not after the disk is written: an existing name
        // without --force, and a link or anything but a regular file even
        // with it (never written through, never replaced).
        match path.symlink_metadata() {
            Ok(_) if !replace => {
                return Err(Failure::Usage(format!(
                    "{} already exists; use --force to replace it",
                    path.display()
                )))
            }
            Ok(m) if m.file_type().is_symlink() || !m.is_file() => {
                return Err(Failure::Usage(format!(
                    "{} is {}: sdar neither writes the .vmx through it nor replaces it; remove it or choose another folder",
                    path.display(),
                    if m.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "not a regular file"
                    }
                )))
            }
            _ => {}
        }
        let mut note = String::new();
        let bytes = match rename {
            None => vmx.to_vec(),
            Some(disk) => {
                let old = meta.disk_name.as_deref().ok_or_else(|| {
                    Failure::Other(
                        "this backup does not record its disk's file name, so --rename-disk cannot find the entry to change".into(),
                    )
                })?;
                let new = vmx_disk_reference(dir, disk);
                let (bytes, n) =
                    archive_format::vmx::rename_disk(vmx, old, meta.scsi_id.as_deref(), &new)
                        .map_err(|why| {
                            Failure::Usage(format!("cannot name {new} in the .vmx: {why}"))
                        })?;
                let (old, new) = (escape(old), escape(&new));
                note = match n {
                    0 => format!(" (no entry named {old} was found: the .vmx is unchanged)"),
                    1 => format!(" (its disk entry now names {new})"),
                    n => format!(" ({n} disk entries now name {new})"),
                };
                bytes
            }
        };
        Ok(VmxPlan {
            path,
            bytes,
            replace,
            note,
        })
    }

    pub fn write(&self) -> Result<(), Failure> {
        write_new_file(&self.path, &self.bytes, self.replace)
    }
}

/// `<VM name>.vmx`, from the backup's metadata, made safe as a file name;
/// else named after the disk.
pub fn vmx_file_name(meta: &Metadata, disk: Option<&Path>) -> String {
    // File names stop at 255 bytes; a VM name may be longer.
    let stem = meta
        .vm_name
        .as_deref()
        // A name that starts hidden or climbing (`../`) is not offered at all.
        .filter(|n| !n.starts_with('.'))
        .map(|n| safe_file_name(n, 200))
        .filter(|n| !n.is_empty())
        .or_else(|| {
            disk.and_then(|d| d.file_stem())
                .map(|s| safe_file_name(&s.to_string_lossy(), 200))
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "restored".into());
    format!("{stem}.vmx")
}

/// How a .vmx in `dir` names `disk`: by file name when they share a folder,
/// by absolute path otherwise.
fn vmx_disk_reference(dir: &Path, disk: &Path) -> String {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let disk_dir = match disk.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = disk.file_name().unwrap_or_default();
    if canon(&disk_dir) == canon(dir) {
        name.to_string_lossy().into_owned()
    } else {
        canon(&disk_dir).join(name).display().to_string()
    }
}

/// The archive: `--archive`, else this program's own file (`/proc/self/exe`
/// when there is a /proc, else argv[0]).
fn archive_path(inv: &Invocation) -> Result<PathBuf, Failure> {
    if let Some(p) = &inv.archive {
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::current_exe() {
        if p.is_file() {
            return Ok(p);
        }
    }
    if inv.program.components().count() > 1 && inv.program.is_file() {
        return Ok(inv.program.clone());
    }
    Err(Failure::Usage(
        "cannot find this archive's own file: run it by its path or give --archive PATH".into(),
    ))
}

/// Writes a file that must not exist yet (or, with `replace`, replaces one
/// that is not a backup), never through a link: a new name with
/// `O_CREAT | O_EXCL | O_NOFOLLOW`, a replaced one through a temporary file
/// renamed over it.
pub fn write_new_file(path: &Path, bytes: &[u8], replace: bool) -> Result<(), Failure> {
    Ok(archive_format::target::write_file_replacing(
        path, bytes, replace,
    )?)
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Other(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// A restore onto a device that failed: the device holds an incomplete
/// image only when some block was written to it (or an earlier restore,
/// resumed, had written some).
fn device_failure(target: &RestoreTarget, e: Failure) -> Failure {
    let device = target.data_path().to_path_buf();
    if !target.wrote_any() && !target.resumed() {
        return Failure::UnwrittenDevice {
            cause: Box::new(e),
            device,
        };
    }
    Failure::IncompleteDevice {
        cause: Box::new(e),
        device,
    }
}
