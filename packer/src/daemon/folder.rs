//! The queue's folder beside the catalog (`catalog.sqlite.queue/`, mode
//! 0700): a log for every job (`job-N.log`) and a lock file for every
//! running daemon (`daemon-ID.lock`). A daemon holds an exclusive `flock`
//! on its own lock file for its whole life, so a lock that can be taken is
//! a daemon that died: its running jobs are given back to the queue.

use anyhow::{bail, Context};
use rustix::fs::FlockOperation;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The queue's folder of the catalog at `catalog`.
pub fn folder_of(catalog: &Path) -> PathBuf {
    let mut name = catalog.as_os_str().to_os_string();
    name.push(".queue");
    PathBuf::from(name)
}

pub struct QueueFolder {
    dir: PathBuf,
}

impl QueueFolder {
    /// Opens the queue's folder of `catalog`, creating it (0700) when
    /// missing. What is there must be a folder of this user that nobody
    /// else can write to: logs and locks are created in it.
    pub fn open(catalog: &Path) -> anyhow::Result<QueueFolder> {
        let dir = folder_of(catalog);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("{}: cannot create the queue's folder", dir.display())
                })
            }
        }
        let meta = std::fs::symlink_metadata(&dir)
            .with_context(|| format!("{}: cannot read the queue's folder", dir.display()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            bail!(
                "{}: the queue's folder is not a folder (a link or a file is there); remove it",
                dir.display()
            );
        }
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            bail!(
                "{}: the queue's folder must belong to this user (uid {me}) and be writable by \
                 nobody else (it is uid {}, mode {:o}); fix it or remove it",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
        Ok(QueueFolder { dir })
    }

    /// Takes this daemon's lock: a new lock file, locked for the daemon's
    /// life. Its name (without `daemon-` and `.lock`) is the daemon's id.
    pub fn lock(&self) -> anyhow::Result<DaemonLock> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for n in 0u32..100 {
            let id = format!("{}-{:x}-{n}", std::process::id(), nanos);
            let path = self.lock_path(&id);
            let mut file = match create_new(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot create", path.display()))
                }
            };
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
                .with_context(|| format!("{}: cannot lock", path.display()))?;
            let _ = writeln!(file, "sdar daemon, pid {}", std::process::id());
            return Ok(DaemonLock {
                id,
                path,
                _file: file,
            });
        }
        bail!(
            "{}: cannot create a lock file for this daemon",
            self.dir.display()
        )
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("daemon-{id}.lock"))
    }

    /// Whether the daemon `id` lives: `Some(true)` while it holds its lock,
    /// `Some(false)` when its lock can be taken (it died; the file is
    /// removed then), `None` when its lock file is gone (someone removed
    /// it: the catalog's heartbeat decides). When it cannot be told
    /// otherwise (a name that is no daemon id, an error), the daemon is
    /// taken for alive: a job is never run twice.
    pub fn daemon_alive(&self, id: &str) -> Option<bool> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Some(true);
        }
        let path = self.lock_path(id);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => return Some(true),
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Some(true);
        }
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Ours now, and its daemon is gone: nobody needs the name.
                let _ = std::fs::remove_file(&path);
                Some(false)
            }
            Err(_) => Some(true),
        }
    }

    /// A new log for job `id`: `job-N.log`, or `job-N.K.log` when a log of
    /// another job of that number (a catalog made again) is in the way.
    pub fn new_log(&self, id: i64) -> anyhow::Result<(PathBuf, File)> {
        for k in 0u32..100 {
            let name = match k {
                0 => format!("job-{id}.log"),
                k => format!("job-{id}.{k}.log"),
            };
            let path = self.dir.join(name);
            match create_new(&path) {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot create", path.display()))
                }
            }
        }
        bail!("{}: cannot create a log for job {id}", self.dir.display())
    }
}

