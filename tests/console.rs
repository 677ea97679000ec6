//! `sdar menu`, the console over the catalog, driven through a real
//! pseudo-terminal as an operator would: a whole restore by VM name run
//! now and checked byte for byte, the same walk queued instead, a restore
//! by disk name of a delta whose full is missing from the catalog (a wrong
//! full refused, the right one typed), the filter and the page keys on a
//! long list, `0` back and `q` out at every step writing nothing, a hostile
//! VM name shown escaped and a safe name suggested, and no console without
//! a terminal.

mod common;

use common::pty::{strip_ansi, Pty};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Small disks: what is tested is the console, not the restore engine.
const DISK: u64 = 1 << 20;

/// Noon UTC of 2026-11-0N.
fn day(n: i64) -> i64 {
    1_793_491_200 + (n - 1) * 86_400 + 12 * 3600
}

const CRM_UUID: &str = "42 0a 1b 2c 3d 4e 5f 60-71 82 93 a4 b5 c6 d7 e8";
const WEB_UUID: &str = "42 11 22 33 44 55 66 77-88 99 aa bb cc dd ee ff";
const EVIL_UUID: &str = "42 66 66 66 66 66 66 66-66 66 66 66 66 66 66 66";
const MANY_UUID: &str = "42 77 77 77 77 77 77 77-77 77 77 77 77 77 77 77";
/// A VM name that would set the terminal's title and reverse the text.
const EVIL_VM: &str = "\u{1b}]0;pwned\u{7}evil\u{202e}gpj.exe";
/// How the console must show it.
const EVIL_VM_SHOWN: &str = "\\e]0;pwned\\u{0007}evil\\u{202E}gpj.exe";
/// A disk name that starts with a dot and holds an escape sequence.
const EVIL_DISK: &str = ".\u{1b}[31mevil.img";

const MAIN: &str = "Choose [1]: ";
const MAIN_AFTER: &str = "Choose [q]: ";
const SUMMARY: &str = "Run it now or queue it [1]: ";
const LEFT: &str = "Left the console: nothing was written.";

/// Backups of three VMs in two targets, a catalog of them, and `out/`:
/// - crm (one disk, crm.img, 0:0): a full on day 1 (t1), deltas on days 2
///   and 3;
/// - web (two disks, web0.img 0:0 and web1.img 0:1): fulls on day 1 (t2),
///   deltas on day 2; and web1 again on day 4, a delta whose full (made on
///   day 3) is in `elsewhere/`, which is not indexed;
/// - the hostile VM: a full on day 2 (t1).
///
/// `sdar full` writes each full's companion delta beside it.
struct Catalog {
    _dir: tempfile::TempDir,
    root: PathBuf,
    catalog: PathBuf,
    /// crm.img as the day-3 delta holds it.
    crm_3: Vec<u8>,
    /// web1.img as the day-4 delta holds it.
    web1_4: Vec<u8>,
}

impl Catalog {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// `sdar menu --catalog CAT` on a terminal, in `out/`.
    fn console(&self) -> Console {
        let mut cmd = Command::new(SDAR);
        cmd.arg("menu")
            .arg("--catalog")
            .arg(&self.catalog)
            .current_dir(self.out())
            .env_remove("SDAR_CATALOG");
        let mut c = Console {
            pty: Pty::spawn(cmd),
        };
        c.expect(&format!("sdar console: catalog {}", self.catalog.display()));
        c
    }

    fn sdar(&self, args: &[&str]) -> Outcome {
        sdar(&self.root, args)
    }
}

/// Runs `sdar ARGS` in `dir` with `SOURCE_DATE_EPOCH` set to `when`.
fn sdar_at(dir: &Path, when: i64, args: &[&str]) {
    let mut cmd = Command::new(SDAR);
    cmd.args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", when.to_string());
    run_command(format!("sdar {}", args.join(" ")), &mut cmd).success();
}

