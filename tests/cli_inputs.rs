//! The backup-writing side attacked and misused (issue 12, item 3): what
//! `sdar full`, `delta`, `verify`, `info` and `companion` accept as inputs,
//! how they create their outputs, and what they say when something is
//! wrong. Commands that used to block forever run under a deadline, so a
//! regression fails instead of hanging.

mod common;

use common::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a command that must be refused at once may take.
const DEADLINE: Duration = Duration::from_secs(20);

fn spawn_sdar(dir: &Path, args: &[&str]) -> Child {
    Command::new(SDAR)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sdar")
}

/// Waits for `child` until `deadline`; kills it and fails the test if it
/// is still running then.
fn wait_deadline(mut child: Child, what: String, deadline: Duration) -> Outcome {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` was still running after {deadline:?}: it blocked or never ended");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = Vec::new();
    let mut stderr = String::new();
    child.stdout.take().map(|mut o| o.read_to_end(&mut stdout));
    child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    Outcome {
        what,
        code: status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal ({status})")),
        stdout,
        stderr,
    }
}

/// Runs sdar in `dir`, failing the test if it does not end within DEADLINE.
fn sdar_deadline(dir: &Path, args: &[&str]) -> Outcome {
    wait_deadline(
        spawn_sdar(dir, args),
        format!("sdar {}", args.join(" ")),
        DEADLINE,
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn mkfifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600))
        .expect("mkfifo");
    p
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, sig).expect("kill");
}

/// Waits (busily: the moment matters) until a temporary `*.partial` file
/// appears in `dir`, then stops `child`. False when the child ended first.
fn stop_once_writing(dir: &Path, child: &mut Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        let writing = fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
        if writing {
            signal(child, rustix::process::Signal::STOP);
            return true;
        }
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
    }
    false
}

/// Hidden files (temporaries, locks) left in `dir`.
fn hidden(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A 4 MiB disk of sample data (its first 256 KiB) and zeros: its full is
/// small (far smaller than a delta's restore program).
fn small_disk(dir: &Path, name: &str) -> Vec<u8> {
    let mut disk = sample_disk(dir, name, 256 << 10, 5);
    disk.resize(4 << 20, 0);
    fs::write(dir.join(name), &disk).expect("write disk");
    disk
}

/// Restores `archive` with the full `full` to `out.raw` in `dir` and
/// returns the restored bytes.
fn restore_raw(dir: &Path, archive: &str, full: &str) -> Vec<u8> {
    let _ = fs::remove_file(dir.join("out.raw"));
    sdar(
        dir,
        &[
            "restore", archive, "--full", full, "--raw", "--to", "out.raw", "-q",
        ],
    )
    .success();
    fs::read(dir.join("out.raw")).expect("read restored disk")
}

#[test]
fn fulls_are_0600_and_deltas_0700_from_creation() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    sdar(dir, &["full", "d.raw", "-o", "d.full.gz", "-q"]).success();
    sdar(dir, &["sample-change", "d.raw"]).success();
    sdar(
        dir,
        &[
            "delta",
            "d.raw",
            "--full",
            "d.full.gz",
            "-o",
            "x.sdar",
            "-q",
        ],
    )
    .success();
    assert_eq!(mode(&dir.join("d.full.gz")), 0o600, "full");
    assert_eq!(mode(&dir.join("d.sdar")), 0o700, "companion delta");
    assert_eq!(mode(&dir.join("x.sdar")), 0o700, "delta");
    // Still runnable by its owner.
    run_in(dir, "./x.sdar", &["info"]).success();
    assert_eq!(hidden(dir), Vec::<String>::new());
}

#[test]
fn fifos_and_devices_are_refused_at_once() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    sdar(dir, &["full", "d.raw", "-o", "d.full.gz", "-q"]).success();
    let fifo = mkfifo(dir, "pipe");
    let fifo = fifo.to_str().unwrap();
    let cases: [&[&str]; 8] = [
        &["verify", fifo],
        &["verify", "d.sdar", "--full", fifo],
        &["info", fifo],
        &["delta", "d.raw", "--full", fifo, "-o", "x.sdar"],
        &["full", "d.raw", "-o", "k.full.gz", "--key", fifo],
        &["full", "d.raw", "-o", "v.full.gz", "--vmx", fifo],
        &["verify", "d.full.gz", "--key", fifo],
        &["companion", fifo, "-o", "c.sdar"],
    ];
    for args in cases {
        let out = sdar_deadline(dir, args);
        assert_ne!(out.code, EXIT_OK, "`{}` succeeded", out.what);
        assert!(
            out.stderr.contains("FIFO"),
            "`{}` does not say it was given a FIFO:\n{}",
            out.what,
            out.stderr
        );
    }
    let out = sdar_deadline(
        dir,
        &["full", "d.raw", "-o", "k.full.gz", "--key", "/dev/zero"],
    );
    out.expect_code(EXIT_USAGE);
    // Nothing was written.
    assert_eq!(
        listing(dir),
        ["d.full.gz", "d.raw", "d.sdar", "pipe"].map(String::from)
    );
}

#[test]
fn standard_input_still_serves_as_the_full() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    sdar(dir, &["full", "d.raw", "-o", "d.full.gz", "-q"]).success();
    let out = run_command(
        "sdar verify d.sdar --full - < d.full.gz".into(),
        Command::new(SDAR)
            .args(["verify", "d.sdar", "--full", "-"])
            .current_dir(dir)
            .stdin(fs::File::open(dir.join("d.full.gz")).unwrap()),
    )
    .success();
    let said = format!("{}{}", out.stdout_text(), out.stderr);
    assert!(said.contains("OK"), "{said}");
}

#[test]
fn key_files_are_small_regular_files() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    // An endless device: refused at once instead of read until memory ends.
    let out = sdar_deadline(
        dir,
        &["full", "d.raw", "-o", "a.full.gz", "--key", "/dev/urandom"],
    )
    .expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("/dev/urandom"), "{}", out.stderr);
    fs::write(dir.join("big.key"), vec![b'k'; 4097]).unwrap();
    let out = sdar_deadline(
        dir,
        &["full", "d.raw", "-o", "a.full.gz", "--key", "big.key"],
    )
    .expect_code(EXIT_USAGE);
    assert!(
        out.stderr.contains("big.key") && out.stderr.contains("at most 4096 bytes"),
        "{}",
        out.stderr
    );
    // The largest key file allowed works.
    fs::write(dir.join("max.key"), vec![b'k'; 4096]).unwrap();
    sdar(
        dir,
        &["full", "d.raw", "-o", "a.full.gz", "--key", "max.key", "-q"],
    )
    .success();
    sdar(dir, &["verify", "a.full.gz", "--key", "max.key", "-q"]).success();
}

#[test]
fn threads_are_capped() {
    let s = scratch();
    let dir = s.path();
    let disk = small_disk(dir, "d.raw");
    for cmd in [
        &[
            "full",
            "d.raw",
            "-o",
            "d.full.gz",
            "-q",
            "--threads",
            "1000000",
        ][..],
        &["verify", "d.full.gz", "-q", "--threads", "1000000"],
        &["verify", "d.sdar", "-q", "--threads", "1000000"],
    ] {
        sdar_deadline(dir, cmd).success();
    }
    assert_same_bytes(
        &restore_raw(dir, "d.sdar", "d.full.gz"),
        &disk,
        "restored disk",
    );
}

/// A thread the system will not create is an error (exit 3) that leaves
/// nothing behind, not a panic. Root ignores RLIMIT_NPROC, so the command
/// runs as `nobody` with a limit of a few processes.
#[test]
fn a_thread_that_cannot_start_is_an_error() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("NOT RUN: needs root to run sdar as another user under RLIMIT_NPROC");
        return;
    }
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(dir.join("d.raw"), fs::Permissions::from_mode(0o644)).unwrap();
    let probe = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            SDAR,
            "--version",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("NOT RUN: setpriv cannot run sdar as nobody here");
        return;
    }
    // The main thread and the output's sync thread fit; the workers do not.
    let args = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "prlimit",
        "--nproc=2",
        SDAR,
        "full",
        "d.raw",
        "-o",
        "t.full.gz",
        "--threads",
        "4",
    ];
    let out = run_command(
        format!("setpriv {}", args.join(" ")),
        Command::new("setpriv").args(args).current_dir(dir),
    );
    if out.code == EXIT_OK {
        eprintln!("NOT RUN: RLIMIT_NPROC did not stop a thread here");
        return;
    }
    let out = out.expect_code(EXIT_OTHER);
    assert!(out.stderr.contains("cannot start thread"), "{}", out.stderr);
    assert_eq!(listing(dir), ["d.raw"], "something was left behind");
}

/// `sdar delta` reads the full it opened and proved, even when another
/// full is renamed over its path while it runs: the archive it writes
/// restores byte for byte with the full it proved, or the run fails.
#[test]
fn a_full_renamed_over_during_delta_cannot_spoil_the_archive() {
    let s = scratch();
    let dir = s.path();
    let size = 96u64 << 20;
    write_sample_disk(dir, "v1.raw", size, 1);
    // The new disk: v1 with pages 1 and 2 changed in its last blocks, so
    // that the full is first read for them after a long unchanged run, and
    // they are stored as PATCHes of those pages. The other full's disk has
    // page 1 changed the same way: a PATCH made against it holds page 2
    // only, which restores a wrong block onto the proven full.
    let v1 = fs::read(dir.join("v1.raw")).unwrap();
    let mut v2 = v1.clone();
    let mut w = v1.clone();
    let len = v1.len();
    for b in 1..=8 {
        let block = len - b * 65536;
        v2[block + 4096..block + 3 * 4096].fill(0x5a);
        w[block + 4096..block + 2 * 4096].fill(0x5a);
    }
    fs::write(dir.join("v2.raw"), &v2).unwrap();
    fs::write(dir.join("w.raw"), &w).unwrap();
    for (disk, full) in [("v1.raw", "a.full.zst"), ("w.raw", "b.full.zst")] {
        sdar(
            dir,
            &[
                "full", disk, "-o", full, "--codec", "zstd", "--level", "1", "-q",
            ],
        )
        .success();
    }
    fs::hard_link(dir.join("a.full.zst"), dir.join("a.keep")).unwrap();
    let mut child = spawn_sdar(
        dir,
        &[
            "delta",
            "v2.raw",
            "--full",
            "a.full.zst",
            "-o",
            "x.sdar",
            "--threads",
            "1",
            "-q",
        ],
    );
    let stopped = stop_once_writing(dir, &mut child);
    fs::rename(dir.join("b.full.zst"), dir.join("a.full.zst")).unwrap();
    if stopped {
        signal(&child, rustix::process::Signal::CONT);
    } else {
        eprintln!("note: the delta ended before the rename");
    }
    let out = wait_deadline(child, "sdar delta v2.raw".into(), Duration::from_secs(120));
    if out.code != EXIT_OK {
        eprintln!("the delta failed, as it may: {}", out.stderr);
        return;
    }
    let restored = restore_raw(dir, "x.sdar", "a.keep");
    assert_same_bytes(&restored, &v2, "disk restored from the delta");
}

#[test]
fn a_255_byte_output_name_round_trips() {
    let s = scratch();
    let dir = s.path();
    let disk = small_disk(dir, "d.raw");
    let full = format!("{}.full.gz", "n".repeat(247));
    assert_eq!(full.len(), 255);
    sdar(dir, &["full", "d.raw", "-o", &full, "-q"]).success();
    sdar(dir, &["verify", &full, "-q"]).success();
    let companion = format!("{}.sdar", "n".repeat(247));
    assert_same_bytes(
        &restore_raw(dir, &companion, &full),
        &disk,
        "restored from the companion of a 255-byte name",
    );
    // Without a known suffix: the companion's name is cut to fit.
    let bare = "m".repeat(255);
    sdar(dir, &["full", "d.raw", "-o", &bare, "-q"]).success();
    let companion = format!("{}.sdar", "m".repeat(250));
    sdar(dir, &["verify", &companion, "--full", &bare, "-q"]).success();
    assert_eq!(hidden(dir), Vec::<String>::new());
}

#[test]
fn a_long_default_name_is_cut_to_fit() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    let vm = "V".repeat(300);
    sdar(dir, &["full", "d.raw", "--vm-name", &vm, "-q"]).success();
    let names: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| n.ends_with(".full.gz"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    assert!(name.len() <= 255 && name.starts_with("VVVV"), "{name}");
    let stamp = &name[name.len() - ".full.gz".len() - 16..name.len() - ".full.gz".len()];
    assert!(stamp_to_unix(stamp).is_some(), "no date stamp in {name}");
    let companion = format!("{}.sdar", name.strip_suffix(".full.gz").unwrap());
    sdar(dir, &["verify", &companion, "--full", name, "-q"]).success();
}

#[test]
fn an_empty_file_says_it_is_empty() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    fs::write(dir.join("empty.full.gz"), b"").unwrap();
    for args in [
        &["verify", "empty.full.gz"][..],
        &["info", "empty.full.gz"],
        &["delta", "d.raw", "--full", "empty.full.gz", "-o", "x.sdar"],
        &["companion", "empty.full.gz"],
    ] {
        let out = sdar_deadline(dir, args);
        assert_ne!(out.code, EXIT_OK, "`{}`", out.what);
        assert!(
            out.stderr.contains("empty (0 bytes)"),
            "`{}` does not say the file is empty:\n{}",
            out.what,
            out.stderr
        );
    }
}

/// Two `sdar full` runs to one output: the second is refused at its start
/// while the first writes, and the first finishes unharmed. A symbolic
/// link planted at the lock's name is never followed.
#[test]
fn two_fulls_to_one_output_refuse_the_second() {
    let s = scratch();
    let dir = s.path();
    write_sample_disk(dir, "d.raw", 64 << 20, 3);
    let mut first = spawn_sdar(dir, &["full", "d.raw", "-o", "out.full.gz", "-q"]);
    assert!(
        stop_once_writing(dir, &mut first),
        "the first run ended before it could be caught writing"
    );
    let second = sdar_deadline(dir, &["full", "d.raw", "-o", "out.full.gz", "-q"]);
    signal(&first, rustix::process::Signal::CONT);
    let first = wait_deadline(
        first,
        "the first sdar full".into(),
        Duration::from_secs(120),
    );
    first.success();
    let second = second.expect_code(EXIT_OTHER);
    assert!(
        second
            .stderr
            .contains("another sdar is writing out.full.gz"),
        "{}",
        second.stderr
    );
    sdar(dir, &["verify", "out.full.gz", "-q"]).success();
    sdar(dir, &["verify", "out.sdar", "-q"]).success();
    assert_eq!(hidden(dir), Vec::<String>::new());

    // A link at the lock's name, pointing at a backup: refused, and the
    // backup is untouched.
    let before = watch(&dir.join("out.full.gz"));
    std::os::unix::fs::symlink("out.full.gz", dir.join(".new.full.gz.lock")).unwrap();
    let out = sdar(dir, &["full", "d.raw", "-o", "new.full.gz", "-q"]).expect_code(EXIT_OTHER);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    before.assert_unchanged("a full refused at a planted lock link");
}

/// Running out of room for the companion delta: the full is committed
/// first and stays usable, and the message gives the command that writes
/// the delta later. The room is limited with RLIMIT_FSIZE (the full fits,
/// the delta with its restore program does not), SIGXFSZ ignored so the
/// write fails with EFBIG instead of killing sdar.
#[test]
fn no_room_for_the_companion_leaves_a_usable_full_and_the_command() {
    let s = scratch();
    let dir = s.path();
    let disk = small_disk(dir, "d.raw");
    let script =
        format!("trap '' XFSZ; exec prlimit --fsize=400000 '{SDAR}' full d.raw -o c.full.gz -q");
    let out = run_command(
        "sdar full under prlimit --fsize".into(),
        Command::new("sh").args(["-c", &script]).current_dir(dir),
    );
    if out.code == EXIT_OK {
        eprintln!("NOT RUN: RLIMIT_FSIZE did not limit the delta here");
        return;
    }
    let out = out.expect_code(EXIT_OTHER);
    assert!(
        out.stderr.contains("c.full.gz is complete and usable")
            && out.stderr.contains("(out of space)"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("c.sdar").exists());
    assert_eq!(hidden(dir), Vec::<String>::new());
    sdar(dir, &["verify", "c.full.gz", "-q"]).success();
    let command = out
        .stderr
        .split("with: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|line| line.split(':').next())
        .expect("the message gives a command")
        .trim()
        .to_string();
    assert_eq!(command, "sdar companion c.full.gz -o c.sdar");
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    sdar(dir, &args).success();
    assert_eq!(mode(&dir.join("c.sdar")), 0o700);
    assert_same_bytes(
        &restore_raw(dir, "c.sdar", "c.full.gz"),
        &disk,
        "restored from the recreated companion",
    );
}

/// `sdar companion --key` writes the same authenticated delta `sdar full
/// --key` does, and refuses a full the key did not make.
#[test]
fn companion_with_a_key_needs_an_authentic_full() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    fs::write(dir.join("a.key"), [1u8; 32]).unwrap();
    fs::write(dir.join("b.key"), [2u8; 32]).unwrap();
    sdar(
        dir,
        &["full", "d.raw", "-o", "k.full.gz", "--key", "a.key", "-q"],
    )
    .success();
    let made = fs::read(dir.join("k.sdar")).unwrap();
    fs::remove_file(dir.join("k.sdar")).unwrap();
    sdar(dir, &["companion", "k.full.gz", "--key", "a.key", "-q"]).success();
    sdar(dir, &["verify", "k.sdar", "--key", "a.key", "-q"]).success();
    assert_eq!(fs::read(dir.join("k.sdar")).unwrap(), made);
    sdar(
        dir,
        &["companion", "k.full.gz", "--key", "b.key", "-o", "b.sdar"],
    )
    .expect_code(EXIT_INTEGRITY);
    assert!(!dir.join("b.sdar").exists());
}

