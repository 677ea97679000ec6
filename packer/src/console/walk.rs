//! A restore, step by step: the VM or the disk, the date, the backup, its
//! full, where to and under which name, a summary, then run it now or queue
//! it. `0` goes back one step; nothing is written before the last answer.

use super::prompt::{ask, confirm, Answer, List, Pick};
use super::Session;
use crate::catalog::CatalogArgs;
use crate::list::{shown_in_target, Fulls};
use crate::progress::human;
use crate::restore::RestoreCliArgs;
use archive_format::display::escape;
use archive_format::job::locate::inspect;
use archive_format::target::{
    flat_path, folder_of, free_space, free_vmdk_name, suggested_disk_name, typed_destination,
    TypedDestination,
};
use archive_format::{hex, Hash};
use sdar_catalog::time::show_day;
use sdar_catalog::{Backup, Catalog, Filter, Kind};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How the first step groups the backups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Vm,
    Disk,
}

/// A step's outcome.
enum Flow<T> {
    Go(T),
    Back,
    Quit,
}

impl<T> From<Pick> for Flow<T> {
    fn from(p: Pick) -> Self {
        match p {
            Pick::Back => Flow::Back,
            _ => Flow::Quit,
        }
    }
}

/// What to do with an interrupted restore found at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Partial {
    None,
    Resume,
    StartOver,
}

/// The answers so far.
#[derive(Default)]
struct Answers {
    /// The backups of the VM or disk chosen.
    subject: Vec<Backup>,
    /// The day chosen (`YYYY-MM-DD`), or every day.
    day: Option<String>,
    delta: Option<Backup>,
    full: Option<PathBuf>,
    dest: Option<(PathBuf, Partial)>,
}

/// A restore chosen from `catalog` (opened from `args`, where a queued job
/// goes too).
pub fn restore(catalog: &Catalog, args: &CatalogArgs, by: By, session: &mut Session) {
    let all = match catalog.backups(&Filter::default()) {
        Ok(all) => all,
        Err(e) => return super::report_error(&crate::catalog::error(e), session),
    };
    if all.is_empty() {
        println!(
            "The catalog holds no backups yet: `sdar index FOLDER` adds the backups in a folder."
        );
        return;
    }
    let fulls: Vec<Backup> = all
        .iter()
        .filter(|b| b.kind == Kind::Full)
        .cloned()
        .collect();
    let fulls = Fulls::new(&fulls);
    let mut a = Answers::default();
    let mut step = 0;
    loop {
        let flow = match step {
            0 => subject(&all, by).map(|s| a.subject = s),
            1 => day(&a.subject).map(|d| a.day = d),
            2 => backup(&a, &fulls).map(|d| a.delta = Some(d)),
            3 => full(catalog, a.delta.as_ref().expect("chosen")).map(|f| a.full = Some(f)),
            4 => destination(a.delta.as_ref().expect("chosen")).map(|d| a.dest = Some(d)),
            5 => finish(args, &a, session),
            _ => return,
        };
        match flow {
            Flow::Go(()) => step += 1,
            Flow::Back if step == 0 => return,
            Flow::Back => step -= 1,
            Flow::Quit => {
                session.quit = true;
                return println!("Left the console: nothing was written.");
            }
        }
    }
}

impl<T> Flow<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Flow<U> {
        match self {
            Flow::Go(t) => Flow::Go(f(t)),
            Flow::Back => Flow::Back,
            Flow::Quit => Flow::Quit,
        }
    }
}

