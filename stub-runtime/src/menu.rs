//! The text menu an archive opens when run on a terminal with no arguments.
//!
//! Every question has a default that Enter accepts, and `q` at any prompt
//! goes back without writing anything. Nothing is written before the last
//! "yes"; what is written goes through the same code as `restore`.

use crate::args::{FullSource, Invocation, RestoreArgs};
use crate::front::{self, RestoreFront, RunLog};
use crate::report::{self, shown};
use crate::Failure;
use archive_format::job::VmxPlan;
use archive_format::locate::{candidates, inspect, search_dirs, Candidate};
use archive_format::target::{
    flat_path, folder_of, free_space, free_vmdk_name, partial_data_path, suggested_disk_name,
    typed_destination, TargetKind, TypedDestination,
};
use archive_format::Cancel;
use archive_format::{hex, utc_stamp, DeltaArchive};
use std::fs::File;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The menu needs a person at a terminal on both ends.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// What a prompt got.
enum Answer {
    Text(String),
    /// `q`: go back.
    Back,
    /// End of input: leave the menu.
    Quit,
}

/// Prints `question [default]: ` and reads a line; Enter gives the default
/// (exactly as given: only what is shown of it is escaped).
fn ask(question: &str, default: &str) -> Answer {
    if default.is_empty() {
        print!("{question}: ");
    } else {
        print!("{question} [{}]: ", shown(default));
    }
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            println!();
            Answer::Quit
        }
        Ok(_) => match line.trim() {
            "" if default.is_empty() => Answer::Text(String::new()),
            "" => answer(default),
            s => answer(s),
        },
    }
}

fn answer(text: &str) -> Answer {
    match text {
        "q" | "Q" => Answer::Back,
        s => Answer::Text(s.to_string()),
    }
}

/// A yes/no question; Enter gives `default`. `Err` carries `q` (Back) or
/// the end of input (Quit).
fn confirm(question: &str, default: bool) -> Result<bool, Answer> {
    let hint = if default { "Y/n" } else { "y/N" };
    loop {
        match ask(&format!("{question} ({hint}, q to go back)"), "") {
            Answer::Text(t) if t.is_empty() => return Ok(default),
            Answer::Text(t) if t.eq_ignore_ascii_case("y") || t.eq_ignore_ascii_case("yes") => {
                return Ok(true)
            }
            Answer::Text(t) if t.eq_ignore_ascii_case("n") || t.eq_ignore_ascii_case("no") => {
                return Ok(false)
            }
            Answer::Text(_) => println!("Please answer y or n."),
            other => return Err(other),
        }
    }
}

/// What happened in this menu session.
#[derive(Default)]
struct Session {
    /// The disk restored, to point a .vmx at.
    restored: Option<PathBuf>,
    /// The exit code of the last restore or verify.
    code: u8,
    quit: bool,
}

pub fn run(delta: &DeltaArchive<File>, archive: &Path, inv: &Invocation) -> Result<(), Failure> {
    let mut session = Session::default();
    let m = delta.meta();
    let field = |v: &Option<String>| v.as_deref().map(shown).unwrap_or_else(|| "-".into());
    println!("sdar archive {}", path_text(archive));
    println!(
        "  VM {}, disk {}, {}, backed up {}",
        field(&m.vm_name),
        field(&m.disk_name),
        size_text(delta.header().image_size),
        m.created_unix.map_or("-".into(), utc_stamp)
    );
    let mut default = "1";
    while !session.quit {
        println!();
        println!("  1) Restore the disk");
        println!("  2) Verify the archive and its full");
        println!("  3) Show the backup's details");
        println!("  4) Write the .vmx file");
        println!("  q) Quit");
        let choice = match ask("Choose", default) {
            Answer::Text(t) => t,
            Answer::Back | Answer::Quit => break,
        };
        println!();
        match choice.as_str() {
            "1" => {
                restore_flow(delta, archive, inv, &mut session);
                if session.restored.is_some() {
                    default = "q";
                }
            }
            "2" => verify_flow(delta, archive, inv, &mut session),
            "3" => print!("{}", report::info_text(delta)),
            "4" => vmx_flow(delta, &mut session),
            _ => println!("Please choose 1, 2, 3, 4 or q."),
        }
    }
    match session.code {
        0 => Ok(()),
        code => Err(Failure::Reported(code)),
    }
}

