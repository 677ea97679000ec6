//! A real VM boots from `sdar live` (issue 14): `qemu-system-x86_64` runs a
//! boot sector this test writes, which reads marker sectors in blocks far
//! apart through the BIOS (int 13h extended reads, so through QEMU's NBD
//! client and sdar's fetch-and-prove of absent blocks), checks them, writes a
//! sector, reads it back and ends the VM through `isa-debug-exit` with a
//! status saying which check failed. Then the written sector must be in the
//! export and, once `sdar live --exit-when-complete` ends, in the restored
//! disk, which must equal the backed-up disk with that one sector changed.
//! The second test kills sdar with SIGKILL while the guest waits between two
//! reads and the background restore is mid-way, restarts the same command
//! once the guest's next read is waiting in QEMU, and the guest goes on when
//! QEMU's `reconnect-delay` finds the new server.
//!
//! QEMU comes from `$SDAR_QEMU_PREFIX` (default `/opt/sdar-qemu`, where
//! `tests/run --install-only` unpacks Debian's qemu-system-x86 without
//! replacing qemu-utils), else from the PATH. It runs under TCG unless
//! `SDAR_QEMU_ACCEL` names another accelerator (`kvm`): on the nested VMs
//! this was written on, a guest this small boots faster under TCG. The
//! qemu-io and qemu-img checks pass with qemu-utils 10 and with Debian 12's
//! 7.2; to run them with 7.2 beside 10: `apt-get download qemu-utils=1:7.2*`,
//! `dpkg-deb -x` it into DIR, and put DIR/usr/bin first on the PATH.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECTOR: usize = 512;
const BLOCK: usize = 65_536;
const SECTORS_PER_BLOCK: u32 = (BLOCK / SECTOR) as u32;
/// 64 blocks of 64 KiB.
const DISK_LEN: usize = 4 << 20;
const LAST_LBA: u32 = (DISK_LEN / SECTOR) as u32 - 1;

