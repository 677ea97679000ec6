//! An ordered parallel map: one producer, N workers, one consumer that sees
//! results in the order the producer made the jobs. Bounded in flight, so
//! memory stays flat whatever the disk size.

use crate::buffers::BufferPool;
use crate::error::{Error, Result};
use crate::source::DiskBytes;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
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
    let workers = states.len();
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, T)>(depth);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<(u64, Result<U>)>();
        for (i, mut state) in states.drain(..).enumerate() {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let work = &work;
            // Returning drops the job sender, so the workers already
            // started stop and the scope joins them.
            spawn_scoped(scope, i, workers, move || loop {
                // Hold the lock only to take a job, not while working on it.
                let next = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((seq, job))) = next else { break };
                // A panic must still answer its job: the consumer waits for
                // every job in order, so a silent one would hang the run.
                // The worker's state may be broken after it: stop using it.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(&mut state, job)
                }));
                let (result, panicked) = match result {
                    Ok(r) => (r, false),
                    Err(payload) => (Err(panic_error(i, payload.as_ref())), true),
                };
                if done_tx.send((seq, result)).is_err() || panicked {
                    break;
                }
            })?;
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

/// The error for worker `i`'s panic, with the panic's message.
fn panic_error(i: usize, payload: &(dyn std::any::Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    Error::Bug {
        what: format!("worker thread {} panicked: {message}", i + 1),
    }
}

/// Starts thread `i` of `of` in `scope`; a thread the system will not
/// create (a process or memory limit) is an error to report, not a panic.
pub(crate) fn spawn_scoped<'scope, 'env, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    i: usize,
    of: usize,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(format!("sdar-{i}"))
        .spawn_scoped(scope, f)
        .map_err(|e| {
            Error::System {
                what: format!(
                    "cannot start thread {} of {of}: {e} (the system limits threads or memory; try fewer --threads)",
                    i + 1
                ),
            }
        })
}

/// The most worker threads a run uses: 4 per core, at most [`MAX_THREADS`].
/// The workers only compress and hash (one thread reads), so more than the
/// cores gains nothing, while each in flight holds about 3 MiB of batches.
pub(crate) fn max_threads() -> usize {
    (4 * cores()).min(MAX_THREADS)
}

/// The hard ceiling on worker threads, whatever the core count.
pub(crate) const MAX_THREADS: usize = 256;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Worker threads for a requested count: 0 means one per core; a count
/// above [`max_threads`] is lowered to it.
pub(crate) fn worker_count(threads: usize) -> usize {
    match threads {
        0 => cores().min(MAX_THREADS),
        n => n.min(max_threads()),
    }
}

/// Reads a source disk of known size in batches of whole blocks, and
/// reports a source that ends early as what it is. Blocks that lie wholly
/// in a hole of the source are not read: the batch marks them as zero.
pub(crate) struct SourceBatches<'a, S> {
    source: S,
    name: &'a Path,
    size: u64,
    block_size: usize,
    batch_len: usize,
    read: u64,
    /// The run of data the source reported last, asked at or before `read`:
    /// bytes from where it was asked up to its start are zeros.
    data: Range<u64>,
}

/// About how much of the source one batch holds: large enough that thread
/// hand-offs cost nothing, small enough that a few batches in flight stay
/// within a few MiB.
const SOURCE_BATCH_BYTES: usize = 1 << 20;

/// A run of consecutive blocks of the source.
pub(crate) struct SourceBatch {
    /// The batch's bytes; those of blocks marked zero were not read and
    /// hold whatever the buffer held before (nothing, when all are zero).
    data: Vec<u8>,
    len: usize,
    block_size: usize,
    /// Per block: it lies in a hole, so it is all zeros.
    zero: Vec<bool>,
}

/// One block of a batch.
pub(crate) enum SourceBlock<'a> {
    Data(&'a [u8]),
    /// A block of this many zero bytes, known from the source's holes.
    Zero(usize),
}

impl SourceBatch {
    /// The batch's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// How many blocks the batch holds.
    pub fn block_count(&self) -> usize {
        self.zero.len()
    }

    /// The batch's blocks in order, each a whole block but the image's last.
    pub fn blocks(&self) -> impl Iterator<Item = SourceBlock<'_>> {
        self.zero.iter().enumerate().map(move |(i, &zero)| {
            let at = i * self.block_size;
            let end = (at + self.block_size).min(self.len);
            if zero {
                SourceBlock::Zero(end - at)
            } else {
                SourceBlock::Data(&self.data[at..end])
            }
        })
    }

    /// Gives the buffer back to `pool` for a later batch.
    pub fn recycle(self, pool: &BufferPool) {
        if self.data.capacity() > 0 {
            pool.give(self.data);
        }
    }
}

impl<'a, S> SourceBatches<'a, S> {
    /// Batches of whole `block_size` blocks, about 1 MiB each, from the start
    /// of a source of `size` bytes.
    pub fn new(source: S, name: &'a Path, size: u64, block_size: usize) -> Self {
        SourceBatches {
            source,
            name,
            size,
            block_size,
            batch_len: (SOURCE_BATCH_BYTES / block_size).max(1) * block_size,
            read: 0,
            data: 0..0,
        }
    }
}

