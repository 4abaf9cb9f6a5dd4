//! Redis outages while clients stay connected. `/readyz` follows the pub/sub link, and when
//! Redis restarts or the node's pub/sub connection is killed, every connected client still
//! gets each event of its topics exactly once and in order, on the stream it already has:
//! the node resubscribes and fills the gap from the topic's stream (SPEC §3, §8).
//!
//! The publisher here retries each event until Redis acknowledges it, as a real one would.
//! Only acknowledged events are guaranteed; an event whose reply was lost in the outage may be
//! in the stream as well (then twice, under two ids). So each client is checked against the
//! stream itself: it must receive exactly what the stream holds, and the stream must hold
//! every acknowledged event.

mod harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use harness::{PATIENCE, TestGateway, publish, publisher, start_gateway};
use sse_core::schema::stream_key;
use sse_core::{Event, EventId, Item, MessageEvent, Topic};
use sse_publisher::Publisher;
use sse_testkit::{Next, RedisServer, SseClient, eventually};
use tokio::task::JoinHandle;

/// The topics the outage tests publish on.
const TOPICS: [&str; 2] = ["alpha", "beta"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_and_healthz_does_not() {
    let mut redis = RedisServer::start();
    let node = start_gateway(&redis, &[]);

    wait_for_readyz(&node, 200, "the node is ready with Redis up").await;
    assert_eq!(node.fetch("/healthz").await.0, 200);
    assert_eq!(metric(&node, "sse_redis_connected").await, Some(1));

    redis.kill();
    wait_for_readyz(&node, 503, "the node is not ready while Redis is down").await;
    let (status, body) = node.fetch("/healthz").await;
    assert_eq!(status, 200, "the process is up even without Redis: {body}");
    assert_eq!(metric(&node, "sse_redis_connected").await, Some(0));

    redis.restart();
    wait_for_readyz(&node, 200, "the node is ready again once Redis is back").await;
    assert_eq!(node.fetch("/healthz").await.0, 200);
    assert_eq!(metric(&node, "sse_redis_connected").await, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_acknowledged_event_and_ends_no_stream() {
    let mut redis = RedisServer::start_with_aof();
    let nodes = [start_gateway(&redis, &[]), start_gateway(&redis, &[])];
    let mut watchers = watch_every_topic(&nodes).await;
    let publisher = publisher(&redis).await;
    let sequence = SequencePublisher::start(publisher.clone(), &TOPICS);
    sequence.wait_for_acks(20).await;

    redis.kill();
    for node in &nodes {
        wait_for_readyz(node, 503, "the node noticed that Redis is gone").await;
    }
    let acked_before_restart = sequence.acks();
    redis.restart();
    for node in &nodes {
        wait_for_readyz(node, 200, "the node is back on Redis").await;
    }
    sequence.wait_for_acks(acked_before_restart + 20).await;
    let acked = sequence.finish().await;

    assert_every_watcher_got_the_streams(&redis, &publisher, &mut watchers, &acked).await;
    for node in &nodes {
        let reconnects = metric(node, "sse_redis_reconnects_total").await;
        assert!(reconnects.is_some_and(|n| n >= 1), "{reconnects:?}");
        // Whether anything was published between Redis coming back and the node
        // resubscribing depends on who reconnects first; the ACL test below makes it certain.
        let filled = metric(node, "sse_gap_filled_events_total").await;
        assert!(filled.is_some(), "sse_gap_filled_events_total is exported");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_pubsub_connection_loses_no_acknowledged_event() {
    let redis = RedisServer::start();
    let nodes = [start_gateway(&redis, &[]), start_gateway(&redis, &[])];
    let mut watchers = watch_every_topic(&nodes).await;
    let publisher = publisher(&redis).await;
    let sequence = SequencePublisher::start(publisher.clone(), &TOPICS);
    sequence.wait_for_acks(20).await;

    for round in 1..=3 {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut redis.connection())
            .unwrap();
        assert_eq!(killed, 2, "one pub/sub connection per node (round {round})");
        for node in &nodes {
            eventually(
                "the node noticed its pub/sub connection died",
                PATIENCE,
                || async {
                    let reconnects = metric(node, "sse_redis_reconnects_total").await?;
                    (reconnects >= round).then_some(())
                },
            )
            .await;
            wait_for_readyz(node, 200, "the node resubscribed").await;
        }
        let acked = sequence.acks();
        sequence.wait_for_acks(acked + 20).await;
    }
    let acked = sequence.finish().await;

    assert_every_watcher_got_the_streams(&redis, &publisher, &mut watchers, &acked).await;
}

/// A Redis that stops answering without closing its connections (frozen with SIGSTOP, as a
/// network partition looks): the node notices by its pub/sub `PING` timing out, stops being
/// ready, and once Redis answers again, its clients get every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_noticed_and_nothing_is_lost_when_it_thaws() {
    let redis = RedisServer::start();
    let flags = ["--redis-timeout", "500ms"];
    let nodes = [start_gateway(&redis, &flags), start_gateway(&redis, &flags)];
    let mut watchers = watch_every_topic(&nodes).await;
    let publisher = publisher(&redis).await;
    let sequence = SequencePublisher::start(publisher.clone(), &TOPICS);
    sequence.wait_for_acks(20).await;

    let frozen = Frozen::new(&redis);
    for node in &nodes {
        wait_for_readyz(node, 503, "the node noticed that Redis stopped answering").await;
    }
    let acked_before_thaw = sequence.acks();
    drop(frozen);
    for node in &nodes {
        wait_for_readyz(node, 200, "the node is back on Redis").await;
    }
    sequence.wait_for_acks(acked_before_thaw + 20).await;
    let acked = sequence.finish().await;

    assert_every_watcher_got_the_streams(&redis, &publisher, &mut watchers, &acked).await;
}

/// Makes the gap certain: while the node cannot resubscribe (its user may not `SUBSCRIBE`),
/// events are published that no pub/sub connection of the node can see. They must reach every
/// client from the stream once the node is back, and be counted as gap-filled exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_node_cannot_subscribe_are_filled_from_the_stream() {
    const GAP: usize = 10;
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &[]);
    let mut watchers = watch_every_topic(std::slice::from_ref(&node)).await;
    let publisher = publisher(&redis).await;
    let mut acked = Vec::new();
    for topic in TOPICS {
        let data = format!("{topic}:0");
        acked.push(Acked {
            id: EventId::parse(&publish(&publisher, topic, None, &data).await).unwrap(),
            topic,
            data,
        });
    }
    eventually(
        "the first events reached the node live",
        PATIENCE,
        || async {
            let received = metric(&node, "sse_events_received_total").await?;
            (received == TOPICS.len() as u64).then_some(())
        },
    )
    .await;

    harness::cut_pubsub(&redis, &node).await;
    for seq in 1..=GAP {
        for topic in TOPICS {
            let data = format!("{topic}:{seq}");
            acked.push(Acked {
                id: EventId::parse(&publish(&publisher, topic, None, &data).await).unwrap(),
                topic,
                data,
            });
        }
    }
    harness::restore_pubsub(&redis, &node).await;

    let filled = metric(&node, "sse_gap_filled_events_total").await;
    assert_eq!(filled, Some((GAP * TOPICS.len()) as u64));
    assert_every_watcher_got_the_streams(&redis, &publisher, &mut watchers, &acked).await;
}

/// A stream opened during an outage opens at once, is kept alive by heartbeats while it
/// waits for its subscription, and goes live when Redis is back, without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_while_redis_is_down_goes_live_once_it_is_back() {
    let mut redis = RedisServer::start();
    let node = start_gateway(&redis, &["--heartbeat", "200ms"]);
    wait_for_readyz(&node, 200, "the node is ready with Redis up").await;
    redis.kill();
    wait_for_readyz(&node, 503, "the node noticed that Redis is gone").await;

    let mut client = node.get("/events?topic=late", &[]).await;
    assert_eq!(client.status(), 200);
    assert!(
        matches!(client.next(PATIENCE).await, Next::Item(Item::Retry(_))),
        "the first bytes go out at once, without Redis"
    );
    assert_eq!(
        client.next(PATIENCE).await,
        Next::Item(Item::Comment(" stream open".to_owned()))
    );
    assert_eq!(
        client.next(PATIENCE).await,
        Next::Item(Item::Comment(String::new())),
        "a heartbeat keeps the waiting stream alive"
    );

    redis.restart();
    client.position(PATIENCE).await;
    let publisher = publisher(&redis).await;
    let id = publish(&publisher, "late", None, "after the outage").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!(
        (event.last_event_id.as_str(), event.data.as_str()),
        (id.as_str(), "after the outage")
    );
}

