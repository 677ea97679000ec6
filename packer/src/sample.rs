//! A deterministic "mixed VM disk" for the demo, the tests and the benchmarks.
//!
//! Compression ratio, speed and the zero-block fast path all depend on what a disk
//! holds, so a uniform or all-random sample would measure the wrong thing. Real
//! images are runs of three kinds of content: never-written zeros, compressible
//! files (text, logs, tables) and already-compressed or encrypted data. This sample
//! reproduces that mix (about 40% / 35% / 25% by bytes) and is generated on the fly,
//! so multi-gigabyte disks need neither storage nor a download, and a seed names one
//! exactly.
//!
//! Regions have odd, unaligned lengths so that every block size sees blocks that
//! straddle two kinds of content, as it would on a real filesystem.
//!
//! The bytes for a seed are part of what tests and benchmark numbers mean: changing
//! anything here that alters the output invalidates recorded results.

use std::io::{self, Write};

/// Big enough to amortise `write_all`, small enough that a 4 GiB disk never needs
/// more than this in memory.
const CHUNK_LEN: usize = 1 << 20;

/// Shortest region; real runs of one kind of content are rarely smaller than a
/// few filesystem extents.
const REGION_MIN_LEN: u64 = 64 << 10;

/// Longest region, so that even a 64 MiB disk holds a few dozen regions and its mix
/// is close to the target shares.
const REGION_MAX_LEN: u64 = 4 << 20;

/// Target share of bytes, in percent, for each `RegionKind` in declaration order.
const KIND_SHARES: [u64; 3] = [40, 35, 25];

/// How many bytes of text to generate at a time, so the per-batch bookkeeping is
/// paid per page rather than per line.
const TEXT_BATCH_LEN: usize = 4096;

/// Writes `size` bytes of a deterministic sample disk for `seed` to `out`.
///
/// The disk for a smaller `size` is a prefix of the disk for a larger one with the
/// same `seed`, so tests can use a few megabytes of the disk a benchmark uses.
pub fn write_sample_disk<W: Write>(out: &mut W, size: u64, seed: u64) -> io::Result<()> {
    let mut disk = SampleDisk::new(seed);
    let chunk_len = usize::try_from(size).map_or(CHUNK_LEN, |s| s.min(CHUNK_LEN));
    let mut chunk = vec![0u8; chunk_len];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).map_or(chunk_len, |l| l.min(chunk_len));
        disk.fill(&mut chunk[..n]);
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RegionKind {
    Zero,
    Text,
    Random,
}

const REGION_KINDS: [RegionKind; 3] = [RegionKind::Zero, RegionKind::Text, RegionKind::Random];

/// The generator's state between chunks; output never depends on where chunks
/// start or end.
struct SampleDisk {
    /// Draws region lengths and kinds only, so that tuning the content generators
    /// does not move region boundaries.
    layout: Rng,
    kind: RegionKind,
    region_left: u64,
    /// Bytes planned so far for each kind, in `REGION_KINDS` order.
    planned: [u64; 3],
    planned_total: u64,
    random: RandomBytes,
    text: TextWriter,
}

impl SampleDisk {
    fn new(seed: u64) -> Self {
        let mut seeder = SplitMix64(seed);
        let layout = Rng::from_seeder(&mut seeder);
        let random = RandomBytes::new(Rng::from_seeder(&mut seeder));
        let text = TextWriter::new(Rng::from_seeder(&mut seeder));
        SampleDisk {
            layout,
            kind: RegionKind::Zero,
            region_left: 0,
            planned: [0; 3],
            planned_total: 0,
            random,
            text,
        }
    }

