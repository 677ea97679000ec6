//! The restore path attacked (issue 12): links planted at its hidden
//! names, files it did not make offered to --resume, locks, two restores
//! to one destination, --force that fails, a link at the .vmx name, and
//! FIFOs given as inputs. Backups are byte-identical after every attack.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const BLOCK: usize = 65_536;
const FULL: &str = "backup/vm.full.gz";
const DELTA: &str = "backup/vm-1.sdar";

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    now: Vec<u8>,
}

impl Fixture {
    fn new(mib: usize, seed: u64) -> Fixture {
        let dir = scratch();
        let root = fs::canonicalize(dir.path()).unwrap();
        for sub in ["vm", "backup", "out"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        let sectors = (mib * MIB / 512) as u64;
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
        fs::write(root.join("vm/vm.vmx"), vmx_text("crm", "0:1", "now.vmdk")).unwrap();
        let args = [
            "delta",
            "vm/now.vmdk",
            "--full",
            FULL,
            "--vmx",
            "vm/vm.vmx",
            "-o",
            DELTA,
            "-q",
        ];
        sdar(&root, &args).success();
        Fixture {
            _dir: dir,
            root,
            now,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn command(&self, args: &[&str]) -> (String, Command) {
        let mut cmd = Command::new(self.path(DELTA));
        cmd.args(args)
            .current_dir(&self.root)
            .env_remove("SDAR_FULL_PATH");
        (format!("{DELTA} {}", args.join(" ")), cmd)
    }

    fn run(&self, args: &[&str]) -> Outcome {
        let (what, mut cmd) = self.command(args);
        run_command(what, &mut cmd)
    }

    /// Runs `args`, killed after 10 s: an input that blocks is a failure.
    fn run_within(&self, args: &[&str]) -> Outcome {
        let (what, mut cmd) = self.command(args);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{what}` still runs after 10 s: it blocked on its input");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        Outcome {
            code: out.status.code().unwrap(),
            what,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn hash(path: &Path) -> blake3::Hash {
    blake3::hash(&fs::read(path).unwrap())
}

fn clear(dir: &Path) {
    for name in listing(dir) {
        let p = dir.join(name);
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }
}

/// A symbolic link or a hard link planted at each hidden name a restore to
/// `x.vmdk` uses (the extent's partial, the descriptor's temporary, the
/// raw image's partial, which was also the old descriptor temporary, and
/// the restore mark),
/// pointing at the full backup or at a user's file: whatever the flags
/// (none, --force, --resume), nothing is ever written through it. The
/// backup and the file stay byte-identical, and a restore that runs gives
/// the right disk.
#[test]
fn links_planted_at_hidden_names_are_never_written_through() {
    let f = Fixture::new(2, 31);
    let out = f.path("out");
    // A hard link needs the same filesystem: the backup's own folder is.
    let full = f.path(FULL);
    let other = f.path("backup/notes.txt");
    fs::write(&other, b"a user's file\n").unwrap();
    let (full_hash, other_hash) = (hash(&full), hash(&other));
    let names = [
        (".x-flat.vmdk.sdar-partial", false),
        (".x.vmdk.sdar-descriptor", false),
        (".x.vmdk.sdar-partial", false),
        (".x.vmdk.sdar-partial", true),
        (".x.vmdk.sdar-restore", false),
        (".x.vmdk.sdar-restore", true),
    ];
    for (name, raw) in names {
        for (victim, hard) in [
            (&full, false),
            (&full, true),
            (&other, false),
            (&other, true),
        ] {
            for flags in [&[][..], &["--force"], &["--resume"]] {
                clear(&out);
                let planted = out.join(name);
                if hard {
                    fs::hard_link(victim, &planted).unwrap();
                } else {
                    std::os::unix::fs::symlink(victim, &planted).unwrap();
                }
                let mut args = vec!["restore", "--to", "out/x.vmdk"];
                if raw {
                    args.push("--raw");
                }
                args.extend_from_slice(flags);
                let run = f.run(&args);
                let tag = format!(
                    "`{}` ({name} a {} link to {})",
                    run.what,
                    if hard { "hard" } else { "symbolic" },
                    victim.display()
                );
                assert_eq!(hash(&full), full_hash, "{tag}: the full backup changed");
                assert_eq!(hash(&other), other_hash, "{tag}: the user's file changed");
                assert!(
                    run.code == EXIT_OK || run.code == EXIT_USAGE,
                    "{tag}: exit {}: {}",
                    run.code,
                    run.stderr
                );
                if run.code == EXIT_OK {
                    let data = if raw { "x.vmdk" } else { "x-flat.vmdk" };
                    assert_same_bytes(&fs::read(out.join(data)).unwrap(), &f.now, &tag);
                }
            }
        }
    }
}

/// `--resume` takes over only what an sdar restore of this image started:
/// never a user's `x-flat.vmdk` that merely lacks its descriptor, never a
/// partial file without a mark, nor one whose mark is of another image,
/// nor one another process holds locked (flock or a POSIX record lock, as
/// QEMU takes). Each is left byte-identical.
#[test]
fn resume_takes_over_only_what_a_mark_names_and_nobody_holds() {
    let f = Fixture::new(2, 32);
    let out = f.path("out");
    let dest = f.path("out/x.vmdk");
    let flat = out.join("x-flat.vmdk");
    let partial = out.join(".x-flat.vmdk.sdar-partial");
    let garbage = Rng::new(32).bytes(f.now.len());

    // A user's extent without its descriptor.
    fs::write(&flat, &garbage).unwrap();
    let r = f.run(&["restore", "--to", "out/x.vmdk", "--resume"]);
    assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
    assert_eq!(fs::read(&flat).unwrap(), garbage, "{}", r.what);
    assert_eq!(listing(&out), ["x-flat.vmdk"]);
    clear(&out);

    // A partial file with no mark, and with a mark of another image.
    fs::write(&partial, &garbage).unwrap();
    let r = f.run(&["restore", "--to", "out/x.vmdk", "--resume"]);
    assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
    assert!(r.stderr.contains("mark"), "{}", r.stderr);
    assert_eq!(fs::read(&partial).unwrap(), garbage);
    write_restore_mark(
        &dest,
        true,
        &[0x42; 32],
        f.now.len() as u64,
        &partial,
        false,
    );
    let r = f.run(&["restore", "--to", "out/x.vmdk", "--resume"]);
    assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
    assert!(r.stderr.contains("another disk image"), "{}", r.stderr);
    assert_eq!(fs::read(&partial).unwrap(), garbage);

    // Marked, but held by another process.
    plant_restore_mark(&f.path(DELTA), &dest, true, &partial, false);
    for record_lock in [false, true] {
        let held = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&partial)
            .unwrap();
        use rustix::fs::FlockOperation::NonBlockingLockExclusive;
        // A record lock is this process's, and so another's to the restore.
        if record_lock {
            rustix::fs::fcntl_lock(&held, NonBlockingLockExclusive).unwrap();
        } else {
            rustix::fs::flock(&held, NonBlockingLockExclusive).unwrap();
        }
        let r = f.run(&["restore", "--to", "out/x.vmdk", "--resume"]);
        drop(held);
        assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
        assert!(r.stderr.contains("lock"), "{}", r.stderr);
        assert_eq!(fs::read(&partial).unwrap(), garbage);
    }
    // Marked and free: resumed, to the right disk.
    f.run(&["restore", "--to", "out/x.vmdk", "--resume", "-q"])
        .success();
    assert_same_bytes(&fs::read(&flat).unwrap(), &f.now, "the resumed extent");
    assert_eq!(listing(&out), ["x-flat.vmdk", "x.vmdk"]);
}

/// A VMDK restore and a raw restore to the same destination name exclude
/// each other, whichever starts first: the first is held mid-restore by a
/// full streamed on standard input that stops part-way, the second is
/// refused, and the first then finishes to the right disk.
#[test]
fn raw_and_vmdk_restores_to_one_destination_exclude_each_other() {
    let f = Fixture::new(8, 33);
    let full = fs::read(f.path(FULL)).unwrap();
    for first_raw in [false, true] {
        clear(&f.path("out"));
        let mut first = vec!["restore", "--full", "-", "--to", "out/x.vmdk", "-q"];
        let mut second = vec!["restore", "--to", "out/x.vmdk", "--full", FULL];
        if first_raw {
            first.push("--raw");
        } else {
            second.push("--raw");
        }
        let (what, mut cmd) = f.command(&first);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&full[..full.len() / 3]).unwrap();
        let partial = if first_raw {
            f.path("out/.x.vmdk.sdar-partial")
        } else {
            f.path("out/.x-flat.vmdk.sdar-partial")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !partial.exists() {
            assert!(Instant::now() < deadline, "`{what}` never started writing");
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = f.run(&second);
        assert_eq!(
            r.code, EXIT_USAGE,
            "`{}` while `{what}` runs: {}",
            r.what, r.stderr
        );
        assert!(r.stderr.contains("another restore"), "{}", r.stderr);
        stdin.write_all(&full[full.len() / 3..]).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "`{what}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let data = if first_raw {
            "out/x.vmdk"
        } else {
            "out/x-flat.vmdk"
        };
        assert_same_bytes(&fs::read(f.path(data)).unwrap(), &f.now, data);
    }
}

/// A `--force` that cannot succeed is refused before the old disk is
/// touched: a link at the extent's name, a FIFO as the destination, a
/// folder at the extent's name. The old descriptor and extent stay as
/// they were.
#[test]
fn failed_force_leaves_the_old_disk() {
    let f = Fixture::new(2, 34);
    let out = f.path("out");
    let old = b"the old disk's extent".to_vec();
    let other = f.path("vm/elsewhere.bin");
    fs::write(&other, &old).unwrap();
    fs::write(out.join("x.vmdk"), b"# old descriptor\n").unwrap();
    std::os::unix::fs::symlink(&other, out.join("x-flat.vmdk")).unwrap();
    let r = f.run(&["restore", "--to", "out/x.vmdk", "--force"]);
    assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
    assert!(fs::symlink_metadata(out.join("x-flat.vmdk"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&other).unwrap(), old);
    assert_eq!(fs::read(out.join("x.vmdk")).unwrap(), b"# old descriptor\n");
    assert_eq!(listing(&out), ["x-flat.vmdk", "x.vmdk"]);
    clear(&out);

    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        out.join("pipe.img"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let r = f.run(&["restore", "--raw", "--to", "out/pipe.img", "--force"]);
    assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
    assert!(fs::symlink_metadata(out.join("pipe.img"))
        .unwrap()
        .file_type()
        .is_fifo_type());
    assert_eq!(listing(&out), ["pipe.img"]);
    clear(&out);

    fs::write(out.join("x.vmdk"), b"# old descriptor\n").unwrap();
    fs::create_dir(out.join("x-flat.vmdk")).unwrap();
    let r = f.run(&["restore", "--to", "out/x.vmdk", "--force"]);
    assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
    assert_eq!(fs::read(out.join("x.vmdk")).unwrap(), b"# old descriptor\n");
    assert_eq!(listing(&out), ["x-flat.vmdk", "x.vmdk"]);
}

trait FifoType {
    fn is_fifo_type(&self) -> bool;
}
impl FifoType for fs::FileType {
    fn is_fifo_type(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

/// `--vmx DIR` with a link at the .vmx name it writes: refused before the
/// disk is written, with or without --force, and the file the link names
/// is unchanged; `extract-vmx -o LINK` likewise.
#[test]
fn vmx_name_link_is_never_written_through() {
    let f = Fixture::new(2, 35);
    let out = f.path("out");
    fs::create_dir(f.path("vmx")).unwrap();
    let victim = f.path("vm/notes.txt");
    fs::write(&victim, b"a user's notes\n").unwrap();
    let full_hash = hash(&f.path(FULL));
    for target in [victim.clone(), f.path(FULL)] {
        let link = f.path("vmx/crm.vmx");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let before = hash(&target);
        for force in [false, true] {
            clear(&out);
            let mut args = vec!["restore", "--to", "out/x.vmdk", "--vmx", "vmx"];
            if force {
                args.push("--force");
            }
            let r = f.run(&args);
            assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
            assert_eq!(hash(&target), before, "`{}` wrote through the link", r.what);
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(listing(&out), Vec::<String>::new(), "`{}`", r.what);
        }
        let r = f.run(&["extract-vmx", "-o", "vmx/crm.vmx"]);
        assert_eq!(r.code, EXIT_USAGE, "`{}`: {}", r.what, r.stderr);
        assert_eq!(hash(&target), before);
    }
    assert_eq!(hash(&f.path(FULL)), full_hash);
    // A plain file is replaced with --force, by a rename (its other name
    // keeps the old bytes).
    fs::remove_file(f.path("vmx/crm.vmx")).unwrap();
    fs::hard_link(&victim, f.path("vmx/crm.vmx")).unwrap();
    f.run(&[
        "restore",
        "--to",
        "out/y.vmdk",
        "--vmx",
        "vmx",
        "--force",
        "-q",
    ])
    .success();
    assert_eq!(fs::read(&victim).unwrap(), b"a user's notes\n");
    assert!(fs::read_to_string(f.path("vmx/crm.vmx"))
        .unwrap()
        .contains("displayName"));
    assert_eq!(fs::metadata(f.path("vmx/crm.vmx")).unwrap().nlink(), 1);
}

/// A FIFO given as the archive, as --full, as --key, or lying in the
/// folder searched for the full, is refused (or passed over) at once.
#[test]
fn fifo_inputs_are_refused_at_once() {
    let f = Fixture::new(2, 36);
    let fifo = f.path("pipe");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    for args in [
        &["verify", "--full", "pipe"][..],
        &["restore", "--full", "pipe", "--to", "out/x.vmdk"],
        &["verify", "--key", "pipe"],
        &["restore", "--key", "pipe", "--to", "out/x.vmdk"],
        &["info", "--archive", "pipe"],
        &["verify", "--archive", "pipe"],
    ] {
        let r = f.run_within(args);
        assert_ne!(r.code, EXIT_OK, "`{}`", r.what);
        assert!(r.stderr.contains("FIFO"), "`{}`: {}", r.what, r.stderr);
    }
    assert_eq!(listing(&f.path("out")), Vec::<String>::new());
    // In the archive's own folder, where the full is searched for.
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        f.path("backup/a.full.gz"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    f.run_within(&["verify"]).success();
}
