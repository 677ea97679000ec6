//! `sdar index TARGET...`: record the backups under folders in the catalog.

use crate::catalog::{error, CatalogArgs};
use crate::output::print;
use crate::UsageError;
use archive_format::display::escape_lines;
use clap::Args;
use sdar_catalog::{IndexOptions, IndexReport};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Folders that hold backups, walked recursively [default: every target
    /// already in the catalog]
    pub targets: Vec<PathBuf>,
    /// The catalog [default: SDAR_CATALOG, else /var/lib/sdar/catalog.sqlite
    /// for root, else $XDG_DATA_HOME/sdar/catalog.sqlite]
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Read every file again, changed or not
    #[arg(long)]
    pub reindex: bool,
    /// Re-index a target before a catalog command when its last index is
    /// older than this many hours (kept in the catalog; default 5)
    #[arg(long, value_name = "HOURS")]
    pub reindex_after: Option<f64>,
    /// Drop these targets from the catalog instead (the files stay)
    #[arg(long)]
    pub forget: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let cat_args = CatalogArgs {
        catalog: args.catalog.clone(),
        reindex: false,
    };
    let mut catalog = cat_args.open_only()?;
    if let Some(h) = args.reindex_after {
        if !h.is_finite() || !(0.0..=1e6).contains(&h) {
            return Err(
                UsageError(format!("--reindex-after {h}: give hours from 0 to 1000000")).into(),
            );
        }
        catalog
            .set_setting("reindex_after", &((h * 3600.0).round() as i64).to_string())
            .map_err(error)?;
    }
    if args.forget {
        if args.targets.is_empty() {
            return Err(UsageError("--forget needs the targets to drop".into()).into());
        }
        for t in &args.targets {
            if !catalog.forget_target(t).map_err(error)? {
                return Err(
                    UsageError(format!("{} is not a target in the catalog", t.display())).into(),
                );
            }
        }
        return Ok(());
    }
    let targets = if args.targets.is_empty() {
        let all = catalog.target_paths().map_err(error)?;
        if all.is_empty() {
            if args.reindex_after.is_some() {
                return Ok(());
            }
            return Err(UsageError(
                "no targets: give the folders that hold backups (`sdar index /backups`)".into(),
            )
            .into());
        }
        all
    } else {
        for t in &args.targets {
            if !t.is_dir() {
                return Err(UsageError(format!(
                    "{}: not a folder (a target is a folder that holds backups)",
                    t.display()
                ))
                .into());
            }
        }
        args.targets.clone()
    };
    let report = catalog
        .index(
            &targets,
            &IndexOptions {
                reread: args.reindex,
            },
        )
        .map_err(error)?;
    if args.json {
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report_json(&report))?
        ))?;
    } else if !args.quiet {
        print(&report_text(&report))?;
    }
    if let Some((t, why)) = report.unavailable.first() {
        anyhow::bail!("{}: cannot read this target: {why}", t.display());
    }
    Ok(())
}

fn report_text(r: &IndexReport) -> String {
    let mut t = String::new();
    for target in &r.targets {
        t += &format!("Target {}\n", escape_lines(&target.display().to_string()));
    }
    t += &format!(
        "{} backups in {} files; {} files read ({} new, {} changed), {} moved, {} gone\n",
        r.backups,
        r.files,
        r.opened,
        r.added,
        r.updated,
        r.moved.len(),
        r.removed
    );
    t += &format!(
        "Read {} bytes of {} in backups ({:.4}%)\n",
        r.bytes_read,
        r.backup_bytes,
        r.bytes_read as f64 * 100.0 / r.backup_bytes.max(1) as f64
    );
    for (from, to) in &r.moved {
        t += &format!(
            "moved: {} -> {}\n",
            escape_lines(&from.display().to_string()),
            escape_lines(&to.display().to_string())
        );
    }
    for p in &r.problems {
        t += &format!(
            "{}: {}: {}\n",
            p.kind.name(),
            escape_lines(&p.path.display().to_string()),
            escape_lines(&p.what)
        );
    }
    t
}

fn report_json(r: &IndexReport) -> serde_json::Value {
    json!({
        "targets": r.targets.iter().map(|t| t.display().to_string()).collect::<Vec<_>>(),
        "unavailable": r.unavailable.iter().map(|(t, why)| json!({"target": t.display().to_string(), "error": why})).collect::<Vec<_>>(),
        "files": r.files,
        "opened": r.opened,
        "backups": r.backups,
        "added": r.added,
        "updated": r.updated,
        "moved": r.moved.iter().map(|(a, b)| json!({"from": a.display().to_string(), "to": b.display().to_string()})).collect::<Vec<_>>(),
        "removed": r.removed,
        "bytes_read": r.bytes_read,
        "backup_bytes": r.backup_bytes,
        "problems": r.problems.iter().map(|p| json!({"path": p.path.display().to_string(), "kind": p.kind.name(), "what": p.what})).collect::<Vec<_>>(),
    })
}
