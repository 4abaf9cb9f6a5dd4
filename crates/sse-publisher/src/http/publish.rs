//! `POST /v1/publish`: content type, auth, a bounded body, decoding, then one atomic publish.
//!
//! Checks run cheapest first and all before Redis is touched, so a refused request has
//! written nothing.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::App;
use super::error::ApiError;
use crate::request::{self, Decoded};

/// Handles one publish request.
pub(crate) async fn handle(
    app: &App,
    request: Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, ApiError> {
    let caller = app.auth.check(request.headers()).await?;
    require_json(request.headers())?;
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
        Decoded::One(event) => caller.may_publish([event])?,
        Decoded::Batch(events) => caller.may_publish(events)?,
    }
    let response = match decoded {
        Decoded::One(event) => {
            let id = app.publisher.publish(&event).await?;
            app.metrics.events_published.inc();
            json!({ "id": id.to_string(), "topic": event.topic.as_str() })
        }
        Decoded::Batch(events) => {
            let ids = app.publisher.publish_batch(&events).await?;
            app.metrics.events_published.inc_by(ids.len() as u64);
            json!({ "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>() })
        }
    };
    Ok(super::json_response(StatusCode::CREATED, &response))
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