    fn fill(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            if self.region_left == 0 {
                self.start_region();
            }
            let n = usize::try_from(self.region_left).map_or(buf.len(), |r| r.min(buf.len()));
            let (now, rest) = buf.split_at_mut(n);
            match self.kind {
                RegionKind::Zero => now.fill(0),
                RegionKind::Text => self.text.fill(now),
                RegionKind::Random => self.random.fill(now),
            }
            self.region_left -= n as u64;
            buf = rest;
        }
    }

    /// Picks each kind with a probability proportional to how far it lags its target
    /// share. Independent draws would need hundreds of regions before the mix settled;
    /// this keeps any 64 MiB window within a few percent of the target while the
    /// order of regions stays random.
    fn start_region(&mut self) {
        let len = self.draw_region_len();
        let total_after = u128::from(self.planned_total) + u128::from(len);
        let mut lags = [0u128; 3];
        for (lag, (&share, &planned)) in lags.iter_mut().zip(KIND_SHARES.iter().zip(&self.planned))
        {
            *lag = (total_after * u128::from(share) / 100).saturating_sub(u128::from(planned));
        }
        // The lags sum to at least `len` minus rounding, so the draw always lands.
        let sum: u128 = lags.iter().sum();
        let mut pick = (u128::from(self.layout.next_u64()) * sum) >> 64;
        let mut index = 0;
        while pick >= lags[index] {
            pick -= lags[index];
            index += 1;
        }
        self.kind = REGION_KINDS[index];
        self.planned[index] += len;
        self.planned_total += len;
        self.region_left = len;
        match self.kind {
            RegionKind::Zero => {}
            RegionKind::Text => self.text.start_region(),
            RegionKind::Random => self.random.start_region(),
        }
    }

    /// Log-uniform lengths, as file and extent sizes roughly are: many short regions
    /// and a few long ones. Drawn with integers only, so every platform agrees.
    fn draw_region_len(&mut self) -> u64 {
        let octaves = (REGION_MAX_LEN / REGION_MIN_LEN).trailing_zeros() as u64;
        let low = REGION_MIN_LEN << self.layout.below(octaves);
        low + self.layout.below(low)
    }
}