/// `sdar full DISK` of VM `vm` at `when` into `out`.
fn full(dir: &Path, when: i64, disk: &str, vm: (&str, &str, &str), out: &str) {
    let (name, uuid, scsi) = vm;
    sdar_at(
        dir,
        when,
        &[
            "full",
            disk,
            "--vm-name",
            name,
            "--vm-uuid",
            uuid,
            "--scsi-id",
            scsi,
            "-o",
            out,
        ],
    );
}

/// Changes `disk` (as a VM would), then `sdar delta` of it against `base`.
fn delta(dir: &Path, when: i64, disk: &str, vm: (&str, &str, &str), base: &str, out: &str) {
    sdar(
        dir,
        &[
            "sample-change",
            disk,
            "--percent",
            "20",
            "--seed",
            &when.to_string(),
        ],
    )
    .success();
    let (name, uuid, scsi) = vm;
    sdar_at(
        dir,
        when,
        &[
            "delta",
            disk,
            "--full",
            base,
            "--vm-name",
            name,
            "--vm-uuid",
            uuid,
            "--scsi-id",
            scsi,
            "-o",
            out,
        ],
    );
}

fn catalog() -> Catalog {
    let dir = scratch();
    let root = fs::canonicalize(dir.path()).unwrap();
    for sub in ["t1", "t2", "elsewhere", "out"] {
        fs::create_dir(root.join(sub)).unwrap();
    }
    let r = root.as_path();
    let crm = ("crm", CRM_UUID, "0:0");
    sample_disk(r, "crm.img", DISK, 1);
    full(r, day(1), "crm.img", crm, "t1/crm-1.full.gz");
    delta(
        r,
        day(2),
        "crm.img",
        crm,
        "t1/crm-1.full.gz",
        "t1/crm-2.sdar",
    );
    delta(
        r,
        day(3),
        "crm.img",
        crm,
        "t1/crm-1.full.gz",
        "t1/crm-3.sdar",
    );
    let crm_3 = fs::read(root.join("crm.img")).unwrap();

    let web0 = ("web", WEB_UUID, "0:0");
    let web1 = ("web", WEB_UUID, "0:1");
    sample_disk(r, "web0.img", DISK, 2);
    sample_disk(r, "web1.img", DISK, 3);
    full(r, day(1), "web0.img", web0, "t2/web0-1.full.gz");
    full(r, day(1), "web1.img", web1, "t2/web1-1.full.gz");
    delta(
        r,
        day(2),
        "web0.img",
        web0,
        "t2/web0-1.full.gz",
        "t2/web0-2.sdar",
    );
    delta(
        r,
        day(2),
        "web1.img",
        web1,
        "t2/web1-1.full.gz",
        "t2/web1-2.sdar",
    );
    full(r, day(3), "web1.img", web1, "elsewhere/web1-3.full.gz");
    delta(
        r,
        day(4),
        "web1.img",
        web1,
        "elsewhere/web1-3.full.gz",
        "t2/web1-4.sdar",
    );
    let web1_4 = fs::read(root.join("web1.img")).unwrap();

    sample_disk(r, EVIL_DISK, DISK, 4);
    full(
        r,
        day(2),
        EVIL_DISK,
        (EVIL_VM, EVIL_UUID, "0:0"),
        "t1/evil.full.gz",
    );

    // Named like a backup, but not one: not listed, but counted.
    fs::write(root.join("t2/junk.full.gz"), b"not a backup\n").unwrap();
    let catalog = root.join("catalog.sqlite");
    let cat = catalog.display().to_string();
    sdar(r, &["index", "t1", "t2", "--catalog", &cat]).success();
    Catalog {
        _dir: dir,
        root,
        catalog,
        crm_3,
        web1_4,
    }
}

/// A console session on a terminal.
struct Console {
    pty: Pty,
}

impl Console {
    /// Waits for `text`; returns what the terminal showed up to it.
    fn expect(&mut self, text: &str) -> String {
        strip_ansi(&self.pty.expect(text, TIMEOUT))
    }

    /// Waits for `prompt`, then types `keys` and Enter. Returns what the
    /// terminal showed since the last answer, the prompt included.
    fn answer(&mut self, prompt: &str, keys: &str) -> String {
        let shown = self.expect(prompt);
        self.pty.send(&format!("{keys}\r"));
        shown
    }

