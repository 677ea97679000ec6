//! Disks as real tools write them (#12): flat VMDKs written by qemu-img
//! (descriptors padded with NUL bytes, split into 2 GiB extents), VMware's
//! hand-laid descriptors, extents that are block devices, container formats
//! that must never be backed up as if they were disks, inputs that would
//! block, a source written to while it is read, and .vmx files as VMware
//! writes them.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A raw disk of `size` bytes with seeded data in `runs` (offset, length)
/// and holes elsewhere; returns nothing, the file is the truth.
fn sparse_raw(path: &Path, size: u64, runs: &[(u64, u64)], seed: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = Rng::new(seed);
    for &(at, len) in runs {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&rng.bytes(len as usize), at).unwrap();
    }
}

/// `qemu-img compare` says the two images hold the same disk.
#[track_caller]
fn assert_same_disk(dir: &Path, a: &str, a_format: &str, b: &str, b_format: &str) {
    stock(
        dir,
        "qemu-img",
        &["compare", "-f", a_format, "-F", b_format, a, b],
    )
    .success();
}

/// Backs up `source` to `NAME.full.gz` (and its `NAME.sdar`), restores that
/// to `out.vmdk`, and checks with qemu-img that it opens and is the disk.
fn round_trip(dir: &Path, source: &str, raw: &str) {
    sdar(dir, &["full", source, "-o", "b.full.gz", "-q"]).success();
    sdar(dir, &["restore", "b.sdar", "--to", "out.vmdk"]).success();
    stock(dir, "qemu-img", &["info", "out.vmdk"]).success();
    assert_same_disk(dir, raw, "raw", "out.vmdk", "vmdk");
}

#[test]
fn qemu_monolithic_flat_with_nul_padding_round_trips() {
    let scratch = scratch();
    let dir = scratch.path();
    sparse_raw(
        &dir.join("src.raw"),
        8 * MIB,
        &[(0, 300_000), (5 * MIB + 7, 70_000), (8 * MIB - 512, 512)],
        1,
    );
    stock(
        dir,
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=monolithicFlat",
            "src.raw",
            "disk.vmdk",
        ],
    )
    .success();
    let descriptor = fs::read(dir.join("disk.vmdk")).unwrap();
    assert!(
        descriptor.ends_with(b"\0"),
        "qemu-img no longer pads its descriptors: this test proves nothing"
    );
    round_trip(dir, "disk.vmdk", "src.raw");
}

#[test]
fn qemu_two_gb_max_extent_flat_round_trips() {
    let scratch = scratch();
    let dir = scratch.path();
    let size = 2 * 1024 * MIB + 3 * MIB;
    sparse_raw(
        &dir.join("src.raw"),
        size,
        &[
            (0, 200_000),
            (2 * 1024 * MIB - 100_000, 300_000),
            (size - 4096, 4096),
        ],
        2,
    );
    stock(
        dir,
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            "subformat=twoGbMaxExtentFlat",
            "src.raw",
            "split.vmdk",
        ],
    )
    .success();
    let text = String::from_utf8_lossy(&fs::read(dir.join("split.vmdk")).unwrap()).into_owned();
    assert!(
        text.contains("split-f002.vmdk"),
        "qemu-img wrote one extent:\n{text}"
    );
    round_trip(dir, "split.vmdk", "src.raw");
}

/// A descriptor in VMware's own layout, createType `create_type`, with
/// `extents` lines, padded with NUL bytes to a whole sector.
fn vmware_descriptor(create_type: &str, extents: &str) -> Vec<u8> {
    let mut t = format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID=7a3c11e2\n\
         parentCID=ffffffff\n\
         createType=\"{create_type}\"\n\
         \n\
         # Extent description\n\
         {extents}\n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"7\"\n\
         ddb.geometry.heads = \"64\"\n\
         ddb.geometry.sectors = \"32\"\n\
         ddb.longContentID = \"8f1a1b2c3d4e5f60718293a47a3c11e2\"\n\
         ddb.uuid = \"60 00 c2 9b 5e 1d 4a 21-9f 3c 8a 77 10 42 d3 e5\"\n\
         ddb.virtualHWVersion = \"21\"\n"
    )
    .into_bytes();
    t.resize(t.len().next_multiple_of(512), 0);
    t
}

