//! An ordered parallel map: one producer, N workers, one consumer that sees
//! results in the order the producer made the jobs. Bounded in flight, so
//! memory stays flat whatever the disk size.

use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};

/// Runs `work` over the jobs from `produce` on one thread per entry of
/// `states`, and hands the results to `consume` in job order. At most
/// `depth` jobs are in flight. The first error stops production and is
/// returned once the workers have drained.
pub(crate) fn run_ordered<T, U, S>(
    mut states: Vec<S>,
    depth: usize,
    mut produce: impl FnMut() -> Result<Option<T>>,
    work: impl Fn(&mut S, T) -> Result<U> + Sync,
    mut consume: impl FnMut(U) -> Result<()>,
) -> Result<()>
where
    T: Send,
    U: Send,
    S: Send,
{
    if states.len() <= 1 {
        let mut state = states.pop().expect("at least one worker state");
        while let Some(job) = produce()? {
            consume(work(&mut state, job)?)?;
        }
        return Ok(());
    }
    let depth = depth.max(states.len());
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, T)>(depth);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<(u64, Result<U>)>();
        for mut state in states.drain(..) {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let work = &work;
            scope.spawn(move || loop {
                // Hold the lock only to take a job, not while working on it.
                let next = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((seq, job))) = next else { break };
                if done_tx.send((seq, work(&mut state, job))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);

        let mut sent = 0u64;
        let mut next = 0u64;
        let mut finished = false;
        let mut produce_error = None;
        let mut waiting: BTreeMap<u64, Result<U>> = BTreeMap::new();
        loop {
            while !finished && sent - next < depth as u64 {
                match produce() {
                    Ok(Some(job)) => {
                        // Sending fails only if every worker panicked; the scope re-raises that.
                        if job_tx.send((sent, job)).is_err() {
                            finished = true;
                        }
                        sent += 1;
                    }
                    Ok(None) => finished = true,
                    Err(e) => {
                        produce_error = Some(e);
                        finished = true;
                    }
                }
            }
            if next == sent {
                break;
            }
            let Ok((seq, result)) = done_rx.recv() else {
                break;
            };
            waiting.insert(seq, result);
            // Results are consumed, and errors reported, in job order, so the
            // first bad block is the one named whatever thread found it.
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                consume(result?)?;
            }
        }
        // Returning drops the job sender: idle workers stop, busy ones finish
        // their job, and the scope joins them.
        match produce_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// Worker threads for a requested count: 0 means one per core.
pub(crate) fn worker_count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Reads a source disk of known size in batches of whole blocks, and
/// reports a source that ends early as what it is.
pub(crate) struct SourceBatches<'a, R> {
    pub source: R,
    pub name: &'a std::path::Path,
    pub size: u64,
    pub batch_len: usize,
    pub read: u64,
}

/// About how much of the source one batch holds: large enough that thread
/// hand-offs cost nothing, small enough that a few batches in flight stay
/// within a few MiB.
const SOURCE_BATCH_BYTES: usize = 1 << 20;

impl<'a, R> SourceBatches<'a, R> {
    /// Batches of whole `block_size` blocks, about 1 MiB each, from the start
    /// of a source of `size` bytes.
    pub fn new(source: R, name: &'a std::path::Path, size: u64, block_size: usize) -> Self {
        SourceBatches {
            source,
            name,
            size,
            batch_len: (SOURCE_BATCH_BYTES / block_size).max(1) * block_size,
            read: 0,
        }
    }
}

impl<R: std::io::Read> SourceBatches<'_, R> {
    /// The next batch, read into a buffer from `pool`; `None` at the end.
    pub fn next(&mut self, pool: &crate::buffers::BufferPool) -> Result<Option<Vec<u8>>> {
        let want = (self.size - self.read).min(self.batch_len as u64) as usize;
        if want == 0 {
            return Ok(None);
        }
        let mut data = pool.take_len(want);
        let n = crate::archive_file::read_full(&mut self.source, &mut data)
            .map_err(|e| crate::Error::io(self.name, Some(self.read), e))?;
        if n < want {
            return Err(crate::Error::Source {
                file: self.name.to_path_buf(),
                what: format!(
                    "ended at byte {}, but the disk is {} bytes",
                    self.read + n as u64,
                    self.size
                ),
            });
        }
        self.read += want as u64;
        Ok(Some(data))
    }
}
