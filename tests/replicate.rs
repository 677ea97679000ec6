//! `sdar replicate` end to end: esXpress `vmdks.auto` configs against a real
//! SQLite catalog of seeded backups made at chosen times (SOURCE_DATE_EPOCH
//! relative to now): the matching rules (exact UUID, `*`, `%`, SCSI `*`,
//! `00` and `0:0`, global and per-line USE_DAYS), lines that match nothing
//! or more than one disk, the restored log, a replica replaced only once
//! its successor is complete, the folder created, `--preload`, and hostile
//! configs and logs. Restores run through `sdar replicate --once`, which
//! runs `sdar daemon --until-idle`; each replica is compared byte for byte
//! with the disk as it was when its backup was made.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DAY: i64 = 86_400;

/// A scratch folder with a catalog, a backup target and the disks.
struct Site {
    dir: tempfile::TempDir,
    catalog: PathBuf,
    target: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = scratch();
        let target = dir.path().join("backups");
        fs::create_dir_all(&target).unwrap();
        fs::create_dir_all(dir.path().join("disks")).unwrap();
        Site {
            catalog: dir.path().join("state/catalog.sqlite"),
            target,
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `sdar` with this site's catalog (`--catalog` is not needed:
    /// `SDAR_CATALOG` names it) and `SOURCE_DATE_EPOCH` when given.
    fn run(&self, epoch: Option<i64>, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(SDAR);
        cmd.args(args)
            .current_dir(self.path())
            .env("SDAR_CATALOG", &self.catalog)
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(t) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", t.to_string());
        }
        run_command(format!("sdar {}", args.join(" ")), &mut cmd)
    }

    fn index(&self) {
        self.run(None, &["index", self.target.to_str().unwrap(), "-q"])
            .success();
    }

    fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn replicate(&self, config: &Path, more: &[&str]) -> Outcome {
        let mut args = vec!["replicate", "--config", config.to_str().unwrap()];
        args.extend(more);
        self.run(None, &args)
    }
}

/// One disk of a VM over time, and the disk's bytes at each backup.
struct Disk {
    vm: String,
    uuid: String,
    scsi: String,
    image: PathBuf,
    /// (backup file, the disk's bytes when it was made).
    backups: Vec<(PathBuf, Vec<u8>)>,
    seed: u64,
}

impl Disk {
    fn new(site: &Site, vm: &str, uuid: &str, scsi: &str, name: &str, seed: u64) -> Disk {
        // A folder per disk: two VMs may have disks of one name.
        let dir = site.path().join(format!("disks/{seed}"));
        fs::create_dir_all(&dir).unwrap();
        sample_disk(&dir, name, 256 << 10, seed);
        Disk {
            vm: vm.into(),
            uuid: uuid.into(),
            scsi: scsi.into(),
            image: dir.join(name),
            backups: Vec::new(),
            seed,
        }
    }

    fn meta(&self) -> Vec<&str> {
        vec![
            "--vm-name",
            &self.vm,
            "--vm-uuid",
            &self.uuid,
            "--scsi-id",
            &self.scsi,
            "-q",
        ]
    }