/// The extents of a split disk written as VMware Workstation lays them out,
/// with unequal sizes and fields apart by runs of spaces and tabs.
#[test]
fn vmware_split_extents_of_unequal_sizes() {
    let scratch = scratch();
    let dir = scratch.path();
    let sizes = [(1, 2048u64), (2, 1000), (3, 4097)];
    let mut disk = Vec::new();
    let mut lines = String::new();
    for (n, sectors) in sizes {
        let name = format!("crm-f00{n}.vmdk");
        disk.extend(sample_disk(dir, &name, sectors * 512, n));
        lines += &format!("RW {sectors}\t  FLAT  \"{name}\"\t0\n");
    }
    fs::write(dir.join("disk.raw"), &disk).unwrap();
    fs::write(
        dir.join("crm.vmdk"),
        vmware_descriptor("twoGbMaxExtentFlat", &lines),
    )
    .unwrap();
    round_trip(dir, "crm.vmdk", "disk.raw");
    let info = sdar(dir, &["info", "b.full.gz", "--json"]).success();
    let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(doc["image_size"], disk.len() as u64);
    assert_eq!(doc["meta"]["hw_version"], "21");

    // An output that is one of the extents is the source itself.
    let second = watch(&dir.join("crm-f002.vmdk"));
    let out =
        sdar(dir, &["full", "crm.vmdk", "-o", "crm-f002.vmdk", "--force"]).expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("source disk itself"), "{}", out.stderr);
    second.assert_unchanged("`sdar full crm.vmdk -o crm-f002.vmdk --force`");

    // One sector more than the last file holds: refused, nothing written.
    let short = lines.replace("RW 4097", "RW 4098");
    fs::write(
        dir.join("short.vmdk"),
        vmware_descriptor("twoGbMaxExtentFlat", &short),
    )
    .unwrap();
    let before = listing(dir);
    let out = sdar(dir, &["full", "short.vmdk", "-o", "s.full.gz"]).expect_code(EXIT_OTHER);
    assert!(
        out.stderr.contains("crm-f003.vmdk") && out.stderr.contains("extent 3"),
        "{}",
        out.stderr
    );
    assert_eq!(listing(dir), before, "a refusal left files");
}

#[test]
fn nul_before_descriptor_text_is_refused() {
    let scratch = scratch();
    let dir = scratch.path();
    sample_disk(dir, "crm-flat.vmdk", MIB, 3);
    let mut text = vmware_descriptor("monolithicFlat", "RW 2048 FLAT \"crm-flat.vmdk\" 0\n");
    // The same descriptor with a NUL and then more text: not padding.
    let end = text.iter().position(|&b| b == 0).unwrap();
    text.truncate(end);
    text.extend_from_slice(b"\0ddb.toolsVersion = \"12345\"\n");
    text.resize(1024, 0);
    fs::write(dir.join("crm.vmdk"), &text).unwrap();
    let before = listing(dir);
    let out = sdar(dir, &["full", "crm.vmdk", "-o", "x.full.gz"]).expect_code(EXIT_OTHER);
    assert!(out.stderr.contains("NUL byte"), "{}", out.stderr);
    assert_eq!(listing(dir), before);
    // Without the stray text the padding is the end, and it backs up.
    text.truncate(end);
    text.resize(1024, 0);
    fs::write(dir.join("crm.vmdk"), &text).unwrap();
    sdar(dir, &["full", "crm.vmdk", "-o", "x.full.gz", "-q"]).success();
}

/// Root only: attaches `file` to a free loop device; `None` (having said
/// NOT RUN) when that cannot be done here.
fn attach_loop(file: &Path) -> Option<LoopDevice> {
    LoopDevice::attach(file)
        .map_err(|why| eprintln!("NOT RUN: {why}"))
        .ok()
}

