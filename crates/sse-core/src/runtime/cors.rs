//! [`Cors`]: which browser origins may call a service across origins, the same policy in both
//! services (`--cors-origin`, `--cors-credentials`).
//!
//! An allowed origin gets `Access-Control-Allow-Origin` (its own, or `*` for `--cors-origin
//! '*'` without credentials) and `Vary: Origin`; with credentials also
//! `Access-Control-Allow-Credentials: true`, and `*` is then refused at startup, since browsers
//! refuse it. Any other origin gets no CORS headers, so the browser withholds the response;
//! the policy counts each such request in the counter the service gives it.

use hyper::header::{self, HeaderMap, HeaderValue};

/// Which browser origins may call a route (`--cors-origin`), whether their requests may carry
/// credentials (`--cors-credentials`), and what a preflight allows.
#[derive(Clone, Debug)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
    credentials: bool,
    /// `Access-Control-Allow-Methods` of a preflight.
    methods: &'static str,
    /// `Access-Control-Allow-Headers` of a preflight.
    headers: &'static str,
    /// Requests and preflights from an origin not allowed.
    rejected: prometheus::IntCounter,
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

/// A request from an origin the policy does not allow.
struct Refused;

impl Cors {
    /// The policy for these `--cors-origin` values (`*` allows any origin), with credentials
    /// or without, for a route whose preflights allow `methods` and `headers`; requests from
    /// other origins are counted in `rejected`.
    ///
    /// # Errors
    /// [`CorsError`] for `*` with credentials.
    pub fn new(
        origins: &[String],
        credentials: bool,
        methods: &'static str,
        headers: &'static str,
        rejected: prometheus::IntCounter,
    ) -> Result<Self, CorsError> {
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
            methods,
            headers,
            rejected,
        })
    }

    /// The `Access-Control-Allow-Origin` for a request's `origin`: `None` for a request
    /// without one (not a cross-origin request), `Err` for an origin that is not allowed.
    fn allowed(&self, origin: Option<&HeaderValue>) -> Result<Option<HeaderValue>, Refused> {
        let Some(origin) = origin else {
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

    /// The origin a response may name, counting a refused one.
    fn allowed_or_counted(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        self.allowed(origin).unwrap_or_else(|Refused| {
            self.rejected.inc();
            None
        })
    }

    /// Adds the CORS headers to a response when the request's `origin` (its `Origin` header)
    /// is allowed.
    pub fn allow(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        if let Some(origin) = self.allowed_or_counted(origin) {
            self.add(origin, response);
        }
    }

    fn add(&self, origin: HeaderValue, response: &mut HeaderMap) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        // The answer depends on the Origin (unless it is `*`): caches must keep them apart.
        response.insert(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Answers a preflight: the route's methods and headers, cached for ten minutes.
    pub fn preflight(&self, request: &HeaderMap, response: &mut HeaderMap) {
        let Some(origin) = self.allowed_or_counted(request.get(header::ORIGIN)) else {
            return;
        };
        self.add(origin, response);
        response.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(self.methods),
        );
        response.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(self.headers),
        );
        response.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}
