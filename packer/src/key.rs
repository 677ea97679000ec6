//! `--key FILE`: the secret behind a backup's MAC.

use anyhow::Result;
use archive_format::auth::Key;
use std::path::Path;

/// Reads and derives the key in `path`, if one was given; a key file that
/// is too short is a usage error.
pub fn read(path: Option<&Path>) -> Result<Option<Key>> {
    let Some(path) = path else { return Ok(None) };
    Key::from_file(path)
        .map(Some)
        .map_err(crate::usage_if_invalid)
}
