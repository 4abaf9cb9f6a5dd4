//! The accept loop: one task per connection (served by `sse_core::runtime::connection`:
//! HTTP/1.1 and h2c on one port, every stage before the first request under
//! `--header-timeout`), and a shutdown that stops accepting, then lets in-flight requests
//! finish under a deadline.
//!
//! Publish requests are short, so closing connections once their requests are answered is
//! enough here (unlike the gateway, whose endless event streams must end themselves).

use sse_core::ErrorChain;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use sse_core::runtime::connection::{self, ConnectionLimits, serve_connection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::http::{App, route};

/// Serves `app` on `listener` until `shutdown` completes, then drains for at most `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    header_timeout: Duration,
    max_header_size: usize,
    grace: Duration,
) {
    let limits = ConnectionLimits {
        header_timeout,
        max_header_size,
        h2_keep_alive: None,
    };
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = connection::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = service_fn(move |request| route(app.clone(), request));
        let stopping = stopping.clone();
        connections.spawn(
            async move {
                let stop = stopping.cancelled();
                if let Err(error) =
                    serve_connection(stream, service, limits, stop, connection::NoTakeover).await
                {
                    tracing::debug!(error = %ErrorChain(&error), "connection ended early");
                }
            }
            .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
    app.draining.store(true, Ordering::Relaxed);
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    stopping.cancel();
    connection::finish(&connections, grace).await;
}
