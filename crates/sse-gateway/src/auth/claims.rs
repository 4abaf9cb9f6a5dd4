//! What a verified token allows: the topic claim, in this gateway's format or Mercure's.
//!
//! - `--jwt-claim sse` (default; any other name works the same way): the claim holds
//!   `{"subscribe": [...], "publish": [...]}`, each entry a topic or a [`TopicPattern`].
//! - `--jwt-claim mercure`: Mercure's `{"mercure": {"subscribe": [...], "publish": [...]}}`.
//!   An entry (a string, or Mercure 1.0's `{"match": "..."}`) is an exact topic, or `*` for
//!   every topic. Mercure's URI templates (`https://example.com/books/{id}`) are not
//!   supported: such an entry allows nothing (and is logged at debug level), the token's
//!   other entries still count.
//!
//! A token without the claim (or with `null`) is valid but allows no topic (403 for any request). A claim of
//! the wrong shape, or a pattern that breaks the grammar, makes the token invalid (401): the
//! issuer made a mistake the subscriber cannot fix by asking for other topics.

use serde::Deserialize;
use serde_json::Value;
use sse_core::Topic;

use super::pattern::{PatternError, TopicPattern};

/// Which claim holds the topics, and in which format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClaimFormat {
    /// `{"<name>": {"subscribe": [patterns]}}`.
    Patterns(String),
    /// `{"mercure": {"subscribe": [exact topics or "*"]}}`.
    Mercure,
}

impl ClaimFormat {
    /// The format for `--jwt-claim NAME`.
    pub(crate) fn named(name: &str) -> Self {
        if name == "mercure" {
            Self::Mercure
        } else {
            Self::Patterns(name.to_owned())
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Patterns(name) => name,
            Self::Mercure => "mercure",
        }
    }
}

/// The topics a token lets its bearer read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Readable {
    patterns: Vec<TopicPattern>,
    /// Mercure's `*`.
    all: bool,
}

impl Readable {
    /// Whether the token allows reading `topic`.
    pub(crate) fn allows(&self, topic: &Topic) -> bool {
        self.all || self.patterns.iter().any(|pattern| pattern.matches(topic))
    }
}

/// Why a token's claim cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    /// Not an object with lists of strings.
    #[error("the token's {claim:?} claim is not {{\"subscribe\": [...], \"publish\": [...]}}")]
    Shape {
        /// The claim's name.
        claim: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// An entry breaks the pattern grammar.
    #[error("the token's {claim:?} claim lists an invalid topic pattern")]
    Pattern {
        /// The claim's name.
        claim: String,
        /// What is wrong with it.
        #[source]
        source: PatternError,
    },
}

#[derive(Deserialize)]
struct TopicsClaim {
    #[serde(default)]
    subscribe: Vec<Selector>,
    // Read so that a wrong type is reported; publishing is the publisher's business.
    #[serde(default)]
    #[allow(dead_code, reason = "validated for shape only")]
    publish: Vec<Selector>,
}

/// One entry of a topic list: a string, or Mercure 1.0's `{"match": "..."}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Selector {
    Text(String),
    Match {
        #[serde(rename = "match")]
        text: String,
    },
}

impl Selector {
    fn text(&self) -> &str {
        match self {
            Self::Text(text) | Self::Match { text } => text,
        }
    }
}

impl ClaimFormat {
    /// What the claims of a verified token allow.
    ///
    /// # Errors
    /// [`ClaimError`] when the claim is there but unusable.
    pub(crate) fn readable(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<Readable, ClaimError> {
        let Some(claim) = claims.get(self.name()).filter(|claim| !claim.is_null()) else {
            return Ok(Readable::default());
        };
        let topics = TopicsClaim::deserialize(claim).map_err(|source| ClaimError::Shape {
            claim: self.name().to_owned(),
            source,
        })?;
        let mut readable = Readable::default();
        for entry in topics.subscribe.iter().map(Selector::text) {
            match self {
                Self::Mercure if entry == "*" => readable.all = true,
                Self::Mercure => match Topic::parse(entry) {
                    Ok(topic) => readable.patterns.push(exact(&topic)),
                    Err(_) => tracing::debug!(%entry, "unsupported Mercure topic selector"),
                },
                Self::Patterns(name) => {
                    let pattern =
                        TopicPattern::parse(entry).map_err(|source| ClaimError::Pattern {
                            claim: name.clone(),
                            source,
                        })?;
                    readable.patterns.push(pattern);
                }
            }
        }
        Ok(readable)
    }
}

/// A pattern matching exactly `topic` (whose segments may look like wildcards only if the
/// topic rule allowed `*`, which it does not).
fn exact(topic: &Topic) -> TopicPattern {
    TopicPattern::parse(topic.as_str()).expect("a topic name is a pattern of itself")
}

#[cfg(test)]
mod tests {
    use super::{ClaimError, ClaimFormat};
    use serde_json::json;
    use sse_core::Topic;

    fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap()
    }

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    #[test]
    fn patterns_allow_what_they_match_and_a_missing_claim_allows_nothing() {
        let format = ClaimFormat::named("sse");
        let readable = format
            .readable(&claims(json!({"sse": {"subscribe": ["orders.*", "news"]}})))
            .unwrap();
        assert!(readable.allows(&topic("orders.eu")));
        assert!(readable.allows(&topic("news")));
        assert!(!readable.allows(&topic("orders")));
        let nothing = format.readable(&claims(json!({"sub": "x"}))).unwrap();
        assert!(!nothing.allows(&topic("news")));
    }

    #[test]
    fn a_claim_of_the_wrong_shape_or_with_a_bad_pattern_is_an_error() {
        let format = ClaimFormat::named("sse");
        for bad in [
            json!({"sse": "orders"}),
            json!({"sse": {"subscribe": "orders"}}),
        ] {
            assert!(matches!(
                format.readable(&claims(bad)),
                Err(ClaimError::Shape { .. })
            ));
        }
        assert!(matches!(
            format.readable(&claims(json!({"sse": {"subscribe": ["a.**.b"]}}))),
            Err(ClaimError::Pattern { .. })
        ));
    }

    #[test]
    fn mercure_tokens_read_exact_topics_and_the_star() {
        let format = ClaimFormat::named("mercure");
        let some = format
            .readable(&claims(json!({"mercure": {"subscribe": [
                "https://example.com/books/1",
                "https://example.com/books/{id}"
            ]}})))
            .unwrap();
        assert!(some.allows(&topic("https://example.com/books/1")));
        assert!(!some.allows(&topic("https://example.com/books/2")));
        let all = format
            .readable(&claims(json!({"mercure": {"subscribe": ["*"]}})))
            .unwrap();
        assert!(all.allows(&topic("anything.at.all")));
        let matched = format
            .readable(&claims(
                json!({"mercure": {"subscribe": [{"match": "news"}]}}),
            ))
            .unwrap();
        assert!(matched.allows(&topic("news")));
        assert!(!matched.allows(&topic("other")));
    }
}
