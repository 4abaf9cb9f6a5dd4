//! Publishing exactly once: an idempotency key, and the record of what a key published.
//!
//! A publish whose reply was lost may or may not have been written; retried with the same
//! key, it is written once. The check and the append are one atomic call (`publish.lua`): the
//! call first reads the key's record, a hash at `sse:{<topic>}:idempotency:<key>` (the first
//! event's topic as hash tag, so on a Redis Cluster it lives in the slot of the events it
//! records), and only appends when the record does not already hold that event. The record
//! keeps, for a request of `count` events, the count and per event its position's digest of
//! topic, name and data and the id it got; it expires `window` after the first append.

use std::time::Duration;

use crate::Topic;

/// Longest key accepted, in bytes (what payment APIs that take such keys accept too).
pub const MAX_KEY_LEN: usize = 255;

/// An `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters (`!` to `~`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a text is not an [`IdempotencyKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdempotencyKey {
    /// Nothing.
    #[error("the idempotency key is empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("the idempotency key is {0} bytes long; at most {MAX_KEY_LEN} are allowed")]
    TooLong(usize),
    /// A space, a control character or a byte that is not ASCII.
    #[error(
        "the idempotency key may hold only visible ASCII characters (! to ~), not spaces, control characters or other bytes"
    )]
    NotVisibleAscii,
}

impl IdempotencyKey {
    /// Checks `bytes` (a header value, say) as a key.
    ///
    /// # Errors
    /// [`InvalidIdempotencyKey`] says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        if bytes.is_empty() {
            return Err(InvalidIdempotencyKey::Empty);
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong(bytes.len()));
        }
        if !bytes.iter().all(|b| (b'!'..=b'~').contains(b)) {
            return Err(InvalidIdempotencyKey::NotVisibleAscii);
        }
        // Every byte is ASCII.
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where and for how long a request's publishes are recorded under its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `sse:{<topic>}:idempotency:<key>`, the topic being the request's first event's.
    pub key: String,
    /// How long a repeat of the request is recognised, from its first append.
    pub window: Duration,
}

impl Record {
    /// The record of `key` for a request whose first event is on `topic`.
    pub fn new(topic: &Topic, key: &IdempotencyKey, window: Duration) -> Self {
        Self {
            key: format!("sse:{{{topic}}}:idempotency:{key}"),
            window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_to_255_visible_ascii_characters() {
        assert_eq!(
            IdempotencyKey::parse(b"order-42/retry:{1}").map(|k| k.to_string()),
            Ok("order-42/retry:{1}".to_owned())
        );
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert_eq!(
            IdempotencyKey::parse(b""),
            Err(InvalidIdempotencyKey::Empty)
        );
        assert_eq!(
            IdempotencyKey::parse(&[b'k'; 256]),
            Err(InvalidIdempotencyKey::TooLong(256))
        );
        for bad in [&b"a b"[..], b"tab\t", b"caf\xc3\xa9", b"nul\0", b"del\x7f"] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidIdempotencyKey::NotVisibleAscii),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_record_shares_the_first_topics_hash_tag() {
        let key = IdempotencyKey::parse(b"k1").unwrap();
        let record = Record::new(
            &Topic::parse("orders").unwrap(),
            &key,
            Duration::from_secs(300),
        );
        assert_eq!(record.key, "sse:{orders}:idempotency:k1");
    }
}