/// The VMs (a name and a UUID: two VMs of one name are two lines), or the
/// disks (a disk name, its SCSI id and its VM).
fn subject(all: &[Backup], by: By) -> Flow<Vec<Backup>> {
    type Key = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let key = |b: &Backup| -> Key {
        match by {
            By::Vm => (b.vm_name.clone(), b.vm_uuid.clone(), None, None),
            By::Disk => (
                b.disk_name.clone(),
                b.scsi_id.clone(),
                b.vm_name.clone(),
                b.vm_uuid.clone(),
            ),
        }
    };
    let mut groups: Vec<(Key, Vec<Backup>)> = Vec::new();
    for b in all {
        let k = key(b);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(b.clone()),
            None => groups.push((k, vec![b.clone()])),
        }
    }
    groups.sort_by(|x, y| x.0.cmp(&y.0));
    let text = |s: &Option<String>| escape(s.as_deref().unwrap_or("-")).into_owned();
    let width = groups
        .iter()
        .map(|((n, ..), _)| text(n).chars().count())
        .max()
        .unwrap_or(0);
    let lines = groups
        .iter()
        .map(|((first, second, vm, uuid), v)| {
            let span = span(v);
            match by {
                By::Vm => format!(
                    "{:width$}  UUID {}  {}, {span}",
                    text(first),
                    text(second),
                    count(v.len(), "backup")
                ),
                By::Disk => format!(
                    "{:width$}  SCSI {}  VM {} (UUID {})  {}, {span}",
                    text(first),
                    text(second),
                    text(vm),
                    text(uuid),
                    count(v.len(), "backup")
                ),
            }
        })
        .collect();
    let (what, question, title) = match by {
        By::Vm => ("VM", "Choose the VM", "The VMs in the catalog:"),
        By::Disk => ("disk", "Choose the disk", "The disks in the catalog:"),
    };
    println!("{title}");
    let list = List {
        what,
        question,
        header: None,
        lines,
        default: Some(0),
        default_key: None,
        filter: true,
        extras: Vec::new(),
    };
    match list.choose() {
        Pick::Item(i) => Flow::Go(groups.swap_remove(i).1),
        other => other.into(),
    }
}

/// `1 backup`, `2 backups`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `2026-12-01 to 2026-12-05`, or one day.
fn span(v: &[Backup]) -> String {
    let days: Vec<String> = v.iter().map(day_of).collect();
    let first = days.iter().min().cloned().unwrap_or_default();
    let last = days.iter().max().cloned().unwrap_or_default();
    if first == last {
        first
    } else {
        format!("{first} to {last}")
    }
}

fn day_of(b: &Backup) -> String {
    b.created.map_or_else(|| "no date".into(), show_day)
}

/// The days with backups, newest first, or all of them.
fn day(subject: &[Backup]) -> Flow<Option<String>> {
    let mut days: Vec<(String, usize, usize)> = Vec::new();
    for b in subject {
        let d = day_of(b);
        let delta = usize::from(b.kind == Kind::Delta);
        match days.iter_mut().find(|(x, ..)| *x == d) {
            Some((_, n, deltas)) => {
                *n += 1;
                *deltas += delta;
            }
            None => days.push((d, 1, delta)),
        }
    }
    days.sort_by(|x, y| y.0.cmp(&x.0));
    let lines = days
        .iter()
        .map(|(d, n, deltas)| {
            format!(
                "{d}  {} ({})",
                count(*n, "backup"),
                count(*deltas, "delta archive")
            )
        })
        .collect();
    println!("The days with backups (UTC), newest first:");
    let list = List {
        what: "day",
        question: "Choose the day",
        header: None,
        lines,
        default: Some(0),
        default_key: None,
        filter: true,
        extras: vec![("a", "every day".to_string())],
    };
    match list.choose() {
        Pick::Item(i) => Flow::Go(Some(days.swap_remove(i).0)),
        Pick::Extra => Flow::Go(None),
        other => other.into(),
    }
}

