//! The runtime's front end to the library's restore and verify jobs: the
//! command line's arguments made a request, the job's progress shown by the
//! [`Reporter`], its outcome told as messages, a [`RunLog`] and JSON. The
//! commands, the menu and `sdar restore` all tell a job's story through here.

use crate::args::{FullSource, Invocation, RestoreArgs};
use crate::report::{self, json_string, object, Reporter};
use crate::Failure;
use archive_format::job::{
    self, JobResult, Kept, PreparedRestore, PreparedVerify, RestoreFailure, RestoreOutcome,
    RestoreRequest, VerifyRequest,
};
use archive_format::restore::RestoreProgress;
use archive_format::target::TargetKind;
use archive_format::{hex, Cancel, DeltaArchive, Hash, Limits};
use std::fs::File;
use std::path::{Path, PathBuf};

/// What standard input is called when the full is streamed on it.
const STDIN_NAME: &str = "<standard input>";

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
    pub fn json(
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

    /// Takes what a job recorded.
    fn record(&mut self, record: &job::JobRecord, before_run: f64) {
        self.full.clone_from(&record.full);
        self.resumed = record.resumed;
        self.progress.clone_from(&record.progress);
        self.identity = record.identity;
        self.secs = before_run + record.elapsed.as_secs_f64();
    }
}

/// The job's full source for the runtime's: `SDAR_FULL_PATH` is read here,
/// standard input handed over here.
fn full_source(full: &FullSource) -> job::FullSource {
    match full {
        FullSource::Search => job::FullSource::Search {
            search_path: std::env::var_os("SDAR_FULL_PATH"),
        },
        FullSource::Path(p) => job::FullSource::Path(p.clone()),
        FullSource::Stdin => job::FullSource::Stream {
            reader: Box::new(std::io::stdin()),
            name: PathBuf::from(STDIN_NAME),
        },
    }
}

/// The key file given with `--key`, read bounded; what is not a key file is
/// a usage error, as in `sdar`.
fn read_key(path: Option<&Path>) -> Result<Option<archive_format::auth::Key>, Failure> {
    path.map(|p| archive_format::auth::Key::from_file(p).map_err(Failure::from))
        .transpose()
}

/// A job's failure as the runtime reports it, with what it left behind.
pub fn failure(f: Box<RestoreFailure>) -> Failure {
    let f = *f;
    let cause = Box::new(Failure::from(f.error));
    match f.kept {
        Kept::Nothing => *cause,
        Kept::Partial(partial) => Failure::Interrupted { cause, partial },
        Kept::Device {
            path,
            written: false,
        } => Failure::UnwrittenDevice {
            cause,
            device: path,
        },
        Kept::Device {
            path,
            written: true,
        } => Failure::IncompleteDevice {
            cause,
            device: path,
        },
    }
}

/// Says the archive was proven authentic, as soon as it was.
fn tell_authentic(inv: &Invocation, archive: &Path, record: &job::JobRecord) {
    if let (Some(id), true) = (record.key_id, inv.chatty()) {
        eprintln!(
            "authentic: {} was made by a holder of the key (key id {})",
            archive.display(),
            hex(&id)
        );
    }
}

/// One restore as the runtime tells it: build the request with
/// [`RestoreFront::request`], prepare the job and hand the result to
/// [`RestoreFront::prepared`], run it with [`RestoreFront::progress`], and
/// end with [`RestoreFront::finish`].
pub struct RestoreFront<'a> {
    archive: &'a Path,
    args: &'a RestoreArgs,
    inv: &'a Invocation,
    reporter: Reporter,
    /// Seconds from the start to the run (finding the full, creating the
    /// destination), which the summary's time includes.
    before_run: f64,
    pub log: RunLog,
}

impl<'a> RestoreFront<'a> {
    pub fn new(archive: &'a Path, args: &'a RestoreArgs, inv: &'a Invocation) -> Self {
        RestoreFront {
            archive,
            args,
            inv,
            reporter: Reporter::new(inv.progress, "restore"),
            before_run: 0.0,
            log: RunLog::default(),
        }
    }

    /// The job's request for these arguments.
    pub fn request(&self) -> Result<RestoreRequest, Failure> {
        let a = self.args;
        Ok(RestoreRequest {
            archive: self.archive.to_path_buf(),
            full: full_source(&a.full),
            to: a.to.clone(),
            kind: if a.raw {
                TargetKind::Raw
            } else {
                TargetKind::Vmdk { vmfs: a.vmfs }
            },
            force: a.force,
            resume: a.resume,
            thin: a.thin,
            space_check: a.space_check,
            vmx_dir: a.vmx_dir.clone(),
            rename_disk: a.rename_disk,
            threads: self.inv.threads,
            key: read_key(a.key.as_deref())?,
            limits: Limits::default(),
        })
    }

