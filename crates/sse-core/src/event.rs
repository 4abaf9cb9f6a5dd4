//! The event model: what a publisher sends ([`Event`]), what it may be called ([`EventName`]),
//! and where it sits in its topic's history ([`EventId`]).
//!
//! An event's id is the id Redis assigns when the publish function appends it to the topic's
//! stream (`<milliseconds>-<sequence>`), so ids are strictly increasing per topic and double
//! as the publish timestamp the gateway measures delivery latency from.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::Topic;

/// The longest event name accepted, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;

/// Event names starting with this prefix are reserved for the gateway's own control events
/// (for example "history truncated"), so that no publisher can forge one.
pub const RESERVED_EVENT_PREFIX: &str = "sse.";

/// An event as a publisher hands it over: not yet in Redis, so without an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The topic the event is published on.
    pub topic: Topic,
    /// The SSE `event:` field; `None` is the browser's default `message` event.
    pub name: Option<EventName>,
    /// The payload, sent as `data:` lines. Any bytes; line breaks split it into lines.
    pub data: Bytes,
}

impl Event {
    /// An unnamed (`message`) event.
    pub fn new(topic: Topic, data: impl Into<Bytes>) -> Self {
        Self {
            topic,
            name: None,
            data: data.into(),
        }
    }

    /// The same event with an `event:` name.
    #[must_use]
    pub fn named(mut self, name: EventName) -> Self {
        self.name = Some(name);
        self
    }
}

/// A validated SSE event name (the `event:` field).
///
/// Rule: 1 to 128 bytes, no CR, LF or NUL (they would break or blur the framing), and not
/// starting with [`RESERVED_EVENT_PREFIX`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventName(String);

/// Why a string is not an event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventNameError {
    /// The name is empty; leave it out instead for a default `message` event.
    #[error("event name is empty; omit it for a default \"message\" event")]
    Empty,
    /// The name is too long.
    #[error("event name is {len} bytes long; the limit is {MAX_EVENT_NAME_LEN}")]
    TooLong {
        /// The length that was given.
        len: usize,
    },
    /// The name contains CR, LF or NUL.
    #[error("event name contains a line break or NUL, which would break SSE framing")]
    LineBreak,
    /// The name uses the prefix reserved for control events.
    #[error("event names starting with {RESERVED_EVENT_PREFIX:?} are reserved for the gateway")]
    Reserved,
}

impl EventName {
    /// Validates `name` as an event name.
    ///
    /// # Errors
    /// [`EventNameError`] naming the rule that `name` breaks.
    pub fn parse(name: &str) -> Result<Self, EventNameError> {
        Self::check(name)?;
        if name.starts_with(RESERVED_EVENT_PREFIX) {
            return Err(EventNameError::Reserved);
        }
        Ok(Self(name.to_owned()))
    }

    /// A name in the reserved namespace, for the gateway's own control events.
    ///
    /// # Errors
    /// [`EventNameError`] if `name` breaks any rule but the reserved prefix.
    pub fn control(name: &str) -> Result<Self, EventNameError> {
        Self::check(name)?;
        Ok(Self(name.to_owned()))
    }

    fn check(name: &str) -> Result<(), EventNameError> {
        if name.is_empty() {
            return Err(EventNameError::Empty);
        }
        if name.len() > MAX_EVENT_NAME_LEN {
            return Err(EventNameError::TooLong { len: name.len() });
        }
        if name.contains(['\r', '\n', '\0']) {
            return Err(EventNameError::LineBreak);
        }
        Ok(())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EventName {
    type Err = EventNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Redis stream id, `<milliseconds>-<sequence>`: an event's place in its topic's history.
///
/// Ordered as Redis orders them. `0-0` is the position before any event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// Milliseconds since the Unix epoch, from the Redis server's clock.
    pub ms: u64,
    /// Sequence number within that millisecond.
    pub seq: u64,
}

/// Why a string is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a stream id; expected <milliseconds>-<sequence>, e.g. 1700000000000-0")]
pub struct EventIdError {
    /// The rejected input (cut to 64 bytes so an error never carries unbounded input).
    pub input: String,
}

impl EventId {
    /// The position before every event.
    pub const ZERO: Self = Self { ms: 0, seq: 0 };

    /// An id from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// Parses `<ms>-<seq>`: ASCII digits only, both parts present, each fitting in a `u64`.
    ///
    /// # Errors
    /// [`EventIdError`] for anything else.
    pub fn parse(s: &str) -> Result<Self, EventIdError> {
        let error = || EventIdError {
            input: s.chars().take(64).collect(),
        };
        let (ms, seq) = s.split_once('-').ok_or_else(error)?;
        Ok(Self {
            ms: parse_digits(ms).ok_or_else(error)?,
            seq: parse_digits(seq).ok_or_else(error)?,
        })
    }
}

/// `u64::from_str` also accepts a leading `+`; a stream id does not.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for EventId {
    type Err = EventIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_strictly_and_order_like_redis() {
        let a = EventId::parse("1700000000000-0").unwrap();
        let b = EventId::parse("1700000000000-12").unwrap();
        let c = EventId::parse("1700000000001-0").unwrap();
        assert!(EventId::ZERO < a && a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-12");
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "+1-0",
            "1-+0",
            "a-b",
            "1-2-3",
            "18446744073709551616-0",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_names_keep_framing_intact() {
        assert_eq!(
            EventName::parse("order.created").unwrap().as_str(),
            "order.created"
        );
        assert_eq!(EventName::parse(""), Err(EventNameError::Empty));
        assert_eq!(EventName::parse("a\nb"), Err(EventNameError::LineBreak));
        assert_eq!(EventName::parse("a\rb"), Err(EventNameError::LineBreak));
        assert_eq!(EventName::parse("a\0b"), Err(EventNameError::LineBreak));
        assert_eq!(
            EventName::parse("sse.truncated"),
            Err(EventNameError::Reserved)
        );
        assert!(EventName::control("sse.truncated").is_ok());
        assert_eq!(
            EventName::parse(&"e".repeat(129)),
            Err(EventNameError::TooLong { len: 129 })
        );
    }
}