impl<S: DiskBytes> SourceBatches<'_, S> {
    /// The next batch, its data blocks read into a buffer from `pool`;
    /// `None` at the end.
    pub fn next(&mut self, pool: &BufferPool) -> Result<Option<SourceBatch>> {
        let want = (self.size - self.read).min(self.batch_len as u64) as usize;
        if want == 0 {
            return Ok(None);
        }
        let start = self.read;
        let end = start + want as u64;
        let mut zero = vec![true; want.div_ceil(self.block_size)];
        let mut at = start;
        while at < end {
            let data = self.data_at(at)?;
            if data.start >= end {
                break;
            }
            // A block that holds any byte of data is read whole.
            let first = ((data.start - start) / self.block_size as u64) as usize;
            let last = ((data.end.min(end) - start).div_ceil(self.block_size as u64)) as usize;
            zero[first..last].fill(false);
            at = data.end;
        }
        let mut data = Vec::new();
        if zero.contains(&false) {
            data = pool.take_len(want);
            let mut i = 0;
            while i < zero.len() {
                if zero[i] {
                    i += 1;
                    continue;
                }
                let run = zero[i..].iter().take_while(|&&z| !z).count();
                let from = i * self.block_size;
                let to = ((i + run) * self.block_size).min(want);
                self.fill(start + from as u64, &mut data[from..to])?;
                i += run;
            }
        }
        self.read = end;
        Ok(Some(SourceBatch {
            data,
            len: want,
            block_size: self.block_size,
            zero,
        }))
    }

    /// Reads all of `buf` from `offset`, or fails naming where the source ended.
    fn fill(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self
            .source
            .fill_at(offset, buf)
            .map_err(|e| Error::io(self.name, Some(offset), e))?;
        if n < buf.len() {
            return Err(Error::Source {
                file: self.name.to_path_buf(),
                what: format!(
                    "ended at byte {}, but the disk is {} bytes",
                    offset + n as u64,
                    self.size
                ),
            });
        }
        Ok(())
    }

    /// The data at or after `at`: zeros from `at` to its start. Asks the
    /// source only when `at` is past the run it reported last.
    fn data_at(&mut self, at: u64) -> Result<Range<u64>> {
        if at >= self.data.end {
            let found = self
                .source
                .data_from(at)
                .map_err(|e| Error::io(self.name, Some(at), e))?;
            let data_start = found.start.max(at);
            // An empty run would never advance: take the rest as data.
            let data_end = if found.end > data_start {
                found.end
            } else {
                u64::MAX
            };
            self.data = data_start..data_end;
        }
        Ok(self.data.start.max(at)..self.data.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Zeros with data in `data`, as a file system would map them.
    struct Mapped {
        size: u64,
        data: Vec<Range<u64>>,
    }

    impl DiskBytes for Mapped {
        fn fill_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min((self.size - offset) as usize);
            buf[..n].fill(0);
            Ok(n)
        }
        fn data_from(&mut self, offset: u64) -> io::Result<Range<u64>> {
            Ok(self
                .data
                .iter()
                .find(|r| r.end > offset)
                .map_or(u64::MAX..u64::MAX, |r| r.start.max(offset)..r.end))
        }
    }

    /// A worker that panics answers its job with an error, which stops the
    /// run in job order; before, the consumer waited for that job forever.
    #[test]
    fn a_panicking_worker_is_an_error_not_a_hang() {
        let mut next = 0u32;
        let mut seen = Vec::new();
        let result = run_ordered(
            vec![(), (), ()],
            6,
            || {
                next += 1;
                Ok((next <= 50).then_some(next))
            },
            |_, job: u32| {
                if job == 7 {
                    panic!("job seven");
                }
                Ok(job)
            },
            |n| {
                seen.push(n);
                Ok(())
            },
        );
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Bug { .. }), "{err}");
        assert!(err.to_string().contains("job seven"), "{err}");
        assert_eq!(seen, (1..7).collect::<Vec<_>>());
    }

    /// A batch wholly in a hole takes no buffer, so a disk of holes costs
    /// no memory and no copying; a block with one byte of data is read.
    #[test]
    fn holes_take_no_buffer() {
        let block = 4096;
        let mib = SOURCE_BATCH_BYTES as u64;
        let size = 3 * mib + 100;
        let source = Mapped {
            size,
            data: vec![mib + 5..mib + 6, 3 * mib..size],
        };
        let pool = BufferPool::default();
        let mut batches = SourceBatches::new(source, Path::new("t"), size, block);
        let mut seen = Vec::new();
        while let Some(batch) = batches.next(&pool).expect("next") {
            let data: Vec<usize> = batch
                .blocks()
                .enumerate()
                .filter(|(_, b)| matches!(b, SourceBlock::Data(_)))
                .map(|(i, _)| i)
                .collect();
            seen.push((batch.len(), batch.data.len(), data));
        }
        let full = SOURCE_BATCH_BYTES;
        assert_eq!(
            seen,
            [
                (full, 0, vec![]),
                (full, full, vec![0]),
                (full, 0, vec![]),
                (100, 100, vec![0]),
            ]
        );
    }
}
