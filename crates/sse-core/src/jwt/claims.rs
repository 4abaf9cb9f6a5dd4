//! What a verified token allows: the topic claim, in this project's format or Mercure's.
//!
//! - [`ClaimFormat::Patterns`] (`--jwt-claim sse`, the default; any other name works the same
//!   way): the claim holds `{"subscribe": [...], "publish": [...]}`, each entry a topic or a
//!   [`TopicPattern`].
//! - [`ClaimFormat::Mercure`] (`--jwt-claim mercure`): Mercure's `{"mercure": {"subscribe":
//!   [...], "publish": [...]}}`. An entry (a string, or Mercure 1.0's `{"match": "..."}`) is an
//!   exact topic, or `*` for every topic. Mercure's URI templates
//!   (`https://example.com/books/{id}`) are not supported: such an entry allows nothing, the
//!   token's other entries still count.
//!
//! A token without the claim (or with `null`) is valid but allows no topic. A claim of the
//! wrong shape, or a pattern that breaks the grammar, makes the token invalid: its issuer made
//! a mistake the bearer cannot fix by asking for other topics.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::pattern::{PatternError, TopicPattern};
use crate::Topic;

/// Which claim holds the topics, and in which format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimFormat {
    /// `{"<name>": {"subscribe": [patterns], "publish": [patterns]}}`.
    Patterns(String),
    /// `{"mercure": {"subscribe": [exact topics or "*"], "publish": [...]}}`.
    Mercure,
}

/// A set of topics: those matching any of its patterns (or every topic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicSet {
    patterns: Vec<TopicPattern>,
    /// Mercure's `*`.
    all: bool,
}

/// The topics a token allows, by action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    /// Topics its bearer may read.
    pub subscribe: TopicSet,
    /// Topics its bearer may publish to.
    pub publish: TopicSet,
}

/// Why a token's topic claim cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
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

impl ClaimFormat {
    /// The format for `--jwt-claim NAME`.
    pub fn named(name: &str) -> Self {
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

    /// What the claims of a verified token allow.
    ///
    /// # Errors
    /// [`ClaimError`] when the claim is there but unusable.
    pub fn allowed(&self, claims: &Map<String, Value>) -> Result<Allowed, ClaimError> {
        let Some(claim) = claims.get(self.name()).filter(|claim| !claim.is_null()) else {
            return Ok(Allowed::default());
        };
        let lists = TopicsClaim::deserialize(claim).map_err(|source| ClaimError::Shape {
            claim: self.name().to_owned(),
            source,
        })?;
        Ok(Allowed {
            subscribe: self.set(&lists.subscribe)?,
            publish: self.set(&lists.publish)?,
        })
    }

    fn set(&self, entries: &[Selector]) -> Result<TopicSet, ClaimError> {
        let mut set = TopicSet::default();
        for entry in entries.iter().map(Selector::text) {
            match self {
                Self::Mercure if entry == "*" => set.all = true,
                Self::Mercure => {
                    if let Ok(topic) = Topic::parse(entry) {
                        set.patterns.push(TopicPattern::exactly(&topic));
                    }
                }
                Self::Patterns(name) => {
                    let pattern =
                        TopicPattern::parse(entry).map_err(|source| ClaimError::Pattern {
                            claim: name.clone(),
                            source,
                        })?;
                    set.patterns.push(pattern);
                }
            }
        }
        Ok(set)
    }
}

impl TopicSet {
    /// Whether `topic` is in the set.
    pub fn allows(&self, topic: &Topic) -> bool {
        self.all || self.patterns.iter().any(|pattern| pattern.matches(topic))
    }
}

impl FromIterator<TopicPattern> for TopicSet {
    fn from_iter<I: IntoIterator<Item = TopicPattern>>(patterns: I) -> Self {
        Self {
            patterns: patterns.into_iter().collect(),
            all: false,
        }
    }
}

#[derive(Deserialize)]
struct TopicsClaim {
    #[serde(default)]
    subscribe: Vec<Selector>,
    #[serde(default)]
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

#[cfg(test)]
mod tests {
    use super::{ClaimError, ClaimFormat};
    use crate::Topic;
    use serde_json::json;

    fn claims(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap()
    }

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    #[test]
    fn patterns_allow_what_they_match_and_a_missing_claim_allows_nothing() {
        let format = ClaimFormat::named("sse");
        let allowed = format
            .allowed(&claims(json!({"sse": {
                "subscribe": ["orders.*", "news"], "publish": ["orders.**"]
            }})))
            .unwrap();
        assert!(allowed.subscribe.allows(&topic("orders.eu")));
        assert!(allowed.subscribe.allows(&topic("news")));
        assert!(!allowed.subscribe.allows(&topic("orders")));
        assert!(allowed.publish.allows(&topic("orders.eu.paris")));
        assert!(!allowed.publish.allows(&topic("news")));
        let nothing = format.allowed(&claims(json!({"sub": "x"}))).unwrap();
        assert!(!nothing.subscribe.allows(&topic("news")));
        assert!(!nothing.publish.allows(&topic("news")));
    }

    #[test]
    fn a_claim_of_the_wrong_shape_or_with_a_bad_pattern_is_an_error() {
        let format = ClaimFormat::named("sse");
        for bad in [
            json!({"sse": "orders"}),
            json!({"sse": {"subscribe": "orders"}}),
        ] {
            assert!(matches!(
                format.allowed(&claims(bad)),
                Err(ClaimError::Shape { .. })
            ));
        }
        assert!(matches!(
            format.allowed(&claims(json!({"sse": {"publish": ["a.**.b"]}}))),
            Err(ClaimError::Pattern { .. })
        ));
    }

    #[test]
    fn mercure_tokens_read_exact_topics_and_the_star() {
        let format = ClaimFormat::named("mercure");
        let some = format
            .allowed(&claims(json!({"mercure": {"subscribe": [
                "https://example.com/books/1",
                "https://example.com/books/{id}"
            ]}})))
            .unwrap();
        assert!(some.subscribe.allows(&topic("https://example.com/books/1")));
        assert!(!some.subscribe.allows(&topic("https://example.com/books/2")));
        let all = format
            .allowed(&claims(json!({"mercure": {"publish": ["*"]}})))
            .unwrap();
        assert!(all.publish.allows(&topic("anything.at.all")));
        let matched = format
            .allowed(&claims(
                json!({"mercure": {"subscribe": [{"match": "news"}]}}),
            ))
            .unwrap();
        assert!(matched.subscribe.allows(&topic("news")));
        assert!(!matched.subscribe.allows(&topic("other")));
    }
}
