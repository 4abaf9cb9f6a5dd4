//! Slow consumers (SPEC §4): a client that stops reading is cut once it is more than
//! `--client-buffer` behind. It never holds up other clients, never makes the node's memory
//! grow with what it did not read, and resumes from the stream with its last event id
//! without losing anything.
//!
//! A stalled client here is a raw socket with a small receive buffer that sends its `GET` and
//! then stops reading, so the kernel buffers fill after little data. The fast client is read
//! in lock-step with publishing: each event is published only after the fast client received
//! the previous one, so the fast client never has more than one event queued and is never
//! too slow itself, whatever the machine's load. How much a stalled socket absorbs before
//! the node even sees it fall behind is up to the kernel (on loopback the send buffer alone
//! grows to a few MiB), so the tests publish until the cut, not a fixed amount.

mod harness;

use std::net::SocketAddr;

use harness::{PATIENCE, TestGateway, publish, publisher, start_gateway};
use sse_core::{Item, MessageEvent, Parser};
use sse_publisher::Publisher;
use sse_testkit::{RedisServer, SseClient, eventually, find};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SLOW_DISCONNECTS: &str = "sse_slow_consumer_disconnects_total";
/// The receive buffer a stalled client asks for (the kernel doubles it and rounds it up).
const STALLED_RECV_BUFFER: u32 = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_resumes_without_loss() {
    /// At most this many 4 KiB events (16 MiB) are published waiting for the cut.
    const MAX_EVENTS: usize = 4000;
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--client-buffer", "16KiB"]);
    let publisher = publisher(&redis).await;
    let mut stalled = RawStream::open(node.addr, "/events?topic=bulk").await;
    let start = stalled.position().await;
    let mut fast = node.subscribe(&["bulk"]).await;

    let payload = "x".repeat(4096);
    let mut ids = Vec::new();
    while metric(&node, SLOW_DISCONNECTS).await == 0 {
        assert!(
            ids.len() < MAX_EVENTS,
            "the stalled client was not cut after {} events of 4 KiB",
            ids.len()
        );
        for _ in 0..25 {
            ids.push(publish_through(&publisher, &mut fast, "bulk", &payload, ids.len()).await);
        }
    }
    // Events after the cut, which the stalled client can only get by resuming.
    for _ in 0..25 {
        ids.push(publish_through(&publisher, &mut fast, "bulk", &payload, ids.len()).await);
    }
    assert_eq!(
        metric(&node, SLOW_DISCONNECTS).await,
        1,
        "only the stalled client was cut"
    );

    let end = stalled.until_end().await;
    let received: Vec<&str> = stalled
        .events
        .iter()
        .map(|e| e.last_event_id.as_str())
        .collect();
    assert!(
        received.len() < ids.len(),
        "the stream ended ({end:?}) before the events after the cut"
    );
    assert_eq!(
        received,
        ids[..received.len()],
        "before it ended ({end:?}), the stalled client got a gap-free prefix"
    );

    let last = stalled.last_event_id();
    assert!(received.is_empty() || last != start);
    let mut resumed = node
        .get("/events?topic=bulk", &[("Last-Event-ID", last.as_str())])
        .await;
    assert_eq!(resumed.status(), 200);
    let rest: Vec<String> = resumed
        .events(ids.len() - received.len(), PATIENCE)
        .await
        .into_iter()
        .map(|e| e.last_event_id)
        .collect();
    assert_eq!(
        rest,
        ids[received.len()..],
        "resuming from {last} gives exactly what the stalled client missed"
    );
    let marker = publish(&publisher, "bulk", None, "marker").await;
    assert_eq!(
        resumed.next_event(PATIENCE).await.last_event_id,
        marker,
        "and nothing more"
    );
}

