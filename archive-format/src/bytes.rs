//! Bytes at offsets: the one way the readers reach a file. `&self`, so one
//! open file serves every thread; the shape fits a local file, memory, a
//! cache, or a store that fetches byte ranges over the network.

use std::io;
use std::sync::Arc;

pub(crate) mod cache;
pub(crate) mod file;
pub mod input;

pub use cache::CachedReader;
pub use file::ArchiveFile;

/// Positional reads, shared by threads (redb's `StorageBackend`, rustic's
/// `ReadBackend::read_partial`). Implementations never keep a cursor.
pub trait ReadAt: Send + Sync {
    /// Total length in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Fills `buf` from `offset`; bytes past the end are `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Fills several buffers. A backend that pays per request (an object
    /// store) overrides it to fetch the ranges together; a file reads them
    /// one after another.
    fn read_ranges(&self, ranges: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        for (offset, buf) in ranges.iter_mut() {
            self.read_exact_at(buf, *offset)?;
        }
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn size(&self) -> io::Result<u64> {
        let meta = self.metadata()?;
        if meta.is_file() {
            return Ok(meta.len());
        }
        // A device reports 0 in its metadata: ask where it ends. Only the
        // shared cursor moves, and positional reads never use it.
        io::Seek::seek(&mut &*self, io::SeekFrom::End(0))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn read_ranges(&self, ranges: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        (**self).read_ranges(ranges)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn read_ranges(&self, ranges: &mut [(u64, &mut [u8])]) -> io::Result<()> {
        (**self).read_ranges(ranges)
    }
}

/// Bytes in memory, for tests and fuzzing.
fn read_slice(bytes: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).ok().filter(|&s| s <= bytes.len());
    match start.and_then(|s| bytes.get(s..s.checked_add(buf.len())?)) {
        Some(src) => {
            buf.copy_from_slice(src);
            Ok(())
        }
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self, buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self, buf, offset)
    }
}

impl<T: AsRef<[u8]> + Send + Sync> ReadAt for io::Cursor<T> {
    fn size(&self) -> io::Result<u64> {
        Ok(self.get_ref().as_ref().len() as u64)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_slice(self.get_ref().as_ref(), buf, offset)
    }
}

// The threading contract, checked when the crate compiles.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn ReadAt>();
    assert_send_sync::<CachedReader<std::fs::File>>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_refuse_past_the_end() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let mut buf = [0u8; 10];
        bytes.read_exact_at(&mut buf, 90).unwrap();
        assert_eq!(buf[0], 90);
        for offset in [91, 100, u64::MAX] {
            let e = bytes.read_exact_at(&mut buf, offset).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{offset}");
        }
        bytes.read_exact_at(&mut [], 100).unwrap();
    }
}
