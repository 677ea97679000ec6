//! `sdar list`: the VMs in the catalog, then their backups by date.

use crate::catalog::{error, CatalogArgs};
use crate::info::terminal_safe_json;
use crate::output::print;
use crate::progress::human;
use crate::UsageError;
use archive_format::display::escape;
use archive_format::hex;
use clap::Args;
use sdar_catalog::time::parse_date;
use sdar_catalog::{Backup, Catalog, Filter, Kind};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this VM
    #[arg(long, value_name = "NAME")]
    pub vm: Option<String>,
    /// Only this disk (its name, with or without .vmdk)
    #[arg(long, value_name = "NAME")]
    pub disk: Option<String>,
    /// Only the VM with this UUID
    #[arg(long, value_name = "U")]
    pub uuid: Option<String>,
    /// Only backups made on or after this day (or moment), UTC: 2026-12-01
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only backups made on or before this day (or moment), UTC
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// A delta's fulls: those it needs (`*`), and any other full made under the
/// name it was made against (a full replaced since, which cannot serve it).
pub struct Fulls<'a> {
    by_identity: HashMap<[u8; 32], Vec<&'a Backup>>,
    by_name: HashMap<&'a std::ffi::OsStr, Vec<&'a Backup>>,
}

impl<'a> Fulls<'a> {
    pub fn new(fulls: &'a [Backup]) -> Self {
        let mut by_identity: HashMap<_, Vec<_>> = HashMap::new();
        let mut by_name: HashMap<_, Vec<_>> = HashMap::new();
        for f in fulls {
            by_identity.entry(f.identity).or_default().push(f);
            if let Some(n) = f.path.file_name() {
                by_name.entry(n).or_default().push(f);
            }
        }
        Fulls {
            by_identity,
            by_name,
        }
    }

    /// The fulls for `delta`, matching ones first.
    pub fn for_delta(&self, delta: &Backup) -> Vec<(&'a Backup, bool)> {
        let mut out: Vec<(&Backup, bool)> = delta
            .base_identity
            .and_then(|id| self.by_identity.get(&id))
            .map(|v| v.iter().map(|f| (*f, true)).collect())
            .unwrap_or_default();
        let hint = delta
            .base_name
            .as_deref()
            .map(Path::new)
            .and_then(Path::file_name);
        if let Some(others) = hint.and_then(|n| self.by_name.get(n)) {
            for f in others {
                if !out.iter().any(|(o, _)| o.id == f.id) {
                    out.push((f, false));
                }
            }
        }
        out
    }
}

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let date = |s: &Option<String>, end: bool| -> anyhow::Result<Option<i64>> {
        s.as_deref()
            .map(|s| {
                parse_date(s)
                    .map(|d| if end { d.end() } else { d.start() })
                    .map_err(|m| UsageError(m).into())
            })
            .transpose()
    };
    let filter = Filter {
        vm: args.vm.clone(),
        disk: args.disk.clone(),
        uuid: args.uuid.clone(),
        since: date(&args.since, false)?,
        until: date(&args.until, true)?,
        kind: None,
    };
    let catalog = args.catalog.open(args.json)?;
    let backups = catalog.backups(&filter).map_err(error)?;
    // A delta's full may be older than --since, or of another name.
    let fulls = catalog
        .backups(&Filter {
            kind: Some(Kind::Full),
            ..Filter::default()
        })
        .map_err(error)?;
    let fulls = Fulls::new(&fulls);
    if args.json {
        let text = serde_json::to_string_pretty(&list_json(&catalog, &backups, &fulls)?)?;
        return print(&format!("{}\n", terminal_safe_json(&text)));
    }
    print(&list_text(&catalog, &backups, &fulls)?)
}

/// A VM (name, UUID) and its backups by date.
pub type VmBackups<'a> = ((Option<&'a str>, Option<&'a str>), Vec<&'a Backup>);

/// The VMs, in name order: a VM is a name and a UUID, so that two VMs of
/// one name are shown apart.
pub fn by_vm(backups: &[Backup]) -> Vec<VmBackups<'_>> {
    let mut vms: Vec<VmBackups> = Vec::new();
    for b in backups {
        let key = (b.vm_name.as_deref(), b.vm_uuid.as_deref());
        match vms.last_mut() {
            Some((k, v)) if *k == key => v.push(b),
            _ => vms.push((key, vec![b])),
        }
    }
    vms
}

