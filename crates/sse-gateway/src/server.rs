//! The accept loop: one task per connection, HTTP/1.1 and h2c on one port.
//!
//! Each connection is sniffed for the HTTP/2 preface and handed to hyper's HTTP/1 or HTTP/2
//! server directly, rather than to the auto builder, so that an HTTP/1 stream (all of nginx's
//! upstream traffic) carries no HTTP/2 state; idle streams are what a node holds most of. A
//! connection that sends nothing within `--header-timeout` is closed, as is one whose HTTP/1
//! headers take longer (hyper's header timeout) or exceed `--max-header-size` (431), one whose
//! peer acknowledges nothing for two heartbeats (`TCP_USER_TIMEOUT`: a half-open connection),
//! and one whose client fell more than `--client-buffer` behind (on HTTP/2, with every stream
//! it carries: they all resume).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::routes::{App, route};

/// The first bytes of every HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Time to send the request head (and the first byte).
    pub(crate) header_timeout: Duration,
    /// Largest request head, in bytes.
    pub(crate) max_header_size: usize,
    /// Data unacknowledged this long means the peer is gone (`TCP_USER_TIMEOUT`). Heartbeats
    /// make every stream send data at least every `--heartbeat`, so a vanished client (a
    /// half-open connection) is found within a heartbeat plus this.
    pub(crate) dead_peer_timeout: Duration,
    /// On HTTP/2, how often to `PING` an idle connection.
    pub(crate) h2_keep_alive: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes; then drains the node (see
/// [`crate::drain`]) and waits for connections to finish, at most `grace` after the drain.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    limits: ConnectionLimits,
    drain_over: Duration,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: wait for some to be released.
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let _ =
            socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(limits.dead_peer_timeout));
        tokio::spawn(
            serve_connection(stream, app.clone(), graceful.watcher(), limits)
                .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
    app.drain.begin();
    drop(listener);
    app.drain.end_streams(&app.hub, drain_over).await;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown deadline reached; dropping unfinished connections"
        );
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Arc<App>,
    watcher: Watcher,
    limits: ConnectionLimits,
) {
    let Ok(Some(is_h2)) = tokio::time::timeout(limits.header_timeout, sniff_h2(&stream)).await
    else {
        return; // nothing sent in time, or the client left
    };
    // Cancelled when a stream of this connection overflows its outbox: the client stopped
    // reading, so hyper would never poll its body again. Dropping the connection closes it.
    let abort = CancellationToken::new();
    let service = {
        let abort = abort.clone();
        service_fn(move |request| route(app.clone(), request, abort.clone()))
    };
    let io = TokioIo::new(stream);
    let served = async {
        if is_h2 {
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
                .keep_alive_interval(limits.h2_keep_alive)
                .serve_connection(io, service);
            watcher.watch(connection).await
        } else {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(limits.max_header_size)
                .serve_connection(io, service);
            watcher.watch(connection).await
        }
    };
    tokio::select! {
        result = served => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = abort.cancelled() => tracing::debug!("client fell behind; connection closed"),
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
