//! `sdar full` as an operator meets it: what it writes, what it names the
//! file, what it refuses, and that a failure leaves nothing behind.

mod common;

use common::*;
use std::fs;
use std::path::Path;

/// Runs `sdar full` with `args` and returns the identity it printed.
fn full_identity(dir: &Path, args: &[&str]) -> String {
    let out = sdar(dir, args).success();
    printed_identity(&out.stdout_text())
}

/// The same disk bytes give the same identity whatever they are read from,
/// whichever codec stores them and however many threads do the work.
#[test]
fn identity_depends_on_disk_bytes_only() {
    let dir = scratch();
    let d = dir.path();
    let vmdk = sample_vmdk(d, "crm", DescriptorKind::MonolithicFlat, 6145, 1);
    fs::write(
        d.join("esx.vmdk"),
        descriptor_text(DescriptorKind::Vmfs, 6145, "crm-flat.vmdk", 0),
    )
    .unwrap();
    // Every full also gets its empty delta `STEM.sdar`: the stems differ.
    let reference = full_identity(d, &["full", "crm-flat.vmdk", "-o", "raw.gz"]);
    for (source, out, extra) in [
        ("crm-flat.vmdk", "raw-zstd.zst", &["--codec", "zstd"][..]),
        ("crm.vmdk", "flat.gz", &[][..]),
        ("crm.vmdk", "flat-zstd.zst", &["--codec", "zstd"][..]),
        ("esx.vmdk", "vmfs.gz", &["--threads", "1"][..]),
        (
            "esx.vmdk",
            "vmfs-zstd.zst",
            &["--codec", "zstd", "--threads", "3"][..],
        ),
        ("crm.vmdk", "level.gz", &["--level", "1"][..]),
    ] {
        let mut args = vec!["full", source, "-o", out];
        args.extend_from_slice(extra);
        assert_eq!(
            full_identity(d, &args),
            reference,
            "`sdar {}` gives another identity for the same bytes",
            args.join(" ")
        );
    }
    let other_block_size = full_identity(
        d,
        &["full", "crm.vmdk", "-o", "4k.gz", "--block-size", "4K"],
    );
    assert_ne!(
        other_block_size, reference,
        "the identity covers the block size"
    );
    let other = sample_disk(d, "other.raw", vmdk.disk.len() as u64, 2);
    assert_ne!(other, vmdk.disk);
    assert_ne!(
        full_identity(d, &["full", "other.raw", "-o", "other.gz"]),
        reference
    );
}

#[test]
fn summary_counts_blocks_and_zero_blocks() {
    let dir = scratch();
    let disk = sample_disk(dir.path(), "disk.raw", (4 << 20) + 1234, 2);
    let out = sdar(dir.path(), &["full", "disk.raw", "-o", "disk.full.gz"])
        .success()
        .stdout_text();
    let blocks = disk.len().div_ceil(65_536);
    let zeros = zero_blocks(&disk, 65_536);
    assert!(
        zeros > 0 && zeros < blocks as u64,
        "seed 2 mixes zeros and data"
    );
    assert!(
        out.contains(&format!("in {blocks} blocks ({zeros} zero)")),
        "expected {blocks} blocks with {zeros} zero in:\n{out}"
    );
    assert!(out.contains("wrote disk.full.gz"), "{out}");
}

#[test]
fn quiet_prints_nothing() {
    let dir = scratch();
    sample_disk(dir.path(), "disk.raw", 1 << 20, 1);
    let out = sdar(dir.path(), &["full", "disk.raw", "-o", "a.gz", "-q"]).success();
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout_text());
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    let out = sdar(dir.path(), &["verify", "a.gz", "--quiet"]).success();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn existing_output_is_refused_without_force_and_left_untouched() {
    let dir = scratch();
    sample_disk(dir.path(), "disk.raw", 1 << 20, 1);
    // The full itself, or only the empty delta `sdar full` writes beside it.
    for (output, existing) in [
        ("keep.full.gz", "keep.full.gz"),
        ("keep.full.zst", "keep.full.zst"),
        ("beside.full.gz", "beside.sdar"),
    ] {
        fs::write(dir.path().join(existing), b"precious, not a backup").unwrap();
        let before = watch(&dir.path().join(existing));
        let names = listing(dir.path());
        let out = sdar(dir.path(), &["full", "disk.raw", "-o", output]).expect_code(EXIT_USAGE);
        assert!(
            out.stderr.contains(existing)
                && out.stderr.contains("already exists")
                && out.stderr.contains("--force"),
            "the message should name {existing}, say it exists and how to replace it: {}",
            out.stderr
        );
        before.assert_unchanged("a refused `sdar full`");
        assert_eq!(listing(dir.path()), names, "no partial file is left");
    }
}

