//! Finding the full image a delta needs: in a given place, beside the
//! archive, or in search folders. A candidate is accepted by its identity,
//! never by its name.

use crate::container::{open_classified, FileKind};
use crate::error::Hash;
use crate::full::FullImage;
use crate::limits::Limits;
use crate::target::folder_of;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// A file that looks like a full image, and what it says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub modified: i64,
    /// The identity its footer records, if it opened as a full image.
    pub identity: Option<Hash>,
}

impl Candidate {
    pub fn matches(&self, expected: &Hash) -> bool {
        self.identity.as_ref() == Some(expected)
    }
}

/// The folders to search, in order: the archive's own folder, then each
/// folder of `search_path` (a `:`-separated list, as `SDAR_FULL_PATH`).
pub fn search_dirs(archive: &Path, search_path: Option<&OsStr>) -> Vec<PathBuf> {
    let mut dirs = vec![folder_of(archive)];
    if let Some(sp) = search_path {
        for d in std::env::split_paths(sp) {
            if !d.as_os_str().is_empty() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs
}

/// Every file in `dirs` that starts like a full image, with its recorded
/// identity; `hint` (a file name) is looked at first in each folder.
pub fn candidates(dirs: &[PathBuf], hint: Option<&str>) -> Vec<Candidate> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        if let Some(h) = hint.and_then(|h| Path::new(h).file_name()) {
            if let Some(i) = paths.iter().position(|p| p.file_name() == Some(h)) {
                let p = paths.remove(i);
                paths.insert(0, p);
            }
        }
        for path in paths {
            if let Some(c) = inspect(&path) {
                found.push(c);
            }
        }
    }
    found
}

/// Looks at one file: `None` unless it is a regular file starting with a
/// full image's first record.
pub fn inspect(path: &Path) -> Option<Candidate> {
    // Opened without blocking and checked on the open file: a FIFO or a
    // device in a search folder is passed over, never read.
    let (file, FileKind::Full(_)) = open_classified(path).ok()? else {
        return None;
    };
    let meta = file.metadata().ok()?;
    let identity = FullImage::open(file, path, &Limits::default())
        .ok()
        .map(|f| f.identity());
    use std::os::unix::fs::MetadataExt;
    Some(Candidate {
        path: path.to_path_buf(),
        size: meta.len(),
        modified: meta.mtime(),
        identity,
    })
}

/// The first candidate in `dirs` whose identity is `expected`.
pub fn find_full(dirs: &[PathBuf], hint: Option<&str>, expected: &Hash) -> Option<PathBuf> {
    candidates(dirs, hint)
        .into_iter()
        .find(|c| c.matches(expected))
        .map(|c| c.path)
}
