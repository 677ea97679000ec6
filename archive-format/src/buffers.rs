//! A pool of byte buffers handed between pipeline stages and back, so that
//! a multi-gigabyte run allocates a few buffers, not one per batch: fresh
//! allocations of this size are new pages, zeroed by the kernel on first
//! touch, which cost more than the compression of zero blocks.

use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer, with capacity from an earlier use when there is one.
    pub fn take(&self) -> Vec<u8> {
        let mut b = self.pop();
        b.clear();
        b
    }

    /// A buffer of exactly `len` bytes. Its content is whatever was there:
    /// callers overwrite all of it.
    pub fn take_len(&self, len: usize) -> Vec<u8> {
        let mut b = self.pop();
        b.resize(len, 0);
        b
    }

    /// A buffer from the pool as it was given back, or a new one.
    fn pop(&self) -> Vec<u8> {
        self.free
            .lock()
            .map(|mut f| f.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn give(&self, b: Vec<u8>) {
        if let Ok(mut f) = self.free.lock() {
            if f.len() < 64 {
                f.push(b);
            }
        }
    }
}
