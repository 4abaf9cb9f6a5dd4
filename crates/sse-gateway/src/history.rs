//! [`History`]: reading a topic's Redis stream, for resuming clients and for filling the gap
//! a pub/sub outage left.
//!
//! A resume starts with [`History::resume`]: one `XRANGE` from the client's position,
//! inclusive. If the first entry *is* the position, the client resumes exactly. If not, the
//! position is classified with `XINFO STREAM` (Redis 7: `entries-added` against `length`
//! tells whether anything was ever trimmed):
//!
//! | position | stream | verdict |
//! |---|---|---|
//! | `0-0` (the client started before any event) | nothing ever trimmed, or no stream | exact |
//! | `0-0` | some entries trimmed | [`Truncation::Trimmed`] |
//! | before the first retained entry | some entries trimmed | [`Truncation::Trimmed`] |
//! | before the first retained entry | nothing ever trimmed | [`Truncation::UnknownPosition`] (the stream began after it: Redis lost its data) |
//! | past the last id, or between entries | — | [`Truncation::UnknownPosition`] |
//! | not `0-0` | no stream at all | [`Truncation::UnknownPosition`] |
//!
//! (`classify` is this table, tested row by row.) When it is not exact, the client gets every
//! retained event, from the start of the stream. Entries that are not events (written into
//! the stream by hand) are skipped and counted. Redis 7.0's `max-deleted-entry-id` is not
//! used: 7.0 does not update it when `MAXLEN` trims. Further pages come from
//! [`History::after`], `XRANGE` with an exclusive start.
//!
//! **Bounded replays.** In a reconnect storm every resuming client reads at once. The clients'
//! `History` (not the pub/sub link's, whose gap fills must not wait behind them) can be
//! [`limited`](History::limited) to `--max-concurrent-replays` reads at a time: the others
//! wait their turn (counted by `sse_replays_waiting`) instead of failing, and their live
//! events queue meanwhile as for any resume.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::try_join_all;
use prometheus::{IntCounter, IntGauge};
use redis::{RedisError, Value};
use sse_core::ErrorChain;
use sse_core::control::Truncation;
use sse_core::runtime::redis::Commands;
use sse_core::schema::{PublishedEvent, stream_key};
use sse_core::{EventId, Topic};

/// Reads topic streams over the node's command connection (on a Cluster, from the master of
/// each topic's slot). Cheap to clone.
#[derive(Clone)]
pub(crate) struct History {
    redis: Commands,
    page: usize,
    /// Counts entries that are not events (written by hand): they are skipped, never fatal,
    /// or one bad entry would end every resume of its topic, again and again.
    invalid: IntCounter,
    /// Bounds concurrent resume reads, when limited.
    turns: Option<Arc<ReplayTurns>>,
}

/// At most so many resume reads at a time, and how many wait for their turn.
pub(crate) struct ReplayTurns {
    semaphore: Arc<tokio::sync::Semaphore>,
    waiting: IntGauge,
}

impl ReplayTurns {
    /// `max` reads at a time; `waiting` counts the reads waiting for one.
    pub(crate) fn new(max: usize, waiting: IntGauge) -> Self {
        Self {
            semaphore: Arc::new(tokio::sync::Semaphore::new(max)),
            waiting,
        }
    }

    /// Waits for a turn; the turn ends when the permit is dropped.
    async fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.waiting.inc();
        // The semaphore is never closed, so this always gets a permit.
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        self.waiting.dec();
        permit
    }
}

/// Up to one page of a topic's events, oldest first.
#[derive(Debug)]
pub(crate) struct Page {
    /// The events read (entries that are not events are left out).
    pub(crate) events: Vec<PublishedEvent>,
    /// Where the next page starts (exclusive), if this one was full.
    pub(crate) next: Option<EventId>,
}