fn backed_out() {
    println!("Backed out: nothing was written.");
}

fn restore_flow(
    delta: &DeltaArchive<File>,
    archive: &Path,
    inv: &Invocation,
    session: &mut Session,
) {
    let Some(full) = choose_full(delta, archive, session) else {
        return backed_out();
    };
    let Some((to, resume)) = choose_destination(delta, session) else {
        return backed_out();
    };
    let size = delta.header().image_size;
    let dir = folder_of(&to);
    let partial = partial_data_path(&to, &TargetKind::Vmdk { vmfs: false });
    println!();
    println!("Ready to restore:");
    println!("  Archive:      {}", path_text(archive));
    println!("  Full:         {}", path_text(&full));
    println!(
        "  Destination:  {} and {}",
        path_text(&to),
        path_text(&flat_path(&to))
    );
    println!(
        "  Disk size:    {} ({size} bytes), preallocated",
        size_text(size)
    );
    match free_space(&dir) {
        Ok(free) => println!("  Free there:   {}", size_text(free)),
        Err(e) => println!("  Free there:   unknown ({})", shown(&e.to_string())),
    }
    if resume {
        println!(
            "  Resuming:     {} holds an interrupted restore; its blocks are read back and checked",
            path_text(&partial)
        );
    }
    match confirm("Start the restore?", true) {
        Ok(true) => {}
        Ok(false) | Err(Answer::Back) => return backed_out(),
        Err(_) => {
            session.quit = true;
            return backed_out();
        }
    }
    let args = RestoreArgs {
        to: to.clone(),
        full: FullSource::Path(full),
        force: !resume && partial.exists(),
        raw: false,
        vmfs: false,
        thin: false,
        resume,
        space_check: true,
        vmx_dir: None,
        rename_disk: false,
        json: false,
        key: None,
    };
    let inv = Invocation {
        quiet: false,
        ..inv.clone()
    };
    let mut front = RestoreFront::new(archive, &args, &inv);
    match front::restore(None, &mut front, &Cancel::new()) {
        Ok(()) => {
            session.code = 0;
            session.restored = Some(to.clone());
            if delta.meta().vmx.is_some() {
                match confirm("Write the VM's .vmx beside the disk too?", true) {
                    Ok(true) => write_vmx(delta, &dir, session),
                    Ok(false) | Err(Answer::Back) => println!("The .vmx was not written."),
                    Err(_) => session.quit = true,
                }
            }
            println!("Done. The disk is ready: {}", path_text(&to));
        }
        Err(e) => report_failure(&e, session),
    }
}

fn verify_flow(
    delta: &DeltaArchive<File>,
    archive: &Path,
    inv: &Invocation,
    session: &mut Session,
) {
    let Some(full) = choose_full(delta, archive, session) else {
        return println!("Backed out.");
    };
    let inv = Invocation {
        quiet: false,
        ..inv.clone()
    };
    let mut log = RunLog::default();
    match front::verify(None, archive, &FullSource::Path(full), None, &inv, &mut log) {
        Ok(()) => session.code = 0,
        Err(e) => report_failure(&e, session),
    }
}

fn vmx_flow(delta: &DeltaArchive<File>, session: &mut Session) {
    if delta.meta().vmx.is_none() {
        return println!("This backup carries no .vmx file.");
    }
    let default = session
        .restored
        .as_deref()
        .map(folder_of)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = match ask(
        "Write the .vmx into which folder",
        &default.display().to_string(),
    ) {
        Answer::Text(t) => PathBuf::from(t),
        Answer::Back => return backed_out(),
        Answer::Quit => {
            session.quit = true;
            return backed_out();
        }
    };
    write_vmx(delta, &dir, session);
}