/// `--force` never writes an output over one of the inputs, whatever its
/// name: a source disk whose name is the companion's, a key file.
#[test]
fn force_never_replaces_an_input() {
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.sdar");
    fs::write(dir.join("k.key"), [7u8; 32]).unwrap();
    let disk = watch(&dir.join("d.sdar"));
    let out = sdar(dir, &["full", "d.sdar", "-o", "d.full.gz", "--force"]).expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("one of the inputs"), "{}", out.stderr);
    disk.assert_unchanged("sdar full --force whose companion is the source");

    small_disk(dir, "n.raw");
    sdar(dir, &["full", "n.raw", "-o", "n.full.gz", "-q"]).success();
    let key = watch(&dir.join("k.key"));
    let full = watch(&dir.join("n.full.gz"));
    for args in [
        &[
            "delta",
            "n.raw",
            "--full",
            "n.full.gz",
            "--key",
            "k.key",
            "-o",
            "k.key",
            "--force",
        ][..],
        &["full", "n.raw", "--key", "k.key", "-o", "k.key", "--force"],
        &["companion", "n.full.gz", "-o", "n.full.gz", "--force"],
    ] {
        sdar(dir, args).expect_code(EXIT_USAGE);
    }
    key.assert_unchanged("outputs named as the key file");
    full.assert_unchanged("a companion named as its full");
}