/// A cut client must not keep what it held while it still does not read: its stream slot
/// (`--max-connections`), its place in the hub, its count in `sse_connections_active`.
/// Otherwise clients that stop reading (a vanished mobile client behind a zero window, or a
/// deliberate slow reader) are cut in name only and, one by one, fill the node until it
/// answers everyone with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_client_frees_its_stream_slot_even_if_it_never_reads_again() {
    const MAX_EVENTS: usize = 4000;
    let redis = RedisServer::start();
    let node = start_gateway(
        &redis,
        &["--client-buffer", "16KiB", "--max-connections", "2"],
    );
    let publisher = publisher(&redis).await;
    let mut stalled = RawStream::open(node.addr, "/events?topic=slots").await;
    stalled.position().await;
    let mut fast = node.subscribe(&["slots"]).await;
    let refused = node.get("/events?topic=other", &[]).await;
    assert_eq!(refused.status(), 503, "both slots are taken");

    let payload = "z".repeat(4096);
    let mut published = 0;
    while metric(&node, SLOW_DISCONNECTS).await == 0 {
        assert!(published < MAX_EVENTS, "the stalled client was not cut");
        for _ in 0..25 {
            publish_through(&publisher, &mut fast, "slots", &payload, published).await;
            published += 1;
        }
    }

    // The stalled client still has not read a byte since its position.
    eventually(
        "the cut client's stream is no longer counted as open",
        PATIENCE,
        || async { (metric(&node, "sse_connections_active").await == 1).then_some(()) },
    )
    .await;
    let mut newcomer = node.get("/events?topic=other", &[]).await;
    assert_eq!(newcomer.status(), 200, "{}", newcomer.text().await);
    drop(stalled);
}

/// Stalled clients cost at most their `--client-buffer` each: with 200 of them, a burst of
/// (at least) 8 MiB makes the node's memory (this process's: the node runs in it) grow by far
/// less than queueing the burst for each of them would take (1.6 GiB and more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_cost_bounded_memory_and_do_not_slow_others() {
    const STALLED: usize = 200;
    const CLIENT_BUFFER: usize = 64 * 1024;
    const EVENT_SIZE: usize = 8 * 1024;
    const MIN_EVENTS: usize = 1024;
    const MAX_EVENTS: usize = 4096;
    const MIB: usize = 1024 * 1024;

    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--client-buffer", "64KiB"]);
    let publisher = publisher(&redis).await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut client = RawStream::open(node.addr, "/events?topic=burst").await;
        client.position().await;
        stalled.push(client);
    }
    let mut fast = node.subscribe(&["burst"]).await;

    let before = rss_bytes();
    let mut peak = before;
    let payload = "y".repeat(EVENT_SIZE - 8);
    let mut published = 0;
    while published < MIN_EVENTS || metric(&node, SLOW_DISCONNECTS).await < STALLED as u64 {
        assert!(
            published < MAX_EVENTS,
            "not every stalled client was cut after {published} events of 8 KiB"
        );
        for _ in 0..32 {
            publish_through(&publisher, &mut fast, "burst", &payload, published).await;
            published += 1;
        }
        peak = peak.max(rss_bytes());
    }

    assert_eq!(
        metric(&node, SLOW_DISCONNECTS).await,
        STALLED as u64,
        "every stalled client was cut, the fast one was not"
    );
    // The bound: each stalled client's outbox (`--client-buffer`); the burst itself, once
    // (events are encoded once and shared, so whatever the stalled connections still hold
    // refers to the same bytes); the fast client's record of every byte it read (a Vec that
    // may double past the burst); and 64 MiB for everything else (allocator slack, the
    // runtime, the other test of this file running alongside).
    let burst = published * EVENT_SIZE;
    let bound = STALLED * CLIENT_BUFFER + burst + 2 * burst + 64 * MIB;
    let growth = peak.saturating_sub(before);
    assert!(
        growth < bound,
        "RSS grew by {} MiB during a {} MiB burst; bound {} MiB",
        growth / MIB,
        burst / MIB,
        bound / MIB
    );
    drop(stalled);
}