/// Writes the .vmx into `dir`; when the disk was restored under another
/// name, offers to point the .vmx at it.
fn write_vmx(delta: &DeltaArchive<File>, dir: &Path, session: &mut Session) {
    let meta = delta.meta();
    let mut rename = None;
    if let Some(disk) = &session.restored {
        let new_name = disk.file_name().map(|n| n.to_string_lossy().into_owned());
        if new_name.as_deref() != meta.disk_name.as_deref() || folder_of(disk) != dir {
            let question = format!(
                "Point the .vmx's disk entry ({}) at {}?",
                meta.disk_name.as_deref().map(shown).unwrap_or_default(),
                path_text(disk)
            );
            match confirm(&question, true) {
                Ok(true) => rename = Some(disk.as_path()),
                Ok(false) => {}
                Err(Answer::Back) => return println!("The .vmx was not written."),
                Err(_) => {
                    session.quit = true;
                    return println!("The .vmx was not written.");
                }
            }
        }
    }
    match VmxPlan::new(meta, dir, rename, false).and_then(VmxPlan::write) {
        Ok(vmx) => println!("Wrote {}{}", path_text(&vmx.path), shown(&vmx.note)),
        Err(e) => println!(
            "Cannot write the .vmx: {}",
            archive_format::display::escape_lines(&e.to_string())
        ),
    }
}

fn report_failure(e: &Failure, session: &mut Session) {
    println!(
        "error: {}",
        archive_format::display::escape_lines(&e.to_string())
    );
    session.code = e.exit_code();
}

