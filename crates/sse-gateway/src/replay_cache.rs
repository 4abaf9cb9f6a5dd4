//! [`Ring`]: a topic's most recent events, kept in memory so that a client resuming from a
//! recent position is served without a Redis round trip.
//!
//! In a reconnect storm every client comes back with a `Last-Event-ID` a few events behind;
//! read from Redis, that is one `XRANGE` per client. But this node received those very events
//! a moment ago, in order: the hub keeps each live topic's last ones, already encoded, in a
//! ring, and a resume whose position is inside it is answered from there.
//!
//! **Why it is exact.** The ring holds every event of the topic's stream after its `floor`
//! and up to the topic's position, with nothing missing: it starts empty at the stream's tip
//! when the subscription is confirmed, and takes every event the hub delivers, live or read
//! from the stream after a pub/sub gap, which the hub delivers in order and without gaps.
//! The one gap the node cannot rule out is a pub/sub outage during which the stream was
//! trimmed past the topic's position: the events trimmed away reached nobody here. The link
//! [`forgets`](Ring::forget) the ring then (it can tell: the topic's position is no longer
//! in the stream), and the ring starts over after the next event. A position the ring does
//! not hold exactly (older than its floor, unknown, `0-0`) is read from Redis as before, so
//! a truncated history is still reported the same way.
//!
//! **Bounds.** Each ring holds at most `--replay-cache-events` events and
//! `--replay-cache-bytes` bytes; all rings together at most `--replay-cache-total-bytes`.
//! The oldest events go first; when the node is at its total, the topic that receives an
//! event makes room in its own ring, so a busy topic never evicts a quiet one's events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;
use sse_core::EventId;

use crate::outbox::Delivery;

/// How much the rings may hold (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheLimits {
    /// Events per topic; `0` turns the cache off.
    pub(crate) events: usize,
    /// Bytes per topic.
    pub(crate) bytes: usize,
    /// Bytes over every topic of the node.
    pub(crate) total_bytes: usize,
}

impl CacheLimits {
    /// No cache at all.
    #[cfg(test)]
    pub(crate) const OFF: Self = Self {
        events: 0,
        bytes: 0,
        total_bytes: 0,
    };

    /// Whether any event is kept.
    pub(crate) fn enabled(&self) -> bool {
        self.events > 0 && self.bytes > 0 && self.total_bytes > 0
    }
}

/// The node's limits and the bytes every ring holds together.
pub(crate) struct Budget {
    limits: CacheLimits,
    used: AtomicUsize,
    /// `sse_replay_cache_bytes`.
    gauge: IntGauge,
}

