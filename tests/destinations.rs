//! Destinations admins restore to (issue 12): a block device (a loop device
//! here, reached directly and through a symbolic link as LVM's /dev/VG/LV
//! is), a symbolic link to an image, a folder, and names that a VMDK
//! descriptor cannot hold.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: usize = 1 << 20;
const BLOCK: usize = 65_536;
const FULL: &str = "backup/vm.full.gz";
const DELTA: &str = "backup/vm-1.sdar";

/// A 4 MiB disk with zero blocks, its full, and a delta of it changed.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    now: Vec<u8>,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        let dir = scratch();
        let root = fs::canonicalize(dir.path()).unwrap();
        for sub in ["vm", "backup", "out"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        let sectors = (4 * MIB / 512) as u64;
        let base = sample_vmdk(
            &root.join("vm"),
            "base",
            DescriptorKind::MonolithicFlat,
            sectors,
            seed,
        );
        sdar(&root, &["full", "vm/base.vmdk", "-o", FULL, "-q"]).success();
        let mut now = base.disk;
        let mut rng = Rng::new(seed);
        for b in (0..now.len() / BLOCK).step_by(5) {
            let at = b * BLOCK + rng.below(BLOCK / 4096) * 4096;
            rng.fill(&mut now[at..at + 4096]);
        }
        fs::write(root.join("vm/now-flat.vmdk"), &now).unwrap();
        let descriptor =
            descriptor_text(DescriptorKind::MonolithicFlat, sectors, "now-flat.vmdk", 0);
        fs::write(root.join("vm/now.vmdk"), descriptor).unwrap();
        sdar(
            &root,
            &["delta", "vm/now.vmdk", "--full", FULL, "-o", DELTA, "-q"],
        )
        .success();
        assert!(
            zero_blocks(&now, BLOCK) > 0,
            "the disk needs zero blocks for the device tests"
        );
        Fixture {
            _dir: dir,
            root,
            now,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `ARCHIVE restore ARGS`, run by the archive itself.
    fn restore(&self, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(self.path(DELTA));
        cmd.arg("restore")
            .args(args)
            .current_dir(&self.root)
            .env_remove("SDAR_FULL_PATH");
        run_command(format!("{DELTA} restore {}", args.join(" ")), &mut cmd)
    }
}

/// `--raw --to /dev/loopN --force` writes the disk in place, byte for byte,
/// zero blocks included (the device held 0xff everywhere), and the node
/// stays a block device; so does a restore through a symbolic link to it,
/// which says where the data went. Without --force, without --raw, or held
/// open exclusively by another program, it is refused and unchanged; a
/// device one sector too small is refused with both sizes. `--resume
/// --force` reads back what is there and rewrites only what differs.
#[test]
fn loop_device_is_restored_in_place() {
    let f = Fixture::new(21);
    let len = f.now.len();
    let dev = match LoopDevice::filled(&f.path("device.img"), len + MIB) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("NOT RUN: no loop device here: {why}");
            return;
        }
    };
    let ff = vec![0xffu8; len];

    for (args, wanted) in [
        (vec!["--raw", "--to", dev.path()], "--force"),
        (vec!["--raw", "--to", dev.path(), "--resume"], "--force"),
        (vec!["--to", dev.path(), "--force"], "--raw"),
    ] {
        let out = f.restore(&args);
        assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
        assert!(out.stderr.contains(wanted), "{}", out.stderr);
        dev.assert_still_a_device(&out.what);
        assert!(dev.read(len) == ff, "`{}` wrote to the device", out.what);
    }

    // Held exclusively (as a mount or a running VM holds it).
    {
        let _held = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_excl())
            .open(dev.dev())
            .unwrap();
        let out = f.restore(&["--raw", "--to", dev.path(), "--force"]);
        assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
        assert!(out.stderr.contains("in use"), "{}", out.stderr);
        assert!(dev.read(len) == ff, "`{}` wrote to the device", out.what);
    }

    let out = f
        .restore(&["--raw", "--to", dev.path(), "--force"])
        .success();
    dev.assert_still_a_device(&out.what);
    assert_same_bytes(&dev.read(len), &f.now, "the loop device");

    // Through a link, as /dev/VG/LV: 0xff again first.
    dev.write(&ff, 0);
    let link = f.path("out/lv");
    std::os::unix::fs::symlink(dev.dev(), &link).unwrap();
    let out = f.restore(&["--raw", "--to", "out/lv", "--force"]).success();
    assert!(
        out.stderr
            .contains(&format!("restored out/lv -> {}", dev.path())),
        "the output should say where the data went: {}",
        out.stderr
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    dev.assert_still_a_device(&out.what);
    assert_same_bytes(&dev.read(len), &f.now, "the loop device through a link");

    // Blocks 3 and 40 damaged: --resume keeps the rest, rewrites those.
    dev.write(&[0x5a; 100], 3 * BLOCK as u64 + 7);
    dev.write(&[0x5a; 100], 40 * BLOCK as u64);
    let out = f
        .restore(&["--raw", "--to", "out/lv", "--force", "--resume", "--json"])
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["resumed"], true, "{doc}");
    assert_eq!(
        doc["kept_bytes"].as_u64().unwrap(),
        (len - 2 * BLOCK) as u64,
        "{doc}"
    );
    assert_same_bytes(&dev.read(len), &f.now, "the resumed loop device");

    // Stopped part-way (the full cut short on standard input): the device
    // is said, loudly, to hold an incomplete image.
    let full_len = fs::metadata(f.path(FULL)).unwrap().len() as usize;
    let out = restore_cut_full_onto(&f, &dev, full_len / 2, "half.full.gz");
    assert_ne!(out.code, EXIT_OK, "`{}`: {}", out.what, out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{} NOW HOLDS AN INCOMPLETE IMAGE", dev.path())),
        "{}",
        out.stderr
    );
    dev.assert_still_a_device(&out.what);

    // One sector too small.
    let small = match LoopDevice::filled(&f.path("small.img"), len - 512) {
        Ok(d) => d,
        Err(why) => panic!("a second loop device: {why}"),
    };
    let out = f.restore(&["--raw", "--to", small.path(), "--force"]);
    assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
    assert!(
        out.stderr.contains(&(len - 512).to_string()) && out.stderr.contains(&len.to_string()),
        "the refusal should give both sizes: {}",
        out.stderr
    );
    small.assert_still_a_device(&out.what);
    assert!(small.read(len - 512) == vec![0xff; len - 512]);
}

