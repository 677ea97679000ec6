//! Live recovery (SPEC.md §20): a disk served while it is restored.
//!
//! Every block of the destination is absent, present (proven from the
//! backup and written into the destination) or written by the guest. A read
//! of an absent block fetches it through the proven image, writes it into
//! the destination and answers; a guest write into an absent block merges
//! into the fetched block unless it covers it whole; a background fill
//! makes the rest present, never touching a block the guest wrote. A flush
//! makes the destination durable, then the states (the state file, see
//! [`state`]): a state is never durable before its block's data is.
//!
//! In validate mode ([`Store::Overlay`]) the destination is a temporary
//! overlay holding only what the guest wrote, bounded, and nothing is kept.
//!
//! The engine is synchronous and thread-safe: the NBD server's connections,
//! the fill's workers and the flusher call it from their own threads.

pub mod state;

use crate::error::{Error, Result};
use crate::image::{Block, Origin, ProvenImage};
use crate::target::files::punch_hole;
use crate::ReadAt;
use state::{
    encode_page, page_of, StateFile, ABSENT, BLOCKS_PER_PAGE, PAYLOAD_LEN, PRESENT, WRITTEN,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `block_status` flags (the NBD `base:allocation` ones).
pub const STATUS_HOLE: u32 = 1;
pub const STATUS_ZERO: u32 = 2;

/// Locks serialising the fetch and first write of absent blocks: block `n`
/// takes lock `n % STRIPES`.
const STRIPES: usize = 1024;

/// Where blocks go.
pub enum Store {
    /// Live recovery into a destination's data file, with its state file
    /// (`None` once the recovery is complete and the state file removed).
    Dest {
        state: Mutex<Option<StateFile>>,
        /// The data file was created by this run: its absent blocks read as
        /// zeros, so a zero block needs no write.
        fresh: bool,
    },
    /// Validate mode: a temporary overlay holding the guest's writes only.
    Overlay {
        /// Bytes of guest blocks the overlay may hold.
        budget: u64,
        /// Free space the overlay's filesystem must keep, in bytes.
        keep_free: u64,
        used: AtomicU64,
    },
}

/// Why the overlay refused a write.
pub const OVERLAY_FULL: &str = "the validate overlay is full";

/// A disk served from a proven image while it is restored.
pub struct LiveDisk<B, D = B> {
    image: ProvenImage<B, D>,
    file: File,
    path: PathBuf,
    store: Store,
    block_size: u64,
    states: Vec<AtomicU8>,
    dirty: Vec<AtomicBool>,
    stripes: Vec<Mutex<()>>,
    absent: AtomicU64,
    flush_lock: Mutex<()>,
    write_lock: Mutex<()>,
    bad: Mutex<BTreeMap<u64, String>>,
    guest_active: AtomicUsize,
    /// When the last guest request ended, in microseconds since `started`.
    guest_seen: AtomicU64,
    started: Instant,
    log: Box<dyn Fn(String) + Send + Sync>,
}

/// What a fill did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FillReport {
    /// Blocks the fill made present.
    pub fetched: u64,
    /// Bytes it read and proved (zero blocks count nothing).
    pub bytes: u64,
    pub elapsed: Duration,
}

/// How a finished recovery's blocks got there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub absent: u64,
    pub present: u64,
    pub written: u64,
}

