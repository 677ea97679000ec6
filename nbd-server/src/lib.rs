//! sdar's NBD server: the fixed-newstyle protocol of NetworkBlockDevice/nbd `doc/proto.md`, served over any
//! byte stream, one thread per connection, for exports that implement [`Export`].
//!
//! This crate exists to keep network-server code out of the library (`archive-format`) and out of the restore
//! runtime: a parser of hostile bytes from a socket has no business in the program embedded in every archive.
//!
//! Everything a client sends is checked before it is acted on: lengths are bounded before any allocation,
//! `offset + length` is checked arithmetic, flags that were not advertised get `EINVAL`, and malformed input
//! ends the connection cleanly (never a panic).

mod proto;
mod serve;
mod server;

pub use serve::serve;
pub use server::Server;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The error numbers of the NBD spec, and only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Errno {
    Perm = 1,
    Io = 5,
    NoMem = 12,
    Inval = 22,
    NoSpc = 28,
    Overflow = 75,
    NotSup = 95,
    Shutdown = 108,
}

/// `base:allocation` flags of a block-status extent.
pub const STATE_HOLE: u32 = 1;
pub const STATE_ZERO: u32 = 2;

/// A disk served over NBD. Offsets and lengths reaching it are already checked against [`Export::size`].
pub trait Export: Send + Sync {
    fn size(&self) -> u64;
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), Errno>;
    /// `fua`: the data is durable when this returns.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> std::result::Result<(), Errno>;
    fn flush(&self) -> std::result::Result<(), Errno>;
    /// Need not zero.
    fn trim(&self, offset: u64, len: u32) -> std::result::Result<(), Errno>;
    /// Must zero; `no_hole`: the range must stay allocated.
    fn write_zeroes(&self, offset: u64, len: u32, no_hole: bool) -> std::result::Result<(), Errno>;
    /// Extents `(length, STATE_HOLE | STATE_ZERO)` from `offset`; may cover less than `len` (not nothing).
    /// `STATE_ZERO` must only be set where the data reads as zeros.
    fn block_status(&self, offset: u64, len: u32) -> Vec<(u32, u32)>;
    fn read_only(&self) -> bool;
    /// Whether `write_zeroes` is fast (no slower than a write); if not, `FAST_ZERO` requests get `ENOTSUP`.
    fn fast_zero(&self) -> bool {
        false
    }
    /// Whether a flush on one connection makes every connection's completed writes durable.
    fn multi_conn(&self) -> bool {
        false
    }
}

/// The exports of a server, by name ("" is the default export).
pub trait ExportSet: Send + Sync {
    fn get(&self, name: &str) -> Option<Arc<dyn Export>>;
    fn names(&self) -> Vec<String>;
}

impl ExportSet for BTreeMap<String, Arc<dyn Export>> {
    fn get(&self, name: &str) -> Option<Arc<dyn Export>> {
        BTreeMap::get(self, name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// Bounds on what one client may make the server hold or do.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Option data read into memory; larger options are skipped (`NBD_REP_ERR_TOO_BIG`) up to `option_skip`.
    pub option_len: u32,
    /// Option data beyond this ends the connection.
    pub option_skip: u32,
    /// Options in one handshake.
    pub options: u32,
    /// The largest READ/WRITE/... length; at most 32 MiB (the advertised maximum block size).
    pub request_len: u32,
    /// Connections served at once by a [`Server`].
    pub connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            option_len: 16 * 1024,
            option_skip: 1024 * 1024,
            options: 1024,
            request_len: proto::BLOCK_MAX,
            connections: 16,
        }
    }
}

/// Why a connection ended other than by the client's disconnect.
#[derive(Debug)]
pub enum Error {
    /// The stream failed while `what`.
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    /// The client broke the protocol: `what` it sent.
    Protocol { what: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "NBD connection: {what}: {source}"),
            Error::Protocol { what } => write!(f, "NBD client broke the protocol: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Protocol { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
