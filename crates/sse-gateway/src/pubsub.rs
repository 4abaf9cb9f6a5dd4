//! [`PubSubLink`]: the node's one Redis pub/sub connection (on a Cluster, one per shard), and
//! the reason pub/sub's at-most-once delivery never loses an event here.
//!
//! One task owns the connection and does everything in order: it subscribes and unsubscribes
//! as the [`Hub`] asks (batching what queued up), reads each new topic's stream tip once Redis
//! confirmed the subscription (the topic's starting position, see `hub`), and hands every
//! message to [`Hub::deliver`]. Doing this in one task is what makes it exact: a message that
//! arrives while a tip is read waits its turn and is then recognised as older or newer.
//!
//! When the connection is lost (Redis restarted, `CLIENT KILL`, a network fault, a failed
//! `PING`), the link reconnects with capped, jittered backoff, subscribes to every topic the hub
//! holds, and before reading any live message again, reads each topic's stream from the last id
//! this node delivered: whatever was published during the gap reaches clients from the stream,
//! in order, and live duplicates are then dropped by the hub. While disconnected, `/readyz`
//! fails.
//!
//! A live message is not proof of an event (anyone with Redis access can `PUBLISH`), and an
//! id far in the future would move the topic's position past every real event to come. So
//! the link keeps a view of the Redis clock ([`RedisClock`]: `TIME`, read at connect and at
//! every `PING`, advanced by the node's monotonic clock in between; never a call per event)
//! and the hub refuses a live id more than [`AHEAD_BOUND`] past it. Such a message is counted
//! in `sse_redis_messages_ahead_total` and logged at `warn` at most once per `PING` period.
//! At the next `PING`, each topic that refused one is read from its stream after its
//! position: had Redis's clock stepped forward by more than the bound, the real events it
//! refused reach clients then, in order. What the bound cannot prevent: a forged id *within*
//! it is delivered, and real events with lower ids published before the clock reaches it are
//! dropped on this node (at most [`AHEAD_BOUND`] of them per forged message).

