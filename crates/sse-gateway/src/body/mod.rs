//! [`SseBody`]: one client's event stream, as an `http_body::Body` that hyper polls.
//!
//! It goes through three phases, each driven by `poll_frame`, never by a task of its own:
//!
//! 1. **Starting**: the first bytes (`retry:` and a comment) go out at once; then it waits
//!    until Redis confirmed the subscription of every topic, so that from here on every new
//!    event reaches the client's outbox. A client without a `Last-Event-ID` then gets its
//!    position at once as a bare `id:` line, and goes live.
//! 2. **Replaying** (resuming clients): each topic is replayed from the client's position:
//!    from the node's recent events when they hold it (`replay_cache`, no Redis read), else
//!    from the topic's stream, page by page, each page shared with other clients reading it
//!    (`shared_reads`), preceded by an `sse.truncated` control event when the position
//!    cannot be continued exactly. Live events queue in the outbox meanwhile.
//! 3. **Live**: events are taken from the outbox in batches; any at or below the client's
//!    position on its topic (already replayed) are skipped, so the hand-over from replay to
//!    live has no gap and no duplicate.
//!
//! A bounded stream (`max_events`, `max_seconds`) ends once it wrote its last event or its time
//! is up; the client resumes from its last id like after any other end. A stream opened with
//! a token ends when the token expires, after an `sse.token_expired` control event: the client
//! fetches a fresh token and resumes from its last id, losing nothing.
//!
//! The client's id is the event's own stream id for a one-topic stream (so every such client
//! shares the event's encoded bytes) and its [`Cursor`] for a multi-topic stream. The stream
//! ends when the outbox is closed (the client fell behind, or the node drains), or on a Redis
//! error while replaying: the client reconnects and resumes from its last id.

use sse_core::ErrorChain;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sse_core::control::{history_truncated, token_expired};
use sse_core::frame::{self, HEARTBEAT, id_tail};
use sse_core::{Cursor, EventId, Frame, Topic};

use crate::app::StreamSlot;
use crate::history::{HistoryError, Resume};
use crate::hub::{Membership, Start};
use crate::metrics::Metrics;
use crate::outbox::{Closed, Delivery, Gap, Outbox, Queued};
use crate::shared_reads::{Position, SharedReads, Ticket};

const CURSOR_IS_AN_ID: &str = "an encoded cursor holds only letters, digits, '-' and '.'";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `max_events` and `max_seconds`: a stream that ends by itself, for load tests and for
/// clients that poll in bounded requests rather than hold a stream open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// End after this many events (control events not counted).
    pub(crate) max_events: Option<u64>,
    /// End after this long.
    pub(crate) max_duration: Option<std::time::Duration>,
}

/// One page of a topic's history for this client.
struct Fetched {
    topic: Topic,
    events: Replayed,
}

/// Where a page of history came from.
enum Replayed {
    /// The node's recent events: everything after the position, nothing to read next.
    Memory(Vec<Arc<Delivery>>),
    /// A page of the topic's stream; `stale` when the read was sent before this stream's
    /// ticket (`shared_reads`): then the page cannot end the replay.
    Stream { resume: Arc<Resume>, stale: bool },
}

enum Phase {
    /// Waiting for the topics' subscriptions; yields each topic's start, or `None` if the
    /// hub went away.
    Starting(BoxFuture<Option<Vec<EventId>>>),
    Replaying {
        /// Topics still to replay after the one being read.
        queue: VecDeque<Topic>,
        fetch: BoxFuture<Result<Fetched, Arc<HistoryError>>>,
    },
    Live,
}

/// Everything a stream starts from.
pub(crate) struct Setup {
    /// The client's distinct topics, in the order `starts` follows.
    pub(crate) topics: Vec<Topic>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) membership: Membership,
    pub(crate) starts: Vec<Start>,
    /// The client's resume position, if it sent one.
    pub(crate) resume: Option<Cursor>,
    /// When the stream ends by itself, if ever.
    pub(crate) bounds: Bounds,
    pub(crate) reads: Arc<SharedReads>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) slot: StreamSlot,
    pub(crate) retry_ms: u64,
    /// How long the subscriber's token stays valid, when it has one.
    pub(crate) token_expiry: Option<std::time::Duration>,
}

