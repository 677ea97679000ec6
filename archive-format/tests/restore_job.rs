//! The restore and verify jobs through the library's API: what `prepare`
//! refuses before anything is written, a job cancelled mid-run leaving a
//! partial that a resumed job completes byte for byte, and the outcome's
//! counts and identity.

mod fixture;

use archive_format::job::{
    FullSource, Kept, PreparedRestore, PreparedVerify, RestoreRequest, VerifyRequest,
};
use archive_format::layout::{DEFAULT_MAP_ENTRIES, VERSION_MAJOR, VERSION_MINOR};
use archive_format::restore::RestoreProgress;
use archive_format::target::TargetKind;
use archive_format::{
    write_delta, Cancel, Codec, DeltaHeader, DeltaOptions, DeltaWriter, Error, FullImage, Limits,
    Metadata,
};
use fixture::{assert_same_bytes, count_zero_blocks, expected_identity};
use std::collections::BTreeSet;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

const BLOCK: usize = 64 * 1024;
/// 96 blocks and a short tail of ten sectors: several batches of a restore.
const DISK_LEN: usize = 96 * BLOCK + 5120;
const FULL: &str = "vm.full.gz";
const DELTA: &str = "vm.sdar";

/// The blocks of the new disk that differ from the base: data rewritten
/// whole, a page changed, zeroed.
const REWRITTEN: &[usize] = &[3, 17, 40, 41, 77];
const ZEROED: &[usize] = &[11, 52];
const PATCHED: &[usize] = &[5, 60];

struct Backup {
    dir: tempfile::TempDir,
    base: Vec<u8>,
    new: Vec<u8>,
}

