//! `sdar verify`: exit 0 on a good file, 1 on any damage (naming where it
//! is), 2 on bad arguments, 3 when the file cannot be read at all, and
//! never a change to the file it checks.

mod common;

use common::*;
use std::fs;
use std::path::Path;

const CODECS: [(&str, &str); 2] = [("gzip", "gz"), ("zstd", "zst")];

/// Makes `disk.raw` (5 MiB + 1 sector, seed 2: zeros, text and random data)
/// and a full image of it with `codec` and `extra` options; returns the
/// image's name and the identity `sdar full` printed.
fn image(dir: &Path, codec: &str, ext: &str, extra: &[&str]) -> (String, String) {
    if !dir.join("disk.raw").exists() {
        sample_disk(dir, "disk.raw", (5 << 20) + 512, 2);
    }
    let name = format!("disk.full.{ext}");
    let mut args = vec!["full", "disk.raw", "-o", &name, "--codec", codec, "--force"];
    args.extend_from_slice(extra);
    let out = sdar(dir, &args).success();
    (name, printed_identity(&out.stdout_text()))
}

/// Runs verify on a damaged copy and checks it fails with exit code 1 and
/// leaves the copy as it was.
#[track_caller]
fn assert_verify_rejects(dir: &Path, file: &str, damage: &str) -> String {
    let before = watch(&dir.join(file));
    let out = sdar(dir, &["verify", file]);
    assert_eq!(
        out.code,
        EXIT_INTEGRITY,
        "verify of a file with {damage} exited {}\nstdout: {}\nstderr: {}",
        out.code,
        out.stdout_text(),
        out.stderr
    );
    assert!(
        out.stderr.contains(file),
        "the message should name the file: {}",
        out.stderr
    );
    before.assert_unchanged("sdar verify");
    out.stderr
}

#[test]
fn good_file_verifies_with_the_identity_full_printed() {
    let dir = scratch();
    for (codec, ext) in CODECS {
        let (file, identity) = image(dir.path(), codec, ext, &[]);
        let out = sdar(dir.path(), &["verify", &file]).success();
        let text = out.stdout_text();
        assert!(text.starts_with(&format!("OK {file}")), "{text}");
        assert_eq!(printed_identity(&text), identity);
        let disk = fs::read(dir.path().join("disk.raw")).unwrap();
        let blocks = disk.len().div_ceil(65_536);
        let zeros = zero_blocks(&disk, 65_536);
        assert!(
            text.contains(&format!("{blocks} blocks ({zeros} zero)")),
            "{text}"
        );
    }
}

/// The block and the byte offset the message names, checked against the
/// layout: the byte must lie within the damaged block's member.
#[track_caller]
fn assert_names_block(stderr: &str, member: &Member) {
    assert_eq!(
        number_after(stderr, "block"),
        Some(member.block),
        "the message should name block {}: {stderr}",
        member.block
    );
    let at = number_after(stderr, "byte")
        .unwrap_or_else(|| panic!("the message should name a byte offset: {stderr}"));
    assert!(
        (member.offset..member.offset + member.len).contains(&at),
        "byte {at} is not inside block {}'s member (bytes {}..{}): {stderr}",
        member.block,
        member.offset,
        member.offset + member.len
    );
}

#[test]
fn flipped_byte_in_block_data_names_block_and_offset() {
    let dir = scratch();
    for (codec, ext) in CODECS {
        let (file, _) = image(dir.path(), codec, ext, &[]);
        let path = dir.path().join(&file);
        let pristine = fs::read(&path).unwrap();
        let layout = layout(&path);
        // The largest data member (random bytes), the last block (short),
        // and a zero block, whose identical members are easy to skip.
        let data = *layout
            .members
            .iter()
            .filter(|m| !m.zero)
            .max_by_key(|m| m.len)
            .unwrap();
        let last = *layout.members.last().unwrap();
        let zero = *layout
            .members
            .iter()
            .find(|m| m.zero)
            .expect("seed 2 has zero blocks");
        for (member, at) in [
            (data, data.offset + data.len / 2),
            (data, data.offset),
            (data, data.offset + data.len - 1),
            (last, last.offset + last.len / 2),
            (zero, zero.offset + zero.len / 2),
        ] {
            fs::write(&path, &pristine).unwrap();
            flip_byte(&path, at);
            let stderr = assert_verify_rejects(
                dir.path(),
                &file,
                &format!("block {} flipped at byte {at} ({codec})", member.block),
            );
            assert_names_block(&stderr, &member);
        }
    }
}

