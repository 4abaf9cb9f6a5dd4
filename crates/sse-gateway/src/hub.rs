//! [`Hub`]: the fan-out table. Which local clients want which topic, where each topic stands,
//! and the one place an event from Redis is encoded and handed to every subscriber.
//!
//! - **Ref-counted subscriptions.** A topic's first local client makes the hub ask the
//!   pub/sub link (`PubSubLink`, which drives the hub from its side) to `SUBSCRIBE`; its
//!   last one leaving (dropping its [`Membership`]) makes it `UNSUBSCRIBE`. Each time a topic
//!   gets a first client again its state starts a new generation (a number), so a late
//!   confirmation for an earlier generation is never taken for this one's.
//! - **Positions.** Each topic knows the last event id this node delivered for it. It starts
//!   as the stream's tip, read after Redis confirmed the subscription: from then on every
//!   event reaches this node live, so a client that starts "now" starts exactly there, without
//!   a Redis call of its own. Events at or below that id (duplicates after a gap fill, or
//!   events before the subscription) are dropped here, once per node.
//! - **Live ids are checked against the Redis clock.** A pub/sub message is not proof that
//!   its event is in the stream (anyone with Redis access can `PUBLISH`), and one id far in
//!   the future would move the position past every real event to come. So a live event whose
//!   id is beyond the caller's horizon (see `pubsub`: the node's view of Redis time plus a
//!   bound) is refused, unless it stays within the millisecond of the last id delivered
//!   (a stream whose newest id is ahead of the clock goes on in that millisecond). Events
//!   read from the stream itself are not checked: the stream is the record.
//! - **Recent events in memory.** Each live topic keeps its last events, as delivered, in a
//!   [`Ring`] (see `replay_cache`), so a resume from a recent position needs no Redis read;
//!   with the cache on, a topic whose last client left stays subscribed for
//!   `--replay-cache-linger`, so the clients of a storm that come back find it still there.
//! - **The hot path.** [`Hub::deliver`] encodes an event once into a shared [`Frame`] and
//!   pushes it to every subscriber's [`Outbox`] under a read lock, never awaiting: a push is a
//!   refcount bump and, for a client too far behind, closing its outbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sse_core::control::{Truncation, history_truncated};
use sse_core::schema::PublishedEvent;
use sse_core::{EventId, Frame, Topic};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::outbox::{Delivery, Gap, Outbox};
use crate::replay_cache::{Budget, CacheLimits, Ring};

/// What became of an event handed to [`Hub::deliver_live`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Pushed to every local subscriber.
    Yes,
    /// Dropped: the topic is not live here, or the event is not newer than the last one.
    Skipped,
    /// Refused: the id is beyond the horizon (module docs); the position did not move.
    Ahead,
}

/// Identifies one client's membership.
type ClientId = u64;

/// What the hub asks of the pub/sub link. The link checks each against the hub's current
/// state when it gets to it, so stale commands are harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkCommand {
    /// `topic` (in its generation `generation`) has its first local client.
    Subscribe {
        /// The topic.
        topic: Topic,
        /// The generation of the topic's state that wants the subscription.
        generation: u64,
    },
    /// `topic` lost its last local client.
    Unsubscribe(Topic),
}

/// Where a client joining a topic starts.
#[derive(Debug)]
pub(crate) enum Start {
    /// The topic is live on this node: start after this id.
    At(EventId),
    /// The subscription is not confirmed yet: the receiver yields the start once it is.
    Pending(watch::Receiver<Option<EventId>>),
}

/// A topic a pub/sub (re)connection has to subscribe to, and where the topic stands.
#[derive(Debug)]
pub(crate) struct Subscribed {
    /// The topic.
    pub(crate) topic: Topic,
    /// Its current generation.
    pub(crate) generation: u64,
    /// The last id delivered, or `None` if the subscription was never confirmed.
    pub(crate) last_id: Option<EventId>,
}

