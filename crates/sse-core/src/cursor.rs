//! Cursors: the resume position a client carries as its SSE `id:` and sends back as
//! `Last-Event-ID`, one [`EventId`] per topic of its connection.
//!
//! # Format
//!
//! - **One topic**: the topic's stream id itself, e.g. `1700000000000-5`. Anyone can read it,
//!   and it is exactly what `XRANGE` takes.
//! - **Several topics**: `<check>.<base>.<p1>.<p2>…`, all lower-case base-36 numbers, where
//!   `check` is a checksum of the topic set (so a cursor is never applied to topics it was not
//!   made for), `base` is the largest millisecond part among the positions, and each `p` is one
//!   topic's position in topic-name order: `base - ms`, followed by `-<seq>` when the sequence
//!   part is not zero. Three busy topics cost about 25 bytes.
//!
//! Both forms use only ASCII letters, digits, `-` and `.`: safe in a header and in a URL query
//! without escaping. Decoding is strict, bounded ([`MAX_ENCODED_LEN`]) and never panics: any
//! other input is a [`CursorError`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{EventId, Topic};

/// The longest encoded cursor accepted, in bytes.
pub const MAX_ENCODED_LEN: usize = 4096;

/// A resume position for every topic of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    positions: BTreeMap<Topic, EventId>,
}

/// Why a `Last-Event-ID` cannot be used as a cursor for a connection's topics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Longer than [`MAX_ENCODED_LEN`].
    #[error("last event id is {len} bytes long; the limit is {MAX_ENCODED_LEN}")]
    TooLong {
        /// The length that was given.
        len: usize,
    },
    /// Not a cursor in either form.
    #[error("last event id {input:?} is not a valid position: {reason}")]
    Malformed {
        /// The rejected input, cut to 64 bytes.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A well-formed cursor, made for a different set of topics.
    #[error("last event id was issued for a different set of topics than this request's")]
    OtherTopics,
}

impl Cursor {
    /// A cursor from positions; a topic given twice keeps its later position.
    pub fn new(positions: impl IntoIterator<Item = (Topic, EventId)>) -> Self {
        Self {
            positions: positions.into_iter().collect(),
        }
    }

    /// Every topic with its position, in topic-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Topic, EventId)> {
        self.positions.iter().map(|(topic, id)| (topic, *id))
    }

    /// The position of `topic`, if the cursor covers it.
    pub fn get(&self, topic: &Topic) -> Option<EventId> {
        self.positions.get(topic).copied()
    }

    /// Moves `topic` to `id` if that is ahead of its current position, and reports whether it
    /// moved. A topic the cursor does not cover is left alone.
    pub fn advance(&mut self, topic: &Topic, id: EventId) -> bool {
        match self.positions.get_mut(topic) {
            Some(position) if *position < id => {
                *position = id;
                true
            }
            _ => false,
        }
    }

    /// Sets `topic`'s position to `id`, forwards or backwards (a resume that starts over);
    /// a topic the cursor does not cover is left alone.
    pub fn set(&mut self, topic: &Topic, id: EventId) {
        if let Some(position) = self.positions.get_mut(topic) {
            *position = id;
        }
    }

    /// The SSE id form described in the module docs.
    pub fn encode(&self) -> String {
        let mut positions = self.positions.values();
        let (Some(first), None) = (positions.next(), positions.next()) else {
            return self.encode_multi();
        };
        first.to_string()
    }

    fn encode_multi(&self) -> String {
        let base = self.positions.values().map(|id| id.ms).max().unwrap_or(0);
        let mut out = String::with_capacity(16 + 4 * self.positions.len());
        push_base36(&mut out, u64::from(checksum(self.positions.keys())));
        out.push('.');
        push_base36(&mut out, base);
        for id in self.positions.values() {
            out.push('.');
            push_base36(&mut out, base - id.ms);
            if id.seq != 0 {
                out.push('-');
                push_base36(&mut out, id.seq);
            }
        }
        out
    }

    /// Decodes `input` as the position of every topic in `topics` (duplicates count once).
    ///
    /// # Errors
    /// [`CursorError`] when `input` is too long, malformed, or made for other topics.
    pub fn decode(input: &str, topics: &[Topic]) -> Result<Self, CursorError> {
        if input.len() > MAX_ENCODED_LEN {
            return Err(CursorError::TooLong { len: input.len() });
        }
        let mut topics: Vec<&Topic> = topics.iter().collect();
        topics.sort();
        topics.dedup();
        let malformed = |reason| CursorError::Malformed {
            input: input.chars().take(64).collect(),
            reason,
        };
        if let [topic] = topics[..] {
            let id = EventId::parse(input)
                .map_err(|_| malformed("expected a stream id such as 1700000000000-0"))?;
            return Ok(Self::new([(topic.clone(), id)]));
        }
        if EventId::parse(input).is_ok() {
            return Err(malformed(
                "a stream id resumes a single topic; several topics need the id this stream sent",
            ));
        }
        let mut parts = input.split('.');
        let check = parse_base36(parts.next()).ok_or_else(|| malformed("bad checksum"))?;
        let base = parse_base36(parts.next()).ok_or_else(|| malformed("bad base time"))?;
        let parts: Vec<&str> = parts.collect();
        if parts.len() != topics.len() || check != u64::from(checksum(topics.iter().copied())) {
            return Err(CursorError::OtherTopics);
        }
        let mut positions = BTreeMap::new();
        for (topic, part) in topics.into_iter().zip(parts) {
            let (delta, seq) = match part.split_once('-') {
                Some((delta, seq)) => (delta, parse_base36(Some(seq))),
                None => (part, Some(0)),
            };
            let ms = parse_base36(Some(delta))
                .and_then(|delta| base.checked_sub(delta))
                .ok_or_else(|| malformed("bad position"))?;
            let seq = seq.ok_or_else(|| malformed("bad sequence number"))?;
            positions.insert(topic.clone(), EventId::new(ms, seq));
        }
        Ok(Self { positions })
    }
}

