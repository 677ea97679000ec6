//! A pseudo-terminal for end-to-end tests, so a test can drive an
//! interactive menu through a real terminal: programs decide whether to
//! prompt, draw progress or colour by asking `isatty`, and pipes say no.
//!
//! What the child sees is the kernel's default line discipline, as a person
//! at a terminal would:
//! - Enter is `"\r"`, what a real keyboard sends. `ICRNL` turns it into
//!   `"\n"` for a program reading lines, and a program in raw mode sees the
//!   `'\r'` it would get from a person. (`"\n"` also ends a line, but only
//!   because canonical mode accepts it.)
//! - `ECHO` is on, so the transcript holds the typed keys too, and `ONLCR`
//!   makes every output line end in `"\r\n"`. [`strip_ansi`] cleans both up.
//! - The terminal is not the child's controlling terminal (making it one
//!   needs `setsid` in the child, hence unsafe code), so `"\x03"` arrives as
//!   a byte, not as SIGINT.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

pub const PTY_COLUMNS: u16 = 100;
pub const PTY_ROWS: u16 = 30;

/// How often `expect` and `wait` look again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A child process whose stdin, stdout and stderr are one terminal.
pub struct Pty {
    child: Child,
    master: File,
    /// Everything the child wrote, and the echo of everything sent.
    transcript: Arc<Mutex<Vec<u8>>>,
    /// Where the next `expect` starts looking.
    cursor: usize,
    reader: JoinHandle<()>,
}

impl Pty {
    /// Starts `cmd` on a new 100 × 30 terminal.
    pub fn spawn(mut cmd: Command) -> Pty {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags).expect("cannot open a pty master");
        rustix::pty::grantpt(&master).expect("grantpt failed");
        rustix::pty::unlockpt(&master).expect("unlockpt failed");
        let winsize = Winsize {
            ws_row: PTY_ROWS,
            ws_col: PTY_COLUMNS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, winsize).expect("cannot set the window size");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname failed");
        let path = std::ffi::OsStr::from_bytes(name.as_bytes());
        // NOCTTY: a test binary that happens to lead its session must not
        // adopt the terminal; CLOEXEC: other tests' children must not
        // inherit it and hold it open.
        let slave_flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
        let slave = File::from(
            rustix::fs::open(path, slave_flags, Mode::empty()).expect("cannot open the pty slave"),
        );
        let stdio = || Stdio::from(slave.try_clone().expect("cannot clone the pty slave"));
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
        let child = cmd.spawn().expect("cannot start the program on the pty");
        // Only the child may hold the slave now, so the master reports the
        // end (as EIO on Linux) once the child and its children are gone.
        drop(cmd);
        drop(slave);

        let master = File::from(master);
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let mut source = master.try_clone().expect("cannot clone the pty master");
        let sink = Arc::clone(&transcript);
        let reader = thread::spawn(move || {
            let mut buf = [0; 4096];
            loop {
                match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO once the slave side is closed: that is the end.
                    Err(_) => break,
                }
            }
        });
        Pty {
            child,
            master,
            transcript,
            cursor: 0,
            reader,
        }
    }

    /// Types `text` (Enter is `"\r"`).
    pub fn send(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("cannot write to the pty");
        self.master.flush().expect("cannot write to the pty");
    }

    /// Waits until `needle` appears after the previous match and returns the
    /// text from there up to and including it. The echo of sent keys counts.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            // Checked before looking, so output that came just before the
            // end of the stream is still searched once more.
            let closed = self.reader.is_finished();
            {
                let transcript = self.transcript.lock().unwrap();
                let rest = &transcript[self.cursor..];
                if let Some(at) = find(rest, needle.as_bytes()) {
                    let end = at + needle.len();
                    self.cursor += end;
                    return String::from_utf8_lossy(&rest[..end]).into_owned();
                }
            }
            if closed {
                self.fail(&format!("the terminal closed before {needle:?} appeared"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!("{needle:?} did not appear within {timeout:?}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits for the child to exit and for its last output to arrive; kills
    /// it and fails the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for the program") {
                // A grandchild may still hold the terminal; don't wait for it.
                while !self.reader.is_finished() && Instant::now() < deadline {
                    thread::sleep(POLL_INTERVAL);
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.fail(&format!("the program did not exit within {timeout:?}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Everything so far, as the terminal received it.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript.lock().unwrap()).into_owned()
    }

    fn fail(&self, why: &str) -> ! {
        let mut shown = String::new();
        for line in self.transcript().lines() {
            shown.push_str("    | ");
            for c in line.chars() {
                if c.is_control() {
                    shown.extend(c.escape_default());
                } else {
                    shown.push(c);
                }
            }
            shown.push('\n');
        }
        panic!("pty: {why}; the terminal showed:\n{shown}");
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` without CSI sequences (`ESC [` parameters, final byte in `@`..=`~`)
/// and without `'\r'`, so what a menu drew reads as plain lines.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