// === helpers ===

/// An event Redis acknowledged.
#[derive(Debug)]
struct Acked {
    topic: &'static str,
    data: String,
    id: EventId,
}

/// Publishes `topic:seq` round-robin on its topics until finished, retrying each event until
/// Redis acknowledges it (every attempt fails while Redis is down).
struct SequencePublisher {
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    task: JoinHandle<Vec<Acked>>,
}

impl SequencePublisher {
    fn start(publisher: Publisher, topics: &[&'static str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let topics = topics.to_vec();
        let task = tokio::spawn({
            let (stop, acks) = (stop.clone(), acks.clone());
            async move {
                let mut acked = Vec::new();
                'publishing: for seq in 0.. {
                    for &topic in &topics {
                        let data = format!("{topic}:{seq}");
                        let event =
                            Event::new(Topic::parse(topic).expect("a valid topic"), data.clone());
                        let id = loop {
                            if stop.load(Ordering::Relaxed) {
                                break 'publishing;
                            }
                            match publisher.publish(&event).await {
                                Ok(id) => break id,
                                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                        };
                        acked.push(Acked { topic, data, id });
                        acks.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                acked
            }
        });
        Self { stop, acks, task }
    }

    /// How many events Redis acknowledged so far.
    fn acks(&self) -> usize {
        self.acks.load(Ordering::Relaxed)
    }

    async fn wait_for_acks(&self, count: usize) {
        eventually(
            &format!("{count} events are acknowledged"),
            PATIENCE,
            || async { (self.acks() >= count).then_some(()) },
        )
        .await;
    }

    /// Stops publishing and returns every acknowledged event, in publishing order.
    async fn finish(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the publisher task does not panic")
    }
}

/// A client of one node, on some topics.
struct Watcher {
    name: String,
    topics: Vec<&'static str>,
    client: SseClient,
}

/// On each node: one client per topic and one on all of them (its ids are cursors). All are
/// live before anything is published, so each must receive its topics' whole streams.
async fn watch_every_topic(nodes: &[TestGateway]) -> Vec<Watcher> {
    let mut watchers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let mut sets: Vec<Vec<&'static str>> = TOPICS.iter().map(|&t| vec![t]).collect();
        sets.push(TOPICS.to_vec());
        for topics in sets {
            watchers.push(Watcher {
                name: format!("node {index} client on {topics:?}"),
                client: node.subscribe(&topics).await,
                topics,
            });
        }
    }
    watchers
}

/// Reads `count` events; fails if the stream ends, since the client would have had to
/// reconnect.
async fn read_events(watcher: &mut Watcher, count: usize) -> Vec<MessageEvent> {
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        match watcher.client.next(PATIENCE).await {
            Next::Item(Item::Event(event)) => events.push(event),
            Next::Item(_) => {}
            Next::Timeout => panic!(
                "{}: only {} of {count} events arrived; the last: {:?}",
                watcher.name,
                events.len(),
                events.last()
            ),
            Next::Closed => panic!(
                "{}: the stream ended after {} of {count} events (the client would have had to reconnect)",
                watcher.name,
                events.len()
            ),
        }
    }
    events
}

/// Every entry of `topic`'s stream: (id, data).
fn stream_entries(redis: &RedisServer, topic: &str) -> Vec<(String, String)> {
    let key = stream_key(&Topic::parse(topic).expect("a valid topic"));
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut redis.connection())
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(id, fields)| {
            let data = fields
                .chunks_exact(2)
                .find(|pair| pair[0] == "data")
                .map(|pair| pair[1].clone())
                .expect("every entry has a data field");
            (id, data)
        })
        .collect()
}

