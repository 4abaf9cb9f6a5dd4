//! Who may read which topic, decided once when a stream opens, never per event, by
//! subscriber JWTs, by the application (forward auth), or by both.
//!
//! JWTs are off unless a key is configured (`--jwt-secret`, `--jwt-secret-file`,
//! `--jwt-public-key` or `--jwks-url`); verification is `sse_core`'s, shared with the
//! publisher. The token comes from the sources in [`credentials`]; it must allow reading
//! every requested topic. Forward auth ([`forward`], `--auth-url`) asks the application.
//! No token gets 401 with `WWW-Authenticate: Bearer`, an invalid one 401 saying why, a topic
//! not allowed 403 naming it, a refusal of the application its own 401 or 403; a check that
//! cannot be made (no JWKS keys yet, the application unreachable) is a 503, never a stream.

mod credentials;
mod forward;
mod issue;

use std::time::SystemTime;

use http::{HeaderValue, StatusCode};
use sse_core::Topic;
use sse_core::jwt::TokenError;
use sse_core::runtime::jwt_flags::Tokens;

pub(crate) use credentials::Sources;
pub(crate) use forward::ForwardAuth;
pub use issue::{IssueError, TokenArgs, issue};

use forward::{Decision, ForwardError};

/// How subscribers are checked: by token, by the application, or both.
pub(crate) struct Auth {
    /// Token checking, when a key is configured.
    pub(crate) tokens: Option<Tokens>,
    /// Where tokens (and forwarded credentials) are looked for.
    pub(crate) sources: Sources,
    /// Forward auth, when `--auth-url` is set.
    pub(crate) forward: Option<ForwardAuth>,
}

/// What an allowed subscriber was granted.
#[derive(Debug, Default)]
pub(crate) struct Grant {
    /// Who it is, if known (a token's `sub`, or the application's).
    pub(crate) subject: Option<String>,
    /// When the permission ends, if it does: the earlier of the token's and the
    /// application's.
    pub(crate) expires_at: Option<SystemTime>,
}

/// Why a request gets no stream (401, 403 or 503).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// No token where one was looked for.
    #[error("this stream needs a token: send it as {0}")]
    NoToken(String),
    /// A token that does not verify or cannot be used.
    #[error("the token was refused")]
    Invalid(#[source] TokenError),
    /// A topic the token (or the application) does not allow.
    #[error("the {by} does not allow reading topic {topic:?}")]
    Forbidden {
        /// The topic.
        topic: String,
        /// `token` or `application`.
        by: &'static str,
    },
    /// The application refused (401 or 403).
    #[error("the application refused this stream ({})", .status.as_u16())]
    Denied {
        /// Its status.
        status: StatusCode,
        /// Its `WWW-Authenticate`, passed on.
        challenge: Option<HeaderValue>,
    },
    /// The check cannot be made now.
    #[error("the subscriber cannot be checked right now; retry shortly")]
    Unavailable(#[source] Unavailable),
}

/// Why a check cannot be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unavailable {
    /// No JWKS document has been fetched.
    #[error("the keys to verify tokens could not be fetched")]
    Keys,
    /// Forward auth failed.
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

impl Refusal {
    /// A short label for the reason, for `sse_auth_failures_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoToken(_) => "no_token",
            Self::Invalid(error) => error.reason(),
            Self::Forbidden { .. } => "forbidden",
            Self::Denied { .. } => "forward_denied",
            Self::Unavailable(Unavailable::Keys) => "no_keys",
            Self::Unavailable(Unavailable::Forward(_)) => "forward_unavailable",
        }
    }
}

impl Auth {
    /// Whether anything is checked.
    pub(crate) fn is_on(&self) -> bool {
        self.tokens.is_some() || self.forward.is_some()
    }

    /// Checks the request against every topic it asks for: its token first (cheap), then
    /// the application.
    ///
    /// # Errors
    /// [`Refusal`]: no token, an invalid one, a topic not allowed, a refusal of the
    /// application, or a check that cannot be made.
    pub(crate) async fn authorize(
        &self,
        headers: &http::HeaderMap,
        query: &str,
        topics: &[Topic],
    ) -> Result<Grant, Refusal> {
        let mut grant = Grant::default();
        if let Some(tokens) = &self.tokens {
            let token = self
                .sources
                .find(headers, query)
                .ok_or_else(|| Refusal::NoToken(self.sources.describe()))?;
            let verified = tokens.verify(&token).await.map_err(|error| match error {
                TokenError::NoKeys => Refusal::Unavailable(Unavailable::Keys),
                error => Refusal::Invalid(error),
            })?;
            forbidden(topics, "token", |topic| {
                verified.allowed.subscribe.allows(topic)
            })?;
            grant.subject = verified.subject;
            grant.expires_at = Some(verified.expires_at);
        }
        if let Some(forward) = &self.forward {
            let credentials = self.sources.forwarded(headers, query);
            let permit = match forward.check(&credentials, topics).await {
                Ok(Decision::Allow(permit)) => permit,
                Ok(Decision::Deny { status, challenge }) => {
                    return Err(Refusal::Denied { status, challenge });
                }
                Err(error) => return Err(Refusal::Unavailable(error.into())),
            };
            if let Some(allowed) = &permit.subscribe {
                forbidden(topics, "application", |topic| allowed.allows(topic))?;
            }
            grant.subject = grant.subject.or(permit.subject);
            grant.expires_at = match (grant.expires_at, permit.expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(grant)
    }
}

/// Refuses the first topic `allows` does not allow, as refused `by` it.
fn forbidden(
    topics: &[Topic],
    by: &'static str,
    allows: impl Fn(&Topic) -> bool,
) -> Result<(), Refusal> {
    match topics.iter().find(|topic| !allows(topic)) {
        Some(topic) => Err(Refusal::Forbidden {
            topic: topic.as_str().to_owned(),
            by,
        }),
        None => Ok(()),
    }
}
