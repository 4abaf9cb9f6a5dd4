//! Hostile clients and resource exhaustion (SPEC §8: "bad input of any kind gets a clear
//! error and harms no other client").
//!
//! Each test keeps a witness: a stream opened on the same node before the abuse starts, which
//! must go on receiving every event, in order, while and after it happens. The abuse: slow and
//! silent connections (slowloris), oversized and malformed requests, garbage instead of HTTP,
//! HTTP/2 streams opened and reset, quick churn of many streams, and thousands of clients that
//! stop reading. After each, nothing leaks: `sse_connections_active` and `sse_topics_active`
//! return to their baseline and Redis counts no subscriber left on the abused topics.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use harness::{PATIENCE, TestGateway, numsub, publish, publisher, start_gateway};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_core::Parser;
use sse_publisher::Publisher;
use sse_testkit::{
    H2_PREFACE, Protocol, RedisServer, SseClient, eventually, exchange, find, status_of,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// === the witness ===

/// A stream opened before the abuse, and the publisher that feeds it.
struct Witness {
    client: SseClient,
    publisher: Publisher,
    sent: usize,
}

impl Witness {
    async fn open(node: &TestGateway, redis: &RedisServer) -> Self {
        let client = node.subscribe(&["witness"]).await;
        Self {
            client,
            publisher: publisher(redis).await,
            sent: 0,
        }
    }

    /// Publishes the next event and asserts that the witness receives exactly it.
    async fn check(&mut self, during: &str) {
        let data = format!("w{}", self.sent);
        let id = publish(&self.publisher, "witness", None, &data).await;
        let event = self.client.next_event(PATIENCE).await;
        assert_eq!(
            (event.data.as_str(), event.last_event_id.as_str()),
            (data.as_str(), id.as_str()),
            "the witness missed an event during {during}"
        );
        self.sent += 1;
    }
}

// === helpers ===

/// Waits until `series` on `/metrics` equals `value`.
async fn metric_becomes(node: &TestGateway, series: &str, value: u64) {
    eventually(&format!("{series} is {value}"), PATIENCE, || async {
        (node.metric(series).await == value).then_some(())
    })
    .await;
}

/// Waits until Redis counts no subscriber of any of `topics`' live channels.
async fn unsubscribed(redis: &RedisServer, topics: &[String]) {
    eventually(
        "Redis counts no subscriber on the topics",
        PATIENCE,
        || async {
            topics
                .iter()
                .all(|topic| numsub(redis, topic) == 0)
                .then_some(())
        },
    )
    .await;
}

/// Reads from `socket` until the server closes it; `false` if it is still open after
/// [`PATIENCE`]. Whatever the server sends meanwhile is ignored.
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    let read = async {
        loop {
            if matches!(socket.read(&mut buffer).await, Ok(0) | Err(_)) {
                return;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read).await.is_ok()
}

/// Connects and sends `head` one byte every 100 ms, forever (the head never ends). `true` once
/// the server closed the connection, `false` if it was still open after [`PATIENCE`].
async fn trickle(addr: SocketAddr, head: Vec<u8>) -> bool {
    let mut socket = TcpStream::connect(addr).await.expect("connect to the node");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut bytes = head.into_iter().chain(std::iter::repeat(b'a'));
    let mut buffer = [0u8; 1024];
    loop {
        tokio::select! {
            read = socket.read(&mut buffer) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return true;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let byte = bytes.next().expect("an endless head");
                if socket.write_all(&[byte]).await.is_err() {
                    return true;
                }
            }
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

// === tests ===

/// Slowloris: 50 connections trickle a request head that never ends, 50 send nothing; with
/// `--header-timeout 500ms` the node closes all of them, while new clients keep connecting
/// and streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed_while_others_stream() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--header-timeout", "500ms"]);
    let mut witness = Witness::open(&node, &redis).await;
    let addr = node.addr;

    let head = format!("GET /events?topic=slow HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").into_bytes();
    let trickling: Vec<_> = (0..50)
        .map(|_| tokio::spawn(trickle(addr, head.clone())))
        .collect();
    let mut silent_sockets = Vec::new();
    for _ in 0..50 {
        silent_sockets.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let silent: Vec<_> = silent_sockets
        .into_iter()
        .map(|mut socket| tokio::spawn(async move { closed_by_server(&mut socket).await }))
        .collect();

    // Meanwhile, newcomers connect and stream, and the witness hears everything.
    let publisher = publisher(&redis).await;
    for round in 0..5 {
        let mut newcomer = node.subscribe(&["fresh"]).await;
        let id = publish(&publisher, "fresh", None, &round.to_string()).await;
        assert_eq!(newcomer.next_event(PATIENCE).await.last_event_id, id);
        witness.check("a slowloris attack").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut open = Vec::new();
    for (kind, tasks) in [("trickling", trickling), ("silent", silent)] {
        for (n, task) in tasks.into_iter().enumerate() {
            if !task.await.expect("the task does not panic") {
                open.push(format!("{kind} #{n}"));
            }
        }
    }
    assert!(open.is_empty(), "still open after {PATIENCE:?}: {open:?}");
    witness.check("the end of a slowloris attack").await;
    assert_eq!(numsub(&redis, "slow"), 0, "no slow request became a stream");
}

/// The slowloris guard (README: "a connection that sends nothing, or not its whole request
/// head, within `--header-timeout` is closed") also covers HTTP/2: a connection that stops
/// inside the preface (`PRI * HTTP/2.0` and nothing more, the preface but one byte), after
/// it, or in the middle of its `SETTINGS` frame, and one that completes the handshake (and
/// answers `PING`s, as any HTTP/2 client library does) but never opens a stream. Each must be
/// closed within bounded time, not held forever; `--max-connections` counts streams, so
/// nothing else bounds how many such connections a node keeps.
///
/// `sse_core::runtime::connection` bounds each of these by `--header-timeout`: the sniffing
/// of the preface, and the first request, which covers the rest of the preface, the HTTP/2
/// handshake and a connection that never opens a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stalled_in_the_http2_preface_are_closed() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--header-timeout", "500ms"]);
    let mut witness = Witness::open(&node, &redis).await;

    let mut half_settings = H2_PREFACE.to_vec();
    half_settings.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3]);
    let stalls: Vec<Vec<u8>> = vec![
        b"P".to_vec(),
        b"PRI * HTTP/2.0\r\n".to_vec(),
        b"PRI * HTTP/2.0".to_vec(),
        H2_PREFACE[..H2_PREFACE.len() - 1].to_vec(),
        H2_PREFACE.to_vec(),
        half_settings,
    ];
    let mut tasks: Vec<(String, tokio::task::JoinHandle<bool>)> = stalls
        .iter()
        .map(|stall| {
            let shown = String::from_utf8_lossy(stall).into_owned();
            let (addr, stall) = (node.addr, stall.clone());
            let task =
                tokio::spawn(async move { exchange(addr, &stall, PATIENCE).await.is_some() });
            (shown, task)
        })
        .collect();
    let socket = TcpStream::connect(node.addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(socket),
    )
    .await
    .expect("an HTTP/2 handshake");
    let idle = tokio::spawn(async move {
        let closed = tokio::time::timeout(PATIENCE, connection).await.is_ok();
        drop(sender);
        closed
    });
    tasks.push(("a handshake and no stream".to_owned(), idle));

    witness.check("stalled HTTP/2 handshakes").await;
    let mut held = Vec::new();
    for (stall, task) in tasks {
        if !task.await.expect("the task does not panic") {
            held.push(stall);
        }
    }
    witness.check("stalled HTTP/2 handshakes").await;
    assert!(
        held.is_empty(),
        "held open for {PATIENCE:?} with --header-timeout 500ms: {held:?}"
    );
}

/// Oversized and malformed requests each get a clear refusal (or, for what is not HTTP at
/// all, a closed connection), and the witness hears everything meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_are_refused() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--header-timeout", "1s"]);
    let mut witness = Witness::open(&node, &redis).await;
    let addr = node.addr;
    let get = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n")
            .into_bytes()
    };

    // Over --max-header-size (16 KiB): 431, or closed before an answer could be read.
    let many_topics: String = (0..10_000).map(|n| format!("topic=t{n}&")).collect();
    let big = "a".repeat(64 * 1024);
    let too_large = [
        ("a 64 KiB URL", get(&format!("/events?topic=a&x={big}"), "")),
        (
            "a 64 KiB header",
            get("/events?topic=a", &format!("X-Big: {big}\r\n")),
        ),
        (
            "a 64 KiB Last-Event-ID",
            get("/events?topic=a", &format!("Last-Event-ID: {big}\r\n")),
        ),
        (
            "10,000 topic= parameters",
            get(&format!("/events?{many_topics}"), ""),
        ),
    ];
    for (what, request) in too_large {
        let response = exchange(addr, &request, PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer and no close"));
        let status = status_of(&response);
        assert!(
            response.is_empty() || status == Some(431),
            "{what}: {:?}",
            String::from_utf8_lossy(&response[..response.len().min(200)])
        );
        witness.check(what).await;
    }

    // Within the head limit, but refused by the gateway: 400 with a sentence.
    let long_id = "1".repeat(5000);
    let long_topic = "t".repeat(129);
    let bad_topics = [
        "%00",
        "a%00b",
        "a%0d%0ab",
        "%0d",
        "%0a",
        "%7Bx%7D",
        "x%7D",
        "a%20b",
        "a+b",
        "*",
        "a%2A",
        "%C3%A9",
        "%FF",
        "%09",
        "a%23b",
        "a%25",
        "%zz",
        "a,b",
        "a%3Fb",
        &long_topic,
        "",
    ];
    for topic in bad_topics {
        let path = format!("/events?topic={topic}");
        let mut client = node.get(&path, &[]).await;
        let status = client.status().as_u16();
        let message = client.text().await;
        assert_eq!(status, 400, "{path}: {message}");
        assert!(message.contains("invalid topic"), "{path}: {message:?}");
    }
    witness.check("invalid topics").await;
    let mut client = node
        .get("/events?topic=a", &[("Last-Event-ID", &long_id)])
        .await;
    assert_eq!(client.status(), 400);
    assert!(client.text().await.contains("Last-Event-ID"));

    // What no client library sends: raw bytes in the request line. Hyper refuses some (400,
    // no body), the gateway the rest (400 and a sentence).
    let raw_targets: [&[u8]; 6] = [
        b"/events?topic={x}",
        b"/events?topic=x}",
        "/events?topic=\u{e9}".as_bytes(),
        b"/events?topic=\xff\xfe",
        b"/events?topic=a\x00b",
        b"/events?topic=a\x7fb",
    ];
    for target in raw_targets {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(
            format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let response = exchange(addr, &request, PATIENCE).await.expect("an answer");
        assert_eq!(
            status_of(&response),
            Some(400),
            "{:?}: {:?}",
            String::from_utf8_lossy(target),
            String::from_utf8_lossy(&response)
        );
    }
    witness.check("raw bytes in request lines").await;

    // Garbage instead of HTTP: 400, or closed.
    let garbage: [&[u8]; 9] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage",
        b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /events?topic=a\r\n\r\n",
        b"GET /events?topic=a HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /events?topic=a HTTP/9.9\r\n\r\n",
        b"\r\n\r\n\r\n\r\n",
        b"hello world",
        b"GET /events?topic=a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ];
    for bytes in garbage {
        let response = exchange(addr, bytes, PATIENCE).await.unwrap_or_else(|| {
            panic!(
                "{:?}: no answer and no close",
                String::from_utf8_lossy(bytes)
            )
        });
        assert!(
            response.is_empty() || status_of(&response) == Some(400),
            "{:?}: {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&response)
        );
        witness.check("garbage instead of HTTP").await;
    }
    let (status, _) = node.fetch("/healthz").await;
    assert_eq!(status, 200);
}

/// Too many topics in one request: refused with 400 as soon as the limit is passed, however
/// many more follow. (10,000 `topic=` parameters do not fit in hyper's 64 KiB URI limit, so
/// this node allows 128 KiB heads and sends 7,000 parameters over 4,489 distinct topics.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_topic_parameters_are_refused_with_400() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--max-header-size", "128KiB"]);
    let mut witness = Witness::open(&node, &redis).await;
    let alphabet: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(['_', '-', '.', ':', '/'])
        .collect();
    let query: String = (0..7_000)
        .map(|n| {
            let (first, second) = (
                alphabet[n / alphabet.len() % alphabet.len()],
                alphabet[n % alphabet.len()],
            );
            format!("topic={first}{second}&")
        })
        .collect();
    let target = format!("/events?{query}");
    assert!(target.len() < 65_534, "{} bytes", target.len());
    let mut client = node.get(&target, &[]).await;
    let status = client.status().as_u16();
    let message = client.text().await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("at most 32"), "{message:?}");
    witness.check("a request with 7,000 topics").await;
    metric_becomes(&node, "sse_topics_active", 1).await;
}

