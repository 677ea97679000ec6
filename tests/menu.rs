//! The menu an archive opens when run with no arguments on a terminal,
//! driven through a real pseudo-terminal as an operator at a console would:
//! a whole restore with Enter and `y`, `q` at every step writing nothing,
//! a wrong full refused whether picked from the list or typed, an
//! interrupted restore resumed, a taken name never replaced, verify and its
//! exit code, the details screen, and no menu at all without a terminal.
//! Every restore is checked byte for byte and with `qemu-img compare`.

mod common;

use common::pty::{strip_ansi, Pty};
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// An odd sector count, so the last 64 KiB block is a short one.
const SECTORS: u64 = 6001;

// Where the fixture keeps its files, relative to its folder.
const FULL: &str = "backup/vm.full.gz";
const ARCHIVE: &str = "backup/vm-1.sdar";
/// The folder the menu runs in, so that its default destination lands here.
const OUT: &str = "out";

/// The main menu's prompt, before and after a successful restore.
const MAIN: &str = "Choose [1]: ";
const MAIN_AFTER_RESTORE: &str = "Choose [q]: ";
const START: &str = "Start the restore? (Y/n, q to go back): ";
const WRITE_VMX: &str = "Write the VM's .vmx beside the disk too? (Y/n, q to go back): ";
const RESUME: &str = "Resume it? (No starts over) (Y/n, q to go back): ";
const BACKED_OUT: &str = "Backed out: nothing was written.";
/// sdar's block size, the unit a restore proves and keeps.
const BLOCK: usize = 65_536;

/// A VM disk (`vm/base.vmdk`), its full (`backup/vm.full.gz`), the disk as
/// the VM changed it (`vm/now.vmdk`) with its .vmx, their delta archive
/// (`backup/vm-1.sdar`), and an empty `out/`.
struct Backup {
    _dir: tempfile::TempDir,
    /// The scratch folder without symlinks, as the archive sees it
    /// (`/proc/self/exe`, `getcwd`), so printed paths can be matched.
    root: PathBuf,
    /// The changed disk: what a restore must give back.
    now: Vec<u8>,
    /// The .vmx the archive carries.
    vmx: String,
    /// The full's identity, in hex.
    full_identity: String,
    /// The changed disk's identity, in hex.
    identity: String,
}

impl Backup {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn out(&self) -> PathBuf {
        self.path(OUT)
    }

    /// `out/{name}` as the menu prints it.
    fn out_file(&self, name: &str) -> String {
        self.out().join(name).display().to_string()
    }

    /// Opens the archive's menu in `out/` with `SDAR_FULL_PATH` set to
    /// `full_path`, or unset.
    fn menu(&self, full_path: Option<&Path>) -> Menu {
        let mut cmd = Command::new(self.path(ARCHIVE));
        cmd.current_dir(self.out()).env_remove("SDAR_FULL_PATH");
        if let Some(p) = full_path {
            cmd.env("SDAR_FULL_PATH", p);
        }
        let mut menu = Menu {
            pty: Pty::spawn(cmd),
        };
        menu.expect(&format!("sdar archive {}", self.path(ARCHIVE).display()));
        menu
    }

    /// Checks the restore to `out/{name}`: the flat extent holds the changed
    /// disk byte for byte and `qemu-img` finds the VMDK identical to the
    /// source.
    #[track_caller]
    fn assert_restored(&self, name: &str) {
        let stem = name.strip_suffix(".vmdk").unwrap();
        let flat = self.out().join(format!("{stem}-flat.vmdk"));
        assert_same_bytes(
            &fs::read(&flat).unwrap(),
            &self.now,
            &flat.display().to_string(),
        );
        let compare = stock(
            &self.root,
            "qemu-img",
            &[
                "compare",
                "-f",
                "vmdk",
                "-F",
                "vmdk",
                &format!("{OUT}/{name}"),
                "vm/now.vmdk",
            ],
        )
        .success();
        assert!(
            compare.stdout_text().contains("Images are identical."),
            "qemu-img compare: {}",
            compare.stdout_text()
        );
    }
}