    /// Waits for the console to exit.
    fn finish(mut self) -> Finished {
        let status = self.pty.wait(TIMEOUT);
        Finished {
            status,
            raw: self.pty.transcript(),
        }
    }
}

struct Finished {
    status: ExitStatus,
    /// Everything the terminal received, escape sequences included.
    raw: String,
}

impl Finished {
    #[track_caller]
    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "the console exited with {} instead of {code}; it showed:\n{}",
            self.status,
            strip_ansi(&self.raw)
        );
    }
}

/// The line of `screen` that contains `text`.
#[track_caller]
fn line_with<'a>(screen: &'a str, text: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in:\n{screen}"))
}

/// The number a list gives the line that contains `text`.
#[track_caller]
fn number_of(screen: &str, text: &str) -> String {
    let line = line_with(screen, text);
    let (n, _) = line
        .trim_start()
        .split_once(") ")
        .unwrap_or_else(|| panic!("not a numbered line: {line:?}"));
    n.to_string()
}

/// The walk to crm's day-3 backup, up to the destination, Enter there
/// (its default).
fn walk_to_crm_destination(c: &mut Console, cat: &Catalog) {
    let screen = c.answer(MAIN, "");
    for line in [
        "    1) Restore a disk, choosing by VM name\n",
        "    2) Restore a disk, choosing by disk name\n",
        "    3) The restore queue\n",
        "    4) A job's log\n",
        "    q) Quit\n",
    ] {
        assert!(screen.contains(line), "no {line:?} in:\n{screen}");
    }
    let screen = c.expect("Choose the VM [1]: ");
    let crm = number_of(&screen, ") crm ");
    assert!(
        line_with(&screen, ") crm ").ends_with(&format!(
            "  UUID {CRM_UUID}  4 backups, 2026-11-01 to 2026-11-03"
        )),
        "{screen}"
    );
    c.pty.send(&format!("{crm}\r"));
    let screen = c.answer("Choose the day [1]: ", "");
    let days: Vec<&str> = screen.lines().filter(|l| l.contains(") 2026-")).collect();
    assert_eq!(days.len(), 3, "{screen}");
    assert!(days[0].ends_with("1) 2026-11-03  1 backup (1 delta archive)"));
    assert!(days[2].ends_with("3) 2026-11-01  2 backups (1 delta archive)"));
    assert!(screen.contains("    a) every day\n"), "{screen}");
    let screen = c.answer("Choose the backup [1]: ", "");
    let listed = line_with(&screen, "crm-3.sdar");
    assert!(
        listed.starts_with("    1) 2026-11-03 12:00:00  Delta")
            && listed.contains("  0:0   crm.img  ")
            && listed.ends_with(&format!("{} / crm-3.sdar", cat.path("t1").display())),
        "{listed}"
    );
    let screen = c.answer("Choose the full [1]: ", "");
    let full = cat.path("t1/crm-1.full.gz").display().to_string();
    assert!(
        line_with(&screen, "1) ").starts_with(&format!("    1) * {full}  "))
            && line_with(&screen, "1) ").ends_with("  matches"),
        "{screen}"
    );
    let dest = cat.out().join("crm.img.vmdk").display().to_string();
    c.answer(&format!("Restore to [{dest}]: "), "");
}

/// The walk to crm's day-3 backup, up to the summary's question; returns
/// the summary.
fn walk_to_crm_summary(c: &mut Console, cat: &Catalog) -> String {
    walk_to_crm_destination(c, cat);
    let full = cat.path("t1/crm-1.full.gz").display().to_string();
    let dest = cat.out().join("crm.img.vmdk").display().to_string();
    let screen = c.expect(SUMMARY);
    for line in [
        format!("  VM:           crm (UUID {CRM_UUID})\n"),
        "  Disk:         crm.img, SCSI 0:0, backed up 2026-11-03 12:00:00 UTC\n".to_string(),
        format!("  Archive:      {}\n", cat.path("t1/crm-3.sdar").display()),
        format!("  Full:         {full}\n"),
        format!(
            "  Destination:  {dest} and {}\n",
            cat.out().join("crm.img-flat.vmdk").display()
        ),
        "    1) Run the restore now, here\n".to_string(),
        "    2) Submit it to the restore queue (`sdar daemon` runs it)\n".to_string(),
    ] {
        assert!(screen.contains(&line), "no {line:?} in:\n{screen}");
    }
    screen
}