/// Lists the fulls found beside the archive and on `SDAR_FULL_PATH`, marks
/// the one whose identity matches, and lets the user pick one or type a
/// path. A full that does not match is refused.
fn choose_full(
    delta: &DeltaArchive<File>,
    archive: &Path,
    session: &mut Session,
) -> Option<PathBuf> {
    let needed = delta.header().base_identity;
    let search_path = std::env::var_os("SDAR_FULL_PATH");
    let dirs = search_dirs(archive, search_path.as_deref());
    let found = candidates(&dirs, delta.meta().base_name.as_deref());
    println!(
        "This archive needs the full image with identity {}.",
        short(&needed)
    );
    if found.is_empty() {
        println!(
            "No full image was found in {}.",
            dirs.iter()
                .map(|d| path_text(d))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        println!("Full images found (* = the one this archive needs):");
        let width = found
            .iter()
            .map(|c| path_text(&c.path).chars().count())
            .max()
            .unwrap_or(0);
        for (i, c) in found.iter().enumerate() {
            println!("  {}) {}", i + 1, candidate_line(c, &needed, width));
        }
    }
    println!("  p) type a path");
    let default = found
        .iter()
        .position(|c| c.matches(&needed))
        .map_or("p".to_string(), |i| (i + 1).to_string());
    loop {
        let choice = match ask("Choose the full", &default) {
            Answer::Text(t) => t,
            Answer::Back => return None,
            Answer::Quit => {
                session.quit = true;
                return None;
            }
        };
        let picked = match choice.parse::<usize>() {
            Ok(n) if (1..=found.len()).contains(&n) => Some(found[n - 1].clone()),
            Ok(_) => {
                println!("There is no full numbered {choice}.");
                continue;
            }
            Err(_) => {
                let path = if choice == "p" {
                    match ask("Path of the full image", "") {
                        Answer::Text(t) if t.is_empty() => continue,
                        Answer::Text(t) => PathBuf::from(t),
                        Answer::Back => continue,
                        Answer::Quit => {
                            session.quit = true;
                            return None;
                        }
                    }
                } else {
                    PathBuf::from(&choice)
                };
                let c = inspect(&path);
                if c.is_none() {
                    println!("{} is not a full image sdar can read.", path_text(&path));
                    continue;
                }
                c
            }
        };
        let c = picked.expect("checked above");
        if c.matches(&needed) {
            return Some(c.path);
        }
        println!(
            "Refused: {} is not this archive's full (its identity is {}, this archive needs {}).",
            path_text(&c.path),
            c.identity.map_or("unreadable".into(), |h| short(&h)),
            short(&needed)
        );
    }
}

fn candidate_line(c: &Candidate, needed: &archive_format::Hash, width: usize) -> String {
    let mark = if c.matches(needed) { "*" } else { " " };
    let verdict = match c.identity {
        Some(_) if c.matches(needed) => "matches".to_string(),
        Some(h) => format!("does not match ({})", short(&h)),
        None => "unreadable".to_string(),
    };
    format!(
        "{mark} {:width$}  {:>10}  {}  {verdict}",
        path_text(&c.path),
        size_text(c.size),
        utc_stamp(c.modified)
    )
}

/// Asks where to restore, suggesting the original disk name; returns the
/// destination and whether to resume an interrupted restore there.
fn choose_destination(
    delta: &DeltaArchive<File>,
    session: &mut Session,
) -> Option<(PathBuf, bool)> {
    let disk_name = suggested_disk_name(delta.meta().disk_name.as_deref());
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut default = free_vmdk_name(&here, &disk_name);
    loop {
        let answer = match ask("Restore to", &default.display().to_string()) {
            Answer::Text(t) => PathBuf::from(t),
            Answer::Back => return None,
            Answer::Quit => {
                session.quit = true;
                return None;
            }
        };
        match typed_destination(&answer, &disk_name, &here) {
            TypedDestination::NotAFolder(p) => println!(
                "{} exists and is not a folder; the menu never replaces files or writes to \
                 devices. Type a new name, or a folder to restore into.",
                path_text(&p)
            ),
            TypedDestination::Taken { taken, free } => {
                println!(
                    "{} already exists; the menu never replaces files. Choose another name.",
                    path_text(&taken)
                );
                default = free;
            }
            TypedDestination::NoFolder(dir) => {
                println!("The folder {} does not exist.", path_text(&dir))
            }
            TypedDestination::Ready {
                to,
                partial_bytes: Some(written),
            } => {
                println!(
                    "An interrupted restore to {} was found ({} written).",
                    path_text(&to),
                    size_text(written)
                );
                return match confirm("Resume it? (No starts over)", true) {
                    Ok(resume) => Some((to, resume)),
                    Err(Answer::Back) => None,
                    Err(_) => {
                        session.quit = true;
                        None
                    }
                };
            }
            TypedDestination::Ready {
                to,
                partial_bytes: None,
            } => return Some((to, false)),
        }
    }
}

/// A path as the menu shows it: the disk name in it came from the backup,
/// and a file found on the search path may be named by anyone.
fn path_text(path: &Path) -> String {
    shown(&path.display().to_string())
}

fn short(h: &archive_format::Hash) -> String {
    hex(&h[..8])
}

fn size_text(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_names_hold_no_unsafe_character() {
        assert_eq!(
            suggested_disk_name(Some("\u{1b}]0;pwned\u{7}\u{202e}kmdv.exe\r\n.vmdk")),
            "_]0;pwned__kmdv.exe__.vmdk"
        );
        assert_eq!(suggested_disk_name(Some("dir/CRM.vmdk")), "CRM.vmdk");
        assert_eq!(suggested_disk_name(Some("..")), "restored.vmdk");
        assert_eq!(suggested_disk_name(Some("\u{2066}")), "_");
        assert_eq!(suggested_disk_name(None), "restored.vmdk");
    }

    #[test]
    fn messages_keep_their_lines_and_escape_the_rest() {
        assert_eq!(
            archive_format::display::escape_lines("a\u{1b}[2J\nb\rc"),
            "a\\e[2J\nb\\rc"
        );
    }
}