fn backup() -> Backup {
    let dir = scratch();
    let root = fs::canonicalize(dir.path()).unwrap();
    for sub in ["vm", "backup", OUT] {
        fs::create_dir(root.join(sub)).unwrap();
    }
    let vm = root.join("vm");
    let base = sample_vmdk(&vm, "base", DescriptorKind::MonolithicFlat, SECTORS, 31);
    let full = sdar(&root, &["full", "vm/base.vmdk", "-o", FULL]).success();
    let full_identity = printed_identity(&full.stdout_text());

    let now = changed(&base.disk);
    fs::write(vm.join("now-flat.vmdk"), &now).unwrap();
    fs::write(
        vm.join("now.vmdk"),
        descriptor_text(DescriptorKind::MonolithicFlat, SECTORS, "now-flat.vmdk", 0),
    )
    .unwrap();
    let vmx = vmx_text("crm", "0:1", "now.vmdk");
    fs::write(vm.join("now.vmx"), &vmx).unwrap();
    let delta = sdar(
        &root,
        &[
            "delta",
            "vm/now.vmdk",
            "--full",
            FULL,
            "--vmx",
            "vm/now.vmx",
            "-o",
            ARCHIVE,
        ],
    )
    .success();
    let identity = printed_identity(&delta.stdout_text());
    Backup {
        _dir: dir,
        root,
        now,
        vmx,
        full_identity,
        identity,
    }
}

/// The disk as the VM left it: three runs of new bytes (one in the short
/// last block) and one whole block of data zeroed.
fn changed(base: &[u8]) -> Vec<u8> {
    let mut now = base.to_vec();
    for (i, at) in [4096, base.len() / 3 + 777, base.len() - 700]
        .into_iter()
        .enumerate()
    {
        let end = (at + 3000).min(now.len());
        now[at..end].fill(b'A' + i as u8);
    }
    let zeroed = base.len() / 2 / BLOCK * BLOCK;
    now[zeroed..zeroed + BLOCK].fill(0);
    assert_ne!(now, base);
    now
}

/// A menu session on a terminal.
struct Menu {
    pty: Pty,
}

impl Menu {
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

    /// Answers the main menu's `prompt` with `keys` (`q`, or Enter when the
    /// default is q) and returns how the archive exited.
    fn quit(mut self, prompt: &str, keys: &str) -> Finished {
        self.answer(prompt, keys);
        self.finish()
    }

    /// Waits for the archive to exit.
    fn finish(mut self) -> Finished {
        let status = self.pty.wait(TIMEOUT);
        Finished {
            status,
            screen: strip_ansi(&self.pty.transcript()),
        }
    }
}

/// A menu session that ended: its exit status and everything it showed.
struct Finished {
    status: ExitStatus,
    screen: String,
}

impl Finished {
    #[track_caller]
    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "the menu exited with {} instead of {code}; it showed:\n{}",
            self.status,
            self.screen
        );
    }
}

/// Every file under `dir`, hidden ones too, with its length and a hash of
/// its bytes: to prove that a session changed and added nothing.
fn tree(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                let mut h = DefaultHasher::new();
                h.write(&bytes);
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(rel, (bytes.len() as u64, h.finish()));
            }
        }
    }
    files
}

/// The first 16 hex digits, as the menu shows identities.
fn short(identity: &str) -> &str {
    &identity[..16]
}

