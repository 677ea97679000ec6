//! Accepting connections: a thread each, up to a bound.

use crate::{serve, ExportSet, ServerLimits};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves `exports` to every client of a listener, a thread per connection.
pub struct Server {
    exports: Arc<dyn ExportSet>,
    limits: ServerLimits,
    active: Arc<AtomicUsize>,
}

/// Gives the connection's slot back however its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    pub fn new(exports: Arc<dyn ExportSet>, limits: ServerLimits) -> Server {
        Server {
            exports,
            limits,
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Accepts until the listener fails; `log` hears how each connection ended when it did not end well.
    pub fn run_unix(
        &self,
        listener: &UnixListener,
        log: impl Fn(String) + Send + Sync + Clone + 'static,
    ) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((stream, _)) => self.spawn(stream, log.clone()),
                Err(e) if transient(&e) => continue,
                Err(e) if out_of_files(&e) => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// As [`Server::run_unix`], on TCP (with Nagle off: replies are small and awaited).
    pub fn run_tcp(
        &self,
        listener: &TcpListener,
        log: impl Fn(String) + Send + Sync + Clone + 'static,
    ) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    // Only latency is lost if this fails.
                    let _ = stream.set_nodelay(true);
                    self.spawn(stream, log.clone())
                }
                Err(e) if transient(&e) => continue,
                Err(e) if out_of_files(&e) => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn<S: Read + Write + Send + 'static>(
        &self,
        stream: S,
        log: impl Fn(String) + Send + Clone + 'static,
    ) {
        // Beyond the bound the client is closed before the greeting: it sees a refused session, not a hang.
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.limits.connections {
            self.active.fetch_sub(1, Ordering::SeqCst);
            log(format!(
                "NBD: refused a client: {} connections already",
                self.limits.connections
            ));
            return;
        }
        let slot = Slot(self.active.clone());
        let exports = self.exports.clone();
        let limits = self.limits.clone();
        let conn_log = log.clone();
        let spawned = std::thread::Builder::new()
            .name("nbd-conn".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = serve(stream, &*exports, &limits) {
                    conn_log(e.to_string());
                }
            });
        if let Err(e) = spawned {
            // The closure (and its slot) was dropped with the error: the client is closed.
            log(format!("NBD: no thread for a client: {e}"));
        }
    }
}

/// Accept errors that concern one client (or a passing shortage), not the listener.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// EMFILE/ENFILE: wait for a connection to end rather than give up the listener.
fn out_of_files(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}