/// splitmix64, used only to expand the 64-bit seed into generator states, as the
/// xoshiro authors recommend.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: a few cycles per 8 bytes, so random regions cost about as much as
/// a memcpy, and statistically good enough that no codec finds structure in them.
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn from_seeder(seeder: &mut SplitMix64) -> Self {
        Rng {
            s: [
                seeder.next_u64(),
                seeder.next_u64(),
                seeder.next_u64(),
                seeder.next_u64(),
            ],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A value in `0..n` by multiply-shift; the bias (n / 2^64) is far below anything
    /// a sample disk could show.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `0..n` with small values more likely, as latencies, amounts and
    /// quantities are; uniform digits would make text columns look like noise.
    fn below_skewed(&mut self, n: u64) -> u64 {
        let bound = self.below(n) + 1;
        self.below(bound)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Stands in for compressed archives, media and encrypted volumes: bytes no codec
/// can shrink, which is the costliest case for a compressor's match finder.
struct RandomBytes {
    rng: Rng,
    /// Unused bytes of the last word, so a region split across chunks reads the
    /// same as one filled at once.
    spare: u64,
    spare_len: usize,
}

impl RandomBytes {
    fn new(rng: Rng) -> Self {
        RandomBytes {
            rng,
            spare: 0,
            spare_len: 0,
        }
    }

    fn start_region(&mut self) {
        self.spare_len = 0;
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let from_spare = self.spare_len.min(buf.len());
        let (head, body) = buf.split_at_mut(from_spare);
        for b in head {
            *b = self.spare as u8;
            self.spare >>= 8;
        }
        self.spare_len -= from_spare;
        let mut words = body.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let word = self.rng.next_u64();
            tail.copy_from_slice(&word.to_le_bytes()[..tail.len()]);
            self.spare = word >> (8 * tail.len());
            self.spare_len = 8 - tail.len();
        }
    }
}

#[derive(Clone, Copy)]
enum TextStyle {
    Log,
    Csv,
    Prose,
}

/// Stands in for the compressible files of a disk: logs, CSV exports and prose,
/// built from a small vocabulary plus counters and random fields, so that gzip -6
/// gets about 3:1 to 5:1 and cannot win by spotting one repeated line.
struct TextWriter {
    rng: Rng,
    style: TextStyle,
    batch: Vec<u8>,
    batch_pos: usize,
    /// Seconds since the start of the sample's imaginary month; log timestamps and
    /// CSV dates only move forward, as on a real machine.
    clock: u64,
    /// Next CSV record number.
    serial: u64,
}

impl TextWriter {
    fn new(rng: Rng) -> Self {
        TextWriter {
            rng,
            style: TextStyle::Log,
            batch: Vec::with_capacity(TEXT_BATCH_LEN + 512),
            batch_pos: 0,
            clock: 0,
            serial: 100_000,
        }
    }

    /// Each region is one file: a fresh style, starting at a line boundary.
    fn start_region(&mut self) {
        self.style = match self.rng.below(3) {
            0 => TextStyle::Log,
            1 => TextStyle::Csv,
            _ => TextStyle::Prose,
        };
        self.batch.clear();
        self.batch_pos = 0;
    }

    fn fill(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            if self.batch_pos == self.batch.len() {
                self.refill_batch();
            }
            let n = (self.batch.len() - self.batch_pos).min(buf.len());
            let (now, rest) = buf.split_at_mut(n);
            now.copy_from_slice(&self.batch[self.batch_pos..self.batch_pos + n]);
            self.batch_pos += n;
            buf = rest;
        }
    }

    fn refill_batch(&mut self) {
        self.batch.clear();
        self.batch_pos = 0;
        while self.batch.len() < TEXT_BATCH_LEN {
            match self.style {
                TextStyle::Log => self.push_log_line(),
                TextStyle::Csv => self.push_csv_line(),
                TextStyle::Prose => self.push_paragraph(),
            }
        }
    }

    fn push_log_line(&mut self) {
        self.clock += self.rng.below(4);
        self.push_timestamp();
        let host = self.rng.below(HOSTS.len() as u64) as usize;
        self.batch.push(b' ');
        self.batch.extend_from_slice(HOSTS[host].as_bytes());
        self.batch.push(b' ');
        self.batch
            .extend_from_slice(SERVICES[host % SERVICES.len()].as_bytes());
        self.batch.push(b'[');
        push_decimal(&mut self.batch, 1000 + 37 * host as u64);
        self.batch.extend_from_slice(b"]: ");
        let level = self.rng.pick(LEVELS);
        self.batch.extend_from_slice(level.as_bytes());
        self.batch.push(b' ');
        let words = 2 + self.rng.below(4);
        for i in 0..words {
            if i > 0 {
                self.batch.push(b' ');
            }
            let word = self.rng.pick(WORDS);
            self.batch.extend_from_slice(word.as_bytes());
        }
        self.batch.extend_from_slice(b" user=");
        let user = self.rng.pick(NAMES);
        self.batch.extend_from_slice(user.as_bytes());
        self.batch.extend_from_slice(b" req=");
        push_hex(&mut self.batch, self.rng.next_u64() & 0xff_ffff, 6);
        self.batch.extend_from_slice(b" took=");
        let millis = self.rng.below_skewed(2000);
        push_decimal(&mut self.batch, millis);
        self.batch.extend_from_slice(b"ms\n");
    }

    fn push_csv_line(&mut self) {
        self.clock += self.rng.below(90);
        push_decimal(&mut self.batch, self.serial);
        self.serial += 1;
        self.batch.push(b',');
        self.push_date();
        self.batch.push(b',');
        let first = self.rng.pick(NAMES);
        self.batch.extend_from_slice(first.as_bytes());
        self.batch.push(b'.');
        let last = self.rng.pick(SURNAMES);
        self.batch.extend_from_slice(last.as_bytes());
        self.batch.push(b',');
        let city = self.rng.pick(CITIES);
        self.batch.extend_from_slice(city.as_bytes());
        self.batch.push(b',');
        let amount = self.rng.below_skewed(100_000);
        push_decimal(&mut self.batch, amount / 100);
        self.batch.push(b'.');
        push_padded(&mut self.batch, amount % 100, 2);
        self.batch.push(b',');
        let status = self.rng.pick(STATUSES);
        self.batch.extend_from_slice(status.as_bytes());
        self.batch.push(b',');
        push_decimal(&mut self.batch, 1 + self.rng.below_skewed(20));
        self.batch.push(b'\n');
    }

    fn push_paragraph(&mut self) {
        let sentences = 2 + self.rng.below(6);
        for s in 0..sentences {
            if s > 0 {
                self.batch.push(b' ');
            }
            let words = 5 + self.rng.below(12);
            for w in 0..words {
                let word = self.rng.pick(WORDS).as_bytes();
                if w == 0 {
                    self.batch.push(word[0].to_ascii_uppercase());
                    self.batch.extend_from_slice(&word[1..]);
                } else {
                    self.batch
                        .push(if self.rng.below(12) == 0 { b',' } else { b' ' });
                    if self.batch.last() == Some(&b',') {
                        self.batch.push(b' ');
                    }
                    self.batch.extend_from_slice(word);
                }
            }
            self.batch.push(b'.');
        }
        self.batch.extend_from_slice(b"\n\n");
    }

    /// `2023-11-DD HH:MM:SS`, with the day wrapping every 28 days so no calendar is
    /// needed.
    fn push_timestamp(&mut self) {
        self.push_date();
        self.batch.push(b' ');
        let secs = self.clock % 86_400;
        push_padded(&mut self.batch, secs / 3600, 2);
        self.batch.push(b':');
        push_padded(&mut self.batch, secs / 60 % 60, 2);
        self.batch.push(b':');
        push_padded(&mut self.batch, secs % 60, 2);
    }

    fn push_date(&mut self) {
        self.batch.extend_from_slice(b"2023-11-");
        push_padded(&mut self.batch, 1 + self.clock / 86_400 % 28, 2);
    }
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = value;
    for d in digits[20 - width..].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits[20 - width..]);
}