/// The whole restore with nothing but Enter and one `y`: the full found
/// beside the archive, the original disk name in the current folder, the
/// .vmx beside it, then Enter quits with status 0.
#[test]
fn restore_with_enter_and_y_gives_back_the_disk() {
    let b = backup();
    let archive = b.path(ARCHIVE).display().to_string();
    let full = b.path(FULL).display().to_string();
    let dest = b.out_file("now.vmdk");
    let mut m = b.menu(None);

    let screen = m.answer(MAIN, "");
    for line in [
        "  1) Restore the disk\n",
        "  2) Verify the archive and its full\n",
        "  3) Show the backup's details\n",
        "  4) Write the .vmx file\n",
        "  q) Quit\n",
    ] {
        assert!(screen.contains(line), "no {line:?} in:\n{screen}");
    }
    let screen = m.answer("Choose the full [1]: ", "");
    assert!(
        screen.contains(&format!(
            "This archive needs the full image with identity {}.\n",
            short(&b.full_identity)
        )),
        "{screen}"
    );
    let listed = screen
        .lines()
        .find(|l| l.starts_with("  1) "))
        .unwrap_or_else(|| panic!("no full listed:\n{screen}"));
    assert!(
        listed.starts_with(&format!("  1) * {full} ")) && listed.ends_with("  matches"),
        "{listed}"
    );
    assert!(!screen.contains("  2) "), "one full only:\n{screen}");
    assert!(screen.contains("  p) type a path\n"), "{screen}");

    m.answer(&format!("Restore to [{dest}]: "), "");
    let screen = m.answer(START, "y");
    for line in [
        format!("  Archive:      {archive}\n"),
        format!("  Full:         {full}\n"),
        format!(
            "  Destination:  {dest} and {}\n",
            b.out_file("now-flat.vmdk")
        ),
        format!(
            "  Disk size:    2.9 MiB ({} bytes), preallocated\n",
            SECTORS * 512
        ),
        "  Free there:   ".to_string(),
    ] {
        assert!(screen.contains(&line), "no {line:?} in:\n{screen}");
    }
    let screen = m.answer(WRITE_VMX, "");
    assert!(
        screen.contains(&format!(
            "restored {dest} (every block verified, identity {})\n",
            b.identity
        )),
        "{screen}"
    );
    let screen = m.answer(MAIN_AFTER_RESTORE, "");
    assert!(
        !screen.contains("Point the .vmx"),
        "same name, same folder: nothing to rename:\n{screen}"
    );
    assert!(
        screen.contains(&format!("Wrote {}\n", b.out_file("crm.vmx"))),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("Done. The disk is ready: {dest}\n")),
        "{screen}"
    );
    m.finish().assert_code(EXIT_OK);

    assert_eq!(
        listing(&b.out()),
        ["crm.vmx", "now-flat.vmdk", "now.vmdk"],
        "the disk and its .vmx, and no partial file"
    );
    b.assert_restored("now.vmdk");
    assert_eq!(fs::read_to_string(b.out().join("crm.vmx")).unwrap(), b.vmx);
}

/// `q` at every prompt of a restore and at the .vmx folder goes back to
/// the main menu and writes nothing anywhere; `n` at the last question
/// too. `q` at the path prompt goes back to the list of fulls.
#[test]
fn q_at_every_step_backs_out_and_writes_nothing() {
    let b = backup();
    let before = tree(&b.root);
    let dest = b.out_file("now.vmdk");
    let mut m = b.menu(None);
    let unchanged = |m: &mut Menu, after: &str| {
        m.expect(BACKED_OUT);
        assert_eq!(tree(&b.root), before, "after q at {after}");
    };

    m.answer(MAIN, "");
    m.answer("Choose the full [1]: ", "q");
    unchanged(&mut m, "the full");

    m.answer(MAIN, "1");
    m.answer("Choose the full [1]: ", "p");
    m.answer("Path of the full image: ", "q");
    m.answer("Choose the full [1]: ", "q");
    unchanged(&mut m, "the full's path");

    m.answer(MAIN, "1");
    m.answer("Choose the full [1]: ", "");
    m.answer(&format!("Restore to [{dest}]: "), "q");
    unchanged(&mut m, "the destination");

    for keys in ["q", "n"] {
        m.answer(MAIN, "1");
        m.answer("Choose the full [1]: ", "");
        m.answer(&format!("Restore to [{dest}]: "), "");
        m.answer(START, keys);
        unchanged(&mut m, &format!("{keys:?} at the last question"));
    }

    m.answer(MAIN, "4");
    m.answer("Write the .vmx into which folder [.]: ", "q");
    unchanged(&mut m, "the .vmx folder");

    let done = m.quit(MAIN, "q");
    done.assert_code(EXIT_OK);
    assert_eq!(tree(&b.root), before);
}