impl Budget {
    /// A budget of `limits`, reporting what is held in `gauge`.
    pub(crate) fn new(limits: CacheLimits, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            limits,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// Whether the cache is on.
    pub(crate) fn enabled(&self) -> bool {
        self.limits.enabled()
    }

    fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        self.gauge.add(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        self.gauge.sub(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    fn over_total(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limits.total_bytes
    }
}

/// One topic's recent events; see the module docs.
pub(crate) struct Ring {
    budget: Arc<Budget>,
    /// The ring holds every event after this id; `None` while nothing is proven.
    floor: Option<EventId>,
    events: VecDeque<Arc<Delivery>>,
    bytes: usize,
}

impl Ring {
    /// An empty ring that proves nothing yet.
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Self {
            budget,
            floor: None,
            events: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Starts the ring after `tip`, the stream's newest id when the subscription was
    /// confirmed: every later event reaches the hub.
    pub(crate) fn start_after(&mut self, tip: EventId) {
        self.clear();
        self.floor = Some(tip);
    }

    /// Takes the event the hub just delivered, the next one of the stream after the ring's
    /// last, evicting the oldest events beyond the bounds.
    pub(crate) fn push(&mut self, delivery: &Arc<Delivery>) {
        if !self.budget.enabled() {
            return;
        }
        if self.floor.is_none() {
            // Nothing proven before it: the ring starts after it.
            self.floor = Some(delivery.id);
            return;
        }
        let cost = delivery.cost();
        self.events.push_back(delivery.clone());
        self.bytes += cost;
        self.budget.take(cost);
        let limits = self.budget.limits;
        while self.events.len() > limits.events
            || self.bytes > limits.bytes
            || (self.budget.over_total() && !self.events.is_empty())
        {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            let cost = oldest.cost();
            self.bytes -= cost;
            self.budget.give_back(cost);
            self.floor = Some(oldest.id);
        }
    }

    /// Every event after `from`, if the ring holds exactly that: `from` is its floor or one
    /// of its events. (`0-0` is never served: whether it continues exactly depends on whether
    /// the stream was ever trimmed, which only Redis knows.)
    pub(crate) fn since(&self, from: EventId) -> Option<Vec<Arc<Delivery>>> {
        let floor = self.floor?;
        if from == EventId::ZERO || !self.budget.enabled() {
            return None;
        }
        let start = if from == floor {
            0
        } else {
            self.events
                .binary_search_by_key(&from, |delivery| delivery.id)
                .ok()?
                + 1
        };
        Some(self.events.range(start..).cloned().collect())
    }

    /// Drops what the ring holds and proves nothing until the next event (a gap the node
    /// cannot rule out).
    pub(crate) fn forget(&mut self) {
        self.clear();
        self.floor = None;
    }

    fn clear(&mut self) {
        self.budget.give_back(self.bytes);
        self.bytes = 0;
        self.events.clear();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sse_core::{Frame, Topic};

    fn budget(events: usize, bytes: usize, total_bytes: usize) -> Arc<Budget> {
        let limits = CacheLimits {
            events,
            bytes,
            total_bytes,
        };
        Budget::new(limits, IntGauge::new("bytes", "bytes").unwrap())
    }

    fn delivery(ms: u64) -> Arc<Delivery> {
        let id = EventId::new(ms, 0).to_string();
        Arc::new(Delivery {
            topic: Topic::parse("t").unwrap(),
            id: EventId::new(ms, 0),
            frame: Frame::new(Some(&id), None, b"0123456789").unwrap(),
        })
    }

    fn ids(events: Option<Vec<Arc<Delivery>>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|d| d.id.ms).collect())
    }

    fn ring_of(budget: &Arc<Budget>, tip: u64, events: impl IntoIterator<Item = u64>) -> Ring {
        let mut ring = Ring::new(budget.clone());
        ring.start_after(EventId::new(tip, 0));
        for ms in events {
            ring.push(&delivery(ms));
        }
        ring
    }

    #[test]
    fn serves_exactly_the_positions_it_holds() {
        let budget = budget(100, 1 << 20, 1 << 20);
        let ring = ring_of(&budget, 10, [11, 12, 13]);
        assert_eq!(ids(ring.since(EventId::new(10, 0))), Some(vec![11, 12, 13]));
        assert_eq!(ids(ring.since(EventId::new(12, 0))), Some(vec![13]));
        assert_eq!(ids(ring.since(EventId::new(13, 0))), Some(vec![]));
        // Older than the floor, between events, ahead of the last: Redis decides.
        for unknown in [EventId::new(9, 0), EventId::new(12, 5), EventId::new(14, 0)] {
            assert_eq!(ids(ring.since(unknown)), None, "{unknown}");
        }
        assert_eq!(ids(ring.since(EventId::ZERO)), None);
    }

    #[test]
    fn a_ring_that_proves_nothing_serves_nothing_until_it_starts_after_an_event() {
        let budget = budget(100, 1 << 20, 1 << 20);
        let mut ring = Ring::new(budget.clone());
        assert_eq!(ids(ring.since(EventId::new(5, 0))), None);
        ring.push(&delivery(5));
        ring.push(&delivery(6));
        assert_eq!(ids(ring.since(EventId::new(5, 0))), Some(vec![6]));
        ring.forget();
        assert_eq!(ids(ring.since(EventId::new(5, 0))), None);
        assert_eq!(ids(ring.since(EventId::new(6, 0))), None);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn evicts_the_oldest_beyond_its_count_and_bytes_and_the_floor_follows() {
        let budget = budget(2, 1 << 20, 1 << 20);
        let ring = ring_of(&budget, 10, [11, 12, 13]);
        assert_eq!(ids(ring.since(EventId::new(10, 0))), None);
        assert_eq!(ids(ring.since(EventId::new(11, 0))), Some(vec![12, 13]));

        let cost = delivery(10).cost(); // as every two-digit id
        let budget = super::tests::budget(100, 2 * cost, 1 << 20);
        let ring = ring_of(&budget, 10, [11, 12, 13]);
        assert_eq!(ids(ring.since(EventId::new(11, 0))), Some(vec![12, 13]));
        assert_eq!(budget.used.load(Ordering::Relaxed), 2 * cost);
        drop(ring);
        assert_eq!(
            budget.used.load(Ordering::Relaxed),
            0,
            "dropping gives back"
        );
    }

    #[test]
    fn at_the_node_total_a_topic_makes_room_in_its_own_ring() {
        let cost = delivery(10).cost(); // as every two-digit id
        let budget = budget(100, 1 << 20, 3 * cost);
        let quiet = ring_of(&budget, 10, [11, 12]);
        let busy = ring_of(&budget, 20, [21, 22, 23]);
        assert_eq!(ids(quiet.since(EventId::new(10, 0))), Some(vec![11, 12]));
        assert_eq!(ids(busy.since(EventId::new(22, 0))), Some(vec![23]));
        assert_eq!(ids(busy.since(EventId::new(21, 0))), None);
        assert!(budget.used.load(Ordering::Relaxed) <= 3 * cost);
    }

    #[test]
    fn off_keeps_nothing_and_serves_nothing() {
        let budget = budget(0, 0, 0);
        let ring = ring_of(&budget, 10, [11, 12]);
        for from in [10, 11, 12] {
            assert_eq!(ids(ring.since(EventId::new(from, 0))), None);
        }
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }
}
