//! The catalog end to end: `sdar index` of generated trees of backups (moves,
//! deletes, damaged and foreign files, two VMs of one name), `sdar list`,
//! the automatic re-index, and `sdar restore --vm`, each restored disk
//! compared byte for byte with the disk as it was when its backup was made.
//! The catalog is a real SQLite file, opened by the tests as another program
//! would open it.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs `sdar` in `dir` with the catalog named by `SDAR_CATALOG`, and
/// `SOURCE_DATE_EPOCH` when `epoch` is given.
fn run(dir: &Path, catalog: &Path, epoch: Option<i64>, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(SDAR);
    cmd.args(args).current_dir(dir).env("SDAR_CATALOG", catalog);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    if let Some(t) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", t.to_string());
    }
    run_command(format!("sdar {}", args.join(" ")), &mut cmd)
}

fn json(out: &Outcome) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`{}` printed no JSON ({e}):\n{}",
            out.what,
            out.stdout_text()
        )
    })
}

/// One VM disk over time: its image now, and a copy of it at each backup.
struct Disk {
    vm: String,
    uuid: String,
    scsi: String,
    image: PathBuf,
    /// (creation time, the disk's bytes then, the backup file).
    backups: Vec<(i64, Vec<u8>, PathBuf)>,
}

impl Disk {
    fn new(dir: &Path, vm: &str, uuid: &str, scsi: &str, name: &str, seed: u64) -> Disk {
        let image = dir.join(name);
        sample_disk(dir, name, 512 << 10, seed);
        Disk {
            vm: vm.into(),
            uuid: uuid.into(),
            scsi: scsi.into(),
            image,
            backups: Vec::new(),
        }
    }

    fn meta<'a>(&'a self, args: &mut Vec<&'a str>) {
        args.extend([
            "--vm-name",
            self.vm.as_str(),
            "--vm-uuid",
            self.uuid.as_str(),
            "--scsi-id",
            self.scsi.as_str(),
            "-q",
        ]);
    }

    /// A full at `when`, written to `out` (its companion delta beside it).
    fn full(&mut self, dir: &Path, catalog: &Path, out: &Path, when: i64) {
        let (img, o) = (self.image.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["full", img, "-o", o];
        self.meta(&mut args);
        run(dir, catalog, Some(when), &args).success();
        self.backups
            .push((when, fs::read(&self.image).unwrap(), out.to_path_buf()));
    }

    /// Changes the disk, then a delta against `full` at `when`.
    fn delta(&mut self, dir: &Path, catalog: &Path, full: &Path, out: &Path, when: i64, seed: u64) {
        let img = self.image.to_str().unwrap();
        let s = seed.to_string();
        run(
            dir,
            catalog,
            None,
            &["sample-change", img, "--percent", "5", "--seed", &s],
        )
        .success();
        let (f, o) = (full.to_str().unwrap(), out.to_str().unwrap());
        let mut args = vec!["delta", img, "--full", f, "-o", o];
        self.meta(&mut args);
        run(dir, catalog, Some(when), &args).success();
        self.backups
            .push((when, fs::read(&self.image).unwrap(), out.to_path_buf()));
    }
}

/// A tree of two targets: CRM (two disks), two VMs called Web (one disk
/// each, different UUIDs), each with a full 10 days ago and daily deltas.
struct Tree {
    dir: tempfile::TempDir,
    catalog: PathBuf,
    a: PathBuf,
    b: PathBuf,
    disks: Vec<Disk>,
}