/// End of input (Ctrl-D on an empty line) leaves the menu at once, even
/// in the middle of a restore's questions, with nothing written.
#[test]
fn end_of_input_leaves_without_writing() {
    let b = backup();
    let before = tree(&b.root);
    let mut m = b.menu(None);
    m.answer(MAIN, "");
    m.answer("Choose the full [1]: ", "");
    m.expect("Restore to [");
    m.pty.send("\x04");
    m.finish().assert_code(EXIT_OK);
    assert_eq!(tree(&b.root), before);

    let mut m = b.menu(None);
    m.expect(MAIN);
    m.pty.send("\x04");
    m.finish().assert_code(EXIT_OK);
    assert_eq!(tree(&b.root), before);

    // At a yes/no question too.
    let mut m = b.menu(None);
    m.answer(MAIN, "");
    m.answer("Choose the full [1]: ", "");
    m.answer(&format!("Restore to [{}]: ", b.out_file("now.vmdk")), "");
    m.expect(START);
    m.pty.send("\x04");
    m.finish().assert_code(EXIT_OK);
    assert_eq!(tree(&b.root), before);
}

/// `q` at the .vmx question after a restore skips the .vmx, says so, and
/// goes back to the main menu: the disk stays, nothing else is written.
#[test]
fn q_after_the_restore_skips_the_vmx_and_returns_to_the_menu() {
    let b = backup();
    let mut m = b.menu(None);
    m.answer(MAIN, "");
    m.answer("Choose the full [1]: ", "");
    m.answer(&format!("Restore to [{}]: ", b.out_file("now.vmdk")), "");
    m.answer(START, "y");
    let screen = m.answer(WRITE_VMX, "q");
    assert!(!screen.contains(BACKED_OUT), "{screen}");
    let screen = m.answer(MAIN_AFTER_RESTORE, "3");
    assert!(screen.contains("The .vmx was not written.\n"), "{screen}");
    m.expect("VM name:");
    m.quit(MAIN_AFTER_RESTORE, "").assert_code(EXIT_OK);
    assert_eq!(listing(&b.out()), ["now-flat.vmdk", "now.vmdk"]);
    b.assert_restored("now.vmdk");
}

