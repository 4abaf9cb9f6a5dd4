//! `GET /v1/topics/<topic>`: who listens to a topic across the fleet, and what its history
//! holds. Authorized like publishing to the topic; a topic nobody listens to and nobody
//! published to answers `200` with zeros (a topic exists when someone listens).
//!
//! With gateways running `--presence`, it also lists the subjects listening (`present`,
//! sorted, `present_limit` at a time, default 100, at most 1000; `present_next` is the
//! `present_after` of the next page, `null` on the last) and counts them (`present_count`).
//!
//! `GET /v1/topics?prefix=<p>&limit=<n>`: the busiest topics over the fleet (those a JWT may
//! publish to, for a JWT), at most `limit` (default 20, at most 1000).

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
/// The list's path.
pub(crate) const LIST: &str = "/v1/topics";
/// Topics listed unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;
/// Subjects listed per page unless `present_limit` says otherwise.
const DEFAULT_PRESENT_LIMIT: usize = 100;

/// Handles one list request.
pub(crate) async fn list(
    app: &App,
    request: &Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, ApiError> {
    let caller = app.auth.check(request.headers()).await?;
    let (mut prefix, mut limit) = (String::new(), DEFAULT_LIMIT);
    let query = request.uri().query().unwrap_or_default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "prefix" => prefix = value.into_owned(),
            "limit" => limit = parse_limit("limit", &value)?,
            _ => {
                return Err(ApiError::BadQuery {
                    detail: format!("unknown query parameter {name:?}; use prefix and limit"),
                });
            }
        }
    }
    let topics = app.publisher.busiest_topics(&prefix, MAX_LIMIT).await?;
    let listed: Vec<_> = topics
        .iter()
        .filter(|(topic, _)| caller.may_publish([topic]).is_ok())
        .take(limit)
        .map(|(topic, subscribers)| json!({"topic": topic.as_str(), "subscribers": subscribers}))
        .collect();
    Ok(super::json_response(
        StatusCode::OK,
        &json!({ "topics": listed }),
    ))
}

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
    let (mut after, mut limit) = (None, DEFAULT_PRESENT_LIMIT);
    let query = request.uri().query().unwrap_or_default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "present_after" => after = Some(value.into_owned()),
            "present_limit" => limit = parse_limit("present_limit", &value)?,
            _ => {
                return Err(ApiError::BadQuery {
                    detail: format!(
                        "unknown query parameter {name:?}; use present_after and present_limit"
                    ),
                });
            }
        }
    }
    let info = app.publisher.topic_info(&topic).await?;
    let present = app
        .publisher
        .present(&topic, after.as_deref(), limit)
        .await?;
    let body = json!({
        "topic": topic.as_str(),
        "subscribers": info.subscribers,
        "nodes": info.nodes,
        "retained": info.retained,
        "first_id": info.first_id.map(|id| id.to_string()),
        "last_id": info.last_id.map(|id| id.to_string()),
        "present": present.subjects,
        "present_count": present.count,
        "present_next": present.next,
    });
    Ok(super::json_response(StatusCode::OK, &body))
}

/// A `limit`-like parameter `name`: a whole number from 1 to [`MAX_LIMIT`].
fn parse_limit(name: &str, value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .ok_or_else(|| ApiError::BadQuery {
            detail: format!("{name} must be a whole number from 1 to {MAX_LIMIT}, not {value:?}"),
        })
}
