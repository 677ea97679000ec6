//! Questions the catalog answers without touching a target: which backups
//! there are, which fulls serve a delta, and which backup a restore by VM
//! name means.

use crate::index::blob_path;
use crate::time::{show, DateArg};
use crate::{now_unix, Catalog, Error, Result};
use archive_format::{hex, Hash};
use rusqlite::types::Value;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Full,
    Delta,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "Full",
            Kind::Delta => "Delta",
        }
    }
}

/// A full image or delta archive, as indexed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub id: i64,
    pub path: PathBuf,
    /// The target folder it was found under.
    pub target: PathBuf,
    pub kind: Kind,
    pub vm_name: Option<String>,
    pub vm_uuid: Option<String>,
    pub scsi_id: Option<String>,
    pub disk_name: Option<String>,
    /// Unix seconds, from the backup's metadata.
    pub created: Option<i64>,
    /// The file's size.
    pub size: u64,
    pub codec: String,
    /// Made with a key (it carries a MAC).
    pub keyed: bool,
    /// The identity of the disk it restores (SPEC.md §10).
    pub identity: Hash,
    /// For a delta: the identity of the full it needs.
    pub base_identity: Option<Hash>,
    /// For a delta: the file name of its full when it was made (a hint).
    pub base_name: Option<String>,
    /// The size of the disk it restores.
    pub image_size: u64,
}

impl Backup {
    /// `2026-12-01 10:30:05`, or `-` when the backup records no time.
    pub fn created_text(&self) -> String {
        self.created.map_or_else(|| "-".into(), show)
    }

    /// The VM name, or `-`.
    pub fn vm_text(&self) -> &str {
        self.vm_name.as_deref().unwrap_or("-")
    }

    /// True when this backup is of the disk `name`: the recorded disk name,
    /// with or without its extension (`CRM` for `CRM.vmdk`).
    pub fn is_disk(&self, name: &str) -> bool {
        self.disk_name
            .as_deref()
            .is_some_and(|d| d == name || d.rsplit_once('.').is_some_and(|(stem, _)| stem == name))
    }
}

/// What `sdar list` narrows to; every field set must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub vm: Option<String>,
    pub disk: Option<String>,
    pub uuid: Option<String>,
    /// Made at or after this second.
    pub since: Option<i64>,
    /// Made at or before this second.
    pub until: Option<i64>,
    pub kind: Option<Kind>,
}

/// A full that could serve a delta: `matches` when its identity is the one
/// the delta needs (only such a full restores it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullMatch {
    pub full: Backup,
    pub matches: bool,
}

/// Which backup a restore by name means.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub vm: String,
    pub uuid: Option<String>,
    pub disk: Option<String>,
    pub scsi_id: Option<String>,
    pub when: When,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum When {
    /// The newest backup.
    #[default]
    Newest,
    /// The newest made in this day, or at this second.
    On(DateArg),
    /// The newest made at least this many days ago.
    DaysOld(u32),
}

/// The delta a selection chose, and a full it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub delta: Backup,
    pub full: Backup,
}

const COLUMNS: &str = "f.id, f.path, t.path, f.kind, f.vm_name, f.vm_uuid, f.scsi_id, f.disk_name,
    f.created, f.size, f.codec, f.keyed, f.identity, f.base_identity, f.base_name, f.image_size";

fn row(r: &rusqlite::Row) -> rusqlite::Result<Backup> {
    let hash = |v: Option<Vec<u8>>| v.and_then(|v| <Hash>::try_from(v.as_slice()).ok());
    Ok(Backup {
        id: r.get(0)?,
        path: blob_path(r.get(1)?),
        target: blob_path(r.get(2)?),
        kind: if r.get::<_, String>(3)? == "full" {
            Kind::Full
        } else {
            Kind::Delta
        },
        vm_name: r.get(4)?,
        vm_uuid: r.get(5)?,
        scsi_id: r.get(6)?,
        disk_name: r.get(7)?,
        created: r.get(8)?,
        size: r.get::<_, i64>(9)? as u64,
        codec: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
        keyed: r.get::<_, Option<bool>>(11)?.unwrap_or(false),
        identity: hash(r.get(12)?).unwrap_or([0; 32]),
        base_identity: hash(r.get(13)?),
        base_name: r.get(14)?,
        image_size: r.get::<_, Option<i64>>(15)?.unwrap_or(0) as u64,
    })
}