/// A different full, listed first, is refused whether picked by number or
/// typed by path; a file that is not a full is refused too; nothing is
/// written. The right one, typed by path, then restores the disk.
#[test]
fn wrong_full_is_refused_and_the_right_one_restores() {
    let b = backup();
    // The right full on SDAR_FULL_PATH; a full of another disk beside the
    // archive, so it is listed first and the default must skip it.
    let store = b.path("store");
    fs::create_dir(&store).unwrap();
    fs::rename(b.path(FULL), store.join("vm.full.gz")).unwrap();
    sample_disk(&b.path("vm"), "other.img", SECTORS * 512, 32);
    let out = sdar(
        &b.root,
        &["full", "vm/other.img", "-o", "backup/other.full.gz"],
    )
    .success();
    let other_identity = printed_identity(&out.stdout_text());
    assert_ne!(other_identity, b.full_identity);
    let other = b.path("backup/other.full.gz").display().to_string();
    let right = store.join("vm.full.gz").display().to_string();
    let refused = format!(
        "Refused: {other} is not this archive's full (its identity is {}, this archive needs {}).\n",
        short(&other_identity),
        short(&b.full_identity)
    );
    let before = tree(&b.root);
    let mut m = b.menu(Some(&store));

    m.answer(MAIN, "1");
    let screen = m.answer("Choose the full [2]: ", "1");
    let lines: Vec<&str> = screen.lines().filter(|l| l.contains(") ")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("  1)   {other} "))
                && l.ends_with(&format!("  does not match ({})", short(&other_identity)))),
        "{screen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("  2) * {right} ")) && l.ends_with("  matches")),
        "{screen}"
    );
    let screen = m.answer("Choose the full [2]: ", "p");
    assert!(screen.contains(&refused), "picked by number:\n{screen}");
    m.answer("Path of the full image: ", &other);
    let screen = m.answer("Choose the full [2]: ", "p");
    assert!(screen.contains(&refused), "typed by path:\n{screen}");
    m.answer("Path of the full image: ", "../vm/now.vmdk");
    let screen = m.answer("Choose the full [2]: ", "7");
    assert!(
        screen.contains("../vm/now.vmdk is not a full image sdar can read.\n"),
        "{screen}"
    );
    let screen = m.answer("Choose the full [2]: ", "q");
    assert!(
        screen.contains("There is no full numbered 7.\n"),
        "{screen}"
    );
    m.expect(BACKED_OUT);
    assert_eq!(tree(&b.root), before, "nothing written after the refusals");

    m.answer(MAIN, "1");
    m.answer("Choose the full [2]: ", "p");
    m.answer("Path of the full image: ", &right);
    m.answer(&format!("Restore to [{}]: ", b.out_file("now.vmdk")), "");
    let screen = m.answer(START, "");
    assert!(
        screen.contains(&format!("  Full:         {right}\n")),
        "{screen}"
    );
    m.answer(WRITE_VMX, "n");
    let done = m.quit(MAIN_AFTER_RESTORE, "q");
    done.assert_code(EXIT_OK);
    assert_eq!(listing(&b.out()), ["now-flat.vmdk", "now.vmdk"]);
    b.assert_restored("now.vmdk");
}

/// An interrupted restore's hidden partial file keeps the default name and
/// is offered for resuming; `q` there leaves it untouched. Resumed, the
/// blocks it holds are proven and kept and a block of garbage in it is
/// rewritten; declined ("No starts over"), it is all rewritten. Either way
/// the disk comes back byte for byte and the partial file is gone.
#[test]
fn interrupted_restore_is_resumed_or_started_over() {
    for (keys, resumed) in [("", true), ("n", false)] {
        let b = backup();
        let partial = b.out().join(".now-flat.vmdk.sdar-partial");
        // The first half restored, one block in it overwritten with garbage.
        let mut held = b.now[..b.now.len() / 2].to_vec();
        held[BLOCK..2 * BLOCK].fill(0xa5);
        fs::write(&partial, &held).unwrap();
        let dest = b.out_file("now.vmdk");
        // What the interrupted restore's mark says (SPEC.md §19.1): only a
        // partial file it names is resumed (issue 12).
        plant_restore_mark(
            &b.path(ARCHIVE),
            &b.out().join("now.vmdk"),
            true,
            &partial,
            false,
        );
        let partial_state = watch(&partial);
        let mut m = b.menu(None);

        m.answer(MAIN, "");
        m.answer("Choose the full [1]: ", "");
        m.answer(&format!("Restore to [{dest}]: "), "");
        let screen = m.answer(RESUME, "q");
        assert!(
            screen.contains(&format!("An interrupted restore to {dest} was found (")),
            "{screen}"
        );
        m.expect(BACKED_OUT);
        partial_state.assert_unchanged("q at the resume question");
        assert_eq!(
            listing(&b.out()),
            [".now-flat.vmdk.sdar-partial", ".now.vmdk.sdar-restore"]
        );

        m.answer(MAIN, "");
        m.answer("Choose the full [1]: ", "");
        m.answer(&format!("Restore to [{dest}]: "), "");
        m.answer(RESUME, keys);
        let screen = m.answer(START, "");
        let resuming = format!(
            "  Resuming:     {} holds an interrupted restore",
            partial.display()
        );
        assert_eq!(screen.contains(&resuming), resumed, "{keys:?}:\n{screen}");
        let screen = m.answer(WRITE_VMX, "");
        let kept = if resumed {
            format!(
                "{:.1} MiB already in place (read back and proven), ",
                proven_bytes(&held, &b.now) as f64 / (1 << 20) as f64
            )
        } else {
            "already in place".to_string()
        };
        assert_eq!(
            screen.contains(&kept),
            resumed,
            "{keys:?}: {kept:?} in:\n{screen}"
        );
        m.quit(MAIN_AFTER_RESTORE, "").assert_code(EXIT_OK);
        assert_eq!(listing(&b.out()), ["crm.vmx", "now-flat.vmdk", "now.vmdk"]);
        b.assert_restored("now.vmdk");
    }
}