    /// A full made `days` days ago (its companion delta `NAME.sdar` beside
    /// it, made at the same time).
    fn full(&mut self, site: &Site, name: &str, days: f64) -> PathBuf {
        let out = site.target.join(format!("{name}.full.gz"));
        let mut args = vec![
            "full",
            self.image.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(self.meta());
        site.run(Some(ago(days)), &args).success();
        let bytes = fs::read(&self.image).unwrap();
        self.backups.push((out.clone(), bytes.clone()));
        self.backups
            .push((site.target.join(format!("{name}.sdar")), bytes));
        out
    }

    /// Changes the disk, then a delta against `full` made `days` days ago.
    fn delta(&mut self, site: &Site, full: &Path, name: &str, days: f64) -> PathBuf {
        self.seed += 1000;
        let s = self.seed.to_string();
        let img = self.image.to_str().unwrap();
        site.run(
            None,
            &["sample-change", img, "--percent", "20", "--seed", &s],
        )
        .success();
        let out = site.target.join(format!("{name}.sdar"));
        let mut args = vec![
            "delta",
            img,
            "--full",
            full.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(self.meta());
        site.run(Some(ago(days)), &args).success();
        self.backups
            .push((out.clone(), fs::read(&self.image).unwrap()));
        out
    }

    /// The disk's bytes when `backup` was made.
    fn at(&self, backup: &Path) -> &[u8] {
        &self
            .backups
            .iter()
            .find(|(p, _)| p == backup)
            .unwrap_or_else(|| panic!("{} is not a backup of this disk", backup.display()))
            .1
    }
}

fn ago(days: f64) -> i64 {
    unix_now() - (days * DAY as f64) as i64
}

/// The line `sdar replicate` printed for config line `n`.
fn line_of(out: &Outcome, n: usize) -> String {
    let text = out.stdout_text();
    let tag = format!(":{n}: ");
    text.lines()
        .find(|l| l.contains(&tag) && l.contains(" -> "))
        .unwrap_or_else(|| {
            panic!(
                "`{}` printed nothing for line {n}:\n{text}\nstderr:\n{}",
                out.what, out.stderr
            )
        })
        .to_string()
}

/// True when line `n` was submitted, restoring `archive` to `dest`.
#[track_caller]
fn assert_submitted(out: &Outcome, n: usize, archive: &Path, dest: &Path) {
    let line = line_of(out, n);
    assert!(
        line.contains(&format!(
            " {} -> {}: submitted",
            archive.display(),
            dest.display()
        )),
        "line {n} should restore {} to {}:\n{line}\nall:\n{}",
        archive.display(),
        dest.display(),
        out.stdout_text()
    );
}

/// Line `n` was reported on stderr with `what`, and printed nothing else.
#[track_caller]
fn assert_missed(out: &Outcome, config: &Path, n: usize, what: &str) {
    let tag = format!("{}:{n}: ", config.display());
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&tag) && l.contains(what)),
        "line {n} should be reported with {what:?}:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout_text().contains(&format!(":{n}: ")),
        "line {n} chose a backup:\n{}",
        out.stdout_text()
    );
}

/// Runs the queue to the end, as `--once` does, for tests that submit
/// without `--once`.
fn run_queue(site: &Site) {
    site.run(
        None,
        &[
            "daemon",
            "--until-idle",
            "--catalog",
            site.catalog.to_str().unwrap(),
        ],
    )
    .success();
}

