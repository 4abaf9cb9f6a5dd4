//! Node loss (SPEC §8): a gateway process killed with SIGKILL mid-stream, while events keep
//! being published. Its clients reconnect to another node with their last event id, as
//! `EventSource` does, and in the end each has every event of its topics exactly once and in
//! order, compared with what the topics' Redis streams hold (`XRANGE`).
//!
//! The nodes are real `sse-gateway` processes (not in-process nodes), so the kill is a real
//! crash: no drain, no goodbye, sockets closed by the kernel.

mod harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{PATIENCE, publish, publisher};
use sse_core::schema::stream_key;
use sse_core::{Item, MessageEvent, Topic};
use sse_testkit::{Next, RedisServer, SseClient, eventually, free_port};

const BINARY: &str = env!("CARGO_BIN_EXE_sse-gateway");
/// Events published per topic.
const PER_TOPIC: usize = 150;
/// The kill happens once this many events were published (of `2 * PER_TOPIC`).
const KILL_AFTER: usize = 100;

/// An `sse-gateway` process; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    async fn start(redis: &RedisServer) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(BINARY)
            .args(["--listen", &addr.to_string()])
            .args(["--redis-url", &redis.url()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sse-gateway");
        let node = Self { child, addr };
        eventually("the node is ready", PATIENCE, || async {
            (sse_testkit::http_status(addr, "/readyz", PATIENCE).await == Some(200)).then_some(())
        })
        .await;
        node
    }

    /// SIGKILL, and reap the process.
    fn kill(&mut self) {
        self.child.kill().expect("kill -9 the node");
        self.child.wait().expect("reap the node");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client reading a stream until it has `expected` events, reconnecting to `fallback` with
/// its last event id when its stream ends (as `EventSource` does after a network error).
/// Returns the events and how many times it reconnected.
async fn follow(
    mut client: SseClient,
    path: String,
    fallback: SocketAddr,
    expected: usize,
) -> (Vec<MessageEvent>, usize) {
    let mut events = Vec::new();
    let mut reconnects = 0;
    while events.len() < expected {
        match client.next(PATIENCE).await {
            Next::Item(Item::Event(event)) => events.push(event),
            Next::Item(_) => {}
            Next::Timeout => panic!(
                "{path}: no event within {PATIENCE:?} after {} of {expected}",
                events.len()
            ),
            Next::Closed => {
                reconnects += 1;
                assert!(reconnects <= 3, "{path}: reconnected {reconnects} times");
                let last = client.last_event_id().to_owned();
                assert!(!last.is_empty(), "{path}: a position before the loss");
                client = SseClient::get(fallback, &path, &[("Last-Event-ID", &last)]).await;
                assert_eq!(client.status(), 200, "{path}: resuming from {last}");
            }
        }
    }
    (events, reconnects)
}

/// `(id, data)` of every entry in `topic`'s stream, oldest first.
fn stream(redis: &RedisServer, topic: &str) -> Vec<(String, String)> {
    let key = stream_key(&Topic::parse(topic).expect("a valid topic"));
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut redis.connection())
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(id, mut fields)| (id, fields.remove("data").expect("a data field")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_resume_on_another_and_miss_nothing() {
    let redis = RedisServer::start();
    let mut node_a = Node::start(&redis).await;
    let node_b = Node::start(&redis).await;
    let publisher = publisher(&redis).await;

    // Clients on node A, each live (its position arrived) before publishing starts.
    let paths = [
        "/events?topic=loss-a",
        "/events?topic=loss-b",
        "/events?topic=loss-a&topic=loss-b",
    ];
    let expected = [PER_TOPIC, PER_TOPIC, 2 * PER_TOPIC];
    let mut readers = Vec::new();
    for (path, expected) in paths.iter().zip(expected) {
        let mut client = SseClient::get(node_a.addr, path, &[]).await;
        assert_eq!(client.status(), 200);
        client.position(PATIENCE).await;
        readers.push(tokio::spawn(follow(
            client,
            (*path).to_owned(),
            node_b.addr,
            expected,
        )));
    }

    // A publisher that never stops for the kill: one event every 2 ms, alternating topics.
    let published = Arc::new(AtomicUsize::new(0));
    let publishing = {
        let published = published.clone();
        tokio::spawn(async move {
            for n in 0..2 * PER_TOPIC {
                let topic = if n % 2 == 0 { "loss-a" } else { "loss-b" };
                publish(&publisher, topic, None, &format!("{topic} {}", n / 2)).await;
                published.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            publisher
        })
    };
    eventually("some events are published", PATIENCE, || async {
        (published.load(Ordering::Relaxed) >= KILL_AFTER).then_some(())
    })
    .await;
    node_a.kill();

    let publisher = publishing.await.expect("the publisher does not panic");
    let mut received = Vec::new();
    for (path, reader) in paths.iter().zip(readers) {
        let (events, reconnects) = reader.await.expect("the reader does not panic");
        assert_eq!(reconnects, 1, "{path} lost its node once");
        received.push(events);
    }

    let streams: HashMap<&str, Vec<(String, String)>> = ["loss-a", "loss-b"]
        .into_iter()
        .map(|topic| (topic, stream(&redis, topic)))
        .collect();
    for topic in ["loss-a", "loss-b"] {
        assert_eq!(streams[topic].len(), PER_TOPIC, "{topic}'s stream");
    }
    // The one-topic clients: exactly the stream, ids and data, in order.
    for (events, topic) in received.iter().zip(["loss-a", "loss-b"]) {
        let got: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.last_event_id.as_str(), e.data.as_str()))
            .collect();
        let want: Vec<(&str, &str)> = streams[topic]
            .iter()
            .map(|(id, data)| (id.as_str(), data.as_str()))
            .collect();
        assert_eq!(got, want, "the client of {topic}");
        assert!(events.iter().all(|e| e.event_type == "message"));
    }
    // The two-topic client: each topic's events exactly once, in order (its ids are cursors).
    let multi = &received[2];
    assert!(
        multi.iter().all(|e| e.event_type == "message"),
        "no control event"
    );
    for topic in ["loss-a", "loss-b"] {
        let got: Vec<&str> = multi
            .iter()
            .map(|e| e.data.as_str())
            .filter(|data| data.starts_with(&format!("{topic} ")))
            .collect();
        let want: Vec<&str> = streams[topic]
            .iter()
            .map(|(_, data)| data.as_str())
            .collect();
        assert_eq!(got, want, "the two-topic client, on {topic}");
    }

    // And nothing more is coming: the next event each client gets is a new one.
    let mut resumed = Vec::new();
    for (path, events) in paths.iter().zip(&received) {
        let last = events.last().expect("events").last_event_id.clone();
        let client = SseClient::get(node_b.addr, path, &[("Last-Event-ID", &last)]).await;
        resumed.push(client);
    }
    let a = publish(&publisher, "loss-a", None, "loss-a end").await;
    let b = publish(&publisher, "loss-b", None, "loss-b end").await;
    for (n, client) in resumed.iter_mut().enumerate() {
        match n {
            0 => assert_eq!(client.next_event(PATIENCE).await.last_event_id, a),
            1 => assert_eq!(client.next_event(PATIENCE).await.last_event_id, b),
            _ => {
                // Both topics, each exactly once; the order between topics is not guaranteed.
                let mut both: Vec<String> = client
                    .events(2, PATIENCE)
                    .await
                    .into_iter()
                    .map(|e| e.data)
                    .collect();
                both.sort();
                assert_eq!(both, ["loss-a end", "loss-b end"]);
            }
        }
    }
}