/// Bytes of the blocks of `disk` that an interrupted restore's `held`
/// bytes (zeros past their end) already hold.
fn proven_bytes(held: &[u8], disk: &[u8]) -> u64 {
    let mut padded = held.to_vec();
    padded.resize(disk.len(), 0);
    padded
        .chunks(BLOCK)
        .zip(disk.chunks(BLOCK))
        .filter(|(p, d)| p == d)
        .map(|(p, _)| p.len() as u64)
        .sum()
}

/// A disk of the original name is already there: the menu suggests
/// `now-restored.vmdk`, refuses the taken name however it is typed (a bare
/// name gets `.vmdk`, a folder gets the disk name), replaces nothing, and
/// points the .vmx it writes at the new name.
#[test]
fn taken_name_is_never_replaced_and_the_vmx_follows_the_new_one() {
    let b = backup();
    let taken = b.out().join("now.vmdk");
    fs::write(&taken, "someone else's disk\n").unwrap();
    let taken_state = watch(&taken);
    let dest = b.out_file("now-restored.vmdk");
    let prompt = format!("Restore to [{dest}]: ");
    let mut m = b.menu(None);

    m.answer(MAIN, "");
    m.answer("Choose the full [1]: ", "");
    m.answer(&prompt, "now");
    // A bare name is taken relative to the current folder; the next
    // suggestion is absolute again.
    let screen = m.answer(&prompt, &b.out().display().to_string());
    assert!(
        screen.contains(
            "now.vmdk already exists; the menu never replaces files. Choose another name.\n"
        ),
        "{screen}"
    );
    // A file (or a device) typed as it is: refused, never turned into
    // `plain.img.vmdk` beside it.
    let plain = b.root.join("plain.img");
    fs::write(&plain, "precious\n").unwrap();
    let screen = m.answer(&prompt, &plain.display().to_string());
    assert!(
        screen.contains(&format!(
            "{} already exists; the menu never replaces files. Choose another name.\n",
            taken.display()
        )),
        "{screen}"
    );
    let screen = m.answer(&prompt, "/dev/null");
    assert!(
        screen.contains(&format!(
            "{} exists and is not a folder; the menu never replaces files",
            plain.display()
        )),
        "{screen}"
    );
    let screen = m.answer(&prompt, "");
    assert!(
        screen.contains("/dev/null exists and is not a folder"),
        "{screen}"
    );
    m.answer(START, "y");
    m.answer(WRITE_VMX, "");
    m.answer(
        &format!("Point the .vmx's disk entry (now.vmdk) at {dest}? (Y/n, q to go back): "),
        "",
    );
    let screen = m.answer(MAIN_AFTER_RESTORE, "");
    assert!(
        screen.contains(&format!(
            "Wrote {} (its disk entry now names now-restored.vmdk)\n",
            b.out_file("crm.vmx")
        )),
        "{screen}"
    );
    m.finish().assert_code(EXIT_OK);

    taken_state.assert_unchanged("the menu's restore");
    assert_eq!(fs::read(&plain).unwrap(), b"precious\n");
    assert!(!b.root.join("plain.img.vmdk").exists());
    assert_eq!(
        listing(&b.out()),
        [
            "crm.vmx",
            "now-restored-flat.vmdk",
            "now-restored.vmdk",
            "now.vmdk"
        ]
    );
    b.assert_restored("now-restored.vmdk");
    let vmx = fs::read_to_string(b.out().join("crm.vmx")).unwrap();
    assert_eq!(
        vmx,
        b.vmx.replace(
            "\"/vmfs/volumes/datastore1/crm/now.vmdk\"",
            "\"now-restored.vmdk\""
        )
    );
}

