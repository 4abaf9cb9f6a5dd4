//! [`Cors`]: which browser origins may call a service across origins, the same policy in both
//! services (`--cors-origin`, `--cors-credentials`).
//!
//! An allowed origin gets `Access-Control-Allow-Origin` (its own, or `*` for `--cors-origin
//! '*'` without credentials) and `Vary: Origin`; with credentials also
//! `Access-Control-Allow-Credentials: true`, and `*` is then refused at startup, since browsers
//! refuse it. Any other origin gets no CORS headers, so the browser withholds the response.

use hyper::header::{self, HeaderMap, HeaderValue};

/// Which browser origins may call a route (`--cors-origin`), whether their requests may carry
/// credentials (`--cors-credentials`), and what a preflight allows.
#[derive(Clone, Debug, Default)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
    credentials: bool,
    /// `Access-Control-Allow-Methods` of a preflight.
    methods: &'static str,
    /// `Access-Control-Allow-Headers` of a preflight.
    headers: &'static str,
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
pub struct Refused;

impl Cors {
    /// The policy for these `--cors-origin` values (`*` allows any origin), with credentials
    /// or without, for a route whose preflights allow `methods` and `headers`.
    ///
    /// # Errors
    /// [`CorsError`] for `*` with credentials.
    pub fn new(
        origins: &[String],
        credentials: bool,
        methods: &'static str,
        headers: &'static str,
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

    /// Adds the CORS headers to a response when the request's `origin` (its `Origin` header)
    /// is allowed.
    ///
    /// # Errors
    /// [`Refused`] when the request came from an origin that is not allowed.
    pub fn allow(
        &self,
        origin: Option<&HeaderValue>,
        response: &mut HeaderMap,
    ) -> Result<(), Refused> {
        let Some(origin) = self.allowed(origin)? else {
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

    /// Answers a preflight: the route's methods and headers, cached for ten minutes.
    ///
    /// # Errors
    /// [`Refused`] when the preflight came from an origin that is not allowed.
    pub fn preflight(&self, request: &HeaderMap, response: &mut HeaderMap) -> Result<(), Refused> {
        let origin = request.get(header::ORIGIN);
        if self.allowed(origin)?.is_none() {
            return Ok(());
        }
        self.allow(origin, response)?;
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
        Ok(())
    }
}