/// By VM name, with Enter at every step: the newest day, its backup, the
/// full marked `*`, the suggested name; run now, the disk comes back byte
/// for byte; Enter then leaves with status 0.
#[test]
fn restore_by_vm_name_runs_now_and_gives_back_the_disk() {
    let cat = catalog();
    let mut c = cat.console();
    walk_to_crm_summary(&mut c, &cat);
    c.pty.send("\r");
    let dest = cat.out().join("crm.img.vmdk").display().to_string();
    let screen = c.answer(MAIN_AFTER, "");
    assert!(
        screen.contains(&format!("restored {dest} (every block verified")),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("Done. The disk is ready: {dest}\n")),
        "{screen}"
    );
    c.finish().assert_code(EXIT_OK);
    assert_eq!(listing(&cat.out()), ["crm.img-flat.vmdk", "crm.img.vmdk"]);
    assert_same_bytes(
        &fs::read(cat.out().join("crm.img-flat.vmdk")).unwrap(),
        &cat.crm_3,
        "the restored crm.img",
    );
}

/// An interrupted restore at the suggested name: the console offers to
/// resume it, says so in the summary, and the resumed restore gives back
/// the disk byte for byte (a block of garbage in the partial file
/// rewritten), leaving no partial file or mark behind.
#[test]
fn interrupted_restore_is_resumed() {
    let cat = catalog();
    let partial = cat.out().join(".crm.img-flat.vmdk.sdar-partial");
    let mut held = cat.crm_3[..cat.crm_3.len() / 2].to_vec();
    held[65_536..2 * 65_536].fill(0xa5);
    fs::write(&partial, &held).unwrap();
    let dest = cat.out().join("crm.img.vmdk");
    plant_restore_mark(&cat.path("t1/crm-3.sdar"), &dest, true, &partial, false);
    let mut c = cat.console();
    walk_to_crm_destination(&mut c, &cat);
    let screen = c.answer("Resume it? (No starts over) (Y/n): ", "");
    assert!(
        screen.contains(&format!(
            "An interrupted restore to {} was found (",
            dest.display()
        )),
        "{screen}"
    );
    let screen = c.answer(SUMMARY, "");
    assert!(
        screen.contains("  Resuming:     the interrupted restore there;"),
        "{screen}"
    );
    let screen = c.answer(MAIN_AFTER, "");
    assert!(
        screen.contains("already in place (read back and proven)"),
        "{screen}"
    );
    c.finish().assert_code(EXIT_OK);
    assert_eq!(listing(&cat.out()), ["crm.img-flat.vmdk", "crm.img.vmdk"]);
    assert_same_bytes(
        &fs::read(cat.out().join("crm.img-flat.vmdk")).unwrap(),
        &cat.crm_3,
        "the resumed crm.img",
    );
}

