//! The restore runtime embedded at build time (see build.rs).

/// The static restore program every delta archive starts with.
pub static RUNTIME: &[u8] = include_bytes!(env!("SDAR_STUB_PATH"));
