//! [`TopicPattern`]: which topics a token lets its bearer read.
//!
//! A pattern is a topic name whose dot-separated segments may be wildcards:
//!
//! | pattern | matches | does not match |
//! |---|---|---|
//! | `orders` | `orders` | `orders.eu`, `order` |
//! | `orders.*` | `orders.eu`, `orders.us` | `orders`, `orders.eu.paris` |
//! | `orders.**` | `orders.eu`, `orders.eu.paris` | `orders` |
//! | `*.audit` | `billing.audit` | `audit`, `a.b.audit` |
//! | `**` | every topic | |
//!
//! `*` stands for exactly one (non-empty) segment, `**` (last segment only) for one or more.
//! A segment is a wildcard only when it is nothing else: `or*` is not a pattern. Every other
//! segment is compared byte for byte, so a topic name is a pattern matching just itself. Patterns only ever appear in tokens: a client always asks for
//! concrete topics, and a topic name that contains `*` is refused by the topic rule anyway.

use crate::Topic;

/// The longest pattern accepted, as for a topic name.
const MAX_LEN: usize = crate::topic::MAX_TOPIC_LEN;

/// A validated topic pattern; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Exact(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: one or more segments (only last).
    Rest,
}

/// Why a string from a token is not a topic pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty, too long, or a segment that is not a topic name's (the pattern as given).
    #[error("topic pattern {0:?} is not a topic name with `*` or a final `**` as whole segments")]
    Invalid(String),
    /// `**` somewhere else than as the last segment (the pattern as given).
    #[error("topic pattern {0:?} has `**` before its last segment")]
    RestNotLast(String),
}

impl TopicPattern {
    /// Parses `text` by the grammar in the module docs.
    ///
    /// # Errors
    /// [`PatternError`] naming the pattern.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let invalid = || PatternError::Invalid(text.chars().take(MAX_LEN).collect());
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(invalid());
        }
        let parts: Vec<&str> = text.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "*" => Segment::One,
                "**" if index + 1 == parts.len() => Segment::Rest,
                "**" => return Err(PatternError::RestNotLast(text.to_owned())),
                // A literal segment holds only what a topic name may (an empty one too: a
                // topic may contain `..`), so every topic is a pattern of itself.
                exact if exact.is_empty() || Topic::parse(exact).is_ok() => {
                    Segment::Exact(exact.to_owned())
                }
                _ => return Err(invalid()),
            });
        }
        Ok(Self { segments })
    }

    /// The pattern matching exactly `topic`: a topic name is a pattern of itself.
    pub fn exactly(topic: &Topic) -> Self {
        Self::parse(topic.as_str()).expect("a topic name is a pattern matching itself")
    }

    /// Whether `topic` is one of the topics this pattern stands for.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut parts = topic.as_str().split('.');
        for (index, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest => {
                    debug_assert_eq!(index + 1, self.segments.len());
                    return parts.next().is_some();
                }
                Segment::One => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Exact(exact) => {
                    if parts.next() != Some(exact.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::{PatternError, TopicPattern};
    use crate::Topic;

    fn matches(pattern: &str, topic: &str) -> bool {
        TopicPattern::parse(pattern)
            .unwrap()
            .matches(&Topic::parse(topic).unwrap())
    }

    #[test]
    fn the_table_in_the_module_docs_holds() {
        let table: [(&str, &[&str], &[&str]); 5] = [
            ("orders", &["orders"], &["orders.eu", "order"]),
            (
                "orders.*",
                &["orders.eu", "orders.us"],
                &["orders", "orders.eu.paris"],
            ),
            ("orders.**", &["orders.eu", "orders.eu.paris"], &["orders"]),
            ("*.audit", &["billing.audit"], &["audit", "a.b.audit"]),
            ("**", &["a", "a.b.c", "x:y/z"], &[]),
        ];
        assert!(matches("a..b", "a..b"), "a topic is a pattern of itself");
        for (pattern, yes, no) in table {
            for topic in yes {
                assert!(matches(pattern, topic), "{pattern} should match {topic}");
            }
            for topic in no {
                assert!(
                    !matches(pattern, topic),
                    "{pattern} should not match {topic}"
                );
            }
        }
    }

    #[test]
    fn bad_grammar_is_refused_with_the_pattern_named() {
        for bad in ["", "or*", "a b", "a.**.b", "***", "a.*x"] {
            let error = TopicPattern::parse(bad).unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
        assert!(matches!(
            TopicPattern::parse("a.**.b"),
            Err(PatternError::RestNotLast(_))
        ));
        assert!(TopicPattern::parse(&"a".repeat(129)).is_err());
    }
}
