//! Control events: what the gateway itself tells a client, in the event namespace reserved
//! for it (see [`crate::event::RESERVED_EVENT_PREFIX`]), so no publisher can forge one.
//!
//! # `sse.truncated`
//!
//! Sent before the replay of a topic when the client's resume position cannot be continued
//! exactly, followed by every event of that topic still retained after the position:
//!
//! ```text
//! event: sse.truncated
//! data: {"topic":"orders","reason":"trimmed","from":"1700000000000-0"}
//! ```
//!
//! - `reason: "trimmed"`: events after `from` were already trimmed from the history
//!   (retention), so some are missing;
//! - `reason: "unknown-position"`: the topic's history never held `from` (Redis lost its data
//!   and the stream started over, the history expired after the topic was idle for
//!   `--retention-idle`, or the id was made up), so what follows is not known to continue
//!   from it.
//!
//! A live stream gets it too when a pub/sub outage outlasted the topic's retention (or Redis
//! lost data meanwhile): then `from` is the topic's position when the outage began, and the
//! events after it that the stream still holds follow.
//!
//! The control event carries no `id:`, so the client's last event id does not move.
//!
//! # `sse.token_expired`
//!
//! Sent when the token a stream was opened with expires; the stream ends right after it:
//!
//! ```text
//! event: sse.token_expired
//! data: {"reason":"token expired"}
//! ```
//!
//! A client fetches a fresh token and reconnects with its `Last-Event-ID` (an `EventSource`
//! cannot change its URL or headers: close it and open a new one), losing nothing. It carries
//! no `id:` either.

use crate::{EventId, EventName, Frame, Topic};

/// The event name of [`history_truncated`].
pub const TRUNCATED_EVENT: &str = "sse.truncated";

/// The event name of [`token_expired`].
pub const TOKEN_EXPIRED_EVENT: &str = "sse.token_expired";

/// Why a resume position cannot be continued exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// Events after the position were trimmed away.
    Trimmed,
    /// The history never held the position.
    UnknownPosition,
}

impl Truncation {
    /// The `reason` value in the control event's data.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trimmed => "trimmed",
            Self::UnknownPosition => "unknown-position",
        }
    }
}

/// The `sse.truncated` control event for `topic`, resumed from `from`.
pub fn history_truncated(topic: &Topic, reason: Truncation, from: EventId) -> Frame {
    // Topics and ids contain no character that needs escaping in a JSON string.
    let data = format!(
        r#"{{"topic":"{topic}","reason":"{}","from":"{from}"}}"#,
        reason.as_str()
    );
    let name = EventName::control(TRUNCATED_EVENT).expect("the control event name is valid");
    Frame::new(None, Some(&name), data.as_bytes()).expect("a frame without an id is valid")
}

/// The `sse.token_expired` control event.
pub fn token_expired() -> Frame {
    let name = EventName::control(TOKEN_EXPIRED_EVENT).expect("the control event name is valid");
    Frame::new(None, Some(&name), br#"{"reason":"token expired"}"#)
        .expect("a frame without an id is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_event_is_documented_json_without_an_id() {
        let frame = history_truncated(
            &Topic::parse("orders").unwrap(),
            Truncation::Trimmed,
            EventId::new(1_700_000_000_000, 0),
        );
        assert_eq!(
            &frame.message()[..],
            b"event: sse.truncated\ndata: {\"topic\":\"orders\",\"reason\":\"trimmed\",\"from\":\"1700000000000-0\"}\n\n"
        );
    }
}
