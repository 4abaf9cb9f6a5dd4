//! [`Outbox`]: one client's queue between the hub and its response body, bounded in bytes.
//!
//! The hub pushes without ever waiting: when a client reads too slowly and its queue would
//! exceed the bound, the outbox is closed as [`Closed::Overflow`], its queue dropped, and the
//! client's connection aborted.
//!
//! Why the connection is aborted, not only the stream ended through the body: a client that
//! stopped reading fills its socket, and then the body is never polled again, so it would
//! hold its slot and subscriptions forever. The client reconnects with its `Last-Event-ID`
//! and resumes from the topic's Redis stream, losing nothing. So one slow client costs at
//! most its bound in memory and never delays another.
//!
//! Except while the client is still replaying history: live events queue behind the replay,
//! and a busy topic can fill the bound before a reconnecting client has caught up, which would
//! cut it on every attempt. So during a replay an overflow drops the queued live events
//! instead, as long as the replay is progressing (the body wrote since the previous overflow);
//! the topic's Redis stream still holds them, and the body reads them again before going live
//! ([`Outbox::finish_replay`]). A client that makes no progress at all is cut as usual.
//!
//! Besides events, the hub can queue a [`Gap`]: a topic's stream lost events after the
//! position every live client of it had reached (a pub/sub outage outlasted its retention,
//! or Redis lost data). It waits in the queue in order, so the client learns of it between
//! the last event before the gap and the first after it.
//!
//! Heartbeats need no timer per connection: one shared tick ([`Outbox::tick`]) marks a
//! heartbeat due on every outbox whose body wrote nothing since the previous tick.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use sse_core::{EventId, Frame, Topic};
use tokio_util::sync::CancellationToken;

/// One event as the hub hands it to every subscriber of its topic: encoded once, shared.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The event's topic.
    pub(crate) topic: Topic,
    /// The event's stream id.
    pub(crate) id: EventId,
    /// The event on the wire, with its own id.
    pub(crate) frame: Frame,
}

impl Delivery {
    /// Bytes this delivery counts against a client's bound.
    pub(crate) fn cost(&self) -> usize {
        self.frame.message().len()
    }
}

/// Events of `topic` after `from` that its stream no longer holds: what a client at that
/// position missed, told by `notice` (`sse.truncated`).
#[derive(Debug)]
pub(crate) struct Gap {
    /// The topic whose history lost events.
    pub(crate) topic: Topic,
    /// The position the events were lost after.
    pub(crate) from: EventId,
    /// The control event that says so.
    pub(crate) notice: Frame,
}

/// What the hub queues for a client, in order.
#[derive(Debug, Clone)]
pub(crate) enum Queued {
    /// An event of one of its topics.
    Event(Arc<Delivery>),
    /// Events lost from a topic's stream.
    Gap(Arc<Gap>),
}

impl Queued {
    fn cost(&self) -> usize {
        match self {
            Self::Event(delivery) => delivery.cost(),
            Self::Gap(gap) => gap.notice.message().len(),
        }
    }
}

/// Why an outbox stopped taking events; the body ends the stream once it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The client fell more than its bound behind.
    Overflow,
    /// The node is draining: the client should resume on another node.
    Drain,
}

/// What the body takes out of the outbox in one go.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Events (and gaps), oldest first.
    pub(crate) events: VecDeque<Queued>,
    /// Whether a heartbeat is due (only ever set when `events` is empty).
    pub(crate) heartbeat: bool,
    /// Set when the outbox is closed; then `events` is empty.
    pub(crate) closed: Option<Closed>,
}

