//! The admin listener (`--admin-listen`): `/healthz`, `/readyz` and `/metrics` on an address,
//! a listen backlog and an accept task of their own.
//!
//! Why: in a reconnect storm the main listener's backlog fills with new clients' connections,
//! and a probe queued behind them may get no answer in time; a load balancer or an
//! orchestrator would then mark a node down that is only busy, and the storm moves on to the
//! other nodes. On its own listener a probe waits for no client. The routes and answers are
//! the same as on the main listener ([`crate::routes`]), which keeps serving them too.

use std::sync::Arc;

use hyper::service::service_fn;
use sse_core::ErrorChain;
use sse_core::runtime::connection::{self, ConnectionLimits, NoTakeover, serve_connection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::app::App;
use crate::routes::probe_route;

/// Serves the probes on `listener` until `stopping` is cancelled (when the node exits, after
/// its drain: `/readyz` answers `503` meanwhile); then closes every admin connection.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    limits: ConnectionLimits,
    stopping: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = connection::accept(&listener) => accepted,
            () = stopping.cancelled() => break,
        };
        let app = app.clone();
        let service = service_fn(move |request| probe_route(app.clone(), request));
        let stop = stopping.clone().cancelled_owned();
        connections.spawn(
            async move {
                if let Err(error) =
                    serve_connection(stream, service, limits, stop, NoTakeover).await
                {
                    tracing::debug!(error = %ErrorChain(&error), "admin connection ended early");
                }
            }
            .instrument(tracing::debug_span!("admin", %peer)),
        );
    }
    connections.close();
}
