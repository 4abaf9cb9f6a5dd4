//! N `EventSource`-like connections: each opens `GET /events?topic=…` over HTTP/1.1 (bound to
//! one of several loopback source addresses, so one driver can exceed one address's ephemeral
//! ports), waits for its position, then checks every event against its topic's sequence:
//! in order and exactly once, or counted as missing or duplicated.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use sse_core::parser::{Item, Parser};
use tokio::net::TcpSocket;

/// Counters every connection adds to.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) received: AtomicU64,
    /// Times a stream skipped ahead in its sequence (an event missing or out of order).
    pub(crate) gaps: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) closed_early: AtomicU64,
    /// When the latest event arrived, in µs since the Unix epoch.
    pub(crate) last_received_micros: AtomicU64,
    /// Publish-to-receive latency in microseconds, sharded to keep lock contention low.
    pub(crate) latency: Vec<Mutex<Histogram<u64>>>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        let shard =
            || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        Self {
            latency: (0..64).map(|_| shard()).collect(),
            ..Self::default()
        }
    }

    /// All latency shards merged.
    pub(crate) fn merged_latency(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        for shard in &self.latency {
            if let Ok(shard) = shard.lock() {
                let _ = all.add(&*shard);
            }
        }
        all
    }
}

/// Where and what one connection subscribes to.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) gateway: SocketAddr,
    pub(crate) source: IpAddr,
    pub(crate) topic: String,
}

/// Runs one connection until `stop` resolves or the server ends it.
pub(crate) async fn run(
    index: usize,
    target: Target,
    tally: Arc<Tally>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    match subscribe(index, &target, &tally, stop).await {
        Ok(()) => {}
        Err(error) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            if tally.failed.load(Ordering::Relaxed) <= 5 {
                eprintln!("connection {index} to {} failed: {error:#}", target.gateway);
            }
        }
    }
}

async fn subscribe(
    index: usize,
    target: &Target,
    tally: &Tally,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let socket = if target.source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(target.source, 0))?;
    let stream = socket.connect(target.gateway).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(format!("/events?topic={}", target.topic))
        .header("host", target.gateway.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    let mut body = response.into_body();
    let mut parser = Parser::new();
    let mut expected: Option<u64> = None;
    let mut live = false;
    let shard = &tally.latency[index % tally.latency.len()];
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed() => return Ok(()),
        };
        let Some(Ok(frame)) = frame else {
            tally.closed_early.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let items = parser.feed(&data)?;
        if !live && !parser.last_event_id().is_empty() {
            live = true;
            tally.connected.fetch_add(1, Ordering::Relaxed);
        }
        let now = now_micros();
        for item in items {
            let Item::Event(event) = item else { continue };
            let mut fields = event.data.split(' ');
            let (Some(seq), Some(sent)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (Ok(seq), Ok(sent)) = (seq.parse::<u64>(), sent.parse::<u64>()) else {
                continue;
            };
            tally.received.fetch_add(1, Ordering::Relaxed);
            tally.last_received_micros.fetch_max(now, Ordering::Relaxed);
            match expected {
                Some(next) if seq < next => {
                    tally.duplicated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(next) if seq > next => {
                    tally.gaps.fetch_add(1, Ordering::Relaxed);
                }
                None if seq > 0 => {
                    tally.gaps.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            expected = Some(seq + 1);
            if let Ok(mut histogram) = shard.lock() {
                let _ = histogram.record(now.saturating_sub(sent).max(1));
            }
        }
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| u64::try_from(now.as_micros()).unwrap_or(u64::MAX))
}

/// Waits until `count` connections are live or have failed, for at most `timeout`.
pub(crate) async fn wait_connected(tally: &Tally, count: u64, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tally.connected.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < count
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
