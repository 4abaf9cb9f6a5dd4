//! [`Publisher`]: publishing events as a library, one atomic Redis call per event.
//!
//! Every publish is one `FCALL sse_publish` (see `sse_core::schema`): the event is appended to
//! its topic's stream and announced on its channel in the same call, so `Ok(id)` means the
//! event is in the stream, and an error means it was not written (with one exception, below).
//! A batch is one `MULTI … EXEC` of such calls: all of its events are written or none. On a
//! Redis Cluster a transaction cannot span hash slots, and every topic is its own slot, so
//! there a batch is refused unless all of its events share a slot ([`PublishError::CrossSlot`]).
//!
//! The connection is one multiplexed [`Commands`] connection, cloned per call: concurrent
//! publishes are pipelined on one socket (on a Cluster, one per master), which is what Redis
//! serves fastest, and it reconnects by itself after Redis goes away. With
//! [`Publisher::grouped`], single events without an idempotency key go through
//! `crate::coalesce`, which sends the calls waiting at the same
//! moment as one pipeline (each still its own atomic call with its own reply); batches,
//! keyed publishes, replica acks and a Cluster take the direct path.
//!
//! The function library is loaded at connect time and again whenever Redis says it is
//! missing (a restart without persistence), then the call
//! is retried once: a missing function wrote nothing, so the retry cannot duplicate.
//!
//! With [`Publisher::acknowledged_by`], each publish (or batch) is followed on the same
//! connection, in the same pipeline, by `WAIT <replicas> <timeout>`: `Ok` then also means that
//! many replicas hold the event, so a failover cannot lose it; fewer within the timeout is
//! [`PublishError::NotReplicated`], and so is a `WAIT` that Redis ends with an error after
//! the write (a failover does, with `UNBLOCKED`): the event is written either way. Without
//! it, Redis replicates asynchronously and a master that dies can take its last acknowledged
//! events with it.
//!
//! The exception: when a reply times out or the connection drops after the call was sent, the
//! event may or may not be in the stream (Redis runs a call it received even if nobody waits
//! for the answer). That is [`PublishError::NoReply`]; a caller that retries may then publish
//! the event twice, unless it publishes with an [`IdempotencyKey`]
//! ([`Publisher::publish_once`], [`Publisher::publish_batch_once`]): the same key within the
//! window ([`Publisher::remembering_keys_for`], 5 minutes by default) writes the events once,
//! and a retry answers with the ids the first attempt got ([`Outcome::Replayed`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::cluster_routing::Slot;
use redis::{ErrorKind, RedisError, ServerErrorKind};
use sse_core::ErrorChain;
use sse_core::runtime::redis::{
    CheckError, Commands, Mode, Redis, RedisConfigError, RedisFlags, is_function_missing,
};
use sse_core::schema::{
    FleetCount, IdempotencyKey, MEMBERS_KEY, PublishCall, Record, Retention, alive_key,
    node_topics_key, presence, stream_key, subscribers_key,
};
use sse_core::{Event, EventId, Topic};

use crate::coalesce::{CoalesceError, Coalescer};

/// Publishes events into Redis. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Publisher {
    connection: Commands,
    /// Groups concurrent single-event publishes into one pipeline (`crate::coalesce`), when
    /// asked for ([`Publisher::grouped`]); never on a Redis Cluster.
    coalescer: Option<Coalescer>,
    redis: Redis,
    retention: Retention,
    replicas: Option<ReplicaAck>,
    idempotency_window: Duration,
}

/// How long an idempotency key is remembered unless [`Publisher::remembering_keys_for`] says
/// otherwise.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

/// What `GET /v1/topics/<topic>` answers: who listens, over the whole fleet, and what the
/// topic's history holds. A topic nobody listens to and nobody published to is all zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicInfo {
    /// Streams open on the topic, over every live gateway node (as of their last refresh).
    pub subscribers: u64,
    /// Live gateway nodes with at least one of them.
    pub nodes: u64,
    /// Events the topic's stream holds.
    pub retained: u64,
    /// The oldest of them.
    pub first_id: Option<EventId>,
    /// The newest of them.
    pub last_id: Option<EventId>,
}