/// Verify from the menu: OK and status 0 with the right full; with a full
/// whose data is damaged, an error and status 1 once the menu is left.
#[test]
fn verify_reports_and_sets_the_exit_status() {
    let b = backup();
    let archive = b.path(ARCHIVE).display().to_string();
    let full = b.path(FULL).display().to_string();
    let mut m = b.menu(None);
    m.answer(MAIN, "2");
    m.answer("Choose the full [1]: ", "");
    let screen = m.answer(MAIN, "q");
    assert!(
        screen.contains(&format!("OK: {archive} verified against {full}: ")),
        "{screen}"
    );
    m.finish().assert_code(EXIT_OK);

    // Damage a block of data the delta does not replace, so verifying
    // reads it from the full.
    let replaced: Vec<u64> = delta_layout(&b.path(ARCHIVE))
        .members
        .iter()
        .map(|m| m.block)
        .collect();
    let member = layout(&b.path(FULL))
        .members
        .into_iter()
        .find(|m| !m.zero && !replaced.contains(&m.block))
        .expect("an unchanged block of data");
    flip_byte(&b.path(FULL), member.offset + member.len / 2);
    let before = tree(&b.root);
    let mut m = b.menu(None);
    m.answer(MAIN, "2");
    m.answer("Choose the full [1]: ", "");
    let screen = m.answer(MAIN, "q");
    assert!(
        screen.contains("error: ") && screen.contains(&format!("block {}", member.block)),
        "the error should name block {}:\n{screen}",
        member.block
    );
    assert!(!screen.contains("OK: "), "{screen}");
    m.finish().assert_code(EXIT_INTEGRITY);
    assert_eq!(tree(&b.root), before);
}

/// The details screen shows what the backup's metadata says.
#[test]
fn details_show_the_backup_metadata() {
    let b = backup();
    let mut m = b.menu(None);
    m.answer(MAIN, "3");
    let screen = m.answer(MAIN, "q");
    for line in [
        format!("Archive:      {}\n", b.path(ARCHIVE).display()),
        format!("Identity:     {}\n", b.identity),
        format!("Needs full:   {} ", b.full_identity),
        "VM name:      crm\n".to_string(),
        format!("VM UUID:      {VM_UUID}\n"),
        "SCSI id:      0:1\n".to_string(),
        "Disk name:    now.vmdk\n".to_string(),
    ] {
        assert!(screen.contains(&line), "no {line:?} in:\n{screen}");
    }
    m.finish().assert_code(EXIT_OK);
}

/// Without a terminal and without arguments there is no menu: usage on
/// stderr, status 2, and answers waiting on stdin are not acted on.
#[test]
fn no_terminal_no_arguments_prints_usage_and_exits_2() {
    let b = backup();
    let before = tree(&b.root);
    for stdin in ["null", "pipe"] {
        let mut cmd = Command::new(b.path(ARCHIVE));
        cmd.current_dir(b.out())
            .env_remove("SDAR_FULL_PATH")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = if stdin == "null" {
            cmd.stdin(Stdio::null()).output().unwrap()
        } else {
            let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
            // The answers of a whole restore; the archive must not read them.
            let _ = child.stdin.take().unwrap().write_all(b"\n\n\ny\n\n\n");
            child.wait_with_output().unwrap()
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(EXIT_USAGE),
            "stdin {stdin}: {stderr}"
        );
        assert!(
            stderr.contains("no command given (the menu needs a terminal)"),
            "stdin {stdin}: {stderr}"
        );
        assert!(stderr.contains("Usage:"), "stdin {stdin}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "stdin {stdin}: stdout is not empty"
        );
        assert_eq!(tree(&b.root), before, "stdin {stdin}");
    }
}
