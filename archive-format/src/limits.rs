//! Bounds on what a reader accepts from a file, so that hostile or damaged
//! input cannot make it allocate or loop without end. Callers can raise them.

/// Memory and size bounds applied while reading. `Limits::default()` suits
/// any real VM disk; raise a field to read something larger on purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest image (disk) size accepted, in bytes.
    pub max_image_size: u64,
    /// Largest body of any one record, in bytes.
    pub max_record_len: u32,
    /// Largest .vmx content kept in metadata, in bytes.
    pub max_vmx_len: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // 256 TiB: beyond VMFS's 62 TiB virtual disk limit.
            max_image_size: 1 << 48,
            // Holds a directory for 256 TiB of 64 KiB blocks (4 Mi segments' offsets
            // would be 32 MiB; 256 TiB at 64 MiB per segment is 4 Mi segments).
            max_record_len: 40 << 20,
            max_vmx_len: 1 << 20,
        }
    }
}
