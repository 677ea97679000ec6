//! `sdar menu`: the console over the catalog and the queue, driven with the
//! Enter key as the archive's own menu is.

use crate::catalog::CatalogArgs;
use clap::Args;

#[derive(Args, Debug, Default)]
pub struct MenuArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

pub fn run(args: MenuArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("sdar menu is being built")
}
