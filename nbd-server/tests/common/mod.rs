//! An in-memory export and a hand-written NBD client for the tests.
#![allow(dead_code)]

use sdar_nbd::{Errno, Export, ExportSet, ServerLimits, STATE_HOLE, STATE_ZERO};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

pub const GRANULE: usize = 64 * 1024;

pub struct MemExport {
    pub data: RwLock<Vec<u8>>,
    pub read_only: bool,
}

impl MemExport {
    pub fn new(data: Vec<u8>) -> Arc<MemExport> {
        Arc::new(MemExport {
            data: RwLock::new(data),
            read_only: false,
        })
    }
}

impl Export for MemExport {
    fn size(&self) -> u64 {
        self.data.read().unwrap().len() as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let d = self.data.read().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), Errno> {
        let mut d = self.data.write().unwrap();
        d[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn trim(&self, _offset: u64, _len: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u32, _no_hole: bool) -> Result<(), Errno> {
        let mut d = self.data.write().unwrap();
        d[offset as usize..offset as usize + len as usize].fill(0);
        Ok(())
    }
    /// Granules of zeros are holes that read as zeros.
    fn block_status(&self, offset: u64, len: u32) -> Vec<(u32, u32)> {
        let d = self.data.read().unwrap();
        let mut out: Vec<(u32, u32)> = Vec::new();
        let (mut at, end) = (offset as usize, offset as usize + len as usize);
        while at < end {
            let next = ((at / GRANULE + 1) * GRANULE).min(end);
            let granule = (at / GRANULE * GRANULE)..((at / GRANULE + 1) * GRANULE).min(d.len());
            let flags = if d[granule].iter().all(|&b| b == 0) {
                STATE_HOLE | STATE_ZERO
            } else {
                0
            };
            match out.last_mut() {
                Some((l, f)) if *f == flags => *l += (next - at) as u32,
                _ => out.push(((next - at) as u32, flags)),
            }
            at = next;
        }
        out
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
}

pub fn exports(export: Arc<MemExport>) -> Arc<BTreeMap<String, Arc<dyn Export>>> {
    let mut map: BTreeMap<String, Arc<dyn Export>> = BTreeMap::new();
    map.insert(String::new(), export.clone());
    map.insert("disk".into(), export);
    Arc::new(map)
}

/// `serve` on one end of a socket pair; the test is the client on the other.
pub fn start(
    set: Arc<dyn ExportSet>,
    limits: ServerLimits,
) -> (UnixStream, JoinHandle<sdar_nbd::Result<()>>) {
    let (client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let handle = std::thread::spawn(move || sdar_nbd::serve(server, &*set, &limits));
    (client, handle)
}

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn read_n(c: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    c.read_exact(&mut b).unwrap();
    b
}

/// Reads the greeting and answers with the client flags.
pub fn greet(c: &mut UnixStream, client_flags: u32) {
    let g = read_n(c, 18);
    assert_eq!(&g[0..8], b"NBDMAGIC");
    assert_eq!(&g[8..16], b"IHAVEOPT");
    assert_eq!(u16_at(&g, 16), 3, "FIXED_NEWSTYLE | NO_ZEROES");
    c.write_all(&client_flags.to_be_bytes()).unwrap();
}

pub fn send_opt(c: &mut UnixStream, option: u32, data: &[u8]) {
    let mut m = b"IHAVEOPT".to_vec();
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    c.write_all(&m).unwrap();
}

/// (option, reply type, data)
pub fn opt_reply(c: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    let h = read_n(c, 20);
    assert_eq!(u64_at(&h, 0), 0x0003_e889_0455_65a9);
    let len = u32_at(&h, 16) as usize;
    (u32_at(&h, 8), u32_at(&h, 12), read_n(c, len))
}

pub fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

pub fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

/// Handshake to transmission on `name`: optionally structured replies and base:allocation. Returns the size
/// and transmission flags.
pub fn go(c: &mut UnixStream, name: &str, structured: bool, meta: bool) -> (u64, u16) {
    greet(c, 3);
    if structured {
        send_opt(c, 8, &[]);
        assert_eq!(opt_reply(c).1, 1);
    }
    if meta {
        send_opt(c, 10, &meta_data(name, &["base:allocation"]));
        let (_, kind, data) = opt_reply(c);
        assert_eq!(kind, 4);
        assert_eq!(&data[4..], b"base:allocation");
        assert_eq!(opt_reply(c).1, 1);
    }
    send_opt(c, 7, &go_data(name, &[3]));
    let mut size_flags = None;
    loop {
        let (opt, kind, data) = opt_reply(c);
        assert_eq!(opt, 7);
        match kind {
            3 if u16_at(&data, 0) == 0 => size_flags = Some((u64_at(&data, 2), u16_at(&data, 10))),
            3 => {}
            1 => break,
            other => panic!("GO answered {other:#x}"),
        }
    }
    size_flags.unwrap()
}

pub fn request(
    c: &mut UnixStream,
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    len: u32,
    payload: &[u8],
) {
    let mut m = 0x2560_9513u32.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&offset.to_be_bytes());
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(payload);
    c.write_all(&m).unwrap();
}

/// A simple reply: (error, cookie).
pub fn simple(c: &mut UnixStream) -> (u32, u64) {
    let h = read_n(c, 16);
    assert_eq!(u32_at(&h, 0), 0x6744_6698, "simple reply magic");
    (u32_at(&h, 4), u64_at(&h, 8))
}

/// A structured reply chunk: (flags, type, cookie, payload).
pub fn chunk(c: &mut UnixStream) -> (u16, u16, u64, Vec<u8>) {
    let h = read_n(c, 20);
    assert_eq!(u32_at(&h, 0), 0x668e_33ef, "structured reply magic");
    let len = u32_at(&h, 16) as usize;
    (u16_at(&h, 4), u16_at(&h, 6), u64_at(&h, 8), read_n(c, len))
}

/// The error of a structured reply that must be one ERROR chunk with DONE.
pub fn chunk_error(c: &mut UnixStream) -> u32 {
    let (flags, kind, _, data) = chunk(c);
    assert_eq!((flags, kind), (1, 0x8001), "one ERROR chunk with DONE");
    u32_at(&data, 0)
}

/// Seeded bytes (xorshift).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
