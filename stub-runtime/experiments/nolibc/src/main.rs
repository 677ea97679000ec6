//! Decodes one gzip member or one zstd frame from standard input, hashes
//! the result with BLAKE3 and prints `HASH LEN`, with no C library: the
//! kernel is reached through rustix's raw system calls, the program starts
//! at its own `_start`, and memory comes from a bump allocator in `.bss`.
//! It measures what the codecs and the hash cost without libc and std.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const HEAP_LEN: usize = 256 << 20;

struct Bump {
    heap: UnsafeCell<[u8; HEAP_LEN]>,
    next: AtomicUsize,
}

// SAFETY: `next` hands out disjoint ranges of `heap`.
unsafe impl Sync for Bump {}

static HEAP: Bump = Bump {
    heap: UnsafeCell::new([0; HEAP_LEN]),
    next: AtomicUsize::new(0),
};

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.heap.get() as usize;
        let mut start = 0;
        let fit = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
                start = (base + next).next_multiple_of(layout.align()) - base;
                start
                    .checked_add(layout.size())
                    .filter(|&end| end <= HEAP_LEN)
            });
        match fit {
            Ok(_) => (base + start) as *mut u8,
            Err(_) => core::ptr::null_mut(),
        }
    }

    // A probe that runs once: memory is never reused.
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: &Bump = &HEAP;

unsafe impl GlobalAlloc for &Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { (**self).alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { (**self).dealloc(ptr, layout) }
    }
}

// What zstd's C code asks of a C library (memcpy and friends come from
// compiler_builtins, built with its `mem` feature).
#[cfg(feature = "c-zstd")]
mod c_shims {
    use core::alloc::{GlobalAlloc, Layout};

    #[unsafe(no_mangle)]
    extern "C" fn malloc(size: usize) -> *mut u8 {
        let layout = Layout::from_size_align(size.max(1), 16).expect("small size");
        unsafe { super::HEAP.alloc(layout) }
    }

    // Fresh `.bss` memory is already zero.
    #[unsafe(no_mangle)]
    extern "C" fn calloc(n: usize, size: usize) -> *mut u8 {
        n.checked_mul(size)
            .map_or(core::ptr::null_mut(), |len| malloc(len))
    }

    #[unsafe(no_mangle)]
    extern "C" fn free(_ptr: *mut u8) {}
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    let _ = rustix::io::write(err_fd(), b"panic\n");
    exit(101)
}

/// The kernel jumps here with the stack pointer at `argc`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym entry,
    )
}

extern "C" fn entry(_stack: *const usize) -> ! {
    let code = match run() {
        Ok(()) => 0,
        Err(msg) => {
            let _ = rustix::io::write(err_fd(), msg.as_bytes());
            1
        }
    };
    exit(code)
}

// SAFETY (the three below): a probe that never closes its standard streams.
fn in_fd() -> rustix::fd::BorrowedFd<'static> {
    unsafe { rustix::stdio::stdin() }
}
fn out_fd() -> rustix::fd::BorrowedFd<'static> {
    unsafe { rustix::stdio::stdout() }
}
fn err_fd() -> rustix::fd::BorrowedFd<'static> {
    unsafe { rustix::stdio::stderr() }
}

/// `exit_group`: rustix keeps its process-runtime calls private.
fn exit(code: i32) -> ! {
    // SAFETY: system call 231 ends the process and never returns.
    unsafe {
        core::arch::asm!("syscall", in("rax") 231, in("rdi") code, options(noreturn, nostack));
    }
}

fn run() -> Result<(), &'static str> {
    let input = read_stdin()?;
    let output = if input.starts_with(&[0x1f, 0x8b, 8]) {
        gunzip(&input)?
    } else if input.starts_with(&0xFD2F_B528u32.to_le_bytes()) {
        unzstd(&input)?
    } else {
        return Err("input is neither gzip nor zstd\n");
    };
    let hash = blake3::hash(&output);
    let mut line = Vec::with_capacity(96);
    for byte in hash.as_bytes() {
        line.push(b"0123456789abcdef"[usize::from(byte >> 4)]);
        line.push(b"0123456789abcdef"[usize::from(byte & 15)]);
    }
    line.push(b' ');
    push_decimal(&mut line, output.len());
    line.push(b'\n');
    rustix::io::write(out_fd(), &line).map_err(|_| "cannot write\n")?;
    Ok(())
}

fn read_stdin() -> Result<Vec<u8>, &'static str> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 1 << 16];
    loop {
        match rustix::io::read(in_fd(), &mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err("cannot read standard input\n"),
        }
    }
}

/// One gzip member (RFC 1952): header fields skipped, the deflate data
/// inflated. The trailer is not checked: this is a size probe.
fn gunzip(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    const BAD: &str = "bad gzip header\n";
    let flags = *input.get(3).ok_or(BAD)?;
    let mut at = 10;
    if flags & 4 != 0 {
        let xlen = input.get(at..at + 2).ok_or(BAD)?;
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for bit in [8, 16] {
        if flags & bit != 0 {
            let rest = input.get(at..).ok_or(BAD)?;
            at += rest.iter().position(|&b| b == 0).ok_or(BAD)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let deflate = input.get(at..).ok_or(BAD)?;
    miniz_oxide::inflate::decompress_to_vec(deflate).map_err(|_| "bad deflate data\n")
}

#[cfg(feature = "c-zstd")]
fn unzstd(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    use core::ffi::c_void;
    let src = input.as_ptr() as *const c_void;
    // SAFETY: zstd reads `input` within its length and writes `out` within
    // its capacity.
    unsafe {
        let size = zstd_sys::ZSTD_getFrameContentSize(src, input.len());
        if size >= zstd_sys::ZSTD_CONTENTSIZE_ERROR as u64 - 1 {
            return Err("zstd frame without its content size\n");
        }
        let mut out = Vec::with_capacity(size as usize);
        let n = zstd_sys::ZSTD_decompress(
            out.as_mut_ptr() as *mut c_void,
            out.capacity(),
            src,
            input.len(),
        );
        if zstd_sys::ZSTD_isError(n) != 0 {
            return Err("bad zstd data\n");
        }
        out.set_len(n);
        Ok(out)
    }
}

#[cfg(all(feature = "rust-zstd", not(feature = "c-zstd")))]
fn unzstd(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(64 << 20);
    ruzstd::decoding::FrameDecoder::new()
        .decode_all_to_vec(input, &mut out)
        .map_err(|_| "bad zstd data\n")?;
    Ok(out)
}

fn push_decimal(line: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    line.extend_from_slice(&digits[i..]);
}
