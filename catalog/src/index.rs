//! Indexing backup targets: walk each folder, read the header, metadata and
//! footer of every file that is new or changed since the last index (never
//! block data), and bring the catalog in line in one transaction.
//!
//! A file is unchanged when its path, size and modification time are; it is
//! then not opened at all. A file that disappeared while a file with the same
//! identity appeared was moved: its row keeps its id and takes the new path.

use crate::{now_unix, Catalog, Error, Result};
use archive_format::container::{backup_kind, FileKind};
use archive_format::{Codec, DeltaArchive, FullImage, Hash, Limits, ReadAt};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A target is indexed again before a catalog command when its last index
/// is older than this, as esXpress did (setting `reindex_after`, seconds).
pub const DEFAULT_REINDEX_AFTER: i64 = 5 * 3600;

/// What `sdar index` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct IndexOptions {
    /// Read every file again, changed or not (`--reindex`).
    pub reread: bool,
}

/// What an index found and did.
#[derive(Clone, Debug, Default)]
pub struct IndexReport {
    /// The targets indexed, as recorded.
    pub targets: Vec<PathBuf>,
    /// Targets that could not be read: their files stay in the catalog.
    pub unavailable: Vec<(PathBuf, String)>,
    /// Regular files found.
    pub files: u64,
    /// Files opened because they were new or changed (or `--reread`).
    pub opened: u64,
    /// Full images and delta archives now in the catalog from these targets.
    pub backups: u64,
    pub added: u64,
    pub updated: u64,
    /// Files moved (same identity, new path): from, to.
    pub moved: Vec<(PathBuf, PathBuf)>,
    /// Rows dropped because their file is gone.
    pub removed: u64,
    /// Bytes read from backup files, and the total size of the backups.
    pub bytes_read: u64,
    pub backup_bytes: u64,
    /// Damaged and foreign files found under these targets.
    pub problems: Vec<Problem>,
}

/// A file under a target that is not a usable backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub kind: ProblemKind,
    pub what: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// An sdar file that does not open (cut short, corrupt, unreadable).
    Damaged,
    /// A file named like a backup whose bytes are not one.
    Foreign,
}

impl ProblemKind {
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Damaged => "damaged",
            ProblemKind::Foreign => "foreign",
        }
    }
}

/// What one file is, as recorded.
#[derive(Clone, Debug, Default)]
struct Record {
    kind: &'static str,
    problem: Option<String>,
    vm_name: Option<String>,
    vm_uuid: Option<String>,
    scsi_id: Option<String>,
    disk_name: Option<String>,
    created: Option<i64>,
    codec: Option<&'static str>,
    keyed: bool,
    identity: Option<Hash>,
    base_identity: Option<Hash>,
    base_name: Option<String>,
    image_size: Option<u64>,
}

/// A regular file found by the walk.
struct Found {
    path: PathBuf,
    stamp: Stamp,
}

/// What says a file is unchanged: its size, modification time, change time
/// and inode. The change time cannot be set back by `touch`, so a file
/// rewritten with its old size and time is still read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
}

/// A row already in the catalog.
struct Known {
    id: i64,
    stamp: Stamp,
}

impl Catalog {
    /// Indexes `targets` (folders, walked recursively; links are not
    /// followed). Targets are recorded, so that later commands re-index them
    /// when their index is older than [`Catalog::reindex_after`].
    pub fn index(&mut self, targets: &[PathBuf], opts: &IndexOptions) -> Result<IndexReport> {
        let mut report = IndexReport::default();
        let mut plans = Vec::new();
        for target in targets {
            let abs = absolute(target)?;
            if !report.targets.contains(&abs) {
                report.targets.push(abs);
            }
        }
        // Read first, outside any transaction: other sdar processes keep
        // using the catalog while a slow share is walked.
        let recorded = self.target_paths()?;
        for target in report.targets.clone() {
            let others: Vec<PathBuf> = recorded
                .iter()
                .chain(&report.targets)
                .filter(|t| **t != target)
                .cloned()
                .collect();
            let known = self.known_files(&target)?;
            match walk(&target, &others) {
                Ok(found) => plans.push(self.plan(&target, found, known, opts, &mut report)),
                Err(why) => report.unavailable.push((target, why)),
            }
        }
        self.apply(plans, &mut report)?;
        Ok(report)
    }