/// The restored log's backup lines.
fn log_lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The matching rules, without restoring: which backup each line chooses,
/// and the lines reported instead of guessed.
#[test]
fn lines_choose_the_backup_their_rules_name() {
    let site = Site::new();
    let mut crm = Disk::new(&site, "CRM", "564d 0a1b-2c3d", "0:0", "CRM.img", 1);
    let crm_full = crm.full(&site, "crm-full", 10.0);
    let crm_4 = crm.delta(&site, &crm_full, "crm-4", 4.0);
    let crm_1 = crm.delta(&site, &crm_full, "crm-1", 1.0);
    let mut crm1 = Disk::new(&site, "CRM", "564d 0a1b-2c3d", "0:1", "CRM_1.img", 2);
    crm1.full(&site, "crm1-full", 3.0);
    // Another VM with the same name.
    let mut other = Disk::new(&site, "CRM", "99aa", "0:0", "CRM.img", 3);
    let other_full = other.full(&site, "other-full", 2.0);
    // A VM renamed since: its disk keeps its old name, at SCSI 1:10.
    let mut renamed = Disk::new(&site, "Billing", "77bb", "1:10", "Invoices.img", 4);
    renamed.full(&site, "renamed-full", 2.0);
    let mut web = Disk::new(&site, "Web", "55cc", "0:0", "Web.img", 5);
    web.full(&site, "web-full", 2.0);
    site.index();
    let r = site.path().join("replicas");
    let config = site.write_config(
        "vmdks.auto",
        &format!(
            "# esXpress vmdks.auto\r\n\
             USE_DAYS=-0\r\n\
             RESTORE:CRM|564D0A1B2C3D|00|CRM.vmdk|{r}/a/CRM.vmdk|\r\n\
             RESTORE: CRM | 564d 0a1b-2c3d | 0:0 | CRM | {r}/b.img | -2 \r\n\
             RESTORE:CRM|564d0a1b2c3d|*|CRM_1|{r}/c/\n\
             RESTORE:Sales|%|110|Invoices|{r}/d.vmdk\n\
             RESTORE:CRM|*|00|CRM|{r}/e.vmdk\n\
             RESTORE:CRM|564d0a1b2c3d|01|CRM|{r}/f.vmdk\n\
             RESTORE:Web|55cc|00|Web|{r}/g.vmdk|-30\n\
             RESTORE:Web|55cc|00|Web|{r}/a/CRM.vmdk\n\
             RESTORE:CRM|99aa|00|CRM.img|{r}/h.vmdk\n\
             RESTORE:Sales|%|11:0|Invoices|{r}/i.vmdk\n\
             RESTORE:Billing|*|*|Invoices.vmdk|{r}/l.vmdk\n\
             RESTORE:Sales|*|*|Invoices|{r}/m.vmdk\n",
            r = r.display()
        ),
    );
    let out = site.replicate(&config, &[]).expect_code(EXIT_OTHER);
    // Exact UUID (written without its spaces and dash), 00 for 0:0: the
    // newest delta.
    assert_submitted(&out, 3, &crm_1, &r.join("a/CRM.vmdk"));
    // Per-line USE_DAYS -2: the newest at least 2 days old, raw.
    assert_submitted(&out, 4, &crm_4, &r.join("b.img"));
    // SCSI *, into a folder under the disk's own name.
    assert_submitted(
        &out,
        5,
        &site.target.join("crm1-full.sdar"),
        &r.join("c/CRM_1.vmdk"),
    );
    // %: any VM name; SCSI 110 is 1:10.
    assert_submitted(
        &out,
        6,
        &site.target.join("renamed-full.sdar"),
        &r.join("d.vmdk"),
    );
    // *: two VMs are called CRM: reported with both, never guessed.
    assert_missed(&out, &config, 7, "matches 2 disks");
    assert!(
        out.stderr.contains("RESTORE:CRM|99aa|00|CRM.img|"),
        "{}",
        out.stderr
    );
    // No disk CRM at 0:1.
    assert_missed(&out, &config, 8, "no delta archive");
    // Nothing 30 days old.
    assert_missed(&out, &config, 9, "at least 30 days old");
    // The same path as line 3.
    assert_missed(&out, &config, 10, "line 3");
    assert_submitted(
        &out,
        11,
        &site.target.join("other-full.sdar"),
        &r.join("h.vmdk"),
    );
    // 11:0 is not 1:10.
    assert_missed(&out, &config, 12, "no delta archive");
    // *: any UUID, and the VM name must match.
    assert_submitted(
        &out,
        13,
        &site.target.join("renamed-full.sdar"),
        &r.join("l.vmdk"),
    );
    assert_missed(&out, &config, 14, "no delta archive");
    assert!(
        out.stderr.contains("6 of 12 line(s) chose no backup"),
        "{}",
        out.stderr
    );
    // Missing folders are created, nothing is restored yet.
    assert!(r.join("a").is_dir() && r.join("c").is_dir());
    assert!(!r.join("a/CRM.vmdk").exists());
    let _ = other_full;

    // A second pass finds the jobs waiting.
    let again = site.replicate(&config, &[]).expect_code(EXIT_OTHER);
    assert!(
        line_of(&again, 3).contains("job 1 for this path is waiting"),
        "{}",
        again.stdout_text()
    );
    assert!(again
        .stdout_text()
        .contains("0 submitted, 0 up to date, 6 already queued"));

    // A global USE_DAYS applies to the lines without their own.
    let global = site.write_config(
        "global.auto",
        &format!(
            "USE_DAYS=-3\nRESTORE:CRM|564d0a1b2c3d|00|CRM|{r}/j.vmdk\n\
             RESTORE:CRM|564d0a1b2c3d|00|CRM|{r}/k.vmdk|0\n",
            r = r.display()
        ),
    );
    let out = site.replicate(&global, &[]).success();
    assert_submitted(&out, 2, &crm_4, &r.join("j.vmdk"));
    assert_submitted(&out, 3, &crm_1, &r.join("k.vmdk"));
}