impl Backup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn request(&self, to: &str) -> RestoreRequest {
        let mut r = RestoreRequest::new(self.path(DELTA), self.path(to));
        r.threads = 2;
        r
    }

    /// The names in the backup's folder (and in `restore/`, if there).
    fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for dir in [self.dir.path().to_path_buf(), self.path("restore")] {
            for e in fs::read_dir(&dir).into_iter().flatten() {
                let e = e.unwrap();
                names.insert(
                    e.path()
                        .strip_prefix(self.dir.path())
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
        names
    }
}

fn meta() -> Metadata {
    Metadata {
        vm_name: Some("CRM".into()),
        disk_name: Some("CRM.vmdk".into()),
        disk_size: Some(DISK_LEN as u64),
        vmx: Some(b"displayName = \"CRM\"\nscsi0:0.fileName = \"CRM.vmdk\"\n".to_vec()),
        scsi_id: Some("scsi0:0".into()),
        ..fixture::sample_meta()
    }
}

/// A full of a seeded disk and a delta of a changed copy, in a new folder.
fn backup(seed: u64) -> Backup {
    let dir = tempfile::tempdir().unwrap();
    let base = fixture::disk(DISK_LEN, BLOCK, seed);
    let options = fixture::options(Codec::Gzip, BLOCK as u32, 16, 2);
    let (full, _) = fixture::write_pushed(&base, &options, &meta());
    fs::write(dir.path().join(FULL), &full).unwrap();

    let mut new = base.clone();
    let mut rng = fixture::Rng::new(seed ^ 0x5EED);
    for &b in REWRITTEN {
        rng.fill(&mut new[b * BLOCK..][..BLOCK]);
    }
    for &b in ZEROED {
        new[b * BLOCK..][..BLOCK].fill(0);
    }
    for &b in PATCHED {
        rng.fill(&mut new[b * BLOCK + 4096..][..4096]);
    }
    let image = FullImage::open(Cursor::new(&full[..]), FULL, &Limits::default()).unwrap();
    let header = DeltaHeader {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        compat_flags: 0,
        incompat_flags: 0,
        codec: Codec::Zstd,
        block_size: BLOCK as u32,
        map_entries: DEFAULT_MAP_ENTRIES,
        image_size: new.len() as u64,
        base_image_size: base.len() as u64,
        base_identity: image.identity(),
    };
    let delta_meta = Metadata {
        base_name: Some(FULL.into()),
        ..meta()
    };
    let writer = DeltaWriter::new(Vec::new(), DELTA, b"", header, &delta_meta).unwrap();
    let options = DeltaOptions {
        codec: Codec::Zstd,
        level: None,
        threads: 2,
        index_only: false,
    };
    let (delta, _) = write_delta(
        &new[..],
        Path::new("new.raw"),
        &image,
        writer,
        &options,
        &mut |_| {},
    )
    .unwrap();
    fs::write(dir.path().join(DELTA), delta).unwrap();
    Backup { dir, base, new }
}

fn changed_blocks() -> u64 {
    (REWRITTEN.len() + ZEROED.len() + PATCHED.len()) as u64
}

#[test]
fn a_restore_reports_what_it_did() {
    let b = backup(1);
    fs::create_dir(b.path("restore")).unwrap();
    let mut request = b.request("restore/crm.vmdk");
    request.vmx_dir = Some(b.path("restore"));
    request.rename_disk = true;
    let job = PreparedRestore::prepare(request).unwrap_or_else(|f| panic!("prepare: {f}"));
    assert!(!job.resumed());
    assert_eq!(job.record().full.as_deref(), Some(b.path(FULL).as_path()));
    let mut reports = Vec::new();
    let outcome = job
        .run(&mut |p| reports.push(p.clone()), &Cancel::new())
        .unwrap_or_else(|f| panic!("run: {f}"));

    assert_eq!(outcome.identity, expected_identity(&b.new, BLOCK as u32));
    assert_eq!(outcome.record.identity, Some(outcome.identity));
    assert_eq!(outcome.blocks, DISK_LEN.div_ceil(BLOCK) as u64);
    let p = &outcome.progress;
    assert_eq!((p.image_size, p.done), (DISK_LEN as u64, DISK_LEN as u64));
    assert_eq!(p.from_delta, changed_blocks() * BLOCK as u64);
    assert_eq!(p.from_full, (DISK_LEN as u64) - p.from_delta);
    assert_eq!(p.zero_blocks, count_zero_blocks(&b.new, BLOCK));
    assert_eq!(p.kept, 0);
    assert!(reports.len() > 1, "progress after every batch: {reports:?}");
    assert!(reports.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(reports.last(), Some(p));

    let disk = &outcome.disk;
    assert_eq!(disk.destination, b.path("restore/crm.vmdk"));
    assert_eq!(disk.descriptor.as_deref(), Some(disk.destination.as_path()));
    assert_eq!(disk.data_file, b.path("restore/crm-flat.vmdk"));
    assert_same_bytes(
        &fs::read(&disk.data_file).unwrap(),
        &b.new,
        "the restored extent",
    );
    let vmx = outcome.vmx.as_ref().expect("the .vmx was asked for");
    assert_eq!(vmx.path, b.path("restore/CRM.vmx"));
    let text = fs::read_to_string(&vmx.path).unwrap();
    assert!(text.contains("\"crm.vmdk\""), "{text}");
    assert_eq!(
        b.names(),
        [
            "restore",
            "restore/CRM.vmx",
            "restore/crm-flat.vmdk",
            "restore/crm.vmdk",
            DELTA,
            FULL
        ]
        .map(String::from)
        .into(),
    );
}

#[test]
fn prepare_refuses_before_writing_anything() {
    let b = backup(2);
    let other = backup(3);
    let before = b.names();
    let refused = |request: RestoreRequest| -> Error {
        match PreparedRestore::prepare(request) {
            Ok(_) => panic!("prepared"),
            Err(f) => {
                assert_eq!(f.kept, Kept::Nothing);
                f.error
            }
        }
    };

    // Another disk's full, given by path: refused by its identity.
    let mut request = b.request("crm.vmdk");
    request.full = FullSource::Path(other.path(FULL));
    let e = refused(request);
    assert!(matches!(e, Error::WrongFull { .. }), "{e}");

    // No full beside the archive nor on the search path.
    fs::remove_file(b.path(FULL)).unwrap();
    let mut request = b.request("crm.vmdk");
    request.full = FullSource::Search {
        search_path: Some(other.dir.path().as_os_str().to_owned()),
    };
    let e = refused(request);
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("give it with --full PATH"), "{e}");
    fs::write(b.path(FULL), fixture_full(&b)).unwrap();

    // A destination that exists, without force: refused after the full
    // was found (the record names it).
    fs::write(b.path("crm.vmdk"), b"someone's file").unwrap();
    let before_dest = b.names();
    match PreparedRestore::prepare(b.request("crm.vmdk")) {
        Ok(_) => panic!("prepared over an existing file"),
        Err(f) => {
            assert!(matches!(f.error, Error::InvalidInput { .. }), "{}", f.error);
            assert_eq!(f.record.full.as_deref(), Some(b.path(FULL).as_path()));
        }
    }
    assert_eq!(fs::read(b.path("crm.vmdk")).unwrap(), b"someone's file");
    assert_eq!(b.names(), before_dest);
    fs::remove_file(b.path("crm.vmdk")).unwrap();

    // A name a descriptor cannot hold; a .vmx into a folder that is not.
    let e = refused(b.request("crm\".vmdk"));
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    let mut request = b.request("crm.vmdk");
    request.vmx_dir = Some(b.path("no-such-folder"));
    let e = refused(request);
    assert!(e.to_string().contains("is not a folder"), "{e}");
    assert_eq!(b.names(), before);

    // The verify job refuses the wrong full the same way.
    let mut request = VerifyRequest::new(b.path(DELTA));
    request.full = FullSource::Path(other.path(FULL));
    match PreparedVerify::prepare(request) {
        Ok(_) => panic!("verify prepared with the wrong full"),
        Err(f) => assert!(matches!(f.error, Error::WrongFull { .. }), "{}", f.error),
    }
}

/// The full of `b`, written again (the same bytes: writing is deterministic).
fn fixture_full(b: &Backup) -> Vec<u8> {
    let options = fixture::options(Codec::Gzip, BLOCK as u32, 16, 2);
    fixture::write_pushed(&b.base, &options, &meta()).0
}

/// Cancels from the progress callback once `after` bytes are done.
fn cancel_after(after: u64, cancel: &Cancel) -> impl FnMut(&RestoreProgress) + '_ {
    move |p| {
        if p.done >= after {
            cancel.cancel();
        }
    }
}