/// What a stalled client costs the kernel is bounded too: its connection's send buffer is
/// capped (`--send-buffer`), so the data queued for it stays near that size instead of
/// growing to `tcp_wmem`'s maximum, and once it is cut its socket is reset, not closed, so
/// the kernel does not keep it (in FIN-WAIT, its send queue full) after the node let it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_client_leaves_nothing_queued_in_the_kernel() {
    const MAX_EVENTS: usize = 4000;
    /// The cap asked for; the kernel doubles it, and counts its own overhead against it.
    const SEND_BUFFER: u64 = 16 * 1024;
    let redis = RedisServer::start();
    let node = start_gateway(
        &redis,
        &["--client-buffer", "16KiB", "--send-buffer", "16KiB"],
    );
    let publisher = publisher(&redis).await;
    let mut stalled = RawStream::open(node.addr, "/events?topic=kernel").await;
    stalled.position().await;
    let client_port = stalled.socket.local_addr().expect("its address").port();
    let mut fast = node.subscribe(&["kernel"]).await;

    let payload = "k".repeat(4096);
    let mut published = 0;
    let mut most_queued = 0;
    while metric(&node, SLOW_DISCONNECTS).await == 0 {
        assert!(published < MAX_EVENTS, "the stalled client was not cut");
        publish_through(&publisher, &mut fast, "kernel", &payload, published).await;
        published += 1;
        if let Some(socket) = server_socket(node.addr.port(), client_port) {
            most_queued = most_queued.max(socket.send_queue);
        }
    }
    assert!(
        most_queued > 0,
        "the node's socket to the stalled client held unsent data before the cut"
    );
    assert!(
        most_queued <= 4 * SEND_BUFFER,
        "with --send-buffer 16KiB the kernel queued {most_queued} bytes for a client that does not read"
    );
    eventually(
        "the cut client's socket is gone from the node's side",
        PATIENCE,
        || async {
            match server_socket(node.addr.port(), client_port) {
                None => Some(()),
                Some(socket) if socket.state == TCP_CLOSE => Some(()),
                Some(_) => None,
            }
        },
    )
    .await;
    let end = stalled.until_end().await;
    assert!(
        matches!(end, End::Reset(std::io::ErrorKind::ConnectionReset)),
        "the cut connection was reset, not closed: {end:?}"
    );
    drop(stalled);
}

// === helpers ===

/// `st` of `/proc/net/tcp` for a closed socket.
const TCP_CLOSE: u8 = 7;

/// One socket of `/proc/net/tcp`: its state and the bytes it has not had acknowledged.
#[derive(Debug)]
struct KernelSocket {
    state: u8,
    send_queue: u64,
}

/// The node's side of its connection to `client_port` (local port `node_port`), if the
/// kernel still has it.
fn server_socket(node_port: u16, client_port: u16) -> Option<KernelSocket> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |address: &str| {
        let (_, port) = address.split_once(':')?;
        u16::from_str_radix(port, 16).ok()
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, state, queues) = (
            fields.get(1)?,
            fields.get(2)?,
            fields.get(3)?,
            fields.get(4)?,
        );
        if port(local)? != node_port || port(remote)? != client_port {
            return None;
        }
        let (send_queue, _) = queues.split_once(':')?;
        Some(KernelSocket {
            state: u8::from_str_radix(state, 16).ok()?,
            send_queue: u64::from_str_radix(send_queue, 16).ok()?,
        })
    })
}

/// Publishes event number `seq` on `topic` and waits until `fast` (a client on `topic`)
/// received it; returns its id.
async fn publish_through(
    publisher: &Publisher,
    fast: &mut SseClient,
    topic: &str,
    payload: &str,
    seq: usize,
) -> String {
    let data = format!("{seq:07} {payload}");
    let id = publish(publisher, topic, None, &data).await;
    let event = fast.next_event(PATIENCE).await;
    assert_eq!(
        event.last_event_id, id,
        "the fast client gets every event, in order"
    );
    assert!(event.data == data, "event {seq} arrives intact");
    id
}