use sse_core::ErrorChain;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Msg, ProtocolVersion, PushInfo, PushKind, RedisError};
use sse_core::Topic;
use sse_core::runtime::redis::{CheckError, Commands, Mode, NotReady, Redis, RedisConfigError};
use sse_core::schema::{PROBE_MESSAGE, PublishedEvent, live_channel, stream_key, topic_of_channel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::history::{History, HistoryError};
use crate::hub::{Delivered, Hub, LinkCommand};
use crate::metrics::Metrics;

/// How often the idle pub/sub connection is checked with a `PING`.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Channels per `SUBSCRIBE` command when resubscribing many topics.
const SUBSCRIBE_CHUNK: usize = 1000;
/// `SSUBSCRIBE` calls in flight at once on a Cluster (each names one channel).
const SHARDED_IN_FLIGHT: usize = 64;
/// How long a topic whose subscription Redis ended is served from its stream before live
/// delivery resumes, and how often its stream is read meanwhile (`PubSubLink::resubscribe`).
const HOLD: Duration = Duration::from_secs(1);
const HOLD_POLL: Duration = Duration::from_millis(100);
/// How long a Cluster subscription's probe may take to come back (`PubSubLink::subscribe`).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How far past the node's view of Redis time a live id may be. Real ids are never ahead
/// of it (the view errs ahead, by the `TIME` round trip, and pub/sub only makes ids older),
/// so the bound only absorbs a forward step of Redis's clock between two reads; it is also
/// the most a forged id can make this node skip.
const AHEAD_BOUND: Duration = Duration::from_secs(2);

/// The shared pub/sub connection; see the module docs.
pub(crate) struct PubSubLink {
    pub(crate) redis: Redis,
    pub(crate) hub: Arc<Hub>,
    pub(crate) history: History,
    pub(crate) commands: mpsc::UnboundedReceiver<LinkCommand>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the link is subscribed and caught up: what `/readyz` reports.
    pub(crate) connected: Arc<AtomicBool>,
    pub(crate) timeout: Duration,
    pub(crate) shutdown: CancellationToken,
}

/// What one session with Redis holds besides the link's own state.
struct Session {
    live: Live,
    /// The command connection, for `TIME` and readiness.
    commands: Commands,
    clock: RedisClock,
    /// Topics that refused a live id as ahead since the last `PING`.
    ahead: HashSet<Topic>,
    /// Topics served from their stream until the time given (`PubSubLink::resubscribe`).
    held: HashMap<Topic, Instant>,
}

/// Why a session with Redis ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("the connection closed")]
    Closed,
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    WrongMode(RedisConfigError),
    #[error("{0} sharded subscriptions were not confirmed by their probe within {PROBE_TIMEOUT:?}")]
    Unconfirmed(usize),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl PubSubLink {
    /// Runs until shutdown, reconnecting whenever the connection is lost.
    pub(crate) async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let shutdown = self.shutdown.clone();
        loop {
            let session = tokio::select! {
                () = shutdown.cancelled() => return,
                lost = self.session() => lost,
            };
            let Err(lost) = session else {
                return;
            };
            self.metrics.redis_connected.set(0);
            if self.connected.swap(false, Ordering::Relaxed) {
                tracing::warn!(error = %ErrorChain(&lost), "redis pub/sub connection lost; reconnecting");
                self.metrics.redis_reconnects.inc();
                backoff = BACKOFF_MIN;
            } else {
                tracing::warn!(error = %ErrorChain(&lost), "cannot reach redis; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(jitter(backoff)) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: connect, subscribe and catch up, then serve until it breaks.
    async fn session(&mut self) -> Result<(), Lost> {
        match self.timed(self.redis.check_mode()).await? {
            Err(CheckError::Mismatch(error)) => return Err(Lost::WrongMode(error)),
            Err(CheckError::Unreachable(Some(error))) => return Err(Lost::Redis(error)),
            Err(CheckError::Unreachable(None)) => return Err(Lost::Timeout(self.timeout)),
            Ok(()) => {}
        }
        // A subscribed connection cannot send `TIME`: the clock uses the command connection.
        let mut commands = self.history.commands();
        self.timed(commands.ready()).await??;
        let live = self.timed(Live::connect(&self.redis)).await??;
        let clock = self.timed(RedisClock::read(&mut commands)).await??;
        let mut session = Session {
            live,
            commands,
            clock,
            ahead: HashSet::new(),
            held: HashMap::new(),
        };
        let topics = self.hub.subscribed();
        let names: Vec<Topic> = topics.iter().map(|s| s.topic.clone()).collect();
        self.subscribe(&mut session, &names).await?;
        // Commands queued before this point are covered by the snapshot just subscribed;
        // later ones are checked against the hub as they come, so replaying them is harmless.
        let mut pending = Vec::new();
        for subscribed in topics {
            match subscribed.last_id {
                Some(last_id) => self.fill_gap(&subscribed.topic, last_id).await?,
                None => pending.push((subscribed.topic, subscribed.generation)),
            }
        }
        self.activate(pending).await?;
        // The gauge first: whoever sees /readyz pass also sees the gauge at 1.
        self.metrics.redis_connected.set(1);
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!("redis pub/sub connected");

        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        let mut poll = tokio::time::interval(HOLD_POLL);
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    self.apply(command, &mut session).await?;
                }
                notice = session.live.next() => match notice {
                    Notice::Message(message) => self.on_message(&message, &mut session),
                    Notice::Ended(channel) => self.resubscribe(&channel, &mut session).await?,
                    Notice::Probe(_) => {}
                    Notice::Lost => return Err(Lost::Closed),
                },
                _ = poll.tick(), if !session.held.is_empty() => self.poll_held(&mut session).await?,
                _ = ping.tick() => {
                    self.timed(session.live.ping()).await??;
                    self.timed(session.commands.ready()).await??;
                    session.clock = self.timed(RedisClock::read(&mut session.commands)).await??;
                    self.recheck(std::mem::take(&mut session.ahead)).await?;
                }
            }
        }
    }

    /// Subscribes to `topics` and returns once the subscriptions are known to carry every
    /// message published from now on.
    ///
    /// On one Redis, the `SUBSCRIBE` reply proves that. On a Cluster it does not: a replica
    /// accepts `SSUBSCRIBE` too, and a master that just stepped down receives nothing of its
    /// shard's messages for a moment, so a client routing by a stale slot map may subscribe
    /// where messages are lost. So the link publishes a probe on each channel (to the slot's
    /// master, following `MOVED`) and waits until every probe came back over its
    /// subscription: from then on, every event published after the probe arrives too, and
    /// every one before it is in the stream. Live messages of these topics that arrive
    /// while the probes are awaited are dropped, whether their own probe came back or not:
    /// the caller reads each topic's stream (or its tip) next, which holds them, and one
    /// delivered first would move its topic past the events that read must deliver (on a
    /// reconnect, what was published during the gap). A probe that does not come back
    /// within [`PROBE_TIMEOUT`] ends the session, and the next one starts from a fresh view
    /// of the slots. Live messages of other topics are delivered meanwhile.
    async fn subscribe(&mut self, session: &mut Session, topics: &[Topic]) -> Result<(), Lost> {
        let channels: Vec<String> = topics.iter().map(live_channel).collect();
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            self.timed(session.live.subscribe(chunk)).await??;
        }
        if !session.live.needs_probes() || topics.is_empty() {
            return Ok(());
        }
        let subscribing: HashSet<String> = channels.iter().cloned().collect();
        let mut unconfirmed = subscribing.clone();
        for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
            self.timed(session.live.probe(chunk)).await??;
        }
        let deadline = tokio::time::sleep(PROBE_TIMEOUT);
        tokio::pin!(deadline);
        while !unconfirmed.is_empty() {
            tokio::select! {
                () = &mut deadline => return Err(Lost::Unconfirmed(unconfirmed.len())),
                notice = session.live.next() => match notice {
                    Notice::Probe(channel) => {
                        unconfirmed.remove(&channel);
                    }
                    Notice::Message(message) => {
                        if !subscribing.contains(message.get_channel_name()) {
                            self.on_message(&message, session);
                        }
                    }
                    // Ended again while being confirmed: start over with a fresh view.
                    Notice::Ended(_) => return Err(Lost::Unconfirmed(unconfirmed.len())),
                    Notice::Lost => return Err(Lost::Closed),
                },
            }
        }
        Ok(())
    }

    /// Applies `first` and every other command already queued, in as few round trips as
    /// possible.
    async fn apply(&mut self, first: LinkCommand, session: &mut Session) -> Result<(), Lost> {
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        let mut command = Some(first);
        while let Some(next) = command.take().or_else(|| self.commands.try_recv().ok()) {
            match next {
                LinkCommand::Subscribe { topic, generation } => {
                    unsubscribe.retain(|t| t != &topic);
                    subscribe.push((topic, generation));
                }
                LinkCommand::Unsubscribe(topic) => {
                    subscribe.retain(|(t, _)| t != &topic);
                    unsubscribe.push(topic);
                }
            }
        }
        // Checked against the hub now: a topic may have come and gone since it was queued.
        unsubscribe.retain(|topic| !self.hub.has_topic(topic));
        subscribe.retain(|(topic, generation)| self.hub.wants_subscription(topic, *generation));
        if !unsubscribe.is_empty() {
            let channels: Vec<String> = unsubscribe.iter().map(live_channel).collect();
            for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
                self.timed(session.live.unsubscribe(chunk)).await??;
            }
        }
        if !subscribe.is_empty() {
            let topics: Vec<Topic> = subscribe.iter().map(|(t, _)| t.clone()).collect();
            self.subscribe(session, &topics).await?;
            self.activate(subscribe).await?;
        }
        Ok(())
    }

    /// Subscribes again to a channel whose subscription Redis ended (its slot moved, or its
    /// master stepped down), and serves the topic from its stream for [`HOLD`] before live
    /// delivery resumes: whatever was published meanwhile reaches clients in order, and the
    /// hub drops duplicates. A topic no longer wanted, or not yet live (its subscription is
    /// still to be made by a queued command), needs nothing.
    ///
    /// Why the hold: the cluster client's slot map may still name the node that ended the
    /// subscription, and a master that just stepped down accepts `SSUBSCRIBE` as a replica
    /// but, measured on Redis 7.0, misses some of its shard's messages for up to a few
    /// hundred milliseconds after it did, even after a probe came back. While held, live
    /// messages of the topic are dropped and its stream is read every [`HOLD_POLL`]; the
    /// read of the topic's key sent first meets `MOVED` at a node that no longer serves the
    /// slot, which makes the client refresh its map, so the new subscription usually lands
    /// on the new master at once.
    async fn resubscribe(&mut self, channel: &str, session: &mut Session) -> Result<(), Lost> {
        let Some(topic) = topic_of_channel(channel) else {
            return Ok(());
        };
        if self.hub.position(&topic).is_none() {
            return Ok(());
        }
        tracing::info!(%topic, "redis ended the subscription (slot moved or master changed); subscribing again");
        self.metrics.subscriptions_moved.inc();
        session.held.insert(topic.clone(), Instant::now() + HOLD);
        self.timed(session.live.locate(&topic)).await??;
        self.subscribe(session, std::slice::from_ref(&topic))
            .await?;
        self.poll_held(session).await
    }

    /// Reads each held topic from its stream after its position, and releases those whose
    /// hold is over (`resubscribe`).
    async fn poll_held(&self, session: &mut Session) -> Result<(), Lost> {
        let now = Instant::now();
        let topics: Vec<(Topic, Instant)> = session
            .held
            .iter()
            .map(|(topic, until)| (topic.clone(), *until))
            .collect();
        for (topic, until) in topics {
            if let Some(position) = self.hub.position(&topic) {
                self.fill_gap(&topic, position).await?;
            }
            if until <= now {
                session.held.remove(&topic);
            }
        }
        Ok(())
    }

    /// Reads the tip of each newly subscribed topic and makes the topic live from there.
    async fn activate(&self, topics: Vec<(Topic, u64)>) -> Result<(), Lost> {
        for chunk in topics.chunks(SUBSCRIBE_CHUNK) {
            let names: Vec<Topic> = chunk.iter().map(|(topic, _)| topic.clone()).collect();
            let tips = self.timed(self.history.tips(&names)).await??;
            for ((topic, generation), tip) in chunk.iter().zip(tips) {
                self.hub.activate(topic, *generation, tip);
            }
        }
        Ok(())
    }

    /// Delivers what `topic`'s stream holds after `last_id`: the events a pub/sub outage hid.
    /// The first read also tells whether the stream still continues exactly from there; if
    /// not (trimmed past it meanwhile), events may be missing that no client here got, and
    /// the topic's recent events in memory are forgotten so that no resume is served across
    /// the gap (`replay_cache`).
    async fn fill_gap(&self, topic: &Topic, last_id: sse_core::EventId) -> Result<(), Lost> {
        let resume = self.timed(self.history.resume(topic, last_id)).await??;
        if let Some(reason) = resume.truncated {
            tracing::info!(%topic, %last_id, reason = reason.as_str(), "the stream does not continue exactly from the topic's position after a gap: telling its clients, forgetting its recent events");
            self.hub.lost_history(topic, reason, last_id);
        }
        let mut page = resume.page;
        loop {
            for event in &page.events {
                if self.hub.deliver(topic, event) {
                    self.metrics.gap_filled_events.inc();
                }
            }
            match page.next {
                Some(next) => page = self.timed(self.history.after(topic, next)).await??,
                None => return Ok(()),
            }
        }
    }

    /// Reads each topic in `topics` (which refused a live id as ahead) from its stream after
    /// its position, so that a real event refused because Redis's clock jumped is not lost.
    async fn recheck(&self, topics: HashSet<Topic>) -> Result<(), Lost> {
        for topic in topics {
            if let Some(position) = self.hub.position(&topic) {
                self.fill_gap(&topic, position).await?;
            }
        }
        Ok(())
    }

    /// Hands a live message to the hub; the session's `ahead` collects the topics that
    /// refused one as ahead of its clock since the last `PING`.
    fn on_message(&self, message: &Msg, session: &mut Session) {
        let Some(topic) = topic_of_channel(message.get_channel_name()) else {
            return;
        };
        if session.held.contains_key(&topic) {
            return; // read from the stream instead
        }
        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
        match PublishedEvent::from_live_message(payload) {
            Ok(event) => {
                self.metrics.events_received.inc();
                let horizon_ms = session.clock.horizon_ms();
                if self.hub.deliver_live(&topic, &event, horizon_ms) == Delivered::Ahead {
                    self.metrics.messages_ahead.inc();
                    if session.ahead.is_empty() {
                        tracing::warn!(
                            %topic,
                            id = %event.id,
                            horizon_ms,
                            "refusing a pub/sub message whose id is ahead of redis time (not in the stream); further ones until the next check are only counted"
                        );
                    }
                    session.ahead.insert(topic);
                }
            }
            Err(error) => {
                self.metrics.messages_invalid.inc();
                tracing::debug!(%topic, error = %ErrorChain(&error), "skipping an invalid pub/sub message");
            }
        }
    }

    async fn timed<F: Future>(&self, future: F) -> Result<F::Output, Lost> {
        tokio::time::timeout(self.timeout, future)
            .await
            .map_err(|_| Lost::Timeout(self.timeout))
    }
}