impl Catalog {
    /// The backups `filter` selects, by VM name, VM UUID, creation time and
    /// path.
    pub fn backups(&self, filter: &Filter) -> Result<Vec<Backup>> {
        let mut sql = format!(
            "SELECT {COLUMNS} FROM files f JOIN targets t ON t.id = f.target_id
             WHERE f.kind IN ('full', 'delta')"
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(vm) = &filter.vm {
            sql += " AND f.vm_name = ?";
            args.push(Value::Text(vm.clone()));
        }
        if let Some(uuid) = &filter.uuid {
            sql += " AND f.vm_uuid = ?";
            args.push(Value::Text(uuid.clone()));
        }
        if let Some(t) = filter.since {
            sql += " AND coalesce(f.created, 0) >= ?";
            args.push(Value::Integer(t));
        }
        if let Some(t) = filter.until {
            sql += " AND coalesce(f.created, 0) <= ?";
            args.push(Value::Integer(t));
        }
        if let Some(k) = filter.kind {
            sql += " AND f.kind = ?";
            args.push(Value::Text(k.name().to_ascii_lowercase()));
        }
        sql += " ORDER BY f.vm_name, f.vm_uuid, coalesce(f.created, 0), f.path";
        let mut rows = self.rows(&sql, args)?;
        if let Some(disk) = &filter.disk {
            rows.retain(|b| b.is_disk(disk));
        }
        Ok(rows)
    }

    /// Every full image whose identity is `identity`, in any target.
    pub fn fulls_with_identity(&self, identity: &Hash) -> Result<Vec<Backup>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM files f JOIN targets t ON t.id = f.target_id
             WHERE f.kind = 'full' AND f.identity = ? ORDER BY f.path"
        );
        self.rows(&sql, vec![Value::Blob(identity.to_vec())])
    }

    /// The fulls that could serve `delta`: those it needs (by identity),
    /// then the other fulls of the same VM and disk, which do not match.
    pub fn fulls_for(&self, delta: &Backup) -> Result<Vec<FullMatch>> {
        let mut out: Vec<FullMatch> = match delta.base_identity {
            Some(id) => self
                .fulls_with_identity(&id)?
                .into_iter()
                .map(|full| FullMatch {
                    full,
                    matches: true,
                })
                .collect(),
            None => Vec::new(),
        };
        let same_disk = Filter {
            vm: delta.vm_name.clone(),
            uuid: delta.vm_uuid.clone(),
            kind: Some(Kind::Full),
            ..Filter::default()
        };
        for full in self.backups(&same_disk)? {
            let same = full.scsi_id == delta.scsi_id && full.disk_name == delta.disk_name;
            if same && !out.iter().any(|m| m.full.id == full.id) {
                out.push(FullMatch {
                    full,
                    matches: false,
                });
            }
        }
        Ok(out)
    }

    /// The delta a restore by name means, and a full for it: the newest
    /// delta of the VM (and disk) that `sel` names, made when it says. More
    /// than one VM of that name, more than one disk, or two different
    /// backups made at the same second are refused with the candidates
    /// listed, never guessed.
    pub fn select(&self, sel: &Selection) -> Result<Choice> {
        let filter = Filter {
            vm: Some(sel.vm.clone()),
            uuid: sel.uuid.clone(),
            disk: sel.disk.clone(),
            kind: Some(Kind::Delta),
            ..Filter::default()
        };
        let mut deltas = self.backups(&filter)?;
        if let Some(scsi) = &sel.scsi_id {
            deltas.retain(|d| d.scsi_id.as_deref().is_some_and(|s| same_scsi_id(s, scsi)));
        }
        let named = describe_selection(sel);
        if deltas.is_empty() {
            return Err(Error::NotFound(format!(
                "no delta archive of {named} in the catalog {} (`sdar list` shows what it holds; \
                 `sdar index FOLDER` adds a folder)",
                self.path().display()
            )));
        }
        let mut uuids: Vec<&str> = deltas
            .iter()
            .map(|d| d.vm_uuid.as_deref().unwrap_or("-"))
            .collect();
        uuids.sort_unstable();
        uuids.dedup();
        if uuids.len() > 1 {
            return Err(Error::Ambiguous(format!(
                "{} VMs are called {:?}; choose one with --uuid:\n{}",
                uuids.len(),
                sel.vm,
                uuids
                    .iter()
                    .map(|u| format!("  --uuid {u}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
        let mut disks: Vec<(String, String)> = deltas
            .iter()
            .map(|d| {
                (
                    d.scsi_id.clone().unwrap_or_else(|| "-".into()),
                    d.disk_name.clone().unwrap_or_else(|| "-".into()),
                )
            })
            .collect();
        disks.sort_unstable();
        disks.dedup();
        if disks.len() > 1 {
            return Err(Error::Ambiguous(format!(
                "{named} has {} disks; choose one with --disk:\n{}",
                disks.len(),
                disks
                    .iter()
                    .map(|(s, d)| format!("  --disk {d}   (SCSI {s})"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
        let now = now_unix();
        deltas.retain(|d| {
            let t = d.created.unwrap_or(0);
            match sel.when {
                When::Newest => true,
                When::On(day) => t >= day.start() && t <= day.end(),
                When::DaysOld(n) => t <= now.saturating_sub(i64::from(n) * 86_400),
            }
        });
        let Some(newest) = deltas.iter().map(|d| d.created.unwrap_or(0)).max() else {
            let when = match sel.when {
                When::Newest => String::new(),
                When::On(d) => format!(" made {}", describe_date(d)),
                When::DaysOld(n) => format!(" at least {n} days old"),
            };
            return Err(Error::NotFound(format!(
                "no delta archive of {named}{when} in the catalog (`sdar list --vm {:?}` shows its backups)",
                sel.vm
            )));
        };
        deltas.retain(|d| d.created.unwrap_or(0) == newest);
        let mut ids: Vec<Hash> = deltas.iter().map(|d| d.identity).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > 1 {
            return Err(Error::Ambiguous(format!(
                "{} different backups of {named} were made at {}; restore one by its file:\n{}",
                ids.len(),
                show(newest),
                deltas
                    .iter()
                    .map(|d| format!("  {}", d.path.display()))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
        // Copies of one backup in several targets: the first whose full is
        // found, preferring a full in the delta's own target.
        for delta in &deltas {
            let base = delta.base_identity.unwrap_or([0; 32]);
            let mut fulls = self.fulls_with_identity(&base)?;
            fulls.sort_by_key(|f| f.target != delta.target);
            if let Some(full) = fulls.into_iter().next() {
                return Ok(Choice {
                    delta: delta.clone(),
                    full,
                });
            }
        }
        let d = &deltas[0];
        Err(Error::NotFound(format!(
            "{}: its full (identity {}{}) is in no indexed target; index the folder that holds it \
             (`sdar index FOLDER`)",
            d.path.display(),
            hex(&d.base_identity.unwrap_or([0; 32])),
            d.base_name
                .as_deref()
                .map(|n| format!(", made as {n}"))
                .unwrap_or_default()
        )))
    }

    fn rows(&self, sql: &str, args: Vec<Value>) -> Result<Vec<Backup>> {
        let mut st = self.conn().prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(args), row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }
}

/// True when two SCSI ids name the same place: `0:0`, and `00` as esXpress
/// writes it in its file names (`1:10` is `110`, never `11:0`).
pub fn same_scsi_id(a: &str, b: &str) -> bool {
    use crate::replicate::config::Slot;
    a == b || Slot::parse(a).is_some_and(|s| Slot::parse(b) == Some(s))
}

fn describe_selection(sel: &Selection) -> String {
    let mut s = format!("VM {:?}", sel.vm);
    if let Some(u) = &sel.uuid {
        s += &format!(" (UUID {u})");
    }
    if let Some(d) = &sel.disk {
        s += &format!(", disk {d:?}");
    }
    if let Some(d) = &sel.scsi_id {
        s += &format!(", SCSI {d}");
    }
    s
}

fn describe_date(d: DateArg) -> String {
    match d {
        DateArg::Day { start } => format!("on {}", crate::time::show_day(start)),
        DateArg::Moment(t) => format!("at {}", show(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::same_scsi_id;

    #[test]
    fn scsi_ids_in_both_spellings() {
        assert!(same_scsi_id("0:0", "00"));
        assert!(same_scsi_id("1:10", "110"));
        assert!(!same_scsi_id("1:10", "11:0"));
        assert!(!same_scsi_id("0:1", "1:0"));
        assert!(same_scsi_id("weird", "weird"));
    }
}
