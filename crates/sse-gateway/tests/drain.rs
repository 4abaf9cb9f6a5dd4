//! Draining a node (SPEC §4, SIGTERM) and keeping idle streams alive.
//!
//! On shutdown a node stops being ready, closes its listener, ends every open stream within
//! `--drain-seconds` and returns; each client then resumes on another node from its last
//! event id and gets exactly what it missed, so across the move it sees every event of its
//! topics once, in order. An idle stream gets a heartbeat comment every `--heartbeat`.

mod harness;

use std::collections::HashMap;
use std::net::SocketAddr;

use harness::{PATIENCE, TestGateway, publish, publisher, start_gateway};
use sse_core::{Item, MessageEvent};
use sse_testkit::{Next, RedisServer, SseClient, eventually, find, status_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPICS: [&str; 2] = ["north", "south"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_ends_every_stream_and_its_clients_resume_elsewhere() {
    let redis = RedisServer::start();
    // The requests in flight below are answered only while the node drains, which ends within
    // --drain-seconds and a 5 s grace, and within the header timeout of their start: ample
    // bounds, so that a loaded machine cannot close them first.
    let mut draining = start_gateway(&redis, &["--drain-seconds", "3", "--header-timeout", "60s"]);
    let other = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut clients = Vec::new();
    for topics in [&["north"][..], &["north"], &["south"], &["north", "south"]] {
        clients.push(Client::open(&draining, topics).await);
    }
    let mut probe = KeepAlive::connect(draining.addr).await;
    assert_eq!(probe.get("/readyz").await.unwrap(), 200);
    // Every event published, per topic: (id, data), in order.
    let mut published: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    let mut next_seq = 0;
    let mut publish_round = async |published: &mut HashMap<&str, Vec<(String, String)>>| {
        for topic in TOPICS {
            let data = format!("{topic}:{next_seq}");
            let id = publish(&publisher, topic, None, &data).await;
            published.entry(topic).or_default().push((id, data));
        }
        next_seq += 1;
    };
    for _ in 0..3 {
        publish_round(&mut published).await;
    }
    for client in &mut clients {
        let count = 3 * client.topics.len();
        let events = client.stream.events(count, PATIENCE).await;
        client.received.extend(events);
    }

    // A load balancer's check and a client's new stream, in flight when the drain begins:
    // each request is sent but for its last byte, so the node keeps the connection open (it
    // closes an idle kept-alive connection as soon as the drain begins) and answers once the
    // test sends that byte, while the node is draining.
    let mut readyz_in_flight = KeepAlive::connect(draining.addr).await;
    readyz_in_flight.send_all_but_last_byte("/readyz").await;
    let mut stream_in_flight = KeepAlive::connect(draining.addr).await;
    stream_in_flight
        .send_all_but_last_byte("/events?topic=north")
        .await;
    // The kernel hands out connections in the order they arrived: once a later one is
    // answered, the node has accepted both of these.
    let later = sse_testkit::http_status(draining.addr, "/healthz", PATIENCE).await;
    assert_eq!(
        later,
        Some(200),
        "the node answers a connection opened after them"
    );

    draining.begin_shutdown();

    // What a load balancer sees: new connections are refused (the listener is closed, which
    // happens after the node stopped being ready), and requests in flight are answered 503.
    eventually("the listener is closed", PATIENCE, || async {
        TcpStream::connect(draining.addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert_eq!(
        readyz_in_flight.send_last_byte().await.unwrap(),
        503,
        "a draining node is not ready"
    );
    assert_eq!(
        stream_in_flight.send_last_byte().await.unwrap(),
        503,
        "a draining node opens no new stream"
    );
    // Published while the node drains: each client gets some of these before its stream
    // ends, or none, and the rest when it resumes.
    for _ in 0..3 {
        publish_round(&mut published).await;
    }

    for client in &mut clients {
        let events = client.stream.until_closed(PATIENCE).await;
        client.received.extend(events);
    }
    let stopped = tokio::task::spawn_blocking(move || draining.stop())
        .await
        .unwrap();
    assert!(
        stopped.is_ok(),
        "run returns Ok after draining: {stopped:?}"
    );

    // Published after every stream ended, before the clients are back.
    for _ in 0..2 {
        publish_round(&mut published).await;
    }
    for client in &mut clients {
        let missed: usize = client
            .topics
            .iter()
            .map(|t| published[t].len() - client.received_on(t).len())
            .sum();
        let last_event_id = client.stream.last_event_id().to_owned();
        let mut resumed = SseClient::get(
            other.addr,
            &client.path,
            &[("Last-Event-ID", last_event_id.as_str())],
        )
        .await;
        assert_eq!(resumed.status(), 200);
        let events = resumed.events(missed, PATIENCE).await;
        client.received.extend(events);
        client.stream = resumed;
        for &topic in &client.topics {
            let expected = &published[topic];
            let received = client.received_on(topic);
            if client.topics.len() == 1 {
                let received: Vec<(String, String)> = received
                    .iter()
                    .map(|e| (e.last_event_id.clone(), e.data.clone()))
                    .collect();
                assert_eq!(&received, expected, "{} on {topic}", client.path);
            } else {
                let received: Vec<&str> = received.iter().map(|e| e.data.as_str()).collect();
                let expected: Vec<&str> = expected.iter().map(|(_, d)| d.as_str()).collect();
                assert_eq!(received, expected, "{} on {topic}", client.path);
            }
        }
    }
    // Nothing more: the next event each client reads is one published now.
    for topic in TOPICS {
        publish(&publisher, topic, None, &format!("{topic}:end")).await;
    }
    for client in &mut clients {
        let mut next: Vec<String> = client
            .stream
            .events(client.topics.len(), PATIENCE)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect();
        next.sort();
        let ends: Vec<String> = client.topics.iter().map(|t| format!("{t}:end")).collect();
        assert_eq!(next, ends, "{}: nothing after what it missed", client.path);
    }
}

/// Draining does not need Redis: a node that lost Redis still ends its streams (also one
/// still waiting for its subscription) and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_redis_still_drains_and_returns() {
    let mut redis = RedisServer::start();
    let mut node = start_gateway(&redis, &["--drain-seconds", "1"]);
    let mut live = node.subscribe(&["north"]).await;
    redis.kill();
    eventually("the node noticed that Redis is gone", PATIENCE, || async {
        (node.fetch("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let mut waiting = node.get("/events?topic=south", &[]).await;
    assert_eq!(waiting.status(), 200);

    node.begin_shutdown();
    live.until_closed(PATIENCE).await;
    waiting.until_closed(PATIENCE).await;
    let stopped = tokio::task::spawn_blocking(move || node.stop())
        .await
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeat_comments() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--heartbeat", "200ms"]);
    let mut client = node.subscribe(&["quiet"]).await;
    for heartbeat in 1..=2 {
        loop {
            match client.next(PATIENCE).await {
                Next::Item(Item::Comment(text)) if text.is_empty() => break,
                Next::Item(Item::Event(event)) => panic!("an event on an idle stream: {event:?}"),
                Next::Item(_) => {}
                end => panic!("no heartbeat {heartbeat} within {PATIENCE:?}: {end:?}"),
            }
        }
    }
    assert!(
        client.raw().ends_with(b"\n:\n\n"),
        "a heartbeat is the line `:`"
    );

    let publisher = publisher(&redis).await;
    let id = publish(&publisher, "quiet", None, "after the silence").await;
    assert_eq!(client.next_event(PATIENCE).await.last_event_id, id);
}

// === helpers ===

/// A client of the draining node and everything it received, across reconnects.
struct Client {
    topics: Vec<&'static str>,
    path: String,
    stream: SseClient,
    received: Vec<MessageEvent>,
}

impl Client {
    async fn open(node: &TestGateway, topics: &[&'static str]) -> Self {
        let query: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
        Self {
            topics: topics.to_vec(),
            path: format!("/events?{}", query.join("&")),
            stream: node.subscribe(topics).await,
            received: Vec::new(),
        }
    }

    /// What it received on `topic` (the data says which topic an event is on).
    fn received_on(&self, topic: &str) -> Vec<&MessageEvent> {
        self.received
            .iter()
            .filter(|e| e.data.split(':').next() == Some(topic))
            .collect()
    }
}

/// One HTTP/1.1 connection kept alive across requests, as a load balancer's health checker
/// keeps it; requests are answered with a `Content-Length` body.
struct KeepAlive {
    socket: TcpStream,
    addr: SocketAddr,
}

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> Self {
        let socket = TcpStream::connect(addr).await.expect("connect to the node");
        Self { socket, addr }
    }

    /// `GET path` on this connection: the status, or the error if the connection is closed.
    async fn get(&mut self, path: &str) -> std::io::Result<u16> {
        self.send_all_but_last_byte(path).await;
        self.send_last_byte().await
    }

    /// Sends `GET path` but for its last byte, so the request is in flight but not complete.
    async fn send_all_but_last_byte(&mut self, path: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        let (head, _last) = request.as_bytes().split_at(request.len() - 1);
        self.socket
            .write_all(head)
            .await
            .expect("send all of a request but its last byte");
    }

    /// Completes the request [`KeepAlive::send_all_but_last_byte`] began: its status, or the
    /// error if the connection is closed.
    async fn send_last_byte(&mut self) -> std::io::Result<u16> {
        tokio::time::timeout(PATIENCE, self.complete())
            .await
            .unwrap_or_else(|_| panic!("no answer within {PATIENCE:?}"))
    }

    async fn complete(&mut self) -> std::io::Result<u16> {
        self.socket.write_all(b"\n").await?;
        let mut response = Vec::new();
        let head_end = loop {
            if let Some(end) = find(&response, b"\r\n\r\n") {
                break end + 4;
            }
            self.read_more(&mut response).await?;
        };
        let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
        let status = status_of(&response).unwrap_or_else(|| panic!("a status line: {head:?}"));
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("a Content-Length: {head:?}"));
        while response.len() < head_end + length {
            self.read_more(&mut response).await?;
        }
        Ok(status)
    }

    async fn read_more(&mut self, response: &mut Vec<u8>) -> std::io::Result<()> {
        let mut buffer = [0; 4096];
        match self.socket.read(&mut buffer).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            read => {
                response.extend_from_slice(&buffer[..read]);
                Ok(())
            }
        }
    }
}