#[test]
fn force_replaces_existing_output() {
    let dir = scratch();
    let disk = sample_disk(dir.path(), "disk.raw", 1 << 20, 4);
    fs::write(dir.path().join("old.full.gz"), b"an older, smaller file").unwrap();
    fs::write(dir.path().join("old.sdar"), b"an older delta").unwrap();
    sdar(
        dir.path(),
        &["full", "disk.raw", "-o", "old.full.gz", "--force"],
    )
    .success();
    sdar(dir.path(), &["verify", "old.full.gz"]).success();
    let restored = stock(dir.path(), "zcat", &["old.full.gz"]).success();
    assert_same_bytes(&restored.stdout, &disk, "zcat after --force");
    // The old delta is replaced too, by one that restores the new full.
    sdar(dir.path(), &["verify", "old.sdar", "-q"]).success();
    assert_eq!(
        listing(dir.path()),
        ["disk.raw", "old.full.gz", "old.sdar"],
        "the full and its empty delta, and no partial file"
    );
}

/// `-o` naming the disk itself would destroy it, even with --force.
#[test]
fn output_onto_the_source_disk_is_refused_even_with_force() {
    let dir = scratch();
    sample_disk(dir.path(), "disk.raw", 1 << 20, 1);
    sample_vmdk(dir.path(), "vm", DescriptorKind::Vmfs, 2048, 1);
    for (source, dest) in [
        ("disk.raw", "disk.raw"),
        ("vm.vmdk", "vm-flat.vmdk"),
        ("vm.vmdk", "vm.vmdk"),
    ] {
        let before = watch(&dir.path().join(dest));
        let names = listing(dir.path());
        sdar(dir.path(), &["full", source, "-o", dest, "--force"]).expect_code(EXIT_USAGE);
        before.assert_unchanged(&format!("`sdar full {source} -o {dest} --force`"));
        assert_eq!(listing(dir.path()), names, "no partial file is left");
    }
}

/// A failure before or after the output was started leaves no file at the
/// destination and no `*.partial` beside it.
#[test]
fn failing_full_leaves_no_file_and_no_partial() {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir(d.join("out")).unwrap();
    sample_disk(d, "disk.raw", 1 << 20, 1);
    // A flat file one sector shorter than its descriptor declares.
    sample_disk(d, "short-flat.vmdk", (2048 - 1) * 512, 1);
    fs::write(
        d.join("short.vmdk"),
        descriptor_text(DescriptorKind::MonolithicFlat, 2048, "short-flat.vmdk", 0),
    )
    .unwrap();
    // A hosted sparse extent: "KDMV", version 1, then a header of zeros.
    let mut sparse = b"KDMV\x01\x00\x00\x00".to_vec();
    sparse.resize(64 << 10, 0);
    fs::write(d.join("sparse.vmdk"), sparse).unwrap();
    let long_name = "v".repeat(5000);

    let cases: &[(&[&str], Option<i32>)] = &[
        (&["full", "short.vmdk"], None),
        (&["full", "sparse.vmdk"], None),
        (&["full", "missing.raw"], Some(EXIT_OTHER)),
        (
            &["full", "disk.raw", "--block-size", "3000"],
            Some(EXIT_USAGE),
        ),
        (&["full", "disk.raw", "--level", "13"], Some(EXIT_USAGE)),
        (
            &["full", "disk.raw", "--codec", "zstd", "--level", "20"],
            Some(EXIT_USAGE),
        ),
        (&["full", "disk.raw", "--vm-name", &long_name], None),
    ];
    for (args, code) in cases {
        for dest in ["out/x.full.gz", "out/x.full.zst"] {
            let mut args = args.to_vec();
            args.extend_from_slice(&["-o", dest]);
            let out = sdar(d, &args);
            match code {
                Some(code) => {
                    out.expect_code(*code);
                }
                None => assert_ne!(out.code, EXIT_OK, "`{}` should fail", out.what),
            }
            assert_eq!(
                listing(&d.join("out")),
                Vec::<String>::new(),
                "`sdar {}` left files behind",
                args.join(" ")
            );
        }
    }
    let out = sdar(d, &["full", "short.vmdk", "-o", "out/x.gz"]);
    assert!(
        out.stderr.contains("short-flat.vmdk"),
        "the message names the short flat file: {}",
        out.stderr
    );
    let out = sdar(d, &["full", "sparse.vmdk", "-o", "out/x.gz"]);
    assert!(out.stderr.contains("sparse"), "{}", out.stderr);
}

