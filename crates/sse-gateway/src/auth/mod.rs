//! Who may read which topic: subscriber JWTs, checked once when a stream opens, never per
//! event.
//!
//! Off unless a key is configured (`--jwt-secret`, `--jwt-secret-file` or
//! `--jwt-public-key`); verification is `sse_core::jwt`'s, shared with the publisher. The
//! token comes from the sources in [`credentials`]; it must allow reading every requested
//! topic. No token gets 401 with `WWW-Authenticate: Bearer`, an invalid one 401 saying why,
//! a topic the token does not allow 403 naming it.

mod credentials;
mod issue;

use sse_core::Topic;
use sse_core::jwt::{TokenError, Verified, Verifier};

pub(crate) use credentials::Sources;
pub use issue::{IssueError, TokenArgs, issue};

/// How subscribers' tokens are checked.
pub(crate) struct Auth {
    verifier: Verifier,
    sources: Sources,
}

/// Why a request gets no stream (401 or 403).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// No token where one was looked for.
    #[error("this stream needs a token: send it as {0}")]
    NoToken(String),
    /// A token that does not verify or cannot be used.
    #[error("the token was refused")]
    Invalid(#[source] TokenError),
    /// A valid token that does not allow a requested topic.
    #[error("the token does not allow reading topic {0:?}")]
    Forbidden(String),
}

impl Refusal {
    /// A short label for the reason, for `sse_auth_failures_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoToken(_) => "no_token",
            Self::Invalid(error) => error.reason(),
            Self::Forbidden(_) => "forbidden",
        }
    }
}

impl Auth {
    /// Token checking with `verifier`, looking for tokens in `sources`.
    pub(crate) fn new(verifier: Verifier, sources: Sources) -> Self {
        Self { verifier, sources }
    }

    /// Checks the request's token against every topic it asks for.
    ///
    /// # Errors
    /// [`Refusal`]: no token, an invalid one, or a topic it does not allow.
    pub(crate) fn authorize(
        &self,
        headers: &http::HeaderMap,
        query: &str,
        topics: &[Topic],
    ) -> Result<Verified, Refusal> {
        let token = self
            .sources
            .find(headers, query)
            .ok_or_else(|| Refusal::NoToken(self.sources.describe()))?;
        let verified = self.verifier.verify(&token).map_err(Refusal::Invalid)?;
        match topics
            .iter()
            .find(|topic| !verified.allowed.subscribe.allows(topic))
        {
            Some(topic) => Err(Refusal::Forbidden(topic.as_str().to_owned())),
            None => Ok(verified),
        }
    }
}
