//! Serving one accepted TCP connection with hyper, HTTP/1.1 or h2c on the same port, bounded
//! against clients that stall. Both services serve their connections this way.
//!
//! The connection is sniffed for the HTTP/2 preface and handed to hyper's HTTP/1 or HTTP/2
//! server directly (not hyper-util's auto builder, whose version detection has no deadline and
//! whose connections carry state for both protocols). Every stage has a deadline of
//! [`ConnectionLimits::header_timeout`]:
//!
//! - the first byte (a client that connects and says nothing);
//! - an HTTP/1 request head (hyper's header timeout), which may also be at most
//!   [`ConnectionLimits::max_header_size`] bytes (else 431);
//! - the first request on the connection, counted from its first byte: a stalled HTTP/2 preface
//!   or handshake, or an HTTP/2 connection that never opens a stream.
//!
//! Shutdown is a future the caller completes: each connection then finishes its in-flight
//! requests and closes (the caller tracks the connection tasks; [`finish`] bounds the wait). An
//! HTTP/1 connection can also be taken back from hyper mid-response ([`Http1Takeover`]).
//!
//! **Lingering close.** When hyper ends an HTTP/1 connection it has answered (or refused with
//! a 400 or 431), the client may still be sending: a body refused unread (413, 401, …) is the
//! usual case, and clients that send the whole body before reading (Python's `urllib`, many
//! Java clients) are common. hyper writes the response, shuts down its write side and drops
//! the socket; closing a socket with unread data makes the kernel send a reset, and a reset
//! makes such a client lose the response it has not read yet. So, as nginx does
//! (`lingering_close`), the socket is kept after hyper is done: no further request is read,
//! and what the client still sends is read and discarded until it closes, for at most
//! [`LINGER_BYTES`] bytes and [`LINGER_TIME`] in all, and no longer than [`LINGER_TIMEOUT`]
//! without data (nginx: `lingering_time` 30 s, `lingering_timeout` 5 s). The client has its
//! whole response and the end of it (hyper sent a FIN) before this starts, so a client that
//! closes at once costs nothing; one that keeps its side open costs the timeout. A connection
//! that ends because shutdown began (mostly idle keep-alive ones) closes without lingering,
//! so that shutdown is not held up by clients that keep their idle connections open.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

/// The first bytes of every HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Lingering close: the most bytes read and discarded after hyper is done with a connection.
/// Eight times the publisher's default `--max-body`, twice over.
pub const LINGER_BYTES: u64 = 16 * 1024 * 1024;
/// Lingering close: the longest it lasts in all.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// Lingering close: the longest wait for the client's next bytes (or its close).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Lingering close: bytes discarded per read.
const LINGER_CHUNK: usize = 8192;

/// How stalling clients are bounded.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Deadline for the first byte, for an HTTP/1 request head, and for the first request.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers, or an HTTP/2 header list), in bytes.
    pub max_header_size: usize,
    /// On HTTP/2, how often to `PING` the client (`None`: never).
    pub h2_keep_alive: Option<Duration>,
}

/// Why a connection ended early; any other end is a normal close.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// hyper reported a protocol or I/O error.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The client sent nothing, or no complete first request, in time.
    #[error("no request within the header timeout")]
    Stalled,
}