struct TopicState {
    generation: u64,
    subscribers: HashMap<ClientId, Arc<Outbox>>,
    /// Where the topic stands, and its recent events.
    live: Mutex<Live>,
    /// The stream's tip when the subscription was confirmed, for clients that joined before.
    started: watch::Sender<Option<EventId>>,
    /// Since when the topic has no local client, while it lingers.
    idle_since: Option<Instant>,
}

/// What changes with every event, under one lock: a resume served from the ring sees the
/// ring and the position agree.
struct Live {
    /// The last id delivered on this node; `None` until the subscription is confirmed.
    last_id: Option<EventId>,
    /// The events delivered after the ring's floor.
    ring: Ring,
}

/// The fan-out table; see the module docs.
pub(crate) struct Hub {
    topics: RwLock<HashMap<Topic, TopicState>>,
    clients: Mutex<HashMap<ClientId, Arc<Outbox>>>,
    link: mpsc::UnboundedSender<LinkCommand>,
    next_client: AtomicU64,
    next_generation: AtomicU64,
    metrics: Arc<Metrics>,
    budget: Arc<Budget>,
    /// How long a topic stays subscribed after its last client left (zero without a cache).
    linger: Duration,
}

impl Hub {
    /// A hub keeping recent events within `cache`, its topics lingering for `linger` after
    /// their last client (when the cache is on), and the receiving end of its commands for
    /// the pub/sub link.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        cache: CacheLimits,
        linger: Duration,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<LinkCommand>) {
        let (link, commands) = mpsc::unbounded_channel();
        let budget = Budget::new(cache, metrics.replay_cache_bytes.clone());
        let linger = if budget.enabled() {
            linger
        } else {
            Duration::ZERO
        };
        let hub = Self {
            topics: RwLock::default(),
            clients: Mutex::default(),
            link,
            next_client: AtomicU64::new(0),
            next_generation: AtomicU64::new(0),
            metrics,
            budget,
            linger,
        };
        (Arc::new(hub), commands)
    }

    /// Adds `outbox` as a subscriber of every topic in `topics` (distinct), returning the
    /// guard that removes it again and where it starts on each topic, in the same order.
    pub(crate) fn join(
        self: &Arc<Self>,
        topics: &[Topic],
        outbox: Arc<Outbox>,
    ) -> (Membership, Vec<Start>) {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut starts = Vec::with_capacity(topics.len());
        {
            let mut map = write(&self.topics);
            for topic in topics {
                let state = map.entry(topic.clone()).or_insert_with(|| {
                    let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                    self.metrics.topics_active.inc();
                    tracing::info!(%topic, "first local subscriber: subscribing");
                    // The link outlives every hub user but the last; a send to a stopped link
                    // only happens during shutdown, when nothing waits for it.
                    let _ = self.link.send(LinkCommand::Subscribe {
                        topic: topic.clone(),
                        generation,
                    });
                    TopicState {
                        generation,
                        subscribers: HashMap::new(),
                        live: Mutex::new(Live {
                            last_id: None,
                            ring: Ring::new(self.budget.clone()),
                        }),
                        started: watch::Sender::new(None),
                        idle_since: None,
                    }
                });
                state.subscribers.insert(id, outbox.clone());
                state.idle_since = None;
                starts.push(match lock(&state.live).last_id {
                    Some(last_id) => Start::At(last_id),
                    None => Start::Pending(state.started.subscribe()),
                });
            }
        }
        lock(&self.clients).insert(id, outbox);
        let membership = Membership {
            hub: self.clone(),
            id,
            topics: topics.to_vec(),
        };
        (membership, starts)
    }

    fn leave(&self, id: ClientId, topics: &[Topic]) {
        lock(&self.clients).remove(&id);
        let mut map = write(&self.topics);
        for topic in topics {
            let Some(state) = map.get_mut(topic) else {
                continue;
            };
            state.subscribers.remove(&id);
            if !state.subscribers.is_empty() {
                continue;
            }
            if self.linger.is_zero() {
                self.remove(&mut map, topic);
            } else {
                state.idle_since = Some(Instant::now());
            }
        }
    }

    fn remove(&self, map: &mut HashMap<Topic, TopicState>, topic: &Topic) {
        map.remove(topic);
        self.metrics.topics_active.dec();
        tracing::info!(%topic, "no local subscriber left: unsubscribing");
        let _ = self.link.send(LinkCommand::Unsubscribe(topic.clone()));
    }

    /// Unsubscribes, every second until `stopping`, from the topics that lingered long
    /// enough without a client. Returns at once when topics never linger.
    pub(crate) async fn sweep_lingering(self: Arc<Self>, stopping: CancellationToken) {
        if self.linger.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stopping.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let expired: Vec<Topic> = read(&self.topics)
                .iter()
                .filter(|(_, state)| {
                    state
                        .idle_since
                        .is_some_and(|since| now.duration_since(since) >= self.linger)
                })
                .map(|(topic, _)| topic.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut map = write(&self.topics);
            for topic in expired {
                // Checked again under the write lock: a client may have come back.
                if map
                    .get(&topic)
                    .is_some_and(|state| state.idle_since.is_some())
                {
                    self.remove(&mut map, &topic);
                }
            }
        }
    }

    /// Delivers an event read from `topic`'s stream to every local subscriber, unless the
    /// topic is not live here (not subscribed, or not confirmed yet) or the event is not newer
    /// than the last one delivered. Returns whether it was delivered.
    pub(crate) fn deliver(&self, topic: &Topic, event: &PublishedEvent) -> bool {
        self.offer(topic, event, u64::MAX) == Delivered::Yes
    }

    /// Delivers an event from pub/sub like [`Hub::deliver`], but refuses it when its id's
    /// milliseconds exceed `horizon_ms` and the millisecond of the last id delivered.
    pub(crate) fn deliver_live(
        &self,
        topic: &Topic,
        event: &PublishedEvent,
        horizon_ms: u64,
    ) -> Delivered {
        self.offer(topic, event, horizon_ms)
    }

    fn offer(&self, topic: &Topic, event: &PublishedEvent, horizon_ms: u64) -> Delivered {
        let map = read(&self.topics);
        let Some(state) = map.get(topic) else {
            return Delivered::Skipped;
        };
        let delivery = {
            let mut live = lock(&state.live);
            match live.last_id {
                Some(last) if event.id <= last => return Delivered::Skipped,
                Some(last) if event.id.ms > horizon_ms.max(last.ms) => return Delivered::Ahead,
                Some(_) => {}
                None => return Delivered::Skipped,
            }
            let id = event.id.to_string();
            let Ok(frame) = Frame::new(Some(&id), event.name.as_ref(), &event.data) else {
                return Delivered::Skipped; // a stream id never contains a line break
            };
            let delivery = Arc::new(Delivery {
                topic: topic.clone(),
                id: event.id,
                frame,
            });
            live.last_id = Some(event.id);
            live.ring.push(&delivery);
            delivery
        };
        for outbox in state.subscribers.values() {
            if !outbox.push(delivery.clone()) {
                self.metrics.slow_consumer_disconnects.inc();
            }
        }
        Delivered::Yes
    }

    /// Marks `topic`'s subscription confirmed, with the stream's tip as its position, if the
    /// topic is still in generation `generation` and not live yet. Returns whether it did.
    pub(crate) fn activate(&self, topic: &Topic, generation: u64, tip: EventId) -> bool {
        let map = read(&self.topics);
        let Some(state) = map
            .get(topic)
            .filter(|state| state.generation == generation)
        else {
            return false;
        };
        let mut live = lock(&state.live);
        if live.last_id.is_some() {
            return false;
        }
        live.last_id = Some(tip);
        live.ring.start_after(tip);
        state.started.send_replace(Some(tip));
        true
    }

    /// Whether `topic` is in generation `generation` and still waits for its subscription.
    pub(crate) fn wants_subscription(&self, topic: &Topic, generation: u64) -> bool {
        read(&self.topics).get(topic).is_some_and(|state| {
            state.generation == generation && lock(&state.live).last_id.is_none()
        })
    }

    /// The last id delivered for `topic`, if it is live here.
    pub(crate) fn position(&self, topic: &Topic) -> Option<EventId> {
        read(&self.topics)
            .get(topic)
            .and_then(|state| lock(&state.live).last_id)
    }

    /// The events of `topic` after `from`, if its ring holds exactly that (see
    /// `replay_cache`).
    pub(crate) fn recent(&self, topic: &Topic, from: EventId) -> Option<Vec<Arc<Delivery>>> {
        read(&self.topics)
            .get(topic)
            .and_then(|state| lock(&state.live).ring.since(from))
    }

    /// Records that `topic`'s stream does not continue exactly from `from`, the topic's
    /// position when a pub/sub gap began (the stream was trimmed past it, or Redis lost it):
    /// its recent events are dropped, so no resume is served across the gap, and every
    /// local client is told with `sse.truncated` before the events read after the gap.
    pub(crate) fn lost_history(&self, topic: &Topic, reason: Truncation, from: EventId) {
        let map = read(&self.topics);
        let Some(state) = map.get(topic) else {
            return;
        };
        lock(&state.live).ring.forget();
        let gap = Arc::new(Gap {
            topic: topic.clone(),
            from,
            notice: history_truncated(topic, reason, from),
        });
        for outbox in state.subscribers.values() {
            if !outbox.push_gap(gap.clone()) {
                self.metrics.slow_consumer_disconnects.inc();
            }
        }
    }

    /// Whether `topic` is still wanted here (by a local client, or lingering).
    pub(crate) fn has_topic(&self, topic: &Topic) -> bool {
        read(&self.topics).contains_key(topic)
    }

    /// Every topic wanted here, for a pub/sub connection to subscribe to.
    pub(crate) fn subscribed(&self) -> Vec<Subscribed> {
        read(&self.topics)
            .iter()
            .map(|(topic, state)| Subscribed {
                topic: topic.clone(),
                generation: state.generation,
                last_id: lock(&state.live).last_id,
            })
            .collect()
    }

    /// The streams open here per topic; topics without one (lingering) are left out.
    pub(crate) fn local_counts(&self) -> HashMap<Topic, usize> {
        read(&self.topics)
            .iter()
            .filter(|(_, state)| !state.subscribers.is_empty())
            .map(|(topic, state)| (topic.clone(), state.subscribers.len()))
            .collect()
    }

    /// Every connected client's outbox (for heartbeats and draining).
    pub(crate) fn outboxes(&self) -> Vec<Arc<Outbox>> {
        lock(&self.clients).values().cloned().collect()
    }
}

