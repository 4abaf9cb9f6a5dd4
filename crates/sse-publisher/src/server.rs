//! The accept loop: one task per connection, HTTP/1.1 and h2c on one port, and a shutdown
//! that stops accepting, then lets in-flight requests finish under a deadline.
//!
//! Publish requests are short, so hyper-util's graceful shutdown is enough here (unlike the
//! gateway, whose endless event streams must end themselves).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // The auto builder bounds the request head through the read buffer (hyper's minimum
        // is 8 KiB); a head that does not fit gets 431.
        .max_buf_size(max_header_size.max(8192));
    builder
        .http2()
        .max_header_list_size(u32::try_from(max_header_size).unwrap_or(u32::MAX));
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
        let app = app.clone();
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(
            async move {
                // hyper's header timeout starts with the first byte; a client that sends
                // nothing at all is timed out here.
                let mut first = [0u8; 1];
                match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                    Ok(Ok(1..)) => {}
                    _ => return,
                }
                let service = service_fn(move |request| route(app.clone(), request));
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
    app.draining.store(true, Ordering::Relaxed);
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
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