/// A client's event stream; see the module docs.
pub(crate) struct SseBody {
    topics: Vec<Topic>,
    outbox: Arc<Outbox>,
    cursor: Cursor,
    /// Whether the id is the multi-topic cursor (else each event's own id).
    multi: bool,
    phase: Phase,
    /// Bytes ready to go out, in order.
    out: VecDeque<Bytes>,
    /// Events taken from the outbox, not yet written.
    live: VecDeque<Queued>,
    /// When they were taken, in ms since the epoch: the clock is read once per batch, not
    /// once per event (a burst to many streams would read it once per delivery).
    taken_ms: u64,
    reads: Arc<SharedReads>,
    /// Taken once every topic is live: which shared reads this stream may join.
    ticket: Ticket,
    metrics: Arc<Metrics>,
    resuming: bool,
    /// Events still to send before a bounded stream ends (`max_events`).
    remaining: Option<u64>,
    /// When a bounded stream ends (`max_seconds`); a timer only for streams that ask for one.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the subscriber's token expires, if it has one.
    token_expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set once a bound is reached: the stream ends when `out` is written.
    ending: bool,
    // Held for their `Drop`: leaving the hub, freeing the connection slot.
    membership: Membership,
    _slot: StreamSlot,
}

impl SseBody {
    /// Counts a stream whose connection was given up because its client vanished.
    pub(crate) fn client_vanished(&self) {
        self.metrics.dead_peer_disconnects.inc();
    }

    /// A stream for `setup`; its first bytes are ready at once.
    pub(crate) fn new(setup: Setup) -> Self {
        let waits: Vec<_> = setup.starts.into_iter().map(wait_for_start).collect();
        let starting: BoxFuture<Option<Vec<EventId>>> = Box::pin(async move {
            let mut starts = Vec::with_capacity(waits.len());
            for wait in waits {
                starts.push(wait.await?);
            }
            Some(starts)
        });
        let resuming = setup.resume.is_some();
        let cursor = setup.resume.unwrap_or_default();
        Self {
            multi: setup.topics.len() > 1,
            topics: setup.topics,
            outbox: setup.outbox,
            cursor,
            phase: Phase::Starting(starting),
            out: VecDeque::from([
                frame::retry(setup.retry_ms),
                frame::comment("stream open").unwrap_or(HEARTBEAT),
            ]),
            live: VecDeque::new(),
            taken_ms: 0,
            reads: setup.reads,
            ticket: 0,
            metrics: setup.metrics,
            resuming,
            remaining: setup.bounds.max_events,
            deadline: setup
                .bounds
                .max_duration
                .map(|duration| Box::pin(tokio::time::sleep(duration))),
            token_expiry: setup
                .token_expiry
                .map(|remaining| Box::pin(tokio::time::sleep(remaining))),
            ending: false,
            membership: setup.membership,
            _slot: setup.slot,
        }
    }