/// The first page of a resume.
#[derive(Debug)]
pub(crate) struct Resume {
    /// Set when the position cannot be continued exactly.
    pub(crate) truncated: Option<Truncation>,
    /// Events after the position (or, when truncated, from the start of the stream).
    pub(crate) page: Page,
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HistoryError {
    /// Redis failed the call.
    #[error("reading the stream failed")]
    Redis(#[from] RedisError),
    /// Redis answered `XINFO STREAM` with something unexpected.
    #[error("unexpected XINFO STREAM reply")]
    BadInfo,
}

impl History {
    /// History over `redis`, reading `page` entries per call, counting entries that are not
    /// events in `invalid`.
    pub(crate) fn new(redis: Commands, page: usize, invalid: IntCounter) -> Self {
        Self {
            redis,
            page,
            invalid,
            turns: None,
        }
    }

    /// This history, with every [`resume`](History::resume) and [`after`](History::after)
    /// waiting for a turn of `turns` (see the module docs).
    pub(crate) fn limited(self, turns: Arc<ReplayTurns>) -> Self {
        Self {
            turns: Some(turns),
            ..self
        }
    }

    /// A turn, when limited.
    async fn turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.turns {
            Some(turns) => turns.take().await,
            None => None,
        }
    }

    /// The first page after `from`, and whether `from` continues exactly (module docs).
    pub(crate) async fn resume(
        &self,
        topic: &Topic,
        from: EventId,
    ) -> Result<Resume, HistoryError> {
        let _turn = self.turn().await;
        let (ids, mut events) = self.range(topic, &from.to_string(), self.page + 1).await?;
        if ids.first() == Some(&from) {
            events.retain(|event| event.id != from);
            let next = ids.last().copied().filter(|_| ids.len() > self.page);
            return Ok(Resume {
                truncated: None,
                page: Page { events, next },
            });
        }
        let truncated = self.classify(topic, from).await?;
        let (mut ids, mut events) = match truncated {
            // Not a continuation: the client gets everything retained, from the start.
            Some(_) => self.range(topic, "-", self.page).await?,
            None => (ids, events),
        };
        ids.truncate(self.page);
        let next = ids.last().copied().filter(|_| ids.len() == self.page);
        if let Some(last) = next {
            events.retain(|event| event.id <= last);
        }
        Ok(Resume {
            truncated,
            page: Page { events, next },
        })
    }

    /// Up to one page of events after `after` (exclusive).
    pub(crate) async fn after(&self, topic: &Topic, after: EventId) -> Result<Page, HistoryError> {
        let _turn = self.turn().await;
        let (ids, events) = self.range(topic, &format!("({after}"), self.page).await?;
        let next = ids.last().copied().filter(|_| ids.len() == self.page);
        Ok(Page { events, next })
    }

    /// The id of the newest entry of each topic's stream (`0-0` for an empty or missing
    /// stream). The calls go out together: one round trip on one Redis, where the
    /// connection pipelines them, and one per shard on a Cluster, where a pipeline cannot
    /// span slots.
    pub(crate) async fn tips(&self, topics: &[Topic]) -> Result<Vec<EventId>, HistoryError> {
        try_join_all(topics.iter().map(|topic| self.tip(topic))).await
    }

    async fn tip(&self, topic: &Topic) -> Result<EventId, HistoryError> {
        let entries: Vec<(String, Value)> = redis::cmd("XREVRANGE")
            .arg(stream_key(topic))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.redis.clone())
            .await?;
        match entries.first() {
            Some((id, _)) => EventId::parse(id).map_err(|_| HistoryError::BadInfo),
            None => Ok(EventId::ZERO),
        }
    }

    /// The command connection, for the pub/sub link's own calls (`TIME`, readiness).
    pub(crate) fn commands(&self) -> Commands {
        self.redis.clone()
    }