/// With --force the old file is replaced only by a finished new one.
#[test]
fn failing_full_with_force_keeps_the_existing_output() {
    let dir = scratch();
    sample_disk(dir.path(), "disk.raw", 1 << 20, 1);
    sdar(dir.path(), &["full", "disk.raw", "-o", "old.full.gz", "-q"]).success();
    let before = watch(&dir.path().join("old.full.gz"));
    let delta_before = watch(&dir.path().join("old.sdar"));
    let names = listing(dir.path());
    sdar(
        dir.path(),
        &[
            "full",
            "disk.raw",
            "-o",
            "old.full.gz",
            "--force",
            "--level",
            "99",
        ],
    )
    .expect_code(EXIT_USAGE);
    before.assert_unchanged("a failed `sdar full --force`");
    delta_before.assert_unchanged("a failed `sdar full --force`");
    assert_eq!(listing(dir.path()), names, "no partial file is left");
}

/// The full image `sdar full` wrote into `dir`, given what was there
/// before: the only new files are `STEM{suffix}` and its empty delta
/// `STEM.sdar`.
#[track_caller]
fn new_full(dir: &Path, before: &[String], suffix: &str) -> String {
    let added: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    let full = added
        .iter()
        .find(|n| n.ends_with(suffix))
        .unwrap_or_else(|| panic!("no new `*{suffix}` file, found {added:?}"))
        .clone();
    let delta = format!("{}.sdar", full.strip_suffix(suffix).unwrap());
    let mut expected = vec![full.clone(), delta];
    expected.sort();
    assert_eq!(
        added, expected,
        "expected the full and its delta, nothing else"
    );
    full
}

/// Checks that `name` is `{prefix}{stamp}{suffix}` with a UTC stamp taken
/// while the command ran, and that `sdar info` records the same time.
#[track_caller]
fn assert_named_and_stamped(
    dir: &Path,
    name: &str,
    prefix: &str,
    suffix: &str,
    window: (i64, i64),
) {
    let stamp = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("`{name}` is not `{prefix}<date>{suffix}`"));
    let when = stamp_to_unix(stamp)
        .unwrap_or_else(|| panic!("`{stamp}` in `{name}` is not a YYYYMMDDTHHMMSSZ stamp"));
    assert!(
        (window.0..=window.1).contains(&when),
        "the stamp {stamp} ({when}) is not the time the command ran ({}..={})",
        window.0,
        window.1
    );
    let info = sdar(dir, &["info", "--json", name]).success();
    let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(doc["meta"]["created_unix"], when, "{}", info.stdout_text());
}

