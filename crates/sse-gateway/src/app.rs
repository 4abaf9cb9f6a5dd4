//! The state every request handler shares ([`App`]): the hub, the history, the node's limits
//! and counters, and the policies that apply to every stream ([`Cors`], [`StreamSlot`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http::{HeaderMap, HeaderValue, header};
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::client_limits::{ClientLimits, ClientSlot};
use crate::drain::Drain;
use crate::history::History;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::takeover::Takeover;

// === impl App ===

/// Per-stream limits from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most distinct topics in one stream (`--max-topics`).
    pub(crate) max_topics: usize,
    /// Most open event streams on the node (`--max-connections`).
    pub(crate) max_streams: usize,
    /// Most bytes queued for one client (`--client-buffer`).
    pub(crate) client_buffer: usize,
    /// The `retry:` sent to every client (`--retry-ms`).
    pub(crate) retry_ms: u64,
}

/// What every handler shares.
pub(crate) struct App {
    /// Which local clients want which topic: every stream joins it.
    pub(crate) hub: Arc<Hub>,
    /// Reading topic streams for resuming clients.
    pub(crate) history: History,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    /// Open event streams, against `--max-connections`.
    pub(crate) open_streams: Arc<AtomicUsize>,
    /// Whether the node is shutting down: new streams are refused, `/readyz` fails.
    pub(crate) drain: Drain,
    /// Whether the pub/sub link is connected and caught up.
    pub(crate) redis_connected: Arc<AtomicBool>,
    /// Which browser origins may open streams.
    pub(crate) cors: Cors,
    /// Subscriber tokens, when a key is configured.
    pub(crate) auth: Option<Auth>,
    /// Streams per client address and per user.
    pub(crate) client_limits: Arc<ClientLimits>,
}

// === impl ClientConnection ===

/// What a request knows of the connection it came on.
#[derive(Clone)]
pub(crate) struct ClientConnection {
    /// The peer's address (nginx's, behind a proxy).
    pub(crate) peer: std::net::SocketAddr,
    /// Cancelling it aborts the connection (its client fell behind).
    pub(crate) abort: CancellationToken,
    /// How an HTTP/1.1 stream leaves hyper on this connection.
    pub(crate) takeover: Takeover,
}

// === impl StreamSlot ===

/// One of the node's `--max-connections` stream slots (streams, not TCP connections: an
/// HTTP/2 connection may carry several), held by a stream for its life.
pub(crate) struct StreamSlot {
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// The stream's share of its client's limits, given back with the slot.
    pub(crate) client: Option<ClientSlot>,
}

impl StreamSlot {
    /// Takes a slot if fewer than `max` streams are open.
    pub(crate) fn take(
        open: &Arc<AtomicUsize>,
        max: usize,
        metrics: &Arc<Metrics>,
    ) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        metrics.connections_active.inc();
        metrics.connections_total.inc();
        Some(Self {
            open: open.clone(),
            metrics: metrics.clone(),
            client: None,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections_active.dec();
    }
}

// === impl Cors ===

/// Which browser origins may open streams (`--cors-origin`), and whether their requests may
/// carry credentials (`--cors-credentials`: cookies, for a token in a cookie).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cors {
    any: bool,
    origins: Vec<String>,
    credentials: bool,
}

/// Why the CORS configuration cannot work (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    /// Browsers refuse `Access-Control-Allow-Origin: *` on requests with credentials.
    #[error(
        "--cors-origin '*' cannot go with --cors-credentials: browsers refuse credentials for any \
         origin; list the origins that may send cookies"
    )]
    AnyWithCredentials,
}

/// A request from an origin the policy does not allow; it gets no CORS headers (the browser
/// then withholds the response from the page).
#[derive(Debug)]
pub(crate) struct Refused;

impl Cors {
    /// The policy for these `--cors-origin` values (`*` allows any origin), with credentials
    /// or without.
    ///
    /// # Errors
    /// [`CorsError`] for `*` with credentials.
    pub(crate) fn new(origins: &[String], credentials: bool) -> Result<Self, CorsError> {
        let any = origins.iter().any(|origin| origin == "*");
        if any && credentials {
            return Err(CorsError::AnyWithCredentials);
        }
        Ok(Self {
            any,
            origins: origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_owned())
                .collect(),
            credentials,
        })
    }

    /// The `Access-Control-Allow-Origin` for the request: `None` for a request without an
    /// `Origin` (not a cross-origin request), `Err` for an origin that is not allowed.
    fn allowed(&self, request: &HeaderMap) -> Result<Option<HeaderValue>, Refused> {
        let Some(origin) = request.get(header::ORIGIN) else {
            return Ok(None);
        };
        if self.any {
            return Ok(Some(HeaderValue::from_static("*")));
        }
        let text = origin.to_str().map_err(|_| Refused)?;
        if self.origins.iter().any(|allowed| allowed == text) {
            Ok(Some(origin.clone()))
        } else {
            Err(Refused)
        }
    }

    /// Adds the CORS headers to a response when the request's origin is allowed.
    ///
    /// # Errors
    /// [`Refused`] when the request came from an origin that is not allowed.
    pub(crate) fn allow(
        &self,
        request: &HeaderMap,
        response: &mut HeaderMap,
    ) -> Result<(), Refused> {
        let Some(origin) = self.allowed(request)? else {
            return Ok(());
        };
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        // The answer depends on the Origin (unless it is `*`): caches must keep them apart.
        response.insert(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Ok(())
    }

    /// Answers a preflight: the method and the headers an `EventSource` or a fetch-based
    /// client sends (a resume position, a token, a content type), cached for ten minutes.
    ///
    /// # Errors
    /// [`Refused`] when the preflight came from an origin that is not allowed.
    pub(crate) fn preflight(
        &self,
        request: &HeaderMap,
        response: &mut HeaderMap,
    ) -> Result<(), Refused> {
        if self.allowed(request)?.is_none() {
            return Ok(());
        }
        self.allow(request, response)?;
        response.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, OPTIONS"),
        );
        response.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Last-Event-ID, Authorization, Content-Type, Cache-Control, Accept",
            ),
        );
        response.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        Ok(())
    }
}
