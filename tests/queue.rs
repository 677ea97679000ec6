//! The background restore queue: `sdar queue submit|list|log|cancel|purge`
//! and `sdar daemon`, driven as an admin would, on a real catalog file and
//! seeded backups; every restored disk is compared byte for byte with the
//! disk that was backed up. The daemon is killed (`kill -9`) and stopped
//! (SIGTERM) mid-job, run twice at once, and given two jobs for one
//! destination. `sdar daemon --max-rate` keeps a job running long enough to
//! be caught mid-way.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A backed-up VM: its full and delta, and the disk the delta restores.
struct Vm {
    delta: PathBuf,
    disk: Vec<u8>,
}

/// Backs up a seeded disk of `mib` MiB as VM `vm_name`: a full, then a
/// change and the delta of it, in `dir/backups`. `file` names the files.
fn vm(dir: &Path, file: &str, vm_name: &str, mib: u64, seed: u64) -> Vm {
    fs::create_dir_all(dir.join("backups")).unwrap();
    let img = format!("{file}.img");
    write_sample_disk(dir, &img, mib * MIB, seed);
    let full = format!("backups/{file}.full.gz");
    let uuid = format!("42{seed:030}");
    let meta = ["--vm-name", vm_name, "--vm-uuid", &uuid, "--scsi-id", "0:0"];
    // Made a day apart (SOURCE_DATE_EPOCH), so that the catalog tells the
    // delta from the full's companion.
    let made = |args: &[&str], day: i64| {
        run_command(
            format!("sdar {}", args.join(" ")),
            Command::new(SDAR)
                .args(args)
                .env(
                    "SOURCE_DATE_EPOCH",
                    (1_764_547_200 + day * 86_400).to_string(),
                )
                .current_dir(dir),
        )
        .success();
    };
    let mut args = vec!["full", &img];
    args.extend(meta);
    args.extend(["-o", &full]);
    made(&args, 0);
    let change_seed = (seed + 1000).to_string();
    sdar(
        dir,
        &[
            "sample-change",
            &img,
            "--percent",
            "20",
            "--seed",
            &change_seed,
        ],
    )
    .success();
    let delta = format!("backups/{file}-1.sdar");
    let mut args = vec!["delta", &img, "--full", &full];
    args.extend(meta);
    args.extend(["-o", &delta]);
    made(&args, 1);
    Vm {
        delta: dir.join(delta),
        disk: fs::read(dir.join(&img)).unwrap(),
    }
}

/// A scratch folder with a catalog file and a `restored/` folder.
struct Queue {
    dir: tempfile::TempDir,
    catalog: PathBuf,
}

