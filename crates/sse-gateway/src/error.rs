//! [`RequestError`]: every way a request can be refused, and the one place each becomes a
//! status code and a plain-text sentence a person understands.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use sse_core::{CursorError, ErrorChain, TopicError};

use crate::admission::OverRate;
use crate::auth::Refusal;
use crate::client_limits::OverLimit;
use crate::response::{Body, text};

/// A refused request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// No `topic` parameter.
    #[error("name at least one topic: /events?topic=<name>[&topic=<name>...]")]
    NoTopic,
    /// An invalid topic name.
    #[error("invalid topic")]
    Topic(#[from] TopicError),
    /// More distinct topics than `--max-topics`.
    #[error("{count} topics requested; at most {max} are allowed per stream")]
    TooManyTopics {
        /// Distinct topics requested.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A `Last-Event-ID` (or `lastEventId`) that is not a position for these topics.
    #[error("invalid Last-Event-ID")]
    LastEventId(#[from] CursorError),
    /// `max_events` or `max_seconds` that is not a whole number of at least 1.
    #[error("{0} must be a whole number of at least 1")]
    Bound(&'static str),
    /// A header with characters other than visible ASCII.
    #[error("the {0} may contain only visible ASCII characters")]
    NotText(&'static str),
    /// `--max-connections` streams are open.
    #[error(
        "this node serves its maximum of {max} streams; retry shortly (another node may have room)"
    )]
    OverCapacity {
        /// The limit.
        max: usize,
    },
    /// More new streams than `--accept-rate` this second.
    #[error(
        "this node admits at most {} new streams per second; retry in {} ms",
        .0.rate,
        .0.retry_after.as_millis()
    )]
    OverRate(OverRate),
    /// No token, an invalid one, or a topic it does not allow.
    #[error(transparent)]
    Auth(#[from] Refusal),
    /// The client holds its maximum of streams on this node.
    #[error(transparent)]
    OverClientLimit(#[from] OverLimit),
    /// The node is shutting down.
    #[error("this node is shutting down; reconnect to another node")]
    Draining,
    /// No such route.
    #[error("no route for {0:?}; event streams are at GET /events?topic=<name>")]
    NotFound(String),
    /// The route takes another method.
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods allowed.
        allow: &'static str,
    },
}

impl RequestError {
    /// The status code, and the reason label counted in `sse_requests_rejected_total`.
    pub(crate) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoTopic
            | Self::Topic(_)
            | Self::TooManyTopics { .. }
            | Self::LastEventId(_)
            | Self::Bound(_)
            | Self::NotText(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Auth(Refusal::NoToken(_)) => (StatusCode::UNAUTHORIZED, "no_token"),
            Self::Auth(Refusal::Invalid(_)) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::Auth(Refusal::Forbidden { .. }) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Auth(Refusal::Denied { status, .. }) if *status == StatusCode::FORBIDDEN => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            Self::Auth(Refusal::Denied { .. }) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Auth(Refusal::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable")
            }
            Self::OverClientLimit(OverLimit::Address { .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, "per_ip_limit")
            }
            Self::OverClientLimit(OverLimit::User { .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, "per_user_limit")
            }
            Self::OverCapacity { .. } => (StatusCode::SERVICE_UNAVAILABLE, "over_capacity"),
            Self::OverRate(_) => (StatusCode::SERVICE_UNAVAILABLE, "accept_rate"),
            Self::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The response: the status, the sentence (with its causes), and `Retry-After` or
    /// `Allow` where they apply. A refusal by `--accept-rate` is an event stream holding the
    /// sentence as a comment and the wait as `retry:`, for clients that read the body of a
    /// 503 (fetch-based ones; a browser's `EventSource` does not reconnect after a non-200).
    pub(crate) fn into_response(self) -> Response<Body> {
        let (status, _) = self.status();
        if let Self::OverRate(refused) = &self {
            let wait = refused.retry_after;
            let body = format!(": {}\nretry: {}\n\n", ErrorChain(&self), wait.as_millis());
            let mut response = text(status, Bytes::from(body));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)),
            );
            return response;
        }
        let mut response = text(status, Bytes::from(format!("{}\n", ErrorChain(&self))));
        let headers = response.headers_mut();
        match self {
            Self::OverCapacity { .. } | Self::Draining | Self::Auth(Refusal::Unavailable(_)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::OverClientLimit(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Auth(Refusal::NoToken(_)) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Auth(Refusal::Invalid(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::Auth(Refusal::Denied {
                challenge: Some(challenge),
                ..
            }) => {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::RequestError;
    use http_body_util::BodyExt;
    use sse_core::{Cursor, Topic};

    async fn body_of(error: RequestError) -> String {
        let body = error.into_response().into_body().collect().await;
        let bytes = body
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_refusal_names_its_cause_exactly_once() {
        let cause = Topic::parse("a b").unwrap_err();
        let body = body_of(RequestError::Topic(cause.clone())).await;
        assert_eq!(body, format!("invalid topic: {cause}\n"));

        let topics = [Topic::parse("a").unwrap()];
        let cause = Cursor::decode("junk", &topics).unwrap_err();
        let body = body_of(RequestError::LastEventId(cause.clone())).await;
        assert_eq!(body, format!("invalid Last-Event-ID: {cause}\n"));
    }
}