/// A page of the subjects listening to a topic ([`Publisher::present`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Present {
    /// The page's subjects, sorted.
    pub subjects: Vec<String>,
    /// Every subject present, over all pages.
    pub count: u64,
    /// Where the next page starts (its `after`), when there is one.
    pub next: Option<String>,
}

/// What a publish with an idempotency key did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The events were written now.
    Written,
    /// An earlier request with the same key and the same events wrote them: nothing was
    /// written now, and the ids are the ones they got then.
    Replayed,
}

/// How many replicas must confirm a publish, for how long to wait, and the connections
/// acknowledged publishes take turns on.
#[derive(Clone)]
struct ReplicaAck {
    replicas: u32,
    timeout: Duration,
    lanes: Arc<[Commands]>,
    next: Arc<AtomicUsize>,
}

/// Connections acknowledged publishes are spread over. `WAIT` blocks the connection it is
/// sent on until the replicas answer, so on one connection every acknowledged publish waits
/// for the one before it; with several, that many wait at once. Measured with one local
/// replica (`benches/library.rs`): see the README's Performance section.
const ACK_LANES: usize = 16;

/// Why a publish failed. In every case the event was not written, except as the module docs
/// say for a reply lost in an outage.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Redis could not be reached, or cannot take writes now (loading, failing over, out of
    /// memory): nothing was written. Retry later.
    #[error("redis is unavailable")]
    Unavailable(#[source] RedisError),
    /// The call was sent but no reply came (timeout, or the connection broke): the event may
    /// or may not be in the stream.
    #[error("redis did not answer, so the outcome is unknown")]
    NoReply(#[source] RedisError),
    /// Redis answered with an error: it refused the call.
    #[error("redis refused the publish")]
    Refused(#[source] RedisError),
    /// The Redis flags cannot be used, or Redis is not the kind they name.
    #[error(transparent)]
    Config(#[from] RedisConfigError),
    /// On a Redis Cluster, a batch whose topics live in different hash slots: it cannot be
    /// one transaction there, so nothing was written.
    #[error(
        "on a Redis Cluster a batch cannot be atomic across topics: {first:?} and {other:?} live in different hash slots; publish them in separate requests"
    )]
    CrossSlot {
        /// The batch's first topic.
        first: Topic,
        /// A topic in another slot.
        other: Topic,
    },
    /// The event was written on the master, but fewer replicas than asked confirmed it in
    /// time: it is in the stream now, and a failover may still lose it.
    #[error(
        "the event was written, but only {acked} of {wanted} replicas confirmed it within {timeout:?}; a failover may lose it, and retrying may publish it twice"
    )]
    NotReplicated {
        /// The ids Redis gave (one, or a batch's).
        ids: Vec<EventId>,
        /// Replicas that confirmed.
        acked: u32,
        /// Replicas asked for.
        wanted: u32,
        /// How long the publish waited.
        timeout: Duration,
    },
    /// The idempotency key was used, within its window, for a request with other events (or
    /// another number of them): nothing was written.
    #[error(
        "the idempotency key was already used for a different request within its window; nothing was published"
    )]
    KeyReused(#[source] RedisError),
    /// The publisher's queue is closed (its runtime is shutting down): nothing was sent.
    #[error("the publisher is shutting down; nothing was published")]
    Closed,
    /// Redis answered with something that is not a stream id.
    #[error("redis answered the publish with {reply:?}, which is not a stream id")]
    BadReply {
        /// What Redis answered.
        reply: String,
    },
}

impl PublishError {
    fn from_redis(error: RedisError) -> Self {
        if is_key_conflict(&error) {
            return Self::KeyReused(error);
        }
        match error.kind() {
            // EXECABORT: Redis refused a queued command of a batch before running any, which
            // for our validated calls means READONLY or OOM, both conditions to wait out.
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::ExecAbort,
            ) => Self::Unavailable(error),
            _ if error.code() == Some("OOM") => Self::Unavailable(error),
            ErrorKind::Server(_) | ErrorKind::Extension => Self::Refused(error),
            // Only a refused connection proves the call never reached Redis: when a connection
            // breaks, redis-rs fails every call in flight alike, sent or not.
            _ if error.is_connection_refusal() => Self::Unavailable(error),
            _ => Self::NoReply(error),
        }
    }
}

