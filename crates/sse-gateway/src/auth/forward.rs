//! Forward auth (`--auth-url`): the application decides who reads what, as nginx's
//! `auth_request` and Nchan's `nchan_authorize_request` let it.
//!
//! Before a stream opens the gateway sends `GET <auth-url>?topic=A&topic=B` with the
//! subscriber's `Cookie` and `Authorization` headers (a query token, when `--jwt-query` is on,
//! travels as `Authorization: Bearer`). The application answers:
//!
//! - **2xx**: allowed. The body may be JSON (`Content-Type: application/json`) saying more:
//!   `{"subscribe": ["orders.*"], "sub": "alice", "exp": 1767225600}`: every requested topic
//!   must match `subscribe` (the token claim's grammar; absent: all requested topics), `sub`
//!   counts toward `--max-connections-per-user`, and at `exp` (Unix seconds) the stream ends
//!   with `sse.token_expired`, as a token's does. Any other body is ignored.
//! - **401 or 403**: refused; the subscriber gets the same status (and the application's
//!   `WWW-Authenticate`).
//! - anything else, no answer within `--auth-timeout`, or a 2xx whose JSON is not the above:
//!   503 with `Retry-After`. A failing check never opens a stream.
//!
//! Decisions (allowed or refused, never a failure) are remembered for `--auth-cache-ttl` per
//! (cookies, authorization, topics), hashed, and never past the `exp` the application gave;
//! identical checks arriving together share one call. Calls go over a pooled client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sse_core::Topic;
use sse_core::jwt::{TopicPattern, TopicSet};

use crate::metrics::Metrics;

/// The largest reply body read.
const MAX_REPLY: usize = 64 * 1024;
/// Decisions remembered at most.
const MAX_DECISIONS: usize = 100_000;

/// What the application is told about a subscriber.
pub(crate) struct Credentials {
    /// Every `Cookie` header, joined.
    pub(crate) cookie: Option<HeaderValue>,
    /// `Authorization`, or the query token as a bearer one.
    pub(crate) authorization: Option<HeaderValue>,
}

/// The application's answer.
#[derive(Clone, Debug)]
pub(crate) enum Decision {
    /// A 2xx.
    Allow(Permit),
    /// A 401 or 403.
    Deny {
        /// Which of the two.
        status: StatusCode,
        /// Its `WWW-Authenticate`, passed on.
        challenge: Option<HeaderValue>,
    },
}

/// What an allowing answer said.
#[derive(Clone, Debug, Default)]
pub(crate) struct Permit {
    /// The topics allowed, if it named them.
    pub(crate) subscribe: Option<TopicSet>,
    /// The subscriber, if it named one.
    pub(crate) subject: Option<String>,
    /// When the permission ends, if it said.
    pub(crate) expires_at: Option<SystemTime>,
}

/// Why no decision was had: each is a 503 for the subscriber.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// No answer in time.
    #[error("the authorization service did not answer in time")]
    Timeout,
    /// No connection, or the connection broke.
    #[error("the authorization service cannot be reached")]
    Unreachable,
    /// A status other than 2xx, 401 or 403.
    #[error("the authorization service answered {0}")]
    Status(u16),
    /// A 2xx whose body cannot be read as a decision.
    #[error("the authorization service's answer cannot be read: {0}")]
    Garbage(String),
}

type Outcome = Result<Decision, ForwardError>;
type Key = [u8; 32];

/// A decision being made, or made and valid until its instant.
#[derive(Default)]
struct Slot {
    decided: tokio::sync::OnceCell<(Outcome, Instant)>,
}

impl Slot {
    fn is_stale(&self, now: Instant) -> bool {
        self.decided
            .get()
            .is_some_and(|(_, valid_until)| *valid_until <= now)
    }
}

/// See the module docs.
pub(crate) struct ForwardAuth {
    url: reqwest::Url,
    client: reqwest::Client,
    ttl: Duration,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
}

impl ForwardAuth {
    pub(crate) fn new(
        url: reqwest::Url,
        client: reqwest::Client,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            url,
            client,
            ttl,
            slots: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The application's decision on `credentials` reading `topics`: remembered, shared
    /// with an identical check under way, or asked for.
    pub(crate) async fn check(&self, credentials: &Credentials, topics: &[Topic]) -> Outcome {
        let key = key(credentials, topics);
        let slot = self.slot(key);
        let mut called = false;
        let (outcome, _) = slot
            .decided
            .get_or_init(|| {
                called = true;
                async {
                    let outcome = self.call(credentials, topics).await;
                    let valid_until = self.valid_until(&outcome);
                    (outcome, valid_until)
                }
            })
            .await;
        if !called {
            self.metrics.forward_auth_cache_hits.inc();
        }
        let outcome = outcome.clone();
        if outcome.is_err() || self.ttl.is_zero() {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            if slots.get(&key).is_some_and(|held| Arc::ptr_eq(held, &slot)) {
                slots.remove(&key);
            }
        }
        outcome
    }

    /// The slot for `key`: the one held, unless its decision is stale.
    fn slot(&self, key: Key) -> Arc<Slot> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(&key).filter(|slot| !slot.is_stale(now)) {
            return slot.clone();
        }
        if slots.len() >= MAX_DECISIONS {
            slots.retain(|_, slot| !slot.is_stale(now));
        }
        let slot = Arc::new(Slot::default());
        if slots.len() < MAX_DECISIONS {
            slots.insert(key, slot.clone());
        }
        slot
    }

