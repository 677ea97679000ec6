//! Restores that do not go to plan: killed part-way (SIGKILL, at chosen
//! points), run out of space or into a file-size limit, or find garbage
//! where an interrupted restore's data should be; each is continued with
//! `--resume` to a disk byte-identical to the one backed up, and no failure
//! leaves anything that looks like a disk. Also what a restore tells
//! scripts (`--json`, `--progress json`), thin output, and the .vmx it
//! writes with `--vmx DIR [--rename-disk]`.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BLOCK: usize = 65_536;
const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
const SIGKILL: i32 = 9;

// Where a fixture keeps its files, relative to its folder.
const NOW: &str = "vm/now.vmdk";
const VMX: &str = "vm/vm.vmx";
const FULL: &str = "backup/vm.full.gz";
const DELTA: &str = "backup/vm-1.sdar";
/// The VM's name in the .vmx, and so the name of the .vmx a restore writes.
const VM_NAME: &str = "crm";
/// The .vmx entry that names the backed-up disk.
const DISK_ENTRY: &str = "scsi0:1.fileName";

/// Every restore here writes `crm.vmdk` and `crm-flat.vmdk`, its data
/// first going to this hidden file.
const PARTIAL: &str = ".crm-flat.vmdk.sdar-partial";
/// The restore mark a restore to `crm.vmdk` keeps beside it (SPEC.md §19.1):
/// `--resume` takes over only the partial file it names.
const MARK: &str = ".crm.vmdk.sdar-restore";

/// A scratch folder with a changed VM disk (`vm/now.vmdk`) and its .vmx,
/// the full of the disk it was (`backup/vm.full.gz`), and the delta that
/// restores it (`backup/vm-1.sdar`), carrying the .vmx.
struct Fixture {
    dir: tempfile::TempDir,
    /// The disk the delta restores.
    now: Vec<u8>,
}

impl Fixture {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Marks `partial` as the data of an interrupted VMDK restore to `dest`.
    fn mark(&self, dest: &str, partial: &Path) {
        plant_restore_mark(&self.path(DELTA), &self.path(dest), true, partial, false);
    }

    /// A new empty folder for one restore, such as `restore/a`.
    fn dest_dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// `restore ARGS` of the delta, run in the fixture's folder without the
    /// test's own SDAR_FULL_PATH, ready to run or spawn.
    fn restore_command(&self, via: Via, args: &[&str]) -> (String, Command) {
        let (program, mut argv) = match via {
            Via::Archive => (self.path(DELTA), vec!["restore"]),
            Via::Sdar => (PathBuf::from(SDAR), vec!["restore", DELTA]),
        };
        argv.extend_from_slice(args);
        let mut cmd = Command::new(&program);
        cmd.args(&argv)
            .current_dir(self.root())
            .env_remove("SDAR_FULL_PATH");
        (format!("{} {}", program.display(), argv.join(" ")), cmd)
    }

    fn restore(&self, via: Via, args: &[&str]) -> Outcome {
        let (what, mut cmd) = self.restore_command(via, args);
        run_command(what, &mut cmd)
    }

