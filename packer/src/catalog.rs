//! What every command that uses the catalog shares: where it is
//! (`--catalog FILE`, `SDAR_CATALOG`, the default), opening it, and the
//! automatic re-index of targets whose index is older than 5 hours.

use crate::UsageError;
use clap::Args;
use sdar_catalog::{Catalog, IndexReport};
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
pub struct CatalogArgs {
    /// The catalog [default: SDAR_CATALOG, else /var/lib/sdar/catalog.sqlite
    /// for root, else $XDG_DATA_HOME/sdar/catalog.sqlite]
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Index every recorded target again first, whatever the age of its
    /// last index (targets are re-indexed anyway when it is older than 5
    /// hours; `sdar index --reindex-after` changes that)
    #[arg(long)]
    pub reindex: bool,
}

impl CatalogArgs {
    /// The catalog file these arguments name.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.catalog {
            Some(p) => Ok(p.clone()),
            None => Catalog::default_path().map_err(error),
        }
    }

    /// Opens the catalog without re-indexing anything.
    pub fn open_only(&self) -> anyhow::Result<Catalog> {
        Catalog::open(&self.path()?).map_err(error)
    }

    /// Opens the catalog and re-indexes the targets that need it (all of
    /// them with `--reindex`), saying so on standard error unless `quiet`.
    pub fn open(&self, quiet: bool) -> anyhow::Result<Catalog> {
        let mut catalog = self.open_only()?;
        let report = if self.reindex {
            let targets = catalog.target_paths().map_err(error)?;
            let opts = sdar_catalog::IndexOptions { reread: false };
            Some(catalog.index(&targets, &opts).map_err(error)?)
        } else {
            catalog.refresh_stale().map_err(error)?
        };
        if let Some(r) = report.filter(|_| !quiet) {
            eprintln!("{}", reindex_line(&r));
        }
        Ok(catalog)
    }
}

/// One line about a re-index that happened on the way to another command.
pub fn reindex_line(r: &IndexReport) -> String {
    let mut line = format!(
        "sdar: re-indexed {} target(s): {} backups ({} new, {} changed, {} moved, {} gone), {} files read",
        r.targets.len() - r.unavailable.len(),
        r.backups,
        r.added,
        r.updated,
        r.moved.len(),
        r.removed,
        r.opened
    );
    for (t, why) in &r.unavailable {
        line += &format!(
            "\nsdar: warning: target {} cannot be read ({why}); what was found there before is kept",
            archive_format::display::escape_lines(&t.display().to_string())
        );
    }
    line
}

/// A catalog error, with the exit code its kind calls for: usage (2) for a
/// choice that is ambiguous or impossible, the library's code for a damaged
/// backup, else 3.
pub fn error(e: sdar_catalog::Error) -> anyhow::Error {
    match e {
        e if e.is_usage() => anyhow::Error::new(UsageError(e.to_string())),
        sdar_catalog::Error::Archive(e) => e.into(),
        e => anyhow::Error::new(e),
    }
}
