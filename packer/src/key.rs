//! `--key FILE`: the secret behind a backup's MAC.

use anyhow::Result;
use archive_format::auth::Key;
use std::path::Path;

/// Reads and derives the key in `path`, if one was given; a key file that
/// is too short is a usage error.
pub fn read(path: Option<&Path>) -> Result<Option<Key>> {
    let Some(path) = path else { return Ok(None) };
    match Key::from_file(path) {
        Ok(key) => Ok(Some(key)),
        Err(e @ archive_format::Error::InvalidInput { .. }) => {
            Err(anyhow::Error::new(crate::UsageError(e.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}