#[test]
fn default_name_from_options_lands_in_current_folder() {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir(d.join("datastore")).unwrap();
    let vmdk = sample_vmdk(
        &d.join("datastore"),
        "crm_data",
        DescriptorKind::Vmfs,
        2049,
        1,
    );
    let before = listing(d);
    let start = unix_now();
    sdar(
        d,
        &[
            "full",
            &format!("datastore/{}", vmdk.descriptor),
            "--vm-name",
            "CRM",
            "--scsi-id",
            "0:1",
        ],
    )
    .success();
    let window = (start, unix_now());
    let name = new_full(d, &before, ".full.gz");
    assert_named_and_stamped(d, &name, "CRM_scsi0-1_crm_data_", ".full.gz", window);
    assert_eq!(
        listing(&d.join("datastore")),
        ["crm_data-flat.vmdk", "crm_data.vmdk"],
        "nothing is written beside the source"
    );
}

#[test]
fn default_name_from_vmx_display_name_and_scsi_slot() {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir(d.join("vm")).unwrap();
    let vmdk = sample_vmdk(
        &d.join("vm"),
        "billing_1",
        DescriptorKind::MonolithicFlat,
        4097,
        2,
    );
    fs::write(
        d.join("vm/billing.vmx"),
        vmx_text("billing-db", "0:1", &vmdk.descriptor),
    )
    .unwrap();
    let before = listing(d);
    let start = unix_now();
    sdar(
        d,
        &[
            "full",
            "vm/billing_1.vmdk",
            "--vmx",
            "vm/billing.vmx",
            "--codec",
            "zstd",
        ],
    )
    .success();
    let window = (start, unix_now());
    let name = new_full(d, &before, ".full.zst");
    assert_named_and_stamped(
        d,
        &name,
        "billing-db_scsi0-1_billing_1_",
        ".full.zst",
        window,
    );

    // Options win over the .vmx.
    let before = listing(d);
    let start = unix_now();
    sdar(
        d,
        &[
            "full",
            "vm/billing_1.vmdk",
            "--vmx",
            "vm/billing.vmx",
            "--vm-name",
            "renamed",
            "--scsi-id",
            "1:3",
        ],
    )
    .success();
    let window = (start, unix_now());
    let name = new_full(d, &before, ".full.gz");
    assert_named_and_stamped(d, &name, "renamed_scsi1-3_billing_1_", ".full.gz", window);
}

/// Without VM facts the name is the disk's, with a `-flat` suffix dropped.
#[test]
fn default_name_of_a_bare_raw_disk() {
    let dir = scratch();
    let d = dir.path();
    sample_disk(d, "web-flat.vmdk", 8192, 1);
    let before = listing(d);
    let start = unix_now();
    sdar(d, &["full", "web-flat.vmdk", "--codec", "zstd", "-q"]).success();
    let window = (start, unix_now());
    let name = new_full(d, &before, ".full.zst");
    assert_named_and_stamped(d, &name, "web_", ".full.zst", window);
}

/// Names come from options and .vmx files: a path in one must not send
/// the image anywhere but the current folder.
#[test]
fn default_name_stays_in_current_folder_whatever_the_vm_name() {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir_all(d.join("work/sub")).unwrap();
    sample_disk(&d.join("work"), "disk.raw", 8192, 1);
    for vm_name in ["../escape", "/tmp/abs", "sub/inner", ".hidden", "a\nb"] {
        let work = d.join("work");
        let before = listing(&work);
        sdar(
            &work,
            &[
                "full",
                "disk.raw",
                "--vm-name",
                vm_name,
                "-q",
                "--scsi-id",
                "0:0",
            ],
        )
        .success();
        let name = new_full(&work, &before, ".full.gz");
        assert!(
            !name.contains('/') && !name.starts_with('.') && !name.contains('\n'),
            "--vm-name {vm_name:?} gave `{name}`"
        );
        assert_eq!(listing(d), ["work"], "--vm-name {vm_name:?} wrote outside");
        assert_eq!(listing(&d.join("work/sub")), Vec::<String>::new());
        fs::remove_file(work.join(&name)).unwrap();
        fs::remove_file(work.join(name.replace(".full.gz", ".sdar"))).unwrap();
    }
}

/// Devices report a size of 0 in their metadata, so `sdar full /dev/zero`
/// writes an image of an empty disk and exits 0. A block device holding a
/// real disk does the same: `losetup -f --show disk.raw` (1 MiB) then
/// `sdar full /dev/loop0` prints "disk 0 B in 0 blocks" and exits 0.
#[test]

