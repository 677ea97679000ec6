//! A full replaced under `sdar delta` while it runs: an administrator's
//! `mv other.full.gz F.full.gz` between the moment sdar opened F and the
//! moment it read F's last block. Whatever the timing, sdar either fails
//! with a clear error and leaves no archive, or writes an archive that
//! restores byte for byte from the full it was made against (the file sdar
//! opened, kept here under another name) and refuses the replacement as the
//! wrong full.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The disk; the delta compresses its changed blocks at zstd level 12 on
/// one or two threads, slowly enough (about a second) that a rename lands
/// in the middle of its reading, while making the disks and fulls stays
/// quick.
const SIZE: u64 = 48 << 20;
const LEVEL: &str = "12";

/// When the full is replaced, in eighths of an undisturbed delta's time
/// after the archive's temporary file appears, and with how many threads
/// the delta runs.
const ATTEMPTS: [(u32, &str); 4] = [(0, "1"), (1, "2"), (3, "1"), (6, "2")];

/// `base.img` and two disks changed from it, `new.img` (the delta's
/// source) and `other.img`; `orig.full.gz` of base and `other.full.gz` of
/// other, of the same size and block size.
fn disks(dir: &Path) {
    write_sample_disk(dir, "base.img", SIZE, 1);
    for (name, percent, seed) in [("new.img", "20", "2"), ("other.img", "50", "3")] {
        fs::copy(dir.join("base.img"), dir.join(name)).unwrap();
        sdar(
            dir,
            &["sample-change", name, "--percent", percent, "--seed", seed],
        )
        .success();
    }
    sdar(dir, &["full", "base.img", "-o", "orig.full.gz", "-q"]).success();
    sdar(dir, &["full", "other.img", "-o", "other.full.gz", "-q"]).success();
}

/// True once sdar has created the archive's temporary file in `dir`: it
/// does so only after it opened the full.
fn writing(dir: &Path) -> bool {
    listing(dir).iter().any(|n| n.ends_with(".partial"))
}

#[test]
fn a_full_renamed_over_during_delta_cannot_yield_an_archive_that_does_not_restore() {
    let scratch = scratch();
    let root = scratch.path();
    let begun = Instant::now();
    disks(root);
    eprintln!("disks and fulls made in {:?}", begun.elapsed());
    let new = fs::read(root.join("new.img")).unwrap();
    let started = Instant::now();
    sdar(
        root,
        &[
            "delta",
            "new.img",
            "--full",
            "orig.full.gz",
            "-o",
            "calm.sdar",
            "--level",
            LEVEL,
            "--threads",
            "1",
            "-q",
        ],
    )
    .success();
    let calm = started.elapsed();
    eprintln!("an undisturbed delta takes {calm:?}");
    let mut raced = 0;
    for (i, (eighths, threads)) in ATTEMPTS.into_iter().enumerate() {
        let delay = calm * eighths / 8;
        let run = root.join(format!("run{i}"));
        fs::create_dir(&run).unwrap();
        // Hard links: F is the original full's file until the rename, and
        // `../orig.full.gz` stays that file afterwards.
        fs::hard_link(root.join("orig.full.gz"), run.join("F.full.gz")).unwrap();
        fs::hard_link(root.join("other.full.gz"), run.join("mv.full.gz")).unwrap();
        let args = [
            "delta",
            "../new.img",
            "--full",
            "F.full.gz",
            "-o",
            "D.sdar",
            "--level",
            LEVEL,
            "--threads",
            threads,
            "-q",
        ];
        let mut child = Command::new(SDAR)
            .args(args)
            .current_dir(&run)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !writing(&run) && child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "sdar delta never started writing"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        fs::rename(run.join("mv.full.gz"), run.join("F.full.gz")).unwrap();
        let out = child.wait_with_output().unwrap();
        let what = format!(
            "sdar {} (full renamed over {delay:?} after it started writing{})",
            args.join(" "),
            if running { "" } else { ", after it ended" }
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code().expect("sdar delta was killed");
        if running {
            raced += 1;
        }
        eprintln!("{what}: exit {code} after {:?}", started.elapsed());
        if code != EXIT_OK {
            assert!(
                code == EXIT_INTEGRITY || code == EXIT_OTHER,
                "{what}: exit {code}: {stderr}"
            );
            assert!(
                stderr.contains("sdar: error:") && stderr.contains("F.full.gz"),
                "{what}: the error should name the full: {stderr}"
            );
            assert_eq!(
                listing(&run),
                ["F.full.gz"],
                "{what}: a failed delta leaves nothing"
            );
            continue;
        }
        // Made against the file sdar opened: it restores from that file...
        sdar(
            &run,
            &[
                "restore",
                "D.sdar",
                "--full",
                "../orig.full.gz",
                "--raw",
                "--to",
                "restored.img",
            ],
        )
        .success();
        let restored = fs::read(run.join("restored.img")).unwrap();
        assert_same_bytes(&restored, &new, &format!("{what}: restored disk"));
        // ...and refuses the file now at the name it was given.
        let wrong = sdar(
            &run,
            &[
                "restore",
                "D.sdar",
                "--full",
                "F.full.gz",
                "--raw",
                "--to",
                "x.img",
            ],
        )
        .expect_code(EXIT_INTEGRITY);
        assert!(
            wrong.stderr.contains("wrong full"),
            "{what}: the replacement should be named the wrong full: {}",
            wrong.stderr
        );
        assert!(
            !run.join("x.img").exists(),
            "{what}: a refused restore leaves nothing"
        );
        fs::remove_dir_all(&run).unwrap();
    }
    assert!(
        raced + 1 >= ATTEMPTS.len(),
        "only {raced} of {} renames happened while sdar delta ran: make the disk larger",
        ATTEMPTS.len()
    );
}