fn push_hex(out: &mut Vec<u8>, value: u64, width: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..width).rev() {
        out.push(HEX[(value >> (4 * i) & 0xf) as usize]);
    }
}

const HOSTS: &[&str] = &[
    "web-01", "web-02", "web-03", "db-01", "cache-01", "batch-07",
];
const SERVICES: &[&str] = &["nginx", "app", "postgres", "sshd", "cron", "systemd"];
const LEVELS: &[&str] = &[
    "INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR",
];
const STATUSES: &[&str] = &[
    "shipped",
    "pending",
    "paid",
    "refunded",
    "cancelled",
    "paid",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "rupert", "sybil", "trent", "victor", "walter",
];
const SURNAMES: &[&str] = &[
    "smith", "jones", "brown", "taylor", "wilson", "martin", "dubois", "muller", "rossi", "garcia",
    "silva", "novak", "kowalski", "jansen", "berg", "lopez",
];
const CITIES: &[&str] = &[
    "paris", "lyon", "berlin", "madrid", "rome", "lisbon", "vienna", "prague", "warsaw", "oslo",
    "dublin", "zurich", "geneva", "milan", "porto", "ghent",
];
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "was",
    "not",
    "or",
    "an",
    "it",
    "which",
    "all",
    "can",
    "will",
    "has",
    "have",
    "more",
    "when",
    "each",
    "new",
    "file",
    "disk",
    "block",
    "data",
    "server",
    "client",
    "request",
    "response",
    "cache",
    "index",
    "table",
    "query",
    "user",
    "session",
    "error",
    "timeout",
    "retry",
    "backup",
    "restore",
    "volume",
    "snapshot",
    "network",
    "packet",
    "socket",
    "thread",
    "process",
    "memory",
    "buffer",
    "queue",
    "worker",
    "job",
    "task",
    "schedule",
    "config",
    "value",
    "key",
    "record",
    "update",
    "delete",
    "insert",
    "select",
    "commit",
    "rollback",
    "lock",
    "write",
    "read",
    "open",
    "close",
    "start",
    "stop",
    "check",
    "verify",
    "connect",
    "failed",
    "completed",
    "started",
    "received",
    "sent",
    "waiting",
    "ready",
    "running",
    "stopped",
    "slow",
    "fast",
    "large",
    "small",
    "first",
    "last",
    "next",
    "previous",
    "local",
    "remote",
    "primary",
    "replica",
    "node",
    "cluster",
    "storage",
    "image",
    "archive",
    "stream",
    "header",
    "offset",
    "length",
    "checksum",
    "version",
    "release",
    "build",
    "test",
    "report",
    "account",
    "invoice",
    "order",
    "payment",
    "customer",
    "product",
    "price",
];