impl Publisher {
    /// A publisher for `redis`, keeping `retention` of history per topic.
    ///
    /// It does not wait for Redis: a publisher can start before Redis does, and its calls fail
    /// with [`PublishError::Unavailable`] until Redis is there. It tries to load the function
    /// library at once, so a ready Redis is ready to publish to.
    ///
    /// # Errors
    /// [`PublishError::Config`] if the flags are invalid, or if Redis answers and is not the
    /// kind they name (a cluster node without `--redis-cluster`, or the reverse).
    pub async fn connect(redis: &RedisFlags, retention: Retention) -> Result<Self, PublishError> {
        let redis = Redis::from_flags(redis)?;
        let connection = redis.commands().map_err(PublishError::Unavailable)?;
        match redis.check_mode().await {
            Err(CheckError::Mismatch(error)) => return Err(error.into()),
            Err(CheckError::Unreachable(_)) | Ok(()) => {}
        }
        let publisher = Self {
            connection,
            coalescer: None,
            redis,
            retention,
            replicas: None,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
        };
        if let Err(error) = publisher.load_function().await {
            tracing::warn!(error = %ErrorChain(&error), "could not load the publish function yet; will retry on use");
        }
        Ok(publisher)
    }

    /// This publisher, answering `Ok` only once `replicas` replicas hold each publish, waiting
    /// up to `timeout` for them (module docs); `0` replicas answers as soon as the master
    /// wrote it.
    ///
    /// # Errors
    /// When the redis crate refuses to set up the extra connections (the URLs were checked
    /// already, so in practice never).
    pub fn acknowledged_by(
        mut self,
        replicas: u32,
        timeout: Duration,
    ) -> Result<Self, PublishError> {
        self.replicas = if replicas == 0 {
            None
        } else {
            let lanes = (0..ACK_LANES)
                .map(|_| self.redis.commands())
                .collect::<Result<Vec<_>, _>>()
                .map_err(PublishError::Unavailable)?;
            Some(ReplicaAck {
                replicas,
                timeout,
                lanes: lanes.into(),
                next: Arc::new(AtomicUsize::new(0)),
            })
        };
        Ok(self)
    }

    /// This publisher, sending concurrent single-event publishes that wait at the same moment
    /// as one pipeline (`--group-publishes`). Off by default: measured, it was not faster than
    /// the multiplexed connection alone (README, Performance). No effect on a Redis Cluster.
    #[must_use]
    pub fn grouped(mut self) -> Self {
        if self.redis.mode() != Mode::Cluster {
            self.coalescer = Some(Coalescer::start(self.connection.clone()));
        }
        self
    }