#[test]
fn a_cancelled_restore_keeps_a_partial_that_a_resumed_one_completes() {
    let b = backup(4);
    for kind in [TargetKind::Raw, TargetKind::Vmdk { vmfs: false }] {
        let to = match kind {
            TargetKind::Raw => "crm.img",
            TargetKind::Vmdk { .. } => "crm.vmdk",
        };
        let request = || RestoreRequest {
            kind: kind.clone(),
            ..b.request(to)
        };
        let cancel = Cancel::new();
        let job = PreparedRestore::prepare(request()).unwrap_or_else(|f| panic!("{f}"));
        let failure = match job.run(&mut cancel_after(1, &cancel), &cancel) {
            Ok(_) => panic!("{to}: the cancelled restore finished"),
            Err(f) => f,
        };
        assert!(failure.is_cancelled(), "{to}: {}", failure.error);
        let Kept::Partial(partial) = &failure.kept else {
            panic!("{to}: kept {:?}", failure.kept)
        };
        let done = failure.record.progress.done;
        assert!(
            done > 0 && done < DISK_LEN as u64,
            "{to}: {done} bytes done"
        );
        assert!(partial.exists(), "{}", partial.display());
        assert!(!b.path(to).exists(), "{to}: no disk under its final name");

        // Without resume (or force), the partial is not taken over.
        match PreparedRestore::prepare(request()) {
            Ok(_) => panic!("{to}: prepared over an interrupted restore"),
            Err(f) => assert!(matches!(f.error, Error::InvalidInput { .. }), "{}", f.error),
        }
        assert!(partial.exists());

        // Resumed: the kept blocks are read back, the rest restored.
        let resumed = RestoreRequest {
            resume: true,
            ..request()
        };
        let job = PreparedRestore::prepare(resumed).unwrap_or_else(|f| panic!("{f}"));
        assert!(job.resumed(), "{to}");
        assert_eq!(job.partial_path(), partial.as_path());
        let outcome = job
            .run(&mut |_| {}, &Cancel::new())
            .unwrap_or_else(|f| panic!("{to}: resumed: {f}"));
        assert!(outcome.record.resumed);
        assert!(
            outcome.progress.kept >= done,
            "{to}: {:?}",
            outcome.progress
        );
        assert_eq!(outcome.identity, expected_identity(&b.new, BLOCK as u32));
        assert_same_bytes(
            &fs::read(&outcome.disk.data_file).unwrap(),
            &b.new,
            &format!("{to}: restored after a cancel and a resume"),
        );
        assert!(
            !partial.exists(),
            "{to}: the partial was renamed into place"
        );
    }
}