    /// `XRANGE <key> <start> + COUNT <count>`: the id of every entry read, and the events
    /// among them.
    async fn range(
        &self,
        topic: &Topic,
        start: &str,
        count: usize,
    ) -> Result<(Vec<EventId>, Vec<PublishedEvent>), HistoryError> {
        let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(stream_key(topic))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.redis.clone())
            .await?;
        let mut ids = Vec::with_capacity(entries.len());
        let mut events = Vec::with_capacity(entries.len());
        for (id, flat) in entries {
            let mut fields = flat.into_iter();
            let pairs: Vec<(Vec<u8>, Bytes)> =
                std::iter::from_fn(|| Some((fields.next()?, Bytes::from(fields.next()?))))
                    .collect();
            let pairs = pairs
                .iter()
                .map(|(field, value)| (field.as_slice(), value.clone()));
            match PublishedEvent::from_entry(&id, pairs) {
                Ok(event) => {
                    ids.push(event.id);
                    events.push(event);
                }
                Err(error) => {
                    self.invalid.inc();
                    tracing::warn!(%topic, %id, error = %ErrorChain(&error), "skipping a stream entry that is not an event");
                    if let Ok(id) = EventId::parse(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        Ok((ids, events))
    }

    async fn classify(
        &self,
        topic: &Topic,
        from: EventId,
    ) -> Result<Option<Truncation>, HistoryError> {
        let reply: Result<Value, RedisError> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream_key(topic))
            .query_async(&mut self.redis.clone())
            .await;
        let info = match reply {
            Ok(info) => Some(StreamInfo::parse(&info).ok_or(HistoryError::BadInfo)?),
            Err(error) if error.detail().is_some_and(|d| d.contains("no such key")) => None,
            Err(error) => return Err(error.into()),
        };
        Ok(classify(info.as_ref(), from))
    }
}

/// The table in the module docs: whether a position `from` that is not itself in the stream
/// (`info`, or `None` when there is no stream) can be continued exactly, and if not, why.
fn classify(info: Option<&StreamInfo>, from: EventId) -> Option<Truncation> {
    let Some(info) = info else {
        return (from != EventId::ZERO).then_some(Truncation::UnknownPosition);
    };
    let ever_trimmed = info.entries_added > info.length;
    let before_first = info.first_entry.is_none_or(|first| from < first);
    if from == EventId::ZERO {
        ever_trimmed.then_some(Truncation::Trimmed)
    } else if from > info.last_generated || !before_first {
        Some(Truncation::UnknownPosition)
    } else if ever_trimmed {
        Some(Truncation::Trimmed)
    } else {
        Some(Truncation::UnknownPosition)
    }
}

/// The fields of `XINFO STREAM` the classification needs.
struct StreamInfo {
    length: u64,
    entries_added: u64,
    first_entry: Option<EventId>,
    last_generated: EventId,
}

impl StreamInfo {
    fn parse(reply: &Value) -> Option<Self> {
        let items: &[Value] = match reply {
            Value::Array(items) => items,
            Value::Map(_) => return Self::parse(&Value::Array(flatten_map(reply))),
            _ => return None,
        };
        let (mut length, mut entries_added, mut first_entry, mut last_generated) =
            (None, None, None, None);
        for pair in items.chunks_exact(2) {
            let key = text(&pair[0])?;
            match key.as_str() {
                "length" => length = integer(&pair[1]),
                "entries-added" => entries_added = integer(&pair[1]),
                "last-generated-id" => last_generated = EventId::parse(&text(&pair[1])?).ok(),
                "first-entry" => {
                    first_entry = match &pair[1] {
                        Value::Array(entry) => entry
                            .first()
                            .and_then(text)
                            .and_then(|id| EventId::parse(&id).ok()),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        Some(Self {
            length: length?,
            entries_added: entries_added?,
            first_entry,
            last_generated: last_generated?,
        })
    }
}

fn flatten_map(value: &Value) -> Vec<Value> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        _ => Vec::new(),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{StreamInfo, Truncation, classify};
    use sse_core::EventId;

    const ZERO: EventId = EventId::ZERO;

    fn id(ms: u64) -> EventId {
        EventId::new(ms, 0)
    }

    /// A stream holding ids 10..=20 (ms), that got `added` entries in its life.
    fn stream(added: u64) -> StreamInfo {
        StreamInfo {
            length: 11,
            entries_added: added,
            first_entry: Some(id(10)),
            last_generated: id(20),
        }
    }

    #[test]
    fn zero_continues_exactly_when_nothing_was_ever_trimmed_or_there_is_no_stream() {
        assert_eq!(classify(Some(&stream(11)), ZERO), None);
        assert_eq!(classify(None, ZERO), None);
    }

    #[test]
    fn zero_after_a_trim_is_truncated_history() {
        assert_eq!(classify(Some(&stream(50)), ZERO), Some(Truncation::Trimmed));
    }

    #[test]
    fn a_position_before_the_first_entry_of_a_trimmed_stream_was_trimmed_away() {
        assert_eq!(
            classify(Some(&stream(50)), id(5)),
            Some(Truncation::Trimmed)
        );
    }

    #[test]
    fn a_position_before_the_first_entry_of_an_untrimmed_stream_is_unknown() {
        // The stream began after the client's position: Redis lost its data.
        assert_eq!(
            classify(Some(&stream(11)), id(5)),
            Some(Truncation::UnknownPosition)
        );
    }

    #[test]
    fn a_position_past_the_last_id_or_between_entries_is_unknown() {
        for from in [id(21), id(15)] {
            for added in [11, 50] {
                assert_eq!(
                    classify(Some(&stream(added)), from),
                    Some(Truncation::UnknownPosition),
                    "{from} in a stream that got {added} entries"
                );
            }
        }
    }

    #[test]
    fn a_position_on_a_topic_with_no_stream_is_unknown() {
        assert_eq!(classify(None, id(5)), Some(Truncation::UnknownPosition));
    }

    #[test]
    fn an_emptied_stream_that_was_trimmed_treats_any_old_position_as_trimmed() {
        let emptied = StreamInfo {
            length: 0,
            entries_added: 11,
            first_entry: None,
            last_generated: id(20),
        };
        assert_eq!(classify(Some(&emptied), id(12)), Some(Truncation::Trimmed));
        assert_eq!(
            classify(Some(&emptied), id(30)),
            Some(Truncation::UnknownPosition)
        );
    }
}
