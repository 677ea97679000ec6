//! `sdar queue`: submit restores to the background queue, and watch them.

use crate::catalog::CatalogArgs;
use clap::{Args, Subcommand};
use std::ffi::OsString;

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Queue a restore: `sdar queue submit ARCHIVE --to DEST [restore
    /// options]` or `sdar queue submit --vm NAME [--uuid U] [--disk NAME]
    /// [--date DATE | --days-old N] --to DEST [restore options]`
    Submit(SubmitArgs),
    /// The jobs: waiting, running (with progress), done, failed
    List(ListArgs),
    /// A job's log
    Log(LogArgs),
    /// Cancel a waiting or running job
    Cancel(CancelArgs),
    /// Forget finished jobs (and their logs)
    Purge(PurgeArgs),
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// ARCHIVE or --vm NAME ..., then --to DEST and the restore's own options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    pub id: i64,
    /// Keep printing as the job goes on, until it ends
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    pub id: i64,
}

#[derive(Args, Debug)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Only jobs that ended more than this many days ago [default: every
    /// finished job]
    #[arg(long, value_name = "DAYS")]
    pub older_than: Option<u32>,
}

pub fn run(args: QueueArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("sdar queue is being built")
}
