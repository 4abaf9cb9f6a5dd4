//! What Redis holds and announces for each event, and how readers decode it.
//!
//! - **Stream entry** (`XADD sse:{topic}:stream`): field `data` (the payload, any bytes) and,
//!   for named events only, field `event`. The entry id is the event id.
//! - **Live message** (`PUBLISH sse:{topic}:live`): `<id>\n<event>\n<data>`, where `<event>`
//!   is empty for unnamed events. Neither id nor event name can contain a line break, so the
//!   first two line feeds delimit them and the rest, line breaks and all, is the payload.
//!
//! Anyone can write to Redis, so decoding validates everything and never panics: a malformed
//! message or entry is a [`PayloadError`], for the reader to count and skip.

use bytes::Bytes;

use crate::{EventId, EventName, EventNameError};

/// An event as stored in and announced by Redis: with its id, without its topic (which the
/// stream key or channel name carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The stream id Redis assigned.
    pub id: EventId,
    /// The `event:` name, if any.
    pub name: Option<EventName>,
    /// The payload.
    pub data: Bytes,
}

/// Why bytes from Redis are not a published event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The live message has fewer than two line feeds.
    #[error("live message is not <id>\\n<event>\\n<data>")]
    Truncated,
    /// The id is not a stream id.
    #[error("live message or entry has an invalid id")]
    BadId,
    /// The event name breaks the event name rule.
    #[error("invalid event name")]
    BadName(#[source] EventNameError),
    /// The stream entry has no `data` field.
    #[error("stream entry has no data field")]
    NoData,
}

impl PublishedEvent {
    /// Encodes the live message, exactly as the publish function does.
    pub fn to_live_message(&self) -> Vec<u8> {
        let id = self.id.to_string();
        let name = self.name.as_ref().map_or("", EventName::as_str);
        let mut out = Vec::with_capacity(id.len() + name.len() + self.data.len() + 2);
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&self.data);
        out
    }

    /// Decodes a live message. The payload is a slice of `message`, not a copy.
    ///
    /// # Errors
    /// [`PayloadError`] if `message` is not `<id>\n<event>\n<data>` with a valid id and name.
    pub fn from_live_message(message: Bytes) -> Result<Self, PayloadError> {
        let mut newlines = line_feeds(&message);
        let (Some(id_end), Some(name_end)) = (newlines.next(), newlines.next()) else {
            return Err(PayloadError::Truncated);
        };
        let id = parse_id(&message[..id_end])?;
        let name = parse_name(&message[id_end + 1..name_end])?;
        Ok(Self {
            id,
            name,
            data: message.slice(name_end + 1..),
        })
    }

    /// Decodes a stream entry from its id and its field/value pairs. Unknown fields are
    /// ignored, so later versions may add some.
    ///
    /// # Errors
    /// [`PayloadError`] if the id or event name is invalid or `data` is missing.
    pub fn from_entry<'a>(
        id: &str,
        fields: impl IntoIterator<Item = (&'a [u8], Bytes)>,
    ) -> Result<Self, PayloadError> {
        let id = parse_id(id.as_bytes())?;
        let (mut name, mut data) = (None, None);
        for (field, value) in fields {
            match field {
                b"data" => data = Some(value),
                b"event" => name = parse_name(&value)?,
                _ => {}
            }
        }
        Ok(Self {
            id,
            name,
            data: data.ok_or(PayloadError::NoData)?,
        })
    }
}

fn line_feeds(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(at, _)| at)
}

fn parse_id(bytes: &[u8]) -> Result<EventId, PayloadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::BadId)?;
    EventId::parse(text).map_err(|_| PayloadError::BadId)
}

fn parse_name(bytes: &[u8]) -> Result<Option<EventName>, PayloadError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| PayloadError::BadName(EventNameError::LineBreak))?;
    EventName::parse(text)
        .map(Some)
        .map_err(PayloadError::BadName)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn live_messages_round_trip_with_line_breaks_in_the_payload() {
        let event = PublishedEvent {
            id: EventId::new(1_700_000_000_000, 7),
            name: Some(EventName::parse("order.created").unwrap()),
            data: Bytes::from_static(b"line 1\nline 2\r\n"),
        };
        let message = event.to_live_message();
        assert_eq!(
            message,
            b"1700000000000-7\norder.created\nline 1\nline 2\r\n"
        );
        assert_eq!(PublishedEvent::from_live_message(message.into()), Ok(event));
    }

    #[test]
    fn unnamed_events_have_an_empty_name_line() {
        let event = PublishedEvent::from_live_message(Bytes::from_static(b"1-0\n\n")).unwrap();
        assert_eq!(
            (event.id, event.name, &event.data[..]),
            (EventId::new(1, 0), None, &b""[..])
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: [(&[u8], PayloadError); 4] = [
            (b"1-0", PayloadError::Truncated),
            (b"1-0\nname", PayloadError::Truncated),
            (b"x\n\ndata", PayloadError::BadId),
            (
                b"1-0\nsse.truncated\ndata",
                PayloadError::BadName(EventNameError::Reserved),
            ),
        ];
        for (message, error) in cases {
            assert_eq!(
                PublishedEvent::from_live_message(Bytes::from_static(message)),
                Err(error)
            );
        }
    }

    #[test]
    fn stream_entries_decode() {
        let fields = [
            (&b"data"[..], Bytes::from_static(b"x")),
            (&b"event"[..], Bytes::from_static(b"e")),
        ];
        let event = PublishedEvent::from_entry("5-1", fields).unwrap();
        assert_eq!(event.name.unwrap().as_str(), "e");
        assert_eq!(
            PublishedEvent::from_entry("5-1", []),
            Err(PayloadError::NoData)
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = PublishedEvent::from_live_message(bytes.into());
        }
    }
}
