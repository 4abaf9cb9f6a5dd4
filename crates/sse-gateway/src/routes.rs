//! Routing by `(method, path)`, the state every handler shares, and the small routes:
//!
//! | route | does |
//! |---|---|
//! | `GET /events?topic=…` | an event stream ([`crate::events`]); `OPTIONS` answers CORS preflights |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | Redis pub/sub is connected and caught up, and the node is not draining |
//! | `GET /metrics` | Prometheus metrics |

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use tokio_util::sync::CancellationToken;

use crate::body::SseBody;
use crate::drain::Drain;
use crate::error::RequestError;
use crate::events;
use crate::handoff::{HandedOff, Handoff};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::replay::History;

/// Every response body: a small fixed one, or an event stream (served by hyper, or a stand-in
/// while the stream leaves hyper: see [`crate::handoff`]).
pub(crate) type Body = Either<Full<Bytes>, Either<SseBody, HandedOff>>;

/// Per-stream limits from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_topics: usize,
    pub(crate) max_connections: usize,
    pub(crate) client_buffer: usize,
    pub(crate) retry_ms: u64,
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) hub: Arc<Hub>,
    pub(crate) history: History,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    /// Open event streams, against `--max-connections`.
    pub(crate) open_streams: Arc<AtomicUsize>,
    pub(crate) drain: Drain,
    /// Whether the pub/sub link is connected and caught up.
    pub(crate) redis_connected: Arc<AtomicBool>,
    pub(crate) cors: Cors,
}

/// Routes one request that arrived on a connection cancelling `connection` aborts, and whose
/// socket an HTTP/1.1 stream takes over through `handoff`. Never fails: every error becomes a
/// response.
pub(crate) async fn route<B>(
    app: Arc<App>,
    request: Request<B>,
    connection: CancellationToken,
    handoff: Handoff,
) -> Result<Response<Body>, Infallible> {
    let method = request.method();
    let response = match (request.uri().path(), method) {
        ("/events", &Method::GET) => {
            let mut response =
                events::open(&app, &request, connection, &handoff).unwrap_or_else(|error| {
                    app.metrics
                        .requests_rejected
                        .with_label_values(&[error.status().1])
                        .inc();
                    error.into_response()
                });
            app.cors.allow(request.headers(), response.headers_mut());
            response
        }
        ("/events", &Method::OPTIONS) => {
            let mut response = text(StatusCode::NO_CONTENT, Bytes::new());
            app.cors
                .preflight(request.headers(), response.headers_mut());
            response
        }
        ("/healthz", &Method::GET) => text(StatusCode::OK, Bytes::from_static(b"ok\n")),
        ("/readyz", &Method::GET) => readyz(&app),
        ("/metrics", &Method::GET) => {
            let mut response = text(StatusCode::OK, Bytes::from(app.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        ("/events", _) => not_allowed(method, "GET, OPTIONS"),
        ("/healthz" | "/readyz" | "/metrics", _) => not_allowed(method, "GET"),
        (path, _) => RequestError::NotFound(path.chars().take(200).collect()).into_response(),
    };
    Ok(response)
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

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Which browser origins may open streams (`--cors-origin`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// The policy for these `--cors-origin` values; `*` allows any origin.
    pub(crate) fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|origin| origin == "*"),
            origins: origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_owned())
                .collect(),
        }
    }

    fn allowed(&self, request: &HeaderMap) -> Option<HeaderValue> {
        let origin = request.get(header::ORIGIN)?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|allowed| allowed == text)
            .then(|| origin.clone())
    }

    /// Adds `Access-Control-Allow-Origin` to a response when the request's origin is allowed.
    pub(crate) fn allow(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some(origin) = self.allowed(request) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            response.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// Answers a preflight: the method and the headers an `EventSource` (or a fetch-based
    /// client) sends.
    pub(crate) fn preflight(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if self.allowed(request).is_none() {
            return;
        }
        self.allow(request, response);
        response.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET"),
        );
        response.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Last-Event-ID, Cache-Control, Accept"),
        );
        response.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}
