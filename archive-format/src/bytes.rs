//! Bytes at offsets: the one way the readers reach a file. `&self`, so one
//! open file serves every thread; the shape fits a local file, memory, a
//! cache, or a store that fetches byte ranges over the network.

use std::io;
use std::sync::{Arc, Mutex};

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

/// A bounded cache of aligned pages in front of any backend: for a backend
/// where each request costs a round trip, so that the small records the
/// readers ask for one by one (index segments, change maps) come from a few
/// large fetches. A local file does not need it: the page cache does this.
pub struct CachedReader<R> {
    inner: R,
    page_len: usize,
    max_pages: usize,
    pages: Mutex<PageCache>,
}

#[derive(Default)]
struct PageCache {
    /// (page number, its bytes, last use), at most `max_pages`.
    pages: Vec<(u64, Arc<Vec<u8>>, u64)>,
    clock: u64,
}

impl<R: ReadAt> CachedReader<R> {
    /// Caches up to `max_pages` pages of `page_len` bytes (at least 1 each).
    pub fn new(inner: R, page_len: usize, max_pages: usize) -> Self {
        CachedReader {
            inner,
            page_len: page_len.max(1),
            max_pages: max_pages.max(1),
            pages: Mutex::new(PageCache::default()),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn page(&self, n: u64, size: u64) -> io::Result<Arc<Vec<u8>>> {
        {
            let mut cache = self.pages.lock().unwrap_or_else(|p| p.into_inner());
            cache.clock += 1;
            let now = cache.clock;
            if let Some(p) = cache.pages.iter_mut().find(|p| p.0 == n) {
                p.2 = now;
                return Ok(Arc::clone(&p.1));
            }
        }
        // Fetched without the lock held: two threads may fetch one page.
        let start = n * self.page_len as u64;
        let len = (size - start).min(self.page_len as u64) as usize;
        let mut bytes = vec![0u8; len];
        self.inner.read_exact_at(&mut bytes, start)?;
        let bytes = Arc::new(bytes);
        let mut cache = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        cache.clock += 1;
        let now = cache.clock;
        if cache.pages.len() >= self.max_pages {
            let oldest = (0..cache.pages.len())
                .min_by_key(|&i| cache.pages[i].2)
                .expect("a full cache has pages");
            cache.pages.swap_remove(oldest);
        }
        cache.pages.push((n, Arc::clone(&bytes), now));
        Ok(bytes)
    }
}

impl<R: ReadAt> ReadAt for CachedReader<R> {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let size = self.inner.size()?;
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= size)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let page_len = self.page_len as u64;
        let mut at = offset;
        while at < end {
            let page = self.page(at / page_len, size)?;
            let within = (at % page_len) as usize;
            let n = (page.len() - within).min((end - at) as usize);
            let dst = (at - offset) as usize;
            buf[dst..dst + n].copy_from_slice(&page[within..within + n]);
            at += n as u64;
        }
        Ok(())
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
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Memory that counts the requests it serves.
    struct Counted(Vec<u8>, AtomicU64);

    impl ReadAt for Counted {
        fn size(&self) -> io::Result<u64> {
            Ok(self.0.len() as u64)
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.read_exact_at(buf, offset)
        }
    }

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

    #[test]
    fn the_cache_serves_any_range_with_few_fetches_and_stays_bounded() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cached = CachedReader::new(Counted(data.clone(), AtomicU64::new(0)), 1000, 3);
        // Ranges that start, end and straddle pages, and the last short one.
        for (offset, len) in [(0, 10), (995, 10), (1500, 2000), (9990, 10), (0, 10_000)] {
            let mut buf = vec![0u8; len];
            cached.read_exact_at(&mut buf, offset as u64).unwrap();
            assert_eq!(buf, data[offset..offset + len], "{offset}+{len}");
        }
        let mut again = vec![0u8; 10];
        let before = cached.get_ref().1.load(Ordering::Relaxed);
        cached.read_exact_at(&mut again, 9990).unwrap();
        assert_eq!(cached.get_ref().1.load(Ordering::Relaxed), before);
        assert!(cached.pages.lock().unwrap().pages.len() <= 3);
        let e = cached.read_exact_at(&mut again, 9995).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