/// The backups of the day, newest first. A full is restored through its
/// companion, the empty delta `sdar full` writes beside it.
fn backup(a: &Answers, fulls: &Fulls) -> Flow<Backup> {
    let mut list: Vec<&Backup> = a
        .subject
        .iter()
        .filter(|b| a.day.as_ref().is_none_or(|d| day_of(b) == *d))
        .collect();
    list.sort_by(|x, y| {
        y.created
            .cmp(&x.created)
            .then(x.kind.name().cmp(y.kind.name()))
            .then(x.path.cmp(&y.path))
    });
    let disk_width = list
        .iter()
        .map(|b| {
            escape(b.disk_name.as_deref().unwrap_or("-"))
                .chars()
                .count()
        })
        .max()
        .unwrap_or(0)
        .max(4);
    let lines = list
        .iter()
        .map(|b| {
            let missing = b.kind == Kind::Delta && !fulls.for_delta(b).iter().any(|(_, m)| *m);
            format!(
                "{:<19}  {:<5}  {:>10}  {:<4}  {:disk_width$}  {}{}",
                b.created_text(),
                b.kind.name(),
                human(b.size),
                escape(b.scsi_id.as_deref().unwrap_or("-")),
                escape(b.disk_name.as_deref().unwrap_or("-")),
                shown_in_target(b),
                if missing { "  (no full found)" } else { "" }
            )
        })
        .collect();
    println!(
        "The backups{}, newest first:",
        a.day
            .as_ref()
            .map(|d| format!(" of {d}"))
            .unwrap_or_default()
    );
    let chooser = List {
        what: "backup",
        question: "Choose the backup",
        header: Some(format!(
            "{:<19}  {:<5}  {:>10}  {:<4}  {:disk_width$}  Target / File",
            "Date (UTC)", "Type", "Size", "SCSI", "Disk"
        )),
        lines,
        default: list.iter().position(|b| b.kind == Kind::Delta),
        default_key: None,
        filter: true,
        extras: Vec::new(),
    };
    loop {
        let b = match chooser.choose() {
            Pick::Item(i) => list[i],
            other => return other.into(),
        };
        if b.kind == Kind::Delta {
            return Flow::Go(b.clone());
        }
        // The companion restores the full as it is: it needs that full and
        // restores the same disk.
        let companion = a.subject.iter().find(|d| {
            d.kind == Kind::Delta && d.identity == b.identity && d.base_identity == Some(b.identity)
        });
        match companion {
            Some(d) => {
                println!(
                    "A full image is restored through its companion delta: {}",
                    shown_path(&d.path)
                );
                return Flow::Go(d.clone());
            }
            None => println!(
                "{} is a full image, and no companion delta of it is in the catalog: \
                 `sdar companion FULL` writes one beside it, then `sdar index FOLDER`.",
                shown_path(&b.path)
            ),
        }
    }
}

/// `TARGET / FILE`, escaped.
fn shown_path(p: &Path) -> String {
    escape(&p.display().to_string()).into_owned()
}

fn short(h: &Hash) -> String {
    hex(&h[..8])
}

