//! `POST /v1/publish`: content type, auth, a bounded body, decoding, then one atomic publish.
//!
//! Checks run cheapest first and all before Redis is touched, so a refused request has
//! written nothing. With an `Idempotency-Key` header the publish happens at most once per key
//! (see `sse_core::schema::idempotency`): `201` when written, `200` with
//! `Idempotent-Replayed: true` and the first ids when a request with that key and the same
//! events wrote them already, `409` when the key was used for other events.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::json;

use sse_core::schema::IdempotencyKey;

use super::App;
use super::error::ApiError;
use crate::Outcome;
use crate::request::{self, Decoded};

/// The request header that makes a publish happen at most once per key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header that says a request was answered from an earlier one with its key.
const REPLAYED: &str = "idempotent-replayed";

/// Handles one publish request.
pub(crate) async fn handle(
    app: &App,
    request: Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, ApiError> {
    let caller = app.auth.check(request.headers()).await?;
    require_json(request.headers())?;
    let key = idempotency_key(request.headers())?;
    let body = tokio::time::timeout(
        app.limits.body_timeout,
        read_body(request, app.limits.max_body),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout {
        timeout: app.limits.body_timeout,
    })??;
    let decoded = request::decode(&body, app.limits.max_batch)?;
    match &decoded {
        Decoded::One(event) => caller.may_publish([&event.topic])?,
        Decoded::Batch(events) => caller.may_publish(events.iter().map(|e| &e.topic))?,
    }
    let publisher = &app.publisher;
    let (ids, outcome) = match (&decoded, &key) {
        (Decoded::One(event), None) => (vec![publisher.publish(event).await?], Outcome::Written),
        (Decoded::One(event), Some(key)) => {
            let (id, outcome) = publisher.publish_once(event, key).await?;
            (vec![id], outcome)
        }
        (Decoded::Batch(events), None) => {
            (publisher.publish_batch(events).await?, Outcome::Written)
        }
        (Decoded::Batch(events), Some(key)) => publisher.publish_batch_once(events, key).await?,
    };
    let response = match &decoded {
        Decoded::One(event) => json!({ "id": ids[0].to_string(), "topic": event.topic.as_str() }),
        Decoded::Batch(_) => {
            json!({ "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>() })
        }
    };
    match outcome {
        Outcome::Written => {
            app.metrics.events_published.inc_by(ids.len() as u64);
            Ok(super::json_response(StatusCode::CREATED, &response))
        }
        Outcome::Replayed => {
            app.metrics.idempotent_replays.inc();
            let mut response = super::json_response(StatusCode::OK, &response);
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

/// The request's `Idempotency-Key`, if it has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| IdempotencyKey::parse(value.as_bytes()).map_err(ApiError::BadIdempotencyKey))
        .transpose()
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let is_json = found.as_deref().is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            found: found.map_or_else(
                || "none (no Content-Type header)".to_owned(),
                |value| format!("{:?}", value.chars().take(100).collect::<String>()),
            ),
        })
    }
}

/// Reads the body, refusing it as soon as it is known to exceed `limit` bytes: at once from
/// `Content-Length`, or while reading a chunked body.
async fn read_body(request: Request<Incoming>, limit: u64) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(request.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(error) => Err(ApiError::BodyUnreadable(error)),
    }
}