/// The streams hold every acknowledged event; each watcher received exactly its topics'
/// streams, per topic in order, with the stream ids (one topic) and nothing more (a final
/// marker event per topic is the next thing each one reads).
async fn assert_every_watcher_got_the_streams(
    redis: &RedisServer,
    publisher: &Publisher,
    watchers: &mut [Watcher],
    acked: &[Acked],
) {
    let streams: HashMap<&str, Vec<(String, String)>> = TOPICS
        .iter()
        .map(|&topic| (topic, stream_entries(redis, topic)))
        .collect();
    for event in acked {
        let entry = (event.id.to_string(), event.data.clone());
        assert!(
            streams[event.topic].contains(&entry),
            "acknowledged {event:?} is in the stream"
        );
    }
    for watcher in watchers.iter_mut() {
        let count = watcher.topics.iter().map(|t| streams[t].len()).sum();
        let events = read_events(watcher, count).await;
        for &topic in &watcher.topics {
            let received: Vec<(&str, &str)> = events
                .iter()
                .filter(|e| e.data.split(':').next() == Some(topic))
                .map(|e| (e.last_event_id.as_str(), e.data.as_str()))
                .collect();
            let expected = &streams[topic];
            if watcher.topics.len() == 1 {
                let expected: Vec<(&str, &str)> = expected
                    .iter()
                    .map(|(id, data)| (id.as_str(), data.as_str()))
                    .collect();
                assert_eq!(received, expected, "{} on {topic}", watcher.name);
            } else {
                let received: Vec<&str> = received.iter().map(|(_, data)| *data).collect();
                let expected: Vec<&str> = expected.iter().map(|(_, data)| data.as_str()).collect();
                assert_eq!(received, expected, "{} on {topic}", watcher.name);
            }
        }
    }
    for topic in TOPICS {
        publish(publisher, topic, None, &format!("{topic}:end")).await;
    }
    for watcher in watchers.iter_mut() {
        let count = watcher.topics.len();
        let mut next: Vec<String> = read_events(watcher, count)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect();
        next.sort();
        let mut ends: Vec<String> = watcher.topics.iter().map(|t| format!("{t}:end")).collect();
        ends.sort();
        assert_eq!(next, ends, "{}: nothing after its streams", watcher.name);
    }
}

/// Redis stopped with SIGSTOP until dropped (then continued with SIGCONT).
struct Frozen {
    pid: String,
}

impl Frozen {
    fn new(redis: &RedisServer) -> Self {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut redis.connection())
            .expect("INFO server");
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .expect("INFO server has process_id")
            .trim()
            .to_owned();
        assert!(signal("-STOP", &pid), "kill -STOP {pid}");
        Self { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // No panic here: this may run while the test is already failing.
        let _ = signal("-CONT", &self.pid);
    }
}

/// Sends `signal` to `pid` with `kill`; whether it worked.
fn signal(signal: &str, pid: &str) -> bool {
    std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .is_ok_and(|status| status.success())
}

/// Polls `/readyz` until it answers `status`.
async fn wait_for_readyz(node: &TestGateway, status: u16, what: &str) {
    eventually(what, PATIENCE, || async {
        (node.fetch("/readyz").await.0 == status).then_some(())
    })
    .await;
}

/// The value of the unlabelled metric `name` on the node's `/metrics`, if exported.
async fn metric(node: &TestGateway, name: &str) -> Option<u64> {
    let (status, body) = node.fetch("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        if key == name {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}