/// Workers finish in any order; the block reported is the first damaged
/// one in the file, whatever the thread count.
#[test]
fn first_damaged_block_is_reported_whatever_the_threads() {
    let dir = scratch();
    for (codec, ext) in CODECS {
        // 4K blocks: over 1200 members, so several workers are busy at once.
        let (file, _) = image(dir.path(), codec, ext, &["--block-size", "4K"]);
        let path = dir.path().join(&file);
        let layout = layout(&path);
        let data: Vec<Member> = layout.members.iter().filter(|m| !m.zero).copied().collect();
        let (first, second) = (data[data.len() / 3], data[data.len() - 2]);
        // Damage the later block first, so file order and damage order differ.
        flip_byte(&path, second.offset + second.len / 2);
        flip_byte(&path, first.offset + first.len / 2);
        for threads in ["1", "2", "8"] {
            let out = sdar(dir.path(), &["verify", &file, "--threads", threads])
                .expect_code(EXIT_INTEGRITY);
            assert_names_block(&out.stderr, &first);
        }
    }
}

#[test]
fn flipped_byte_in_index_or_footer_fails() {
    let dir = scratch();
    for (codec, ext) in CODECS {
        // 4K blocks: 1281 blocks in two index segments of up to 1024.
        let (file, _) = image(dir.path(), codec, ext, &["--block-size", "4K"]);
        let path = dir.path().join(&file);
        let pristine = fs::read(&path).unwrap();
        let layout = layout(&path);
        assert_eq!(layout.index_records.len(), 2);
        let len = layout.file_len;
        // SPEC.md §9: the 64-byte FOOT body ends the file, before the
        // 10-byte empty-member suffix of the gzip container (§4.2).
        let foot_body = len - 64 - if codec == "gzip" { 10 } else { 0 };
        assert!(layout.directory < foot_body);
        let spots = [
            (
                "the first INDX record's header",
                layout.index_records[0] + 2,
            ),
            (
                "the first INDX record's entries",
                layout.index_records[0] + 100,
            ),
            ("the last INDX record", layout.index_records[1] + 60),
            ("the directory", layout.directory + 30),
            ("the footer's identity", foot_body + 5),
            ("the footer's file length", foot_body + 50),
            ("the footer's reserved bytes", foot_body + 60),
            ("the file's last byte", len - 1),
            ("the HEAD record", 30),
            ("the META record", layout.data_start - 20),
            ("the first byte", 0),
        ];
        for (what, at) in spots {
            fs::write(&path, &pristine).unwrap();
            flip_byte(&path, at);
            assert_verify_rejects(
                dir.path(),
                &file,
                &format!("a flipped byte in {what} ({codec})"),
            );
        }
    }
}

#[test]
fn truncated_file_fails() {
    let dir = scratch();
    for (codec, ext) in CODECS {
        let (file, _) = image(dir.path(), codec, ext, &[]);
        let path = dir.path().join(&file);
        let pristine = fs::read(&path).unwrap();
        let layout = layout(&path);
        let len = layout.file_len;
        for cut in [
            len - 1,
            len - 64,
            *layout.index_records.last().unwrap(),
            len / 2,
            layout.data_start,
            1,
            0,
        ] {
            fs::write(&path, &pristine).unwrap();
            truncate(&path, cut);
            assert_verify_rejects(
                dir.path(),
                &file,
                &format!("{} of {len} bytes ({codec})", cut),
            );
        }
        // Bytes appended after the footer are damage too.
        let mut longer = pristine.clone();
        longer.extend_from_slice(b"\0\0\0\0");
        fs::write(&path, &longer).unwrap();
        assert_verify_rejects(dir.path(), &file, &format!("4 bytes appended ({codec})"));
    }
}

#[test]
fn file_that_is_not_an_sdar_image_fails() {
    let dir = scratch();
    let d = dir.path();
    let disk = sample_disk(d, "disk.raw", 1 << 20, 4);
    let gz = stock(d, "gzip", &["-c", "disk.raw"]).success();
    fs::write(d.join("plain.gz"), &gz.stdout).unwrap();
    let zst = stock(d, "zstd", &["-c", "-q", "disk.raw"]).success();
    fs::write(d.join("plain.zst"), &zst.stdout).unwrap();
    fs::write(d.join("text.txt"), b"hello, world\n").unwrap();
    fs::write(d.join("empty"), b"").unwrap();
    for file in ["plain.gz", "plain.zst", "text.txt", "empty", "disk.raw"] {
        let stderr = assert_verify_rejects(d, file, "no sdar structure");
        assert!(stderr.contains("not an sdar file"), "{file}: {stderr}");
        let out = sdar(d, &["info", file]).expect_code(EXIT_INTEGRITY);
        assert!(out.stdout.is_empty());
    }
    assert_eq!(disk, fs::read(d.join("disk.raw")).unwrap());
}

#[test]
fn missing_file_exits_with_other_error() {
    let dir = scratch();
    for command in ["verify", "info"] {
        let out = sdar(dir.path(), &[command, "missing.full.gz"]).expect_code(EXIT_OTHER);
        assert!(out.stderr.contains("missing.full.gz"), "{}", out.stderr);
    }
    fs::create_dir(dir.path().join("folder.full.gz")).unwrap();
    sdar(dir.path(), &["verify", "folder.full.gz"]).expect_code(EXIT_OTHER);
    assert_eq!(
        listing(dir.path()),
        ["folder.full.gz"],
        "verify wrote nothing"
    );
}

