//! `sdar replicate`: mass restore and simple replication from esXpress's
//! `vmdks.auto` config.

use crate::catalog::CatalogArgs;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// The config, in esXpress's vmdks.auto format
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The backups already restored, one per line [default: CONFIG.restored
    /// beside the config]
    #[arg(long, value_name = "FILE")]
    pub restored_log: Option<PathBuf>,
    /// One pass now, waiting for its restores to end (for cron)
    #[arg(long)]
    pub once: bool,
    /// Append a commented-out RESTORE: line for every disk in the catalog
    #[arg(long)]
    pub preload: bool,
}

pub fn run(args: ReplicateArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("sdar replicate is being built")
}

/// Runs one pass of every config registered with the catalog (`sdar daemon`
/// calls it every `--replicate-every`).
#[allow(dead_code)] // called by sdar daemon (being built)
pub fn run_registered(catalog: &CatalogArgs) -> anyhow::Result<()> {
    let _ = catalog;
    Ok(())
}
