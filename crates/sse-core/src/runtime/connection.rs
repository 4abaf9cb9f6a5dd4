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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{Service, service_fn};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// The first bytes of every HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

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

/// Serves `stream` with `service` until the connection ends, under `watcher` for graceful
/// shutdown; see the module docs for the deadlines.
///
/// # Errors
/// [`ConnectionError`] when the connection ended on an error or a missed deadline.
pub async fn serve_connection<S, B>(
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    watcher: Watcher,
) -> Result<(), ConnectionError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let is_h2 = match tokio::time::timeout(limits.header_timeout, sniff_h2(&stream)).await {
        Ok(Some(is_h2)) => is_h2,
        Ok(None) => return Ok(()), // the client left
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
    let io = TokioIo::new(stream);
    let served = async {
        if is_h2 {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
                .keep_alive_interval(limits.h2_keep_alive);
            watcher.watch(builder.serve_connection(io, counted)).await
        } else {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(limits.max_header_size);
            watcher.watch(builder.serve_connection(io, counted)).await
        }
    };
    let first_request_deadline = async {
        tokio::time::sleep(limits.header_timeout).await;
        if requested.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = served => Ok(result?),
        () = first_request_deadline => Err(ConnectionError::Stalled),
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