/// Changes about `percent`% of the 64 KiB blocks of a sample disk in place,
/// as a VM would between two backups: half of them in clustered rewrites of
/// 8–64 blocks, a fifth by filling blocks that were zero, and the rest by
/// rewriting 1–4 random 4 KiB pages of a block. Returns how many 64 KiB
/// blocks changed. Deterministic for a seed.
pub fn change_sample_disk(
    file: &std::fs::File,
    size: u64,
    percent: f64,
    seed: u64,
) -> io::Result<u64> {
    use std::collections::HashSet;
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 64 << 10;
    const PAGE: u64 = 4 << 10;
    let blocks = size / BLOCK;
    if blocks == 0 {
        return Ok(0);
    }
    let target = ((blocks as f64 * percent / 100.0).round() as u64).clamp(1, blocks);
    let mut seeder = SplitMix64(seed ^ 0x5eed_c4a9_9e00_0001);
    let mut rng = Rng::from_seeder(&mut seeder);
    let mut text = TextWriter::new(Rng::from_seeder(&mut seeder));
    let mut random = RandomBytes::new(Rng::from_seeder(&mut seeder));
    let mut changed = HashSet::new();
    let mut buf = Vec::new();

    while (changed.len() as u64) < target / 2 {
        let len = (8 + rng.below(57)).min(blocks);
        let start = rng.below(blocks - len + 1);
        buf.resize((len * BLOCK) as usize, 0);
        if rng.below(2) == 0 {
            text.start_region();
            text.fill(&mut buf);
        } else {
            random.start_region();
            random.fill(&mut buf);
        }
        file.write_all_at(&buf, start * BLOCK)?;
        changed.extend(start..start + len);
    }
    let fill_target = changed.len() as u64 + target / 5;
    let mut tries = 0;
    buf.resize(BLOCK as usize, 0);
    while (changed.len() as u64) < fill_target && tries < blocks * 4 {
        tries += 1;
        let b = rng.below(blocks);
        file.read_exact_at(&mut buf, b * BLOCK)?;
        if buf.iter().all(|&x| x == 0) && changed.insert(b) {
            text.start_region();
            text.fill(&mut buf);
            file.write_all_at(&buf, b * BLOCK)?;
        }
    }
    let mut page = vec![0u8; PAGE as usize];
    while (changed.len() as u64) < target {
        let b = rng.below(blocks);
        if !changed.insert(b) {
            continue;
        }
        for _ in 0..1 + rng.below(4) {
            let p = rng.below(BLOCK / PAGE);
            random.start_region();
            random.fill(&mut page);
            file.write_all_at(&page, b * BLOCK + p * PAGE)?;
        }
    }
    Ok(changed.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(size: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_sample_disk(&mut out, size, seed).unwrap();
        out
    }

    #[test]
    fn same_seed_gives_same_bytes() {
        let size = 8 << 20;
        assert!(sample(size, 7) == sample(size, 7));
    }

    #[test]
    fn different_seeds_give_different_bytes() {
        let size = 8 << 20;
        assert!(sample(size, 7) != sample(size, 8));
    }

    #[test]
    fn writes_exactly_size_bytes() {
        let chunk = CHUNK_LEN as u64;
        for size in [
            0,
            1,
            65_535,
            65_536,
            65_537,
            chunk - 1,
            chunk,
            chunk + 1,
            3 * chunk + 7,
        ] {
            assert_eq!(sample(size, 1).len() as u64, size, "size {size}");
        }
    }

    #[test]
    fn smaller_disk_is_prefix_of_larger() {
        let large = sample(5 << 20, 3);
        for size in [0, 1, 4095, 65_537, (1 << 20) + 1, (3 << 20) + 7] {
            assert!(sample(size, 3) == large[..size as usize], "size {size}");
        }
    }

    /// Counts zero bytes without holding the disk in memory.
    struct ZeroCounter {
        zeros: u64,
        total: u64,
    }

    impl Write for ZeroCounter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.zeros += buf.iter().filter(|&&b| b == 0).count() as u64;
            self.total += buf.len() as u64;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn about_forty_percent_is_zeros() {
        for seed in [1, 2, 3] {
            let mut counter = ZeroCounter { zeros: 0, total: 0 };
            write_sample_disk(&mut counter, 64 << 20, seed).unwrap();
            assert_eq!(counter.total, 64 << 20);
            let percent = counter.zeros as f64 * 100.0 / counter.total as f64;
            assert!(
                (35.0..=45.0).contains(&percent),
                "seed {seed}: {percent:.1}% zeros"
            );
        }
    }
}
