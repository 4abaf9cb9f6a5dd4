//! `SseBody`'s phases, driven the way hyper (or the takeover writer) drives them: poll for the
//! next frame. Time is paused where a test is about time (heartbeat, bounds, drain), so each
//! asserts the schedule itself, not how fast this machine is. Replay and its catch-up read a
//! real Redis, written through the real publisher.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use sse_core::schema::PublishedEvent;
use sse_core::{Cursor, Event, EventId, Item, MessageEvent, Parser, Topic};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Bounds, Setup, SseBody};
use crate::app::StreamSlot;
use crate::drain::Drain;
use crate::history::History;
use crate::hub::{Hub, LinkCommand};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::replay_cache::CacheLimits;
use crate::shared_reads::SharedReads;

/// A hub with no pub/sub link: the test confirms subscriptions itself.
struct Node {
    hub: Arc<Hub>,
    commands: mpsc::UnboundedReceiver<LinkCommand>,
    metrics: Arc<Metrics>,
    reads: Arc<SharedReads>,
    open: Arc<AtomicUsize>,
}

impl Node {
    /// A node reading history from `redis_url` (never contacted by streams that don't resume).
    fn new(redis_url: &str, page: usize) -> Self {
        let metrics = Arc::new(Metrics::new());
        let flags = sse_core::runtime::redis::RedisFlags {
            redis_url: redis_url.to_owned(),
            redis_cluster: false,
            redis_timeout: Duration::from_secs(5),
            ..sse_core::runtime::redis::RedisFlags::default()
        };
        let redis = sse_core::runtime::redis::Redis::from_flags(&flags)
            .expect("a valid redis url")
            .commands()
            .expect("a lazy connection");
        let history = History::new(redis, page, metrics.messages_invalid.clone());
        let reads = SharedReads::new(history, metrics.replay_reads_coalesced.clone());
        let (hub, commands) = Hub::new(metrics.clone(), CacheLimits::OFF, Duration::ZERO);
        Self {
            hub,
            commands,
            metrics,
            reads,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A stream of `topic` with a queue of `buffer` bytes, as `GET /events` opens it.
    fn stream(
        &self,
        topic: &Topic,
        resume: Option<Cursor>,
        bounds: Bounds,
        buffer: usize,
    ) -> (SseBody, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(
            buffer,
            CancellationToken::new(),
            resume.is_some(),
        ));
        let (membership, starts) = self.hub.join(std::slice::from_ref(topic), outbox.clone());
        let body = SseBody::new(Setup {
            topics: vec![topic.clone()],
            outbox: outbox.clone(),
            membership,
            starts,
            resume,
            bounds,
            reads: self.reads.clone(),
            metrics: self.metrics.clone(),
            slot: StreamSlot::take(&self.open, 100, &self.metrics).expect("a free slot"),
            retry_ms: 1000,
            token_expiry: None,
        });
        (body, outbox)
    }

    /// Confirms the pending subscription of `topic`, with the stream's tip at `tip`.
    fn confirm(&mut self, topic: &Topic, tip: EventId) {
        let Ok(LinkCommand::Subscribe { generation, .. }) = self.commands.try_recv() else {
            panic!("the first client of {topic} asked for no subscription");
        };
        assert!(self.hub.activate(topic, generation, tip));
    }
}

fn topic() -> Topic {
    Topic::parse("orders").unwrap()
}

fn event(id: EventId, data: &str) -> PublishedEvent {
    PublishedEvent {
        id,
        name: None,
        data: Bytes::copy_from_slice(data.as_bytes()),
    }
}

/// The next chunk the body yields, or `None` once the stream ended.
async fn next_chunk(body: &mut SseBody) -> Option<Bytes> {
    let frame = body.frame().await?.expect("an SseBody never fails");
    Some(frame.into_data().expect("an SseBody yields only data"))
}

/// Reads chunks until `count` events (heartbeats and bare ids are not events) have arrived.
async fn events(body: &mut SseBody, parser: &mut Parser, count: usize) -> Vec<MessageEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = next_chunk(body).await.expect("the stream ended early");
        events.extend(message_events(parser, &chunk));
    }
    events
}