/// The guest's program, loaded by the BIOS at 0000:7C00 (16-bit real mode),
/// hand-assembled; every instruction is commented with its assembly (AT&T
/// operand order: source, destination). It reads its parameters from
/// `PARAMS` (0x7D80 once loaded); writes the sector WRITE_LBA filled with
/// PATTERN and flushes the disk's cache; checks each marker sector, waiting
/// once after PAUSE_AFTER of them if asked; reads the written sector back;
/// and writes a status to the isa-debug-exit port (`Guest::explain` reads
/// it). It prints to COM1, which the test reads to know where the guest is:
/// `S` once started, `w` once the write is flushed, `a`+k before reading
/// marker k, `|` before its wait and `!` on success.
#[rustfmt::skip]
const BOOT_CODE: [u8; 319] = [
    // 7C00 start: a stack below the code, all segments 0
    0xfa,                               // cli
    0x31, 0xc0,                         // xor  %ax,%ax
    0x8e, 0xd8,                         // mov  %ax,%ds
    0x8e, 0xc0,                         // mov  %ax,%es
    0x8e, 0xd0,                         // mov  %ax,%ss
    0xbc, 0x00, 0x7c,                   // mov  $0x7c00,%sp
    0xfb,                               // sti
    0xfc,                               // cld                  (string ops go up)
    0x88, 0x16, 0x8f, 0x7d,             // mov  %dl,DRIVE       (the BIOS's boot drive)
    // int 13h AH=41h: the extended calls (AH=42h/43h) must be there, or exit 0x40
    0xb4, 0x41,                         // mov  $0x41,%ah
    0xbb, 0xaa, 0x55,                   // mov  $0x55aa,%bx
    0xcd, 0x13,                         // int  $0x13
    0xb0, 0x40,                         // mov  $0x40,%al       (status: no extensions)
    0x0f, 0x82, 0xf3, 0x00,             // jc   exit (7D12)
    0x81, 0xfb, 0x55, 0xaa,             // cmp  $0xaa55,%bx
    0x0f, 0x85, 0xeb, 0x00,             // jne  exit (7D12)
    0xb0, 0x53,                         // mov  $'S',%al
    0xe8, 0x0e, 0x01,                   // call putc (7D3A)
    // 7C2C: fill BUF with PATTERN, write it at WRITE_LBA
    0xbf, 0x00, 0x80,                   // mov  $BUF,%di
    0xa0, 0x98, 0x7d,                   // mov  PATTERN,%al
    0xb9, 0x00, 0x02,                   // mov  $512,%cx
    0xf3, 0xaa,                         // rep stosb
    0x66, 0xa1, 0x94, 0x7d,             // mov  WRITE_LBA,%eax
    0x66, 0xa3, 0xa8, 0x7d,             // mov  %eax,DAP_LBA
    0xb8, 0x00, 0x43,                   // mov  $0x4300,%ax     (extended write, AL=0: no verify)
    0xe8, 0xd3, 0x00,                   // call disk (7D18)
    0xb0, 0x41,                         // mov  $0x41,%al       (status: write failed)
    0x0f, 0x82, 0xc7, 0x00,             // jc   exit (7D12)
    // 7C4B: ATA FLUSH CACHE (E7h) to the primary master, straight to the
    // ports (the BIOS has no flush call): QEMU sends it as an NBD flush
    0xba, 0xf6, 0x01,                   // mov  $0x1f6,%dx      (drive/head register)
    0xb0, 0xa0,                         // mov  $0xa0,%al       (master)
    0xee,                               // out  %al,(%dx)
    0xba, 0xf7, 0x01,                   // mov  $0x1f7,%dx      (command register)
    0xb0, 0xe7,                         // mov  $0xe7,%al       (FLUSH CACHE)
    0xee,                               // out  %al,(%dx)
    0xec,                               // 7C57: in (%dx),%al   (status register)
    0xa8, 0x80,                         // test $0x80,%al       (BSY)
    0x75, 0xfb,                         // jnz  7C57
    0x24, 0x61,                         // and  $0x61,%al       (DRDY, DF, ERR)
    0x3c, 0x40,                         // cmp  $0x40,%al       (ready, no fault: else no drive there)
    0xb0, 0x44,                         // mov  $0x44,%al       (status: flush failed)
    0x0f, 0x85, 0xac, 0x00,             // jne  exit (7D12)
    0xb0, 0x77,                         // mov  $'w',%al
    0xe8, 0xcf, 0x00,                   // call putc (7D3A)
    // 7C6B next_marker: BX = k, the index of the next marker
    0x0f, 0xb6, 0x1e, 0x8e, 0x7d,       // movzbw K,%bx
    0x3a, 0x1e, 0x8c, 0x7d,             // cmp  COUNT,%bl
    0x73, 0x6b,                         // jae  markers_done (7CE1)
    0x88, 0xd8,                         // mov  %bl,%al
    0x04, 0x61,                         // add  $'a',%al
    0xe8, 0xbd, 0x00,                   // call putc (7D3A)
    0xc1, 0xe3, 0x02,                   // shl  $2,%bx          (4 bytes an LBA)
    0x66, 0x8b, 0x87, 0xb0, 0x7d,       // mov  LBAS(%bx),%eax
    0x66, 0xa3, 0xa8, 0x7d,             // mov  %eax,DAP_LBA
    0xb4, 0x42,                         // mov  $0x42,%ah       (extended read)
    0xe8, 0x8a, 0x00,                   // call disk (7D18)
    0xb1, 0x01,                         // mov  $1,%cl          (failure kind 1: read error)
    0x72, 0x43,                         // jc   marker_fail (7CD5)
    0xbe, 0x00, 0x80,                   // mov  $BUF,%si
    0xbf, 0x80, 0x7d,                   // mov  $TAG,%di
    0xb9, 0x0c, 0x00,                   // mov  $12,%cx
    0xf3, 0xa6,                         // repe cmpsb           (the sector's first 12 bytes = TAG?)
    0xb1, 0x02,                         // mov  $2,%cl          (failure kind 2: wrong tag)
    0x75, 0x34,                         // jne  marker_fail (7CD5)
    0x66, 0xa1, 0xa8, 0x7d,             // mov  DAP_LBA,%eax
    0x66, 0x3b, 0x06, 0x0c, 0x80,       // cmp  BUF+12,%eax     (the LBA after the tag)
    0xb1, 0x03,                         // mov  $3,%cl          (failure kind 3: wrong LBA)
    0x75, 0x27,                         // jne  marker_fail (7CD5)
    0x66, 0x3b, 0x06, 0xfc, 0x81,       // cmp  BUF+508,%eax    (the LBA in the last 4 bytes)
    0x75, 0x20,                         // jne  marker_fail (7CD5)
    0xfe, 0x06, 0x8e, 0x7d,             // incb K
    0xa0, 0x8e, 0x7d,                   // mov  K,%al
    0x3a, 0x06, 0x8d, 0x7d,             // cmp  PAUSE_AFTER,%al
    0x75, 0xa9,                         // jne  next_marker (7C6B)
    0xb0, 0x7c,                         // mov  $'|',%al
    0xe8, 0x73, 0x00,                   // call putc (7D3A)
    0xb4, 0x86,                         // mov  $0x86,%ah       (int 15h AH=86h: wait CX:DX us)
    0x8b, 0x0e, 0x92, 0x7d,             // mov  PAUSE_US+2,%cx
    0x8b, 0x16, 0x90, 0x7d,             // mov  PAUSE_US,%dx
    0xcd, 0x15,                         // int  $0x15
    0xeb, 0x96,                         // jmp  next_marker (7C6B)
    // 7CD5 marker_fail: status 4 * (k + 1) + CL
    0xa0, 0x8e, 0x7d,                   // mov  K,%al
    0xfe, 0xc0,                         // inc  %al
    0xc0, 0xe0, 0x02,                   // shl  $2,%al
    0x00, 0xc8,                         // add  %cl,%al
    0xeb, 0x31,                         // jmp  exit (7D12)
    // 7CE1 markers_done: zero BUF, read WRITE_LBA back, compare every byte with PATTERN
    0x66, 0xa1, 0x94, 0x7d,             // mov  WRITE_LBA,%eax
    0x66, 0xa3, 0xa8, 0x7d,             // mov  %eax,DAP_LBA
    0xbf, 0x00, 0x80,                   // mov  $BUF,%di
    0x31, 0xc0,                         // xor  %ax,%ax
    0xb9, 0x00, 0x02,                   // mov  $512,%cx
    0xf3, 0xaa,                         // rep stosb
    0xb4, 0x42,                         // mov  $0x42,%ah       (extended read)
    0xe8, 0x20, 0x00,                   // call disk (7D18)
    0xb0, 0x42,                         // mov  $0x42,%al       (status: read-back failed)
    0x72, 0x16,                         // jc   exit (7D12)
    0xbf, 0x00, 0x80,                   // mov  $BUF,%di
    0xa0, 0x98, 0x7d,                   // mov  PATTERN,%al
    0xb9, 0x00, 0x02,                   // mov  $512,%cx
    0xf3, 0xae,                         // repe scasb
    0xb0, 0x43,                         // mov  $0x43,%al       (status: read back other bytes)
    0x75, 0x07,                         // jne  exit (7D12)
    0xb0, 0x21,                         // mov  $'!',%al
    0xe8, 0x2a, 0x00,                   // call putc (7D3A)
    0xb0, 0x50,                         // mov  $0x50,%al       (status: success)
    // 7D12 exit: QEMU exits with status (AL << 1) | 1; without the device, halt
    0xe6, 0xf4,                         // out  %al,$0xf4
    0xfa,                               // 7D14: cli
    0xf4,                               // hlt
    0xeb, 0xfc,                         // jmp  7D14
    // 7D18 disk: int 13h function AH on one sector at DAP_LBA into/from 0000:BUF
    0xc7, 0x06, 0xa0, 0x7d, 0x10, 0x00, // movw $0x10,DAP       (packet size 16, reserved 0)
    0xc7, 0x06, 0xa2, 0x7d, 0x01, 0x00, // movw $1,DAP+2        (one sector)
    0xc7, 0x06, 0xa4, 0x7d, 0x00, 0x80, // movw $BUF,DAP+4      (buffer offset)
    0xc7, 0x06, 0xa6, 0x7d, 0x00, 0x00, // movw $0,DAP+6        (buffer segment)
    0x8a, 0x16, 0x8f, 0x7d,             // mov  DRIVE,%dl
    0xbe, 0xa0, 0x7d,                   // mov  $DAP,%si
    0xcd, 0x13,                         // int  $0x13           (CF set on error)
    0xc3,                               // ret
    // 7D3A putc: AL to COM1's transmit register
    0xba, 0xf8, 0x03,                   // mov  $0x3f8,%dx
    0xee,                               // out  %al,(%dx)
    0xc3,                               // ret
];

