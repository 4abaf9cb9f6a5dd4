//! The accept loop: one task per connection, HTTP/1.1 and h2c on one port.
//!
//! Each connection is served by `sse_core::runtime::connection`: sniffed for the HTTP/2
//! preface and handed to hyper's HTTP/1 or HTTP/2 server directly, so that an HTTP/1 stream
//! (all of nginx's upstream traffic) carries no HTTP/2 state (idle streams are what a node
//! holds most of), with `--header-timeout` bounding every stage before the first request and
//! `--max-header-size` the request head (431). Here, in addition, a connection is closed when
//! its peer acknowledges nothing for two heartbeats (`TCP_USER_TIMEOUT`: a half-open
//! connection), and when its client fell more than `--client-buffer` behind (on HTTP/2, with
//! every stream it carries: they all resume). Its kernel send buffer is capped at
//! `--send-buffer`: autotuned, a client that stops reading would pin up to `tcp_wmem`'s
//! maximum of kernel memory.
//!
//! An HTTP/1.1 event stream leaves hyper once its response head is written: its connection
//! task takes the socket back and a small task writes the stream ([`crate::takeover`]).

use sse_core::ErrorChain;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use sse_core::runtime::connection::{self, Served};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::app::App;
use crate::connection::ClientConnection;
use crate::routes::route;
use crate::takeover::{self, Takeover};

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Deadlines and sizes for the HTTP layer (see `sse_core::runtime::connection`).
    pub(crate) http: connection::ConnectionLimits,
    /// Data unacknowledged this long means the peer is gone (`TCP_USER_TIMEOUT`). Heartbeats
    /// make every stream send data at least every two `--heartbeat` periods, so a vanished
    /// client (a half-open connection) is found within two heartbeats plus this.
    pub(crate) dead_peer_timeout: Duration,
    /// `SO_SNDBUF` for every connection (`--send-buffer`); `None`: the kernel's autotuning.
    pub(crate) send_buffer: Option<usize>,
}

/// Serves `app` on `listener` until `shutdown` completes; then drains the node (see
/// [`crate::drain`]: connections finish what they serve and close, streams end over
/// `drain_over`) and waits for connections to finish, at most `grace` after the drain.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    limits: ConnectionLimits,
    drain_over: Duration,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = connection::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_tcp_user_timeout(Some(limits.dead_peer_timeout));
        if let Some(bytes) = limits.send_buffer {
            let _ = socket.set_send_buffer_size(bytes);
        }
        connections.spawn(
            serve_connection(stream, peer, app.clone(), connections.clone(), limits)
                .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
    app.drain.begin();
    drop(listener);
    app.drain.end_streams(&app.hub, drain_over).await;
    connection::finish(&connections, grace).await;
}

/// Serves one connection; an HTTP/1.1 event stream continues in a task of its own, tracked
/// by `connections` like the connection was.
async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: Arc<App>,
    connections: TaskTracker,
    limits: ConnectionLimits,
) {
    // Cancelled when a stream of this connection overflows its outbox: the client stopped
    // reading, so its stream would never be written again. Dropping the connection closes it.
    let abort = CancellationToken::new();
    let takeover = Takeover::default();
    let service = {
        let app = app.clone();
        let connection = ClientConnection {
            peer,
            abort: abort.clone(),
            takeover: takeover.clone(),
        };
        service_fn(move |request| route(app.clone(), request, connection.clone()))
    };
    let draining = app.drain.started();
    let served =
        connection::serve_connection(stream, service, limits.http, draining, takeover.clone());
    tokio::select! {
        result = served => match result {
            Ok(Served::Closed) => {}
            Ok(Served::TakenOver(io)) => {
                if let Some(body) = takeover.take() {
                    connections.spawn(takeover::write_stream(io.into_stream(), body, abort));
                }
            }
            Err(error) => {
                if error.peer_vanished() {
                    app.metrics.dead_peer_disconnects.inc();
                }
                tracing::debug!(error = %ErrorChain(&error), "connection ended early");
            }
        },
        () = abort.cancelled() => tracing::debug!("client fell behind; connection closed"),
    }
}