/// The same walk, queued: the job is in the catalog's queue with the
/// restore's arguments and nothing is written; the console shows it in the
/// queue and its log, and `sdar daemon` then restores the disk byte for
/// byte.
#[test]
fn restore_by_vm_name_submitted_to_the_queue() {
    let cat = catalog();
    let mut c = cat.console();
    walk_to_crm_summary(&mut c, &cat);
    c.pty.send("2\r");
    let dest = cat.out().join("crm.img.vmdk");
    let screen = c.answer(MAIN_AFTER, "3");
    assert!(
        screen.contains(&format!(
            "Submitted: job 1, to restore {}. `sdar daemon` runs it; `sdar queue list` shows it \
             and `sdar queue log 1` its log.\n",
            dest.display()
        )),
        "{screen}"
    );
    let screen = c.answer(MAIN_AFTER, "4");
    assert!(screen.contains("job 1  waiting\n"), "{screen}");
    assert!(screen.contains("via sdar menu\n"), "{screen}");
    assert!(screen.contains("    VM crm  disk crm.img\n"), "{screen}");
    assert!(
        screen.contains(&format!("    to      {}\n", dest.display())),
        "{screen}"
    );
    c.answer("Which job (its number in the queue) [1]: ", "");
    let screen = c.answer(MAIN_AFTER, "q");
    assert!(
        screen.contains("job 1 is waiting: it has no log yet"),
        "{screen}"
    );
    c.finish().assert_code(EXIT_OK);
    assert!(listing(&cat.out()).is_empty(), "nothing restored yet");

    let catalog = cat.catalog.display().to_string();
    let out = cat
        .sdar(&["queue", "list", "--json", "--catalog", &catalog])
        .success();
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    let text = |k: &str| job[k].as_str().unwrap_or_default().to_string();
    assert_eq!(job["id"], 1);
    assert_eq!(text("state"), "waiting");
    assert_eq!(
        text("archive"),
        cat.path("t1/crm-3.sdar").display().to_string()
    );
    assert_eq!(
        text("full"),
        cat.path("t1/crm-1.full.gz").display().to_string()
    );
    assert_eq!(text("destination"), dest.display().to_string());
    assert!(text("submitted_by").ends_with(" via sdar menu"), "{job}");

    cat.sdar(&["daemon", "--until-idle", "--catalog", &catalog])
        .success();
    assert_eq!(listing(&cat.out()), ["crm.img-flat.vmdk", "crm.img.vmdk"]);
    assert_same_bytes(
        &fs::read(cat.out().join("crm.img-flat.vmdk")).unwrap(),
        &cat.crm_3,
        "crm.img restored by the daemon",
    );
}

/// By disk name, filtered to web1: its day-4 delta's full is in no indexed
/// target, so the console says so and suggests typing its path; the full
/// of the same disk it lists is refused, by number and typed; the right
/// one typed restores the disk.
#[test]
fn restore_by_disk_name_with_its_full_typed() {
    let cat = catalog();
    let mut c = cat.console();
    c.answer(MAIN, "2");
    let screen = c.answer("Choose the disk [1]: ", "web1");
    assert!(
        line_with(&screen, "crm.img ").contains(&format!(
            "  SCSI 0:0  VM crm (UUID {CRM_UUID})  4 backups, 2026-11-01 to 2026-11-03"
        )),
        "{screen}"
    );
    let screen = c.answer("Choose the disk [1]: ", "");
    let listed: Vec<&str> = screen.lines().filter(|l| l.contains(") ")).collect();
    assert_eq!(listed.len(), 1, "only web1 after the filter:\n{screen}");
    assert!(
        listed[0].starts_with("    1) web1.img ")
            && listed[0].contains(&format!(
                "  SCSI 0:1  VM web (UUID {WEB_UUID})  4 backups, 2026-11-01 to 2026-11-04"
            )),
        "{screen}"
    );
    assert!(
        screen.contains("Showing the 1 lines with \"web1\" (/ shows them all)"),
        "{screen}"
    );
    c.answer("Choose the day [1]: ", "");
    let screen = c.answer("Choose the backup [1]: ", "");
    assert!(
        line_with(&screen, "web1-4.sdar").ends_with("  (no full found)"),
        "{screen}"
    );
    let screen = c.answer("Choose the full [p]: ", "1");
    assert!(
        screen.contains("warning: no full with that identity is in any indexed target"),
        "{screen}"
    );
    let wrong = cat.path("t2/web1-1.full.gz").display().to_string();
    assert!(
        line_with(&screen, &wrong).starts_with(&format!("    1)   {wrong}  "))
            && line_with(&screen, &wrong).contains("  does not match ("),
        "{screen}"
    );
    let screen = c.answer("Choose the full [p]: ", "p");
    assert!(
        screen.contains(&format!("Refused: {wrong} is not this backup's full")),
        "picked by number:\n{screen}"
    );
    c.answer("Path of the full image: ", &wrong);
    let screen = c.answer("Choose the full [p]: ", "");
    assert!(
        screen.contains(&format!("Refused: {wrong} is not this backup's full")),
        "typed:\n{screen}"
    );
    let right = cat.path("elsewhere/web1-3.full.gz").display().to_string();
    c.answer("Path of the full image: ", &right);
    let dest = cat.out().join("web1.img.vmdk").display().to_string();
    c.answer(&format!("Restore to [{dest}]: "), "");
    let screen = c.answer(SUMMARY, "1");
    assert!(
        screen.contains(&format!("  Full:         {right}\n")),
        "{screen}"
    );
    c.answer(MAIN_AFTER, "");
    c.finish().assert_code(EXIT_OK);
    assert_same_bytes(
        &fs::read(cat.out().join("web1.img-flat.vmdk")).unwrap(),
        &cat.web1_4,
        "the restored web1.img",
    );
}