/// Root only: a block device given as the source is looked at as a file
/// is (its size is found by seeking to its end, which must not hide its
/// first bytes): one holding a qcow2 image is refused as qcow2, one
/// holding a raw disk is backed up as it is.
#[test]
fn block_device_source_is_recognised_by_its_first_bytes() {
    let scratch = scratch();
    let dir = scratch.path();
    stock(
        dir,
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "d.qcow2", "64M"],
    )
    .success();
    let qcow2 = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("d.qcow2"))
        .unwrap();
    qcow2.set_len(MIB).unwrap();
    drop(qcow2);
    let Some(attached) = attach_loop(&dir.join("d.qcow2")) else {
        return;
    };
    let out =
        sdar(dir, &["full", attached.path(), "-o", "q.full.gz", "-q"]).expect_code(EXIT_OTHER);
    assert!(
        out.stderr.contains("qcow2") && out.stderr.contains("qemu-img convert -f qcow2"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("q.full.gz").exists(), "{:?}", listing(dir));
    drop(attached);

    let disk = sample_disk(dir, "backing.raw", 2 * MIB, 7);
    let Some(attached) = attach_loop(&dir.join("backing.raw")) else {
        return;
    };
    sdar(dir, &["full", attached.path(), "-o", "b.full.gz", "-q"]).success();
    sdar(dir, &["restore", "b.sdar", "--raw", "--to", "out.raw"]).success();
    assert_same_bytes(&fs::read(dir.join("out.raw")).unwrap(), &disk, "restored");
}

/// A descriptor's ZERO extent has no file to bound it: a disk larger than
/// any reader accepts is refused at once, naming its size and the limit,
/// instead of being read for ever or written as an image no reader opens.
/// So is a descriptor whose extents add up to just above the limit.
#[test]
fn disk_larger_than_readers_accept_is_refused_at_once() {
    let scratch = scratch();
    let dir = scratch.path();
    let limit: u64 = 1 << 48;
    let cases = [
        ("huge.vmdk", 18_014_398_509_481_983u64),
        ("above.vmdk", limit / 512 + 1),
    ];
    for (name, sectors) in cases {
        fs::write(
            dir.join(name),
            vmware_descriptor("monolithicFlat", &format!("RW {sectors} ZERO\n")),
        )
        .unwrap();
        let before = listing(dir);
        let started = Instant::now();
        let out = sdar_with_timeout(dir, &["full", name, "-o", "x.full.gz", "-q"])
            .expect_code(EXIT_OTHER);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let size = (sectors * 512).to_string();
        for want in [name, size.as_str(), &limit.to_string()] {
            assert!(
                out.stderr.contains(want),
                "should say {want}:\n{}",
                out.stderr
            );
        }
        assert_eq!(listing(dir), before);
    }
    // A small ZERO disk still backs up.
    fs::write(
        dir.join("small.vmdk"),
        vmware_descriptor("monolithicFlat", "RW 2048 ZERO\n"),
    )
    .unwrap();
    sdar(dir, &["full", "small.vmdk", "-o", "s.full.gz", "-q"]).success();
}

/// Root only: a flat extent that is a loop device, named by a link beside
/// the descriptor as ESXi names its raw devices.
#[test]
fn block_device_extent_is_sized_by_its_end() {
    let scratch = scratch();
    let dir = scratch.path();
    let disk = sample_disk(dir, "backing.raw", 4 * MIB, 5);
    let Some(attached) = attach_loop(&dir.join("backing.raw")) else {
        return;
    };
    let loop_dev = attached.path().to_string();
    std::os::unix::fs::symlink(&loop_dev, dir.join("dev-flat.vmdk")).unwrap();
    fs::write(
        dir.join("dev.vmdk"),
        vmware_descriptor("monolithicFlat", "RW 8192 FLAT \"dev-flat.vmdk\" 0\n"),
    )
    .unwrap();
    sdar(dir, &["full", "dev.vmdk", "-o", "b.full.gz", "-q"]).success();
    sdar(dir, &["restore", "b.sdar", "--raw", "--to", "out.raw"]).success();
    assert_same_bytes(&fs::read(dir.join("out.raw")).unwrap(), &disk, "restored");
}