/// A client's subscription to its topics; dropping it leaves the hub.
pub(crate) struct Membership {
    hub: Arc<Hub>,
    id: ClientId,
    topics: Vec<Topic>,
}

impl Membership {
    /// See [`Hub::recent`].
    pub(crate) fn recent(&self, topic: &Topic, from: EventId) -> Option<Vec<Arc<Delivery>>> {
        self.hub.recent(topic, from)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.leave(self.id, &self.topics);
    }
}

// The hub's locks guard plain data updated without awaiting and without calling out, so a
// poisoned lock (a panic elsewhere while holding it) leaves consistent data: use it as is.

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Queued;
    use bytes::Bytes;
    use std::task::{Context, Poll, Waker};

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(
            1024,
            tokio_util::sync::CancellationToken::new(),
            false,
        ))
    }

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    fn event(ms: u64) -> PublishedEvent {
        PublishedEvent {
            id: EventId::new(ms, 0),
            name: None,
            data: Bytes::from_static(b"x"),
        }
    }

    fn taken(outbox: &Outbox) -> Vec<u64> {
        match outbox.poll_take(&mut Context::from_waker(Waker::noop()), true) {
            Poll::Ready(batch) => batch
                .events
                .iter()
                .map(|queued| match queued {
                    Queued::Event(delivery) => delivery.id.ms,
                    Queued::Gap(_) => panic!("no gap was reported"),
                })
                .collect(),
            Poll::Pending => Vec::new(),
        }
    }

    #[test]
    fn subscribes_on_the_first_client_and_unsubscribes_after_the_last() {
        let (hub, mut commands) =
            Hub::new(Arc::new(Metrics::new()), CacheLimits::OFF, Duration::ZERO);
        let a = topic("a");
        let (first, _) = hub.join(std::slice::from_ref(&a), outbox());
        let (second, _) = hub.join(std::slice::from_ref(&a), outbox());
        assert_eq!(
            commands.try_recv(),
            Ok(LinkCommand::Subscribe {
                topic: a.clone(),
                generation: 0
            })
        );
        assert!(
            commands.try_recv().is_err(),
            "one subscription for two clients"
        );
        drop(first);
        assert!(commands.try_recv().is_err());
        drop(second);
        assert_eq!(commands.try_recv(), Ok(LinkCommand::Unsubscribe(a.clone())));
        assert!(!hub.has_topic(&a));
    }

    #[test]
    fn delivers_only_live_newer_events_to_every_subscriber() {
        let (hub, _commands) = Hub::new(Arc::new(Metrics::new()), CacheLimits::OFF, Duration::ZERO);
        let a = topic("a");
        let (one, two) = (outbox(), outbox());
        let (_m1, starts) = hub.join(std::slice::from_ref(&a), one.clone());
        assert!(matches!(starts[0], Start::Pending(_)));
        assert!(!hub.deliver(&a, &event(5)), "not live before activation");
        assert!(hub.activate(&a, 0, EventId::new(5, 0)));
        assert!(!hub.activate(&a, 0, EventId::new(9, 0)), "activates once");
        let (_m2, starts) = hub.join(std::slice::from_ref(&a), two.clone());
        assert!(matches!(starts[0], Start::At(id) if id == EventId::new(5, 0)));
        assert!(!hub.deliver(&a, &event(5)), "not newer than the tip");
        assert!(hub.deliver(&a, &event(6)));
        assert!(!hub.deliver(&a, &event(6)), "a duplicate");
        assert_eq!(taken(&one), [6]);
        assert_eq!(taken(&two), [6]);
    }

    #[test]
    fn live_ids_beyond_the_horizon_are_refused_without_moving_the_position() {
        let (hub, _commands) = Hub::new(Arc::new(Metrics::new()), CacheLimits::OFF, Duration::ZERO);
        let a = topic("a");
        let one = outbox();
        let (_m, _) = hub.join(std::slice::from_ref(&a), one.clone());
        assert!(hub.activate(&a, 0, EventId::new(100, 0)));
        assert_eq!(hub.deliver_live(&a, &event(10_000), 200), Delivered::Ahead);
        assert_eq!(hub.position(&a), Some(EventId::new(100, 0)));
        assert_eq!(hub.deliver_live(&a, &event(150), 200), Delivered::Yes);
        assert_eq!(hub.deliver_live(&a, &event(120), 200), Delivered::Skipped);
        // Ids in the last delivered millisecond pass even when the clock is behind them.
        let same_ms = PublishedEvent {
            id: EventId::new(150, 1),
            ..event(150)
        };
        assert_eq!(hub.deliver_live(&a, &same_ms, 0), Delivered::Yes);
        assert!(
            hub.deliver(&a, &event(10_000)),
            "the stream itself is not checked"
        );
        assert_eq!(taken(&one), [150, 150, 10_000]);
    }

    #[test]
    fn a_stale_generation_never_activates_a_newer_one() {
        let (hub, _commands) = Hub::new(Arc::new(Metrics::new()), CacheLimits::OFF, Duration::ZERO);
        let a = topic("a");
        let (first, _) = hub.join(std::slice::from_ref(&a), outbox());
        drop(first);
        let (_second, _) = hub.join(std::slice::from_ref(&a), outbox());
        assert!(!hub.wants_subscription(&a, 0));
        assert!(!hub.activate(&a, 0, EventId::new(1, 0)));
        assert!(hub.wants_subscription(&a, 1));
        assert!(hub.activate(&a, 1, EventId::new(1, 0)));
    }
}