/// The hostile VM: its name is shown escaped everywhere and reaches the
/// terminal as nothing it could act on; the name suggested for its disk
/// has no escape and does not start with a dot.
#[test]
fn hostile_names_are_shown_escaped_and_never_suggested_as_they_are() {
    let cat = catalog();
    let mut c = cat.console();
    c.answer(MAIN, "");
    let screen = c.expect("Choose the VM [1]: ");
    let evil = number_of(&screen, EVIL_VM_SHOWN);
    c.pty.send(&format!("{evil}\r"));
    c.answer("Choose the day [1]: ", "");
    let screen = c.answer("Choose the backup [1]: ", "");
    assert!(screen.contains("  .\\e[31mevil.img  "), "{screen}");
    c.answer("Choose the full [1]: ", "");
    let dest = cat.out().join("_[31mevil.img.vmdk").display().to_string();
    let screen = c.answer(&format!("Restore to [{dest}]: "), "");
    assert!(!screen.contains("Restore to [.") && !screen.contains("/."));
    let screen = c.answer(SUMMARY, "q");
    assert!(
        screen.contains(&format!("  VM:           {EVIL_VM_SHOWN} (UUID")),
        "{screen}"
    );
    let done = c.finish();
    done.assert_code(EXIT_OK);
    for raw in ["\u{1b}]0;", "\u{202e}", "\u{1b}[31m", "\u{7}"] {
        assert!(
            !done.raw.contains(raw),
            "{raw:?} reached the terminal:\n{}",
            done.raw
        );
    }
    assert!(listing(&cat.out()).is_empty());
}