/// HTTP/2: 50 streams each on its own connection, 50 multiplexed on one connection and then
/// reset while that connection stays open, and 100 more reset as soon as they are sent. Each
/// reset or closed stream frees its slot and its subscription: the gauges return to their
/// baseline and Redis counts no subscriber left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_opened_and_reset_leak_nothing() {
    let redis = RedisServer::start();
    // Without a linger, a topic nobody holds is released at once: what is left is a leak.
    let node = start_gateway(&redis, &["--replay-cache-linger", "0s"]);
    let mut witness = Witness::open(&node, &redis).await;
    let active = "sse_connections_active";
    let topics_active = "sse_topics_active";
    let base = node.metric(active).await;
    let base_topics = node.metric(topics_active).await;

    let mut separate = Vec::new();
    for _ in 0..50 {
        let mut client = SseClient::open(node.addr, "/events?topic=h2", &[], Protocol::Http2).await;
        assert_eq!(client.status(), 200);
        client.position(PATIENCE).await;
        separate.push(client);
    }
    assert_eq!(node.metric(active).await, base + 50);

    let socket = TcpStream::connect(node.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(socket))
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    let request = |topic: &str| {
        http::Request::get(format!("http://{}/events?topic={topic}", node.addr))
            .body(Empty::<Bytes>::new())
            .expect("a valid request")
    };
    let mut multiplexed = Vec::new();
    for _ in 0..50 {
        let response = sender
            .send_request(request("h2m"))
            .await
            .expect("a response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        // Read up to the position: the stream is then subscribed.
        let mut parser = Parser::new();
        while parser.last_event_id().is_empty() {
            let frame = tokio::time::timeout(PATIENCE, body.frame())
                .await
                .expect("the stream sends its position")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                parser.feed(&data).expect("valid event-stream text");
            }
        }
        multiplexed.push(body);
    }
    assert_eq!(node.metric(active).await, base + 100);
    assert_eq!(
        numsub(&redis, "h2m"),
        1,
        "one subscription per node and topic"
    );
    witness.check("100 HTTP/2 streams").await;

    // Reset the multiplexed streams; their connection stays open.
    drop(multiplexed);
    metric_becomes(&node, active, base + 50).await;
    unsubscribed(&redis, &["h2m".to_owned()]).await;

    // Rapid reset: requests dropped as soon as they are sent.
    for _ in 0..100 {
        let response = sender.send_request(request("h2r"));
        let _ = tokio::time::timeout(Duration::from_millis(1), response).await;
    }
    witness.check("rapid resets").await;

    drop(separate);
    drop(sender);
    metric_becomes(&node, active, base).await;
    metric_becomes(&node, topics_active, base_topics).await;
    unsubscribed(
        &redis,
        &["h2".to_owned(), "h2m".to_owned(), "h2r".to_owned()],
    )
    .await;
    witness.check("the end of the HTTP/2 streams").await;
}