/// True when daemon `id` of the queue of `catalog` surely died: its lock
/// file is there and nobody holds its lock. Reads only (a follower of a
/// job's log asks; the daemons give its jobs back).
pub fn daemon_died(catalog: &Path, id: &str) -> bool {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return false;
    }
    let path = folder_of(catalog).join(format!("daemon-{id}.lock"));
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return false;
    };
    file.metadata().is_ok_and(|m| m.is_file())
        && rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared).is_ok()
}

/// Why `dest` may not be restored to, when it is one of the files of the
/// queue of `catalog` (the catalog, its journals, or anything in the
/// queue's folder), however it is named (links followed): a restore with
/// --force would replace the queue itself.
pub fn queue_own(catalog: &Path, dest: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    // What `dest` names: the file itself (links followed), else the
    // folder it would be created in (followed) and its name.
    let real = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = std::fs::canonicalize(p) {
            return Some(c);
        }
        let parent = p.parent().filter(|q| !q.as_os_str().is_empty())?;
        Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
    };
    let dest_real = real(dest)?;
    let dest_id = std::fs::metadata(dest).ok().map(|m| (m.dev(), m.ino()));
    let mut own = vec![catalog.to_path_buf()];
    for tail in ["-wal", "-shm", "-journal"] {
        let mut name = catalog.as_os_str().to_os_string();
        name.push(tail);
        own.push(PathBuf::from(name));
    }
    let folder = folder_of(catalog);
    let folder_real = real(&folder);
    let hit = own.iter().any(|p| {
        real(p).is_some_and(|r| r == dest_real)
            || std::fs::metadata(p)
                .ok()
                .is_some_and(|m| dest_id == Some((m.dev(), m.ino())))
    }) || folder_real.is_some_and(|f| dest_real.starts_with(f))
        || dest_real.as_os_str().as_bytes() == folder.as_os_str().as_bytes();
    hit.then(|| {
        format!(
            "{}: this is the queue's own catalog {} or its folder; a restore never replaces them",
            dest.display(),
            catalog.display()
        )
    })
}

/// The job's log from an earlier run, to append to: a regular file of
/// this user with one name, never through a link. `None` when it is gone.
pub fn reopen_log(path: &Path) -> anyhow::Result<Option<File>> {
    let file = match OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot open", path.display())),
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.nlink() != 1 {
        bail!(
            "{}: a job's log must be a regular file of this user with one name",
            path.display()
        );
    }
    Ok(Some(file))
}

/// `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, appending.
fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// A daemon's lock, held until it is dropped (or the process dies).
pub struct DaemonLock {
    pub id: String,
    path: PathBuf,
    _file: File,
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // Still locked by us: no other daemon takes the name meanwhile.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_lives_while_it_holds_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let folder = QueueFolder::open(&dir.path().join("c.sqlite")).unwrap();
        let lock = folder.lock().unwrap();
        assert_eq!(folder.daemon_alive(&lock.id), Some(true));
        let id = lock.id.clone();
        drop(lock);
        assert_eq!(
            folder.daemon_alive(&id),
            None,
            "a clean exit removes its file"
        );
        // What a daemon killed with SIGKILL leaves: a file nobody locks.
        std::fs::write(folder.lock_path("1-2-0"), b"").unwrap();
        assert_eq!(folder.daemon_alive("1-2-0"), Some(false));
        assert!(
            !folder.lock_path("1-2-0").exists(),
            "a dead daemon's file is removed"
        );
        assert_eq!(
            folder.daemon_alive("../x"),
            Some(true),
            "a name that is no id is never judged dead"
        );
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("c.sqlite");
        std::fs::create_dir(folder_of(&catalog)).unwrap();
        std::fs::set_permissions(folder_of(&catalog), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert!(QueueFolder::open(&catalog).is_err());
        std::fs::remove_dir(folder_of(&catalog)).unwrap();
        std::os::unix::fs::symlink(dir.path(), folder_of(&catalog)).unwrap();
        assert!(QueueFolder::open(&catalog).is_err());
    }
}