/// Each container format, made by qemu-img from a raw disk: refused with
/// its name and the command that works, before anything is written.
#[test]
fn container_formats_are_refused_with_the_command_that_works() {
    let scratch = scratch();
    let dir = scratch.path();
    sparse_raw(&dir.join("src.raw"), 4 * MIB, &[(0, 100_000)], 6);
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("d.qcow2", &["-O", "qcow2"], "qcow2", "qcow2"),
        ("d.qed", &["-O", "qed"], "QED", "qed"),
        ("d.vdi", &["-O", "vdi"], "VDI", "vdi"),
        (
            "fixed.vhd",
            &["-O", "vpc", "-o", "subformat=fixed"],
            "VHD",
            "vpc",
        ),
        (
            "dynamic.vhd",
            &["-O", "vpc", "-o", "subformat=dynamic"],
            "VHD",
            "vpc",
        ),
        ("d.vhdx", &["-O", "vhdx"], "VHDX", "vhdx"),
        ("sparse.vmdk", &["-O", "vmdk"], "sparse", "vmdk"),
        (
            "stream.vmdk",
            &["-O", "vmdk", "-o", "subformat=streamOptimized"],
            "streamOptimized",
            "vmdk",
        ),
        (
            "split-sparse.vmdk",
            &["-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"],
            "twoGbMaxExtentSparse",
            "vmdk",
        ),
    ];
    for (name, how, says, format) in cases {
        let mut args = vec!["convert", "-f", "raw"];
        args.extend_from_slice(how);
        args.extend(["src.raw", name]);
        stock(dir, "qemu-img", &args).success();
        let before = listing(dir);
        for cmd in [
            vec!["full", name, "-o", "x.full.gz"],
            vec!["full", name],
            vec!["delta", name, "--full", "nothing.full.gz", "-o", "x.sdar"],
        ] {
            let out = sdar(dir, &cmd).expect_code(EXIT_OTHER);
            let stem = name.rsplit_once('.').unwrap().0;
            let command = format!("qemu-img convert -f {format} -O raw {name} {stem}.raw");
            for want in [*says, command.as_str(), name] {
                assert!(
                    out.stderr.contains(want),
                    "`{}` should say `{want}`:\n{}",
                    out.what,
                    out.stderr
                );
            }
            assert_eq!(listing(dir), before, "`{}` left files", out.what);
        }
    }
}

#[test]
fn raw_source_format_backs_up_a_disk_starting_with_a_magic() {
    let scratch = scratch();
    let dir = scratch.path();
    let mut disk = b"QFI\xfb".to_vec();
    disk.extend(Rng::new(7).bytes(MIB as usize - 4));
    fs::write(dir.join("odd.raw"), &disk).unwrap();
    let before = listing(dir);
    let out = sdar(dir, &["full", "odd.raw", "-o", "x.full.gz"]).expect_code(EXIT_OTHER);
    assert!(out.stderr.contains("--source-format raw"), "{}", out.stderr);
    assert_eq!(listing(dir), before);
    sdar(
        dir,
        &[
            "full",
            "odd.raw",
            "--source-format",
            "raw",
            "-o",
            "x.full.gz",
            "-q",
        ],
    )
    .success();
    sdar(dir, &["restore", "x.sdar", "--raw", "--to", "out.raw"]).success();
    assert_same_bytes(&fs::read(dir.join("out.raw")).unwrap(), &disk, "restored");
    sdar(
        dir,
        &[
            "delta",
            "odd.raw",
            "--full",
            "x.full.gz",
            "--source-format",
            "raw",
            "-o",
            "d.sdar",
            "-q",
        ],
    )
    .success();
}

/// Runs `sdar args` under `timeout`, so that a regression that blocks
/// fails the test instead of hanging it.
fn sdar_with_timeout(dir: &Path, args: &[&str]) -> Outcome {
    let mut full = vec!["10", SDAR];
    full.extend_from_slice(args);
    let out = stock(dir, "timeout", &full);
    assert_ne!(out.code, 124, "`sdar {}` blocked", args.join(" "));
    out
}

#[test]
fn fifo_source_is_refused_at_once() {
    let scratch = scratch();
    let dir = scratch.path();
    stock(dir, "mkfifo", &["pipe"]).success();
    sample_disk(dir, "disk.raw", MIB, 1);
    sdar(dir, &["full", "disk.raw", "-o", "b.full.gz", "-q"]).success();
    let before = listing(dir);
    for args in [
        vec!["full", "pipe", "-o", "x.full.gz"],
        vec!["delta", "pipe", "--full", "b.full.gz", "-o", "x.sdar"],
    ] {
        let started = Instant::now();
        let out = sdar_with_timeout(dir, &args).expect_code(EXIT_OTHER);
        assert!(out.stderr.contains("FIFO"), "{}", out.stderr);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(listing(dir), before);
    }
}

