//! SIGINT and SIGTERM as messages, for the commands that run until told to
//! stop (`sdar live`, `sdar daemon`): blocked in every thread, and taken by
//! one thread that passes them on, so that no handler runs in the middle of
//! a write.

use std::sync::mpsc;

/// Blocks SIGINT and SIGTERM in this thread (and every thread it starts
/// after this): call it first, before any thread is started.
pub fn block() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Starts the thread named `name` that waits for the signals in `set` and
/// sends `event(signal)` on `tx` for each, until the receiver is gone.
pub fn forward<T: Send + 'static>(
    set: libc::sigset_t,
    name: &str,
    tx: mpsc::Sender<T>,
    event: fn(libc::c_int) -> T,
) {
    let _ = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is an initialised sigset_t; `sig` is written by sigwait.
            let r = unsafe { libc::sigwait(&set, &mut sig) };
            if r == 0 && tx.send(event(sig)).is_err() {
                return;
            }
        });
}