#[test]
fn bad_arguments_exit_with_usage_code() {
    let dir = scratch();
    let (file, _) = image(dir.path(), "gzip", "gz", &[]);
    for args in [
        &["verify"][..],
        &["verify", &file, &file],
        &["verify", &file, "--no-such-option"],
        &["verify", &file, "--threads", "-1"],
        &["info"],
        &["info", &file, "--json=yes"],
    ] {
        sdar(dir.path(), args).expect_code(EXIT_USAGE);
    }
}

/// Neither a good nor a damaged file is changed by verify or info: same
/// bytes, same modification time, nothing new in the folder.
#[test]
fn verify_and_info_never_modify_files() {
    let dir = scratch();
    let d = dir.path();
    for (codec, ext) in CODECS {
        let (file, _) = image(d, codec, ext, &[]);
        let damaged = format!("damaged.{ext}");
        fs::copy(d.join(&file), d.join(&damaged)).unwrap();
        let member = *layout(&d.join(&damaged))
            .members
            .iter()
            .find(|m| !m.zero)
            .unwrap();
        flip_byte(&d.join(&damaged), member.offset + 1);
        let names = listing(d);
        for (target, verify_code) in [(&file, EXIT_OK), (&damaged, EXIT_INTEGRITY)] {
            let before = watch(&d.join(target));
            sdar(d, &["verify", target]).expect_code(verify_code);
            sdar(d, &["verify", target, "--threads", "1", "-q"]).expect_code(verify_code);
            sdar(d, &["info", target]).success();
            sdar(d, &["info", "--json", target]).success();
            before.assert_unchanged("verify and info");
        }
        assert_eq!(listing(d), names, "verify and info wrote nothing");
    }
}

/// A length field damaged past what its record can hold is damage, like
/// any other flipped byte. The reader reports it as a limit instead
/// ("record length is 4278190144, above the limit of 64", no offset),
/// which `sdar` maps to exit 3, "other error". A zstd file cut so that
/// the INDX record sits where the footer should be does the same.
#[test]

fn damaged_record_length_is_an_integrity_failure() {
    let dir = scratch();
    let mut wrong = Vec::new();
    for (codec, ext) in CODECS {
        let (file, _) = image(dir.path(), codec, ext, &[]);
        let path = dir.path().join(&file);
        let pristine = fs::read(&path).unwrap();
        let layout = layout(&path);
        let head_span = record_span(codec, 64);
        let records = [
            ("HEAD", 0),
            ("META", head_span),
            ("INDX", layout.index_records[0]),
            ("DIRS", layout.directory),
            ("FOOT", layout.file_len - record_span(codec, 64)),
        ];
        for (record, at) in records {
            fs::write(&path, &pristine).unwrap();
            flip_byte(&path, at + length_field_top_byte(codec));
            let out = sdar(dir.path(), &["verify", &file]);
            if out.code != EXIT_INTEGRITY {
                wrong.push(format!(
                    "{codec}: {record} length damaged: exit {}: {}",
                    out.code,
                    out.stderr.trim()
                ));
            }
        }
        fs::write(&path, &pristine).unwrap();
        truncate(&path, layout.index_records[0] + record_span(codec, 64));
        let out = sdar(dir.path(), &["verify", &file]);
        if out.code != EXIT_INTEGRITY {
            wrong.push(format!(
                "{codec}: cut after INDX + one footer: exit {}: {}",
                out.code,
                out.stderr.trim()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not reported as damage:\n{}",
        wrong.join("\n")
    );
}

/// `sdar verify X.sdar` never runs the archive, and says whether its restore
/// program is byte-identical to this sdar's: it is for a fresh archive; a
/// changed byte in it gives a loud warning (exit 0: the payload is intact
/// and `sdar restore` does not run it), and exit 1 with --require-genuine.
#[test]
fn delta_runtime_is_checked_against_this_sdar() {
    let dir = scratch();
    let (full, _) = image(dir.path(), "gzip", "gz", &[]);
    let archive = "disk.sdar";
    assert!(
        dir.path().join(archive).exists(),
        "sdar full writes {archive} beside {full}"
    );
    let out = sdar(dir.path(), &["verify", archive]).success();
    assert!(
        out.stderr.contains("runtime: genuine: byte-identical"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);

    let altered = "altered.sdar";
    fs::copy(dir.path().join(archive), dir.path().join(altered)).unwrap();
    flip_byte(&dir.path().join(altered), 5000);
    let before = watch(&dir.path().join(altered));
    let out = sdar(dir.path(), &["verify", altered]).success();
    assert!(
        out.stderr.contains(&format!(
            "WARNING: the restore program inside {altered} is NOT the one this sdar"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Do not run it"), "{}", out.stderr);
    let out = sdar(dir.path(), &["verify", altered, "--require-genuine"]);
    assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
    before.assert_unchanged("verify --require-genuine");
    sdar(dir.path(), &["verify", archive, "--require-genuine", "-q"]).success();
}