    /// Advances the stream by one step: `Ready(true)` when it produced output or changed
    /// phase, `Ready(false)` when it has ended, `Pending` when there is nothing to do yet.
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        match &mut self.phase {
            Phase::Starting(starting) => match starting.as_mut().poll(cx) {
                Poll::Ready(Some(starts)) => {
                    self.started(starts);
                    Poll::Ready(true)
                }
                Poll::Ready(None) => Poll::Ready(false),
                Poll::Pending => self.poll_signals(cx),
            },
            Phase::Replaying { fetch, .. } => match fetch.as_mut().poll(cx) {
                Poll::Ready(Ok(fetched)) => {
                    self.replayed(fetched);
                    Poll::Ready(true)
                }
                Poll::Ready(Err(error)) => {
                    tracing::warn!(error = %ErrorChain(&*error), "replay failed; ending the stream so the client resumes");
                    Poll::Ready(false)
                }
                Poll::Pending => self.poll_signals(cx),
            },
            Phase::Live => {
                if let Some(queued) = self.live.pop_front() {
                    match queued {
                        Queued::Event(delivery) => self.deliver_live(&delivery),
                        Queued::Gap(gap) => self.missed(&gap),
                    }
                    return Poll::Ready(true);
                }
                match self.outbox.poll_take(cx, true) {
                    Poll::Ready(batch) if batch.closed.is_some() => {
                        self.closed(batch.closed);
                        Poll::Ready(false)
                    }
                    Poll::Ready(batch) => {
                        if batch.heartbeat {
                            self.out.push_back(HEARTBEAT);
                        }
                        self.live = batch.events;
                        self.taken_ms = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |now| u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
                        Poll::Ready(true)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    /// Heartbeats and closes while starting or replaying (events wait in the outbox).
    fn poll_signals(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        match self.outbox.poll_take(cx, false) {
            Poll::Ready(batch) if batch.closed.is_some() => {
                self.closed(batch.closed);
                Poll::Ready(false)
            }
            Poll::Ready(_heartbeat) => {
                self.out.push_back(HEARTBEAT);
                Poll::Ready(true)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn closed(&self, reason: Option<Closed>) {
        match reason {
            Some(Closed::Overflow) => tracing::debug!("client fell behind; ending its stream"),
            Some(Closed::Drain) => tracing::debug!("draining; ending the stream"),
            None => {}
        }
    }

    /// Every topic is live: fix the positions, then replay or go live.
    fn started(&mut self, starts: Vec<EventId>) {
        self.ticket = self.reads.ticket();
        if !self.resuming {
            self.cursor = Cursor::new(self.topics.iter().cloned().zip(starts));
            let position = id_tail(&self.cursor.encode()).expect(CURSOR_IS_AN_ID);
            self.out.push_back(position);
            self.phase = Phase::Live;
            return;
        }
        self.replay_all();
    }

    /// Replays every topic from the client's position, or goes live if the replay is done.
    fn replay_all(&mut self) {
        let mut queue: VecDeque<Topic> =
            self.cursor.iter().map(|(topic, _)| topic.clone()).collect();
        self.phase = match queue.pop_front() {
            Some(topic) => Phase::Replaying {
                fetch: self.fetch(topic, None),
                queue,
            },
            None => Phase::Live,
        };
    }

    /// The first page of `topic` after the client's position on it (from memory if the
    /// node holds it), or, given `after`, the page of its stream after that id.
    fn fetch(
        &self,
        topic: Topic,
        after: Option<EventId>,
    ) -> BoxFuture<Result<Fetched, Arc<HistoryError>>> {
        let position = match after {
            Some(after) => Position::After(after),
            None => {
                let from = self.cursor.get(&topic).unwrap_or(EventId::ZERO);
                if let Some(recent) = self.membership.recent(&topic, from) {
                    self.metrics.replays.with_label_values(&["memory"]).inc();
                    let events = Replayed::Memory(recent);
                    return Box::pin(std::future::ready(Ok(Fetched { topic, events })));
                }
                self.metrics.replays.with_label_values(&["redis"]).inc();
                Position::From(from)
            }
        };
        let read = self.reads.read(&topic, position);
        let ticket = self.ticket;
        Box::pin(async move {
            let (sent, resume) = read.await;
            let events = Replayed::Stream {
                resume: resume?,
                stale: sent < ticket,
            };
            Ok(Fetched { topic, events })
        })
    }

    fn replayed(&mut self, fetched: Fetched) {
        let Phase::Replaying { queue, .. } = &mut self.phase else {
            return;
        };
        let mut queue = std::mem::take(queue);
        let Fetched { topic, events } = fetched;
        let (truncated, next, stale) = match &events {
            Replayed::Memory(_) => (None, None, false),
            Replayed::Stream { resume, stale } => (resume.truncated, resume.page.next, *stale),
        };
        if let Some(reason) = truncated {
            let from = self.cursor.get(&topic).unwrap_or(EventId::ZERO);
            self.metrics.history_truncated.inc();
            tracing::info!(%topic, reason = reason.as_str(), %from, "resume position cannot be continued exactly");
            self.out
                .push_back(history_truncated(&topic, reason, from).message().clone());
            // What follows is everything retained: the client's position starts over.
            self.cursor.set(&topic, EventId::ZERO);
        }
        match &events {
            Replayed::Memory(recent) => {
                for delivery in recent {
                    self.replay_event(&topic, delivery.id, || Some(delivery.frame.clone()));
                }
            }
            Replayed::Stream { resume, .. } => {
                for event in &resume.page.events {
                    self.replay_event(&topic, event.id, || {
                        let id = event.id.to_string();
                        Frame::new(Some(&id), event.name.as_ref(), &event.data).ok()
                    });
                }
            }
        }
        self.outbox.note_write();
        // A stale last page: read on from the client's position.
        let next = next.or_else(|| stale.then(|| self.cursor.get(&topic).unwrap_or(EventId::ZERO)));
        let next = match next {
            Some(after) => Some((topic, Some(after))),
            None => queue.pop_front().map(|topic| (topic, None)),
        };
        match next {
            Some((topic, after)) => {
                self.phase = Phase::Replaying {
                    fetch: self.fetch(topic, after),
                    queue,
                }
            }
            None if self.outbox.finish_replay() => self.phase = Phase::Live,
            // Live events were dropped meanwhile (see `outbox`): catch up from the stream.
            None => self.replay_all(),
        }
    }

    /// Writes one event of the replay, unless the client has it already or a bounded stream
    /// got its last event; `frame` encodes it, only when needed.
    fn replay_event(&mut self, topic: &Topic, id: EventId, frame: impl FnOnce() -> Option<Frame>) {
        if self.ending || !self.cursor.advance(topic, id) {
            return;
        }
        let Some(frame) = frame() else {
            return; // a stream id never contains a line break
        };
        self.emit(&frame);
        self.metrics.replayed_events.inc();
        self.metrics.frames_delivered.inc();
    }

    fn deliver_live(&mut self, delivery: &Delivery) {
        if self.ending || !self.cursor.advance(&delivery.topic, delivery.id) {
            return;
        }
        self.emit(&delivery.frame);
        self.metrics.frames_delivered.inc();
        self.metrics
            .delivery_latency
            .observe(self.taken_ms.saturating_sub(delivery.id.ms) as f64 / 1000.0);
    }

    /// Tells the client of events its topic's stream lost after `gap.from`, if it stands
    /// there: one that read past it from the stream itself (resuming during a pub/sub
    /// outage) was told by its own replay, or missed nothing.
    fn missed(&mut self, gap: &Gap) {
        if self.ending || self.cursor.get(&gap.topic).is_none_or(|at| at > gap.from) {
            return;
        }
        self.metrics.history_truncated.inc();
        tracing::info!(topic = %gap.topic, from = %gap.from, "the topic's stream lost events after the client's position");
        self.out.push_back(gap.notice.message().clone());
    }

    /// Queues an event with the client's id: the event's own, or the cursor for several topics.
    fn emit(&mut self, frame: &Frame) {
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(1);
            self.ending |= *remaining == 0;
        }
        if !self.multi {
            self.out.push_back(frame.message().clone());
            return;
        }
        self.out.push_back(frame.fields());
        let tail = id_tail(&self.cursor.encode()).expect(CURSOR_IS_AN_ID);
        self.out.push_back(tail);
    }
}

/// The start position of one topic, once the hub knows it.
async fn wait_for_start(start: Start) -> Option<EventId> {
    match start {
        Start::At(id) => Some(id),
        Start::Pending(mut started) => *started.wait_for(Option::is_some).await.ok()?,
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(deadline) = &mut this.deadline {
            this.ending |= deadline.as_mut().poll(cx).is_ready();
        }
        if let Some(expiry) = &mut this.token_expiry
            && expiry.as_mut().poll(cx).is_ready()
        {
            this.token_expiry = None;
            this.out.push_back(token_expired().message().clone());
            this.ending = true;
        }
        loop {
            if let Some(chunk) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
            }
            if this.ending {
                return Poll::Ready(None);
            }
            match this.step(cx) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests;