    /// This publisher, recognising a repeated idempotency key for `window` after its first
    /// publish (see [`Publisher::publish_once`]).
    #[must_use]
    pub fn remembering_keys_for(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// Loads (or reloads) the publish function library. Idempotent.
    ///
    /// # Errors
    /// [`PublishError`] if Redis is unreachable or refuses the library.
    pub async fn load_function(&self) -> Result<(), PublishError> {
        self.connection
            .clone()
            .load_functions()
            .await
            .map_err(PublishError::from_redis)
    }

    /// Publishes one event and returns the id Redis gave it.
    ///
    /// # Errors
    /// [`PublishError`]; the event was not written (see the module docs for the exception).
    pub async fn publish(&self, event: &Event) -> Result<EventId, PublishError> {
        if let (Some(coalescer), None) = (&self.coalescer, &self.replicas) {
            let call = || PublishCall::new(event, self.retention).command();
            let reply = match coalescer.call(call()).await {
                Err(CoalesceError::Redis(error)) if is_function_missing(&error) => {
                    tracing::info!("publish function missing in redis; loading it");
                    self.load_function().await?;
                    coalescer.call(call()).await
                }
                reply => reply,
            };
            let reply = reply.map_err(|error| match error {
                CoalesceError::Redis(error) => PublishError::from_redis(error),
                CoalesceError::Closed => PublishError::Closed,
            })?;
            let (mut ids, _) = parse_replies(vec![reply])?;
            return ids.pop().ok_or_else(|| bad_reply(&redis::Value::Nil));
        }
        let (mut ids, _) = self.write(std::slice::from_ref(event), None).await?;
        Ok(ids.remove(0))
    }

    /// Publishes one event at most once under `key`: a repeat within the window writes
    /// nothing and returns the id the event got the first time, with [`Outcome::Replayed`].
    ///
    /// # Errors
    /// [`PublishError`]; [`PublishError::KeyReused`] if the key was used for another event.
    pub async fn publish_once(
        &self,
        event: &Event,
        key: &IdempotencyKey,
    ) -> Result<(EventId, Outcome), PublishError> {
        let (mut ids, outcome) = self.write(std::slice::from_ref(event), Some(key)).await?;
        Ok((ids.remove(0), outcome))
    }

    /// Publishes several events, possibly on different topics, all or nothing, and returns
    /// their ids in order. Per topic, their ids increase in the order given.
    ///
    /// # Errors
    /// [`PublishError`]; none of the events was written (see the module docs).
    pub async fn publish_batch(&self, events: &[Event]) -> Result<Vec<EventId>, PublishError> {
        self.write(events, None).await.map(|(ids, _)| ids)
    }

    /// [`Publisher::publish_batch`] at most once under `key`, the whole batch: a repeat of the
    /// same events within the window writes nothing and returns their ids.
    ///
    /// # Errors
    /// [`PublishError`]; [`PublishError::KeyReused`] if the key was used for other events.
    pub async fn publish_batch_once(
        &self,
        events: &[Event],
        key: &IdempotencyKey,
    ) -> Result<(Vec<EventId>, Outcome), PublishError> {
        self.write(events, Some(key)).await
    }

    /// Writes `events` (one call, or a transaction of calls), recorded under `key` if given.
    async fn write(
        &self,
        events: &[Event],
        key: Option<&IdempotencyKey>,
    ) -> Result<(Vec<EventId>, Outcome), PublishError> {
        let Some(first) = events.first() else {
            return Ok((Vec::new(), Outcome::Written));
        };
        if self.redis.mode() == Mode::Cluster {
            let slot = slot_of(&first.topic);
            if let Some(other) = events.iter().find(|e| slot_of(&e.topic) != slot) {
                return Err(PublishError::CrossSlot {
                    first: first.topic.clone(),
                    other: other.topic.clone(),
                });
            }
        }
        let record = key.map(|key| Record::new(&first.topic, key, self.idempotency_window));
        let call = |index: usize, event: &Event| {
            match &record {
                Some(record) => {
                    PublishCall::recorded(event, self.retention, record, index, events.len())
                }
                None => PublishCall::new(event, self.retention),
            }
            .command()
        };
        let calls = || events.iter().enumerate().map(|(i, e)| call(i, e));
        let single = events.len() == 1;
        let Some(ack) = &self.replicas else {
            let replies = if single {
                vec![
                    self.with_function(&self.connection, || call(0, first))
                        .await?,
                ]
            } else {
                self.with_function(&self.connection, || {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for call in calls() {
                        pipe.add_command(call);
                    }
                    pipe
                })
                .await?
            };
            return parse_replies(replies);
        };
        let (replies, acked) = if single {
            let (reply, acked) = self
                .with_function(ack.lane(), || {
                    ack.after(|pipe| {
                        pipe.add_command(call(0, first));
                    })
                })
                .await?;
            (vec![reply], acked)
        } else {
            // The transaction spelled out, so that `WAIT` follows it in the same pipeline (it
            // cannot run inside one).
            self.with_function(ack.lane(), || {
                ack.after(|pipe| {
                    pipe.cmd("MULTI");
                    for call in calls() {
                        pipe.add_command(call);
                    }
                    pipe.cmd("EXEC");
                })
            })
            .await?
        };
        let (ids, outcome) = parse_replies(replies)?;
        Ok((ack.check(ids, acked)?, outcome))
    }

    /// Who listens to `topic` across the fleet, and what its history holds (see
    /// `sse_core::schema::counts`): four reads, none of which writes.
    ///
    /// # Errors
    /// [`PublishError::Unavailable`] or [`PublishError::NoReply`] when Redis does not answer,
    /// [`PublishError::BadReply`] when it answers something else than the schema says.
    pub async fn topic_info(&self, topic: &Topic) -> Result<TopicInfo, PublishError> {
        let mut redis = self.connection.clone();
        let fields: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(subscribers_key(topic))
            .query_async(&mut redis)
            .await
            .map_err(PublishError::from_redis)?;
        let live = alive_nodes(&mut redis, fields.iter().map(|(node, _)| node.as_str())).await?;
        let count = FleetCount::of(
            fields.iter().map(|(node, count)| (node.as_str(), *count)),
            |node| live.contains(node),
        );
        let key = stream_key(topic);
        type Entries = Vec<(String, Vec<Vec<u8>>)>;
        let (retained, first, last): (u64, Entries, Entries) = redis::pipe()
            .cmd("XLEN")
            .arg(&key)
            .cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut redis)
            .await
            .map_err(PublishError::from_redis)?;
        let id = |entries: Entries| -> Result<Option<EventId>, PublishError> {
            entries
                .into_iter()
                .next()
                .map(|(id, _)| {
                    EventId::parse(&id).map_err(|_| PublishError::BadReply { reply: id })
                })
                .transpose()
        };
        Ok(TopicInfo {
            subscribers: count.subscribers,
            nodes: count.nodes,
            retained,
            first_id: id(first)?,
            last_id: id(last)?,
        })
    }

