//! Every input the fuzzers ever crashed on, replayed through the same entry
//! point in `archive_format::fuzzing`: each must now return, error or not,
//! without panicking. Inputs live in `fuzz/artifacts/<target>/` (see the
//! README there); the folders may be empty.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// The fuzz targets whose input is raw bytes, and their entry points.
const TARGETS: [(&str, Entry); 6] = [
    ("index_segment", |d| {
        let _ = archive_format::fuzzing::index_segment(d);
    }),
    ("metadata", |d| {
        let _ = archive_format::fuzzing::metadata(d);
    }),
    ("full_verify", |d| {
        let _ = archive_format::fuzzing::open_and_verify(d);
    }),
    ("descriptor", archive_format::fuzzing::descriptor),
    ("delta_open", |d| {
        let _ = archive_format::fuzzing::delta_open(d);
    }),
    ("delta_verify", |d| {
        let _ = archive_format::fuzzing::delta_verify(d);
    }),
];

/// `roundtrip` builds an image from its input with the `arbitrary` crate,
/// which this crate does not depend on, so its crashes become explicit cases
/// in `tests/roundtrip.rs` instead of files here.
const NOT_REPLAYED: &str = "roundtrip";

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/artifacts")
}

/// The files in `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read artifacts folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_artifacts_do_not_panic() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (target, run) in TARGETS {
        for file in inputs(&artifacts().join(target)) {
            let data = fs::read(&file).expect("read fuzz artifact");
            if panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz artifacts");
    assert!(failures.is_empty(), "these inputs panic: {failures:#?}");
}

/// A crash input left where nothing replays it would pass silently.
#[test]
fn every_artifact_folder_is_replayed() {
    let Ok(entries) = fs::read_dir(artifacts()) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("read artifacts folder").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        if name == NOT_REPLAYED {
            assert!(
                inputs(&path).is_empty(),
                "{}: turn these into cases in archive-format/tests/roundtrip.rs \
                 (`cargo +nightly fuzz fmt roundtrip <file>` prints one) and delete them",
                path.display()
            );
        } else {
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "{}: no fuzz target of that name is replayed here",
                path.display()
            );
        }
    }
}
