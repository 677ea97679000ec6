//! Arbitrary bytes as an NBD client: `serve` must answer or disconnect, never panic or allocate past its
//! bounds. An odd first byte puts a valid handshake (structured replies, base:allocation, GO) before the
//! rest, so the fuzzer reaches the request parser without having to find the handshake first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdar_nbd::{Errno, Export, ServerLimits, STATE_HOLE, STATE_ZERO};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

const SIZE: usize = 256 * 1024;

struct Mem(Mutex<Vec<u8>>);

impl Export for Mem {
    fn size(&self) -> u64 {
        SIZE as u64
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // The server checked the range: an out-of-range index here is the bug the fuzzer looks for.
        let d = self.0.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), Errno> {
        let mut d = self.0.lock().unwrap();
        d[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn trim(&self, offset: u64, len: u32) -> Result<(), Errno> {
        assert!(offset + u64::from(len) <= SIZE as u64);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u32, _no_hole: bool) -> Result<(), Errno> {
        let mut d = self.0.lock().unwrap();
        d[offset as usize..offset as usize + len as usize].fill(0);
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u32) -> Vec<(u32, u32)> {
        assert!(offset + u64::from(len) <= SIZE as u64);
        // Deliberately sloppy: more than asked, and an empty extent, which the server must clamp.
        vec![
            (0, 0),
            (len / 2 + 1, STATE_HOLE | STATE_ZERO),
            (u32::MAX, 0),
        ]
    }
    fn read_only(&self) -> bool {
        false
    }
}

/// The client's bytes in, the server's replies counted and dropped.
struct Duplex<'a> {
    input: &'a [u8],
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn option(out: &mut Vec<u8>, option: u32, data: &[u8]) {
    out.extend_from_slice(b"IHAVEOPT");
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

fn handshake() -> Vec<u8> {
    let mut out = 3u32.to_be_bytes().to_vec();
    option(&mut out, 8, &[]);
    let mut meta = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 15];
    meta.extend_from_slice(b"base:allocation");
    option(&mut out, 10, &meta);
    option(&mut out, 7, &[0, 0, 0, 0, 0, 0]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 1 {
        [handshake().as_slice(), rest].concat()
    } else {
        rest.to_vec()
    };
    let mut exports: BTreeMap<String, Arc<dyn Export>> = BTreeMap::new();
    exports.insert(String::new(), Arc::new(Mem(Mutex::new(vec![0u8; SIZE]))));
    // A small request bound keeps each run fast; the bound itself is what is exercised.
    let limits = ServerLimits {
        request_len: 1 << 20,
        option_skip: 64 * 1024,
        ..ServerLimits::default()
    };
    let _ = sdar_nbd::serve(Duplex { input: &input }, &exports, &limits);
});