    /// `restore --full - ARGS` with the whole of `full` (relative to the
    /// fixture's folder) written to its standard input through a pipe.
    fn restore_streamed(&self, via: Via, full: &str, args: &[&str]) -> Outcome {
        let mut all = vec!["--full", "-"];
        all.extend_from_slice(args);
        let (what, mut cmd) = self.restore_command(via, &all);
        let what = format!("cat {full} | {what}");
        let full = fs::read(self.path(full)).unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            // The restore may stop reading early when it fails: fine.
            let _ = stdin.write_all(&full);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        Outcome {
            code: out
                .status
                .code()
                .unwrap_or_else(|| panic!("`{what}` was killed by a signal ({})", out.status)),
            what,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The two ways to run an archive's restore, which run the same code.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `./vm-1.sdar restore ARGS`.
    Archive,
    /// `sdar restore vm-1.sdar ARGS`.
    Sdar,
}

/// A `mib` MiB disk from `sdar sample-disk --seed seed`, its full, and a
/// delta of it changed with `change_disk(seed)`.
fn fixture(mib: usize, seed: u64) -> Fixture {
    let dir = scratch();
    let d = dir.path();
    for sub in ["vm", "backup", "restore"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    let sectors = (mib * MIB / 512) as u64;
    let base = sample_vmdk(
        &d.join("vm"),
        "base",
        DescriptorKind::MonolithicFlat,
        sectors,
        seed,
    );
    sdar(d, &["full", "vm/base.vmdk", "-o", FULL, "-q"]).success();
    let mut now = base.disk;
    change_disk(&mut now, seed);
    fs::write(d.join("vm/now-flat.vmdk"), &now).unwrap();
    let descriptor = descriptor_text(DescriptorKind::MonolithicFlat, sectors, "now-flat.vmdk", 0);
    fs::write(d.join(NOW), descriptor).unwrap();
    fs::write(d.join(VMX), vmx_text(VM_NAME, "0:1", "now.vmdk")).unwrap();
    let args = [
        "delta", NOW, "--full", FULL, "--vmx", VMX, "-o", DELTA, "-q",
    ];
    sdar(d, &args).success();
    Fixture { dir, now }
}

/// Changes `disk` as a running VM would, the same way for the same `seed`:
/// a page of random bytes in every seventh block (zero blocks included),
/// and one block of data zeroed, so that the delta has data, patch and
/// zero blocks.
fn change_disk(disk: &mut [u8], seed: u64) {
    let mut rng = Rng::new(seed);
    let blocks = disk.len() / BLOCK;
    for b in (0..blocks).step_by(7) {
        let at = b * BLOCK + rng.below(BLOCK / PAGE) * PAGE;
        rng.fill(&mut disk[at..at + PAGE]);
    }
    let zeroed = (blocks / 2..blocks)
        .find(|&b| disk[b * BLOCK..(b + 1) * BLOCK].iter().any(|&x| x != 0))
        .expect("the sample disk has data in its second half");
    disk[zeroed * BLOCK..(zeroed + 1) * BLOCK].fill(0);
}

/// Bytes of `disk` outside its zero blocks: what a thin restore allocates.
fn nonzero_bytes(disk: &[u8]) -> u64 {
    disk.chunks(BLOCK)
        .filter(|c| c.iter().any(|&b| b != 0))
        .map(|c| c.len() as u64)
        .sum()
}

/// The bytes a resume over `partial` must report as kept: those of every
/// block that `partial`, cut or extended with zeros to the disk's length
/// (as the restore sizes it), already holds exactly.
fn expected_kept(partial: &[u8], disk: &[u8]) -> u64 {
    let mut sized = partial.to_vec();
    sized.resize(disk.len(), 0);
    sized
        .chunks(BLOCK)
        .zip(disk.chunks(BLOCK))
        .filter(|(p, d)| p == d)
        .map(|(p, _)| p.len() as u64)
        .sum()
}

/// Bytes the filesystem has allocated to `path`.
fn allocated(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .blocks()
        * 512
}

/// The one JSON object `--json` prints on stdout.
#[track_caller]
fn summary(out: &Outcome) -> Value {
    let text = out.stdout_text();
    assert_eq!(
        text.lines().count(),
        1,
        "`{}` should print one JSON line on stdout:\n{text}",
        out.what
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{text}", out.what))
}

/// A count in a JSON object.
#[track_caller]
fn count(doc: &Value, key: &str) -> u64 {
    doc[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {doc}"))
}

/// Checks a `--json` summary of a successful restore of `disk` to
/// `dest` that did (or did not) resume, keeping `kept` bytes.
#[track_caller]
fn assert_restored_summary(doc: &Value, dest: &str, disk: &[u8], resumed: bool, kept: u64) {
    assert_eq!(doc["outcome"], "restored", "{doc}");
    assert_eq!(doc["exit_code"], 0, "{doc}");
    assert_eq!(doc["error"], Value::Null, "{doc}");
    assert_eq!(doc["resumed"], resumed, "{doc}");
    assert_eq!(doc["partial_kept"], Value::Null, "{doc}");
    assert_eq!(doc["descriptor"], dest, "{doc}");
    let flat = format!("{}-flat.vmdk", dest.strip_suffix(".vmdk").unwrap());
    assert_eq!(doc["data_file"], flat.as_str(), "{doc}");
    assert_eq!(count(doc, "kept_bytes"), kept, "{doc}");
    assert_eq!(count(doc, "image_bytes"), disk.len() as u64, "{doc}");
    assert_eq!(
        count(doc, "kept_bytes") + count(doc, "from_full_bytes") + count(doc, "from_delta_bytes"),
        disk.len() as u64,
        "every byte is kept, or comes from the full or the delta: {doc}"
    );
    let id = doc["identity"].as_str().unwrap_or_default();
    assert!(id.len() == 64, "no identity in {doc}");
}

/// Checks that `dir` holds exactly a restored `crm.vmdk` whose flat extent
/// is `disk`, byte for byte.
#[track_caller]
fn assert_restored(dir: &Path, disk: &[u8]) {
    assert_eq!(
        listing(dir),
        ["crm-flat.vmdk", "crm.vmdk"],
        "a restore leaves its descriptor and flat extent, nothing else, in {}",
        dir.display()
    );
    let flat = dir.join("crm-flat.vmdk");
    assert_same_bytes(&fs::read(&flat).unwrap(), disk, &flat.display().to_string());
}

/// `qemu-img compare` finds the VMDK at `dest` identical to `source`
/// (both relative to `root`).
#[track_caller]
fn assert_qemu_identical(root: &Path, dest: &str, source: &str) {
    stock(
        root,
        "qemu-img",
        &["compare", "-f", "vmdk", "-F", "vmdk", dest, source],
    )
    .success();
}

/// Nothing in `dir` looks like a disk: a `.vmdk` or `.img` file is there
/// only as a hidden `.sdar-partial`.
#[track_caller]
fn assert_no_false_disk(dir: &Path, after: &str) {
    let disks: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| !n.ends_with(".sdar-partial") && (n.ends_with(".vmdk") || n.ends_with(".img")))
        .collect();
    assert!(
        disks.is_empty(),
        "after {after}, {} holds what looks like a disk: {disks:?}",
        dir.display()
    );
}

/// Polls until the file at `path` begins with `expected`, for at most 30 s.
#[track_caller]
fn wait_until_written(path: &Path, expected: &[u8], child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0; expected.len()];
    loop {
        let written = fs::File::open(path).is_ok_and(|f| f.read_exact_at(&mut buf, 0).is_ok());
        if written && buf == expected {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the restore ended ({status}) before writing the first {} bytes",
                expected.len()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{} did not begin with the {} bytes expected within 30 s",
                path.display(),
                expected.len()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks what a killed restore left in `dir` (its partial file alone), and
/// that running it again without `--resume` is refused, naming `--resume`,
/// and changes nothing. Returns the partial file's bytes.
#[track_caller]
fn assert_interrupted(f: &Fixture, dir: &Path, dest: &str) -> Vec<u8> {
    assert_eq!(
        listing(dir),
        [PARTIAL, MARK],
        "a killed restore leaves its hidden partial file and its mark, nothing else"
    );
    let partial = dir.join(PARTIAL);
    let before = watch(&partial);
    for via in [Via::Archive, Via::Sdar] {
        let out = f.restore(via, &["--to", dest]);
        assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
        assert!(
            out.stderr.contains("--resume") && out.stderr.contains(PARTIAL),
            "the refusal should name the partial file and --resume: {}",
            out.stderr
        );
        before.assert_unchanged(&out.what);
        assert_eq!(listing(dir), [PARTIAL, MARK], "after `{}`", out.what);
    }
    fs::read(&partial).unwrap()
}

/// SIGKILLed while the full streams in on stdin, once the restore has
/// written every block it could from the first 10%, 50% or 90% of the
/// full: a rerun without `--resume` is refused, and `--resume` (the full
/// again on stdin, or by its path) keeps exactly the blocks already in
/// place, restores the rest, and gives the changed disk byte for byte.
#[test]
fn killed_while_streaming_the_full_resumes_to_the_same_disk() {
    let f = fixture(32, 1);
    let full = fs::read(f.path(FULL)).unwrap();
    let members = layout(&f.path(FULL)).members;
    for (percent, resume_streamed, via) in [
        (10, true, Via::Archive),
        (50, false, Via::Sdar),
        (90, false, Via::Archive),
        (90, true, Via::Sdar),
    ] {
        let rel = format!("restore/{percent}-{via:?}");
        let dir = f.dest_dir(&rel);
        let dest = format!("{rel}/crm.vmdk");
        let fed = full.len() * percent / 100;
        // Blocks whose members lie wholly in the bytes fed, with a block to
        // spare for what the reader holds back: these get written.
        let ready = members
            .iter()
            .take_while(|m| m.offset + m.len + BLOCK as u64 <= fed as u64)
            .count();
        assert!(ready > 0, "{percent}% of the full holds whole blocks");

        let (what, mut cmd) = f.restore_command(via, &["--full", "-", "--to", &dest, "-q"]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        if let Err(e) = stdin.write_all(&full[..fed]) {
            let out = child.wait_with_output().unwrap();
            panic!(
                "`{what}` stopped reading the full ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        wait_until_written(&dir.join(PARTIAL), &f.now[..ready * BLOCK], &mut child);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(SIGKILL), "`{what}`: {status}");
        drop(stdin);

        let partial = assert_interrupted(&f, &dir, &dest);
        let kept = expected_kept(&partial, &f.now);
        assert!(
            (ready * BLOCK) as u64 <= kept && kept < f.now.len() as u64,
            "the first {ready} blocks, not all, were in place: {kept} bytes"
        );
        let args = ["--to", &dest, "--resume", "--json"];
        let out = if resume_streamed {
            f.restore_streamed(via, FULL, &args)
        } else {
            let mut with_path = args.to_vec();
            with_path.extend(["--full", FULL]);
            f.restore(via, &with_path)
        }
        .success();
        assert_restored_summary(&summary(&out), &dest, &f.now, true, kept);
        assert!(out.stderr.contains("resuming"), "{}", out.stderr);
        assert_restored(&dir, &f.now);
        if percent == 50 {
            assert_qemu_identical(f.root(), &dest, NOW);
        }
    }
}

/// SIGKILLed as soon as `--progress json` shows it part-way through a
/// restore reading its full from a file; `sdar restore --resume` then
/// gives the same disk, keeping exactly the blocks in place. The restore
/// takes a few tens of milliseconds, so a kill that lands after its last
/// block (no partial file left) is tried again.
#[test]
fn killed_mid_restore_from_a_full_file_resumes_to_the_same_disk() {
    let f = fixture(64, 2);
    let dest = "restore/crm.vmdk";
    let dir = f.path("restore");
    let mut late = Vec::new();
    for _ in 0..20 {
        let (what, mut cmd) =
            f.restore_command(Via::Archive, &["--to", dest, "--progress", "json"]);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut killed_at = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            let Ok(doc) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let percent = count(&doc, "percent");
            if doc["event"] == "progress" && (1..100).contains(&percent) {
                child.kill().unwrap();
                killed_at = Some(percent);
                break;
            }
        }
        drop(lines);
        let status = child.wait().unwrap();
        if status.signal() != Some(SIGKILL) || !dir.join(PARTIAL).exists() {
            // Done (or past its last block) before the kill landed.
            late.push(format!("{status}, progress at {killed_at:?}%"));
            for name in listing(&dir) {
                fs::remove_file(dir.join(name)).unwrap();
            }
            continue;
        }

        let partial = assert_interrupted(&f, &dir, dest);
        let kept = expected_kept(&partial, &f.now);
        assert!(kept > 0, "blocks were written before the kill");
        let args = [
            "--to",
            dest,
            "--full",
            FULL,
            "--resume",
            "--json",
            "--progress",
            "json",
        ];
        let out = f.restore(Via::Sdar, &args).success();
        assert_restored_summary(&summary(&out), dest, &f.now, true, kept);
        let done = out
            .stderr
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or_else(|| panic!("no progress lines: {}", out.stderr));
        assert_eq!(done["event"], "done", "{done}");
        assert_eq!(count(&done, "kept_bytes"), kept, "{done}");
        assert_restored(&dir, &f.now);
        assert_qemu_identical(f.root(), dest, NOW);
        return;
    }
    panic!(
        "every restore finished before it could be killed: {}",
        late.join("; ")
    );
}

/// A partial file of random bytes, of the disk's size, shorter or longer,
/// or empty, is read back and none of its garbage kept: `--resume` keeps
/// only the blocks it holds exactly (the zero blocks where it was extended
/// with zeros) and restores the disk byte for byte, thin (where the
/// garbage over zero blocks becomes holes again) or not, VMDK or raw.
/// `--force` starts over and keeps nothing.
#[test]
fn resume_over_garbage_restores_the_same_disk() {
    let f = fixture(16, 3);
    let len = f.now.len();
    let mut rng = Rng::new(3);
    for (i, (garbage_len, extra, via)) in [
        (len, &[][..], Via::Archive),
        (len / 2 + 4321, &[], Via::Sdar),
        (len + BLOCK + 123, &["--thin"], Via::Archive),
        (len, &["--thin"], Via::Sdar),
        (0, &[], Via::Archive),
    ]
    .into_iter()
    .enumerate()
    {
        let rel = format!("restore/{i}");
        let dir = f.dest_dir(&rel);
        let dest = format!("{rel}/crm.vmdk");
        let garbage = rng.bytes(garbage_len);
        fs::write(dir.join(PARTIAL), &garbage).unwrap();
        f.mark(&dest, &dir.join(PARTIAL));
        let mut args = vec!["--to", &dest, "--resume", "--json"];
        args.extend_from_slice(extra);
        let out = f.restore(via, &args).success();
        let kept = expected_kept(&garbage, &f.now);
        assert!(
            kept <= (len - garbage_len.min(len)) as u64,
            "random bytes match no block"
        );
        assert_restored_summary(&summary(&out), &dest, &f.now, true, kept);
        assert_restored(&dir, &f.now);
        if extra == ["--thin"] {
            let flat = dir.join("crm-flat.vmdk");
            let bound = nonzero_bytes(&f.now) + BLOCK as u64;
            assert!(
                allocated(&flat) < bound,
                "{}: {} bytes allocated, expected fewer than {bound}: garbage over zero blocks should be holes",
                flat.display(),
                allocated(&flat)
            );
        }
    }

    // A raw image keeps its data in `.NAME.sdar-partial` until it is proven.
    let dir = f.dest_dir("restore/raw");
    let dest = "restore/raw/crm.img";
    let garbage = rng.bytes(len / 3);
    fs::write(dir.join(".crm.img.sdar-partial"), &garbage).unwrap();
    plant_restore_mark(
        &f.path(DELTA),
        &f.path(dest),
        false,
        &dir.join(".crm.img.sdar-partial"),
        false,
    );
    let out = f.restore(Via::Sdar, &["--raw", "--to", dest]);
    assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    let args = ["--raw", "--to", dest, "--resume", "--json"];
    let doc = summary(&f.restore(Via::Archive, &args).success());
    assert_eq!(doc["resumed"], true, "{doc}");
    assert_eq!(
        count(&doc, "kept_bytes"),
        expected_kept(&garbage, &f.now),
        "{doc}"
    );
    assert_eq!(doc["data_file"], dest, "{doc}");
    assert_eq!(doc["descriptor"], Value::Null, "{doc}");
    assert_eq!(listing(&dir), ["crm.img"]);
    assert_same_bytes(&fs::read(f.path(dest)).unwrap(), &f.now, dest);

    let dir = f.dest_dir("restore/forced");
    fs::write(dir.join(PARTIAL), rng.bytes(len)).unwrap();
    let dest = "restore/forced/crm.vmdk";
    let out = f
        .restore(Via::Archive, &["--to", dest, "--force", "--json"])
        .success();
    assert_restored_summary(&summary(&out), dest, &f.now, false, 0);
    assert_restored(&dir, &f.now);
}

/// A tmpfs of a chosen size, mounted on a folder in a mount namespace of
/// its own (`unshare -rm`), so that nothing changes on the machine and the
/// mount goes away with the test. A shell in that namespace holds it and
/// resizes it on request; this process and the programs it runs reach it
/// through `/proc/PID/root`.
struct SmallFs {
    holder: Child,
    requests: ChildStdin,
    replies: BufReader<ChildStdout>,
    path: PathBuf,
}

impl SmallFs {
    const SCRIPT: &'static str = r#"mount -t tmpfs -o size="$1" sdar-test "$2" || exit 1
echo mounted
while read -r size; do
    mount -o remount,size="$size" "$2" || exit 1
    echo resized
done"#;

    /// Mounts a tmpfs of `size` (such as `8m`) on `at`, an absolute path;
    /// the error says why it could not.
    fn mount(at: &Path, size: &str) -> Result<Self, String> {
        fs::create_dir_all(at).unwrap();
        let mut holder = Command::new("unshare")
            .args(["-rm", "sh", "-c", Self::SCRIPT, "sh", size])
            .arg(at)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let requests = holder.stdin.take().unwrap();
        let mut replies = BufReader::new(holder.stdout.take().unwrap());
        let mut line = String::new();
        replies.read_line(&mut line).unwrap();
        if line.trim() != "mounted" {
            drop(requests);
            let out = holder.wait_with_output().unwrap();
            return Err(format!(
                "unshare -rm and mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = Path::new(&format!("/proc/{}/root", holder.id()))
            .join(at.strip_prefix("/").expect("an absolute path"));
        Ok(SmallFs {
            holder,
            requests,
            replies,
            path,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn resize(&mut self, size: &str) {
        writeln!(self.requests, "{size}").unwrap();
        let mut line = String::new();
        self.replies.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "resized", "cannot resize the tmpfs to {size}");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// On an 8 MiB tmpfs, a 32 MiB disk: the free-space check refuses it
/// (preallocated, and thin since its data does not fit either) and leaves
/// nothing; without the check a preallocated restore fails cleanly for
/// want of room, and a thin one runs out of space part-way, keeps its
/// partial file and says `--resume`. Grown to hold the disk's data but not
/// the whole disk, the same command with `--resume` finishes the thin
/// restore, identical; and there a thin restore passes the check that a
/// preallocated one fails.
#[test]
fn out_of_space_is_refused_or_resumed_once_there_is_room() {
    require_tool("unshare");
    let f = fixture(32, 4);
    let mut small = match SmallFs::mount(&f.path("small"), "8m") {
        Ok(small) => small,
        Err(why) => {
            // `file_size_limit_fails_with_an_error_and_resumes` still covers a
            // write that fails part-way, with EFBIG instead of ENOSPC.
            eprintln!("NOT RUN: no tmpfs in a private mount namespace here: {why}");
            return;
        }
    };
    let dir = small.path().to_path_buf();
    let dest = dir.join("crm.vmdk");
    let dest = dest.to_str().unwrap();
    let data = nonzero_bytes(&f.now) as usize;
    assert!(data > 8 * MIB, "the disk's data should not fit in 8 MiB");

    for extra in [&[][..], &["--thin"]] {
        let mut args = vec!["--to", dest, "--json"];
        args.extend_from_slice(extra);
        let out = f.restore(Via::Archive, &args);
        assert_eq!(out.code, EXIT_OTHER, "`{}`: {}", out.what, out.stderr);
        assert!(
            out.stderr.contains("not enough free space"),
            "{}",
            out.stderr
        );
        let doc = summary(&out);
        assert_eq!(doc["outcome"], "failed", "{doc}");
        assert_eq!(doc["exit_code"], EXIT_OTHER, "{doc}");
        assert_eq!(doc["partial_kept"], Value::Null, "{doc}");
        assert_eq!(listing(&dir), Vec::<String>::new(), "after `{}`", out.what);
    }

    let out = f.restore(Via::Sdar, &["--to", dest, "--no-space-check"]);
    assert_eq!(out.code, EXIT_OTHER, "`{}`: {}", out.what, out.stderr);
    assert!(
        out.stderr.contains("No space left") && out.stderr.contains("no room"),
        "the message should say there is no room: {}",
        out.stderr
    );
    assert_no_false_disk(&dir, &out.what);

    let args = ["--to", dest, "--thin", "--no-space-check", "--json"];
    let out = f.restore(Via::Archive, &args);
    assert_eq!(out.code, EXIT_OTHER, "`{}`: {}", out.what, out.stderr);
    assert!(
        out.stderr.contains("No space left") && out.stderr.contains("--resume"),
        "the message should say there is no room, and --resume: {}",
        out.stderr
    );
    let doc = summary(&out);
    assert_eq!(doc["outcome"], "failed", "{doc}");
    assert_eq!(
        doc["partial_kept"],
        dir.join(PARTIAL).to_str().unwrap(),
        "{doc}"
    );
    assert_eq!(listing(&dir), [PARTIAL, MARK], "after `{}`", out.what);
    let partial = fs::read(dir.join(PARTIAL)).unwrap();
    let kept = expected_kept(&partial, &f.now);
    assert!(
        kept > 0,
        "some blocks were written before the space ran out"
    );

    // Room for the disk's data and descriptor, not for the whole disk.
    let room = data.div_ceil(MIB) + 1;
    assert!(
        room * MIB < f.now.len(),
        "the disk has zero blocks to spare"
    );
    small.resize(&format!("{room}m"));
    let mut again = args.to_vec();
    again.push("--resume");
    let out = f.restore(Via::Archive, &again).success();
    assert_restored_summary(&summary(&out), dest, &f.now, true, kept);
    assert_restored(&dir, &f.now);
    assert!(
        fs::read_to_string(dest)
            .unwrap()
            .contains("ddb.thinProvisioned = \"1\""),
        "a thin restore's descriptor says so"
    );

    for name in listing(&dir) {
        fs::remove_file(dir.join(name)).unwrap();
    }
    let out = f.restore(Via::Sdar, &["--to", dest]);
    assert_eq!(out.code, EXIT_OTHER, "`{}`: {}", out.what, out.stderr);
    assert!(
        out.stderr.contains("not enough free space"),
        "{}",
        out.stderr
    );
    assert_eq!(listing(&dir), Vec::<String>::new(), "after `{}`", out.what);
    f.restore(Via::Sdar, &["--to", dest, "--thin"]).success();
    assert_restored(&dir, &f.now);
}

/// Under `prlimit --fsize` a restore's writes fail with EFBIG instead of
/// killing it with SIGXFSZ: a fresh restore cannot size its data file and
/// fails with exit 3 leaving nothing; a resumed one fails part-way, keeps
/// its partial file and says `--resume`; resumed again without the limit,
/// it gives the disk byte for byte.
#[test]
fn file_size_limit_fails_with_an_error_and_resumes() {
    require_tool("prlimit");
    let f = fixture(16, 5);
    let limit = 4 * MIB;
    let limited = |args: &[&str]| {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--fsize={limit}"))
            .arg("--")
            .arg(f.path(DELTA))
            .arg("restore")
            .args(args)
            .current_dir(f.root())
            .env_remove("SDAR_FULL_PATH");
        // Panics if the restore is killed by a signal (SIGXFSZ).
        let what = format!(
            "prlimit --fsize={limit} -- {DELTA} restore {}",
            args.join(" ")
        );
        let out = run_command(what, &mut cmd);
        assert_eq!(out.code, EXIT_OTHER, "`{}`: {}", out.what, out.stderr);
        assert!(out.stderr.contains("File too large"), "{}", out.stderr);
        out
    };
    for (i, extra) in [&[][..], &["--thin"], &["--no-space-check"]]
        .into_iter()
        .enumerate()
    {
        let rel = format!("restore/{i}");
        let dir = f.dest_dir(&rel);
        let dest = format!("{rel}/crm.vmdk");
        let mut args = vec!["--to", &dest];
        args.extend_from_slice(extra);
        let out = limited(&args);
        assert_eq!(listing(&dir), Vec::<String>::new(), "after `{}`", out.what);
    }

    // An interrupted restore's partial file, of the disk's length: its first
    // MiB restored, garbage after.
    let dir = f.dest_dir("restore/resumed");
    let dest = "restore/resumed/crm.vmdk";
    let mut partial = f.now.clone();
    Rng::new(5).fill(&mut partial[MIB..]);
    fs::write(dir.join(PARTIAL), &partial).unwrap();
    f.mark(dest, &dir.join(PARTIAL));
    let out = limited(&["--to", dest, "--resume", "--json"]);
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    let doc = summary(&out);
    assert_eq!(doc["outcome"], "failed", "{doc}");
    assert_eq!(doc["exit_code"], EXIT_OTHER, "{doc}");
    assert_eq!(doc["resumed"], true, "{doc}");
    assert_eq!(
        doc["partial_kept"],
        format!("restore/resumed/{PARTIAL}"),
        "{doc}"
    );
    assert_eq!(listing(&dir), [PARTIAL, MARK], "after `{}`", out.what);

    let partial = fs::read(dir.join(PARTIAL)).unwrap();
    let kept = expected_kept(&partial, &f.now);
    assert!(
        kept >= limit as u64,
        "every block below the limit was restored before the write past it failed"
    );
    let out = f
        .restore(Via::Sdar, &["--to", dest, "--resume", "--json"])
        .success();
    assert_restored_summary(&summary(&out), dest, &f.now, true, kept);
    assert_restored(&dir, &f.now);
}

/// `--thin` leaves zero blocks as holes: the flat extent allocates no more
/// than the disk's data (and a block of slack), compares identical, and the
/// descriptor says `ddb.thinProvisioned`. Without it the extent is
/// preallocated, where the filesystem can.
#[test]
fn thin_restore_leaves_holes_and_a_preallocated_one_does_not() {
    let f = fixture(32, 6);
    let len = f.now.len() as u64;
    let data = nonzero_bytes(&f.now);
    assert!(
        len > data + 4 * MIB as u64,
        "the disk should have zero blocks"
    );

    let dir = f.dest_dir("restore/thin");
    let dest = "restore/thin/crm.vmdk";
    let out = f
        .restore(Via::Archive, &["--to", dest, "--thin", "--json"])
        .success();
    let doc = summary(&out);
    assert_restored_summary(&doc, dest, &f.now, false, 0);
    assert_eq!(doc["thin"], true, "{doc}");
    assert_restored(&dir, &f.now);
    assert_qemu_identical(f.root(), dest, NOW);
    let flat = dir.join("crm-flat.vmdk");
    assert!(
        allocated(&flat) < data + BLOCK as u64,
        "{} bytes allocated for {data} bytes of data",
        allocated(&flat)
    );
    assert!(
        fs::read_to_string(f.path(dest))
            .unwrap()
            .contains("ddb.thinProvisioned = \"1\""),
        "the descriptor should say ddb.thinProvisioned"
    );

    let dir = f.dest_dir("restore/thick");
    let dest = "restore/thick/crm.vmdk";
    let doc = summary(&f.restore(Via::Sdar, &["--to", dest, "--json"]).success());
    assert_eq!(doc["thin"], false, "{doc}");
    assert_restored(&dir, &f.now);
    assert!(
        !fs::read_to_string(f.path(dest))
            .unwrap()
            .contains("thinProvisioned"),
        "a preallocated disk is not thin"
    );
    let probe = stock(&dir, "fallocate", &["-l", "1MiB", "probe"]);
    if probe.code == EXIT_OK {
        fs::remove_file(dir.join("probe")).unwrap();
        let flat = dir.join("crm-flat.vmdk");
        assert!(
            allocated(&flat) >= len,
            "{} bytes allocated for a preallocated {len}-byte disk",
            allocated(&flat)
        );
    } else {
        eprintln!(
            "NOT CHECKED: preallocation (fallocate is not supported here: {})",
            probe.stderr
        );
    }
}

/// `--json` prints one object on stdout, on success (the counts add up to
/// the disk, the identity is the archive's) and on failure: another disk's
/// full given with --full (exit 1, nothing written), and another disk's
/// full streamed into a resumed restore, which fails part-way (exit 1) but
/// keeps the partial file, since it was not this run's to remove.
#[test]
fn json_summary_on_success_and_on_failure() {
    let f = fixture(16, 7);
    let info = sdar(f.root(), &["info", "--json", DELTA]).success();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    let changed = count(&info, "changed_blocks");
    for (via, rel) in [(Via::Archive, "restore/a"), (Via::Sdar, "restore/b")] {
        let dir = f.dest_dir(rel);
        let dest = format!("{rel}/crm.vmdk");
        let out = f.restore(via, &["--to", &dest, "--json"]).success();
        let doc = summary(&out);
        assert_restored_summary(&doc, &dest, &f.now, false, 0);
        assert_eq!(doc["identity"], info["identity"], "{doc}");
        let full = doc["full"].as_str().unwrap_or_default();
        assert!(full.ends_with(FULL), "the full beside the archive: {doc}");
        assert_eq!(doc["destination"], dest, "{doc}");
        assert_eq!(doc["vmx"], Value::Null, "{doc}");
        assert_eq!(doc["thin"], false, "{doc}");
        assert_eq!(count(&doc, "from_delta_bytes"), changed * BLOCK as u64);
        assert_eq!(
            count(&doc, "zero_blocks"),
            zero_blocks(&f.now, BLOCK),
            "{doc}"
        );
        assert!(doc["elapsed_seconds"].as_f64().is_some(), "{doc}");
        assert!(doc["rate_bytes_per_sec"].as_f64().is_some(), "{doc}");
        assert_restored(&dir, &f.now);
    }

    sample_disk(&f.path("vm"), "other.raw", f.now.len() as u64, 99);
    sdar(
        f.root(),
        &["full", "vm/other.raw", "-o", "other.full.gz", "-q"],
    )
    .success();
    let dir = f.dest_dir("restore/wrong");
    let dest = "restore/wrong/crm.vmdk";
    for via in [Via::Archive, Via::Sdar] {
        let out = f.restore(via, &["--to", dest, "--full", "other.full.gz", "--json"]);
        assert_eq!(out.code, EXIT_INTEGRITY, "`{}`: {}", out.what, out.stderr);
        let doc = summary(&out);
        assert_eq!(doc["outcome"], "failed", "{doc}");
        assert_eq!(doc["exit_code"], EXIT_INTEGRITY, "{doc}");
        let error = doc["error"].as_str().unwrap_or_default();
        let wanted = info["base_identity"].as_str().unwrap();
        assert!(
            error.contains(wanted),
            "the error should name {wanted}: {doc}"
        );
        for key in ["data_file", "descriptor", "partial_kept", "identity"] {
            assert_eq!(doc[key], Value::Null, "{key}: {doc}");
        }
        assert_eq!(doc["resumed"], false, "{doc}");
        assert_eq!(listing(&dir), Vec::<String>::new(), "after `{}`", out.what);
    }

    // A resumed restore fed the wrong full on stdin.
    let garbage = Rng::new(7).bytes(f.now.len());
    fs::write(dir.join(PARTIAL), &garbage).unwrap();
    f.mark(dest, &dir.join(PARTIAL));
    let args = ["--to", dest, "--resume", "--json"];
    let out = f.restore_streamed(Via::Archive, "other.full.gz", &args);
    assert_eq!(out.code, EXIT_INTEGRITY, "`{}`: {}", out.what, out.stderr);
    let doc = summary(&out);
    assert_eq!(doc["outcome"], "failed", "{doc}");
    assert_eq!(doc["exit_code"], EXIT_INTEGRITY, "{doc}");
    assert_eq!(doc["resumed"], true, "{doc}");
    assert_eq!(
        doc["partial_kept"],
        format!("restore/wrong/{PARTIAL}"),
        "{doc}"
    );
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    assert_eq!(listing(&dir), [PARTIAL, MARK], "after `{}`", out.what);
}

/// The fields every `--progress json` line has.
const PROGRESS_FIELDS: [&str; 8] = [
    "done_bytes",
    "total_bytes",
    "percent",
    "delta_percent",
    "full_percent",
    "kept_bytes",
    "rate_bytes_per_sec",
    "remain_seconds",
];

/// The JSON lines of a restore's stderr, checked: each is an object with
/// every progress field; `"event":"progress"` lines come first (the first
/// one even when the restore takes less than their 250 ms interval), at
/// least 250 ms apart, their percent and bytes never decreasing; the last
/// is `"event":"done"` with every byte of `len` done.
#[track_caller]
fn checked_progress(stderr: &str, len: usize) -> Vec<Value> {
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stderr}"))
        })
        .collect();
    let (done, progress) = lines
        .split_last()
        .unwrap_or_else(|| panic!("no JSON lines: {stderr}"));
    assert!(!progress.is_empty(), "no progress before done: {stderr}");
    for doc in &lines {
        for key in PROGRESS_FIELDS {
            assert!(doc[key].is_number(), "{key} is not a number in {doc}");
        }
        assert_eq!(count(doc, "total_bytes"), len as u64, "{doc}");
    }
    for pair in lines.windows(2) {
        for key in ["percent", "done_bytes"] {
            assert!(
                count(&pair[0], key) <= count(&pair[1], key),
                "{key} went down: {} then {}",
                pair[0],
                pair[1]
            );
        }
    }
    for pair in progress.windows(2) {
        let secs = |d: &Value| d["elapsed_seconds"].as_f64().unwrap();
        assert!(
            secs(&pair[1]) - secs(&pair[0]) >= 0.249,
            "progress lines less than 250 ms apart: {} then {}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        progress.iter().all(|d| d["event"] == "progress"),
        "{stderr}"
    );
    assert_eq!(done["event"], "done", "{done}");
    assert_eq!(count(done, "done_bytes"), len as u64, "{done}");
    for key in ["percent", "delta_percent", "full_percent"] {
        assert_eq!(count(done, key), 100, "{key}: {done}");
    }
    lines
}

/// `--progress json` on stderr, for a restore of a few tens of milliseconds
/// and for one whose full trickles in on stdin over a second or so.
#[test]
fn progress_json_lines_rise_to_done() {
    let f = fixture(32, 8);
    let len = f.now.len();
    f.dest_dir("restore/fast");
    let dest = "restore/fast/crm.vmdk";
    let out = f
        .restore(Via::Archive, &["--to", dest, "--progress", "json"])
        .success();
    checked_progress(&out.stderr, len);

    let dir = f.dest_dir("restore/slow");
    let dest = "restore/slow/crm.vmdk";
    let (what, mut cmd) =
        f.restore_command(Via::Sdar, &["--full", "-", "--to", dest, "--progress=json"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let full = fs::read(f.path(FULL)).unwrap();
    for chunk in full.chunks(full.len().div_ceil(12)) {
        stdin.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`{what}`: {stderr}");
    let lines = checked_progress(&stderr, len);
    assert!(
        lines.len() >= 4,
        "a restore of a second or more reports several times: {stderr}"
    );
    assert_restored(&dir, &f.now);
}

/// `--vmx DIR` writes the backup's .vmx, byte for byte as `extract-vmx`
/// gives it, named after the VM; with `--rename-disk` only the disk entry
/// differs, naming the restored descriptor (by file name beside it, by
/// absolute path elsewhere). `--rename-disk` without `--vmx` is a usage
/// error that writes nothing.
#[test]
fn vmx_is_written_as_backed_up_or_with_the_disk_renamed() {
    let f = fixture(16, 9);
    let vmx_name = format!("{VM_NAME}.vmx");
    sdar(f.root(), &["extract-vmx", DELTA, "-o", "extracted.vmx"]).success();
    let original = fs::read(f.path("extracted.vmx")).unwrap();
    let original_text = String::from_utf8(original.clone()).unwrap();
    assert_same_bytes(&original, &fs::read(f.path(VMX)).unwrap(), "extract-vmx");

    let dir = f.dest_dir("restore/plain");
    let out = f
        .restore(
            Via::Archive,
            &[
                "--to",
                "restore/plain/crm.vmdk",
                "--vmx",
                "restore/plain",
                "--json",
            ],
        )
        .success();
    assert_eq!(
        summary(&out)["vmx"],
        format!("restore/plain/{vmx_name}"),
        "{}",
        out.stdout_text()
    );
    assert_same_bytes(
        &fs::read(dir.join(&vmx_name)).unwrap(),
        &original,
        &vmx_name,
    );

    let elsewhere = f.dest_dir("restore/vms");
    let disk_dir = f.dest_dir("restore/disks");
    for (via, vmx_dir, dest, reference) in [
        (
            Via::Archive,
            "restore/renamed",
            "restore/renamed/crm.vmdk",
            "crm.vmdk".to_string(),
        ),
        (
            Via::Sdar,
            "restore/vms",
            "restore/disks/crm.vmdk",
            disk_dir
                .canonicalize()
                .unwrap()
                .join("crm.vmdk")
                .display()
                .to_string(),
        ),
    ] {
        f.dest_dir(vmx_dir);
        let args = ["--to", dest, "--vmx", vmx_dir, "--rename-disk"];
        f.restore(via, &args).success();
        let written = fs::read_to_string(f.path(vmx_dir).join(&vmx_name)).unwrap();
        let (old, new): (Vec<_>, Vec<_>) = original_text
            .split_inclusive('\n')
            .zip(written.split_inclusive('\n'))
            .filter(|(a, b)| a != b)
            .unzip();
        assert_eq!(
            written.split_inclusive('\n').count(),
            original_text.split_inclusive('\n').count(),
            "{written}"
        );
        assert_eq!(
            old.len(),
            1,
            "only the disk entry should change:\n{written}"
        );
        assert!(old[0].starts_with(DISK_ENTRY), "{}", old[0]);
        assert_eq!(new[0], format!("{DISK_ENTRY} = \"{reference}\"\n"));
    }
    assert_eq!(listing(&elsewhere), [vmx_name.as_str()]);
    assert_restored(&disk_dir, &f.now);

    let dir = f.dest_dir("restore/refused");
    for via in [Via::Archive, Via::Sdar] {
        let out = f.restore(via, &["--to", "restore/refused/crm.vmdk", "--rename-disk"]);
        assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
        assert!(out.stderr.contains("--vmx"), "{}", out.stderr);
        assert_eq!(listing(&dir), Vec::<String>::new(), "after `{}`", out.what);
    }

    // A .vmx that cannot be written is refused before the disk is.
    let dir = f.dest_dir("restore/taken");
    fs::write(dir.join(&vmx_name), "someone else's\n").unwrap();
    let out = f.restore(
        Via::Archive,
        &["--to", "restore/taken/crm.vmdk", "--vmx", "restore/taken"],
    );
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(listing(&dir), [vmx_name.as_str()]);
    let out = f.restore(
        Via::Archive,
        &["--to", "restore/taken/crm.vmdk", "--vmx", "restore/missing"],
    );
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert_eq!(listing(&dir), [vmx_name.as_str()]);
}

/// A restore that died between renaming its flat extent and its descriptor
/// leaves the extent alone under its final name. A plain rerun refuses to
/// replace it; `--resume` takes it back, proves every block of it (keeping
/// all of them) and writes the descriptor.
#[test]
fn resume_takes_back_an_extent_left_without_its_descriptor() {
    let f = fixture(16, 5);
    let dir = f.dest_dir("restore/orphan");
    let dest = "restore/orphan/crm.vmdk";
    f.restore(Via::Archive, &["--to", dest, "-q"]).success();
    fs::remove_file(dir.join("crm.vmdk")).unwrap();
    // What the restore's mark says between its two renames.
    let died_between_renames = || {
        plant_restore_mark(
            &f.path(DELTA),
            &f.path(dest),
            true,
            &dir.join("crm-flat.vmdk"),
            true,
        )
    };
    died_between_renames();

    let out = f.restore(Via::Archive, &["--to", dest]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(listing(&dir), [MARK, "crm-flat.vmdk"]);

    for via in [Via::Archive, Via::Sdar] {
        died_between_renames();
        let out = f
            .restore(via, &["--to", dest, "--resume", "--json"])
            .success();
        let doc = summary(&out);
        assert_eq!(doc["resumed"], true, "{doc}");
        assert_eq!(count(&doc, "kept_bytes"), f.now.len() as u64, "{doc}");
        assert_restored(&dir, &f.now);
        fs::remove_file(dir.join("crm.vmdk")).unwrap();
    }
    // A flat extent that no mark names (a user's own disk that merely
    // lacks its descriptor) is never taken (changed by issue 12: it used to
    // be taken back and rewritten block by block).
    fs::write(dir.join("crm-flat.vmdk"), b"not this disk").unwrap();
    let out = f.restore(Via::Archive, &["--to", dest, "--resume"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(
        fs::read(dir.join("crm-flat.vmdk")).unwrap(),
        b"not this disk"
    );
    assert_eq!(listing(&dir), ["crm-flat.vmdk"]);
}
