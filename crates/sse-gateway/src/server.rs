//! The accept loop: one task per connection, HTTP/1.1 and h2c on one port.
//!
//! Each connection is served by `sse_core::runtime::connection`: sniffed for the HTTP/2
//! preface and handed to hyper's HTTP/1 or HTTP/2 server directly, so that an HTTP/1 stream
//! (all of nginx's upstream traffic) carries no HTTP/2 state (idle streams are what a node
//! holds most of), with `--header-timeout` bounding every stage before the first request and
//! `--max-header-size` the request head (431). Here, in addition, a connection is closed when
//! its peer acknowledges nothing for two heartbeats (`TCP_USER_TIMEOUT`: a half-open
//! connection), and when its client fell more than `--client-buffer` behind (on HTTP/2, with
//! every stream it carries: they all resume).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use sse_core::runtime::connection;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::routes::{App, route};

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Deadlines and sizes for the HTTP layer (see `sse_core::runtime::connection`).
    pub(crate) http: connection::ConnectionLimits,
    /// Data unacknowledged this long means the peer is gone (`TCP_USER_TIMEOUT`). Heartbeats
    /// make every stream send data at least every `--heartbeat`, so a vanished client (a
    /// half-open connection) is found within a heartbeat plus this.
    pub(crate) dead_peer_timeout: Duration,
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
            accepted = connection::accept(&listener) => accepted,
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
    // Cancelled when a stream of this connection overflows its outbox: the client stopped
    // reading, so hyper would never poll its body again. Dropping the connection closes it.
    let abort = CancellationToken::new();
    let service = {
        let abort = abort.clone();
        service_fn(move |request| route(app.clone(), request, abort.clone()))
    };
    tokio::select! {
        result = connection::serve_connection(stream, service, limits.http, watcher) => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended early");
            }
        }
        () = abort.cancelled() => tracing::debug!("client fell behind; connection closed"),
    }
}