/// A list longer than a page: 20 lines at a time, `b`/End to the bottom,
/// `t`/Home to the top, `n`/PgDn and `p`/PgUp by page; text narrows it,
/// `/` shows it all again.
#[test]
fn long_lists_page_jump_and_filter() {
    let cat = catalog();
    let r = cat.root.as_path();
    let many = ("many", MANY_UUID, "0:0");
    sample_disk(r, "many.img", 256 << 10, 9);
    full(r, day(1), "many.img", many, "t2/many.full.gz");
    for i in 0..20 {
        let when = day(1) + 60 * (i + 1);
        let name = format!("t2/many-{:02}.sdar", i + 1);
        delta(r, when, "many.img", many, "t2/many.full.gz", &name);
    }
    let cat_path = cat.catalog.display().to_string();
    cat.sdar(&["index", "--catalog", &cat_path, "t2"]).success();

    let mut c = cat.console();
    c.answer(MAIN, "");
    let screen = c.answer("Choose the VM [1]: ", "many");
    assert!(screen.contains(") crm "), "{screen}");
    c.answer("Choose the VM [1]: ", "");
    let screen = c.answer("Choose the day [1]: ", "a");
    assert!(
        screen.contains("1) 2026-11-01  22 backups (21 delta archives)"),
        "{screen}"
    );
    // Newest first: many-20 is line 1, the full and its companion 21 and 22.
    let page = |screen: &str| -> Vec<String> {
        screen
            .lines()
            .filter(|l| l.contains(") 2026-"))
            .map(|l| l.trim_start().split(')').next().unwrap().to_string())
            .collect()
    };
    let first: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    let last = vec!["21".to_string(), "22".to_string()];
    let prompt = "Choose the backup [1]: ";
    let screen = c.answer(prompt, "b");
    assert_eq!(page(&screen), first, "{screen}");
    assert!(
        line_with(&screen, " 1) ").contains("many-20.sdar"),
        "{screen}"
    );
    assert!(
        screen.contains("Page 1 of 2 (1-20 of 22): n/p or PgDn/PgUp"),
        "{screen}"
    );
    let screen = c.answer(prompt, "t");
    assert_eq!(page(&screen), last, "b: {screen}");
    assert!(screen.contains("Page 2 of 2 (21-22 of 22)"), "{screen}");
    assert!(
        line_with(&screen, "22) ").contains("many.full.gz"),
        "{screen}"
    );
    let screen = c.answer(prompt, "\u{1b}[F");
    assert_eq!(page(&screen), first, "t: {screen}");
    let screen = c.answer(prompt, "\u{1b}[H");
    assert_eq!(page(&screen), last, "End: {screen}");
    let screen = c.answer(prompt, "\u{1b}[6~");
    assert_eq!(page(&screen), first, "Home: {screen}");
    let screen = c.answer(prompt, "\u{1b}[5~");
    assert_eq!(page(&screen), last, "PgDn: {screen}");
    let screen = c.answer(prompt, "n");
    assert_eq!(page(&screen), first, "PgUp: {screen}");
    let screen = c.answer(prompt, "p");
    assert_eq!(page(&screen), last, "n: {screen}");
    let screen = c.answer(prompt, "many-1");
    assert_eq!(page(&screen), first, "p: {screen}");
    // many-10 to many-19, newest first.
    let screen = c.answer(prompt, "/");
    let lines: Vec<&str> = screen.lines().filter(|l| l.contains(") 2026-")).collect();
    assert_eq!(lines.len(), 10, "{screen}");
    assert!(lines[0].contains("1) ") && lines[0].contains("many-19.sdar"));
    assert!(lines[9].contains("10) ") && lines[9].contains("many-10.sdar"));
    assert!(
        screen.contains("Showing the 10 lines with \"many-1\""),
        "{screen}"
    );
    let screen = c.answer(prompt, "q");
    assert_eq!(page(&screen).len(), 20, "/ shows them all:\n{screen}");
    c.expect(LEFT);
    c.finish().assert_code(EXIT_OK);
    assert!(listing(&cat.out()).is_empty());
}