/// The events (not comments or retry fields) in `chunk`.
fn message_events(parser: &mut Parser, chunk: &[u8]) -> Vec<MessageEvent> {
    let items = parser.feed(chunk).expect("valid event-stream bytes");
    items
        .into_iter()
        .filter_map(|item| match item {
            Item::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_new_stream_opens_at_once_waits_for_its_subscription_then_goes_live() {
    let mut node = Node::new("redis://127.0.0.1:1", 10);
    let (mut body, _outbox) = node.stream(&topic(), None, Bounds::default(), 4096);
    let opening = [next_chunk(&mut body).await, next_chunk(&mut body).await];
    assert_eq!(opening[0].as_deref(), Some(&b"retry: 1000\n\n"[..]));
    assert_eq!(opening[1].as_deref(), Some(&b": stream open\n\n"[..]));

    let waiting = tokio::time::timeout(Duration::from_secs(60), next_chunk(&mut body)).await;
    assert!(
        waiting.is_err(),
        "nothing until Redis confirmed the subscription"
    );

    let tip = EventId::new(7, 0);
    node.confirm(&topic(), tip);
    let position = next_chunk(&mut body).await.expect("the start position");
    assert_eq!(&position[..], b"id: 7-0\n\n");

    assert!(
        node.hub
            .deliver(&topic(), &event(EventId::new(8, 0), "live"))
    );
    let live = next_chunk(&mut body).await.expect("the live event");
    assert_eq!(&live[..], b"data: live\nid: 8-0\n\n");
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_a_heartbeat_within_one_to_two_periods() {
    let mut node = Node::new("redis://127.0.0.1:1", 10);
    let (mut body, _outbox) = node.stream(&topic(), None, Bounds::default(), 4096);
    node.confirm(&topic(), EventId::new(1, 0));
    for _ in 0..3 {
        next_chunk(&mut body).await; // retry, comment, position
    }
    let period = Duration::from_secs(15);
    let stop = CancellationToken::new();
    let start = Instant::now();
    tokio::spawn(crate::heartbeats(node.hub.clone(), period, stop.clone()));

    let heartbeat = next_chunk(&mut body).await.expect("a heartbeat");
    assert_eq!(&heartbeat[..], b":\n\n");
    assert_eq!(
        start.elapsed(),
        period,
        "idle since the start: the first tick"
    );

    // An event between ticks: the next tick skips the stream, the one after sends one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(node.hub.deliver(&topic(), &event(EventId::new(2, 0), "x")));
    assert!(next_chunk(&mut body).await.is_some());
    let heartbeat = next_chunk(&mut body).await.expect("a heartbeat");
    assert_eq!(&heartbeat[..], b":\n\n");
    assert_eq!(
        start.elapsed(),
        period * 3,
        "20 s → 45 s: one to two periods idle"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_bounded_stream_ends_by_itself_at_its_deadline_or_its_last_event() {
    let mut node = Node::new("redis://127.0.0.1:1", 10);
    let bounds = Bounds {
        max_events: None,
        max_duration: Some(Duration::from_secs(5)),
    };
    let (mut timed, _outbox) = node.stream(&topic(), None, bounds, 4096);
    node.confirm(&topic(), EventId::new(1, 0));
    let start = Instant::now();
    while next_chunk(&mut timed).await.is_some() {}
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    let bounds = Bounds {
        max_events: Some(2),
        max_duration: None,
    };
    let (mut counted, _outbox) = node.stream(&topic(), None, bounds, 4096);
    for n in 2..=4 {
        node.hub.deliver(&topic(), &event(EventId::new(n, 0), "x"));
    }
    let mut parser = Parser::new();
    let mut received = Vec::new();
    while let Some(chunk) = next_chunk(&mut counted).await {
        received.extend(message_events(&mut parser, &chunk));
    }
    let ids: Vec<&str> = received.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(ids, ["2-0", "3-0"], "two events, then the end");
}

#[tokio::test(start_paused = true)]
async fn a_drain_ends_every_stream_spread_over_the_drain_period() {
    let mut node = Node::new("redis://127.0.0.1:1", 10);
    let mut bodies = Vec::new();
    for _ in 0..3 {
        bodies.push(node.stream(&topic(), None, Bounds::default(), 4096));
    }
    node.confirm(&topic(), EventId::new(1, 0));
    let start = Instant::now();
    let drain = Drain::default();
    drain.begin();
    let (hub, over) = (node.hub.clone(), Duration::from_secs(9));
    tokio::spawn(async move { drain.end_streams(&hub, over).await });
    let mut readers = tokio::task::JoinSet::new();
    for (mut body, _outbox) in bodies {
        readers.spawn(async move {
            while next_chunk(&mut body).await.is_some() {}
            start.elapsed().as_secs()
        });
    }
    let mut ended = readers.join_all().await;
    ended.sort_unstable();
    assert_eq!(ended, [0, 3, 6], "one every 9 s / 3 streams");
}

#[tokio::test]
async fn a_resume_replays_catches_up_on_dropped_live_events_and_goes_live_exactly() {
    let redis = sse_testkit::RedisServer::start();
    let options = sse_publisher::RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..sse_publisher::RedisFlags::default()
    };
    let publisher = sse_publisher::Publisher::connect(&options, Default::default())
        .await
        .expect("connect the publisher");
    let mut ids = Vec::new();
    for n in 1..=6 {
        let published = publisher
            .publish(&Event::new(topic(), format!("e{n}")))
            .await
            .expect("publish");
        ids.push(published);
    }
    // One event per page, and room for one live event: the replay takes several pages, and
    // live events overflow the queue meanwhile.
    let mut node = Node::new(&redis.url(), 1);
    let resume = Cursor::new([(topic(), ids[0])]);
    let (mut body, _outbox) = node.stream(&topic(), Some(resume), Bounds::default(), 60);
    // The node subscribed when e3 was the newest event; e4..e6 then arrive live.
    node.confirm(&topic(), ids[2]);

    let mut parser = Parser::new();
    let first = events(&mut body, &mut parser, 1).await;
    assert_eq!(
        first[0].data, "e2",
        "the replay starts after the client's position"
    );
    for (n, id) in ids.iter().enumerate().skip(3) {
        node.hub
            .deliver(&topic(), &event(*id, &format!("e{}", n + 1)));
    }
    let rest = events(&mut body, &mut parser, 4).await;
    let data: Vec<&str> = rest.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(
        data,
        ["e3", "e4", "e5", "e6"],
        "replayed and caught up, once each"
    );

    let e7 = publisher
        .publish(&Event::new(topic(), "e7"))
        .await
        .expect("publish");
    node.hub.deliver(&topic(), &event(e7, "e7"));
    let live = events(&mut body, &mut parser, 1).await;
    assert_eq!(live[0].data, "e7");
    assert_eq!(live[0].last_event_id, e7.to_string());
    assert_eq!(
        node.metrics.slow_consumer_disconnects.get(),
        0,
        "a client that kept replaying was not cut"
    );
}