/// The same with a real full filesystem: a small tmpfs mounted in a
/// private mount namespace (root only), too small for the delta's restore
/// program but not for the full.
#[test]
fn a_full_filesystem_for_the_companion_says_out_of_space() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("NOT RUN: mounting a tmpfs needs root");
        return;
    }
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    fs::create_dir(dir.join("out")).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=700k tmpfs out || exit 99
         '{SDAR}' full d.raw -o out/c.full.gz -q
         echo \"full exit $?\"
         '{SDAR}' verify out/c.full.gz -q && echo 'verify ok'
         ls -A out"
    );
    let out = run_command(
        "unshare -m sh".into(),
        Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .current_dir(dir),
    );
    if out.code == 99 || out.code != 0 {
        eprintln!("NOT RUN: cannot mount a tmpfs here: {}", out.stderr);
        return;
    }
    let said = out.stdout_text();
    assert!(
        said.contains("full exit 3") && said.contains("verify ok"),
        "{said}\n{}",
        out.stderr
    );
    // Only the full is left: no partial delta, no lock.
    assert!(said.ends_with("verify ok\nc.full.gz\n"), "{said}");
    assert!(
        out.stderr.contains("out/c.full.gz is complete and usable")
            && out.stderr.contains("(out of space)")
            && out
                .stderr
                .contains("sdar companion out/c.full.gz -o out/c.sdar"),
        "{}",
        out.stderr
    );
}