/// `0` goes back one step at a time, down to the main menu; `q` leaves
/// from the middle of a walk and from the last question; nothing is
/// written.
#[test]
fn back_and_quit_write_nothing() {
    let cat = catalog();
    let mut c = cat.console();
    c.answer(MAIN, "");
    c.answer("Choose the VM [1]: ", "crm");
    c.answer("Choose the VM [1]: ", "");
    c.answer("Choose the day [1]: ", "");
    c.answer("Choose the backup [1]: ", "");
    c.answer("Choose the full [1]: ", "");
    let dest = cat.out().join("crm.img.vmdk").display().to_string();
    c.answer(&format!("Restore to [{dest}]: "), "");
    c.answer(SUMMARY, "0");
    c.answer(&format!("Restore to [{dest}]: "), "..");
    c.answer("Choose the full [1]: ", "0");
    c.answer("Choose the backup [1]: ", "0");
    c.answer("Choose the day [1]: ", "0");
    let screen = c.answer("Choose the VM [1]: ", "0");
    assert!(screen.contains(") crm "), "the whole list again:\n{screen}");
    c.answer(MAIN, "2");
    c.answer("Choose the disk [1]: ", "");
    c.answer("Choose the day [1]: ", "q");
    c.expect(LEFT);
    c.finish().assert_code(EXIT_OK);

    let mut c = cat.console();
    walk_to_crm_summary(&mut c, &cat);
    c.pty.send("q\r");
    c.expect(LEFT);
    c.finish().assert_code(EXIT_OK);

    // An existing file, a dangling link and a device typed as the
    // destination: refused as they are, never turned into NAME.vmdk
    // beside them (`/dev/null` became `/dev/null.vmdk` before); `..` in a
    // typed folder is a folder like any other.
    let plain = cat.path("plain.img");
    fs::write(&plain, b"precious").unwrap();
    let dangling = cat.path("dangling.img");
    std::os::unix::fs::symlink(cat.path("nowhere/x.img"), &dangling).unwrap();
    let mut c = cat.console();
    c.answer(MAIN, "");
    c.answer("Choose the VM [1]: ", "crm");
    c.answer("Choose the VM [1]: ", "");
    c.answer("Choose the day [1]: ", "");
    c.answer("Choose the backup [1]: ", "");
    c.answer("Choose the full [1]: ", "");
    let prompt = format!("Restore to [{dest}]: ");
    for typed in [plain.clone(), dangling.clone(), PathBuf::from("/dev/null")] {
        c.answer(&prompt, typed.to_str().unwrap());
        c.expect(&format!(
            "{} exists and is not a folder; the console never replaces files",
            typed.display()
        ));
    }
    c.answer(&prompt, "../t1/..");
    let screen = c.answer(SUMMARY, "q");
    assert!(
        screen.contains(&format!(
            "  Destination:  {}/t1/../crm.img.vmdk and ",
            cat.out().join("..").display()
        )),
        "{screen}"
    );
    c.expect(LEFT);
    c.finish().assert_code(EXIT_OK);
    assert_eq!(fs::read(&plain).unwrap(), b"precious");
    assert!(!cat.path("plain.img.vmdk").exists() && !cat.path("nowhere").exists());

    // The end of input leaves too.
    let mut c = cat.console();
    c.answer(MAIN, "");
    c.expect("Choose the VM [1]: ");
    c.pty.send("\u{4}");
    c.finish().assert_code(EXIT_OK);
    assert!(listing(&cat.out()).is_empty());
}

/// `sdar` alone on a terminal opens the console (its catalog from
/// `SDAR_CATALOG`); without a terminal `sdar menu` refuses with status 2
/// and points to the commands for scripts.
#[test]
fn console_needs_a_terminal() {
    let cat = catalog();
    let mut cmd = Command::new(SDAR);
    cmd.current_dir(cat.out()).env("SDAR_CATALOG", &cat.catalog);
    let mut c = Console {
        pty: Pty::spawn(cmd),
    };
    c.expect(&format!("sdar console: catalog {}", cat.catalog.display()));
    let screen = c.answer(MAIN, "q");
    assert!(
        screen.contains("backups of 3 VMs in 2 targets."),
        "{screen}"
    );
    c.finish().assert_code(EXIT_OK);

    for stdin in ["null", "pipe"] {
        let mut cmd = Command::new(SDAR);
        cmd.args(["menu", "--catalog"])
            .arg(&cat.catalog)
            .current_dir(cat.out())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = if stdin == "null" {
            cmd.stdin(Stdio::null()).output().unwrap()
        } else {
            use std::io::Write;
            let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
            let _ = child.stdin.take().unwrap().write_all(b"\n1\n\n\n\n\n\n\n");
            child.wait_with_output().unwrap()
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{stdin}: {stderr}");
        assert!(
            stderr.contains("sdar menu needs a terminal")
                && stderr.contains("`sdar list`")
                && stderr.contains("`sdar restore --vm NAME --to DEST`"),
            "{stdin}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{stdin}");
    }
    // A terminal for input, a file for output (or a pipe that `head`
    // closes): refused too, before a question is asked (a closed pipe
    // used to end the console with a panic in the middle of a walk).
    let file = cat.path("menu.out");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" menu --catalog \"$1\" > \"$2\""])
        .arg(SDAR)
        .arg(&cat.catalog)
        .arg(&file)
        .current_dir(cat.out());
    let mut c = Console {
        pty: Pty::spawn(cmd),
    };
    c.expect("sdar menu needs a terminal: its standard output is not one");
    c.finish().assert_code(EXIT_USAGE);
    assert_eq!(fs::read(&file).unwrap(), b"");
    assert!(listing(&cat.out()).is_empty());
}