/// The value of the unlabelled counter `name` on the node's `/metrics`.
async fn metric(node: &TestGateway, name: &str) -> u64 {
    let (status, body) = node.fetch("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            if key == name {
                value.trim().parse().ok()
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("{name} is exported"))
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

/// How a raw stream ended.
#[derive(Debug)]
enum End {
    /// The server ended the response (the last, empty chunk).
    LastChunk,
    /// The server closed the connection.
    Eof,
    /// The connection broke.
    Reset(std::io::ErrorKind),
}

/// An event stream over a bare socket with a small receive buffer, read only when the test
/// says so: a client that stops reading. HTTP/1.1, `Connection: close`, chunked body.
struct RawStream {
    socket: TcpStream,
    /// Bytes received and not decoded yet.
    pending: Vec<u8>,
    head_read: bool,
    last_chunk: bool,
    parser: Parser,
    events: Vec<MessageEvent>,
}

impl RawStream {
    async fn open(addr: SocketAddr, path: &str) -> Self {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .set_recv_buffer_size(STALLED_RECV_BUFFER)
            .expect("set SO_RCVBUF");
        let mut socket = socket.connect(addr).await.expect("connect to the node");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
        );
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        Self {
            socket,
            pending: Vec::new(),
            head_read: false,
            last_chunk: false,
            parser: Parser::new(),
            events: Vec::new(),
        }
    }

    fn last_event_id(&self) -> String {
        self.parser.last_event_id().to_owned()
    }

    /// Reads until the stream sent its position (the bare `id:` of a fresh stream).
    async fn position(&mut self) -> String {
        while self.parser.last_event_id().is_empty() {
            let read = self.read().await;
            assert!(
                matches!(read, Ok(n) if n > 0),
                "the stream ended before its position: {read:?}"
            );
        }
        self.last_event_id()
    }

    /// Reads everything left until the stream ends.
    async fn until_end(&mut self) -> End {
        loop {
            if self.last_chunk {
                return End::LastChunk;
            }
            match self.read().await {
                Ok(0) => return End::Eof,
                Ok(_) => {}
                Err(error) => return End::Reset(error.kind()),
            }
        }
    }

    /// One read from the socket, decoded as far as possible.
    async fn read(&mut self) -> std::io::Result<usize> {
        let mut buffer = vec![0; 64 * 1024];
        let read = tokio::time::timeout(PATIENCE, self.socket.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("nothing to read within {PATIENCE:?}"))?;
        self.pending.extend_from_slice(&buffer[..read]);
        self.decode();
        Ok(read)
    }

    /// Decodes the response head and then whole chunks from `pending`.
    fn decode(&mut self) {
        if !self.head_read {
            let Some(end) = find(&self.pending, b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.pending[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            self.pending.drain(..end + 4);
            self.head_read = true;
        }
        while !self.last_chunk {
            let Some(line_end) = find(&self.pending, b"\r\n") else {
                return;
            };
            let size_line = String::from_utf8_lossy(&self.pending[..line_end]).into_owned();
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .unwrap_or_else(|_| panic!("a chunk size, not {size_line:?}"));
            let total = line_end + 2 + size + 2;
            if self.pending.len() < total {
                return;
            }
            let data: Vec<u8> = self.pending[line_end + 2..line_end + 2 + size].to_vec();
            self.pending.drain(..total);
            if size == 0 {
                self.last_chunk = true;
                return;
            }
            let items = self
                .parser
                .feed(&data)
                .expect("the stream is valid event-stream text");
            self.events
                .extend(items.into_iter().filter_map(|item| match item {
                    Item::Event(event) => Some(event),
                    _ => None,
                }));
        }
    }
}