impl Queue {
    fn new() -> Queue {
        let dir = scratch();
        fs::create_dir(dir.path().join("restored")).unwrap();
        let catalog = dir.path().join("catalog.sqlite");
        Queue { dir, catalog }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn restored(&self, name: &str) -> PathBuf {
        self.root().join("restored").join(name)
    }

    /// `sdar queue SUB --catalog CATALOG ARGS...`
    fn queue(&self, sub: &str, args: &[&str]) -> Outcome {
        let cat = self.catalog.to_str().unwrap();
        let mut all = vec!["queue", sub, "--catalog", cat];
        all.extend(args);
        sdar(self.root(), &all)
    }

    /// Queues the restore of `delta` to `restored/DEST`; returns the job id.
    fn submit(&self, delta: &Path, dest: &str, extra: &[&str]) -> i64 {
        let to = format!("restored/{dest}");
        let mut args = vec![delta.to_str().unwrap(), "--to", &to];
        args.extend(extra);
        let out = self.queue("submit", &args).success();
        let text = out.stdout_text();
        text.trim()
            .strip_prefix("queued job ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("`{}` printed {text:?}", out.what))
    }

    /// `sdar queue list --json`.
    fn jobs(&self) -> Vec<Value> {
        let out = self.queue("list", &["--json"]).success();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("queue list --json: {e}: {}", out.stdout_text()))
            .as_array()
            .unwrap()
            .clone()
    }

    fn job(&self, id: i64) -> Value {
        self.jobs()
            .into_iter()
            .find(|j| j["id"] == id)
            .unwrap_or_else(|| panic!("no job {id} in the queue"))
    }

    fn daemon(&self, args: &[&str]) -> Daemon {
        Daemon::start(self, args)
    }

    /// Runs `sdar daemon --until-idle ARGS` to its end.
    fn run_until_idle(&self, args: &[&str]) -> String {
        let mut all = vec!["--until-idle"];
        all.extend(args);
        let d = self.daemon(&all);
        let (code, stderr) = d.wait(Duration::from_secs(40));
        assert_eq!(code, Some(0), "sdar daemon --until-idle failed:\n{stderr}");
        stderr
    }

    /// Polls until `ready(job)` holds for job `id`, for at most 30 s.
    #[track_caller]
    fn wait_for(&self, id: i64, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = self.job(id);
            if ready(&j) {
                return j;
            }
            assert!(Instant::now() < deadline, "job {id} never {what}: {j:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[track_caller]
    fn assert_restored(&self, name: &str, vm: &Vm) {
        let flat = self.restored(&format!("{name}-flat.vmdk"));
        let bytes = fs::read(&flat).unwrap_or_else(|e| panic!("{}: {e}", flat.display()));
        assert_same_bytes(&bytes, &vm.disk, &flat.display().to_string());
        assert!(self.restored(&format!("{name}.vmdk")).is_file());
    }

    fn log(&self, id: i64) -> String {
        self.queue("log", &[&id.to_string()])
            .success()
            .stdout_text()
    }
}

/// A running `sdar daemon`, killed when dropped; its stderr goes to a file.
struct Daemon {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Daemon {
    fn start(q: &Queue, args: &[&str]) -> Daemon {
        let n = fs::read_dir(q.root()).unwrap().count();
        let stderr = q.root().join(format!("daemon-{n}.err"));
        let err = fs::File::create(&stderr).unwrap();
        let child = Command::new(SDAR)
            .arg("daemon")
            .arg("--catalog")
            .arg(&q.catalog)
            .args(args)
            .current_dir(q.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("cannot start sdar daemon");
        Daemon {
            child: Some(child),
            stderr,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for the daemon to exit: its exit code (None: a signal) and
    /// stderr.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sdar daemon did not exit within {limit:?}:\n{}",
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.code(),
            fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `sdar queue log --follow` running, killed when dropped (a test that
/// fails early leaves no follower waiting for a job that never ends).
struct Follower(Option<Child>);

impl Follower {
    fn output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The names in `restored/` that look like a disk (not hidden).
fn disks_in(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

#[test]
fn jobs_run_one_and_four_at_a_time_to_identical_disks() {
    let q = Queue::new();
    let vms: Vec<Vm> = (0..4)
        .map(|i| vm(q.root(), &format!("vm{i}"), &format!("vm{i}"), 4, 10 + i))
        .collect();
    let mut ids = Vec::new();
    for (i, v) in vms.iter().enumerate() {
        ids.push(q.submit(&v.delta, &format!("one{i}.vmdk"), &[]));
    }
    // A relative destination is recorded from the root: the daemon runs
    // elsewhere.
    let j = q.job(ids[0]);
    assert_eq!(
        j["destination"],
        q.restored("one0.vmdk").to_str().unwrap(),
        "{j:#}"
    );
    assert_eq!(j["state"], "waiting");
    let by = j["submitted_by"].as_str().unwrap();
    assert!(by.ends_with(" via sdar queue submit"), "{by}");
    q.run_until_idle(&["--jobs", "1"]);
    for (i, v) in vms.iter().enumerate() {
        q.assert_restored(&format!("one{i}"), v);
    }
    for id in &ids {
        let j = q.job(*id);
        assert_eq!(
            (&j["state"], &j["exit_code"]),
            (&"done".into(), &0.into()),
            "{j:#}"
        );
        assert_eq!(j["percent"], 100, "{j:#}");
    }
    // Four at once, two jobs per disk.
    let mut ids = Vec::new();
    for round in 0..2 {
        for (i, v) in vms.iter().enumerate() {
            ids.push(q.submit(&v.delta, &format!("four{round}{i}.vmdk"), &[]));
        }
    }
    let stderr = q.run_until_idle(&["--jobs", "4"]);
    for round in 0..2 {
        for (i, v) in vms.iter().enumerate() {
            q.assert_restored(&format!("four{round}{i}"), v);
        }
    }
    for id in &ids {
        assert_eq!(q.job(*id)["state"], "done");
        assert!(
            stderr.contains(&format!("job {id} started (run 1)")),
            "{stderr}"
        );
    }
    // Each job has its own log, which tells the whole story.
    let log = q.log(ids[0]);
    for want in [
        "run 1 by daemon",
        "restored ",
        "every block verified",
        "done (exit 0)",
    ] {
        assert!(log.contains(want), "the log lacks {want:?}:\n{log}");
    }
    // More than 4 at once is warned about.
    let stderr = q.run_until_idle(&["--jobs", "5"]);
    assert!(stderr.contains("warning: --jobs 5"), "{stderr}");
}

#[test]
fn cancel_a_waiting_job_at_once_and_a_running_one_by_its_daemon() {
    let q = Queue::new();
    let big = vm(q.root(), "big", "big", 32, 1);
    let running = q.submit(&big.delta, "big.vmdk", &[]);
    let waiting = q.submit(&big.delta, "other.vmdk", &[]);
    let out = q.queue("cancel", &[&waiting.to_string()]).success();
    assert!(
        out.stdout_text().contains("cancelled"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(q.job(waiting)["state"], "cancelled");
    let d = q.daemon(&["--until-idle", "--max-rate", "8M"]);
    q.wait_for(running, "got under way", |j| {
        j["state"] == "running" && j["done_bytes"].as_u64().is_some_and(|d| d > 0)
    });
    q.queue("cancel", &[&running.to_string()]).success();
    let (code, stderr) = d.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{stderr}");
    let j = q.job(running);
    assert_eq!(j["state"], "cancelled", "{j:#}");
    assert!(
        j["done_bytes"].as_u64().unwrap() < 32 * MIB,
        "the job ended before the cancel: {j:#}"
    );
    // Nothing that looks like a disk, and no partial data or mark either.
    let left = listing(&q.root().join("restored"));
    assert!(left.is_empty(), "a cancelled job left {left:?}");
    // Cancelled: nothing left to cancel, and --follow ends with 3.
    q.queue("cancel", &[&running.to_string()])
        .expect_code(EXIT_USAGE);
    q.queue("log", &[&running.to_string(), "--follow"])
        .expect_code(EXIT_OTHER);
    assert!(!q.restored("other.vmdk").exists());
}

#[test]
fn purge_forgets_finished_jobs_and_their_logs_only() {
    let q = Queue::new();
    let v = vm(q.root(), "p", "p", 4, 2);
    let done = q.submit(&v.delta, "done.vmdk", &[]);
    let cancelled = q.submit(&v.delta, "cancelled.vmdk", &[]);
    q.queue("cancel", &[&cancelled.to_string()]).success();
    q.run_until_idle(&[]);
    let log = PathBuf::from(q.job(done)["log"].as_str().unwrap().to_string());
    assert!(log.is_file());
    let waiting = q.submit(&v.delta, "waiting.vmdk", &[]);
    // Jobs a day old only: none yet.
    let out = q.queue("purge", &["--older-than", "1"]).success();
    assert!(
        out.stdout_text().contains("purged 0"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(q.jobs().len(), 3);
    let out = q.queue("purge", &[]).success();
    assert!(
        out.stdout_text().contains("purged 2"),
        "{}",
        out.stdout_text()
    );
    let left: Vec<i64> = q.jobs().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(left, vec![waiting]);
    assert!(!log.exists(), "purge left the log {}", log.display());
    q.queue("log", &[&done.to_string()]).expect_code(EXIT_USAGE);
    // The restored disk is the admin's: purge does not touch it.
    q.assert_restored("done", &v);
}

#[test]
fn log_follow_ends_with_the_job_and_its_exit_code() {
    let q = Queue::new();
    let v = vm(q.root(), "f", "f", 16, 3);
    let good = q.submit(&v.delta, "good.vmdk", &[]);
    // A second copy of the backup, damaged in a changed block after
    // submission: the job fails on integrity when it runs.
    let bad_dir = q.root().join("bad");
    fs::create_dir(&bad_dir).unwrap();
    for name in ["f.full.gz", "f-1.sdar"] {
        fs::copy(q.root().join("backups").join(name), bad_dir.join(name)).unwrap();
    }
    let bad = q.submit(&bad_dir.join("f-1.sdar"), "bad.vmdk", &[]);
    let bad_delta = bad_dir.join("f-1.sdar");
    let member = delta_layout(&bad_delta)
        .members
        .into_iter()
        .rfind(|m| m.len > 0)
        .expect("the delta stores no block");
    flip_byte(&bad_delta, member.offset + member.len / 2);
    let cat = q.catalog.to_str().unwrap().to_string();
    let follow = |id: i64| {
        Follower(Some(
            Command::new(SDAR)
                .args([
                    "queue",
                    "log",
                    "--catalog",
                    &cat,
                    &id.to_string(),
                    "--follow",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    };
    let good_log = follow(good);
    let bad_log = follow(bad);
    let _d = q.daemon(&["--until-idle", "--max-rate", "8M"]);
    let out = good_log.output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(&format!("job {good}: run 1 by daemon")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Delta: ") && l.contains(" MiB of 16 MiB")),
        "no progress line in the log:\n{text}"
    );
    assert!(lines.last().unwrap().contains("done (exit 0)"), "{text}");
    q.assert_restored("good", &v);
    let out = bad_log.output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(EXIT_INTEGRITY), "{text}");
    assert!(text.contains("failed (exit 1)"), "{text}");
    let j = q.job(bad);
    assert_eq!(
        (&j["state"], &j["exit_code"]),
        (&"failed".into(), &1.into())
    );
    assert!(disks_in(&q.root().join("restored"))
        .iter()
        .all(|n| n.starts_with("good")));
}

#[test]
fn two_jobs_to_one_destination_never_run_at_once() {
    let q = Queue::new();
    let a = vm(q.root(), "a", "a", 16, 4);
    let b = vm(q.root(), "b", "b", 16, 5);
    let first = q.submit(&a.delta, "same.vmdk", &[]);
    let second = q.submit(&b.delta, "same.vmdk", &["--force"]);
    let other = q.submit(&a.delta, "other.vmdk", &[]);
    let d = q.daemon(&["--until-idle", "--jobs", "4", "--max-rate", "16M"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut both_seen = false;
    loop {
        let jobs = q.jobs();
        let running: Vec<i64> = jobs
            .iter()
            .filter(|j| j["state"] == "running")
            .map(|j| j["id"].as_i64().unwrap())
            .collect();
        assert!(
            !(running.contains(&first) && running.contains(&second)),
            "jobs {first} and {second} run at once to one destination"
        );
        both_seen |= running.contains(&first) && running.contains(&other);
        if jobs
            .iter()
            .all(|j| j["state"] == "done" || j["state"] == "failed")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not end: {jobs:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = d.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        both_seen,
        "another destination's job did not run beside the first"
    );
    for id in [first, second, other] {
        let j = q.job(id);
        assert_eq!(j["state"], "done", "{j:#}");
    }
    // The second ran after the first, and replaced its disk.
    let (f, s) = (q.job(first), q.job(second));
    assert!(
        s["started_at"].as_i64() >= f["finished_at"].as_i64(),
        "{f:#} {s:#}"
    );
    q.assert_restored("same", &b);
    q.assert_restored("other", &a);
}

#[test]
fn kill_9_of_the_daemon_mid_job_then_a_new_daemon_ends_with_the_same_disk() {
    let q = Queue::new();
    let v = vm(q.root(), "k", "k", 32, 6);
    let id = q.submit(&v.delta, "k.vmdk", &["--threads", "1"]);
    let d = q.daemon(&["--max-rate", "8M"]);
    q.wait_for(id, "got a quarter of the way", |j| {
        j["done_bytes"]
            .as_u64()
            .is_some_and(|n| (8 * MIB..24 * MIB).contains(&n))
    });
    d.signal(libc::SIGKILL);
    let (code, _) = d.wait(Duration::from_secs(10));
    assert_eq!(code, None, "the daemon was not killed");
    let j = q.job(id);
    assert_eq!(j["state"], "running", "{j:#}");
    // No disk yet: only the hidden partial data and its mark.
    let restored = q.root().join("restored");
    assert!(disks_in(&restored).is_empty(), "{:?}", listing(&restored));
    assert!(listing(&restored)
        .iter()
        .any(|n| n.ends_with(".sdar-partial")));
    let stderr = q.run_until_idle(&[]);
    assert!(stderr.contains("died running job(s)"), "{stderr}");
    let j = q.job(id);
    assert_eq!(
        (&j["state"], &j["runs"]),
        (&"done".into(), &2.into()),
        "{j:#}"
    );
    q.assert_restored("k", &v);
    let log = q.log(id);
    assert!(log.contains("--resume"), "{log}");
    assert!(
        log.contains("resuming the interrupted restore"),
        "the second run did not resume:\n{log}"
    );
    assert!(
        log.contains("already in place (read back and proven)"),
        "{log}"
    );
    assert_eq!(listing(&restored), vec!["k-flat.vmdk", "k.vmdk"]);
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_the_job_resumes_later() {
    let q = Queue::new();
    let v = vm(q.root(), "t", "t", 32, 7);
    let id = q.submit(&v.delta, "t.vmdk", &[]);
    let d = q.daemon(&["--max-rate", "8M"]);
    q.wait_for(id, "got under way", |j| {
        j["done_bytes"].as_u64().is_some_and(|n| n >= 4 * MIB)
    });
    d.signal(libc::SIGTERM);
    let (code, stderr) = d.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    let j = q.job(id);
    assert_eq!(j["state"], "waiting", "{j:#}");
    assert!(disks_in(&q.root().join("restored")).is_empty());
    q.run_until_idle(&[]);
    assert_eq!(q.job(id)["state"], "done");
    q.assert_restored("t", &v);
    assert!(q.log(id).contains("resuming the interrupted restore"));
    // The daemons' lock files went with them.
    let folder = PathBuf::from(format!("{}.queue", q.catalog.display()));
    let locks: Vec<String> = listing(&folder)
        .into_iter()
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(locks.is_empty(), "{locks:?}");
}

#[test]
fn two_daemons_never_run_one_job_twice() {
    let q = Queue::new();
    let long = vm(q.root(), "long", "long", 24, 8);
    let small: Vec<Vm> = (0..3)
        .map(|i| vm(q.root(), &format!("s{i}"), &format!("s{i}"), 4, 20 + i))
        .collect();
    let long_id = q.submit(&long.delta, "long.vmdk", &[]);
    let a = q.daemon(&["--until-idle", "--jobs", "1", "--max-rate", "8M"]);
    q.wait_for(long_id, "started", |j| j["state"] == "running");
    let mut ids = vec![long_id];
    for (i, v) in small.iter().enumerate() {
        ids.push(q.submit(&v.delta, &format!("s{i}.vmdk"), &[]));
    }
    // The second daemon finds a job running under a live daemon: it is not
    // taken from it; the waiting ones are shared out.
    let b = q.daemon(&["--until-idle", "--jobs", "2"]);
    let c = q.daemon(&["--until-idle", "--jobs", "2"]);
    let mut stderr = String::new();
    for d in [a, b, c] {
        let (code, err) = d.wait(Duration::from_secs(40));
        assert_eq!(code, Some(0), "{err}");
        stderr += &err;
    }
    for id in &ids {
        let j = q.job(*id);
        assert_eq!(
            (&j["state"], &j["runs"]),
            (&"done".into(), &1.into()),
            "{j:#}"
        );
        let starts = stderr.matches(&format!("job {id} started")).count();
        assert_eq!(starts, 1, "job {id} started {starts} times:\n{stderr}");
        assert_eq!(q.log(*id).matches("by daemon").count(), 1);
    }
    q.assert_restored("long", &long);
    for (i, v) in small.iter().enumerate() {
        q.assert_restored(&format!("s{i}"), v);
    }
}

#[test]
fn bad_input_is_refused_at_once_and_hostile_names_are_escaped() {
    let q = Queue::new();
    let hostile = "evil\u{1b}]0;pwned\u{7}\u{202e}vm";
    let v = vm(q.root(), "h", hostile, 4, 9);
    let delta = v.delta.to_str().unwrap();
    // The restore's own parser, at submission: usage errors, nothing queued.
    for args in [
        vec![delta, "--to", "restored/x.vmdk", "--bogus"],
        vec![delta, "--to", "restored/x.vmdk", "--full", "-"],
        vec![delta],
        vec![delta, "--to", "restored/x.vmdk", "--threads", "many"],
        vec!["--vm", "h", delta, "--to", "restored/x.vmdk"],
    ] {
        q.queue("submit", &args).expect_code(EXIT_USAGE);
    }
    let out = q
        .queue("submit", &["missing.sdar", "--to", "restored/x.vmdk"])
        .expect_code(EXIT_OTHER);
    assert!(out.stderr.contains("missing.sdar"), "{}", out.stderr);
    assert!(q.jobs().is_empty());
    for sub in ["log", "cancel"] {
        let out = q.queue(sub, &["42"]).expect_code(EXIT_USAGE);
        assert!(out.stderr.contains("no job 42"), "{}", out.stderr);
    }
    for args in [
        vec!["--jobs", "0"],
        vec!["--replicate-every", "5x"],
        vec!["--max-rate", "1"],
    ] {
        let d = q.daemon(&args);
        let (code, err) = d.wait(Duration::from_secs(10));
        assert_eq!(code, Some(EXIT_USAGE), "{args:?}: {err}");
    }
    // The hostile VM name, from the backup's metadata, never reaches the
    // terminal as it is.
    let id = q.submit(&v.delta, "h.vmdk", &[]);
    let list = q.queue("list", &[]).success();
    let text = list.stdout_text();
    assert!(
        text.contains("evil\\e]0;pwned\\u{0007}\\u{202E}vm"),
        "{text}"
    );
    let json = q.queue("list", &["--json"]).success().stdout_text();
    for shown in [&text, &json] {
        assert!(
            !shown.contains(['\u{1b}', '\u{7}', '\u{202e}']),
            "a raw control character was printed: {shown:?}"
        );
    }
    assert_eq!(q.job(id)["vm_name"], hostile, "JSON keeps the name itself");
    // JSON from submit too.
    let out = q
        .queue("submit", &["--json", delta, "--to", "restored/h2.vmdk"])
        .success();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["state"], "waiting");
    assert_eq!(doc["vm_name"], hostile);
    q.run_until_idle(&["--jobs", "2"]);
    q.assert_restored("h", &v);
    q.assert_restored("h2", &v);
    assert!(!q.log(id).contains('\u{1b}'));
}

#[test]
fn the_catalog_from_the_environment_and_the_vm_form() {
    let q = Queue::new();
    let v = vm(q.root(), "crm", "CRM", 4, 11);
    sdar(
        q.root(),
        &["index", "--catalog", q.catalog.to_str().unwrap(), "backups"],
    )
    .success();
    let out = run_command(
        "sdar queue submit --vm CRM".into(),
        Command::new(SDAR)
            .args([
                "queue",
                "submit",
                "--vm",
                "CRM",
                "--to",
                "restored/crm.vmdk",
            ])
            .env("SDAR_CATALOG", &q.catalog)
            .current_dir(q.root()),
    )
    .success();
    assert_eq!(out.stdout_text().trim(), "queued job 1");
    // `--catalog` among the restore's options names the queue too.
    let cat = q.catalog.to_str().unwrap();
    let out = sdar(
        q.root(),
        &[
            "queue",
            "submit",
            "--vm",
            "CRM",
            "--to",
            "restored/crm2.vmdk",
            "--catalog",
            cat,
        ],
    )
    .success();
    assert_eq!(out.stdout_text().trim(), "queued job 2");
    let j = q.job(1);
    assert_eq!(j["vm_name"], "CRM");
    assert!(
        j["full"].as_str().unwrap().ends_with("backups/crm.full.gz"),
        "the catalog's full is recorded: {j:#}"
    );
    q.run_until_idle(&[]);
    q.assert_restored("crm", &v);
    q.assert_restored("crm2", &v);
}

/// A daemon killed after the restore ended but before the job was recorded
/// done leaves the finished disk, and the job running in the catalog. The
/// next daemon must not fail it ("already exists"): it proves the disk is
/// the backup's and records the job done; a disk that is not the backup's
/// is never taken for it.
#[test]
fn kill_9_right_before_the_job_is_recorded_done_ends_done() {
    let q = Queue::new();
    let v = vm(q.root(), "e", "e", 4, 8);
    let id = q.submit(&v.delta, "e.vmdk", &[]);
    q.run_until_idle(&[]);
    q.assert_restored("e", &v);
    // What `kill -9` at that instant leaves: the job running, by a daemon
    // whose lock file nobody holds.
    let dead = "1-2-0";
    let lock =
        PathBuf::from(format!("{}.queue", q.catalog.display())).join(format!("daemon-{dead}.lock"));
    let back_to_running = || {
        fs::write(&lock, b"").unwrap();
        let db = rusqlite::Connection::open(&q.catalog).unwrap();
        db.execute(
            "UPDATE jobs SET state = 'running', runner = ?1, exit_code = NULL, \
             finished_at = NULL, message = NULL WHERE id = ?2",
            rusqlite::params![dead, id],
        )
        .unwrap();
    };
    back_to_running();
    let stderr = q.run_until_idle(&[]);
    assert!(stderr.contains("died running job(s)"), "{stderr}");
    let j = q.job(id);
    assert_eq!(j["state"], "done", "{j:#}\n{stderr}\n{}", q.log(id));
    q.assert_restored("e", &v);
    assert!(q.log(id).contains("by an earlier run of this job"));
    // The same, with a disk at the destination that is not the backup's:
    // refused, and left alone.
    let flat = q.restored("e-flat.vmdk");
    let mut bytes = fs::read(&flat).unwrap();
    bytes[1000] ^= 1;
    fs::write(&flat, &bytes).unwrap();
    back_to_running();
    q.run_until_idle(&[]);
    let j = q.job(id);
    assert_eq!(
        (&j["state"], &j["exit_code"]),
        (&"failed".into(), &2.into()),
        "{j:#}"
    );
    assert_eq!(
        fs::read(&flat).unwrap(),
        bytes,
        "the disk there was touched"
    );
}

/// An archive replaced after its job was queued (another VM's delta renamed
/// over it) is refused with exit 1 and nothing written: the job restores
/// the backup it was submitted for, or nothing. One deleted fails clearly.
#[test]
fn an_archive_replaced_or_deleted_after_submission_is_never_restored() {
    let q = Queue::new();
    let a = vm(q.root(), "ra", "ra", 4, 9);
    let b = vm(q.root(), "rb", "rb", 4, 10);
    let replaced = q.submit(&a.delta, "ra.vmdk", &[]);
    let deleted = q.submit(&b.delta, "rb.vmdk", &[]);
    fs::rename(&b.delta, &a.delta).unwrap();
    q.run_until_idle(&[]);
    let j = q.job(replaced);
    assert_eq!(
        (&j["state"], &j["exit_code"]),
        (&"failed".into(), &1.into()),
        "{j:#}"
    );
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("not the backup this job was submitted for"),
        "{message}"
    );
    let j = q.job(deleted);
    assert_eq!(
        (&j["state"], &j["exit_code"]),
        (&"failed".into(), &3.into()),
        "{j:#}"
    );
    assert!(
        j["message"].as_str().unwrap().contains("No such file"),
        "{j:#}"
    );
    assert!(listing(&q.root().join("restored")).is_empty());
}

/// `sdar queue log --follow` of a job whose daemon is killed says so (the
/// job stays running in the catalog until a daemon takes it back), then
/// follows the run of the next daemon to its end.
#[test]
fn log_follow_says_when_the_daemon_died_and_follows_the_next_one() {
    let q = Queue::new();
    let v = vm(q.root(), "w", "w", 32, 11);
    let id = q.submit(&v.delta, "w.vmdk", &["--threads", "1"]);
    let d = q.daemon(&["--max-rate", "8M"]);
    q.wait_for(id, "started", |j| {
        j["done_bytes"].as_u64().is_some_and(|n| n > 0)
    });
    let err_path = q.root().join("follow.err");
    let follower = Follower(Some(
        Command::new(SDAR)
            .args(["queue", "log", &id.to_string(), "--follow", "--catalog"])
            .arg(&q.catalog)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    ));
    d.signal(libc::SIGKILL);
    let _ = d.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&err_path).unwrap().contains("died") {
        assert!(
            Instant::now() < deadline,
            "the follower never said its daemon died: {:?}",
            fs::read_to_string(&err_path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    q.run_until_idle(&[]);
    let out = follower.output();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("job {id}: done (exit 0)")), "{text}");
    q.assert_restored("w", &v);
}

/// A purged job's id is never given again: `sdar queue cancel N` or
/// `queue log N` kept by a script never reaches another job.
#[test]
fn ids_of_purged_jobs_are_never_given_again() {
    let q = Queue::new();
    let v = vm(q.root(), "p", "p", 1, 12);
    let first = q.submit(&v.delta, "p1.vmdk", &[]);
    let second = q.submit(&v.delta, "p2.vmdk", &[]);
    q.run_until_idle(&[]);
    q.queue("purge", &[]).success();
    q.queue("purge", &[]).success();
    let third = q.submit(&v.delta, "p3.vmdk", &[]);
    assert!(third > second && second > first, "{first} {second} {third}");
    q.queue("cancel", &[&second.to_string()]).expect_code(2);
    assert_eq!(q.job(third)["state"], "waiting");
}

/// The queue's own files are never a destination, not even with --force:
/// refused at submission (exit 2), and by the daemon when a link to the
/// catalog is put at the destination after the job was queued.
#[test]
fn the_catalog_and_the_queue_folder_are_never_restored_over() {
    let q = Queue::new();
    let v = vm(q.root(), "o", "o", 1, 13);
    let first = q.submit(&v.delta, "o.vmdk", &[]);
    q.run_until_idle(&[]);
    let delta = v.delta.to_str().unwrap();
    let cat = q.catalog.to_str().unwrap();
    let log = format!("{cat}.queue/job-{first}.log");
    for to in [cat, &log, &format!("{cat}.queue")] {
        let out = q
            .queue("submit", &[delta, "--to", to, "--raw", "--force"])
            .expect_code(2);
        assert!(
            out.stderr.contains("the queue's own catalog"),
            "{}",
            out.stderr
        );
    }
    let late = q.submit(&v.delta, "late.img", &["--raw", "--force"]);
    std::os::unix::fs::symlink(&q.catalog, q.restored("late.img")).unwrap();
    q.run_until_idle(&[]);
    let j = q.job(late);
    assert_eq!(
        (&j["state"], &j["exit_code"]),
        (&"failed".into(), &2.into()),
        "{j:#}"
    );
    let after = fs::read(&q.catalog).unwrap();
    assert!(
        after.starts_with(b"SQLite format 3\0"),
        "the catalog was overwritten"
    );
    // Still the queue's catalog, its first job and log in it.
    q.log(first);
}

/// Hostile values for the daemon's flags end with a usage error, never a
/// panic (a huge --replicate-every overflowed the clock).
#[test]
fn the_daemons_flags_refuse_hostile_values() {
    let q = Queue::new();
    let cat = q.catalog.to_str().unwrap();
    for bad in [
        ["--replicate-every", "18446744073709551615"],
        ["--replicate-every", "99999999999999d"],
        ["--jobs", "0"],
        ["--max-rate", "1"],
    ] {
        let mut args = vec!["daemon", "--catalog", cat, "--until-idle"];
        args.extend(bad);
        let out = sdar(q.root(), &args).expect_code(2);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn a_backup_or_a_device_as_destination_is_refused_at_submission() {
    let q = Queue::new();
    let a = vm(q.root(), "a", "A", 1, 71);
    let full = q.root().join("backups/a.full.gz");
    let (d, f) = (a.delta.to_str().unwrap(), full.to_str().unwrap());
    // A backup, even through a link and with --force: never a destination.
    let link = q.root().join("restored/link.img");
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&full, &link).unwrap();
    let before = fs::read(&full).unwrap();
    for to in [f, link.to_str().unwrap()] {
        let out = q.queue("submit", &[d, "--to", to, "--raw", "--force"]);
        assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
        assert!(out.stderr.contains("never overwritten"), "{}", out.stderr);
    }
    // A block device without --force.
    let out = q.queue("submit", &[d, "--to", "/dev/null", "--raw"]);
    assert_ne!(out.code, EXIT_OK, "{}", out.stderr);
    assert!(q.jobs().is_empty(), "nothing queued: {:?}", q.jobs());
    assert_eq!(fs::read(&full).unwrap(), before);
}