/// A client's bounded queue. Shared by the hub (pushing) and the body (taking).
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    /// The most queued bytes allowed (`--client-buffer`).
    capacity: usize,
    /// Cancelled on overflow: the connection task then drops the client's connection.
    connection: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    events: VecDeque<Queued>,
    bytes: usize,
    closed: Option<Closed>,
    heartbeat_due: bool,
    /// Whether the body wrote anything since the last heartbeat tick.
    wrote_since_tick: bool,
    /// The body is replaying history; see the module docs.
    replaying: bool,
    /// Live events were dropped during the replay: the body must read them from the stream.
    dropped: bool,
    /// The body wrote since the last overflow while replaying.
    progressed: bool,
    waker: Option<Waker>,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` bytes of events, for a client whose
    /// connection is aborted by cancelling `connection`, and which starts with a replay of
    /// history if `replaying`.
    pub(crate) fn new(capacity: usize, connection: CancellationToken, replaying: bool) -> Self {
        Self {
            state: Mutex::new(State {
                replaying,
                ..State::default()
            }),
            capacity,
            connection,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the connection, so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an event. Returns `false` if this push overflowed the outbox (which is now
    /// closed); pushing to an already closed outbox is a no-op returning `true`.
    pub(crate) fn push(&self, delivery: Arc<Delivery>) -> bool {
        self.queue(Queued::Event(delivery))
    }

    /// Queues a gap after the events queued so far, like [`Outbox::push`].
    pub(crate) fn push_gap(&self, gap: Arc<Gap>) -> bool {
        self.queue(Queued::Gap(gap))
    }

    fn queue(&self, item: Queued) -> bool {
        let mut state = self.lock();
        if state.closed.is_some() {
            return true;
        }
        let bytes = state.bytes + item.cost();
        if bytes > self.capacity && state.replaying && std::mem::take(&mut state.progressed) {
            state.events = VecDeque::new();
            state.bytes = 0;
            state.dropped = true;
            return true;
        }
        let overflowed = bytes > self.capacity;
        if overflowed {
            state.events = VecDeque::new();
            state.bytes = 0;
            state.closed = Some(Closed::Overflow);
            self.connection.cancel();
        } else {
            state.events.push_back(item);
            state.bytes = bytes;
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        !overflowed
    }

    /// Closes the outbox for `reason` (if still open) and wakes the body.
    pub(crate) fn close(&self, reason: Closed) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.events = VecDeque::new();
            state.bytes = 0;
            state.closed = Some(reason);
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// The heartbeat tick: marks a heartbeat due if the body wrote nothing since the last one.
    pub(crate) fn tick(&self) {
        let mut state = self.lock();
        if std::mem::take(&mut state.wrote_since_tick) {
            return;
        }
        state.heartbeat_due = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// Takes everything queued (only a close or a due heartbeat when `events` is false, as
    /// while a stream is still replaying), or registers the body's waker and returns
    /// `Pending` if there is nothing to take.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, events: bool) -> Poll<Batch> {
        let mut state = self.lock();
        if let Some(closed) = state.closed {
            return Poll::Ready(Batch {
                closed: Some(closed),
                ..Batch::default()
            });
        }
        if events && !state.events.is_empty() {
            state.bytes = 0;
            state.wrote_since_tick = true;
            return Poll::Ready(Batch {
                events: std::mem::take(&mut state.events),
                ..Batch::default()
            });
        }
        if std::mem::take(&mut state.heartbeat_due) {
            return Poll::Ready(Batch {
                heartbeat: true,
                ..Batch::default()
            });
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Records that the body wrote something outside the queue (replayed events), so the
    /// next tick sends no heartbeat and an overflow during the replay is not taken for a stall.
    pub(crate) fn note_write(&self) {
        let mut state = self.lock();
        state.wrote_since_tick = true;
        state.progressed = true;
    }

    /// Ends the replay if no live event was dropped during it (from now on an overflow cuts
    /// the client), and returns whether it ended; if events were dropped, the body must read
    /// the stream again from the client's position first.
    pub(crate) fn finish_replay(&self) -> bool {
        let mut state = self.lock();
        if std::mem::take(&mut state.dropped) {
            return false;
        }
        state.replaying = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn delivery(ms: u64, data: &str) -> Arc<Delivery> {
        let id = EventId::new(ms, 0);
        Arc::new(Delivery {
            topic: Topic::parse("t").unwrap(),
            id,
            frame: Frame::new(Some(&id.to_string()), None, data.as_bytes()).unwrap(),
        })
    }

    /// The event's id milliseconds, or `None` for a gap.
    fn event_ms(queued: &Queued) -> Option<u64> {
        match queued {
            Queued::Event(delivery) => Some(delivery.id.ms),
            Queued::Gap(_) => None,
        }
    }

    fn take(outbox: &Outbox) -> Poll<Batch> {
        outbox.poll_take(&mut Context::from_waker(Waker::noop()), true)
    }

    #[test]
    fn takes_everything_queued_in_order() {
        let outbox = Outbox::new(1024, CancellationToken::new(), false);
        assert!(outbox.push(delivery(1, "a")));
        assert!(outbox.push(delivery(2, "b")));
        let Poll::Ready(batch) = take(&outbox) else {
            panic!("events are ready")
        };
        let ids: Vec<Option<u64>> = batch.events.iter().map(event_ms).collect();
        assert_eq!(ids, [Some(1), Some(2)]);
        assert!(take(&outbox).is_pending());
    }

    #[test]
    fn a_gap_waits_in_order_between_the_events_around_it() {
        let outbox = Outbox::new(1024, CancellationToken::new(), false);
        assert!(outbox.push(delivery(1, "before")));
        let topic = Topic::parse("t").unwrap();
        let notice = sse_core::control::history_truncated(
            &topic,
            sse_core::control::Truncation::Trimmed,
            EventId::new(1, 0),
        );
        assert!(outbox.push_gap(Arc::new(Gap {
            topic,
            from: EventId::new(1, 0),
            notice,
        })));
        assert!(outbox.push(delivery(5, "after")));
        let Poll::Ready(batch) = take(&outbox) else {
            panic!("events are ready")
        };
        let ids: Vec<Option<u64>> = batch.events.iter().map(event_ms).collect();
        assert_eq!(ids, [Some(1), None, Some(5)]);
    }

    #[test]
    fn overflow_closes_and_frees_the_queue() {
        let one = delivery(1, "x").cost();
        let connection = CancellationToken::new();
        let outbox = Outbox::new(one * 2, connection.clone(), false);
        assert!(outbox.push(delivery(1, "x")));
        assert!(outbox.push(delivery(2, "x")));
        assert!(!outbox.push(delivery(3, "x")));
        let Poll::Ready(batch) = take(&outbox) else {
            panic!("the close is ready")
        };
        assert_eq!(batch.closed, Some(Closed::Overflow));
        assert!(connection.is_cancelled(), "the connection is aborted");
        assert!(batch.events.is_empty());
        assert!(
            outbox.push(delivery(4, "x")),
            "a closed outbox ignores pushes"
        );
    }

    #[test]
    fn a_progressing_replay_drops_live_events_instead_of_being_cut() {
        let one = delivery(1, "x").cost();
        let connection = CancellationToken::new();
        let outbox = Outbox::new(one, connection.clone(), true);
        assert!(outbox.push(delivery(1, "x")));
        outbox.note_write();
        assert!(outbox.push(delivery(2, "x")), "dropped, not cut");
        assert!(!connection.is_cancelled());
        assert!(
            !outbox.finish_replay(),
            "the dropped events must be read again"
        );
        assert!(outbox.push(delivery(3, "x")));
        assert!(
            !outbox.push(delivery(4, "x")),
            "no progress since: a stall is cut"
        );
        assert!(connection.is_cancelled());
    }

    #[test]
    fn heartbeats_only_when_idle_since_the_last_tick() {
        let outbox = Outbox::new(1024, CancellationToken::new(), false);
        outbox.push(delivery(1, "a"));
        let _ = take(&outbox);
        outbox.tick();
        assert!(take(&outbox).is_pending(), "it wrote since the last tick");
        outbox.tick();
        let Poll::Ready(batch) = take(&outbox) else {
            panic!("a heartbeat is due")
        };
        assert!(batch.heartbeat && batch.events.is_empty());
    }
}