fn device_source_is_not_backed_up_as_an_empty_disk() {
    let dir = scratch();
    let out = sdar(dir.path(), &["full", "/dev/zero", "-o", "zero.full.gz"]);
    assert_ne!(out.code, EXIT_OK, "stdout: {}", out.stdout_text());
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

/// Reads `sdar info --json FILE`.
fn info_json(dir: &Path, file: &str) -> serde_json::Value {
    let out = sdar(dir, &["info", "--json", file]).success();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("info --json is not JSON ({e}):\n{}", out.stdout_text()))
}

#[test]
fn block_size_is_honoured_and_checked() {
    let dir = scratch();
    let d = dir.path();
    let disk = sample_disk(d, "disk.raw", (2 << 20) + 512, 1);
    for (arg, bytes) in [
        ("4K", 4096u64),
        ("4096", 4096),
        ("64KiB", 65_536),
        ("1M", 1 << 20),
    ] {
        let out = format!("b{arg}.full.gz");
        sdar(
            d,
            &["full", "disk.raw", "-o", &out, "--block-size", arg, "-q"],
        )
        .success();
        let doc = info_json(d, &out);
        assert_eq!(doc["block_size"], bytes, "--block-size {arg}");
        assert_eq!(doc["blocks"], (disk.len() as u64).div_ceil(bytes));
        assert_eq!(doc["zero_blocks"], zero_blocks(&disk, bytes as usize));
        sdar(d, &["verify", &out, "-q"]).success();
    }
    let names = listing(d);
    for bad in ["3000", "2K", "2M", "0", "64X", "-4K"] {
        let arg = format!("--block-size={bad}");
        sdar(d, &["full", "disk.raw", "-o", "bad.full.gz", &arg]).expect_code(EXIT_USAGE);
        assert_eq!(listing(d), names, "{arg} left files behind");
    }
}

#[test]
fn level_is_honoured_and_checked() {
    let dir = scratch();
    let d = dir.path();
    let disk = sample_disk(d, "disk.raw", 4 << 20, 5);
    let size = |name: &str| fs::metadata(d.join(name)).unwrap().len();
    for (codec, fast, slow, ext) in [("gzip", "1", "12", "gz"), ("zstd", "1", "19", "zst")] {
        // Distinct stems: each full gets its own empty delta `STEM.sdar`.
        let fast_out = format!("fast-{codec}.{ext}");
        let slow_out = format!("slow-{codec}.{ext}");
        for (level, out) in [(fast, &fast_out), (slow, &slow_out)] {
            sdar(
                d,
                &[
                    "full", "disk.raw", "-o", out, "--codec", codec, "--level", level, "-q",
                ],
            )
            .success();
            sdar(d, &["verify", out, "-q"]).success();
            assert_eq!(info_json(d, out)["codec"], codec);
        }
        assert!(
            size(&slow_out) < size(&fast_out),
            "{codec} level {slow} ({} bytes) should be smaller than level {fast} ({} bytes)",
            size(&slow_out),
            size(&fast_out)
        );
    }
    let restored = stock(d, "zcat", &["slow-gzip.gz"]).success();
    assert_same_bytes(&restored.stdout, &disk, "zcat of level 12");
    let restored = stock(d, "zstd", &["-dc", "slow-zstd.zst"]).success();
    assert_same_bytes(&restored.stdout, &disk, "zstd -dc of level 19");

    let names = listing(d);
    for (codec, level) in [
        ("gzip", "0"),
        ("gzip", "13"),
        ("zstd", "0"),
        ("zstd", "20"),
        ("zstd", "-1"),
    ] {
        let arg = format!("--level={level}");
        sdar(
            d,
            &["full", "disk.raw", "-o", "bad", "--codec", codec, &arg],
        )
        .expect_code(EXIT_USAGE);
        assert_eq!(listing(d), names, "{codec} {arg} left files behind");
    }
}

