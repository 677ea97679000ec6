//! Text from a backup's metadata is data, not terminal output: a VM name,
//! disk name or .vmx `displayName` holding an OSC title sequence, a
//! clear-screen sequence, line breaks and bidirectional overrides reaches
//! `sdar info`, an archive's `info`, their JSON and the menu only escaped,
//! and the name the menu suggests for the restored disk holds none of it.

mod common;

use common::pty::Pty;
use common::*;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// An OSC sequence that retitles the terminal, a clear screen, a newline
/// and a carriage return (which would forge a line of output), and a
/// right-to-left override and a left-to-right isolate (which reorder text).
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\n\r\u{202E}\u{2066}";
/// A .vmx value is one line: the same without the line breaks.
const HOSTILE_LINE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202E}\u{2066}";

/// Characters a terminal would obey or that reorder what it shows.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Fails on any unsafe character in `bytes` but the newlines that end lines
/// (and, on a terminal, the carriage return the line discipline puts before
/// each of them).
#[track_caller]
fn assert_terminal_safe(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let line_end = c == '\n' || (c == '\r' && chars.peek() == Some(&'\n'));
        assert!(
            line_end || !unsafe_char(c),
            "{what} showed the raw character {c:?}:\n{text:?}"
        );
    }
}

/// The value of `Label:` in text output.
fn field(text: &str, label: &str) -> String {
    let prefix = format!("{label}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {label:?} in\n{text}"))
        .trim()
        .to_string()
}

/// A disk whose file name carries the hostile text, its full (named with
/// part of it, so the delta's base name does too) made with a hostile
/// `--vm-name`, and a delta made with a .vmx whose `displayName` is
/// hostile, side by side in `backup/`; an empty `out/`.
struct Backup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    disk_name: String,
    full: String,
    full_name: String,
    vm_name: String,
    vmx_name: String,
}

const ARCHIVE: &str = "backup/vm.sdar";

fn backup() -> Backup {
    let dir = scratch();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir(root.join("backup")).unwrap();
    fs::create_dir(root.join("out")).unwrap();
    let disk_name = format!("disk{HOSTILE}.img");
    sample_disk(&root, "disk.raw", 1 << 20, 12);
    fs::rename(root.join("disk.raw"), root.join(&disk_name)).unwrap();
    let full_name = format!("base{HOSTILE_LINE}.full.gz");
    let full = format!("backup/{full_name}");
    let vm_name = format!("vm{HOSTILE}");
    sdar(
        &root,
        &["full", &disk_name, "--vm-name", &vm_name, "-o", &full, "-q"],
    )
    .success();
    let vmx_name = format!("crm{HOSTILE_LINE}");
    fs::write(root.join("vm.vmx"), vmx_text(&vmx_name, "0:1", "disk.vmdk")).unwrap();
    sdar(
        &root,
        &[
            "delta", &disk_name, "--full", &full, "--vmx", "vm.vmx", "-o", ARCHIVE, "-q",
        ],
    )
    .success();
    Backup {
        _dir: dir,
        root,
        disk_name,
        full,
        full_name,
        vm_name,
        vmx_name,
    }
}

#[test]
fn sdar_info_shows_metadata_escaped() {
    let b = backup();
    for file in [b.full.as_str(), ARCHIVE] {
        let out = sdar(&b.root, &["info", file]).success();
        assert_terminal_safe(&out.stdout, &format!("sdar info {file}"));
        let text = out.stdout_text();
        assert_eq!(
            field(&text, "Disk name"),
            "disk\\e]0;pwned\\u{0007}\\e[2J\\n\\r\\u{202E}\\u{2066}.img",
            "{text}"
        );
    }
    let text = sdar(&b.root, &["info", &b.full]).success().stdout_text();
    assert_eq!(
        field(&text, "VM name"),
        "vm\\e]0;pwned\\u{0007}\\e[2J\\n\\r\\u{202E}\\u{2066}"
    );
    let text = sdar(&b.root, &["info", ARCHIVE]).success().stdout_text();
    assert_eq!(
        field(&text, "VM name"),
        "crm\\e]0;pwned\\u{0007}\\e[2J\\u{202E}\\u{2066}"
    );
    assert_eq!(
        field(&text, "Full name"),
        "base\\e]0;pwned\\u{0007}\\e[2J\\u{202E}\\u{2066}.full.gz"
    );
}

#[test]
fn archive_info_shows_metadata_escaped() {
    let b = backup();
    let out = run_in(
        &b.root,
        &b.root.join(ARCHIVE).display().to_string(),
        &["info"],
    )
    .success();
    assert_terminal_safe(&out.stdout, "./vm.sdar info");
    let text = out.stdout_text();
    assert_eq!(
        field(&text, "VM name"),
        "crm\\e]0;pwned\\u{0007}\\e[2J\\u{202E}\\u{2066}"
    );
    assert!(field(&text, "Disk name").starts_with("disk\\e]0;pwned"));
}