fn list_text(catalog: &Catalog, backups: &[Backup], fulls: &Fulls) -> anyhow::Result<String> {
    let mut t = String::new();
    if backups.is_empty() {
        t += "No backups in the catalog match";
        t += if catalog.targets().map_err(error)?.is_empty() {
            " (it has no targets yet: `sdar index FOLDER`)\n"
        } else {
            "\n"
        };
    }
    let vms = by_vm(backups);
    let names: Vec<Option<&str>> = vms.iter().map(|((n, _), _)| *n).collect();
    for ((name, uuid), list) in &vms {
        let twin = names.iter().filter(|n| *n == name).count() > 1;
        t += &format!(
            "VM {}{}{}\n",
            escape(name.unwrap_or("(no name)")),
            uuid.map(|u| format!("  UUID {}", escape(u)))
                .unwrap_or_default(),
            if twin {
                "  (another VM has this name)"
            } else {
                ""
            }
        );
        t +=
            "  Date (UTC)           Type   Size        SCSI  Disk                  Target / File\n";
        for b in list {
            t += &format!(
                "  {:<19}  {:<5}  {:>10}  {:<4}  {:<20}  {}\n",
                b.created_text(),
                b.kind.name(),
                human(b.size),
                escape(b.scsi_id.as_deref().unwrap_or("-")),
                escape(b.disk_name.as_deref().unwrap_or("-")),
                shown_in_target(b)
            );
            if b.kind == Kind::Delta {
                let mut serving = fulls.for_delta(b);
                // Copies of one full on several shares: the one in the
                // delta's own target first, the others counted (--json
                // lists them all).
                serving.sort_by_key(|(f, m)| (!m, f.target.as_os_str() != b.target.as_os_str()));
                let copies = serving.iter().filter(|(_, m)| *m).count();
                for (i, (f, matches)) in serving.iter().enumerate() {
                    if *matches && i > 0 {
                        continue;
                    }
                    let note = match (matches, copies) {
                        (false, _) => "  (another image: cannot serve it)".to_string(),
                        (true, 0 | 1) => String::new(),
                        (true, n) => format!("  (and {} copies in the catalog)", n - 1),
                    };
                    t += &format!(
                        "      full {} {}{note}\n",
                        if *matches { "*" } else { " " },
                        escape(&f.path.display().to_string()),
                    );
                }
                if !serving.iter().any(|(_, m)| *m) {
                    t += &format!(
                        "      warning: no full for this delta in any target (it needs identity {}{})\n",
                        short_hex(b.base_identity.as_ref()),
                        b.base_name
                            .as_deref()
                            .map(|n| format!(", made as {}", escape(n)))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    let problems = catalog.problems().map_err(error)?;
    if !problems.is_empty() {
        t += "Not usable:\n";
        for p in problems {
            t += &format!(
                "  {}: {}: {}\n",
                p.kind.name(),
                escape(&p.path.display().to_string()),
                escape(&p.what)
            );
        }
    }
    Ok(t)
}

/// The target, then the file's path inside it.
pub fn shown_in_target(b: &Backup) -> String {
    use std::os::unix::ffi::OsStrExt;
    // By bytes: the catalog recorded the path under its target as it is.
    let (path, target) = (
        b.path.as_os_str().as_bytes(),
        b.target.as_os_str().as_bytes(),
    );
    match path.strip_prefix(target).and_then(|r| r.strip_prefix(b"/")) {
        Some(rel) => format!(
            "{} / {}",
            escape(&String::from_utf8_lossy(target)),
            escape(&String::from_utf8_lossy(rel))
        ),
        None => escape(&String::from_utf8_lossy(path)).into_owned(),
    }
}

fn short_hex(h: Option<&[u8; 32]>) -> String {
    h.map(|h| hex(h)[..16].to_string() + "…")
        .unwrap_or_else(|| "-".into())
}

fn backup_json(b: &Backup) -> serde_json::Value {
    json!({
        "path": b.path.display().to_string(),
        "target": b.target.display().to_string(),
        "kind": b.kind.name().to_ascii_lowercase(),
        "vm_name": b.vm_name,
        "vm_uuid": b.vm_uuid,
        "scsi_id": b.scsi_id,
        "disk_name": b.disk_name,
        "created_unix": b.created,
        "created": b.created.map(sdar_catalog::time::show),
        "size": b.size,
        "codec": b.codec,
        "keyed": b.keyed,
        "identity": hex(&b.identity),
        "base_identity": b.base_identity.as_ref().map(|h| hex(h)),
        "base_name": b.base_name,
        "image_size": b.image_size,
    })
}

fn list_json(
    catalog: &Catalog,
    backups: &[Backup],
    fulls: &Fulls,
) -> anyhow::Result<serde_json::Value> {
    let vms: Vec<serde_json::Value> = by_vm(backups)
        .into_iter()
        .map(|((name, uuid), list)| {
            let items: Vec<serde_json::Value> = list
                .into_iter()
                .map(|b| {
                    let mut v = backup_json(b);
                    if b.kind == Kind::Delta {
                        let serving = fulls.for_delta(b);
                        v["fulls"] = serving
                            .iter()
                            .map(|(f, m)| json!({"path": f.path.display().to_string(), "matches": m}))
                            .collect();
                        v["full_found"] = json!(serving.iter().any(|(_, m)| *m));
                    }
                    v
                })
                .collect();
            json!({"vm_name": name, "vm_uuid": uuid, "backups": items})
        })
        .collect();
    let problems: Vec<serde_json::Value> = catalog
        .problems()
        .map_err(error)?
        .into_iter()
        .map(|p| json!({"path": p.path.display().to_string(), "kind": p.kind.name(), "what": p.what}))
        .collect();
    let targets: Vec<serde_json::Value> = catalog
        .targets()
        .map_err(error)?
        .into_iter()
        .map(|t| json!({"path": t.path.display().to_string(), "indexed_unix": t.indexed_at, "status": t.status}))
        .collect();
    Ok(json!({"vms": vms, "problems": problems, "targets": targets}))
}