/// `--once` restores every line, records it in the restored log, restores
/// nothing the second time, a new backup when one is made, and a backup
/// again when its line is deleted from the log.
#[test]
fn once_restores_and_the_log_remembers() {
    let site = Site::new();
    let mut crm = Disk::new(&site, "CRM", "u-crm", "0:0", "CRM.img", 11);
    let full = crm.full(&site, "crm-full", 3.0);
    let d2 = crm.delta(&site, &full, "crm-2", 2.0);
    let mut web = Disk::new(&site, "Web", "u-web", "0:0", "Web.img", 12);
    let web_full = web.full(&site, "web-full", 2.0);
    let r = site.path().join("replicas");
    // The backups are found through the config's TARGET= line alone.
    let config = site.write_config(
        "vmdks.auto",
        &format!(
            "TARGET={}\nRESTORE:CRM|u-crm|00|CRM|{r}/deep/er/CRM.vmdk\n\
             RESTORE:Web|*|*|Web.img|{r}/web.img\n",
            site.target.display(),
            r = r.display()
        ),
    );
    let log = site.path().join("vmdks.auto.restored");
    let out = site.replicate(&config, &["--once"]).success();
    assert!(
        out.stdout_text().contains("2 of 2 restore(s) done"),
        "{}",
        out.stdout_text()
    );
    let crm_flat = r.join("deep/er/CRM-flat.vmdk");
    assert_same_bytes(&fs::read(&crm_flat).unwrap(), crm.at(&d2), "CRM replica");
    assert!(fs::read_to_string(r.join("deep/er/CRM.vmdk"))
        .unwrap()
        .contains("CRM-flat.vmdk"));
    assert_same_bytes(
        &fs::read(r.join("web.img")).unwrap(),
        web.at(&web_full),
        "Web replica (raw)",
    );
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.ends_with(&format!("\t{}", r.join("web.img").display()))));

    // Nothing new: nothing restored.
    let out = site.replicate(&config, &["--once"]).success();
    assert!(
        out.stdout_text().contains("0 submitted, 2 up to date"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(log_lines(&log).len(), 2);

    // A new backup of CRM replaces its replica.
    let d1 = crm.delta(&site, &full, "crm-1", 1.0);
    let out = site.replicate(&config, &["--once", "--reindex"]).success();
    assert_submitted(&out, 2, &d1, &r.join("deep/er/CRM.vmdk"));
    assert!(
        out.stdout_text().contains("1 submitted, 1 up to date"),
        "{}",
        out.stdout_text()
    );
    assert_same_bytes(
        &fs::read(&crm_flat).unwrap(),
        crm.at(&d1),
        "CRM replica, replaced",
    );
    assert_eq!(log_lines(&log).len(), 3);

    // Deleting Web's line from the log restores it again.
    let kept: String = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("web.img"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&log, kept).unwrap();
    fs::write(r.join("web.img"), b"damaged by hand").unwrap();
    let out = site.replicate(&config, &["--once"]).success();
    assert!(
        out.stdout_text().contains("1 submitted, 1 up to date"),
        "{}",
        out.stdout_text()
    );
    assert_same_bytes(
        &fs::read(r.join("web.img")).unwrap(),
        web.at(&web_full),
        "Web replica, restored again",
    );
    assert_eq!(log_lines(&log).len(), 3);
}

/// A new backup that fails its checks leaves the previous replica as it
/// was, byte for byte and usable; the next good backup replaces it.
#[test]
fn a_replica_is_replaced_only_when_its_successor_is_complete() {
    let site = Site::new();
    let mut crm = Disk::new(&site, "CRM", "u-crm", "0:0", "CRM.img", 21);
    let full = crm.full(&site, "crm-full", 3.0);
    site.index();
    let r = site.path().join("replicas");
    let config = site.write_config(
        "vmdks.auto",
        &format!("RESTORE:CRM|u-crm|00|CRM|{}/CRM.vmdk\n", r.display()),
    );
    let log = site.path().join("crm.log");
    let log_arg = [
        "--once",
        "--restored-log",
        log.to_str().unwrap(),
        "--reindex",
    ];
    site.replicate(&config, &log_arg).success();
    let flat = r.join("CRM-flat.vmdk");
    let first = crm.at(&site.target.join("crm-full.sdar")).to_vec();
    assert_same_bytes(&fs::read(&flat).unwrap(), &first, "first replica");
    let descriptor = fs::read(r.join("CRM.vmdk")).unwrap();

    // A new delta, damaged in a changed block after it was indexed whole.
    let bad = crm.delta(&site, &full, "crm-2", 2.0);
    let layout = delta_layout(&bad);
    let member = layout
        .members
        .iter()
        .find(|m| m.len > 16)
        .expect("a changed block");
    flip_byte(&bad, member.offset + member.len / 2);
    let out = site
        .replicate(&config, &log_arg)
        .expect_code(EXIT_INTEGRITY);
    assert!(out.stderr.contains("integrity failure"), "{}", out.stderr);
    assert_same_bytes(
        &fs::read(&flat).unwrap(),
        &first,
        "replica after a failed restore",
    );
    assert_eq!(fs::read(r.join("CRM.vmdk")).unwrap(), descriptor);
    assert_eq!(log_lines(&log).len(), 1, "a failed restore is not logged");
    assert_eq!(
        listing(&r),
        vec!["CRM-flat.vmdk".to_string(), "CRM.vmdk".to_string()],
        "a failed restore leaves nothing beside the replica"
    );
    // The replica is a usable disk: sdar reads it as a VMDK.
    site.run(
        None,
        &[
            "full",
            r.join("CRM.vmdk").to_str().unwrap(),
            "-o",
            site.path().join("check.full.gz").to_str().unwrap(),
            "-q",
        ],
    )
    .success();

    // The next good backup replaces it.
    fs::remove_file(&bad).unwrap();
    let good = crm.delta(&site, &full, "crm-1", 1.0);
    let out = site.replicate(&config, &log_arg).success();
    assert_submitted(&out, 1, &good, &r.join("CRM.vmdk"));
    assert_same_bytes(&fs::read(&flat).unwrap(), crm.at(&good), "replaced replica");
    assert_eq!(log_lines(&log).len(), 2);
    let leftovers: Vec<String> = listing(&r)
        .into_iter()
        .filter(|n| n != "CRM.vmdk" && n != "CRM-flat.vmdk")
        .collect();
    assert!(
        leftovers.is_empty(),
        "left in the replica folder: {leftovers:?}"
    );
}

/// Without `--once` the config is registered and its jobs wait for the
/// daemon, which records them in the log; `--unregister` forgets it.
#[test]
fn a_registered_config_runs_through_the_daemon() {
    let site = Site::new();
    let mut web = Disk::new(&site, "Web", "u-web", "0:0", "Web.img", 31);
    let full = web.full(&site, "web-full", 1.0);
    site.index();
    let r = site.path().join("replicas");
    // The second line restores through a link to an older replica.
    fs::create_dir_all(r.join("real")).unwrap();
    fs::write(r.join("real/web.img"), b"an older replica").unwrap();
    std::os::unix::fs::symlink(r.join("real/web.img"), r.join("link.img")).unwrap();
    let config = site.write_config(
        "vmdks.auto",
        &format!(
            "TARGET={}\nRESTORE:Web|u-web|0:0|Web|{r}/Web.vmdk\n\
             RESTORE:Web|u-web|0:0|Web|{r}/link.img\n",
            site.target.display(),
            r = r.display()
        ),
    );
    let out = site.replicate(&config, &[]).success();
    assert!(
        out.stdout_text().contains("registered"),
        "{}",
        out.stdout_text()
    );
    assert!(!r.join("Web.vmdk").exists());
    run_queue(&site);
    let companion = site.target.join("web-full.sdar");
    assert_same_bytes(
        &fs::read(r.join("Web-flat.vmdk")).unwrap(),
        web.at(&companion),
        "replica",
    );
    assert!(fs::symlink_metadata(r.join("link.img"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_same_bytes(
        &fs::read(r.join("real/web.img")).unwrap(),
        web.at(&companion),
        "replica through a link",
    );
    let log = site.path().join("vmdks.auto.restored");
    assert_eq!(log_lines(&log).len(), 2, "the daemon records the restores");
    let out = site.replicate(&config, &[]).success();
    assert!(out.stdout_text().contains("still registered"));
    assert!(
        out.stdout_text().contains("0 submitted, 2 up to date"),
        "{}",
        out.stdout_text()
    );
    // A new backup: the daemon's own pass of the registered config finds
    // it (through TARGET=), queues and restores it.
    let newer = web.delta(&site, &full, "web-new", 0.5);
    run_queue(&site);
    assert_same_bytes(
        &fs::read(r.join("Web-flat.vmdk")).unwrap(),
        web.at(&newer),
        "replica refreshed by the daemon",
    );
    assert_eq!(log_lines(&log).len(), 4);
    site.replicate(&config, &["--unregister"]).success();
    site.replicate(&config, &["--unregister"])
        .expect_code(EXIT_USAGE);
    // Unregistered: the daemon leaves it alone.
    web.delta(&site, &full, "web-newest", 0.25);
    run_queue(&site);
    assert_eq!(log_lines(&log).len(), 4);
}

/// `--preload` appends a commented-out line for each disk the config does
/// not name, once; names that cannot be written in the format are skipped.
#[test]
fn preload_appends_each_disk_once() {
    let site = Site::new();
    let mut crm = Disk::new(&site, "CRM", "u-crm", "0:0", "CRM.img", 41);
    crm.full(&site, "crm-full", 2.0);
    let mut crm1 = Disk::new(&site, "CRM", "u-crm", "0:1", "CRM_1.img", 42);
    crm1.full(&site, "crm1-full", 2.0);
    let mut web = Disk::new(&site, "Web", "u-web", "1:10", "Web.img", 43);
    web.full(&site, "web-full", 2.0);
    // A VM name that would end the line and add one of its own, with a
    // terminal escape.
    let mut evil = Disk::new(
        &site,
        "a|b\u{1b}[31m\nRESTORE:x|*|00|evil|/tmp/x.vmdk",
        "u-evil",
        "0:0",
        "evil.img",
        44,
    );
    evil.full(&site, "evil-full", 2.0);
    site.index();
    let r = site.path().join("replicas");
    // No RESTORE_PATH: refused.
    let bare = site.write_config("bare.auto", "RESTORE:CRM|*|00|CRM|/r/CRM.vmdk\n");
    let out = site
        .replicate(&bare, &["--preload"])
        .expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("RESTORE_PATH"), "{}", out.stderr);
    // The last line without its line end.
    let text = format!(
        "RESTORE_PATH={}\nRESTORE:CRM|*|00|CRM|{}/CRM.vmdk",
        r.display(),
        r.display()
    );
    let config = site.write_config("vmdks.auto", &text);
    let out = site.replicate(&config, &["--preload"]).success();
    assert!(
        out.stdout_text()
            .contains("2 commented-out RESTORE: line(s)"),
        "{}",
        out.stdout_text()
    );
    assert!(
        out.stderr
            .contains(r#""a|b\e[31m\nRESTORE:x|*|00|evil|/tmp/x.vmdk" disk"#),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
    let after = fs::read_to_string(&config).unwrap();
    assert!(
        after.starts_with(&format!("{text}\n# sdar replicate --preload")),
        "{after}"
    );
    assert!(
        !after.contains("RESTORE:x") && !after.contains('\u{1b}'),
        "{after}"
    );
    let added: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("#RESTORE:"))
        .collect();
    assert_eq!(
        added,
        vec![
            format!(
                "#RESTORE:CRM|u-crm|01|CRM_1.img|{}/CRM/CRM_1.vmdk|",
                r.display()
            ),
            format!(
                "#RESTORE:Web|u-web|110|Web.img|{}/Web/Web.vmdk|",
                r.display()
            ),
        ]
    );
    // Again: nothing new.
    let out = site.replicate(&config, &["--preload"]).success();
    assert!(
        out.stdout_text().contains("named in it already"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), after);
    // The preloaded lines, switched on, restore.
    let on = after.replace("#RESTORE:", "RESTORE:");
    fs::write(&config, on).unwrap();
    let out = site.replicate(&config, &[]).success();
    assert_submitted(
        &out,
        4,
        &site.target.join("crm1-full.sdar"),
        &r.join("CRM/CRM_1.vmdk"),
    );
    assert_submitted(
        &out,
        5,
        &site.target.join("web-full.sdar"),
        &r.join("Web/Web.vmdk"),
    );
    site.replicate(&config, &["--unregister"]).success();
}

/// Configs and restored logs that are not what they should be are refused
/// with the file and line, before anything is submitted.
#[test]
fn hostile_configs_and_logs_are_refused() {
    let site = Site::new();
    let mut crm = Disk::new(&site, "CRM", "u-crm", "0:0", "CRM.img", 51);
    crm.full(&site, "crm-full", 1.0);
    site.index();
    let replicas = site.path().join("replicas");
    let good = &format!("RESTORE:CRM|u-crm|00|CRM|{}/CRM.vmdk\n", replicas.display());
    let cases = [
        (
            format!("{good}RESTORE:{}\n", "x|".repeat(10_000)),
            2,
            "10001",
        ),
        (
            format!("{good}USE_DAYS=-99999999999999999999\n"),
            2,
            "USE_DAYS",
        ),
        (
            format!("{good}RESTORE:CRM|u-crm|00|CRM|/r/x|-4294967296\n"),
            2,
            "more than",
        ),
        (
            format!("# ok\n{good}RESTORE:CRM|u-crm|0-0|CRM|/r/y\n"),
            3,
            "SCSI_ID",
        ),
        (
            format!("{good}RESTORE:CRM|u-crm|00|CRM|replica.vmdk\n"),
            2,
            "absolute",
        ),
        (format!("{good}RESTORE CRM u-crm 00\n"), 2, "neither"),
    ];
    for (text, line, what) in cases {
        let config = site.write_config("bad.auto", &text);
        let out = site.replicate(&config, &["--once"]).expect_code(EXIT_USAGE);
        let tag = format!("{}:{line}: ", config.display());
        assert!(
            out.stderr.contains(&tag) && out.stderr.contains(what),
            "{what}: {}",
            out.stderr
        );
        assert!(
            !out.stdout_text().contains("submitted"),
            "{}",
            out.stdout_text()
        );
    }
    assert!(!replicas.exists(), "a refused config created its folder");

    // A line restoring onto the config itself, its restored log, or the
    // catalog: refused, each file as it was (the config became the disk).
    let own = site.path().join("own.auto");
    let own_log = site.path().join("own.log");
    fs::write(&own_log, "# mine\n").unwrap();
    let text = format!(
        "RESTORE:CRM|u-crm|00|CRM|{}\nRESTORE:CRM|u-crm|00|CRM|{}\n\
         RESTORE:CRM|u-crm|00|CRM|{}\n",
        own.display(),
        own_log.display(),
        site.catalog.display()
    );
    fs::write(&own, &text).unwrap();
    let catalog_before = fs::read(&site.catalog).unwrap();
    let out = site
        .replicate(
            &own,
            &["--once", "--restored-log", own_log.to_str().unwrap()],
        )
        .expect_code(EXIT_OTHER);
    for (n, what) in [
        (1, "the replication config"),
        (2, "its restored log"),
        (3, "the catalog"),
    ] {
        assert_missed(&out, &own, n, what);
    }
    assert_eq!(fs::read_to_string(&own).unwrap(), text);
    assert_eq!(fs::read_to_string(&own_log).unwrap(), "# mine\n");
    assert_eq!(fs::read(&site.catalog).unwrap().len(), catalog_before.len());

    // One file through a linked folder: the second line is refused.
    let twice = site.path().join("twice");
    fs::create_dir_all(&twice).unwrap();
    std::os::unix::fs::symlink(&twice, site.path().join("linked")).unwrap();
    let two = site.write_config(
        "two.auto",
        &format!(
            "RESTORE:CRM|u-crm|00|CRM|{}/CRM.img\nRESTORE:CRM|u-crm|00|CRM|{}/CRM.img\n",
            twice.display(),
            site.path().join("linked").display()
        ),
    );
    let out = site.replicate(&two, &[]).expect_code(EXIT_OTHER);
    assert_missed(&out, &two, 2, "is restored by line 1 already");
    site.replicate(&two, &["--unregister"]).success();

    let config = site.write_config("vmdks.auto", good);
    // The config, or the catalog, as its own restored log: refused, as it
    // was (the restored lines were appended to the config before).
    for log in [&config, &site.catalog] {
        let before = fs::read(log).unwrap();
        let out = site
            .replicate(
                &config,
                &["--once", "--restored-log", log.to_str().unwrap()],
            )
            .expect_code(EXIT_USAGE);
        assert!(
            out.stderr.contains("cannot be the config or the catalog"),
            "{}",
            out.stderr
        );
        assert_eq!(fs::read(log).unwrap().len(), before.len());
    }
    // A restored log that is a link: refused, its target untouched.
    let real = site.path().join("elsewhere");
    fs::write(&real, "precious\n").unwrap();
    let link = site.path().join("link.log");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = site
        .replicate(&config, &["--restored-log", link.to_str().unwrap()])
        .expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("regular file"), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&real).unwrap(), "precious\n");
    // A FIFO as the log, and as the config: refused without blocking.
    let fifo = site.path().join("fifo");
    stock(site.path(), "mkfifo", &["fifo"]).success();
    site.replicate(&config, &["--restored-log", fifo.to_str().unwrap()])
        .expect_code(EXIT_USAGE);
    site.replicate(&fifo, &[]).expect_code(EXIT_USAGE);
    let out = site
        .replicate(&site.path().join("missing.auto"), &[])
        .expect_code(EXIT_USAGE);
    assert!(
        out.stderr.contains("missing.auto: no such file"),
        "{}",
        out.stderr
    );
    // Nothing was submitted or registered by any of these.
    let out = site.replicate(&config, &[]).success();
    assert!(
        out.stdout_text().contains("1 submitted"),
        "{}",
        out.stdout_text()
    );
    site.replicate(&config, &["--unregister"]).success();
}

/// Configs as Windows editors and other hosts leave them: a byte order
/// mark, a Latin-1 comment, and the newest backup made on a host whose
/// clock runs a few minutes ahead: USE_DAYS 0 still means the newest
/// backup (the older one was chosen before). Then a newer backup that is
/// cut short: the pass names it, leaves the replica as it was and exits 1
/// (it used to choose the older backup, "up to date", and exit 0).
#[test]
fn a_bom_a_latin1_comment_a_clock_ahead_and_a_damaged_newest_backup() {
    let site = Site::new();
    let mut crm = Disk::new(&site, "CRM", "u-crm", "0:0", "CRM.img", 61);
    let full = crm.full(&site, "crm-full", 2.0);
    // Made 15 minutes in the future, as that host's clock says.
    let ahead = crm.delta(&site, &full, "crm-ahead", -0.01);
    site.index();
    let r = site.path().join("replicas");
    let mut text = b"\xef\xbb\xbf# r\xe9plicas du serveur\r\nUSE_DAYS=0\r\n".to_vec();
    text.extend(format!("RESTORE:CRM|u-crm|00|CRM|{}/CRM.img\r\n", r.display()).as_bytes());
    let config = site.path().join("vmdks.auto");
    fs::write(&config, text).unwrap();
    let out = site.replicate(&config, &["--once"]).success();
    assert_submitted(&out, 3, &ahead, &r.join("CRM.img"));
    let replica = r.join("CRM.img");
    assert_same_bytes(&fs::read(&replica).unwrap(), crm.at(&ahead), "replica");
    let log = site.path().join("vmdks.auto.restored");
    assert_eq!(log_lines(&log).len(), 1);

    let cut = crm.delta(&site, &full, "crm-newer", -0.02);
    let len = fs::metadata(&cut).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let out = site
        .replicate(&config, &["--once", "--reindex"])
        .expect_code(EXIT_INTEGRITY);
    assert!(
        out.stderr
            .contains(&format!("warning: foreign {}", cut.display())),
        "{}",
        out.stderr
    );
    assert_same_bytes(
        &fs::read(&replica).unwrap(),
        crm.at(&ahead),
        "replica after a damaged backup",
    );
    assert_eq!(log_lines(&log).len(), 1);
}

/// `kill -9` of `sdar replicate --once` in the middle of a restore: its
/// daemon goes with it (SIGTERM: the job waits again, the blocks written so
/// far kept; it used to go on alone, an orphan writing after the command
/// was killed), no sdar process is left, the previous replica is as it
/// was; the next `--once` resumes the job, reports it, and the replica
/// and the restored log (one line) end right.
#[test]
fn kill_9_of_once_mid_restore_then_again() {
    let site = Site::new();
    // Incompressible and large enough to be caught in the middle.
    let dir = site.path().join("disks/big");
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("Big.img");
    let mut bytes = vec![0u8; 192 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(&image, &bytes).unwrap();
    let mut big = Disk {
        vm: "Big".into(),
        uuid: "u-big".into(),
        scsi: "0:0".into(),
        image,
        backups: Vec::new(),
        seed: 71,
    };
    big.full(&site, "big-full", 1.0);
    site.index();
    let r = site.path().join("replicas");
    fs::create_dir_all(&r).unwrap();
    let replica = r.join("Big.img");
    fs::write(&replica, b"the previous replica").unwrap();
    let config = site.write_config(
        "vmdks.auto",
        &format!("RESTORE:Big|u-big|00|Big|{}\n", replica.display()),
    );
    let partial = r.join(".Big.img.sdar-partial");
    let mut child = Command::new(SDAR)
        .args(["replicate", "--once", "--config"])
        .arg(&config)
        .current_dir(site.path())
        .env("SDAR_CATALOG", &site.catalog)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !partial.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30)
                && child.try_wait().unwrap().is_none(),
            "the restore never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    // The daemon it started stops and leaves: no process names the catalog.
    let catalog = site.catalog.to_str().unwrap().to_string();
    let alive = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
            .any(|c| String::from_utf8_lossy(&c).contains(&catalog))
    };
    let start = std::time::Instant::now();
    while alive() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "sdar daemon went on after sdar replicate --once was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        fs::read(&replica).unwrap(),
        b"the previous replica",
        "the restore ended before the kill, or went on after it"
    );
    let log = site.path().join("vmdks.auto.restored");
    assert_eq!(log_lines(&log).len(), 0);

    let out = site.replicate(&config, &["--once"]).success();
    assert!(
        out.stdout_text().contains("1 already queued")
            && out.stdout_text().contains("1 of 1 restore(s) done"),
        "{}",
        out.stdout_text()
    );
    assert_same_bytes(&fs::read(&replica).unwrap(), &bytes, "replica, resumed");
    assert_eq!(log_lines(&log).len(), 1);
    assert!(!partial.exists());
    let out = site.replicate(&config, &["--once"]).success();
    assert!(
        out.stdout_text().contains("1 up to date"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(log_lines(&log).len(), 1);
}
