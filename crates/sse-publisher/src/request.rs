//! The JSON a publisher posts, decoded into validated [`Event`]s before anything is written.
//!
//! `{"topic": "A", "data": <any JSON>, "event": "name"?}`, or a JSON array of such objects for
//! a batch. A JSON string `data` is published verbatim; any other JSON value as compact JSON.
//! Unknown fields are refused (a typo such as `"evnet"` must not silently publish an unnamed
//! event), and a batch with one bad element is refused whole, naming the element.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sse_core::{Event, EventName, EventNameError, Topic, TopicError};

/// One event as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    topic: String,
    data: Value,
    #[serde(default)]
    event: Option<String>,
}

/// A decoded request body: one event, or a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A JSON object: one event.
    One(Event),
    /// A JSON array: a batch, all or nothing.
    Batch(Vec<Event>),
}

/// Why a request body is not a publish request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// Not JSON, or JSON of the wrong shape (the message names the field and position).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A batch with no events.
    #[error("the batch is empty; send at least one event")]
    EmptyBatch,
    /// A batch with more events than allowed.
    #[error("the batch has {len} events; the limit is {max}")]
    BatchTooLarge {
        /// Events in the batch.
        len: usize,
        /// The limit (`--max-batch`).
        max: usize,
    },
    /// An invalid topic.
    #[error("{at}invalid topic: {source}")]
    Topic {
        /// Where in a batch, or empty.
        at: Position,
        /// What is wrong with it.
        source: TopicError,
    },
    /// An invalid event name.
    #[error("{at}invalid event name: {source}")]
    EventName {
        /// Where in a batch, or empty.
        at: Position,
        /// What is wrong with it.
        source: EventNameError,
    },
    /// An element of a batch that is not a publish request object.
    #[error("{at}{source}")]
    Element {
        /// Where in the batch.
        at: Position,
        /// What is wrong with it.
        source: serde_json::Error,
    },
}

impl RequestError {
    /// Whether the body is not JSON at all (as opposed to JSON of the wrong shape).
    pub(crate) fn is_syntax(&self) -> bool {
        use serde_json::error::Category;
        match self {
            Self::Json(error) | Self::Element { source: error, .. } => {
                matches!(
                    error.classify(),
                    Category::Syntax | Category::Eof | Category::Io
                )
            }
            _ => false,
        }
    }
}

/// Where an invalid event sits in a batch: shown as `event N: ` (counting from 0), or as
/// nothing for a single event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position(Option<usize>);

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(index) => write!(f, "event {index}: "),
            None => Ok(()),
        }
    }
}

/// Decodes and validates a request body. `max_batch` bounds a batch's length.
///
/// # Errors
/// [`RequestError`] saying what is wrong and, in a batch, with which element.
pub(crate) fn decode(body: &[u8], max_batch: usize) -> Result<Decoded, RequestError> {
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        // Straight into the request type, so a duplicate field is refused, not last-one-wins.
        let request = serde_json::from_slice(body)?;
        return Ok(Decoded::One(into_event(request, Position(None))?));
    }
    let elements: Vec<&RawValue> = serde_json::from_slice(body)?;
    if elements.is_empty() {
        return Err(RequestError::EmptyBatch);
    }
    if elements.len() > max_batch {
        return Err(RequestError::BatchTooLarge {
            len: elements.len(),
            max: max_batch,
        });
    }
    let events = elements
        .into_iter()
        .enumerate()
        .map(|(index, element)| {
            let at = Position(Some(index));
            let request = serde_json::from_str(element.get())
                .map_err(|source| RequestError::Element { at, source })?;
            into_event(request, at)
        })
        .collect::<Result<_, _>>()?;
    Ok(Decoded::Batch(events))
}

fn into_event(request: PublishRequest, at: Position) -> Result<Event, RequestError> {
    let topic =
        Topic::parse(&request.topic).map_err(|source| RequestError::Topic { at, source })?;
    let name = request
        .event
        .map(|name| EventName::parse(&name))
        .transpose()
        .map_err(|source| RequestError::EventName { at, source })?;
    let data = match request.data {
        Value::String(text) => text.into_bytes(),
        other => other.to_string().into_bytes(),
    };
    Ok(Event {
        topic,
        name,
        data: data.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Event {
        match decode(body.as_bytes(), 10).unwrap() {
            Decoded::One(event) => event,
            Decoded::Batch(_) => panic!("expected one event"),
        }
    }

    fn error(body: &str) -> String {
        decode(body.as_bytes(), 2).unwrap_err().to_string()
    }

    #[test]
    fn strings_are_verbatim_and_other_json_is_compact() {
        assert_eq!(&one(r#"{"topic":"a","data":"x\ny"}"#).data[..], b"x\ny");
        assert_eq!(
            &one(r#"{"topic":"a","data":{ "k" : [1, 2] }}"#).data[..],
            br#"{"k":[1,2]}"#
        );
        assert_eq!(&one(r#"{"topic":"a","data":null}"#).data[..], b"null");
        let named = one(r#"{"topic":"a","data":1,"event":"tick"}"#);
        assert_eq!(named.name.unwrap().as_str(), "tick");
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(error("{").contains("EOF"));
        assert!(error(r#"{"topic":"a"}"#).contains("missing field `data`"));
        assert!(error(r#"{"data":1}"#).contains("missing field `topic`"));
        assert!(error(r#"{"topic":"a","data":1,"evnet":"x"}"#).contains("unknown field `evnet`"));
        assert!(error(r#"{"topic":5,"data":1}"#).contains("invalid type"));
        assert!(error(r#"{"topic":"a b","data":1}"#).contains("invalid topic"));
        assert!(error(r#"{"topic":"a","data":1,"event":"x\ny"}"#).contains("invalid event name"));
        assert!(error("[]").contains("empty"));
        assert!(error("[1,2,3]").contains("the limit is 2"));
        assert!(error("42").contains("invalid type"));
        assert!(error(r#"{"topic":"a","data":1,"topic":"b"}"#).contains("duplicate field `topic`"));
    }

    #[test]
    fn a_bad_batch_element_is_named() {
        let message = error(r#"[{"topic":"a","data":1},{"topic":"{x}","data":1}]"#);
        assert!(message.starts_with("event 1: invalid topic"), "{message}");
        let message = error(r#"[{"topic":"a","data":1},"nope"]"#);
        assert!(message.starts_with("event 1: invalid type"), "{message}");
    }
}