/// The fulls that could serve the delta, `*` on those whose identity it
/// needs; only one of those is taken, from the list or typed.
fn full(catalog: &Catalog, delta: &Backup) -> Flow<PathBuf> {
    let needed = delta.base_identity.unwrap_or([0; 32]);
    let mut found = match catalog.fulls_for(delta) {
        Ok(f) => f,
        Err(e) => {
            println!(
                "error: {}",
                archive_format::display::escape_lines(&e.to_string())
            );
            Vec::new()
        }
    };
    // Matching ones first, and among them one in the delta's own target.
    found.sort_by_key(|m| (!m.matches, m.full.target != delta.target));
    println!(
        "{} needs the full image with identity {}.",
        shown_path(&delta.path),
        short(&needed)
    );
    if !found.iter().any(|m| m.matches) {
        println!(
            "warning: no full with that identity is in any indexed target{}; index the folder \
             that holds it (`sdar index FOLDER`), or type its path.",
            delta
                .base_name
                .as_deref()
                .map(|n| format!(" (it was made as {})", escape(n)))
                .unwrap_or_default()
        );
    }
    let lines = found
        .iter()
        .map(|m| {
            format!(
                "{} {}  {:>10}  {}  {}",
                if m.matches { "*" } else { " " },
                shown_path(&m.full.path),
                human(m.full.size),
                m.full.created_text(),
                if m.matches {
                    "matches".to_string()
                } else {
                    format!("does not match ({})", short(&m.full.identity))
                }
            )
        })
        .collect();
    println!("Full images of this disk (* = the one this backup needs):");
    let list = List {
        what: "full",
        question: "Choose the full",
        header: None,
        lines,
        default: found.iter().position(|m| m.matches),
        default_key: (!found.iter().any(|m| m.matches)).then_some("p"),
        filter: true,
        extras: vec![("p", "type a path".to_string())],
    };
    loop {
        let (path, identity) = match list.choose() {
            Pick::Item(i) => (found[i].full.path.clone(), Some(found[i].full.identity)),
            Pick::Extra => match ask("Path of the full image", "") {
                Answer::Text(t) if t.is_empty() => continue,
                Answer::Text(t) => {
                    let path = PathBuf::from(t);
                    match inspect(&path) {
                        Some(c) => (path, c.identity),
                        None => {
                            println!("{} is not a full image sdar can read.", shown_path(&path));
                            continue;
                        }
                    }
                }
                Answer::Back => continue,
                Answer::Quit => return Flow::Quit,
            },
            other => return other.into(),
        };
        if identity == Some(needed) {
            return Flow::Go(path);
        }
        println!(
            "Refused: {} is not this backup's full (its identity is {}, this backup needs {}).",
            shown_path(&path),
            identity.map_or("unreadable".into(), |h| short(&h)),
            short(&needed)
        );
    }
}

/// Asks where to restore, suggesting the backup's disk name in the current
/// folder; never a name already taken.
fn destination(delta: &Backup) -> Flow<(PathBuf, Partial)> {
    let disk_name = suggested_disk_name(delta.disk_name.as_deref());
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut default = free_vmdk_name(&here, &disk_name);
    loop {
        let answer = match ask("Restore to", &default.display().to_string()) {
            Answer::Text(t) if t.is_empty() => continue,
            Answer::Text(t) => here.join(t),
            Answer::Back => return Flow::Back,
            Answer::Quit => return Flow::Quit,
        };
        match typed_destination(&answer, &disk_name, &here) {
            TypedDestination::NotAFolder(p) => println!(
                "{} exists and is not a folder; the console never replaces files or writes to \
                 devices. Type a new name, or a folder to restore into.",
                shown_path(&p)
            ),
            TypedDestination::Taken { taken, free } => {
                println!(
                    "{} already exists; the console never replaces files. Choose another name.",
                    shown_path(&taken)
                );
                default = free;
            }
            TypedDestination::NoFolder(dir) => {
                println!("The folder {} does not exist.", shown_path(&dir))
            }
            TypedDestination::Ready {
                to,
                partial_bytes: Some(written),
            } => {
                println!(
                    "An interrupted restore to {} was found ({} written).",
                    shown_path(&to),
                    human(written)
                );
                return match confirm("Resume it? (No starts over)", true) {
                    Ok(true) => Flow::Go((to, Partial::Resume)),
                    Ok(false) => Flow::Go((to, Partial::StartOver)),
                    Err(Answer::Back) => Flow::Back,
                    Err(_) => Flow::Quit,
                };
            }
            TypedDestination::Ready {
                to,
                partial_bytes: None,
            } => return Flow::Go((to, Partial::None)),
        }
    }
}

