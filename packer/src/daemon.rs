//! `sdar daemon`: runs the queued restores, N at a time, and replication.

use crate::catalog::CatalogArgs;
use clap::Args;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Restores run at once (each uses CPU and disk bandwidth; more than 4
    /// is warned about)
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Exit once no job is waiting or running (for scripts and tests)
    #[arg(long)]
    pub until_idle: bool,
    /// How often the registered replication configs run (`sdar replicate
    /// --config FILE` registers one): 30m, 1h, 1d
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub replicate_every: String,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("sdar daemon is being built")
}