    /// Re-indexes every recorded target whose last index is older than the
    /// `reindex_after` setting (5 hours unless set); `None` when none is.
    pub fn refresh_stale(&mut self) -> Result<Option<IndexReport>> {
        let limit = self.reindex_after()?;
        let now = now_unix();
        let stale: Vec<PathBuf> = self
            .targets()?
            .into_iter()
            .filter(|t| {
                t.indexed_at
                    .is_none_or(|at| now.saturating_sub(at) >= limit)
            })
            .map(|t| t.path)
            .collect();
        if stale.is_empty() {
            return Ok(None);
        }
        self.index(&stale, &IndexOptions::default()).map(Some)
    }

    /// Seconds after which a target is indexed again.
    pub fn reindex_after(&self) -> Result<i64> {
        Ok(self
            .setting("reindex_after")?
            .and_then(|v| v.parse().ok())
            .filter(|&v: &i64| v >= 0)
            .unwrap_or(DEFAULT_REINDEX_AFTER))
    }

    /// Every recorded target.
    pub fn targets(&self) -> Result<Vec<TargetInfo>> {
        let mut st = self
            .conn()
            .prepare("SELECT path, indexed_at, status FROM targets ORDER BY path")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(TargetInfo {
                    path: blob_path(r.get::<_, Vec<u8>>(0)?),
                    indexed_at: r.get(1)?,
                    status: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// The folder of every recorded target.
    pub fn target_paths(&self) -> Result<Vec<PathBuf>> {
        Ok(self.targets()?.into_iter().map(|t| t.path).collect())
    }

    /// Forgets a target and everything found in it (the files stay).
    pub fn forget_target(&mut self, target: &Path) -> Result<bool> {
        let abs = absolute(target)?;
        let n = self
            .conn()
            .execute(
                "DELETE FROM targets WHERE path = ?1",
                [abs.as_os_str().as_bytes()],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Damaged and foreign files, in path order.
    pub fn problems(&self) -> Result<Vec<Problem>> {
        let mut st = self
            .conn()
            .prepare(
                "SELECT path, kind, problem FROM files
                 WHERE kind IN ('damaged', 'foreign') ORDER BY path",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                let kind: String = r.get(1)?;
                Ok(Problem {
                    path: blob_path(r.get(0)?),
                    kind: if kind == "damaged" {
                        ProblemKind::Damaged
                    } else {
                        ProblemKind::Foreign
                    },
                    what: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    fn known_files(&self, target: &Path) -> Result<HashMap<PathBuf, Known>> {
        let mut st = self
            .conn()
            .prepare(
                "SELECT f.id, f.path, f.size, f.mtime_ns, f.ctime_ns, f.inode FROM files f
                 JOIN targets t ON t.id = f.target_id WHERE t.path = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([target.as_os_str().as_bytes()], |r| {
                Ok((
                    blob_path(r.get(1)?),
                    Known {
                        id: r.get(0)?,
                        stamp: Stamp {
                            size: r.get::<_, i64>(2)? as u64,
                            mtime_ns: r.get(3)?,
                            ctime_ns: r.get(4)?,
                            inode: r.get::<_, i64>(5)? as u64,
                        },
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Decides, for one target, what to read and what to drop; reads the
    /// new and changed files.
    fn plan(
        &self,
        target: &Path,
        found: Vec<Found>,
        mut known: HashMap<PathBuf, Known>,
        opts: &IndexOptions,
        report: &mut IndexReport,
    ) -> Plan {
        let mut plan = Plan {
            target: target.to_path_buf(),
            write: Vec::new(),
            gone: Vec::new(),
        };
        report.files += found.len() as u64;
        for f in found {
            let old = known.remove(&f.path);
            let unchanged = old.as_ref().is_some_and(|k| k.stamp == f.stamp);
            if unchanged && !opts.reread {
                continue;
            }
            let counter = AtomicU64::new(0);
            let Some(record) = inspect(&f.path, &counter) else {
                // Gone since the walk (moved or deleted while indexing):
                // what the catalog knew of it stays until the next index.
                continue;
            };
            report.opened += 1;
            report.bytes_read += counter.load(Ordering::Relaxed);
            plan.write.push((f, record, old.map(|k| k.id)));
        }
        plan.gone = known.into_values().map(|k| k.id).collect();
        plan
    }

    /// Writes every plan in one transaction.
    fn apply(&mut self, plans: Vec<Plan>, report: &mut IndexReport) -> Result<()> {
        let path = self.path().to_path_buf();
        let sql = |e| Error::sqlite(&path, e);
        let now = now_unix();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        for (target, why) in &report.unavailable {
            tx.execute(
                "INSERT INTO targets(path, status) VALUES (?1, ?2)
                 ON CONFLICT(path) DO UPDATE SET status = excluded.status",
                params![target.as_os_str().as_bytes(), why],
            )
            .map_err(sql)?;
        }
        // Rows of files gone, by identity: a new file with one of these
        // identities is the same backup, moved.
        let mut gone: HashMap<(Vec<u8>, String), GoneRows> = HashMap::new();
        for plan in &plans {
            for &id in &plan.gone {
                let row: Option<(Vec<u8>, Option<Vec<u8>>, String)> = tx
                    .query_row(
                        "SELECT path, identity, kind FROM files WHERE id = ?1",
                        [id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(sql)?;
                match row {
                    Some((p, Some(identity), kind)) if kind == "full" || kind == "delta" => gone
                        .entry((identity, kind))
                        .or_default()
                        .push((id, blob_path(p))),
                    Some(_) => {
                        tx.execute("DELETE FROM files WHERE id = ?1", [id])
                            .map_err(sql)?;
                        report.removed += 1;
                    }
                    None => {}
                }
            }
        }
        for plan in plans {
            tx.execute(
                "INSERT INTO targets(path, indexed_at, status) VALUES (?1, ?2, NULL)
                 ON CONFLICT(path) DO UPDATE SET indexed_at = excluded.indexed_at, status = NULL",
                params![plan.target.as_os_str().as_bytes(), now],
            )
            .map_err(sql)?;
            let target_id: i64 = tx
                .query_row(
                    "SELECT id FROM targets WHERE path = ?1",
                    [plan.target.as_os_str().as_bytes()],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            for (found, rec, old_id) in plan.write {
                if let Some(kind) = problem_kind(rec.kind) {
                    report.problems.push(Problem {
                        path: found.path.clone(),
                        kind,
                        what: rec.problem.clone().unwrap_or_default(),
                    });
                }
                // A new file with a gone file's identity takes its row.
                let moved_from = match (&rec.identity, old_id) {
                    (Some(identity), None) => gone
                        .get_mut(&(identity.to_vec(), rec.kind.to_string()))
                        .and_then(|v| v.pop()),
                    _ => None,
                };
                let id = match (old_id, &moved_from) {
                    (Some(id), _) => {
                        report.updated += 1;
                        Some(id)
                    }
                    (None, Some((id, from))) => {
                        report.moved.push((from.clone(), found.path.clone()));
                        Some(*id)
                    }
                    (None, None) => {
                        report.added += 1;
                        None
                    }
                };
                upsert(&tx, id, target_id, &found, &rec, now).map_err(sql)?;
            }
        }
        for rows in gone.into_values() {
            for (id, _) in rows {
                tx.execute("DELETE FROM files WHERE id = ?1", [id])
                    .map_err(sql)?;
                report.removed += 1;
            }
        }
        // What the report says about these targets, after the changes.
        for target in &report.targets {
            let (n, bytes): (i64, i64) = tx
                .query_row(
                    "SELECT count(*), coalesce(sum(f.size), 0) FROM files f
                     JOIN targets t ON t.id = f.target_id
                     WHERE t.path = ?1 AND f.kind IN ('full', 'delta')",
                    [target.as_os_str().as_bytes()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql)?;
            report.backups += n as u64;
            report.backup_bytes += bytes as u64;
        }
        tx.commit().map_err(sql)
    }
}

/// A recorded target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    pub path: PathBuf,
    /// Unix seconds of the last complete index.
    pub indexed_at: Option<i64>,
    /// Why the last index could not read it.
    pub status: Option<String>,
}

/// Rows of files that are gone: id and path.
type GoneRows = Vec<(i64, PathBuf)>;

struct Plan {
    target: PathBuf,
    /// Files read: what they are, and the row they replace.
    write: Vec<(Found, Record, Option<i64>)>,
    /// Rows whose file is gone.
    gone: Vec<i64>,
}

fn problem_kind(kind: &str) -> Option<ProblemKind> {
    match kind {
        "damaged" => Some(ProblemKind::Damaged),
        "foreign" => Some(ProblemKind::Foreign),
        _ => None,
    }
}

fn upsert(
    tx: &rusqlite::Transaction,
    id: Option<i64>,
    target_id: i64,
    f: &Found,
    r: &Record,
    now: i64,
) -> rusqlite::Result<()> {
    // The path may belong to a row of another target (nested targets): the
    // file is the same, so that row is taken over.
    if let Some(id) = id {
        tx.execute(
            "DELETE FROM files WHERE path = ?1 AND id != ?2",
            params![f.path.as_os_str().as_bytes(), id],
        )?;
    }
    tx.execute(
        "INSERT INTO files(id, target_id, path, size, mtime_ns, kind, problem, vm_name, vm_uuid,
             scsi_id, disk_name, created, codec, keyed, identity, base_identity, base_name,
             image_size, indexed_at, ctime_ns, inode)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
             ?20, ?21)
         ON CONFLICT DO UPDATE SET target_id = excluded.target_id, path = excluded.path,
             size = excluded.size, mtime_ns = excluded.mtime_ns, kind = excluded.kind,
             problem = excluded.problem, vm_name = excluded.vm_name, vm_uuid = excluded.vm_uuid,
             scsi_id = excluded.scsi_id, disk_name = excluded.disk_name,
             created = excluded.created, codec = excluded.codec, keyed = excluded.keyed,
             identity = excluded.identity, base_identity = excluded.base_identity,
             base_name = excluded.base_name, image_size = excluded.image_size,
             indexed_at = excluded.indexed_at, ctime_ns = excluded.ctime_ns,
             inode = excluded.inode",
        params![
            id,
            target_id,
            f.path.as_os_str().as_bytes(),
            f.stamp.size as i64,
            f.stamp.mtime_ns,
            r.kind,
            r.problem,
            r.vm_name,
            r.vm_uuid,
            r.scsi_id,
            r.disk_name,
            r.created,
            r.codec,
            r.keyed,
            r.identity.map(|h| h.to_vec()),
            r.base_identity.map(|h| h.to_vec()),
            r.base_name,
            r.image_size.map(|s| s as i64),
            now,
            f.stamp.ctime_ns,
            f.stamp.inode as i64,
        ],
    )?;
    Ok(())
}

/// The absolute, link-free form of a target folder, so that the same folder
/// named two ways is one target.
fn absolute(target: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(target) {
        Ok(p) => Ok(p),
        // A recorded target that is gone (an unmounted share) keeps its name.
        Err(_) if target.is_absolute() => Ok(target.to_path_buf()),
        Err(e) => Err(Error::io(target, "cannot find the target folder", e)),
    }
}

/// Every regular file under `dir`, without following links; an error when
/// `dir` itself cannot be read (then nothing recorded from it is dropped).
fn walk(dir: &Path, others: &[PathBuf]) -> std::result::Result<Vec<Found>, String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a folder".into());
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if first => return Err(e.to_string()),
            // A subfolder that cannot be read is passed over.
            Err(_) => continue,
        };
        first = false;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                // A target inside this one is indexed as itself.
                if !others.contains(&path) {
                    stack.push(path);
                }
            } else if meta.is_file() {
                let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
                found.push(Found {
                    path,
                    stamp: Stamp {
                        size: meta.len(),
                        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
                        inode: meta.ino(),
                    },
                });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// File names that say "backup": a file called so whose bytes are not one
/// is listed as foreign.
fn named_like_backup(path: &Path) -> bool {
    let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    [".sdar", ".full.gz", ".full.zst"]
        .iter()
        .any(|s| name.ends_with(s.as_bytes()))
}

/// Reads what a file is: its header, metadata and footer when it is a
/// backup, its first and last bytes otherwise. `read` counts the bytes.
/// `None` when the file is gone since the walk.
fn inspect(path: &Path, read: &AtomicU64) -> Option<Record> {
    let damaged = |what: String| Record {
        kind: "damaged",
        problem: Some(what),
        ..Record::default()
    };
    // Not blocking, not following a link planted after the walk: a FIFO, a
    // device or a link is passed over without a read.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(damaged(format!("cannot open it: {e}"))),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Some(Record {
                kind: "other",
                ..Record::default()
            })
        }
        Err(e) => return Some(damaged(format!("cannot read it: {e}"))),
    }
    let src = Counted { file, read };
    let kind = match backup_kind(&src) {
        Ok(k) => k,
        Err(e) => return Some(damaged(format!("cannot read it: {e}"))),
    };
    let limits = Limits::default();
    let opened = match kind {
        FileKind::Full(codec) => FullImage::open(&src, path, &limits).map(|f| Record {
            kind: "full",
            codec: Some(codec_name(codec)),
            keyed: f.auth().is_some(),
            identity: Some(f.identity()),
            image_size: Some(f.header().image_size),
            ..from_meta(f.meta())
        }),
        FileKind::Delta => DeltaArchive::open(&src, path, &limits).map(|d| Record {
            kind: "delta",
            codec: Some(codec_name(d.header().codec)),
            keyed: d.auth().is_some(),
            identity: Some(d.identity()),
            base_identity: Some(d.header().base_identity),
            image_size: Some(d.header().image_size),
            ..from_meta(d.meta())
        }),
        _ if named_like_backup(path) => {
            return Some(Record {
                kind: "foreign",
                problem: Some(
                    "named like a backup, but not an sdar full image or delta archive \
                     (cut short, or another program's file)"
                        .into(),
                ),
                ..Record::default()
            })
        }
        _ => {
            return Some(Record {
                kind: "other",
                ..Record::default()
            })
        }
    };
    Some(opened.unwrap_or_else(|e| damaged(e.to_string())))
}

fn from_meta(m: &archive_format::Metadata) -> Record {
    Record {
        vm_name: m.vm_name.clone(),
        vm_uuid: m.vm_uuid.clone(),
        scsi_id: m.scsi_id.clone(),
        disk_name: m.disk_name.clone(),
        created: m.created_unix,
        base_name: m.base_name.clone(),
        ..Record::default()
    }
}

fn codec_name(c: Codec) -> &'static str {
    c.name()
}

/// A path stored as its bytes (paths need not be UTF-8).
pub(crate) fn blob_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes))
}

/// A file read at offsets, counting the bytes read.
struct Counted<'a> {
    file: File,
    read: &'a AtomicU64,
}

impl ReadAt for Counted<'_> {
    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.file.read_exact_at(buf, offset)
    }
}
