//! `GET /v1/topics/<topic>`: who listens to a topic across the fleet, and what its history
//! holds. Authorized like publishing to the topic; a topic nobody listens to and nobody
//! published to answers `200` with zeros (a topic exists when someone listens).

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use sse_core::Topic;

use super::App;
use super::error::ApiError;

/// The route's prefix; the rest of the path is the topic.
pub(crate) const PREFIX: &str = "/v1/topics/";

/// Handles one topic-info request for `path` (which starts with [`PREFIX`]).
pub(crate) async fn handle(
    app: &App,
    request: &Request<Incoming>,
    path: &str,
) -> Result<http::Response<Full<Bytes>>, ApiError> {
    let caller = app.auth.check(request.headers()).await?;
    let name = path.strip_prefix(PREFIX).unwrap_or_default();
    let topic = Topic::parse(name).map_err(|error| ApiError::BadTopic {
        topic: name.chars().take(200).collect(),
        reason: error.to_string(),
    })?;
    caller.may_publish([&topic])?;
    let info = app.publisher.topic_info(&topic).await?;
    let body = json!({
        "topic": topic.as_str(),
        "subscribers": info.subscribers,
        "nodes": info.nodes,
        "retained": info.retained,
        "first_id": info.first_id.map(|id| id.to_string()),
        "last_id": info.last_id.map(|id| id.to_string()),
    });
    Ok(super::json_response(StatusCode::OK, &body))
}