fn tree(deltas: usize) -> Tree {
    let dir = scratch();
    let d = dir.path();
    let catalog = d.join("state/catalog.sqlite");
    let (a, b) = (d.join("share-a"), d.join("share-b"));
    fs::create_dir_all(a.join("CRM")).unwrap();
    fs::create_dir_all(b.join("old/web")).unwrap();
    fs::create_dir_all(d.join("disks")).unwrap();
    let base = now() - 10 * DAY;
    let mut disks = vec![
        // Seeds whose first 512 KiB differ (2 and 3 do not).
        Disk::new(&d.join("disks"), "CRM", "uuid-crm", "0:0", "CRM.img", 11),
        Disk::new(&d.join("disks"), "CRM", "uuid-crm", "0:1", "CRM_1.img", 23),
        Disk::new(&d.join("disks"), "Web", "uuid-web-1", "0:0", "Web.img", 37),
        Disk::new(&d.join("disks"), "Web", "uuid-web-2", "0:0", "Web2.img", 51),
    ];
    for (i, disk) in disks.iter_mut().enumerate() {
        let folder = if i < 2 {
            a.join("CRM")
        } else {
            b.join("old/web")
        };
        let name = disk
            .image
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let full = folder.join(format!("{name}.full.gz"));
        disk.full(d, &catalog, &full, base + i as i64);
        for k in 1..=deltas {
            // Deltas of the Web VMs are in the other target than their fulls.
            let into = if i < 2 { &folder } else { &a };
            let out = into.join(format!("{name}-{k}.sdar"));
            disk.delta(
                d,
                &catalog,
                &full,
                &out,
                base + k as i64 * DAY + i as i64,
                10 + k as u64,
            );
        }
    }
    Tree {
        catalog,
        a,
        b,
        disks,
        dir,
    }
}

impl Tree {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sdar(&self, args: &[&str]) -> Outcome {
        run(self.path(), &self.catalog, None, args)
    }

    fn index(&self) -> Value {
        let (a, b) = (self.a.to_str().unwrap(), self.b.to_str().unwrap());
        json(&self.sdar(&["index", a, b, "--json"]).success())
    }

    fn list(&self, args: &[&str]) -> Value {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        json(&self.sdar(&all).success())
    }
}