    /// Tells what preparing found (the key proven, an interrupted restore
    /// taken over), or how it failed.
    pub fn prepared(
        &mut self,
        prepared: JobResult<PreparedRestore>,
    ) -> Result<PreparedRestore, Failure> {
        let record = match &prepared {
            Ok(job) => job.record(),
            Err(f) => &f.record,
        };
        tell_authentic(self.inv, self.archive, record);
        self.log.full.clone_from(&record.full);
        let job = prepared.map_err(failure)?;
        self.log.resumed = job.resumed();
        if job.resumed() && self.inv.chatty() {
            eprintln!(
                "resuming the interrupted restore in {}: blocks already written are read back and checked",
                job.partial_path().display()
            );
        }
        self.before_run = self.reporter.elapsed();
        Ok(job)
    }

    /// Shows the running job's progress.
    pub fn progress(&mut self, p: &RestoreProgress) {
        self.reporter.update(p);
    }

    /// Tells how the job ended.
    pub fn finish(&mut self, result: JobResult<RestoreOutcome>) -> Result<(), Failure> {
        let record = match &result {
            Ok(o) => &o.record,
            Err(f) => &f.record,
        };
        self.reporter.finish(&record.progress);
        self.log.record(record, self.before_run);
        let (outcome, vmx) = match result {
            Ok(o) => {
                let vmx = o.vmx.clone();
                (o, vmx)
            }
            Err(f) => {
                if let Kept::Partial(p) = &f.kept {
                    self.log.partial_kept = Some(p.clone());
                }
                // The disk was restored and only the .vmx failed: say so
                // first, as for a restore that went through.
                if let (Some(disk), Some(identity)) = (&f.disk, f.record.identity) {
                    self.restored(disk, &identity, &f.record.progress);
                }
                return Err(failure(f));
            }
        };
        self.restored(&outcome.disk, &outcome.identity, &outcome.progress);
        if let Some(vmx) = vmx {
            if self.inv.chatty() {
                eprintln!("wrote {}{}", vmx.path.display(), vmx.note);
            }
            self.log.vmx = Some(vmx.path);
        }
        Ok(())
    }

    /// Tells where the disk went.
    fn restored(&mut self, disk: &job::RestoredDisk, identity: &Hash, progress: &RestoreProgress) {
        self.log.data_file = Some(disk.data_file.clone());
        self.log.descriptor.clone_from(&disk.descriptor);
        if self.inv.chatty() {
            // Say where the data went when a link was followed or a folder
            // given: the path typed is not the file written.
            let written = &disk.destination;
            let place = if *written == self.args.to {
                written.display().to_string()
            } else {
                format!("{} -> {}", self.args.to.display(), written.display())
            };
            eprintln!(
                "restored {place} (every block verified, identity {})",
                hex(identity)
            );
            eprintln!("{}", report::summary(progress, self.log.secs));
        }
    }

    /// The JSON summary `--json` prints.
    pub fn json(&self, result: &Result<(), Failure>) -> String {
        self.log
            .json("restored", self.archive, result, Some(self.args))
    }
}

/// Restores as `args` say: the archive `delta` (already open) or, without
/// it, the one at `archive`.
pub fn restore(
    delta: Option<DeltaArchive<File>>,
    front: &mut RestoreFront,
    cancel: &Cancel,
) -> Result<(), Failure> {
    let request = front.request()?;
    let prepared = match delta {
        Some(delta) => PreparedRestore::prepare_with(delta, request),
        None => PreparedRestore::prepare(request),
    };
    let job = front.prepared(prepared)?;
    let result = job.run(&mut |p| front.progress(p), cancel);
    front.finish(result)
}

/// Checks the archive and its full completely, writing nothing: the archive
/// `delta` (already open) or, without it, the one at `archive`.
pub fn verify(
    delta: Option<DeltaArchive<File>>,
    archive: &Path,
    full: &FullSource,
    key: Option<&Path>,
    inv: &Invocation,
    log: &mut RunLog,
) -> Result<(), Failure> {
    let mut reporter = Reporter::new(inv.progress, "verify");
    let request = VerifyRequest {
        archive: archive.to_path_buf(),
        full: full_source(full),
        threads: inv.threads,
        key: read_key(key)?,
        limits: Limits::default(),
    };
    let prepared = match delta {
        Some(delta) => PreparedVerify::prepare_with(delta, request),
        None => PreparedVerify::prepare(request),
    };
    let record = match &prepared {
        Ok(job) => job.record(),
        Err(f) => &f.record,
    };
    tell_authentic(inv, archive, record);
    log.full.clone_from(&record.full);
    let job = prepared.map_err(failure)?;
    let before_run = reporter.elapsed();
    let result = job.run(&mut |p| reporter.update(p), &Cancel::new());
    let record = match &result {
        Ok(o) => &o.record,
        Err(f) => &f.record,
    };
    reporter.finish(&record.progress);
    log.record(record, before_run);
    let outcome = result.map_err(failure)?;
    if inv.chatty() {
        eprintln!(
            "OK: {} verified against {}: {} blocks, identity {}",
            archive.display(),
            log.full.as_deref().unwrap_or(Path::new("-")).display(),
            outcome.blocks,
            hex(&outcome.identity)
        );
        eprintln!("{}", report::summary(&outcome.progress, log.secs));
    }
    Ok(())
}
