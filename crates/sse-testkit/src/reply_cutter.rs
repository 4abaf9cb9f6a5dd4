//! [`ReplyCutter`]: a TCP proxy in front of a server that can lose one reply on purpose.
//!
//! A publish whose reply is lost (the connection breaks after Redis ran the call) is the one
//! case where a client cannot know whether its event was written. Killing Redis cannot produce
//! it: the call must arrive and run, and only its answer go missing. So the test connects
//! through this proxy, arms it, and the next bytes the server sends on any connection are
//! dropped and that connection is closed on both sides, as a network failure would.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

/// A proxy on `127.0.0.1:0` to an upstream server (see the module docs). Dropping it stops
/// accepting; connections already open end when either side closes.
#[derive(Debug)]
pub struct ReplyCutter {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    armed: AtomicBool,
    cut: AtomicUsize,
    stopped: AtomicBool,
}

impl ReplyCutter {
    /// Starts a proxy to `upstream`.
    ///
    /// # Panics
    /// If no port can be bound.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the proxy's port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                // An upstream that refuses is a refused connection for the client too.
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                relay(client, server, accepting.clone());
            }
        });
        Self { addr, shared }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next bytes the server sends are dropped, and their connection closed.
    pub fn cut_next_reply(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// How many replies were cut so far.
    pub fn replies_cut(&self) -> usize {
        self.shared.cut.load(Ordering::SeqCst)
    }
}

impl Drop for ReplyCutter {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies bytes both ways between `client` and `server` on two threads.
fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || copy(client_reader, server_writer));
    thread::spawn(move || {
        let (mut from, mut to) = (server, client);
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer) {
            if shared.armed.swap(false, Ordering::SeqCst) {
                shared.cut.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Copies `from` to `to` until either ends, then closes both.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