/// A FIFO, a link to a FIFO and a second name of someone's file, planted
/// where an earlier run's abandoned temporary file would be, are neither
/// opened (which blocks forever on a FIFO, with the destination's lock
/// held) nor removed: only a regular file of one link can be one of ours.
#[test]
fn planted_partials_are_not_opened_or_removed() {
    use std::os::unix::fs::FileTypeExt;
    let s = scratch();
    let dir = s.path();
    let disk = small_disk(dir, "d.raw");
    let fifo = mkfifo(dir, ".d.full.gz.abcdef.partial");
    let link = dir.join(".d.full.gz.ghijkl.partial");
    std::os::unix::fs::symlink(mkfifo(dir, "elsewhere"), &link).unwrap();
    let delta_link = dir.join(".d.sdar.ghijkl.partial");
    std::os::unix::fs::symlink("elsewhere", &delta_link).unwrap();
    fs::write(dir.join("keep"), b"someone's data").unwrap();
    let second_name = dir.join(".d.full.gz.mnopqr.partial");
    fs::hard_link(dir.join("keep"), &second_name).unwrap();
    sdar_deadline(dir, &["full", "d.raw", "-o", "d.full.gz", "-q"]).success();
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(fs::read_link(&link).unwrap(), dir.join("elsewhere"));
    assert_eq!(fs::read_link(&delta_link).unwrap(), Path::new("elsewhere"));
    assert!(fs::symlink_metadata(dir.join("elsewhere"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::read(&second_name).unwrap(), b"someone's data");
    let restored = stock(dir, "zcat", &["d.full.gz"]);
    assert_same_bytes(&restored.stdout, &disk, "zcat of the full");
}

/// `-o` naming a symbolic link, a FIFO, a folder or a block device is
/// refused (exit 2), with or without --force, saying what it is; the link,
/// the node and what they name are left as they were, and no lock or
/// temporary file is left behind.
#[test]
fn outputs_that_are_not_regular_files_are_refused_even_with_force() {
    use std::os::unix::fs::FileTypeExt;
    let s = scratch();
    let dir = s.path();
    small_disk(dir, "d.raw");
    sdar(dir, &["full", "d.raw", "-o", "d.full.gz", "-q"]).success();
    fs::write(dir.join("target"), b"the file the link names").unwrap();
    std::os::unix::fs::symlink("target", dir.join("link.full.gz")).unwrap();
    std::os::unix::fs::symlink("target", dir.join("link.sdar")).unwrap();
    mkfifo(dir, "pipe.full.gz");
    mkfifo(dir, "pipe.sdar");
    fs::create_dir(dir.join("folder.sdar")).unwrap();
    let mut cases: Vec<(Vec<String>, &str)> = Vec::new();
    let own = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    for (out, kind) in [
        ("link.full.gz", "a symbolic link"),
        ("pipe.full.gz", "a FIFO"),
    ] {
        cases.push((own(&["full", "d.raw", "-o", out]), kind));
    }
    for (out, kind) in [
        ("link.sdar", "a symbolic link"),
        ("pipe.sdar", "a FIFO"),
        ("folder.sdar", "a folder"),
    ] {
        cases.push((
            own(&["delta", "d.raw", "--full", "d.full.gz", "-o", out]),
            kind,
        ));
        cases.push((own(&["companion", "d.full.gz", "-o", out]), kind));
    }
    let lodev = LoopDevice::filled(&dir.join("backing"), 1 << 20);
    match &lodev {
        Ok(dev) => {
            let dev = dev.path();
            cases.push((own(&["full", "d.raw", "-o", dev]), "a block device"));
            cases.push((
                own(&["companion", "d.full.gz", "-o", dev]),
                "a block device",
            ));
        }
        Err(why) => eprintln!("NOT RUN (the block device cases): {why}"),
    }
    let before = listing(dir);
    for (args, kind) in &cases {
        for force in [false, true] {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.push("-q");
            if force {
                args.push("--force");
            }
            let out = sdar_deadline(dir, &args).expect_code(EXIT_USAGE);
            assert!(
                out.stderr.contains("sdar writes backups as regular files")
                    && out.stderr.contains(kind),
                "`{}` does not say the output is {kind}:\n{}",
                out.what,
                out.stderr
            );
        }
    }
    assert_eq!(listing(dir), before, "files were added or removed");
    for link in ["link.full.gz", "link.sdar"] {
        assert_eq!(fs::read_link(dir.join(link)).unwrap(), Path::new("target"));
    }
    assert_eq!(
        fs::read(dir.join("target")).unwrap(),
        b"the file the link names"
    );
    for pipe in ["pipe.full.gz", "pipe.sdar"] {
        assert!(fs::symlink_metadata(dir.join(pipe))
            .unwrap()
            .file_type()
            .is_fifo());
    }
    assert!(fs::symlink_metadata(dir.join("folder.sdar"))
        .unwrap()
        .is_dir());
    assert_eq!(fs::read_dir(dir.join("folder.sdar")).unwrap().count(), 0);
    if let Ok(dev) = &lodev {
        let meta = fs::symlink_metadata(dev.dev()).unwrap();
        assert!(
            meta.file_type().is_block_device(),
            "{} replaced",
            dev.dev().display()
        );
        let folder = dev.dev().parent().unwrap();
        let name = dev
            .dev()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let leftovers: Vec<_> = fs::read_dir(folder)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!(".{name}.")))
            .collect();
        assert_eq!(
            leftovers,
            Vec::<String>::new(),
            "left in {}",
            folder.display()
        );
        let mut head = vec![0u8; 4096];
        use std::os::unix::fs::FileExt;
        fs::File::open(dev.dev())
            .unwrap()
            .read_exact_at(&mut head, 0)
            .unwrap();
        assert!(head.iter().all(|&b| b == 0xff), "the device was written");
    }
}

