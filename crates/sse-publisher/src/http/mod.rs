//! The HTTP surface: routing by `(method, path)`, and the state every handler shares.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/publish` | publish one event or a batch ([`publish`]), at most once per `Idempotency-Key`; `OPTIONS` answers CORS preflights |
//! | `GET /v1/topics/<topic>` | subscribers across the fleet and the topic's history ([`topics`]) |
//! | `GET /v1/topics?prefix=&limit=` | the busiest topics across the fleet |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | Redis answers and the service is not shutting down |
//! | `GET /metrics` | Prometheus metrics |

mod auth;
mod error;
mod publish;
mod topics;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use sse_core::runtime::cors::Cors;

pub(crate) use auth::Auth;
use error::ApiError;

use crate::Publisher;
use crate::metrics::Metrics;

/// Request limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest accepted body, in bytes.
    pub(crate) max_body: u64,
    /// Most events in one batch.
    pub(crate) max_batch: usize,
    /// Longest time to receive a body.
    pub(crate) body_timeout: std::time::Duration,
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) publisher: Publisher,
    pub(crate) auth: Auth,
    pub(crate) limits: Limits,
    pub(crate) metrics: Metrics,
    /// Set once shutdown begins, so `/readyz` tells load balancers to stop sending traffic.
    pub(crate) draining: AtomicBool,
    /// Which browser origins may publish.
    pub(crate) cors: Cors,
}

/// Routes one request. Never fails: every error becomes a response.
pub(crate) async fn route(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path();
    let response = match (path, &method) {
        ("/v1/publish", &Method::POST) => {
            let started = Instant::now();
            let origin = request.headers().get(header::ORIGIN).cloned();
            let mut response = publish::handle(&app, request)
                .await
                .unwrap_or_else(|error| refused(&app, error));
            // A refused origin gets no CORS headers: the browser withholds the answer.
            app.cors.allow(origin.as_ref(), response.headers_mut());
            app.metrics
                .publish_duration
                .observe(started.elapsed().as_secs_f64());
            app.metrics
                .publish_requests
                .with_label_values(&[response.status().as_str()])
                .inc();
            response
        }
        (topics::LIST, &Method::GET) => topics::list(&app, &request)
            .await
            .unwrap_or_else(|error| refused(&app, error)),
        (path, &Method::GET) if path.starts_with(topics::PREFIX) => {
            let path = path.to_owned();
            topics::handle(&app, &request, &path)
                .await
                .unwrap_or_else(|error| refused(&app, error))
        }
        ("/healthz", &Method::GET) => text_response(StatusCode::OK, "ok\n"),
        ("/readyz", &Method::GET) => readyz(&app).await,
        ("/metrics", &Method::GET) => metrics(&app),
        ("/v1/publish", &Method::OPTIONS) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            app.cors
                .preflight(request.headers(), response.headers_mut());
            response
        }
        ("/v1/publish", _) => not_allowed(&method, "POST, OPTIONS"),
        (path, _) if path == topics::LIST || path.starts_with(topics::PREFIX) => {
            not_allowed(&method, "GET")
        }
        ("/healthz" | "/readyz" | "/metrics", _) => not_allowed(&method, "GET"),
        _ => ApiError::NotFound {
            path: path.chars().take(200).collect(),
        }
        .into_response(),
    };
    Ok(response)
}

/// The response to a refused request, counted in the metrics that count refusals.
fn refused(app: &App, error: ApiError) -> Response<Full<Bytes>> {
    if let Some(reason) = error.auth_reason() {
        app.metrics.auth_failures.with_label_values(&[reason]).inc();
    }
    if matches!(error, ApiError::KeyReused(_)) {
        app.metrics.idempotency_conflicts.inc();
    }
    error.into_response()
}

fn not_allowed(method: &Method, allow: &'static str) -> Response<Full<Bytes>> {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    }
    .into_response()
}

async fn readyz(app: &App) -> Response<Full<Bytes>> {
    if app.draining.load(Ordering::Relaxed) {
        text_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if app.publisher.ping().await {
        text_response(StatusCode::OK, "ready\n")
    } else {
        text_response(StatusCode::SERVICE_UNAVAILABLE, "redis unreachable\n")
    }
}

fn metrics(app: &App) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(app.metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // Serializing plain structs and `json!` values into memory cannot fail.
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