    /// Until when `outcome` may be reused.
    fn valid_until(&self, outcome: &Outcome) -> Instant {
        let now = Instant::now();
        let mut until = now + self.ttl;
        if let Ok(Decision::Allow(Permit {
            expires_at: Some(expires_at),
            ..
        })) = outcome
        {
            let left = expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            until = until.min(now + left);
        }
        until
    }

    async fn call(&self, credentials: &Credentials, topics: &[Topic]) -> Outcome {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .extend_pairs(topics.iter().map(|topic| ("topic", topic.as_str())));
        let mut request = self.client.get(url);
        if let Some(cookie) = &credentials.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(authorization) = &credentials.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let started = Instant::now();
        let outcome = match request.send().await {
            Ok(response) => decide(response).await,
            Err(error) => Err(failure(&error)),
        };
        self.metrics
            .forward_auth_seconds
            .observe(started.elapsed().as_secs_f64());
        let label = match &outcome {
            Ok(Decision::Allow(_)) => "allow",
            Ok(Decision::Deny { .. }) => "deny",
            Err(_) => "error",
        };
        self.metrics
            .forward_auth_calls
            .with_label_values(&[label])
            .inc();
        if let Err(error) = &outcome {
            tracing::warn!(url = %self.url, %error, "forward auth failed; the stream is refused with 503");
        }
        outcome
    }
}

fn failure(error: &reqwest::Error) -> ForwardError {
    if error.is_timeout() {
        ForwardError::Timeout
    } else {
        ForwardError::Unreachable
    }
}

async fn decide(mut response: reqwest::Response) -> Outcome {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Ok(Decision::Deny {
            status,
            challenge: response.headers().get(header::WWW_AUTHENTICATE).cloned(),
        });
    }
    if !status.is_success() {
        return Err(ForwardError::Status(status.as_u16()));
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"));
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| failure(&error))? {
        if body.len() + chunk.len() > MAX_REPLY {
            return Err(ForwardError::Garbage(format!(
                "the body is over {MAX_REPLY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if !json || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decision::Allow(Permit::default()));
    }
    permit(&body).map(Decision::Allow)
}

/// Reads an allowing JSON body.
fn permit(body: &[u8]) -> Result<Permit, ForwardError> {
    let reply: Reply = serde_json::from_slice(body).map_err(|error| {
        ForwardError::Garbage(format!(
            "not {{\"subscribe\": [...], \"sub\": ..., \"exp\": ...}}: {error}"
        ))
    })?;
    let subscribe = reply
        .subscribe
        .map(|entries| {
            entries
                .iter()
                .map(|entry| TopicPattern::parse(entry))
                .collect::<Result<TopicSet, _>>()
        })
        .transpose()
        .map_err(|error| ForwardError::Garbage(error.to_string()))?;
    Ok(Permit {
        subscribe,
        subject: reply.sub,
        expires_at: reply.exp.map(|exp| UNIX_EPOCH + Duration::from_secs(exp)),
    })
}

/// What identifies a check: the credentials and topics, hashed.
fn key(credentials: &Credentials, topics: &[Topic]) -> Key {
    let mut hash = Sha256::new();
    for part in [&credentials.cookie, &credentials.authorization] {
        match part {
            Some(value) => {
                hash.update([1]);
                hash.update(value.as_bytes().len().to_be_bytes());
                hash.update(value.as_bytes());
            }
            None => hash.update([0]),
        }
    }
    for topic in topics {
        hash.update(topic.as_str().as_bytes());
        hash.update([b'\n']);
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::{ForwardError, permit};
    use sse_core::Topic;

    #[test]
    fn an_allowing_body_names_topics_subject_and_expiry_or_is_refused() {
        let permit_of = |body: &str| permit(body.as_bytes());
        let full =
            permit_of(r#"{"subscribe": ["orders.*"], "sub": "alice", "exp": 10, "x": 1}"#).unwrap();
        let allowed = full.subscribe.unwrap();
        assert!(allowed.allows(&Topic::parse("orders.eu").unwrap()));
        assert!(!allowed.allows(&Topic::parse("news").unwrap()));
        assert_eq!(full.subject.as_deref(), Some("alice"));
        assert!(full.expires_at.is_some());
        assert!(permit_of("{}").unwrap().subscribe.is_none());
        for garbage in [
            "[1]",
            r#"{"subscribe": "orders"}"#,
            r#"{"subscribe": ["a b"]}"#,
            r#"{"exp": "soon"}"#,
            "{",
        ] {
            assert!(
                matches!(permit_of(garbage), Err(ForwardError::Garbage(_))),
                "{garbage}"
            );
        }
    }
}
