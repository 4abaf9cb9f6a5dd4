//! [`ServerThread`]: a server running in this process on `127.0.0.1:0` (or a free port of
//! another address of this machine), on a thread and runtime of its own, as it would run in
//! its own process.
//!
//! Integration tests start the gateway, the publisher (and sse-bench's tests both) this way.
//! Because the server has its own runtime, a test may block (a synchronous Redis call,
//! [`crate::wait_until`], a raw socket read) without stalling it, and stopping one server does
//! not touch another. The runner knows nothing of what it runs: the caller's closure gets the
//! bound listener and a [`Shutdown`] future and returns the server's future.
//!
//! Guarantees: the address is bound before [`ServerThread::start`] returns, so a client may
//! connect at once; the server is asked to shut down, and waited for, when the handle is
//! dropped or [`ServerThread::stop`] is called. [`ServerThread::detach`] asks without waiting,
//! for a server whose shutdown takes long (a gateway ends its streams over
//! `--drain-seconds`). A panic of the server is a failed test: it is re-raised by `stop`, or
//! by `drop` unless the test is already panicking.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};

use tokio::sync::oneshot;

/// Worker threads of each server's runtime: two, so that one blocked handler cannot stall it.
const WORKER_THREADS: usize = 2;

/// A server on its own thread and runtime; see the module docs.
///
/// `T` is what the server's future returns (e.g. `Result<(), StartError>`).
#[derive(Debug)]
pub struct ServerThread<T> {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<T>>,
}

/// Completes when the server is asked to shut down: by [`ServerThread::begin_shutdown`],
/// [`ServerThread::stop`] or dropping the [`ServerThread`].
#[derive(Debug)]
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A dropped sender means "shut down" too.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl<T: Send + 'static> ServerThread<T> {
    /// Binds `127.0.0.1:0` and runs `serve(listener, shutdown)` to completion on a new thread
    /// named `name`, in a multi-threaded runtime of its own.
    ///
    /// # Panics
    /// If no port can be bound, or the thread or its runtime cannot be created.
    pub fn start<F, Fut>(name: &str, serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        Self::start_on(Ipv4Addr::LOCALHOST.into(), name, serve)
    }

    /// [`ServerThread::start`] on a free port of `ip` (an address of this machine).
    ///
    /// # Panics
    /// If no port can be bound, or the thread or its runtime cannot be created.
    pub fn start_on<F, Fut>(ip: IpAddr, name: &str, serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let listener = std::net::TcpListener::bind((ip, 0))
            .unwrap_or_else(|error| panic!("bind {ip}:0: {error}"));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener for tokio");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, shutdown_received) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(format!("{name} {addr}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKER_THREADS)
                    .enable_all()
                    .build()
                    .expect("build the server's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("hand the listener to tokio");
                    serve(listener, Shutdown(shutdown_received)).await
                })
            })
            .expect("spawn the server thread");
        Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl<T> ServerThread<T> {
    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Asks the server to shut down (as SIGTERM would) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Asks the server to shut down and lets it finish on its own thread, without waiting: for
    /// the end of a test that does not care how the server ends.
    pub fn detach(mut self) {
        self.begin_shutdown();
        // Dropping a `JoinHandle` detaches the thread; `drop` then has nothing to wait for.
        self.thread = None;
    }

    /// Asks the server to shut down, waits until its future has returned, and returns that.
    ///
    /// # Panics
    /// With the server's own panic, if it panicked.
    pub fn stop(mut self) -> T {
        self.begin_shutdown();
        let thread = self
            .thread
            .take()
            .expect("only stop and drop take the thread");
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl<T> Drop for ServerThread<T> {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
            && !thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}
