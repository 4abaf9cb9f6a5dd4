//! Topic names: the one thing every key, channel, URL and cursor is built from.
//!
//! A topic travels in a URL query (`/events?topic=orders`), inside a Redis Cluster hash tag
//! (`sse:{orders}:stream`) and in JWT claims, so the rule is strict enough to be safe in all
//! three without escaping: **1 to 128 bytes of ASCII letters, digits and `_ - . : /`**.
//! Braces (which would break the hash tag), whitespace, `*` (reserved for patterns in
//! authorization rules) and anything non-ASCII are rejected. The publish function in
//! `schema/publish.lua` enforces the same rule for publishers that bypass our binaries.

use std::fmt;
use std::str::FromStr;

/// The longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// A validated topic name. Holding one proves it follows the rule in the module docs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(String);

/// Why a string is not a topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic name is {len} bytes long; the limit is {MAX_TOPIC_LEN}")]
    TooLong {
        /// The length that was given.
        len: usize,
    },
    /// The name contains a character outside the allowed set.
    #[error("topic {topic:?} contains {found:?}; allowed are ASCII letters, digits and _ - . : /")]
    InvalidChar {
        /// The rejected name (cut to the limit so an error never carries unbounded input).
        topic: String,
        /// The first character that is not allowed.
        found: char,
    },
}

impl Topic {
    /// Validates `name` as a topic.
    ///
    /// # Errors
    /// [`TopicError`] naming the rule that `name` breaks.
    pub fn parse(name: &str) -> Result<Self, TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        if name.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len: name.len() });
        }
        if let Some(found) = name.chars().find(|&c| !is_topic_char(c)) {
            return Err(TopicError::InvalidChar {
                topic: name.to_owned(),
                found,
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in [
            "orders",
            "a",
            "user:42/inbox",
            "A-Z_0.9",
            &"x".repeat(MAX_TOPIC_LEN),
        ] {
            assert_eq!(Topic::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert_eq!(
            Topic::parse(&"x".repeat(129)),
            Err(TopicError::TooLong { len: 129 })
        );
        for (name, found) in [
            ("a b", ' '),
            ("{a}", '{'),
            ("a}", '}'),
            ("ü", 'ü'),
            ("a*", '*'),
        ] {
            let err = Topic::parse(name).unwrap_err();
            assert_eq!(
                err,
                TopicError::InvalidChar {
                    topic: name.to_owned(),
                    found
                }
            );
            assert!(err.to_string().contains("allowed are"), "{err}");
        }
    }
}
