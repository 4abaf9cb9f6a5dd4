//! `GET /events`: from a request (topics, `Last-Event-ID`) to an open stream.
//!
//! Everything that can be refused is refused here, before the client joins the hub:
//! `topic` parameters (each valid, at most `--max-topics` distinct), the resume position (the
//! `Last-Event-ID` header, or the `lastEventId` query parameter for a first connection; the
//! header wins), the optional bounds `max_events` and `max_seconds`, the subscriber's token
//! when tokens are required (see [`crate::auth`]), and the node's stream capacity
//! (`--max-connections`).

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::Either;
use sse_core::{Cursor, Topic};

use crate::app::{App, Band, StreamSlot};
use crate::auth::Grant;
use crate::body::{Bounds, Setup, SseBody};
use crate::connection::ClientConnection;
use crate::error::RequestError;
use crate::outbox::Outbox;
use crate::response::Body;

/// A request for a stream, validated.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StreamRequest {
    /// Distinct topics, sorted.
    pub(crate) topics: Vec<Topic>,
    /// Where to resume, if the client said.
    pub(crate) resume: Option<Cursor>,
    /// When to end the stream, if the client asked for a bounded one.
    pub(crate) bounds: Bounds,
}

fn positive(name: &'static str, value: &str) -> Result<u64, RequestError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(RequestError::Bound(name)),
    }
}

/// Parses the query and headers of a `GET /events`.
pub(crate) fn parse(
    query: &str,
    headers: &HeaderMap,
    max_topics: usize,
) -> Result<StreamRequest, RequestError> {
    let mut topics = Vec::new();
    let mut query_id = None;
    let mut bounds = Bounds::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "topic" => {
                // Checked as they come, so a huge query cannot make a huge list first.
                topics.push(Topic::parse(&value)?);
                topics.sort();
                topics.dedup();
                if topics.len() > max_topics {
                    let count = topics.len();
                    return Err(RequestError::TooManyTopics {
                        count,
                        max: max_topics,
                    });
                }
            }
            "lastEventId" => query_id = Some(value.into_owned()),
            "max_events" => bounds.max_events = Some(positive("max_events", &value)?),
            "max_seconds" => {
                let seconds = positive("max_seconds", &value)?;
                bounds.max_duration = Some(std::time::Duration::from_secs(seconds));
            }
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(RequestError::NoTopic);
    }
    let header_id = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| RequestError::NotText("Last-Event-ID header"))
        })
        .transpose()?;
    let resume = match header_id
        .or(query_id.as_deref())
        .filter(|id| !id.is_empty())
    {
        Some(id) => Some(Cursor::decode(id, &topics)?),
        None => None,
    };
    Ok(StreamRequest {
        topics,
        resume,
        bounds,
    })
}

/// Opens the stream `request` asks for on `connection`. An HTTP/1.1 stream leaves hyper
/// (the connection's takeover) once its head is written.
pub(crate) async fn open<B>(
    app: &App,
    request: &Request<B>,
    connection: &ClientConnection,
) -> Result<Response<Body>, RequestError> {
    if app.drain.is_draining() {
        return Err(RequestError::Draining);
    }
    if let Some(admission) = &app.admission {
        admission.admit().map_err(RequestError::OverRate)?;
    }
    let query = request.uri().query().unwrap_or_default();
    let StreamRequest {
        topics,
        resume,
        bounds,
    } = parse(query, request.headers(), app.limits.max_topics)?;
    let grant = match &app.auth {
        Some(auth) => auth.authorize(request.headers(), query, &topics).await?,
        None => Grant::default(),
    };
    let address = app
        .client_limits
        .client_address(connection.peer, request.headers());
    let subject = grant.subject.as_deref();
    let client = app.client_limits.admit(address, subject)?;
    let mut slot = StreamSlot::take(&app.open_streams, app.limits.max_streams, &app.metrics)
        .ok_or(RequestError::OverCapacity {
            max: app.limits.max_streams,
        })?;
    slot.client = Some(client);
    slot.presence = app
        .presence
        .as_ref()
        .zip(subject)
        .and_then(|(presence, subject)| presence.enter(&topics, subject));
    let outbox = Arc::new(Outbox::new(
        app.limits.client_buffer,
        connection.abort.clone(),
        resume.is_some(),
    ));
    // The stream ends at its own `max_seconds` or at the node's age limit, whichever is first.
    let age = app.limits.max_age.map(Band::pick);
    let bounds = Bounds {
        max_duration: bounds.max_duration.into_iter().chain(age).min(),
        ..bounds
    };
    let (membership, starts) = app.hub.join(&topics, outbox.clone());
    tracing::debug!(topics = ?topics.iter().map(Topic::as_str).collect::<Vec<_>>(), resume = resume.is_some(), subject, "stream opened");
    let body = SseBody::new(Setup {
        topics,
        outbox,
        membership,
        starts,
        resume,
        bounds,
        reads: app.reads.clone(),
        metrics: app.metrics.clone(),
        slot,
        retry_ms: u64::try_from(app.limits.retry.pick().as_millis()).unwrap_or(u64::MAX),
        token_expiry: grant.expires_at.map(|expires_at| {
            expires_at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        }),
    });
    let taken_over = request.version() == Version::HTTP_11;
    let body = if taken_over {
        Either::Right(connection.takeover.stand_in(body))
    } else {
        Either::Left(body)
    };
    let mut response = Response::new(Body::Right(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    if taken_over {
        // What the stream's writer speaks; and the connection ends with the stream.
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sse_core::EventId;

    fn parse_query(query: &str) -> Result<StreamRequest, RequestError> {
        parse(query, &HeaderMap::new(), 3)
    }

    #[test]
    fn topics_are_validated_deduplicated_and_bounded() {
        let request = parse_query("topic=b&topic=a&topic=b&other=1").unwrap();
        let names: Vec<&str> = request.topics.iter().map(Topic::as_str).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(parse_query(""), Err(RequestError::NoTopic)));
        assert!(matches!(
            parse_query("topic=a%20b"),
            Err(RequestError::Topic(_))
        ));
        assert!(matches!(
            parse_query("topic=a&topic=b&topic=c&topic=d"),
            Err(RequestError::TooManyTopics { count: 4, max: 3 })
        ));
    }

    #[test]
    fn the_header_wins_over_the_query_parameter() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("5-0"));
        let request = parse("topic=a&lastEventId=3-0", &headers, 3).unwrap();
        let topic = Topic::parse("a").unwrap();
        assert_eq!(
            request.resume.unwrap().get(&topic),
            Some(EventId::new(5, 0))
        );
        let request = parse_query("topic=a&lastEventId=3-0").unwrap();
        assert_eq!(
            request.resume.unwrap().get(&topic),
            Some(EventId::new(3, 0))
        );
        assert!(matches!(
            parse_query("topic=a&lastEventId=junk"),
            Err(RequestError::LastEventId(_))
        ));
        assert_eq!(parse_query("topic=a&lastEventId=").unwrap().resume, None);
    }

    #[test]
    fn bounds_are_whole_positive_numbers() {
        let request = parse_query("topic=a&max_events=5&max_seconds=2").unwrap();
        assert_eq!(request.bounds.max_events, Some(5));
        assert_eq!(
            request.bounds.max_duration,
            Some(std::time::Duration::from_secs(2))
        );
        for bad in [
            "max_events=0",
            "max_events=x",
            "max_seconds=-1",
            "max_seconds=1.5",
        ] {
            let error = parse_query(&format!("topic=a&{bad}")).unwrap_err();
            assert!(matches!(error, RequestError::Bound(_)), "{bad}: {error}");
        }
    }
}