/// Churn: 500 streams on 50 topics opened and dropped quickly, in every way a client can go
/// (right after the response head, after the position, multi-topic, a raw socket closed
/// right after its request). Afterwards the node holds nothing for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_streams_leak_no_slot_topic_or_subscription() {
    let redis = RedisServer::start();
    // Without a linger, a topic nobody holds is released at once: what is left is a leak.
    let node = start_gateway(&redis, &["--replay-cache-linger", "0s"]);
    let mut witness = Witness::open(&node, &redis).await;
    let topics: Vec<String> = (0..50).map(|n| format!("churn{n}")).collect();

    for wave in 0..10 {
        let opens: Vec<_> = (0..50)
            .map(|n| {
                let addr = node.addr;
                let topic = topics[n].clone();
                let next = topics[(n + wave + 1) % topics.len()].clone();
                tokio::spawn(async move {
                    match (n + wave) % 4 {
                        0 => {
                            drop(SseClient::get(addr, &format!("/events?topic={topic}"), &[]).await)
                        }
                        1 => {
                            let mut client =
                                SseClient::get(addr, &format!("/events?topic={topic}"), &[]).await;
                            client.position(PATIENCE).await;
                        }
                        2 => {
                            let path = format!("/events?topic={topic}&topic={next}");
                            let mut client = SseClient::get(addr, &path, &[]).await;
                            client.position(PATIENCE).await;
                        }
                        _ => {
                            let mut socket = TcpStream::connect(addr).await.expect("connect");
                            let request = format!(
                                "GET /events?topic={topic} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
                            );
                            socket.write_all(request.as_bytes()).await.expect("send");
                        }
                    }
                })
            })
            .collect();
        for open in opens {
            open.await.expect("the task does not panic");
        }
        witness.check("stream churn").await;
    }

    metric_becomes(&node, "sse_connections_active", 1).await;
    metric_becomes(&node, "sse_topics_active", 1).await;
    unsubscribed(&redis, &topics).await;
    assert_eq!(numsub(&redis, "witness"), 1);
    witness.check("the end of the churn").await;
}