/// The summary, then: run the restore in this process, or queue it.
fn finish(catalog: &CatalogArgs, a: &Answers, session: &mut Session) -> Flow<()> {
    let (Some(delta), Some(full), Some((to, partial))) = (&a.delta, &a.full, &a.dest) else {
        return Flow::Back;
    };
    let text = |s: &Option<String>| escape(s.as_deref().unwrap_or("-")).into_owned();
    println!();
    println!("Ready to restore:");
    println!(
        "  VM:           {} (UUID {})",
        text(&delta.vm_name),
        text(&delta.vm_uuid)
    );
    println!(
        "  Disk:         {}, SCSI {}, backed up {} UTC",
        text(&delta.disk_name),
        text(&delta.scsi_id),
        delta.created_text()
    );
    println!("  Archive:      {}", shown_path(&delta.path));
    println!("  Full:         {}", shown_path(full));
    println!(
        "  Destination:  {} and {}",
        shown_path(to),
        shown_path(&flat_path(to))
    );
    println!(
        "  Disk size:    {} ({} bytes), preallocated",
        human(delta.image_size),
        delta.image_size
    );
    match free_space(&folder_of(to)) {
        Ok(free) => println!("  Free there:   {}", human(free)),
        Err(e) => println!("  Free there:   unknown ({})", escape(&e.to_string())),
    }
    match partial {
        Partial::Resume => println!(
            "  Resuming:     the interrupted restore there; its blocks are read back and checked"
        ),
        Partial::StartOver => {
            println!("  Starting over: the interrupted restore there is discarded")
        }
        Partial::None => {}
    }
    let mut args: Vec<OsString> = vec![
        "--full".into(),
        full.clone().into(),
        "--to".into(),
        to.clone().into(),
    ];
    match partial {
        Partial::Resume => args.push("--resume".into()),
        Partial::StartOver => args.push("--force".into()),
        Partial::None => {}
    }
    let list = List {
        what: "choice",
        question: "Run it now or queue it",
        header: None,
        lines: vec![
            "Run the restore now, here".to_string(),
            "Submit it to the restore queue (`sdar daemon` runs it)".to_string(),
        ],
        default: Some(0),
        default_key: None,
        filter: false,
        extras: Vec::new(),
    };
    match list.choose() {
        Pick::Item(0) => run_now(&delta.path, args, to, session),
        Pick::Item(_) => submit(catalog, &delta.path, to, args, session),
        other => return other.into(),
    }
    Flow::Go(())
}

/// Runs the restore as `sdar restore ARCHIVE --full FULL --to DEST` does:
/// its messages, its progress, its checks.
fn run_now(archive: &Path, args: Vec<OsString>, to: &Path, session: &mut Session) {
    let mut all: Vec<OsString> = vec![archive.into()];
    all.extend(args);
    println!();
    match crate::restore::run(&RestoreCliArgs { args: all }) {
        Ok(()) => {
            session.code = 0;
            session.done = true;
            println!("Done. The disk is ready: {}", shown_path(to));
        }
        Err(e) => {
            if let Some(code) = e.downcast_ref::<crate::RuntimeExit>() {
                session.code = code.0;
                session.done = true;
                println!("The restore failed (exit code {}).", code.0);
            } else {
                super::report_error(&e, session);
            }
        }
    }
}

/// Queues the restore with the same arguments, as `sdar queue submit
/// ARCHIVE --full FULL --to DEST` does.
fn submit(
    catalog: &CatalogArgs,
    archive: &Path,
    to: &Path,
    args: Vec<OsString>,
    session: &mut Session,
) {
    let mut all: Vec<OsString> = vec![archive.into()];
    all.extend(args);
    match crate::queue::submit(&all, catalog, "sdar menu", true) {
        Ok(job) => {
            session.done = true;
            session.last_job = Some(job.id);
            println!(
                "Submitted: job {}, to restore {}. `sdar daemon` runs it; `sdar queue list` \
                 shows it and `sdar queue log {}` its log.",
                job.id,
                shown_path(to),
                job.id
            );
        }
        Err(e) => super::report_error(&e, session),
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
        assert_eq!(suggested_disk_name(Some(".hidden.vmdk")), "hidden.vmdk");
        assert_eq!(suggested_disk_name(Some("..")), "restored.vmdk");
        assert_eq!(suggested_disk_name(None), "restored.vmdk");
    }
}
