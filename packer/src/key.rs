//! `--key FILE`: the secret behind a backup's MAC.

use anyhow::{Context, Result};
use archive_format::auth::Key;
use std::path::Path;

/// Reads and derives the key in `path`, if one was given.
pub fn read(path: Option<&Path>) -> Result<Option<Key>> {
    let Some(path) = path else { return Ok(None) };
    let secret = std::fs::read(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    Key::from_secret(&secret)
        .map(Some)
        .map_err(|e| anyhow::Error::new(crate::UsageError(format!("{}: {e}", path.display()))))
}
