//! A bounded cache of pages in front of any [`ReadAt`] backend.

use super::ReadAt;
use std::io;
use std::sync::{Arc, Mutex};

/// A bounded cache of aligned pages in front of any backend: for a backend
/// where each request costs a round trip, so that the small records the
/// readers ask for one by one (index segments, change maps) come from a few
/// large fetches. A local file does not need it: the page cache does this.
pub struct CachedReader<R> {
    inner: R,
    page_len: usize,
    pages: Mutex<Lru<Vec<u8>>>,
}

/// The least recently used of at most `max` items, by number, goes first:
/// the pages of a [`CachedReader`], the records of an image. Kept small
/// (tens of items), so a scan beats a map.
#[derive(Debug)]
pub(crate) struct Lru<T> {
    /// (number, item, last use).
    items: Vec<(u64, Arc<T>, u64)>,
    clock: u64,
    max: usize,
}

impl<T> Lru<T> {
    pub fn new(max: usize) -> Self {
        Lru {
            items: Vec::new(),
            clock: 0,
            max: max.max(1),
        }
    }

    pub fn get(&mut self, n: u64) -> Option<Arc<T>> {
        self.clock += 1;
        let now = self.clock;
        let item = self.items.iter_mut().find(|i| i.0 == n)?;
        item.2 = now;
        Some(Arc::clone(&item.1))
    }

    /// Keeps `item` as number `n`, unless another thread already did.
    pub fn insert(&mut self, n: u64, item: Arc<T>) {
        if self.items.iter().any(|i| i.0 == n) {
            return;
        }
        if self.items.len() >= self.max {
            let oldest = (0..self.items.len())
                .min_by_key(|&i| self.items[i].2)
                .expect("a full cache has items");
            self.items.swap_remove(oldest);
        }
        self.clock += 1;
        self.items.push((n, item, self.clock));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl<R: ReadAt> CachedReader<R> {
    /// Caches up to `max_pages` pages of `page_len` bytes (at least 1 each).
    pub fn new(inner: R, page_len: usize, max_pages: usize) -> Self {
        CachedReader {
            inner,
            page_len: page_len.max(1),
            pages: Mutex::new(Lru::new(max_pages)),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Vec<u8>>> {
        // A cache: a panic elsewhere cannot leave it wrong.
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn page(&self, n: u64, size: u64) -> io::Result<Arc<Vec<u8>>> {
        if let Some(page) = self.lock().get(n) {
            return Ok(page);
        }
        // Fetched without the lock held: two threads may fetch one page.
        let start = n * self.page_len as u64;
        let len = (size - start).min(self.page_len as u64) as usize;
        let mut bytes = vec![0u8; len];
        self.inner.read_exact_at(&mut bytes, start)?;
        let bytes = Arc::new(bytes);
        self.lock().insert(n, Arc::clone(&bytes));
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
        assert!(cached.lock().len() <= 3);
        let e = cached.read_exact_at(&mut again, 9995).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_least_recently_used_goes_first_and_a_number_is_kept_once() {
        let mut lru = Lru::new(2);
        lru.insert(1, Arc::new("one"));
        lru.insert(2, Arc::new("two"));
        assert_eq!(lru.get(1).as_deref(), Some(&"one"));
        lru.insert(2, Arc::new("again"));
        assert_eq!(lru.get(2).as_deref(), Some(&"two"));
        lru.get(1);
        lru.insert(3, Arc::new("three"));
        assert_eq!(lru.len(), 2);
        assert!(lru.get(2).is_none(), "2 was used least recently");
        assert!(lru.get(1).is_some() && lru.get(3).is_some());
    }
}