fn backups_of(list: &Value) -> Vec<Value> {
    list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|vm| vm["backups"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn index_reads_headers_only_and_reindex_reads_nothing() {
    let t = tree(3);
    fs::write(t.a.join("notes.txt"), b"not a backup").unwrap();
    let first = t.index();
    // 4 disks x (full + companion + 3 deltas).
    assert_eq!(first["backups"], 20, "{first:#}");
    assert_eq!(first["added"], 20 + 1);
    let (read, total) = (
        first["bytes_read"].as_u64().unwrap(),
        first["backup_bytes"].as_u64().unwrap(),
    );
    assert!(
        read > 0 && read * 1000 < total * 3,
        "read {read} of {total} bytes"
    );
    assert!(
        read < 21 * 2048,
        "{read} bytes for 21 files: more than headers"
    );

    let again = t.index();
    assert_eq!(again["opened"], 0, "{again:#}");
    assert_eq!(again["bytes_read"], 0);
    assert_eq!(again["backups"], 20);

    // --reindex reads every file again, and finds the same.
    let (a, b) = (t.a.to_str().unwrap(), t.b.to_str().unwrap());
    let forced = json(&t.sdar(&["index", a, b, "--reindex", "--json"]).success());
    assert_eq!(forced["opened"], 21);
    assert_eq!(forced["added"], 0);
    assert_eq!(forced["backups"], 20);

    // Text output says how much was read.
    let text = t.sdar(&["index", a]).success().stdout_text();
    assert!(text.contains("0 files read"), "{text}");
}

#[test]
fn list_shows_vms_apart_their_backups_by_date_and_the_fulls_of_each_delta() {
    let t = tree(2);
    t.index();
    let list = t.list(&[]);
    let vms = list["vms"].as_array().unwrap();
    let names: Vec<(&str, &str)> = vms
        .iter()
        .map(|v| {
            (
                v["vm_name"].as_str().unwrap(),
                v["vm_uuid"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("CRM", "uuid-crm"),
            ("Web", "uuid-web-1"),
            ("Web", "uuid-web-2")
        ]
    );
    for vm in vms {
        let dates: Vec<i64> = vm["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["created_unix"].as_i64().unwrap())
            .collect();
        assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{dates:?}");
        for b in vm["backups"].as_array().unwrap() {
            if b["kind"] == "delta" {
                assert_eq!(b["full_found"], true, "{b:#}");
                let fulls = b["fulls"].as_array().unwrap();
                assert!(fulls.iter().any(|f| f["matches"] == true));
            }
        }
    }
    // The Web deltas are in share-a, their fulls in share-b: found anyway.
    let web = t.list(&["--vm", "Web", "--uuid", "uuid-web-2"]);
    let backups = backups_of(&web);
    assert_eq!(backups.len(), 4);
    assert!(backups.iter().all(|b| b["vm_uuid"] == "uuid-web-2"));

    let text = t.sdar(&["list", "--vm", "Web"]).success().stdout_text();
    assert_eq!(
        text.matches("another VM has this name").count(),
        2,
        "{text}"
    );
    assert!(text.contains("full * "), "{text}");
    assert!(text.contains("Delta") && text.contains("Full"), "{text}");

    // Disk and date filters.
    let disk = t.list(&["--disk", "CRM_1"]);
    assert!(backups_of(&disk).iter().all(|b| b["scsi_id"] == "0:1"));
    assert_eq!(backups_of(&disk).len(), 4);
    let day = t.disks[0].backups[1].0;
    let stamp = sdar_day(day);
    let since = t.list(&["--vm", "CRM", "--since", &stamp]);
    assert!(backups_of(&since)
        .iter()
        .all(|b| b["created_unix"].as_i64().unwrap() >= day - day.rem_euclid(DAY)));
    assert_eq!(backups_of(&since).len(), 4, "two disks x deltas 1 and 2");
    let until = t.list(&["--until", &stamp, "--vm", "CRM"]);
    assert_eq!(
        backups_of(&until).len(),
        6,
        "fulls, companions and the first deltas"
    );
    t.sdar(&["list", "--since", "yesterday"])
        .expect_code(EXIT_USAGE);
}

/// `YYYY-MM-DD` of a unix time (UTC), computed the long way so the test does
/// not share the code it checks.
fn sdar_day(t: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn moves_deletes_damaged_and_foreign_files() {
    let t = tree(2);
    t.index();
    // Move one delta into a subfolder and another to the other target.
    let moved = &t.disks[0].backups[1].2;
    let moved_to = t.a.join("CRM/archive/CRM-1.sdar");
    fs::create_dir_all(moved_to.parent().unwrap()).unwrap();
    fs::rename(moved, &moved_to).unwrap();
    let across = &t.disks[1].backups[2].2;
    let across_to = t.b.join("CRM_1-2.sdar");
    fs::rename(across, &across_to).unwrap();
    // Delete a delta; damage a copy of a full; plant a foreign file.
    fs::remove_file(&t.disks[2].backups[1].2).unwrap();
    let full = &t.disks[3].backups[0].2;
    let cut = t.b.join("cut.full.gz");
    let bytes = fs::read(full).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fs::write(
        t.a.join("foreign.sdar"),
        b"#!/bin/sh\necho not an archive\n",
    )
    .unwrap();
    // Things a walk must pass over: a FIFO named like a backup, a link to a
    // backup outside the targets.
    let fifo = t.a.join("pipe.full.gz");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(full, t.a.join("link.full.gz")).unwrap();

    let r = t.index();
    assert_eq!(r["moved"].as_array().unwrap().len(), 2, "{r:#}");
    let froms: Vec<&str> = r["moved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["to"].as_str().unwrap())
        .collect();
    assert!(froms.contains(&moved_to.to_str().unwrap()), "{froms:?}");
    assert!(froms.contains(&across_to.to_str().unwrap()), "{froms:?}");
    assert_eq!(r["removed"], 1, "{r:#}");
    let problems = r["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{r:#}");
    let damaged = problems.iter().find(|p| p["kind"] == "damaged").unwrap();
    assert_eq!(damaged["path"], cut.to_str().unwrap());
    let foreign = problems.iter().find(|p| p["kind"] == "foreign").unwrap();
    assert!(foreign["path"].as_str().unwrap().ends_with("foreign.sdar"));

    let list = t.list(&[]);
    let all = backups_of(&list);
    assert_eq!(all.len(), 4 * 4 - 1, "the deleted delta is gone");
    assert!(all.iter().any(|b| b["path"] == moved_to.to_str().unwrap()));
    assert!(!all
        .iter()
        .any(|b| b["path"].as_str().unwrap().contains("link.full.gz")));
    assert!(!all
        .iter()
        .any(|b| b["path"].as_str().unwrap().contains("pipe")));
    assert_eq!(list["problems"].as_array().unwrap().len(), 2);
    let text = t.sdar(&["list"]).success().stdout_text();
    assert!(
        text.contains("damaged: ") && text.contains("cut.full.gz"),
        "{text}"
    );

    // A moved delta still restores by name.
    let out = t.path().join("crm.img");
    t.sdar(&[
        "restore",
        "--vm",
        "CRM",
        "--disk",
        "CRM",
        "--to",
        out.to_str().unwrap(),
        "--raw",
        "-q",
    ])
    .success();
    assert!(fs::read(&out).unwrap() == t.disks[0].backups[2].1);

    // A full that is gone leaves its deltas with a warning.
    fs::remove_file(&t.disks[1].backups[0].2).unwrap();
    t.index();
    let text = t
        .sdar(&["list", "--vm", "CRM", "--disk", "CRM_1"])
        .success()
        .stdout_text();
    assert!(
        text.contains("warning: no full for this delta in any target"),
        "{text}"
    );
    let dest = t.path().join("crm1.img");
    let failed = t.sdar(&[
        "restore",
        "--vm",
        "CRM",
        "--disk",
        "CRM_1.img",
        "--to",
        dest.to_str().unwrap(),
        "--raw",
    ]);
    assert_eq!(failed.code, EXIT_OTHER, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("is in no indexed target"),
        "{}",
        failed.stderr
    );
    assert!(!dest.exists());
}

#[test]
fn restore_by_vm_name_picks_the_backup_the_options_say() {
    let t = tree(4);
    t.index();
    let dest = |n: &str| t.path().join(n);
    let restore = |extra: &[&str], to: &Path| {
        let mut args = vec!["restore", "--raw", "-q", "--to", to.to_str().unwrap()];
        args.extend_from_slice(extra);
        t.sdar(&args)
    };
    // The newest.
    restore(&["--vm", "CRM", "--disk", "CRM"], &dest("newest.img")).success();
    assert!(fs::read(dest("newest.img")).unwrap() == t.disks[0].backups[4].1);
    // At least N days old: backups are 10 - k days old.
    restore(
        &["--vm", "CRM", "--disk", "CRM.img", "--days-old", "8"],
        &dest("old.img"),
    )
    .success();
    assert!(
        fs::read(dest("old.img")).unwrap() == t.disks[0].backups[2].1,
        "delta 2 is 8 days old"
    );
    // On a day.
    let day = sdar_day(t.disks[1].backups[3].0);
    restore(
        &["--vm", "CRM", "--scsi-id", "0:1", "--date", &day],
        &dest("day.img"),
    )
    .success();
    assert!(fs::read(dest("day.img")).unwrap() == t.disks[1].backups[3].1);
    // Two VMs called Web: refused with both UUIDs, then chosen by UUID.
    let amb = restore(&["--vm", "Web"], &dest("web.img"));
    assert_eq!(amb.code, EXIT_USAGE, "{}", amb.stderr);
    assert!(
        amb.stderr.contains("uuid-web-1") && amb.stderr.contains("uuid-web-2"),
        "{}",
        amb.stderr
    );
    assert!(!dest("web.img").exists());
    restore(&["--vm", "Web", "--uuid", "uuid-web-2"], &dest("web.img")).success();
    assert!(fs::read(dest("web.img")).unwrap() == t.disks[3].backups[4].1);
    // Two disks: refused with both.
    let amb = restore(&["--vm", "CRM"], &dest("crm.img"));
    assert_eq!(amb.code, EXIT_USAGE);
    assert!(
        amb.stderr.contains("CRM.img") && amb.stderr.contains("CRM_1.img"),
        "{}",
        amb.stderr
    );
    // Nothing that old; nothing of that name; bad values.
    let none = restore(
        &["--vm", "CRM", "--disk", "CRM", "--days-old", "30"],
        &dest("x.img"),
    );
    assert_eq!(none.code, EXIT_OTHER);
    assert!(
        none.stderr.contains("at least 30 days old"),
        "{}",
        none.stderr
    );
    assert_eq!(restore(&["--vm", "Nope"], &dest("x.img")).code, EXIT_OTHER);
    for bad in [
        &["--vm", "CRM", "--days-old", "many"][..],
        &["--vm", "CRM", "--date", "2026-02-30"],
        &["--vm", "CRM", "--date", "2026-01-01", "--days-old", "1"],
        &["--vm"],
        &["--uuid", "uuid-crm"],
        &["--vm", "CRM", "--vm", "CRM"],
    ] {
        let out = restore(bad, &dest("x.img"));
        assert_eq!(out.code, EXIT_USAGE, "{bad:?}: {}", out.stderr);
    }
    assert!(!dest("x.img").exists());
    // The archive's own options pass through: --json describes the restore.
    let out = t.sdar(&[
        "restore",
        "--vm",
        "CRM",
        "--disk",
        "CRM",
        "--to",
        dest("j.img").to_str().unwrap(),
        "--raw",
        "--json",
    ]);
    let doc = json(&out.success());
    assert_eq!(doc["outcome"], "restored", "{doc:#}");
    assert!(
        doc["full"].as_str().unwrap().ends_with("CRM.full.gz"),
        "{doc:#}"
    );
}

#[test]
fn targets_are_indexed_again_when_their_index_is_old() {
    let t = tree(1);
    t.index();
    let n = backups_of(&t.list(&[])).len();
    // A new backup appears on the share: not seen for 5 hours...
    let extra = t.a.join("copy.sdar");
    fs::copy(&t.disks[0].backups[1].2, &extra).unwrap();
    assert_eq!(backups_of(&t.list(&[])).len(), n);
    // ...unless asked,
    assert_eq!(backups_of(&t.list(&["--reindex"])).len(), n + 1);
    fs::remove_file(&extra).unwrap();
    // or the limit is lowered (kept in the catalog).
    t.sdar(&["index", "--reindex-after", "0"]).success();
    let out = t.sdar(&["list"]).success();
    assert!(out.stderr.contains("re-indexed"), "{}", out.stderr);
    assert_eq!(backups_of(&t.list(&[])).len(), n);
    // A target that disappeared (an unmounted share) keeps what it had.
    let moved = t.path().join("unmounted");
    fs::rename(&t.b, &moved).unwrap();
    let out = t.sdar(&["list", "--json"]);
    let list = json(&out.success());
    assert_eq!(backups_of(&list).len(), n);
    let idx = t.sdar(&["index", "--json"]);
    assert_eq!(idx.code, EXIT_OTHER, "{}", idx.stderr);
    assert!(idx.stderr.contains("share-b"), "{}", idx.stderr);
    fs::rename(&moved, &t.b).unwrap();
    // Forgetting a target drops its backups from the catalog, not the disk.
    t.sdar(&["index", "--forget", t.b.to_str().unwrap()])
        .success();
    let left = backups_of(&t.list(&[]));
    assert!(left
        .iter()
        .all(|b| !b["path"].as_str().unwrap().contains("share-b")));
    assert!(t.disks[2].backups[0].2.exists());
}

#[test]
fn the_catalog_is_found_created_and_refused_as_documented() {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir(d.join("t")).unwrap();
    let mut disk = Disk::new(d, "VM", "u", "0:0", "vm.img", 9);
    let full = d.join("t/vm.full.gz");
    disk.full(d, &d.join("unused.sqlite"), &full, now() - DAY);
    let t = d.join("t");
    let t = t.to_str().unwrap();
    // --catalog wins over SDAR_CATALOG.
    let chosen = d.join("deep/er/chosen.sqlite");
    run(
        d,
        &d.join("env.sqlite"),
        None,
        &["index", t, "--catalog", chosen.to_str().unwrap()],
    )
    .success();
    assert!(chosen.is_file() && !d.join("env.sqlite").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(d.join("deep/er"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the catalog's new folder is private: {mode:o}"
    );
    // The default: XDG_DATA_HOME, else HOME/.local/share (root: /var/lib/sdar).
    let mut cmd = Command::new(SDAR);
    cmd.args(["index", t])
        .current_dir(d)
        .env_remove("SDAR_CATALOG");
    let is_root = unsafe_geteuid() == 0;
    cmd.env("XDG_DATA_HOME", d.join("xdg"))
        .env("HOME", d.join("home"));
    if !is_root {
        run_command("sdar index (XDG)".into(), &mut cmd).success();
        assert!(d.join("xdg/sdar/catalog.sqlite").is_file());
    }
    // A link at the catalog's name is refused, and not written through.
    let victim = d.join("victim");
    fs::write(&victim, b"keep me").unwrap();
    let link = d.join("link.sqlite");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = run(d, &link, None, &["list"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
    // A folder, or a file that is not a database.
    assert_ne!(run(d, d, None, &["list"]).code, EXIT_OK);
    let junk = d.join("junk.sqlite");
    fs::write(&junk, vec![7u8; 8192]).unwrap();
    let out = run(d, &junk, None, &["list"]);
    assert_eq!(out.code, EXIT_OTHER, "{}", out.stderr);
    assert!(out.stderr.contains("junk.sqlite"), "{}", out.stderr);
    assert_eq!(fs::read(&junk).unwrap(), vec![7u8; 8192], "never rewritten");
    // A catalog from a newer sdar is refused by name.
    let newer = d.join("newer.sqlite");
    run(d, &newer, None, &["list"]).success();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let out = run(d, &newer, None, &["list"]);
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    assert!(out.stderr.contains("version 99"), "{}", out.stderr);
    // Index of something that is not a folder.
    let out = run(
        d,
        &d.join("c.sqlite"),
        None,
        &["index", full.to_str().unwrap()],
    );
    assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
}

fn unsafe_geteuid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_catalog_is_a_real_sqlite_file_in_wal_mode_shared_by_processes() {
    let t = tree(1);
    let (a, b) = (t.a.to_str().unwrap(), t.b.to_str().unwrap());
    // Several processes at once: indexes and lists, none fails.
    let children: Vec<_> = (0..6)
        .map(|i| {
            let mut cmd = Command::new(SDAR);
            cmd.env("SDAR_CATALOG", &t.catalog).current_dir(t.path());
            if i % 2 == 0 {
                cmd.args(["index", a, b, "--reindex", "-q"]);
            } else {
                cmd.args(["list", "--json"]);
            }
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = rusqlite::Connection::open(&t.catalog).unwrap();
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let n: i64 = db
        .query_row(
            "SELECT count(*) FROM files WHERE kind IN ('full', 'delta')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 12);
}

#[test]
fn hostile_names_are_shown_escaped_and_odd_file_names_kept() {
    let dir = scratch();
    let d = dir.path();
    let t = d.join("t");
    fs::create_dir(&t).unwrap();
    let catalog = d.join("c.sqlite");
    let evil = "Evil\u{1b}]0;pwned\u{7}\u{202e}VM";
    let mut disk = Disk::new(d, evil, "u-evil", "0:0", "e.img", 5);
    // A file name that is not UTF-8.
    use std::os::unix::ffi::OsStrExt;
    let odd = t.join(std::ffi::OsStr::from_bytes(b"odd-\xff.full.gz"));
    disk.full(d, &catalog, &t.join("plain.full.gz"), now() - DAY);
    fs::rename(t.join("plain.full.gz"), &odd).unwrap();
    run(d, &catalog, None, &["index", t.to_str().unwrap()]).success();
    let out = run(d, &catalog, None, &["list"]).success();
    let text = out.stdout_text();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("Evil"), "{text}");
    let json_out = run(d, &catalog, None, &["list", "--json"]).success();
    let raw = json_out.stdout_text();
    assert!(
        !raw.contains('\u{1b}') && !raw.contains('\u{202e}'),
        "{raw:?}"
    );
    let doc = json(&json_out);
    assert_eq!(doc["vms"][0]["vm_name"], evil);
    // The odd name restores by VM name (the path survives the catalog).
    let dest = d.join("out.img");
    run(
        d,
        &catalog,
        None,
        &[
            "restore",
            "--vm",
            evil,
            "--to",
            dest.to_str().unwrap(),
            "--raw",
            "-q",
        ],
    )
    .success();
    assert!(fs::read(&dest).unwrap() == disk.backups[0].1);
}

#[test]
fn a_file_rewritten_with_its_old_size_and_time_is_read_again_and_never_restored_blindly() {
    let t = tree(2);
    t.index();
    // A byte of a full changed in place, its size and time kept (`touch -r`):
    // the change time still moved, so the index reads it again and finds it
    // damaged.
    let full = t.disks[3].backups[0].2.clone();
    let keep = t.path().join("time-ref");
    fs::copy(&full, &keep).unwrap();
    assert!(Command::new("touch")
        .arg("-r")
        .arg(&full)
        .arg(&keep)
        .status()
        .unwrap()
        .success());
    let mut bytes = fs::read(&full).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x55;
    fs::write(&full, &bytes).unwrap();
    assert!(Command::new("touch")
        .arg("-r")
        .arg(&keep)
        .arg(&full)
        .status()
        .unwrap()
        .success());
    let r = t.index();
    assert_eq!(r["opened"], 1, "{r:#}");
    let problems = r["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["path"] == full.to_str().unwrap()),
        "{r:#}"
    );

    // The newest delta of CRM replaced by an older one (a tape copy put
    // back over it) after the index: restoring "the newest" must not
    // restore the older backup as if it were the newer.
    let newest = t.disks[0].backups[2].2.clone();
    fs::copy(&t.disks[0].backups[1].2, &newest).unwrap();
    let dest = t.path().join("x.img");
    let to = dest.to_str().unwrap();
    let out = t.sdar(&[
        "restore", "--vm", "CRM", "--disk", "CRM", "--to", to, "--raw",
    ]);
    assert_eq!(out.code, EXIT_OTHER, "{}", out.stderr);
    assert!(
        out.stderr.contains("changed since it was indexed"),
        "{}",
        out.stderr
    );
    assert!(!dest.exists());
    // After a re-index it is the older backup, and restores as such.
    t.index();
    t.sdar(&[
        "restore", "--vm", "CRM", "--disk", "CRM", "--to", to, "--raw", "-q",
    ])
    .success();
    assert!(fs::read(&dest).unwrap() == t.disks[0].backups[1].1);
}

#[test]
fn a_target_inside_another_is_indexed_as_itself() {
    let t = tree(1);
    let inner = t.a.join("CRM");
    let (a, inner_s) = (t.a.to_str().unwrap(), inner.to_str().unwrap());
    t.sdar(&["index", inner_s, "-q"]).success();
    let outer = json(&t.sdar(&["index", a, "--json"]).success());
    // The outer walk passes over the inner target: its files are not read
    // again, nor claimed.
    let again = json(&t.sdar(&["index", a, inner_s, "--json"]).success());
    assert_eq!(again["opened"], 0, "{again:#}");
    let list = t.list(&[]);
    for b in backups_of(&list) {
        let p = b["path"].as_str().unwrap();
        if p.starts_with(inner_s) {
            assert_eq!(b["target"], inner_s, "{b:#}");
        }
    }
    assert!(outer["backups"].as_u64().unwrap() > 0);
}