/// `--force` replaces the regular file it was given for, and nothing that
/// took its name while the backup was written: a link put there meanwhile
/// is left as it is.
#[test]
fn force_does_not_replace_a_name_changed_while_writing() {
    let s = scratch();
    let dir = s.path();
    sample_disk(dir, "d.raw", 48 << 20, 9);
    fs::write(dir.join("x.full.gz"), b"old full").unwrap();
    fs::write(dir.join("x.sdar"), b"old delta").unwrap();
    fs::write(dir.join("target"), b"the file the link names").unwrap();
    let mut child = spawn_sdar(dir, &["full", "d.raw", "-o", "x.full.gz", "--force", "-q"]);
    if !stop_once_writing(dir, &mut child) {
        let _ = child.wait();
        eprintln!("NOT RUN: sdar ended before it could be stopped while writing");
        return;
    }
    for name in ["x.full.gz", "x.sdar"] {
        fs::remove_file(dir.join(name)).unwrap();
        std::os::unix::fs::symlink("target", dir.join(name)).unwrap();
    }
    signal(&child, rustix::process::Signal::CONT);
    let out = wait_deadline(child, "sdar full --force".into(), Duration::from_secs(120));
    assert_ne!(out.code, EXIT_OK, "{}", out.stderr);
    assert!(
        out.stderr.contains("changed while the backup was written"),
        "{}",
        out.stderr
    );
    for name in ["x.full.gz", "x.sdar"] {
        assert_eq!(
            fs::read_link(dir.join(name)).unwrap(),
            Path::new("target"),
            "{name}"
        );
    }
    assert_eq!(
        fs::read(dir.join("target")).unwrap(),
        b"the file the link names"
    );
    assert_eq!(hidden(dir), Vec::<String>::new());
}