impl<B: ReadAt, D: ReadAt> LiveDisk<B, D> {
    /// A live disk of `image` in `file` (named `path` in messages), with
    /// every block's state as `states` says (`None`: every block absent).
    /// `log` hears of every block whose backup data failed its proof.
    pub fn new(
        image: ProvenImage<B, D>,
        file: File,
        path: impl Into<PathBuf>,
        store: Store,
        states: Option<Vec<u8>>,
        log: Box<dyn Fn(String) + Send + Sync>,
    ) -> Result<Self> {
        let blocks = image.block_count();
        let states: Vec<AtomicU8> = match states {
            Some(s) if s.len() as u64 == blocks => s.into_iter().map(AtomicU8::new).collect(),
            Some(s) => {
                return Err(Error::Bug {
                    what: format!("{} states for {blocks} blocks", s.len()),
                })
            }
            None => (0..blocks).map(|_| AtomicU8::new(ABSENT)).collect(),
        };
        let absent = states
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) == ABSENT)
            .count() as u64;
        let pages = blocks.div_ceil(BLOCKS_PER_PAGE).max(1);
        Ok(LiveDisk {
            block_size: image.block_size() as u64,
            image,
            file,
            path: path.into(),
            store,
            states,
            dirty: (0..pages).map(|_| AtomicBool::new(false)).collect(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            absent: AtomicU64::new(absent),
            flush_lock: Mutex::new(()),
            write_lock: Mutex::new(()),
            bad: Mutex::new(BTreeMap::new()),
            guest_active: AtomicUsize::new(0),
            guest_seen: AtomicU64::new(0),
            started: Instant::now(),
            log,
        })
    }

    pub fn image(&self) -> &ProvenImage<B, D> {
        &self.image
    }

    pub fn size(&self) -> u64 {
        self.image.image_size()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True in validate mode.
    pub fn is_overlay(&self) -> bool {
        matches!(self.store, Store::Overlay { .. })
    }

    /// Blocks still absent.
    pub fn absent(&self) -> u64 {
        self.absent.load(Ordering::SeqCst)
    }

    /// Every block's state, counted.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.states {
            match s.load(Ordering::Relaxed) {
                ABSENT => c.absent += 1,
                PRESENT => c.present += 1,
                _ => c.written += 1,
            }
        }
        c
    }

    /// Every block whose backup data failed its proof in this run, with why,
    /// whether or not the guest has written over it since.
    pub fn damaged_blocks(&self) -> BTreeMap<u64, String> {
        lock(&self.bad).clone()
    }

    /// The blocks whose backup data failed its proof and that are still
    /// absent (a guest write covering one whole makes it whole), with why.
    pub fn bad_blocks(&self) -> BTreeMap<u64, String> {
        let mut bad = lock(&self.bad).clone();
        bad.retain(|&n, _| self.state(n) == ABSENT);
        bad
    }

    fn state(&self, n: u64) -> u8 {
        self.states[n as usize].load(Ordering::Acquire)
    }

    /// Sets block `n`'s state, after its data was handed to the file, and
    /// marks its page for the next flush.
    fn set_state(&self, n: u64, to: u8) {
        let was = self.states[n as usize].swap(to, Ordering::AcqRel);
        if was == to {
            return;
        }
        if was == ABSENT {
            self.absent.fetch_sub(1, Ordering::SeqCst);
        }
        self.dirty[page_of(n) as usize].store(true, Ordering::Release);
    }

    fn stripe(&self, n: u64) -> MutexGuard<'_, ()> {
        lock(&self.stripes[(n % STRIPES as u64) as usize])
    }

    fn block_len(&self, n: u64) -> usize {
        self.image.block_len(n)
    }

    fn offset(&self, n: u64) -> u64 {
        n * self.block_size
    }

    /// The blocks a request touches: (block, offset in it, length, offset in
    /// the request's buffer). The caller checked `offset + len <= size`.
    fn pieces(&self, offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let bs = self.block_size;
        let end = offset + len as u64;
        let mut at = offset;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let n = at / bs;
            let inner = (at - n * bs) as usize;
            let l = (bs - inner as u64).min(end - at) as usize;
            let piece = (n, inner, l, (at - offset) as usize);
            at += l as u64;
            Some(piece)
        })
    }

    /// Reads `buf.len()` bytes at `offset`: absent blocks are fetched (and,
    /// live, kept in the destination).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let _busy = Busy::new(self);
        self.check_range(offset, buf.len() as u64)?;
        let mut scratch = Vec::new();
        let len = buf.len();
        // Blocks already in the file are read in runs, one call each.
        let mut run: Option<std::ops::Range<usize>> = None;
        for (n, inner, l, at) in self.pieces(offset, len) {
            if self.state(n) != ABSENT {
                run = Some(run.map_or(at..at + l, |r| r.start..at + l));
                continue;
            }
            if let Some(r) = run.take() {
                self.pread(&mut buf[r.clone()], offset + r.start as u64)?;
            }
            let out = &mut buf[at..at + l];
            if self.is_overlay() {
                match self.fetch(n, &mut scratch)? {
                    Block::Zero => out.fill(0),
                    Block::Data => out.copy_from_slice(&scratch[inner..inner + l]),
                }
                continue;
            }
            let _g = self.stripe(n);
            if self.state(n) != ABSENT {
                self.pread(out, self.offset(n) + inner as u64)?;
                continue;
            }
            match self.fetch_into_dest(n, &mut scratch)? {
                Block::Zero => out.fill(0),
                Block::Data => out.copy_from_slice(&scratch[inner..inner + l]),
            }
        }
        if let Some(r) = run {
            self.pread(&mut buf[r.clone()], offset + r.start as u64)?;
        }
        Ok(())
    }

    /// Writes `data` at `offset`; with `fua`, durable on return.
    pub fn write(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        let _busy = Busy::new(self);
        self.check_range(offset, data.len() as u64)?;
        let mut scratch = Vec::new();
        for (n, inner, l, at) in self.pieces(offset, data.len()) {
            self.write_piece(n, inner, &data[at..at + l], &mut scratch)?;
        }
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn write_piece(&self, n: u64, inner: usize, data: &[u8], scratch: &mut Vec<u8>) -> Result<()> {
        let at = self.offset(n);
        if self.state(n) == ABSENT {
            let _g = self.stripe(n);
            if self.state(n) == ABSENT {
                return self.write_absent(n, inner, data, scratch);
            }
        }
        // In the file already (states never go back to absent).
        self.pwrite(data, at + inner as u64)?;
        self.set_state(n, WRITTEN);
        Ok(())
    }

    /// Writes into absent block `n` (its stripe held): merged into the
    /// backup's block unless the write covers it whole.
    fn write_absent(&self, n: u64, inner: usize, data: &[u8], scratch: &mut Vec<u8>) -> Result<()> {
        let at = self.offset(n);
        self.reserve(n)?;
        let blen = self.block_len(n);
        if data.len() == blen {
            self.pwrite(data, at)?;
        } else {
            // The rest of the block is the backup's: fetched, proven, merged.
            if self.fetch(n, scratch)? == Block::Zero {
                scratch.clear();
                scratch.resize(blen, 0);
            }
            scratch[inner..inner + data.len()].copy_from_slice(data);
            self.pwrite(&scratch[..blen], at)?;
        }
        self.set_state(n, WRITTEN);
        Ok(())
    }

    /// Discards: whole blocks become holes the guest owns (read as zeros),
    /// with no fetch; the rest is left as it is (TRIM need not zero).
    pub fn trim(&self, offset: u64, len: u64) -> Result<()> {
        let _busy = Busy::new(self);
        self.check_range(offset, len)?;
        if self.is_overlay() {
            return Ok(());
        }
        for (n, inner, l, _) in self.pieces(offset, len as usize) {
            if inner != 0 || l != self.block_len(n) {
                continue;
            }
            let _g = self.stripe(n);
            if punch_hole(&self.file, self.offset(n), l as u64).is_ok() {
                self.set_state(n, WRITTEN);
            }
        }
        Ok(())
    }

    /// Writes zeros; whole blocks need no fetch (and become holes unless
    /// `no_hole`).
    pub fn write_zeroes(&self, offset: u64, len: u64, no_hole: bool, fua: bool) -> Result<()> {
        let _busy = Busy::new(self);
        self.check_range(offset, len)?;
        let mut scratch = Vec::new();
        let mut zeros = Vec::new();
        for (n, inner, l, _) in self.pieces(offset, len as usize) {
            let whole = inner == 0 && l == self.block_len(n);
            if whole && !self.is_overlay() {
                let _g = self.stripe(n);
                let at = self.offset(n);
                if no_hole || punch_hole(&self.file, at, l as u64).is_err() {
                    zero_fill(&self.file, &self.path, at, l as u64)?;
                }
                self.set_state(n, WRITTEN);
                continue;
            }
            if zeros.len() < l {
                zeros = vec![0u8; l];
            }
            self.write_piece(n, inner, &zeros[..l], &mut scratch)?;
        }
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Allocation from `offset`, as runs `(length, STATUS_*)`; covers at most
    /// `len` bytes and at most a bounded number of blocks, never nothing.
    /// Zero only where the data reads as zeros: an absent block is zero only
    /// when the backup says so.
    pub fn block_status(&self, offset: u64, len: u64) -> Vec<(u32, u32)> {
        const MOST: u64 = 1 << 14;
        let end = offset.saturating_add(len).min(self.size());
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut at = offset;
        let mut blocks = 0;
        while at < end && blocks < MOST {
            let n = at / self.block_size;
            let block_end = (self.offset(n) + self.block_len(n) as u64).min(end);
            let zero = self.state(n) != WRITTEN
                && match self.image.origin(n) {
                    Ok(Origin::Zero) => true,
                    Ok(Origin::Full(e)) => e.zero,
                    _ => false,
                };
            let flags = if zero { STATUS_HOLE | STATUS_ZERO } else { 0 };
            let l = block_end - at;
            match runs.last_mut() {
                Some((rl, rf)) if *rf == flags && (*rl as u64 + l) <= u32::MAX as u64 => {
                    *rl += l as u32
                }
                _ => runs.push((l as u32, flags)),
            }
            at = block_end;
            blocks += 1;
        }
        runs
    }

    /// True when some block's state changed since the last flush.
    pub fn has_unflushed_states(&self) -> bool {
        self.dirty.iter().any(|d| d.load(Ordering::Acquire))
    }

    /// Makes every write completed so far durable: the destination's data,
    /// then the states of its blocks.
    pub fn flush(&self) -> Result<()> {
        let _g = lock(&self.flush_lock);
        let Store::Dest { state, .. } = &self.store else {
            // The overlay is discarded: nothing in it outlives the run.
            return Ok(());
        };
        // The states are taken before the data is synced: every state taken
        // was set after its block's data was handed to the file.
        let blocks = self.image.block_count();
        let mut pages = Vec::new();
        for (p, d) in self.dirty.iter().enumerate() {
            if d.swap(false, Ordering::AcqRel) {
                let mut payload = vec![0u8; PAYLOAD_LEN];
                encode_page(p as u64, |b| self.state(b), blocks, &mut payload);
                pages.push((p as u64, payload));
            }
        }
        let synced = self
            .file
            .sync_data()
            .map_err(|e| Error::io(&self.path, None, e));
        let written = synced.and_then(|()| {
            let mut st = lock(state);
            let Some(st) = st.as_mut() else {
                return Ok(());
            };
            for (p, payload) in &pages {
                st.write_page(*p, payload)?;
            }
            if pages.is_empty() {
                Ok(())
            } else {
                st.sync()
            }
        });
        if written.is_err() {
            // Written again at the next flush.
            for (p, _) in &pages {
                self.dirty[*p as usize].store(true, Ordering::Release);
            }
        }
        written
    }

    /// Flushes, then removes the state file (a complete recovery): from
    /// here on, flushes sync the data only.
    pub fn forget_state(&self) -> Result<()> {
        self.flush()?;
        let _g = lock(&self.flush_lock);
        if let Store::Dest { state, .. } = &self.store {
            if let Some(st) = lock(state).take() {
                st.remove()?;
            }
        }
        Ok(())
    }

    /// Makes every absent block present, in block order (the order of the
    /// backup files), with `threads` workers, yielding to guest requests,
    /// at most `rate` bytes a second, until done or `stop` is set. Blocks
    /// whose backup data fails its proof stay absent (see
    /// [`LiveDisk::bad_blocks`]); an error of the destination ends the fill.
    pub fn fill(&self, threads: usize, rate: Option<u64>, stop: &AtomicBool) -> Result<FillReport> {
        if self.is_overlay() {
            return Ok(FillReport::default());
        }
        let started = Instant::now();
        const CHUNK: u64 = 16;
        let blocks = self.image.block_count();
        let next = AtomicU64::new(0);
        let fetched = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let budget = Mutex::new(0u64);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let halt = AtomicBool::new(false);
        let threads = crate::pipeline::worker_count(threads).max(1);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut scratch = Vec::new();
                    loop {
                        let first = next.fetch_add(1, Ordering::Relaxed).saturating_mul(CHUNK);
                        if first >= blocks {
                            return;
                        }
                        for n in first..(first + CHUNK).min(blocks) {
                            if stop.load(Ordering::Relaxed) || halt.load(Ordering::Relaxed) {
                                return;
                            }
                            if self.state(n) != ABSENT {
                                continue;
                            }
                            self.yield_to_guest();
                            if let Some(rate) = rate {
                                throttle(&budget, started, rate, self.block_len(n) as u64);
                            }
                            let _g = self.stripe(n);
                            if self.state(n) != ABSENT {
                                continue;
                            }
                            match self.fetch_into_dest(n, &mut scratch) {
                                Ok(b) => {
                                    fetched.fetch_add(1, Ordering::Relaxed);
                                    if b == Block::Data {
                                        bytes
                                            .fetch_add(self.block_len(n) as u64, Ordering::Relaxed);
                                    }
                                }
                                // Named in the bad blocks; the rest goes on.
                                Err(e) if e.is_integrity() => {}
                                Err(e) => {
                                    lock(&failure).get_or_insert(e);
                                    halt.store(true, Ordering::Relaxed);
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = lock(&failure).take() {
            return Err(e);
        }
        self.flush()?;
        Ok(FillReport {
            fetched: fetched.into_inner(),
            bytes: bytes.into_inner(),
            elapsed: started.elapsed(),
        })
    }

    /// Waits while the guest is busy (a request in progress, or one that
    /// ended less than 2 ms ago: a client streaming requests leaves only
    /// short gaps): the fill takes what the guest leaves, and under a
    /// steady guest load goes on at a trickle (a block per 20 ms a worker),
    /// since the guest's own reads fetch what it needs.
    fn yield_to_guest(&self) {
        const QUIET_US: u64 = 2_000;
        for _ in 0..40 {
            let now = self.started.elapsed().as_micros() as u64;
            let quiet = now.saturating_sub(self.guest_seen.load(Ordering::Relaxed)) >= QUIET_US;
            if self.guest_active.load(Ordering::Relaxed) == 0 && quiet {
                return;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Fetches block `n` (absent; its stripe held) into `scratch`, writes it
    /// into the destination and makes it present.
    fn fetch_into_dest(&self, n: u64, scratch: &mut Vec<u8>) -> Result<Block> {
        let block = self.fetch(n, scratch)?;
        let at = self.offset(n);
        let len = self.block_len(n);
        match block {
            Block::Data => self.pwrite(&scratch[..len], at)?,
            Block::Zero => {
                let fresh = matches!(self.store, Store::Dest { fresh: true, .. });
                // What an earlier run left there may be anything.
                if !fresh && punch_hole(&self.file, at, len as u64).is_err() {
                    zero_fill(&self.file, &self.path, at, len as u64)?;
                }
            }
        }
        self.set_state(n, PRESENT);
        Ok(block)
    }

    /// Block `n` from the backup, proven; a failed proof is remembered and
    /// logged once.
    fn fetch(&self, n: u64, scratch: &mut Vec<u8>) -> Result<Block> {
        match self.image.read_block(n, scratch) {
            Ok(b) => Ok(b),
            Err(e) => {
                if e.is_integrity() {
                    let mut bad = lock(&self.bad);
                    if let std::collections::btree_map::Entry::Vacant(v) = bad.entry(n) {
                        (self.log)(format!(
                            "block {n}: the backup's data failed its proof: {e}"
                        ));
                        v.insert(e.to_string());
                    }
                }
                Err(e)
            }
        }
    }

    /// In validate mode, takes room for block `n` in the overlay.
    fn reserve(&self, n: u64) -> Result<()> {
        let Store::Overlay {
            budget,
            keep_free,
            used,
        } = &self.store
        else {
            return Ok(());
        };
        let len = self.block_len(n) as u64;
        let after = used.fetch_add(len, Ordering::SeqCst) + len;
        let free = rustix::fs::fstatvfs(&self.file)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(u64::MAX);
        if after > *budget || free < keep_free.saturating_add(len) {
            used.fetch_sub(len, Ordering::SeqCst);
            return Err(Error::NoSpace {
                dir: self.path.clone(),
                needed: len,
                available: budget
                    .saturating_sub(after - len)
                    .min(free.saturating_sub(*keep_free)),
            });
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Error::invalid(format!(
                "{len} bytes at offset {offset} go past the disk's end ({} bytes)",
                self.size()
            ))),
        }
    }

    fn pread(&self, out: &mut [u8], at: u64) -> Result<()> {
        FileExt::read_exact_at(&self.file, out, at).map_err(|e| Error::io(&self.path, Some(at), e))
    }

    fn pwrite(&self, data: &[u8], at: u64) -> Result<()> {
        // One writer at a time: the kernel serialises buffered writes to a
        // file anyway (its inode lock), and its waiters spin on the CPU the
        // other threads need to decode; here they sleep.
        let _one = lock(&self.write_lock);
        self.file
            .write_all_at(data, at)
            .map_err(|e| Error::io(&self.path, Some(at), e))
    }
}

/// Counts a guest request in progress for as long as it lives, and notes
/// when it ended.
struct Busy<'a> {
    active: &'a AtomicUsize,
    seen: &'a AtomicU64,
    started: Instant,
}

impl<'a> Busy<'a> {
    fn new<B, D>(disk: &'a LiveDisk<B, D>) -> Self {
        disk.guest_active.fetch_add(1, Ordering::Relaxed);
        Busy {
            active: &disk.guest_active,
            seen: &disk.guest_seen,
            started: disk.started,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let now = self.started.elapsed().as_micros() as u64;
        self.seen.fetch_max(now, Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sleeps until `bytes` more fit in `rate` bytes a second since `started`.
fn throttle(spent: &Mutex<u64>, started: Instant, rate: u64, bytes: u64) {
    let due = {
        let mut s = lock(spent);
        *s = s.saturating_add(bytes);
        Duration::from_secs_f64(*s as f64 / rate.max(1) as f64)
    };
    let now = started.elapsed();
    if due > now {
        std::thread::sleep(due - now);
    }
}

fn zero_fill(file: &File, path: &Path, at: u64, len: u64) -> Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at + done)
            .map_err(|e| Error::io(path, Some(at + done), e))?;
        done += n as u64;
    }
    Ok(())
}

/// A lock, even after a thread panicked holding it: what it guards is
/// plain data, consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