#[test]
fn bad_arguments_exit_with_usage_code() {
    let dir = scratch();
    sample_disk(dir.path(), "disk.raw", 4096, 1);
    for args in [
        &["full"][..],
        &["full", "disk.raw", "--codec", "lzma"],
        &["full", "disk.raw", "--no-such-option"],
        &["full", "disk.raw", "--threads", "many"],
        &["no-such-command"],
        &[],
    ] {
        sdar(dir.path(), args).expect_code(EXIT_USAGE);
    }
    assert_eq!(listing(dir.path()), ["disk.raw"]);
}

/// `Error::Io` prints its OS error and also returns it as `source()`, so
/// `{:#}` shows it twice: "missing.raw: No such file or directory (os error
/// 2): No such file or directory (os error 2)".
#[test]

fn io_error_names_its_cause_once() {
    let dir = scratch();
    let out = sdar(dir.path(), &["full", "missing.raw", "-o", "x.gz"]).expect_code(EXIT_OTHER);
    assert_eq!(
        out.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        out.stderr
    );
}

/// A killed `sdar full` leaves its hidden temporary file; the next run
/// writing the same output removes it, but never one that a running writer
/// holds locked, nor a file that only looks similar.
#[test]
fn abandoned_temporary_files_are_removed_by_the_next_run() {
    use rustix::fs::{flock, FlockOperation};
    let dir = scratch();
    let d = dir.path();
    sample_disk(d, "disk.raw", 1 << 20, 3);
    let abandoned = d.join(".disk.full.gz.a1B2c3.partial");
    let running = d.join(".disk.full.gz.Zz9Yy8.partial");
    let other = d.join(".disk.full.gz.notours.partial");
    for p in [&abandoned, &running, &other] {
        fs::write(p, b"half a backup").unwrap();
    }
    let held = fs::File::open(&running).unwrap();
    flock(&held, FlockOperation::NonBlockingLockExclusive).unwrap();
    sdar(d, &["full", "disk.raw", "-o", "disk.full.gz", "-q"]).success();
    assert!(
        !abandoned.exists(),
        "the abandoned temporary file is still there"
    );
    assert!(running.exists(), "a locked temporary file was removed");
    assert!(other.exists(), "a file not named like ours was removed");
    drop(held);
}

/// `SOURCE_DATE_EPOCH` gives a backup its creation time (for tests and for
/// imports that keep a backup's own date), in the default name and the
/// metadata, for a full and a delta; a value that is not seconds since 1970
/// is a usage error that writes nothing.
#[test]
fn source_date_epoch_sets_the_creation_time() {
    let dir = scratch();
    let d = dir.path();
    write_sample_disk(d, "disk.raw", 1 << 20, 5);
    let at = |args: &[&str], epoch: &str| {
        let mut cmd = std::process::Command::new(SDAR);
        cmd.current_dir(d)
            .args(args)
            .env("SOURCE_DATE_EPOCH", epoch);
        run_command(
            format!("SOURCE_DATE_EPOCH={epoch} sdar {}", args.join(" ")),
            &mut cmd,
        )
    };
    at(
        &["full", "disk.raw", "--vm-name", "crm", "-q"],
        "1700000000",
    )
    .expect_code(EXIT_OK);
    let full = "crm_disk_20231114T221320Z.full.gz";
    assert!(d.join(full).is_file(), "{:?}", listing(d));
    let info = sdar(d, &["info", "--json", full]).success();
    let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(doc["meta"]["created_unix"], 1_700_000_000);

    at(
        &["delta", "disk.raw", "--full", full, "-o", "d.sdar", "-q"],
        "1767225600",
    )
    .expect_code(EXIT_OK);
    let info = sdar(d, &["info", "--json", "d.sdar"]).success();
    let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(doc["meta"]["created_unix"], 1_767_225_600);

    for bad in ["yesterday", "-5", ""] {
        let before = listing(d);
        let out = at(&["full", "disk.raw", "-o", "x.full.gz", "-q"], bad).expect_code(EXIT_USAGE);
        assert!(out.stderr.contains("SOURCE_DATE_EPOCH"), "{}", out.stderr);
        assert_eq!(listing(d), before, "nothing is written");
    }
}
