//! [`ApiError`]: every way a request can fail, and the one place each becomes a status code
//! and a JSON body `{"error": "<code>", "detail": "<a sentence for a person>"}`.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use sse_core::ErrorChain;

use crate::PublishError;
use crate::request::RequestError;

/// Seconds a client is told to wait before retrying while Redis is unavailable.
const RETRY_AFTER_SECONDS: &str = "1";

/// The JSON body of every error response.
#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    detail: String,
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The body is not a valid publish request.
    #[error(transparent)]
    Invalid(RequestError),
    /// The body could not be read.
    #[error("could not read the request body")]
    BodyUnreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body did not arrive within `--body-timeout`.
    #[error("the request body did not arrive within {timeout:?}")]
    BodyTimeout {
        /// The limit.
        timeout: std::time::Duration,
    },
    /// No valid bearer token.
    #[error("a valid bearer token is required: send Authorization: Bearer <token>")]
    Unauthorized,
    /// A JWT that does not verify or cannot be used.
    #[error("the token was refused")]
    InvalidToken(#[source] sse_core::jwt::TokenError),
    /// No JWKS keys could be fetched yet, so no JWT can be checked.
    #[error("the keys to verify tokens could not be fetched; retry shortly")]
    KeysUnavailable,
    /// A valid JWT that does not allow publishing to a topic of the request.
    #[error("the token does not allow publishing to topic {topic:?}; nothing was published")]
    Forbidden {
        /// The first topic refused.
        topic: String,
    },
    /// The body is larger than `--max-body`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The batch has more events than `--max-batch`.
    #[error(transparent)]
    BatchTooLarge(RequestError),
    /// The body is not declared as JSON.
    #[error("content type must be application/json, not {found}")]
    UnsupportedMediaType {
        /// The content type that was sent, or a note that none was.
        found: String,
    },
    /// No such route.
    #[error("no route for {path:?}; publish with POST /v1/publish")]
    NotFound {
        /// The path that was requested.
        path: String,
    },
    /// The route exists but not for this method.
    #[error("method {method} is not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method that was used.
        method: String,
        /// The method the route takes.
        allow: &'static str,
    },
    /// Redis is unreachable (nothing was written) or did not answer (the outcome is unknown,
    /// and the detail says so).
    #[error("{}", unavailable_detail(.0))]
    Unavailable(#[source] PublishError),
    /// The query string of a list request is not what it takes.
    #[error("{detail}")]
    BadQuery {
        /// What is wrong.
        detail: String,
    },
    /// The path names no valid topic.
    #[error("{topic:?} is not a valid topic: {reason}")]
    BadTopic {
        /// The path's topic part.
        topic: String,
        /// Why not.
        reason: String,
    },
    /// The `Idempotency-Key` header is not a valid key.
    #[error("invalid Idempotency-Key header")]
    BadIdempotencyKey(#[source] sse_core::schema::InvalidIdempotencyKey),
    /// The idempotency key was used for a different request: nothing was written.
    #[error(transparent)]
    KeyReused(PublishError),
    /// A batch across hash slots on a Redis Cluster: nothing was written.
    #[error(transparent)]
    CrossSlot(PublishError),
    /// Redis refused the write, or answered nonsense: nothing was written.
    #[error("the event was not published")]
    Internal(#[source] PublishError),
}

fn unavailable_detail(error: &PublishError) -> &'static str {
    match error {
        PublishError::NoReply(_) => {
            "the event may or may not have been published (retrying may publish it twice)"
        }
        PublishError::NotReplicated { .. } => {
            "the event was written but not confirmed by enough replicas (--min-replicas-ack): a failover may lose it, and retrying may publish it twice"
        }
        _ => "the event was not published",
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::BatchTooLarge { .. } => Self::BatchTooLarge(error),
            other => Self::Invalid(other),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        match error {
            PublishError::Unavailable(_)
            | PublishError::NoReply(_)
            | PublishError::NotReplicated { .. }
            | PublishError::Closed => Self::Unavailable(error),
            PublishError::CrossSlot { .. } => Self::CrossSlot(error),
            PublishError::KeyReused(_) => Self::KeyReused(error),
            PublishError::Refused(_) | PublishError::Config(_) | PublishError::BadReply { .. } => {
                Self::Internal(error)
            }
        }
    }
}

impl ApiError {
    /// The status code, and the short machine-readable code in the body.
    pub(crate) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid(error) if error.is_syntax() => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::BodyUnreadable(_) => (StatusCode::BAD_REQUEST, "body_unreadable"),
            Self::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::KeysUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable"),
            Self::BodyTooLarge { .. } | Self::BatchTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            Self::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::BadIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::BadTopic { .. } => (StatusCode::BAD_REQUEST, "invalid_topic"),
            Self::BadQuery { .. } => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::KeyReused(_) => (StatusCode::CONFLICT, "idempotency_key_reused"),
            Self::CrossSlot(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cross_slot_batch"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "publish_failed"),
        }
    }

    /// Why a caller was refused, for `sse_publish_auth_failures_total`; `None` for a
    /// refusal that is not about who is calling.
    pub(crate) fn auth_reason(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized => Some("no_token"),
            Self::InvalidToken(error) => Some(error.reason()),
            Self::Forbidden { .. } => Some("forbidden"),
            Self::KeysUnavailable => Some("no_keys"),
            _ => None,
        }
    }

    /// The HTTP response.
    pub(crate) fn into_response(self) -> http::Response<Full<Bytes>> {
        let (status, code) = self.status();
        let body = ErrorBody {
            error: code,
            detail: ErrorChain(&self).to_string(),
        };
        let mut response = super::json_response(status, &body);
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::InvalidToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::Unavailable(_) | Self::KeysUnavailable => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}