#[test]
fn a_restore_cancelled_from_another_thread_stops_and_resumes() {
    let b = backup(5);
    let cancel = Cancel::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            // The first progress report: some blocks are written.
            rx.recv().unwrap();
            cancel.cancel();
        })
    };
    let job = PreparedRestore::prepare(b.request("crm.vmdk")).unwrap_or_else(|f| panic!("{f}"));
    let mut told = false;
    let mut reports = 0u32;
    let result = job.run(
        &mut |p| {
            reports += 1;
            if p.done > 0 && !told {
                tx.send(()).unwrap();
                told = true;
                // Give the other thread its moment before the next batch.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        },
        &cancel,
    );
    canceller.join().unwrap();
    let failure = match result {
        Ok(_) => panic!("the cancelled restore finished after {reports} reports"),
        Err(f) => f,
    };
    assert!(failure.is_cancelled(), "{}", failure.error);
    assert!(matches!(failure.kept, Kept::Partial(ref p) if p.exists()));

    let mut request = b.request("crm.vmdk");
    request.resume = true;
    let outcome = PreparedRestore::prepare(request)
        .and_then(|job| job.run(&mut |_| {}, &Cancel::new()))
        .unwrap_or_else(|f| panic!("resumed: {f}"));
    assert_same_bytes(
        &fs::read(b.path("crm-flat.vmdk")).unwrap(),
        &b.new,
        "resumed",
    );
    assert_eq!(outcome.disk.data_file, b.path("crm-flat.vmdk"));
}

#[test]
fn a_restore_cancelled_before_it_starts_writes_no_block() {
    let b = backup(6);
    let cancel = Cancel::new();
    cancel.cancel();
    let job = PreparedRestore::prepare(b.request("crm.vmdk")).unwrap_or_else(|f| panic!("{f}"));
    let failure = job.run(&mut |_| {}, &cancel).expect_err("cancelled");
    assert!(failure.is_cancelled());
    assert_eq!(failure.record.progress.done, 0);
}

#[test]
fn the_verify_job_proves_everything_and_writes_nothing() {
    let b = backup(7);
    let before = b.names();
    let mut request = VerifyRequest::new(b.path(DELTA));
    request.threads = 2;
    let job = PreparedVerify::prepare(request).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(job.record().full.as_deref(), Some(b.path(FULL).as_path()));
    let outcome = job
        .run(&mut |_| {}, &Cancel::new())
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(outcome.identity, expected_identity(&b.new, BLOCK as u32));
    assert_eq!(outcome.progress.done, DISK_LEN as u64);
    assert_eq!(b.names(), before);

    // A damaged full is named when its block is read.
    let mut full = fs::read(b.path(FULL)).unwrap();
    let at = full.len() / 3;
    full[at] ^= 0x40;
    fs::write(b.path(FULL), &full).unwrap();
    let failure = PreparedVerify::prepare(VerifyRequest::new(b.path(DELTA)))
        .and_then(|job| job.run(&mut |_| {}, &Cancel::new()))
        .expect_err("a damaged full fails");
    assert!(failure.error.is_integrity(), "{}", failure.error);
    assert_eq!(failure.kept, Kept::Nothing);
}

#[test]
fn a_stream_restore_is_cancelled_and_resumed_from_the_stream_again() {
    let b = backup(8);
    let stream = |b: &Backup| FullSource::Stream {
        reader: Box::new(fs::File::open(b.path(FULL)).unwrap()),
        name: PathBuf::from("<standard input>"),
    };
    let cancel = Cancel::new();
    let request = RestoreRequest {
        full: stream(&b),
        ..b.request("crm.vmdk")
    };
    let job = PreparedRestore::prepare(request).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        job.record().full.as_deref(),
        Some(Path::new("<standard input>"))
    );
    let failure = job
        .run(&mut cancel_after(4 * BLOCK as u64, &cancel), &cancel)
        .expect_err("cancelled");
    assert!(failure.is_cancelled(), "{}", failure.error);
    let Kept::Partial(partial) = &failure.kept else {
        panic!("kept {:?}", failure.kept)
    };
    assert!(partial.exists());

    let request = RestoreRequest {
        full: stream(&b),
        resume: true,
        ..b.request("crm.vmdk")
    };
    let outcome = PreparedRestore::prepare(request)
        .and_then(|job| job.run(&mut |_| {}, &Cancel::new()))
        .unwrap_or_else(|f| panic!("resumed: {f}"));
    assert!(
        outcome.progress.kept >= 4 * BLOCK as u64,
        "{:?}",
        outcome.progress
    );
    assert_same_bytes(
        &fs::read(b.path("crm-flat.vmdk")).unwrap(),
        &b.new,
        "streamed, cancelled, resumed",
    );
}
