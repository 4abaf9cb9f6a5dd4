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
//! - **The hot path.** [`Hub::deliver`] encodes an event once into a shared [`Frame`] and
//!   pushes it to every subscriber's [`Outbox`] under a read lock, never awaiting: a push is a
//!   refcount bump and, for a client too far behind, closing its outbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sse_core::schema::PublishedEvent;
use sse_core::{EventId, Frame, Topic};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::outbox::{Delivery, Outbox};

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
    /// The last id delivered on this node; `None` until the subscription is confirmed.
    last_id: Mutex<Option<EventId>>,
    /// The stream's tip when the subscription was confirmed, for clients that joined before.
    started: watch::Sender<Option<EventId>>,
}

/// The fan-out table; see the module docs.
pub(crate) struct Hub {
    topics: RwLock<HashMap<Topic, TopicState>>,
    clients: Mutex<HashMap<ClientId, Arc<Outbox>>>,
    link: mpsc::UnboundedSender<LinkCommand>,
    next_client: AtomicU64,
    next_generation: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// A hub, and the receiving end of its commands for the pub/sub link.
    pub(crate) fn new(metrics: Arc<Metrics>) -> (Arc<Self>, mpsc::UnboundedReceiver<LinkCommand>) {
        let (link, commands) = mpsc::unbounded_channel();
        let hub = Self {
            topics: RwLock::default(),
            clients: Mutex::default(),
            link,
            next_client: AtomicU64::new(0),
            next_generation: AtomicU64::new(0),
            metrics,
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
                        last_id: Mutex::new(None),
                        started: watch::Sender::new(None),
                    }
                });
                state.subscribers.insert(id, outbox.clone());
                starts.push(match *lock(&state.last_id) {
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
            if state.subscribers.is_empty() {
                map.remove(topic);
                self.metrics.topics_active.dec();
                tracing::info!(%topic, "last local subscriber left: unsubscribing");
                let _ = self.link.send(LinkCommand::Unsubscribe(topic.clone()));
            }
        }
    }

    /// Delivers an event from Redis to every local subscriber of `topic`, unless the topic
    /// is not live here (not subscribed, or not confirmed yet) or the event is not newer than
    /// the last one delivered. Returns whether it was delivered.
    pub(crate) fn deliver(&self, topic: &Topic, event: &PublishedEvent) -> bool {
        let map = read(&self.topics);
        let Some(state) = map.get(topic) else {
            return false;
        };
        {
            let mut last_id = lock(&state.last_id);
            match *last_id {
                Some(last) if event.id > last => *last_id = Some(event.id),
                _ => return false,
            }
        }
        let id = event.id.to_string();
        let Ok(frame) = Frame::new(Some(&id), event.name.as_ref(), &event.data) else {
            return false; // a stream id never contains a line break
        };
        let delivery = Arc::new(Delivery {
            topic: topic.clone(),
            id: event.id,
            frame,
        });
        for outbox in state.subscribers.values() {
            if !outbox.push(delivery.clone()) {
                self.metrics.slow_consumer_disconnects.inc();
            }
        }
        true
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
        let mut last_id = lock(&state.last_id);
        if last_id.is_some() {
            return false;
        }
        *last_id = Some(tip);
        state.started.send_replace(Some(tip));
        true
    }

    /// Whether `topic` is in generation `generation` and still waits for its subscription.
    pub(crate) fn wants_subscription(&self, topic: &Topic, generation: u64) -> bool {
        read(&self.topics)
            .get(topic)
            .is_some_and(|state| state.generation == generation && lock(&state.last_id).is_none())
    }

    /// Whether any local client still wants `topic`.
    pub(crate) fn has_topic(&self, topic: &Topic) -> bool {
        read(&self.topics).contains_key(topic)
    }

    /// Every topic with local clients, for a pub/sub connection to subscribe to.
    pub(crate) fn subscribed(&self) -> Vec<Subscribed> {
        read(&self.topics)
            .iter()
            .map(|(topic, state)| Subscribed {
                topic: topic.clone(),
                generation: state.generation,
                last_id: *lock(&state.last_id),
            })
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
            Poll::Ready(batch) => batch.events.iter().map(|d| d.id.ms).collect(),
            Poll::Pending => Vec::new(),
        }
    }

    #[test]
    fn subscribes_on_the_first_client_and_unsubscribes_after_the_last() {
        let (hub, mut commands) = Hub::new(Arc::new(Metrics::new()));
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
        let (hub, _commands) = Hub::new(Arc::new(Metrics::new()));
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
    fn a_stale_generation_never_activates_a_newer_one() {
        let (hub, _commands) = Hub::new(Arc::new(Metrics::new()));
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