// === impl Live ===

/// A session's subscribed connection: plain pub/sub on one Redis, sharded pub/sub over the
/// cluster client on a Cluster (module docs).
enum Live {
    Single {
        sink: PubSubSink,
        messages: PubSubStream,
    },
    Cluster {
        connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

/// What a subscribed connection reports.
enum Notice {
    /// A live message.
    Message(Msg),
    /// Redis ended the subscription of this channel (Cluster: its slot moved).
    Ended(String),
    /// A probe came back on this channel (see `PubSubLink::subscribe`).
    Probe(String),
    /// The connection, or one node's connection, broke.
    Lost,
}

impl Live {
    async fn connect(redis: &Redis) -> Result<Self, RedisError> {
        match redis.mode() {
            Mode::Single => {
                let (sink, messages) = redis.first_node()?.get_async_pubsub().await?.split();
                Ok(Self::Single { sink, messages })
            }
            Mode::Cluster => {
                let (sender, pushes) = mpsc::unbounded_channel();
                let client = redis.cluster_client(|builder| {
                    builder
                        .use_protocol(ProtocolVersion::RESP3)
                        .push_sender(sender)
                })?;
                let connection = client.get_async_connection().await?;
                Ok(Self::Cluster { connection, pushes })
            }
        }
    }

    async fn subscribe(&mut self, channels: &[String]) -> Result<(), RedisError> {
        match self {
            Self::Single { sink, .. } => sink.subscribe(channels).await,
            Self::Cluster { connection, .. } => {
                sharded(connection, channels, Sharded::Subscribe).await
            }
        }
    }

    async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), RedisError> {
        match self {
            Self::Single { sink, .. } => sink.unsubscribe(channels).await,
            Self::Cluster { connection, .. } => {
                sharded(connection, channels, Sharded::Unsubscribe).await
            }
        }
    }

    /// Whether a subscription must be confirmed by a probe (`PubSubLink::subscribe`).
    fn needs_probes(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// Sends a read of `topic`'s stream key over the subscribing connection: a node that no
    /// longer serves the slot answers `MOVED`, and the cluster client refreshes its slot map.
    async fn locate(&mut self, topic: &Topic) -> Result<(), RedisError> {
        match self {
            Self::Single { .. } => Ok(()),
            Self::Cluster { connection, .. } => {
                redis::cmd("XLEN")
                    .arg(stream_key(topic))
                    .exec_async(connection)
                    .await
            }
        }
    }

    /// Publishes a probe on each channel, to the master of its slot.
    async fn probe(&mut self, channels: &[String]) -> Result<(), RedisError> {
        match self {
            Self::Single { .. } => Ok(()),
            Self::Cluster { connection, .. } => sharded(connection, channels, Sharded::Probe).await,
        }
    }

    /// `PING` over the subscribed connection (on a Cluster: to every master).
    async fn ping(&mut self) -> Result<(), RedisError> {
        match self {
            Self::Single { sink, .. } => sink.ping::<redis::Value>().await.map(drop),
            Self::Cluster { connection, .. } => redis::cmd("PING").exec_async(connection).await,
        }
    }

    async fn next(&mut self) -> Notice {
        match self {
            Self::Single { messages, .. } => {
                messages.next().await.map_or(Notice::Lost, Notice::Message)
            }
            Self::Cluster { pushes, .. } => loop {
                let Some(push) = pushes.recv().await else {
                    return Notice::Lost;
                };
                match push.kind {
                    PushKind::SMessage => {
                        if let Some(message) = Msg::from_push_info(push) {
                            if message.get_payload_bytes() == PROBE_MESSAGE {
                                return Notice::Probe(message.get_channel_name().to_owned());
                            }
                            return Notice::Message(message);
                        }
                    }
                    PushKind::SUnsubscribe => {
                        let channel = push.data.first().map(String::from_redis_value_ref);
                        if let Some(Ok(channel)) = channel {
                            return Notice::Ended(channel);
                        }
                    }
                    PushKind::Disconnection => return Notice::Lost,
                    _ => {}
                }
            },
        }
    }
}

/// `SSUBSCRIBE`, `SUNSUBSCRIBE` or a probe's `SPUBLISH` once per channel,
/// [`SHARDED_IN_FLIGHT`] at a time: a sharded call names channels of one slot only.
async fn sharded(
    connection: &ClusterConnection,
    channels: &[String],
    action: Sharded,
) -> Result<(), RedisError> {
    let calls: Vec<_> = channels
        .iter()
        .map(|channel| {
            let mut connection = connection.clone();
            let channel = channel.clone();
            async move {
                match action {
                    Sharded::Subscribe => connection.ssubscribe(channel).await,
                    Sharded::Unsubscribe => connection.sunsubscribe(channel).await,
                    Sharded::Probe => {
                        redis::cmd("SPUBLISH")
                            .arg(channel)
                            .arg(PROBE_MESSAGE)
                            .exec_async(&mut connection)
                            .await
                    }
                }
            }
        })
        .collect();
    futures_util::stream::iter(calls)
        .buffer_unordered(SHARDED_IN_FLIGHT)
        .try_collect()
        .await
}

#[derive(Clone, Copy)]
enum Sharded {
    Subscribe,
    Unsubscribe,
    Probe,
}

// === impl RedisClock ===

/// The node's view of the Redis clock: what `TIME` answered, advanced by the node's monotonic
/// clock since just before it was asked. Starting the count before the call makes the view
/// run ahead of Redis by at most the round trip, never behind it.
#[derive(Debug, Clone, Copy)]
struct RedisClock {
    /// Redis time, in Unix milliseconds, when `TIME` answered.
    redis_ms: u64,
    /// Local time just before `TIME` was sent.
    asked: Instant,
}

impl RedisClock {
    /// Reads Redis's clock with `TIME` (on a Cluster, any node's: their clocks agree far
    /// closer than [`AHEAD_BOUND`]).
    async fn read(redis: &mut Commands) -> Result<Self, RedisError> {
        let asked = Instant::now();
        let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(redis).await?;
        Ok(Self {
            redis_ms: seconds.saturating_mul(1000).saturating_add(micros / 1000),
            asked,
        })
    }

    /// The newest id milliseconds a live event may carry now: Redis time plus [`AHEAD_BOUND`].
    fn horizon_ms(&self) -> u64 {
        let elapsed = self.asked.elapsed() + AHEAD_BOUND;
        self.redis_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A delay between half and all of `max`, so that nodes that lost Redis together do not
/// reconnect in lockstep.
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    max / 2 + max.mul_f64(f64::from(nanos % 1000) / 2000.0)
}