/// Where the program's parameters start in the boot sector (0x7D80 once
/// loaded). Offsets from there, as the code above addresses them:
const PARAMS: usize = 0x180;
/// 12 bytes every marker sector starts with (TAG, 0x7D80).
const TAG_AT: usize = 0;
/// How many LBAs `LBAS` holds (COUNT, 0x7D8C).
const COUNT_AT: usize = 12;
/// Wait after this many markers were checked; 0: never (PAUSE_AFTER, 0x7D8D).
const PAUSE_AFTER_AT: usize = 13;
// 14 (K) and 15 (DRIVE) are the program's variables, zero in the image.
/// The wait in microseconds, u32 (PAUSE_US, 0x7D90).
const PAUSE_US_AT: usize = 16;
/// The sector the guest writes, u32 (WRITE_LBA, 0x7D94).
const WRITE_LBA_AT: usize = 20;
/// The byte the written sector is filled with (PATTERN, 0x7D98).
const PATTERN_AT: usize = 24;
// 32..48: the disk address packet (DAP, 0x7DA0), zero in the image: its
// high LBA dword must stay zero.
/// The marker LBAs, u32 each (LBAS, 0x7DB0), up to the boot signature.
const LBAS_AT: usize = 48;
const MAX_MARKERS: usize = (510 - PARAMS - LBAS_AT) / 4;
const _: () = assert!(BOOT_CODE.len() <= PARAMS);