/// FNV-1a over the topic names, each followed by a newline (which no topic contains).
fn checksum<'a>(topics: impl Iterator<Item = &'a Topic>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for topic in topics {
        for byte in topic.as_str().bytes().chain([b'\n']) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

fn push_base36(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 13]; // u64::MAX has 13 base-36 digits
    let mut len = 0;
    loop {
        let digit = (n % 36) as u8;
        digits[len] = if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        };
        len += 1;
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for &digit in digits[..len].iter().rev() {
        let _ = out.write_char(char::from(digit));
    }
}

/// Lower-case base 36, no sign, no empty string, no overflow.
fn parse_base36(part: Option<&str>) -> Option<u64> {
    let part = part?;
    if part.is_empty() {
        return None;
    }
    part.bytes().try_fold(0u64, |n, byte| {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'z' => byte - b'a' + 10,
            _ => return None,
        };
        n.checked_mul(36)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topics(names: &[&str]) -> Vec<Topic> {
        names.iter().map(|n| Topic::parse(n).unwrap()).collect()
    }

    #[test]
    fn one_topic_is_its_stream_id() {
        let t = topics(&["orders"]);
        let cursor = Cursor::new([(t[0].clone(), EventId::new(1_700_000_000_000, 5))]);
        assert_eq!(cursor.encode(), "1700000000000-5");
        assert_eq!(Cursor::decode("1700000000000-5", &t).unwrap(), cursor);
        assert!(matches!(
            Cursor::decode("abc", &t),
            Err(CursorError::Malformed { .. })
        ));
    }

    #[test]
    fn several_topics_are_compact_and_order_free() {
        let t = topics(&["b", "a", "c"]);
        let cursor = Cursor::new([
            (t[0].clone(), EventId::new(1_700_000_000_050, 0)),
            (t[1].clone(), EventId::new(1_700_000_000_000, 3)),
            (t[2].clone(), EventId::ZERO),
        ]);
        let encoded = cursor.encode();
        assert!(encoded.len() < 40, "{encoded}");
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        );
        let reordered = topics(&["c", "a", "b", "a"]);
        assert_eq!(Cursor::decode(&encoded, &reordered).unwrap(), cursor);
    }

    #[test]
    fn a_cursor_for_other_topics_is_refused() {
        let ab = topics(&["a", "b"]);
        let cursor = Cursor::new(ab.iter().map(|t| (t.clone(), EventId::new(1, 0))));
        let encoded = cursor.encode();
        assert_eq!(
            Cursor::decode(&encoded, &topics(&["a", "c"])),
            Err(CursorError::OtherTopics)
        );
        assert_eq!(
            Cursor::decode(&encoded, &topics(&["a", "b", "c"])),
            Err(CursorError::OtherTopics)
        );
    }

    #[test]
    fn advance_only_moves_forward() {
        let t = topics(&["a"]);
        let mut cursor = Cursor::new([(t[0].clone(), EventId::new(5, 0))]);
        assert!(!cursor.advance(&t[0], EventId::new(4, 0)));
        assert!(cursor.advance(&t[0], EventId::new(5, 1)));
        assert_eq!(cursor.get(&t[0]), Some(EventId::new(5, 1)));
        assert!(!cursor.advance(&Topic::parse("zzz").unwrap(), EventId::new(9, 0)));
        cursor.set(&t[0], EventId::ZERO);
        assert_eq!(cursor.get(&t[0]), Some(EventId::ZERO));
    }

    #[test]
    fn too_long_input_is_refused_before_parsing() {
        let long = "0.".repeat(MAX_ENCODED_LEN);
        assert!(matches!(
            Cursor::decode(&long, &topics(&["a", "b"])),
            Err(CursorError::TooLong { .. })
        ));
    }

    fn topic_strategy() -> impl Strategy<Value = Topic> {
        "[a-z0-9_:/.-]{1,20}".prop_map(|name| Topic::parse(&name).unwrap())
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(
            positions in prop::collection::btree_map(topic_strategy(), (any::<u64>(), any::<u64>()), 1..8)
        ) {
            let cursor = Cursor::new(positions.into_iter().map(|(t, (ms, seq))| (t, EventId::new(ms, seq))));
            let topics: Vec<Topic> = cursor.iter().map(|(t, _)| t.clone()).collect();
            prop_assert_eq!(Cursor::decode(&cursor.encode(), &topics), Ok(cursor));
        }

        #[test]
        fn decoding_any_string_never_panics(input in ".{0,200}", n in 1usize..5) {
            let topics: Vec<Topic> = (0..n).map(|i| Topic::parse(&format!("t{i}")).unwrap()).collect();
            let _ = Cursor::decode(&input, &topics);
        }

        #[test]
        fn decoding_cursor_shaped_strings_never_panics(input in "[0-9a-z.-]{0,80}") {
            let topics = vec![Topic::parse("a").unwrap(), Topic::parse("b").unwrap()];
            let _ = Cursor::decode(&input, &topics);
        }
    }
}