/// A client that sent its `GET` and never reads again: HTTP/1.0 (so the body is not chunked),
/// with a small receive buffer so the kernel holds little for it.
struct Stalled {
    _socket: TcpStream,
}

impl Stalled {
    /// Opens the stream and reads until it is live (its position arrived), then stops reading.
    async fn open(addr: SocketAddr, topic: &str) -> Self {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
        let mut socket = socket.connect(addr).await.expect("connect to the node");
        let request = format!("GET /events?topic={topic} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut received = Vec::new();
        let mut parser = Parser::new();
        let mut buffer = [0u8; 1024];
        let mut body_start = None;
        while parser.last_event_id().is_empty() {
            let read = tokio::time::timeout(PATIENCE, socket.read(&mut buffer))
                .await
                .expect("the stream sends its position")
                .expect("a read");
            assert!(read > 0, "the stream ended before its position");
            received.extend_from_slice(&buffer[..read]);
            if body_start.is_none() {
                body_start = find(&received, b"\r\n\r\n").map(|end| end + 4);
                if let Some(start) = body_start {
                    let head = String::from_utf8_lossy(&received[..start]);
                    assert!(
                        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
                        "{head}"
                    );
                    parser
                        .feed(&received[start..])
                        .expect("valid event-stream text");
                }
            } else {
                parser
                    .feed(&buffer[..read])
                    .expect("valid event-stream text");
            }
        }
        Self { _socket: socket }
    }
}

/// This process's resident set size (`VmRSS`), in bytes.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(u64::MAX) // "unlimited"
}