/// Runs `sdar args` (which writes `output` when done) on `source`, and
/// writes to the source while sdar is between opening and finishing it:
/// the process is stopped once its output file appears, and the run is
/// retried with a larger source if it had finished by then. Returns the
/// finished run.
fn run_while_source_changes(dir: &Path, source: &str, args: &[&str], output: &str) -> Outcome {
    let mut size = 8 * MIB;
    loop {
        let mut rng = Rng::new(size);
        let mut f = fs::File::create(dir.join(source)).unwrap();
        for _ in 0..size / MIB {
            f.write_all(&rng.bytes(MIB as usize)).unwrap();
        }
        drop(f);
        let before = listing(dir);
        let mut child = Command::new(SDAR)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Its first output file (the partial) shows it opened the source.
        let started = Instant::now();
        while listing(dir) == before && child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "sdar never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let pid = child.id().to_string();
        let stopped = Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success();
        let in_time = stopped && !dir.join(output).exists();
        if in_time {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(dir.join(source))
                .unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"changed", 4096).unwrap();
        }
        if stopped {
            Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if in_time {
            return Outcome {
                what: format!("sdar {}", args.join(" ")),
                code: out.status.code().unwrap_or(-1),
                stdout: out.stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
        }
        assert!(
            size < 1024 * MIB,
            "sdar always finished before it could be stopped"
        );
        for name in listing(dir) {
            if !before.contains(&name) {
                fs::remove_file(dir.join(name)).unwrap();
            }
        }
        size *= 4;
    }
}

#[test]
fn source_changed_while_read_is_reported_as_torn() {
    let scratch = scratch();
    let dir = scratch.path();
    let out = run_while_source_changes(
        dir,
        "live.raw",
        &[
            "full",
            "live.raw",
            "-o",
            "t.full.gz",
            "--threads",
            "1",
            "--level",
            "12",
            "-q",
        ],
        "t.full.gz",
    )
    .success();
    for want in ["live.raw", "torn", "snapshot"] {
        assert!(
            out.stderr.contains(want),
            "should say `{want}`:\n{}",
            out.stderr
        );
    }
    // The same for a delta against that full.
    let out = run_while_source_changes(
        dir,
        "live.raw",
        &[
            "delta",
            "live.raw",
            "--full",
            "t.full.gz",
            "-o",
            "t2.sdar",
            "--threads",
            "1",
            "--level",
            "19",
            "-q",
        ],
        "t2.sdar",
    )
    .success();
    assert!(out.stderr.contains("torn"), "{}", out.stderr);
    // An unchanged source gives no warning.
    let out = sdar(dir, &["full", "live.raw", "-o", "calm.full.gz", "-q"]).success();
    assert!(!out.stderr.contains("torn"), "{}", out.stderr);
}

/// A .vmx as VMware writes it while a snapshot is open: the disk entry
/// names the snapshot's delta disk on a SATA slot, and the display name
/// holds a `|22` escape.
#[test]
fn vmx_snapshot_entry_on_sata_and_escaped_name() {
    let scratch = scratch();
    let dir = scratch.path();
    sample_vmdk(dir, "CRM", DescriptorKind::MonolithicFlat, 2048, 9);
    fs::write(
        dir.join("CRM.vmx"),
        ".encoding = \"UTF-8\"\n\
         displayName = \"A|22B\"\n\
         sata0.present = \"TRUE\"\n\
         sata0:0.present = \"TRUE\"\n\
         sata0:0.fileName = \"system.vmdk\"\n\
         sata0:1.present = \"TRUE\"\n\
         sata0:1.fileName = \"CRM-000001.vmdk\"\n",
    )
    .unwrap();
    sdar(
        dir,
        &[
            "full",
            "CRM.vmdk",
            "--vmx",
            "CRM.vmx",
            "-o",
            "b.full.gz",
            "-q",
        ],
    )
    .success();
    let info = sdar(dir, &["info", "b.full.gz", "--json"]).success();
    let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(doc["meta"]["scsi_id"], "sata0:1");
    assert_eq!(doc["meta"]["vm_name"], "A\"B");
    let text = sdar(dir, &["info", "b.full.gz"]).success().stdout_text();
    assert!(text.contains("A\"B"), "{text}");
    // The restore's --rename-disk points that entry at the restored disk.
    fs::create_dir(dir.join("vm")).unwrap();
    sdar(
        dir,
        &[
            "restore",
            "b.sdar",
            "--to",
            "vm/CRM.vmdk",
            "--vmx",
            "vm",
            "--rename-disk",
        ],
    )
    .success();
    let written = listing(&dir.join("vm"));
    let name = written
        .iter()
        .find(|n| n.ends_with(".vmx"))
        .expect("a .vmx");
    let vmx = fs::read_to_string(dir.join("vm").join(name)).unwrap();
    assert!(vmx.contains("sata0:1.fileName = \"CRM.vmdk\""), "{vmx}");
}

/// Two disks named CRM.vmdk on two datastores: the backup records none of
/// their slots (it cannot tell), and a restore with --rename-disk refuses
/// before writing the disk.
#[test]
fn vmx_two_disks_of_one_name_are_never_guessed() {
    let scratch = scratch();
    let dir = scratch.path();
    sample_vmdk(dir, "CRM", DescriptorKind::MonolithicFlat, 2048, 10);
    fs::write(
        dir.join("CRM.vmx"),
        "displayName = \"CRM\"\n\
         scsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"\n\
         scsi0:1.fileName = \"/vmfs/volumes/ds2/CRM/CRM.vmdk\"\n",
    )
    .unwrap();
    let out = sdar(
        dir,
        &[
            "full",
            "CRM.vmdk",
            "--vmx",
            "CRM.vmx",
            "-o",
            "b.full.gz",
            "-q",
        ],
    )
    .success();
    assert!(
        out.stderr.contains("2 disks named CRM.vmdk"),
        "{}",
        out.stderr
    );
    let info = sdar(dir, &["info", "b.full.gz", "--json"]).success();
    let doc: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(doc["meta"]["scsi_id"].is_null(), "{}", doc["meta"]);
    fs::create_dir(dir.join("vm")).unwrap();
    let out = sdar(
        dir,
        &[
            "restore",
            "b.sdar",
            "--to",
            "vm/CRM.vmdk",
            "--vmx",
            "vm",
            "--rename-disk",
        ],
    )
    .expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("cannot be told"), "{}", out.stderr);
    assert!(
        listing(&dir.join("vm")).is_empty(),
        "{:?}",
        listing(&dir.join("vm"))
    );
    // With the slot given at backup time, the restore knows its entry.
    sdar(
        dir,
        &[
            "full",
            "CRM.vmdk",
            "--vmx",
            "CRM.vmx",
            "--scsi-id",
            "0:1",
            "-o",
            "c.full.gz",
            "-q",
        ],
    )
    .success();
    sdar(
        dir,
        &[
            "restore",
            "c.sdar",
            "--to",
            "vm/CRM.vmdk",
            "--vmx",
            "vm",
            "--rename-disk",
        ],
    )
    .success();
    let vmx = fs::read_to_string(dir.join("vm/CRM.vmx")).unwrap();
    assert!(
        vmx.contains("scsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"")
            && vmx.contains("scsi0:1.fileName = \"CRM.vmdk\""),
        "{vmx}"
    );
}

/// A .vmx value's `|1B` decodes to a real ESC: the warning that lists the
/// entries shows it as `\e`, never as the byte a terminal would obey.
#[test]
fn vmx_warning_shows_decoded_control_characters_escaped() {
    let scratch = scratch();
    let dir = scratch.path();
    sample_disk(dir, "a\u{1b}b.vmdk", MIB, 11);
    fs::write(
        dir.join("vm.vmx"),
        "scsi0:0.fileName = \"/vmfs/volumes/ds1/vm/a|1Bb.vmdk\"\n\
         scsi0:1.fileName = \"/vmfs/volumes/ds2/vm/a|1Bb.vmdk\"\n",
    )
    .unwrap();
    let out = sdar(
        dir,
        &[
            "full",
            "a\u{1b}b.vmdk",
            "--vmx",
            "vm.vmx",
            "-o",
            "b.full.gz",
            "-q",
        ],
    )
    .success();
    assert!(
        out.stderr.contains("2 disks named a\\eb.vmdk"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("ds2/vm/a\\eb.vmdk"), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
}
