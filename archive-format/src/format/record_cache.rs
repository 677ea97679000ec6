//! A bounded cache of parsed records (index segments, change maps), shared
//! by threads, that remembers what was proven: a record read again after
//! it left the cache must be the record the proof saw.

use crate::bytes::cache::Lru;
use crate::error::{Error, Hash, Result};
use std::sync::{Arc, Mutex, MutexGuard};

/// Records kept per image: a segment of 1024 entries is about 60 KiB, so
/// 64 of them bound a reader to a few MiB whatever the disk size.
pub(crate) const CACHED_RECORDS: usize = 64;

/// Clones share the cache: they read the same open file, so a record
/// proven through one is proven for all.
#[derive(Debug)]
pub(crate) struct RecordCache<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

#[derive(Debug)]
struct Inner<T> {
    records: Lru<T>,
    /// Once the image is proven: the digest of every record, by number.
    proven: Option<Arc<Vec<Hash>>>,
}

impl<T> Default for RecordCache<T> {
    fn default() -> Self {
        RecordCache {
            inner: Arc::new(Mutex::new(Inner {
                records: Lru::new(CACHED_RECORDS),
                proven: None,
            })),
        }
    }
}

impl<T> Clone for RecordCache<T> {
    fn clone(&self) -> Self {
        RecordCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> RecordCache<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // The data is a cache: a panic elsewhere cannot leave it wrong.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `n`, from the cache or from `load`. Once proven, a loaded
    /// record whose `digest` differs from the proven one is `changed()`.
    pub fn get(
        &self,
        n: u64,
        load: impl FnOnce() -> Result<T>,
        digest: impl FnOnce(&T) -> Hash,
        changed: impl FnOnce() -> Error,
    ) -> Result<Arc<T>> {
        let proven = {
            let mut c = self.lock();
            if let Some(record) = c.records.get(n) {
                return Ok(record);
            }
            c.proven.clone()
        };
        // Loaded without the lock: threads wanting other records go on.
        let record = load()?;
        if let Some(digests) = proven {
            if digests.get(n as usize) != Some(&digest(&record)) {
                return Err(changed());
            }
        }
        let record = Arc::new(record);
        self.lock().records.insert(n, Arc::clone(&record));
        Ok(record)
    }

    /// Records the digests the proof saw, record by record.
    pub fn set_proven(&self, digests: Vec<Hash>) {
        self.lock().proven = Some(Arc::new(digests));
    }

    pub fn is_proven(&self) -> bool {
        self.lock().proven.is_some()
    }
}