/// 2000 clients that stop reading while events flow: each is cut once it is `--client-buffer`
/// behind, memory grows by a bounded amount (not by what they did not read), and a fast
/// client gets every event in order.
///
/// The node runs in this process, so its memory is this process's `VmRSS`. The test needs
/// about 4,000 file descriptors (both ends of 2,000 connections); it checks the soft limit
/// (`ulimit -n`, 20,000 where it was written) rather than raising it: sse-gateway has no
/// `rlimit` dev-dependency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_stalled_clients_cost_bounded_memory() {
    const STALLED: usize = 2000;
    const CLIENT_BUFFER: usize = 64 * 1024;
    const EVENT_SIZE: usize = 16 * 1024;
    const MAX_PUBLISHED: usize = 50 * 1024 * 1024;
    const MIB: usize = 1024 * 1024;
    let limit = open_files_limit();
    assert!(
        limit >= 2 * STALLED as u64 + 500,
        "this test needs ~{} open files; the soft limit is {limit} (raise it with ulimit -n)",
        2 * STALLED + 500
    );

    let redis = RedisServer::start();
    let node = start_gateway(
        &redis,
        &["--client-buffer", "64KiB", "--max-connections", "20000"],
    );
    let publisher = publisher(&redis).await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED / 100 {
        let wave: Vec<_> = (0..100)
            .map(|_| tokio::spawn(Stalled::open(node.addr, "flood")))
            .collect();
        for client in wave {
            stalled.push(client.await.expect("the task does not panic"));
        }
    }
    let mut fast = node.subscribe(&["flood"]).await;
    assert_eq!(
        node.metric("sse_connections_active").await,
        STALLED as u64 + 1
    );

    let before = rss_bytes();
    let mut peak = before;
    let payload = "f".repeat(EVENT_SIZE - 16);
    let mut published = 0;
    while node.metric("sse_slow_consumer_disconnects_total").await < STALLED as u64 {
        assert!(
            published * EVENT_SIZE < MAX_PUBLISHED,
            "after {} MiB, only {} of {STALLED} stalled clients were cut",
            published * EVENT_SIZE / MIB,
            node.metric("sse_slow_consumer_disconnects_total").await
        );
        for _ in 0..16 {
            // Lock-step: the next event goes out once the fast client has this one, so the
            // fast client never falls behind, whatever the machine's load.
            let data = format!("{published:07} {payload}");
            let id = publish(&publisher, "flood", None, &data).await;
            let event = fast.next_event(PATIENCE).await;
            assert_eq!(
                event.last_event_id, id,
                "the fast client gets every event, in order"
            );
            assert!(event.data == data, "event {published} arrives intact");
            published += 1;
        }
        peak = peak.max(rss_bytes());
    }
    assert_eq!(
        node.metric("sse_slow_consumer_disconnects_total").await,
        STALLED as u64,
        "every stalled client was cut, and the fast one was not"
    );
    metric_becomes(&node, "sse_connections_active", 1).await;

    // The bound: each stalled client's outbox (--client-buffer); what was published, twice
    // (events are encoded once and shared, so what stalled connections still hold refers to
    // the same bytes; the fast client's `SseClient` keeps every byte it read, in a Vec that
    // may double); and 100 MiB for everything else (the runtimes, allocator slack, 2,000
    // connections' hyper state, another test of this file running alongside). Queueing what
    // was published for each stalled client would take STALLED times the burst (GiBs).
    let burst = published * EVENT_SIZE;
    let bound = STALLED * CLIENT_BUFFER + 2 * burst + 100 * MIB;
    let growth = peak.saturating_sub(before);
    println!(
        "{} MiB published until all {STALLED} stalled clients were cut; RSS grew by {} MiB \
         (bound {} MiB)",
        burst / MIB,
        growth / MIB,
        bound / MIB
    );
    assert!(
        growth < bound,
        "RSS grew by {} MiB while {} MiB were published to {STALLED} stalled clients; bound {} MiB",
        growth / MIB,
        burst / MIB,
        bound / MIB
    );
    drop(stalled);
}