impl ConnectionError {
    /// Whether the connection ended because its client vanished (see [`peer_vanished`]).
    #[must_use]
    pub fn peer_vanished(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = match self {
            Self::Http(error) => Some(error),
            Self::Stalled => None,
        };
        while let Some(error) = cause {
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(peer_vanished)
            {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// Whether a socket's `error` says its peer vanished without closing the connection: the
/// kernel gave it up because nothing sent was acknowledged in time (`TCP_USER_TIMEOUT`, or
/// the retransmissions ran out), or found the peer's host unreachable meanwhile.
#[must_use]
pub fn peer_vanished(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{HostUnreachable, NetworkUnreachable, TimedOut};
    matches!(
        error.kind(),
        TimedOut | HostUnreachable | NetworkUnreachable
    )
}

/// Pending connections the kernel queues for [`accept`] (it caps this at `net.core.somaxconn`).
/// A burst of reconnecting clients (a node restarted behind a load balancer) arrives at once;
/// with the usual 128 the rest of their SYNs are dropped and retried a second or more later.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a backlog for reconnect storms ([`LISTEN_BACKLOG`]).
///
/// # Errors
/// When the address cannot be bound.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts the next connection. An accept error (typically: out of file descriptors) is
/// logged and retried after a short pause, so a burst of connections cannot stop the loop.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Stops tracking new connection tasks and waits for the tracked ones to finish, at most
/// `grace`; whatever is still open then is dropped with the process.
pub async fn finish(connections: &TaskTracker, grace: Duration) {
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown deadline reached; dropping unfinished connections"
        );
    }
}

/// How a connection's serving ended.
#[derive(Debug)]
pub enum Served<Io> {
    /// The connection is finished.
    Closed,
    /// The socket was taken back mid-response (see [`Http1Takeover`]): the caller writes the
    /// rest.
    TakenOver(Io),
}

/// Serves `stream` with `service` until the connection ends or, on HTTP/1, until `takeover`
/// is due; see the module docs for the deadlines. When `shutdown`
/// completes, the connection finishes its in-flight requests and closes.
///
/// # Errors
/// [`ConnectionError`] when the connection ended on an error or a missed deadline.
pub async fn serve_connection<S, B, T>(
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    takeover: T,
) -> Result<Served<T::Io>, ConnectionError>
where
    T: Http1Takeover,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let is_h2 = match tokio::time::timeout(limits.header_timeout, sniff_h2(&stream)).await {
        Ok(Some(is_h2)) => is_h2,
        Ok(None) => return Ok(Served::Closed), // the client left
        Err(_) => return Err(ConnectionError::Stalled),
    };
    let requested = Arc::new(AtomicBool::new(false));
    let service = Arc::new(service);
    let counted = {
        let requested = requested.clone();
        service_fn(move |request| {
            requested.store(true, Ordering::Relaxed);
            service.call(request)
        })
    };
    let served = async {
        if is_h2 {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
                .keep_alive_interval(limits.h2_keep_alive);
            let mut connection = builder.serve_connection(TokioIo::new(stream), counted);
            drive(&mut connection, shutdown, &NoTakeover).await?;
            Ok(Served::Closed)
        } else {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(limits.max_header_size);
            let io = TokioIo::new(takeover.wrap(stream));
            let mut connection = builder.serve_connection(io, counted);
            match drive(&mut connection, shutdown, &takeover).await {
                Ok(Driven::TakenOver) => {
                    Ok(Served::TakenOver(connection.into_parts().io.into_inner()))
                }
                Ok(Driven::Finished) => {
                    linger(connection.into_parts().io.into_inner()).await;
                    Ok(Served::Closed)
                }
                Ok(Driven::ShutDown) => Ok(Served::Closed),
                // hyper answered a malformed or oversized head (400, 431) before it gave up.
                Err(error) if error.is_parse() => {
                    linger(connection.into_parts().io.into_inner()).await;
                    Err(error.into())
                }
                Err(error) => Err(error.into()),
            }
        }
    };
    let first_request_deadline = async {
        tokio::time::sleep(limits.header_timeout).await;
        if requested.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = served => result,
        () = first_request_deadline => Err(ConnectionError::Stalled),
    }
}

enum Driven {
    /// hyper ended the connection by itself.
    Finished,
    /// hyper ended the connection after `shutdown` asked it to.
    ShutDown,
    /// [`Http1Takeover::is_due`]: the caller takes the socket back.
    TakenOver,
}

/// Polls `connection` to its end, asking it to finish gracefully once `shutdown` completes,
/// or until `takeover` is due.
async fn drive<C>(
    connection: &mut C,
    shutdown: impl Future<Output = ()>,
    takeover: &impl Http1Takeover,
) -> Result<Driven, C::Error>
where
    C: GracefulConnection + Unpin,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shutting_down = false;
    std::future::poll_fn(|cx| {
        loop {
            // The connection first, then the shutdown: a request whose bytes arrived before
            // the shutdown began is read (and answered) even when this task first runs after
            // it began; hyper closes a connection at once that has read nothing.
            match Pin::new(&mut *connection).poll(cx) {
                Poll::Ready(result) => {
                    return Poll::Ready(result.map(|()| {
                        if shutting_down {
                            Driven::ShutDown
                        } else {
                            Driven::Finished
                        }
                    }));
                }
                Poll::Pending if takeover.is_due() => return Poll::Ready(Ok(Driven::TakenOver)),
                Poll::Pending => {}
            }
            if shutting_down || shutdown.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            shutting_down = true;
            Pin::new(&mut *connection).graceful_shutdown();
        }
    })
    .await
}

/// Reads and discards what the client still sends, within the lingering bounds (module
/// docs), so that closing `io` afterwards does not reset the connection.
async fn linger(mut io: impl AsyncRead + Unpin) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut buffer = vec![0u8; LINGER_CHUNK];
    let mut discarded = 0u64;
    while discarded < LINGER_BYTES {
        let wait = deadline.min(tokio::time::Instant::now() + LINGER_TIMEOUT);
        let read = std::future::poll_fn(|cx| {
            let mut filled = ReadBuf::new(&mut buffer);
            Pin::new(&mut io)
                .poll_read(cx, &mut filled)
                .map_ok(|()| filled.filled().len())
        });
        match tokio::time::timeout_at(wait, read).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return, // closed, failed, or quiet too long
            Ok(Ok(read)) => discarded += read as u64,
        }
    }
}

/// Taking an HTTP/1 connection's socket back from hyper in the middle of a response, for a
/// caller that writes a long response (an event stream) itself. The caller's type gives
/// hyper the socket wrapped as it likes ([`Http1Takeover::wrap`]); whenever hyper has nothing
/// to do, [`serve_connection`] asks [`Http1Takeover::is_due`], and when it is, returns the
/// wrapped socket as [`Served::TakenOver`]. Whether that moment is safe (hyper holds no
/// unwritten bytes) is the caller's to know: hyper does not promise when it flushes.
pub trait Http1Takeover: Send + 'static {
    /// The socket as hyper's HTTP/1 server sees it.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Wraps an accepted socket before hyper serves HTTP/1 on it.
    fn wrap(&self, stream: TcpStream) -> Self::Io;

    /// Whether to take the socket back from hyper now.
    fn is_due(&self) -> bool;
}

/// Connections that stay with hyper to their end: every request gets a whole response.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTakeover;

impl Http1Takeover for NoTakeover {
    type Io = TcpStream;

    fn wrap(&self, stream: TcpStream) -> TcpStream {
        stream
    }

    fn is_due(&self) -> bool {
        false
    }
}

/// Waits for the first bytes and tells whether they start the HTTP/2 preface. `None` if the
/// client closed first.
async fn sniff_h2(stream: &TcpStream) -> Option<bool> {
    let mut head = [0u8; H2_PREFACE.len()];
    loop {
        let read = stream.peek(&mut head).await.ok()?;
        if read == 0 {
            return None;
        }
        if !H2_PREFACE.starts_with(&head[..read]) {
            return Some(false);
        }
        if read == head.len() {
            return Some(true);
        }
        // A prefix of the preface so far: wait for more (peek returns the same bytes at once).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