/// Restores the delta onto `dev` (`--raw --force`) from the full cut to
/// its first `keep` bytes, fed on standard input through file `name`.
fn restore_cut_full_onto(f: &Fixture, dev: &LoopDevice, keep: usize, name: &str) -> Outcome {
    let full = fs::read(f.path(FULL)).unwrap();
    fs::write(f.path(name), &full[..keep]).unwrap();
    let mut cmd = Command::new(f.path(DELTA));
    cmd.args([
        "restore",
        "--full",
        "-",
        "--raw",
        "--to",
        dev.path(),
        "--force",
    ])
    .current_dir(&f.root)
    .stdin(fs::File::open(f.path(name)).unwrap());
    run_command(format!("{DELTA} restore --full - < {name}"), &mut cmd)
}

fn libc_o_excl() -> i32 {
    rustix::fs::OFlags::EXCL.bits() as i32
}

/// A symbolic link to an existing image is followed: the image is
/// replaced (with --force), the link stays a link, and the output says
/// where the data went; a VMDK's extent goes beside the link's target. A
/// dangling link is refused and nothing is created.
#[test]
fn symlink_destination_is_followed() {
    let f = Fixture::new(22);
    fs::create_dir(f.path("real")).unwrap();
    fs::write(f.path("real/disk.img"), b"old image").unwrap();
    std::os::unix::fs::symlink("../real/disk.img", f.path("out/link.img")).unwrap();
    let out = f.restore(&["--raw", "--to", "out/link.img"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    let out = f
        .restore(&["--raw", "--to", "out/link.img", "--force"])
        .success();
    let real = f.path("real/disk.img");
    assert!(
        out.stderr
            .contains(&format!("restored out/link.img -> {}", real.display())),
        "{}",
        out.stderr
    );
    assert!(fs::symlink_metadata(f.path("out/link.img"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_same_bytes(&fs::read(&real).unwrap(), &f.now, "the link's target");
    assert_eq!(listing(&f.path("out")), ["link.img"]);
    assert_eq!(listing(&f.path("real")), ["disk.img"]);

    // A VMDK through a link: descriptor and extent beside the target.
    fs::write(f.path("real/vm.vmdk"), b"# old descriptor\n").unwrap();
    std::os::unix::fs::symlink(f.path("real/vm.vmdk"), f.path("out/vm.vmdk")).unwrap();
    f.restore(&["--to", "out/vm.vmdk", "--force", "-q"])
        .success();
    assert_same_bytes(
        &fs::read(f.path("real/vm-flat.vmdk")).unwrap(),
        &f.now,
        "the extent beside the link's target",
    );
    let descriptor = fs::read_to_string(f.path("real/vm.vmdk")).unwrap();
    assert!(descriptor.contains("\"vm-flat.vmdk\""), "{descriptor}");
    assert_eq!(listing(&f.path("out")), ["link.img", "vm.vmdk"]);

    std::os::unix::fs::symlink("nowhere/x.vmdk", f.path("out/dangling.vmdk")).unwrap();
    for force in [false, true] {
        let mut args = vec!["--to", "out/dangling.vmdk"];
        if force {
            args.push("--force");
        }
        let out = f.restore(&args);
        assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
        assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
        assert!(fs::symlink_metadata(f.path("out/dangling.vmdk"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            listing(&f.path("out")),
            ["dangling.vmdk", "link.img", "vm.vmdk"]
        );
    }
}

/// An existing folder as --to gets the disk under the backup's own disk
/// name: `now.vmdk` and `now-flat.vmdk`, or `now.img` for --raw.
#[test]
fn folder_destination_gets_the_disk_name() {
    let f = Fixture::new(23);
    let out = f.restore(&["--to", "out"]).success();
    assert!(
        out.stderr.contains("restored out -> out/now.vmdk"),
        "{}",
        out.stderr
    );
    assert_eq!(listing(&f.path("out")), ["now-flat.vmdk", "now.vmdk"]);
    assert_same_bytes(
        &fs::read(f.path("out/now-flat.vmdk")).unwrap(),
        &f.now,
        "out/now-flat.vmdk",
    );
    fs::create_dir(f.path("raw")).unwrap();
    f.restore(&["--raw", "--to", "raw/", "-q"]).success();
    assert_eq!(listing(&f.path("raw")), ["now.img"]);
    assert_same_bytes(
        &fs::read(f.path("raw/now.img")).unwrap(),
        &f.now,
        "raw/now.img",
    );
    // The name in the folder is taken: refused without --force, as any.
    let out = f.restore(&["--to", "out"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}

/// Names a descriptor cannot hold (a double quote, a newline, a tab, an
/// escape) are refused before anything is written; so is an empty --to.
#[test]
fn names_a_descriptor_cannot_hold_are_refused() {
    let f = Fixture::new(24);
    for name in ["a\"b.vmdk", "a\nb.vmdk", "a\tb.vmdk", "a\x1b[2Jb.vmdk"] {
        let to = format!("out/{name}");
        let out = f.restore(&["--to", &to]);
        assert_eq!(out.code, EXIT_USAGE, "{name:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("destination name"),
            "{name:?}: {}",
            out.stderr
        );
        assert_eq!(listing(&f.path("out")), Vec::<String>::new(), "{name:?}");
    }
    for args in [&["--to", ""][..], &["--raw", "--to", ""]] {
        let out = f.restore(args);
        assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
        assert!(out.stderr.contains("empty"), "{}", out.stderr);
    }
}

/// The files a restore creates (extent, descriptor, raw image) are readable
/// by their owner only, as the backups they come from are.
#[test]
fn restored_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new(41);
    fx.restore(&["--to", "out/vm.vmdk", "-q"]).success();
    fx.restore(&["--to", "out/raw.img", "--raw", "-q"])
        .success();
    for name in ["out/vm.vmdk", "out/vm-flat.vmdk", "out/raw.img"] {
        let mode = fs::metadata(fx.path(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
    assert_eq!(fs::read(fx.path("out/raw.img")).unwrap(), fx.now);
}

/// `ARCHIVE restore --full - ARGS` reading the full from a pipe this test
/// feeds: the first half, then (once the partial data file `partial`
/// exists) `meanwhile` runs, then the rest. Returns the outcome.
fn restore_from_pipe(
    f: &Fixture,
    args: &[&str],
    partial: &Path,
    meanwhile: impl FnOnce(),
) -> Outcome {
    use std::io::Write;
    let full = fs::read(f.path(FULL)).unwrap();
    let mut child = Command::new(f.path(DELTA))
        .args(["restore", "--full", "-"])
        .args(args)
        .current_dir(&f.root)
        .env_remove("SDAR_FULL_PATH")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let half = full.len() / 2;
    stdin.write_all(&full[..half]).unwrap();
    let start = std::time::Instant::now();
    while partial.symlink_metadata().is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{} never appeared",
            partial.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    meanwhile();
    // The restore may already have failed and closed the pipe.
    let _ = stdin.write_all(&full[half..]);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    Outcome {
        what: format!("{DELTA} restore --full - {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A file that appears at the destination's name while a restore runs (a
/// restore takes hours) is never replaced: the restore fails, says so, and
/// keeps the proven data and its mark, so that `--resume` finishes once the
/// name is free. The same for the extent and the descriptor of a VMDK, and,
/// with --force, for a replaced file that another took the place of.
#[test]
fn a_file_appearing_at_the_destination_meanwhile_is_kept() {
    let f = Fixture::new(51);
    let planted = b"an admin's own file, put here while the restore ran".to_vec();
    let cases: [(&[&str], &str, &str, bool); 4] = [
        (
            &["--raw", "--to", "out/r.img"],
            "out/r.img",
            "out/.r.img.sdar-partial",
            false,
        ),
        (
            &["--to", "out/v.vmdk"],
            "out/v-flat.vmdk",
            "out/.v-flat.vmdk.sdar-partial",
            false,
        ),
        (
            &["--to", "out/w.vmdk"],
            "out/w.vmdk",
            "out/.w-flat.vmdk.sdar-partial",
            false,
        ),
        (
            &["--raw", "--force", "--to", "out/f.img"],
            "out/f.img",
            "out/.f.img.sdar-partial",
            true,
        ),
    ];
    for (args, name, partial, existing) in cases {
        let to = args[args.len() - 1];
        if existing {
            fs::write(f.path(name), b"the old disk").unwrap();
        }
        let out = restore_from_pipe(&f, args, &f.path(partial), || {
            // A new file, not the one checked at the start.
            let _ = fs::remove_file(f.path(name));
            fs::write(f.path(name), &planted).unwrap();
        });
        assert_ne!(out.code, EXIT_OK, "`{}`: {}", out.what, out.stderr);
        assert!(
            out.stderr.contains("appeared while the restore ran"),
            "`{}`: {}",
            out.what,
            out.stderr
        );
        assert_eq!(
            fs::read(f.path(name)).unwrap(),
            planted,
            "`{}` replaced {name}",
            out.what
        );
        let marked = restore_mark_path(&f.path(to)).exists();
        assert!(
            marked,
            "`{}` removed its mark: {:?}",
            out.what,
            listing(&f.path("out"))
        );
        // The name freed, --resume finishes from what was proven.
        fs::remove_file(f.path(name)).unwrap();
        let mut again = args.to_vec();
        again.retain(|a| *a != "--force");
        again.extend(["--resume", "-q"]);
        f.restore(&again).success();
        let data = if to.ends_with(".vmdk") {
            to.replace(".vmdk", "-flat.vmdk")
        } else {
            to.to_string()
        };
        assert_same_bytes(&fs::read(f.path(&data)).unwrap(), &f.now, &data);
    }
    let left: Vec<_> = listing(&f.path("out"))
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Legal names up to 255 bytes restore: the restore's hidden files (mark,
/// partial, descriptor temporary) take a hashed name when `.NAME.sdar-…`
/// would be too long, and `--resume` finds them again. A VMDK whose extent
/// name would pass 255 bytes is refused before anything is written.
#[test]
fn the_longest_names_restore_and_resume() {
    use std::io::Write;
    let f = Fixture::new(52);
    let vmdk = format!("out/{}.vmdk", "v".repeat(245));
    let raw = format!("out/{}", "r".repeat(255));
    f.restore(&["--to", &vmdk, "-q"]).success();
    let flat = vmdk.replace(".vmdk", "-flat.vmdk");
    assert_same_bytes(&fs::read(f.path(&flat)).unwrap(), &f.now, "the extent");
    assert!(fs::read_to_string(f.path(&vmdk))
        .unwrap()
        .contains(&flat[4..]));
    f.restore(&["--raw", "--to", &raw, "-q"]).success();
    assert_same_bytes(&fs::read(f.path(&raw)).unwrap(), &f.now, "the raw image");
    assert_eq!(
        listing(&f.path("out")).len(),
        3,
        "{:?}",
        listing(&f.path("out"))
    );

    // Interrupted (killed half-way through the full on a pipe), then resumed.
    for (kind, to) in [
        ("vmdk", format!("out/{}.vmdk", "w".repeat(245))),
        ("raw", format!("out/{}", "s".repeat(255))),
    ] {
        let mut args = vec!["restore", "--full", "-", "--to", to.as_str()];
        if kind == "raw" {
            args.push("--raw");
        }
        let full = fs::read(f.path(FULL)).unwrap();
        let mut child = Command::new(f.path(DELTA))
            .args(&args)
            .current_dir(&f.root)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&full[..full.len() * 3 / 4]).unwrap();
        let start = std::time::Instant::now();
        let hidden = |suffix: &str| {
            listing(&f.path("out"))
                .into_iter()
                .find(|n| n.starts_with(".sdar-") && n.ends_with(suffix))
        };
        while hidden(".sdar-partial").is_none() || hidden(".sdar-restore").is_none() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{:?}",
                listing(&f.path("out"))
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        for n in [
            hidden(".sdar-partial").unwrap(),
            hidden(".sdar-restore").unwrap(),
        ] {
            // `.sdar-` + 16 hex digits + `.sdar-WHAT`.
            assert!(n.as_bytes()[6..22].iter().all(u8::is_ascii_hexdigit), "{n}");
            assert_eq!(&n[22..28], ".sdar-", "{n}");
        }
        let mut again = vec!["--to", to.as_str(), "--resume", "--json"];
        if kind == "raw" {
            again.push("--raw");
        }
        let out = f.restore(&again).success();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["resumed"], true, "{kind}: {doc}");
        let data = if kind == "vmdk" {
            to.replace(".vmdk", "-flat.vmdk")
        } else {
            to.clone()
        };
        assert_same_bytes(&fs::read(f.path(&data)).unwrap(), &f.now, &data);
        assert!(hidden("").is_none(), "{:?}", listing(&f.path("out")));
    }

    // 246 bytes before .vmdk: the extent's name would be 256 bytes.
    let before = listing(&f.path("out"));
    let too_long = format!("out/{}.vmdk", "x".repeat(246));
    let out = f.restore(&["--to", &too_long]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("too long"), "{}", out.stderr);
    assert_eq!(listing(&f.path("out")), before);
}

/// `--force` over an existing VMDK removes the old descriptor before the
/// new extent takes the old one's name (SPEC.md §19): a crash between the
/// two leaves the old extent alone, without a descriptor, and the mark
/// naming the proven partial. `--resume` finishes from there.
#[test]
fn resume_finishes_a_force_commit_cut_after_the_old_descriptor_went() {
    let f = Fixture::new(53);
    let old = vec![0x33u8; f.now.len()];
    fs::write(f.path("out/d-flat.vmdk"), &old).unwrap();
    let partial = f.path("out/.d-flat.vmdk.sdar-partial");
    fs::write(&partial, &f.now).unwrap();
    plant_restore_mark(&f.path(DELTA), &f.path("out/d.vmdk"), true, &partial, true);
    let out = f
        .restore(&["--to", "out/d.vmdk", "--resume", "-q"])
        .success();
    assert_same_bytes(
        &fs::read(f.path("out/d-flat.vmdk")).unwrap(),
        &f.now,
        &out.what,
    );
    assert!(fs::read_to_string(f.path("out/d.vmdk"))
        .unwrap()
        .contains("d-flat.vmdk"));
    assert_eq!(
        listing(&f.path("out")),
        vec!["d-flat.vmdk".to_string(), "d.vmdk".to_string()]
    );
}

/// A restore onto a device that fails before writing a block (the full on
/// standard input is cut in its first block) says the device was not written,
/// not that it holds an incomplete image.
#[test]
fn a_device_restore_failing_before_any_write_says_so() {
    let f = Fixture::new(54);
    let len = f.now.len();
    let dev = match LoopDevice::filled(&f.path("device.img"), len + MIB) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("NOT RUN: no loop device here: {why}");
            return;
        }
    };
    // The full's header and the start of its first member: the restore
    // starts, then finds the first block cut short.
    let out = restore_cut_full_onto(&f, &dev, 2000, "junk");
    assert_ne!(out.code, EXIT_OK, "`{}`: {}", out.what, out.stderr);
    assert!(!out.stderr.contains("INCOMPLETE"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("Nothing was written to {}", dev.path())),
        "{}",
        out.stderr
    );
    assert!(dev.read(len) == vec![0xffu8; len], "the device was written");
}

/// A key file over 4 KiB is not a key file: a usage error (exit 2) from the
/// archive itself and from `sdar restore`, as from `sdar verify`.
#[test]
fn an_oversized_key_file_is_a_usage_error_everywhere() {
    let f = Fixture::new(55);
    fs::write(f.path("big.key"), vec![7u8; 4097]).unwrap();
    let out = f.restore(&["--key", "big.key", "--to", "out/k.vmdk"]);
    assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
    assert!(out.stderr.contains("at most 4096"), "{}", out.stderr);
    let mut cmd = Command::new(f.path(DELTA));
    cmd.args(["verify", "--key", "big.key"])
        .current_dir(&f.root);
    let out = run_command(format!("{DELTA} verify --key big.key"), &mut cmd);
    assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
    assert!(out.stderr.contains("at most 4096"), "{}", out.stderr);
    let out = sdar(
        &f.root,
        &["restore", DELTA, "--key", "big.key", "--to", "out/k.vmdk"],
    );
    assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
    assert!(listing(&f.path("out")).is_empty());
}