const TAG: &[u8; 12] = b"sdar-marker:";
/// What the full holds in the marker sector that the delta changes: a guest
/// shown the full's block instead of the delta's fails with "wrong tag".
const OLD_TAG: &[u8; 12] = b"sdar-MARKER:";

/// What the guest does.
struct Guest {
    markers: Vec<u32>,
    pause_after: u8,
    pause: Duration,
    write_lba: u32,
    pattern: u8,
}

impl Guest {
    fn boot_sector(&self) -> [u8; SECTOR] {
        assert!(self.markers.len() <= MAX_MARKERS);
        let mut s = [0u8; SECTOR];
        s[..BOOT_CODE.len()].copy_from_slice(&BOOT_CODE);
        let p = &mut s[PARAMS..510];
        p[TAG_AT..TAG_AT + 12].copy_from_slice(TAG);
        p[COUNT_AT] = self.markers.len() as u8;
        p[PAUSE_AFTER_AT] = self.pause_after;
        let us = u32::try_from(self.pause.as_micros()).unwrap();
        p[PAUSE_US_AT..PAUSE_US_AT + 4].copy_from_slice(&us.to_le_bytes());
        p[WRITE_LBA_AT..WRITE_LBA_AT + 4].copy_from_slice(&self.write_lba.to_le_bytes());
        p[PATTERN_AT] = self.pattern;
        for (i, lba) in self.markers.iter().enumerate() {
            let at = LBAS_AT + 4 * i;
            p[at..at + 4].copy_from_slice(&lba.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    /// What COM1 shows when the guest got through.
    fn serial_on_success(&self) -> String {
        let mut s = String::from("Sw");
        for k in 0..self.markers.len() {
            s.push((b'a' + k as u8) as char);
            if k + 1 == self.pause_after as usize {
                s.push('|');
            }
        }
        s.push('!');
        s
    }

    /// What QEMU's exit code says, in words.
    fn explain(&self, code: Option<i32>) -> String {
        let Some(code) = code else {
            return "QEMU was killed by a signal".into();
        };
        if code & 1 == 0 {
            return format!(
                "QEMU exited with {code}, not through isa-debug-exit (0: the guest \
                 crashed and -no-reboot stopped it; 1: QEMU failed)"
            );
        }
        let status = code >> 1;
        let marker = |k: i32| {
            let k = (k - 1) as usize;
            format!("marker {k} (LBA {})", self.markers[k])
        };
        match status {
            0x50 => "success".into(),
            0x40 => "the BIOS has no int 13h extensions".into(),
            0x41 => format!("writing LBA {} failed", self.write_lba),
            0x42 => format!("reading LBA {} back failed", self.write_lba),
            0x43 => format!("LBA {} read back other bytes", self.write_lba),
            0x44 => "the disk's FLUSH CACHE failed".into(),
            s if s >= 4 && (s >> 2) as usize <= self.markers.len() => match s & 3 {
                1 => format!("reading {} failed", marker(s >> 2)),
                2 => format!("{} has the wrong tag (the full's block?)", marker(s >> 2)),
                3 => format!("{} holds another sector's LBA", marker(s >> 2)),
                _ => format!("unknown status {s:#x}"),
            },
            s => format!("unknown status {s:#x}"),
        }
    }
}

/// The disk before (the full's) and after (the delta's), every marker in
/// place. Random data, zero blocks 8..16 in the full; the delta rewrites
/// block 39 (a marker whose full version has OLD_TAG), writes data into
/// zero block 9 (another marker), zeroes block 20 and changes block 50.
struct Disks {
    base: Vec<u8>,
    now: Vec<u8>,
}

/// A marker in block 39, which the delta rewrites: the full has OLD_TAG there.
const CHANGED_MARKER: u32 = 39 * SECTORS_PER_BLOCK + 8;
/// A marker in block 9, zero in the full: only the delta has it.
const NEW_MARKER: u32 = 9 * SECTORS_PER_BLOCK + 5;
/// Blocks of zeros in the full.
const ZERO_BLOCKS: std::ops::Range<usize> = 8..16;
/// Marker LBAs: block 1, block 16 (1 MiB), the changed and the new marker,
/// the disk's last sector.
const MARKERS: [u32; 5] = [128, 2048, CHANGED_MARKER, NEW_MARKER, LAST_LBA];
/// The sector the guest writes: inside block 23, which nobody reads before,
/// so sdar must fetch and merge the block around it.
const WRITE_LBA: u32 = 23 * SECTORS_PER_BLOCK + 56;
const PATTERN: u8 = 0xa7;

fn put_marker(disk: &mut [u8], lba: u32, tag: &[u8; 12]) {
    let at = lba as usize * SECTOR;
    let s = &mut disk[at..at + SECTOR];
    s[..12].copy_from_slice(tag);
    s[12..16].copy_from_slice(&lba.to_le_bytes());
    s[508..].copy_from_slice(&lba.to_le_bytes());
}

fn disks(guest: &Guest, seed: u64) -> Disks {
    let mut rng = Rng::new(seed);
    let mut base = rng.bytes(DISK_LEN);
    base[ZERO_BLOCKS.start * BLOCK..ZERO_BLOCKS.end * BLOCK].fill(0);
    base[..SECTOR].copy_from_slice(&guest.boot_sector());
    for &lba in &guest.markers {
        match lba {
            NEW_MARKER => {}
            CHANGED_MARKER => put_marker(&mut base, lba, OLD_TAG),
            _ => put_marker(&mut base, lba, TAG),
        }
    }
    let mut now = base.clone();
    let changed = CHANGED_MARKER as usize / SECTORS_PER_BLOCK as usize * BLOCK;
    now[changed..changed + BLOCK].copy_from_slice(&rng.bytes(BLOCK));
    let new = NEW_MARKER as usize / SECTORS_PER_BLOCK as usize * BLOCK;
    assert!(ZERO_BLOCKS.contains(&(new / BLOCK)));
    now[new + 4096..new + 8192].copy_from_slice(&rng.bytes(4096));
    now[20 * BLOCK..21 * BLOCK].fill(0);
    now[50 * BLOCK + 100..50 * BLOCK + 200].copy_from_slice(&rng.bytes(100));
    for &lba in &guest.markers {
        put_marker(&mut now, lba, TAG);
    }
    Disks { base, now }
}

/// A child process killed (SIGKILL) and reaped when dropped, so that a
/// failing test leaves nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `sdar live`: its stdout lines arrive through `lines`, its
/// stderr goes to a file in the scratch folder.
struct Live {
    child: Reaped,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: PathBuf,
}

impl Live {
    /// Starts `sdar live ARGS` in `dir` and waits for its `serving` line.
    fn start(dir: &Path, args: &[&str], stderr_name: &str) -> Live {
        let stderr = dir.join(stderr_name);
        let child = Command::new(SDAR)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("cannot start sdar live");
        let mut child = Reaped(child);
        let out = child.0.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut live = Live {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        };
        live.wait_for_line("serving ", Duration::from_secs(20));
        live
    }

    /// Waits for a stdout line starting with `prefix` and returns it.
    fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self
                .stdout
                .iter()
                .find(|l| l.trim_start().starts_with(prefix))
            {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => panic!(
                    "sdar live printed no `{prefix}` line within {limit:?}\n{}",
                    self.report()
                ),
            }
        }
    }

    /// The QEMU arguments from the `QEMU:` line.
    fn qemu_recipe(&mut self) -> Vec<String> {
        let line = self.wait_for_line("QEMU:", Duration::from_secs(5));
        let args: Vec<String> = line
            .trim_start()
            .trim_start_matches("QEMU:")
            .split_whitespace()
            .map(String::from)
            .collect();
        assert!(
            args.first().is_some_and(|a| a.starts_with('-')),
            "no QEMU arguments in `{line}`"
        );
        args
    }

    /// The export named after the backup's disk, from the `exports:` line
    /// (`exports: "" (the default), "DISK", "DEST"`).
    fn named_export(&mut self) -> String {
        let line = self.wait_for_line("exports:", Duration::from_secs(5));
        let names: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        match names[..] {
            ["", name, ..] if !name.is_empty() => name.to_string(),
            _ => panic!("no export name in `{line}`"),
        }
    }

    /// Everything it printed so far, for failure messages.
    fn report(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
        format!(
            "sdar live stdout:\n{}\nstderr:\n{}",
            self.stdout.join("\n"),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for it to print `complete:` and exit 0 by itself
    /// (`--exit-when-complete`, no client left); returns that line.
    fn finish(mut self) -> String {
        let limit = Duration::from_secs(60);
        let complete = self.wait_for_line("complete:", limit);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "sdar live --exit-when-complete ended with {status}\n{}",
                    self.report()
                );
                return complete;
            }
            if Instant::now() > deadline {
                panic!("sdar live did not exit within {limit:?}\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: it flushes and exits 0, the restore unfinished.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.0.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "sdar live ended with {status} on SIGTERM\n{}",
                    self.report()
                );
                return;
            }
            if Instant::now() > deadline {
                panic!("sdar live did not exit on SIGTERM\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    fn kill(mut self) {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }
}

/// qemu-system-x86_64 and the firmware and module paths it needs.
struct QemuSystem {
    program: PathBuf,
    /// `-L` folders (SeaBIOS and QEMU's data), for an unpacked prefix.
    firmware: Vec<PathBuf>,
    /// QEMU_MODULE_DIR (TCG is a module in Debian's build).
    module_dir: Option<PathBuf>,
}

fn qemu_system() -> QemuSystem {
    let prefix = std::env::var_os("SDAR_QEMU_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/sdar-qemu"));
    let program = prefix.join("usr/bin/qemu-system-x86_64");
    if program.is_file() {
        return QemuSystem {
            program,
            firmware: vec![
                prefix.join("usr/share/seabios"),
                prefix.join("usr/share/qemu"),
            ],
            module_dir: Some(prefix.join("usr/lib/x86_64-linux-gnu/qemu")),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
    {
        return QemuSystem {
            program: found,
            firmware: Vec::new(),
            module_dir: None,
        };
    }
    panic!(
        "qemu-system-x86_64 is not installed (not in {} nor on PATH): run \
         `tests/run --install-only` as root, which unpacks Debian's qemu-system-x86 \
         there without replacing qemu-utils (or set SDAR_QEMU_PREFIX to such a prefix)",
        program.display()
    );
}

/// A VM booting from the NBD export on the Unix socket `socket`, COM1 to
/// `serial`.
struct Vm {
    child: Reaped,
    serial: PathBuf,
    started: Instant,
}

/// How the VM reaches its disk.
enum Disk {
    /// The arguments `sdar live` prints on its `QEMU:` line, as a user
    /// would paste them (`-drive` with `if=ide` by default on `pc`: the
    /// primary master).
    Recipe(Vec<String>),
    /// `-blockdev` on the Unix socket, the export named so (None: the
    /// default export), with `reconnect-delay=30`.
    Blockdev(PathBuf, Option<String>),
}

impl Vm {
    fn boot(disk: &Disk, serial: &Path) -> Vm {
        let q = qemu_system();
        let mut cmd = Command::new(&q.program);
        for dir in &q.firmware {
            cmd.arg("-L").arg(dir);
        }
        if let Some(dir) = &q.module_dir {
            cmd.env("QEMU_MODULE_DIR", dir);
        }
        let accel = std::env::var("SDAR_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
        cmd.args(["-machine", "pc", "-accel", &accel, "-m", "16"])
            // No NIC (no iPXE ROM to load), no VGA, no monitor: only the disk.
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        match disk {
            Disk::Recipe(args) => {
                cmd.args(args);
            }
            Disk::Blockdev(socket, export) => {
                cmd.arg("-blockdev")
                    .arg(format!(
                        "driver=nbd,server.type=unix,server.path={},{}reconnect-delay=30,node-name=n0",
                        socket.display(),
                        export.as_ref().map(|e| format!("export={e},")).unwrap_or_default()
                    ))
                    .args(["-blockdev", "driver=raw,file=n0,node-name=d0"])
                    // The primary master: the guest flushes it through ports 1F6h/1F7h.
                    .args(["-device", "ide-hd,drive=d0,bus=ide.0,unit=0,bootindex=0"]);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(serial.with_extension("stderr")).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", q.program.display()));
        Vm {
            child: Reaped(child),
            serial: serial.to_path_buf(),
            started: Instant::now(),
        }
    }

    fn serial(&self) -> String {
        fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Waits until COM1 shows `c`.
    fn wait_for_serial(&mut self, c: char, limit: Duration, mut live: Option<&mut Live>) {
        let mut report = || live.as_mut().map(|l| l.report()).unwrap_or_default();
        let deadline = Instant::now() + limit;
        while !self.serial().contains(c) {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!(
                    "the VM ended ({status}) before printing {c:?}; COM1: {:?}\n{}",
                    self.serial(),
                    report()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the guest printed no {c:?} within {limit:?}; COM1: {:?}\n{}",
                    self.serial(),
                    report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for QEMU to exit; returns its exit code and the boot's duration.
    fn wait(mut self, limit: Duration, live: &mut Live) -> (Option<i32>, Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return (status.code(), self.started.elapsed());
            }
            if Instant::now() > deadline {
                panic!(
                    "the VM did not finish within {limit:?}; COM1: {:?}\nQEMU stderr:\n{}\n{}",
                    self.serial(),
                    fs::read_to_string(self.serial.with_extension("stderr")).unwrap_or_default(),
                    live.report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    fn expect_success(self, guest: &Guest, limit: Duration, live: &mut Live) -> Duration {
        let serial = self.serial.clone();
        let (code, took) = self.wait(limit, live);
        let com1 = fs::read_to_string(&serial).unwrap_or_default();
        assert!(
            code == Some((0x50 << 1) | 1),
            "the guest failed: {} (exit code {code:?}); COM1: {com1:?}\nQEMU stderr:\n{}\n{}",
            guest.explain(code),
            fs::read_to_string(serial.with_extension("stderr")).unwrap_or_default(),
            live.report()
        );
        assert_eq!(com1, guest.serial_on_success(), "what the guest printed");
        took
    }
}

/// A scratch folder with the full (`backup/vm.full.gz`, of `base.img`) and
/// a delta (`backup/vm-1.sdar`, of `now.img`) of `disks`.
fn backups(disks: &Disks) -> tempfile::TempDir {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir(d.join("backup")).unwrap();
    fs::write(d.join("base.img"), &disks.base).unwrap();
    fs::write(d.join("now.img"), &disks.now).unwrap();
    sdar(d, &["full", "base.img", "-o", "backup/vm.full.gz", "-q"]).success();
    sdar(
        d,
        &[
            "delta",
            "now.img",
            "--full",
            "backup/vm.full.gz",
            "-o",
            "backup/vm-1.sdar",
            "-q",
        ],
    )
    .success();
    dir
}

/// `sdar live` of the delta into `restored.vmdk` on `socket`, then `extra`.
fn live_args<'a>(socket: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "live",
        "backup/vm-1.sdar",
        "--to",
        "restored.vmdk",
        "--listen",
        socket,
    ];
    args.extend_from_slice(extra);
    args
}

/// 4 MiB at 128 KiB/s: the background restore is far from done while the
/// guest runs and the export is checked, however slow the machine.
const SLOW: [&str; 2] = ["--rate", "128K"];

/// The last `sdar live`: restores what is left at full speed and exits once
/// complete; then the restored disk is checked.
fn finish_restore(dir: &Path, listen: &str, disks: &Disks) {
    let last = Live::start(
        dir,
        &live_args(listen, &["--exit-when-complete"]),
        "last.stderr",
    );
    let complete = last.finish();
    eprintln!("{complete}");
    assert!(
        complete.contains(" 1 written by the guest"),
        "the guest wrote into one block: {complete}"
    );
    check_restored(dir, disks);
}

/// The disk the guest should leave: the delta's, with its sector written.
fn expected_disk(disks: &Disks) -> Vec<u8> {
    let mut disk = disks.now.clone();
    let at = WRITE_LBA as usize * SECTOR;
    disk[at..at + SECTOR].fill(PATTERN);
    disk
}

/// The written sector, read through the export with qemu-io.
fn check_export(dir: &Path, socket: &Path) {
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let read = format!(
        "read -P {PATTERN:#x} {} {SECTOR}",
        WRITE_LBA as usize * SECTOR
    );
    let out = stock(dir, "qemu-io", &["-f", "raw", &uri, "-c", &read]).success();
    let text = out.stdout_text();
    assert!(
        text.contains("read 512/512 bytes") && !text.contains("Pattern verification failed"),
        "the guest's sector is not in the export: {text}{}",
        out.stderr
    );
}

/// After `sdar live` ended: the restored VMDK is the expected disk, and the
/// live state is gone.
fn check_restored(dir: &Path, disks: &Disks) {
    let expected = expected_disk(disks);
    let flat = fs::read(dir.join("restored-flat.vmdk")).expect("no restored-flat.vmdk");
    assert_same_bytes(&flat, &expected, "the restored disk");
    fs::write(dir.join("expected.img"), &expected).unwrap();
    stock(
        dir,
        "qemu-img",
        &[
            "compare",
            "-f",
            "vmdk",
            "-F",
            "raw",
            "restored.vmdk",
            "expected.img",
        ],
    )
    .success();
    let left: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| n.contains("sdar-"))
        .collect();
    assert!(left.is_empty(), "live state left behind: {left:?}");
}

/// A VM started with the QEMU arguments `sdar live` prints writes and
/// flushes a sector, reads its markers and reads the sector back while the
/// background restore is slow, so what it reads is fetched on demand; the
/// export then has the sector; sdar stops on SIGTERM, and the same command
/// with `--exit-when-complete` finishes the restore: the delta's disk with
/// that sector.
#[test]
fn a_vm_boots_from_the_live_export_and_its_write_lands_in_the_restored_disk() {
    let guest = Guest {
        markers: MARKERS.to_vec(),
        pause_after: 0,
        pause: Duration::ZERO,
        write_lba: WRITE_LBA,
        pattern: PATTERN,
    };
    let disks = disks(&guest, 145);
    let dir = backups(&disks);
    let d = dir.path();
    let socket = d.join("nbd.sock");
    let listen = format!("unix:{}", socket.display());
    let mut live = Live::start(d, &live_args(&listen, &SLOW), "live.stderr");
    // This one boots with the QEMU arguments sdar prints.
    let recipe = Disk::Recipe(live.qemu_recipe());
    let vm = Vm::boot(&recipe, &d.join("com1.txt"));
    let took = vm.expect_success(&guest, Duration::from_secs(60), &mut live);
    eprintln!("boot check: {took:?}");
    check_export(d, &socket);
    live.stop();
    finish_restore(d, &listen, &disks);
}

/// SIGKILL of sdar mid-restore, while the guest waits between two markers;
/// the guest's next read waits in QEMU (reconnect-delay) until the same
/// command, started again, serves the disk, and the guest completes: the
/// sector it wrote and flushed before the kill reads back after it.
#[test]
fn a_vm_survives_sdar_killed_and_restarted_mid_restore() {
    let guest = Guest {
        markers: MARKERS.to_vec(),
        pause_after: 2,
        pause: Duration::from_secs(2),
        write_lba: WRITE_LBA,
        pattern: PATTERN,
    };
    let disks = disks(&guest, 146);
    let dir = backups(&disks);
    let d = dir.path();
    let socket = d.join("nbd.sock");
    let listen = format!("unix:{}", socket.display());
    let args = live_args(&listen, &SLOW);
    let mut first = Live::start(d, &args, "live1.stderr");
    // This one boots from the export named after the disk.
    let export = first.named_export();
    let disk = Disk::Blockdev(socket.clone(), Some(export));
    let mut vm = Vm::boot(&disk, &d.join("com1.txt"));
    vm.wait_for_serial('|', Duration::from_secs(30), Some(&mut first));
    first.kill();
    assert!(
        !d.join("restored.vmdk").exists() && d.join(".restored.vmdk.sdar-live").exists(),
        "sdar was not killed mid-restore: {:?}",
        listing(d)
    );
    // The guest's next read is sent while no server runs; QEMU holds it.
    let next = (b'a' + guest.pause_after) as char;
    vm.wait_for_serial(next, Duration::from_secs(30), None);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = Live::start(d, &args, "live2.stderr");
    let took = vm.expect_success(&guest, Duration::from_secs(60), &mut second);
    eprintln!("boot check with a restart: {took:?}");
    check_export(d, &socket);
    second.stop();
    finish_restore(d, &listen, &disks);
}

/// `--validate`, the way to prove a backup boots: the VM runs from the
/// backup, its flushed write and the read-back go to the overlay, the
/// export shows the sector, and once sdar stops nothing is left: no file in
/// the folder or the overlay's, the backups untouched.
#[test]
fn a_vm_boots_in_validate_mode_and_nothing_is_written() {
    let guest = Guest {
        markers: MARKERS.to_vec(),
        pause_after: 0,
        pause: Duration::ZERO,
        write_lba: WRITE_LBA,
        pattern: PATTERN,
    };
    let disks = disks(&guest, 147);
    let dir = backups(&disks);
    let d = dir.path();
    for sub in ["overlay", "vm"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    let full = watch(&d.join("backup/vm.full.gz"));
    let delta = watch(&d.join("backup/vm-1.sdar"));
    let before = listing(d);
    let socket = d.join("nbd.sock");
    let listen = format!("unix:{}", socket.display());
    let args = [
        "live",
        "backup/vm-1.sdar",
        "--validate",
        "--listen",
        &listen,
        "--overlay-dir",
        "overlay",
    ];
    let mut live = Live::start(d, &args, "vm/live.stderr");
    let recipe = Disk::Recipe(live.qemu_recipe());
    let vm = Vm::boot(&recipe, &d.join("vm/com1.txt"));
    let took = vm.expect_success(&guest, Duration::from_secs(60), &mut live);
    eprintln!("boot check, validating: {took:?}");
    check_export(d, &socket);
    live.stop();
    assert_eq!(listing(d), before, "files left beside the backup");
    assert!(
        listing(&d.join("overlay")).is_empty(),
        "the overlay was left behind"
    );
    full.assert_unchanged("sdar live --validate");
    delta.assert_unchanged("sdar live --validate");
}
