//! `--key FILE`: a MAC that proves a backup was made by a key holder
//! (SPEC.md §9.1, §18.1). Made by `full` and `delta`, proven by `verify`
//! and `restore`; a file without a valid MAC is refused when a key is
//! given, and stays an ordinary, intact backup when none is.

mod common;

use common::*;
use std::fs;
use std::path::Path;

/// A gzip FOOT container (SPEC.md §9) and an AUTH one (a 48-byte body).
const GZIP_FOOT_SPAN: usize = 106;
const GZIP_AUTH_SPAN: usize = 16 + 16 + 48 + 10;
/// A delta's DFOT record, AUTH record and trailer (SPEC.md §13, §18).
const DFOT_SPAN: usize = 16 + 64;
const DELTA_AUTH_SPAN: usize = 16 + 48;
const TRAILER: usize = 32;

/// A disk, a changed copy, two key files; a keyed full of the disk (with
/// its keyed empty delta) and a keyed delta of the copy.
fn keyed(dir: &Path) -> Vec<u8> {
    sample_disk(dir, "disk.raw", 3 << 20, 7);
    let mut now = fs::read(dir.join("disk.raw")).unwrap();
    now[123_456..123_456 + 11].copy_from_slice(b"new content");
    fs::write(dir.join("now.raw"), &now).unwrap();
    fs::write(dir.join("k.key"), [0x5a; 32]).unwrap();
    fs::write(dir.join("other.key"), [0xa5; 32]).unwrap();
    sdar(
        dir,
        &[
            "full",
            "disk.raw",
            "-o",
            "vm.full.gz",
            "--key",
            "k.key",
            "--vm-name",
            "vm-aaaa",
            "-q",
        ],
    )
    .success();
    sdar(
        dir,
        &[
            "delta",
            "now.raw",
            "--full",
            "vm.full.gz",
            "-o",
            "vm-1.sdar",
            "--key",
            "k.key",
            "--vm-name",
            "vm-aaaa",
            "-q",
        ],
    )
    .success();
    now
}

#[test]
fn keyed_backups_verify_and_restore_with_their_key() {
    let dir = scratch();
    let d = dir.path();
    let now = keyed(d);
    // Still plain gzip to stock tools.
    let zcat = stock(d, "zcat", &["vm.full.gz"]).success();
    assert_eq!(zcat.stdout, fs::read(d.join("disk.raw")).unwrap());

    for file in ["vm.full.gz", "vm.sdar", "vm-1.sdar"] {
        let out = sdar(d, &["verify", file, "--key", "k.key"]).success();
        assert!(
            out.stderr.contains("authentic") || out.stdout_text().contains("OK"),
            "{}",
            out.stderr
        );
        // Without a key they are ordinary backups, proven intact.
        sdar(d, &["verify", file, "-q"]).success();
        let info = sdar(d, &["info", file]).success();
        assert!(
            info.stdout_text()
                .contains("Authenticity: a MAC with key id"),
            "{}",
            info.stdout_text()
        );
    }
    let out = run_in(
        d,
        "./vm-1.sdar",
        &["restore", "--to", "r.vmdk", "--key", "k.key"],
    )
    .success();
    assert!(out.stderr.contains("authentic: "), "{}", out.stderr);
    assert_eq!(fs::read(d.join("r-flat.vmdk")).unwrap(), now);
}

#[test]
fn wrong_key_missing_mac_and_short_key_are_refused() {
    let dir = scratch();
    let d = dir.path();
    keyed(d);
    for file in ["vm.full.gz", "vm-1.sdar"] {
        let out = sdar(d, &["verify", file, "--key", "other.key"]);
        assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
        assert!(
            out.stderr.contains("made with another key"),
            "{}",
            out.stderr
        );
    }
    let out = run_in(
        d,
        "./vm-1.sdar",
        &["restore", "--to", "r.vmdk", "--key", "other.key"],
    );
    assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
    assert!(!d.join("r-flat.vmdk").exists() && !d.join("r.vmdk").exists());

    sdar(d, &["full", "disk.raw", "-o", "plain.full.gz", "-q"]).success();
    for file in ["plain.full.gz", "plain.sdar"] {
        let out = sdar(d, &["verify", file, "--key", "k.key"]);
        assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
        assert!(out.stderr.contains("carries no MAC"), "{}", out.stderr);
    }

    fs::write(d.join("short.key"), b"too short").unwrap();
    let out = sdar(
        d,
        &["full", "disk.raw", "-o", "s.full.gz", "--key", "short.key"],
    );
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("at least 16 bytes"), "{}", out.stderr);
    assert!(!d.join("s.full.gz").exists());
}

/// A MAC moved from one backup to another of the same layout (valid
/// records, valid CRCs, intact blocks: only the VM name differs) is caught
/// with the key and invisible without it; so is a changed restore program.
#[test]
fn a_mac_from_another_backup_or_a_changed_runtime_is_caught() {
    let dir = scratch();
    let d = dir.path();
    keyed(d);
    sdar(
        d,
        &[
            "full",
            "disk.raw",
            "-o",
            "b.full.gz",
            "--key",
            "k.key",
            "--vm-name",
            "vm-bbbb",
            "-q",
        ],
    )
    .success();
    sdar(
        d,
        &[
            "delta",
            "now.raw",
            "--full",
            "vm.full.gz",
            "-o",
            "b-1.sdar",
            "--key",
            "k.key",
            "--vm-name",
            "vm-bbbb",
            "-q",
        ],
    )
    .success();
    let splice = |from: &str, into: &str, end_gap: usize, span: usize| {
        let a = fs::read(d.join(from)).unwrap();
        let mut b = fs::read(d.join(into)).unwrap();
        assert_eq!(a.len(), b.len(), "same layout");
        let (s, e) = (b.len() - end_gap - span, b.len() - end_gap);
        assert_ne!(a[s..e], b[s..e], "the MACs differ");
        b[s..e].copy_from_slice(&a[s..e]);
        let name = format!("spliced-{into}");
        fs::write(d.join(&name), b).unwrap();
        name
    };
    let full = splice("vm.full.gz", "b.full.gz", GZIP_FOOT_SPAN, GZIP_AUTH_SPAN);
    let delta = splice(
        "vm-1.sdar",
        "b-1.sdar",
        DFOT_SPAN + TRAILER,
        DELTA_AUTH_SPAN,
    );
    for file in [&full, &delta] {
        sdar(d, &["verify", file, "-q"]).success();
        let out = sdar(d, &["verify", file, "--key", "k.key"]);
        assert_eq!(out.code, EXIT_INTEGRITY, "{file}: {}", out.stderr);
        assert!(out.stderr.contains("MAC does not match"), "{}", out.stderr);
    }

    fs::copy(d.join("vm-1.sdar"), d.join("altered.sdar")).unwrap();
    flip_byte(&d.join("altered.sdar"), 4096);
    let out = sdar(d, &["verify", "altered.sdar", "--key", "k.key"]);
    assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
    assert!(out.stderr.contains("MAC does not match"), "{}", out.stderr);
}