    /// The subjects listening to `topic` on live gateway nodes running `--presence` (see
    /// `sse_core::schema::presence`), sorted, those after `after`, at most `limit`: two reads.
    ///
    /// # Errors
    /// As [`Publisher::topic_info`].
    pub async fn present(
        &self,
        topic: &Topic,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Present, PublishError> {
        let Some(companion) = presence::companion(topic) else {
            return Ok(Present::default());
        };
        let mut redis = self.connection.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(presence::present_key(&companion))
            .query_async(&mut redis)
            .await
            .map_err(PublishError::from_redis)?;
        let nodes = fields
            .iter()
            .flat_map(|(_, nodes)| presence::nodes_of(nodes));
        let live = alive_nodes(&mut redis, nodes).await?;
        let subjects = presence::present(
            fields
                .iter()
                .map(|(subject, nodes)| (subject.as_str(), nodes.as_str())),
            |node| live.contains(node),
        );
        let count = subjects.len() as u64;
        let mut page: Vec<String> = subjects
            .into_iter()
            .filter(|subject| after.is_none_or(|after| subject.as_str() > after))
            .take(limit + 1)
            .collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().cloned().unwrap_or_default()
        });
        Ok(Present {
            subjects: page,
            count,
            next,
        })
    }

    /// The topics with the most subscribers over the live gateway nodes, busiest first (ties
    /// by name), those starting with `prefix`, at most `limit` (see
    /// `sse_core::schema::counts`): three reads.
    ///
    /// # Errors
    /// As [`Publisher::topic_info`].
    pub async fn busiest_topics(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(Topic, u64)>, PublishError> {
        let mut redis = self.connection.clone();
        let nodes: Vec<String> = redis::cmd("ZRANGE")
            .arg(MEMBERS_KEY)
            .arg(0)
            .arg(-1)
            .query_async(&mut redis)
            .await
            .map_err(PublishError::from_redis)?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let alive: Vec<Option<String>> = redis::cmd("MGET")
            .arg(nodes.iter().map(|node| alive_key(node)).collect::<Vec<_>>())
            .query_async(&mut redis)
            .await
            .map_err(PublishError::from_redis)?;
        let live: Vec<String> = nodes
            .iter()
            .zip(&alive)
            .filter(|(_, alive)| alive.is_some())
            .map(|(node, _)| node_topics_key(node))
            .collect();
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let scored: Vec<(String, f64)> = redis::cmd("ZUNION")
            .arg(live.len())
            .arg(&live)
            .arg("WITHSCORES")
            .query_async(&mut redis)
            .await
            .map_err(PublishError::from_redis)?;
        let mut topics: Vec<(Topic, u64)> = scored
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .filter_map(|(name, score)| {
                // Scores are counts of streams: whole and non-negative.
                #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let count = score.max(0.0) as u64;
                Some((Topic::parse(&name).ok()?, count))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        topics.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
        topics.truncate(limit);
        Ok(topics)
    }

    /// Whether Redis can take publishes now: it answers `PING` (a cluster: reports
    /// `cluster_state:ok`).
    pub async fn ping(&self) -> bool {
        self.connection.clone().ready().await.is_ok()
    }

    /// Runs the request built by `build`; if Redis has lost the function, loads it and runs
    /// the request once more.
    async fn with_function<R, T>(
        &self,
        connection: &Commands,
        build: impl Fn() -> R,
    ) -> Result<T, PublishError>
    where
        R: Request,
        T: redis::FromRedisValue,
    {
        let mut connection = connection.clone();
        match build().run(&mut connection).await {
            Err(error) if is_function_missing(&error) => {
                tracing::info!("publish function missing in redis; loading it");
                self.load_function().await?;
                build()
                    .run(&mut connection)
                    .await
                    .map_err(PublishError::from_redis)
            }
            result => result.map_err(PublishError::from_redis),
        }
    }
}

impl ReplicaAck {
    /// The connection for the next acknowledged publish, in turn.
    fn lane(&self) -> &Commands {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        &self.lanes[n % self.lanes.len()]
    }

    /// The commands `write` adds, then `WAIT <replicas> <timeout-ms>`, as one pipeline.
    fn after(&self, write: impl FnOnce(&mut redis::Pipeline)) -> Waited {
        let mut pipe = redis::pipe();
        // Each reply on its own: an error of `WAIT` must not hide the write's reply.
        pipe.ignore_errors();
        write(&mut pipe);
        pipe.cmd("WAIT")
            .arg(self.replicas)
            .arg(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        Waited(pipe)
    }

    /// `ids` if `acked` replicas are enough.
    fn check(&self, ids: Vec<EventId>, acked: u32) -> Result<Vec<EventId>, PublishError> {
        if acked >= self.replicas {
            return Ok(ids);
        }
        Err(PublishError::NotReplicated {
            ids,
            acked,
            wanted: self.replicas,
            timeout: self.timeout,
        })
    }
}

/// A command or a pipeline: what [`Publisher::with_function`] runs.
trait Request {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> redis::RedisResult<T>;
}

impl Request for redis::Cmd {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> redis::RedisResult<T> {
        self.query_async(connection).await
    }
}

/// A write followed by `WAIT` ([`ReplicaAck::after`]); it reads as `(write's reply, replicas)`.
///
/// The write's error (the first one among its replies) is the request's error. An error of
/// `WAIT` after a write that succeeded counts as no replica: the event is written all the
/// same. (A failover ends a waiting `WAIT` with `UNBLOCKED` when its master becomes a
/// replica.)
struct Waited(redis::Pipeline);

impl Request for Waited {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> redis::RedisResult<T> {
        let mut replies: Vec<redis::Value> = self.0.query_async(connection).await?;
        let acked = match replies.pop() {
            Some(redis::Value::ServerError(error)) => {
                tracing::warn!(%error, "WAIT failed after the write; no replica confirmed it");
                redis::Value::Int(0)
            }
            Some(acked) => acked,
            None => redis::Value::Nil,
        };
        if let Some(error) = replies.iter().find_map(|reply| match reply {
            redis::Value::ServerError(error) => Some(error.clone()),
            _ => None,
        }) {
            return Err(error.into());
        }
        // The write's own reply is the last: before it, MULTI's and the queued commands'.
        let write = replies.pop().unwrap_or(redis::Value::Nil).extract_error()?;
        Ok(redis::from_redis_value(redis::Value::Array(vec![
            write, acked,
        ]))?)
    }
}

impl Request for redis::Pipeline {
    async fn run<T: redis::FromRedisValue>(
        &self,
        connection: &mut Commands,
    ) -> redis::RedisResult<T> {
        self.query_async(connection).await
    }
}

/// The hash slot of `topic`'s keys.
/// Which of `nodes` are alive: their `alive` keys exist (one `MGET`, none for no nodes).
async fn alive_nodes<'a>(
    redis: &mut Commands,
    nodes: impl Iterator<Item = &'a str>,
) -> Result<std::collections::HashSet<&'a str>, PublishError> {
    let nodes: Vec<&str> = nodes
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if nodes.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let keys: Vec<String> = nodes.iter().map(|node| alive_key(node)).collect();
    let alive: Vec<Option<String>> = redis::cmd("MGET")
        .arg(keys)
        .query_async(redis)
        .await
        .map_err(PublishError::from_redis)?;
    Ok(nodes
        .into_iter()
        .zip(alive)
        .filter_map(|(node, alive)| alive.map(|_| node))
        .collect())
}

fn slot_of(topic: &Topic) -> Slot {
    Slot::for_key(stream_key(topic))
}

/// Whether the function refused a reused idempotency key (its `CONFLICT` error), for one
/// call or any call of a batch.
fn is_key_conflict(error: &RedisError) -> bool {
    error
        .clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == "CONFLICT"))
}

