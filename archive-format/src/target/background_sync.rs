//! Flushing a file's dirty pages in the background while it is written.
//!
//! Every output is synced before it gets its final name. Left to the end,
//! that sync writes back gigabytes while the worker threads sit idle; done
//! every 64 MiB on a helper thread, the writeback overlaps compression and
//! the final sync finds little left.

use std::fs::File;
use std::io;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Bytes written between background syncs.
const SYNC_EVERY: u64 = 64 << 20;

#[derive(Debug)]
pub struct BackgroundSync {
    tx: Option<SyncSender<()>>,
    handle: Option<JoinHandle<io::Result<()>>>,
    unsynced: u64,
}

impl BackgroundSync {
    /// Starts a helper thread syncing (a clone of) `file` on request.
    pub fn new(file: &File) -> io::Result<Self> {
        let f = file.try_clone()?;
        let (tx, rx) = sync_channel::<()>(1);
        let handle = std::thread::Builder::new()
            .name("sdar-sync".into())
            .spawn(move || {
                for () in rx {
                    f.sync_data()?;
                }
                Ok(())
            })?;
        Ok(BackgroundSync {
            tx: Some(tx),
            handle: Some(handle),
            unsynced: 0,
        })
    }

    /// Counts `n` more bytes written; asks for a sync every 64 MiB. Never
    /// blocks: if a sync is still running, the request folds into the next.
    pub fn wrote(&mut self, n: u64) {
        self.unsynced += n;
        if self.unsynced >= SYNC_EVERY {
            if let Some(tx) = &self.tx {
                match tx.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => self.unsynced = 0,
                    Err(TrySendError::Disconnected(())) => {}
                }
            }
        }
    }

    /// Stops the helper and returns the first error it met. The caller
    /// still syncs the file itself before trusting it.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the background sync thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
