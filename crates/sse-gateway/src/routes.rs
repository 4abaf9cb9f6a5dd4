//! Routing by `(method, path)`, and the small routes:
//!
//! | route | does |
//! |---|---|
//! | `GET /events?topic=…` | an event stream ([`crate::events`]); `OPTIONS` answers CORS preflights |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | Redis pub/sub is connected and caught up, and the node is not draining |
//! | `GET /metrics` | Prometheus metrics |
//!
//! The last three are the probes: with `--admin-listen` they are also served on a listener of
//! their own ([`crate::admin`]), which routes with [`probe_route`].

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::app::App;
use crate::connection::ClientConnection;
use crate::error::RequestError;
use crate::events;
use crate::response::{Body, text};

/// Routes one request that arrived on `connection`. Never fails: every error becomes a
/// response.
pub(crate) async fn route<B>(
    app: Arc<App>,
    request: Request<B>,
    connection: ClientConnection,
) -> Result<Response<Body>, Infallible> {
    let method = request.method();
    let response = match (request.uri().path(), method) {
        ("/events", &Method::GET) => {
            let opened = events::open(&app, &request, &connection).await;
            let mut response = opened.unwrap_or_else(|error| {
                app.metrics
                    .requests_rejected
                    .with_label_values(&[error.status().1])
                    .inc();
                if let RequestError::Auth(refusal) = &error {
                    app.metrics
                        .auth_failures
                        .with_label_values(&[refusal.reason()])
                        .inc();
                }
                error.into_response()
            });
            let origin = request.headers().get(header::ORIGIN);
            app.cors.allow(origin, response.headers_mut());
            response
        }
        ("/events", &Method::OPTIONS) => {
            let mut response = text(StatusCode::NO_CONTENT, Bytes::new());
            app.cors
                .preflight(request.headers(), response.headers_mut());
            response
        }
        ("/events", _) => not_allowed(method, "GET, OPTIONS"),
        _ => probe(&app, &request),
    };
    Ok(response)
}

/// Routes one request that arrived on the admin listener: the probes, nothing else.
pub(crate) async fn probe_route<B>(
    app: Arc<App>,
    request: Request<B>,
) -> Result<Response<Body>, Infallible> {
    Ok(probe(&app, &request))
}

/// `/healthz`, `/readyz` and `/metrics`; `404` for any other path.
fn probe<B>(app: &App, request: &Request<B>) -> Response<Body> {
    let method = request.method();
    match (request.uri().path(), method) {
        ("/healthz", &Method::GET) => text(StatusCode::OK, Bytes::from_static(b"ok\n")),
        ("/readyz", &Method::GET) => readyz(app),
        ("/metrics", &Method::GET) => {
            let mut response = text(StatusCode::OK, Bytes::from(app.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        ("/healthz" | "/readyz" | "/metrics", _) => not_allowed(method, "GET"),
        (path, _) => RequestError::NotFound(path.chars().take(200).collect()).into_response(),
    }
}

fn not_allowed(method: &Method, allow: &'static str) -> Response<Body> {
    RequestError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    }
    .into_response()
}

fn readyz(app: &App) -> Response<Body> {
    if app.drain.is_draining() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"draining\n"),
        )
    } else if app.redis_connected.load(Ordering::Relaxed) {
        text(StatusCode::OK, Bytes::from_static(b"ready\n"))
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(b"redis unreachable\n"),
        )
    }
}
