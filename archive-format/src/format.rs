//! The formats: what the bytes of a full image and a delta archive mean
//! (SPEC.md is the only byte table), how their records, members and
//! indexes are read and written, and the disk descriptions around them
//! (VMDK descriptors, .vmx files, foreign containers).

pub mod auth;
pub(crate) mod codec;
pub mod container;
pub mod delta;
pub(crate) mod footer;
pub mod full;
pub(crate) mod header;
pub(crate) mod identity;
pub(crate) mod index;
pub(crate) mod meta;
pub(crate) mod record;
pub(crate) mod record_cache;
pub(crate) mod trailer;
pub mod vmdk;
pub mod vmx;