/// JSON keeps every name exactly, and escapes every unsafe character: JSON
/// itself requires it only of C0 controls, so DEL, C1 and the overrides
/// need a `\u` escape too.
#[test]
fn info_json_escapes_controls_and_overrides() {
    let b = backup();
    let archive = b.root.join(ARCHIVE).display().to_string();
    let runs: [(&str, Vec<&str>, &str); 3] = [
        (
            "sdar info --json FULL",
            vec!["info", "--json", &b.full],
            "full",
        ),
        (
            "sdar info --json ARCHIVE",
            vec!["info", "--json", ARCHIVE],
            "delta",
        ),
        ("./vm.sdar info --json", vec!["info", "--json"], "delta"),
    ];
    for (what, args, kind) in runs {
        let out = if what.starts_with("./") {
            run_in(&b.root, &archive, &args)
        } else {
            sdar(&b.root, &args)
        }
        .success();
        assert_terminal_safe(&out.stdout, what);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", out.stdout_text()));
        let meta = &doc["meta"];
        assert_eq!(meta["disk_name"], b.disk_name.as_str(), "{what}");
        match kind {
            "full" => assert_eq!(meta["vm_name"], b.vm_name.as_str(), "{what}"),
            _ => {
                assert_eq!(meta["vm_name"], b.vmx_name.as_str(), "{what}");
                assert_eq!(meta["base_name"], b.full_name.as_str(), "{what}");
            }
        }
        let raw = out.stdout_text();
        for escape in ["\\u001b]0;pwned\\u0007", "\\u202e", "\\u2066"] {
            assert!(
                raw.to_lowercase().contains(escape),
                "{what}: no {escape}:\n{raw}"
            );
        }
    }
}

/// The menu's summary, details screen, lists and prompts show the names
/// escaped, and the destination it suggests, accepted with Enter, is a
/// plain file name.
#[test]
fn menu_shows_metadata_escaped_and_suggests_a_safe_name() {
    let b = backup();
    let out = b.root.join("out");
    let mut cmd = Command::new(b.root.join(ARCHIVE));
    cmd.current_dir(&out).env_remove("SDAR_FULL_PATH");
    let mut pty = Pty::spawn(cmd);
    pty.expect("Choose [1]: ", TIMEOUT);
    pty.send("3\r");
    pty.expect("Choose [1]: ", TIMEOUT);
    pty.send("1\r");
    pty.expect("Choose the full [1]: ", TIMEOUT);
    pty.send("\r");
    let prompt = pty.expect("]: ", TIMEOUT);
    assert!(prompt.contains("Restore to ["), "{prompt:?}");
    pty.send("\r");
    pty.expect("Start the restore? (Y/n, q to go back): ", TIMEOUT);
    // Everything up to here: the restore's live progress line is the
    // runtime's own escape sequence, not the backup's.
    let before_restore = pty.transcript();
    assert_terminal_safe(before_restore.as_bytes(), "the menu");
    for shown in [
        "VM crm\\e]0;pwned\\u{0007}\\e[2J\\u{202E}\\u{2066}, disk disk\\e]0;pwned",
        "Full name:    base\\e]0;pwned",
    ] {
        assert!(
            before_restore.contains(shown),
            "the menu did not show {shown:?}:\n{before_restore}"
        );
    }
    pty.send("\r");
    pty.expect(
        "Write the VM's .vmx beside the disk too? (Y/n, q to go back): ",
        TIMEOUT,
    );
    pty.send("n\r");
    pty.expect("Choose [q]: ", TIMEOUT);
    pty.send("q\r");
    let status = pty.wait(TIMEOUT);
    assert_eq!(status.code(), Some(EXIT_OK), "{}", pty.transcript());
    let names = listing(&out);
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        assert!(!name.chars().any(unsafe_char), "unsafe file name {name:?}");
        assert!(!name.starts_with('.'), "hidden file name {name:?}");
    }
    assert!(names.iter().any(|n| n.ends_with("-flat.vmdk")), "{names:?}");
    let restored = names.iter().find(|n| !n.ends_with("-flat.vmdk")).unwrap();
    let compare = stock(
        &out,
        "qemu-img",
        &[
            "compare",
            "-f",
            "vmdk",
            "-F",
            "raw",
            restored,
            &b.root.join(&b.disk_name).display().to_string(),
        ],
    );
    assert_eq!(
        compare.code,
        0,
        "qemu-img compare: {}",
        compare.stdout_text()
    );
}

/// `extract-vmx` without `-o` gives the .vmx's bytes to a pipe as they are,
/// and on a terminal shows them with the hostile displayName escaped; an
/// error quoting a hostile name (here the full's, not found) is escaped too.
#[test]
fn extract_vmx_and_errors_reach_a_terminal_escaped() {
    let b = backup();
    let piped = sdar(&b.root, &["extract-vmx", ARCHIVE]).success();
    assert!(
        piped.stdout_text().contains(&b.vmx_name),
        "a pipe gets the raw .vmx"
    );
    let mut cmd = Command::new(SDAR);
    cmd.current_dir(&b.root).args(["extract-vmx", ARCHIVE]);
    let mut pty = Pty::spawn(cmd);
    pty.wait(TIMEOUT);
    let shown = pty.transcript();
    assert_terminal_safe(shown.as_bytes(), "extract-vmx on a terminal");
    assert!(shown.contains("crm\\e]0;pwned"), "{shown:?}");

    fs::remove_file(b.root.join(&b.full)).unwrap();
    let mut cmd = Command::new(b.root.join(ARCHIVE));
    cmd.current_dir(&b.root)
        .env_remove("SDAR_FULL_PATH")
        .args(["verify", "--full", &b.full]);
    let mut pty = Pty::spawn(cmd);
    pty.wait(TIMEOUT);
    let shown = pty.transcript();
    assert!(shown.contains("error: "), "{shown:?}");
    assert_terminal_safe(shown.as_bytes(), "an error naming a hostile file");
}