/// The ids of a request's calls' replies: an id, or with an idempotency key `[id, replayed]`.
/// The request was a replay if every one of its events was (a request whose earlier attempt
/// failed part way wrote the rest now).
fn parse_replies(replies: Vec<redis::Value>) -> Result<(Vec<EventId>, Outcome), PublishError> {
    let mut replayed = !replies.is_empty();
    let mut ids = Vec::with_capacity(replies.len());
    for reply in replies {
        let (id, again) = match reply {
            redis::Value::Array(parts) => match <[redis::Value; 2]>::try_from(parts) {
                Ok([id, redis::Value::Int(again)]) => (id, again == 1),
                Ok(parts) => return Err(bad_reply(&redis::Value::Array(parts.into()))),
                Err(parts) => return Err(bad_reply(&redis::Value::Array(parts))),
            },
            id => (id, false),
        };
        let text: String = redis::from_redis_value(id.clone()).map_err(|_| bad_reply(&id))?;
        ids.push(EventId::parse(&text).map_err(|_| PublishError::BadReply { reply: text })?);
        replayed &= again;
    }
    let outcome = if replayed {
        Outcome::Replayed
    } else {
        Outcome::Written
    };
    Ok((ids, outcome))
}

fn bad_reply(reply: &redis::Value) -> PublishError {
    PublishError::BadReply {
        reply: format!("{reply:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{PublishError, Publisher};
    use sse_core::ErrorChain;
    use sse_core::runtime::redis::{RedisConfigError, RedisFlags};
    use sse_core::schema::Retention;
    use std::time::Duration;
    #[tokio::test]
    async fn an_invalid_url_is_named_as_such_with_its_cause_once() {
        let options = RedisFlags {
            redis_url: "http://not-redis".into(),
            redis_cluster: false,
            redis_timeout: Duration::from_secs(1),
            ..RedisFlags::default()
        };
        let retention = Retention {
            max_len: 10,
            ..Retention::default()
        };
        let Err(error) = Publisher::connect(&options, retention).await else {
            panic!("an http:// URL was accepted as a Redis URL");
        };
        assert!(
            matches!(
                error,
                PublishError::Config(RedisConfigError::InvalidUrl { .. })
            ),
            "{error:?}"
        );
        let text = ErrorChain(&error).to_string();
        assert!(
            text.starts_with("invalid redis url \"http://not-redis\": "),
            "{text}"
        );
        assert!(!text.contains("refused"), "{text}");
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            text.matches(cause.as_deref().unwrap_or("?")).count(),
            1,
            "{text}"
        );
    }
}
