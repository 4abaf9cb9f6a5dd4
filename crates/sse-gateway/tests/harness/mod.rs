//! What every integration test of `sse-gateway` starts from: gateway nodes in this process on
//! `127.0.0.1:0` in front of a `redis-server` the test owns, a publisher, and
//! [`sse_testkit::SseClient`] to read streams as a browser would.
//!
//! Each node is a [`sse_testkit::ServerThread`]: it runs on a thread and runtime of its own, as
//! it would in its own process, so a test may block (a synchronous Redis call, `wait_until`)
//! without stalling it, and stopping one node does not touch another.
#![allow(dead_code, reason = "each test file uses a different subset")]

pub(crate) mod child;
pub(crate) mod cluster;
pub(crate) mod feed;
pub(crate) mod local_cluster;
pub(crate) mod tokens;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use sse_core::schema::Retention;
use sse_core::{Event, EventName, Topic};
use sse_gateway::{Config, StartError};
use sse_publisher::{Publisher, RedisFlags};
use sse_testkit::{RedisServer, ServerThread, SseClient, eventually};

/// How long any single wait may take before it fails the test. It bounds a hang; it asserts
/// nothing about speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

/// A gateway node running in this process.
///
/// Dropping it starts the node's shutdown without waiting for it: the drain ends the streams
/// still open over `--drain-seconds` (10 s by default), which a test that is over need not
/// wait for. [`TestGateway::stop`] waits.
pub(crate) struct TestGateway {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// `None` only once stopped.
    node: Option<ServerThread<Result<(), StartError>>>,
}

/// `GET path` with `headers` on `gateway`, expecting a plain-text refusal with `status`
/// whose message contains every one of `phrases`.
pub(crate) async fn refused(
    gateway: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    phrases: &[&str],
) {
    let mut client = gateway.get(path, headers).await;
    let code = client.status().as_u16();
    let content_type = client
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let message = client.text().await;
    assert_eq!(code, status, "GET {path} {headers:?}: {message}");
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; charset=utf-8"),
        "GET {path}"
    );
    for phrase in phrases {
        assert!(
            message.contains(phrase),
            "GET {path} {headers:?}: {message:?} does not say {phrase:?}"
        );
    }
}

/// Starts a node for `redis` with the defaults users get, plus `extra_args`.
pub(crate) fn start_gateway(redis: &RedisServer, extra_args: &[&str]) -> TestGateway {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str()];
    args.extend_from_slice(extra_args);
    start_gateway_with(&args)
}

/// Starts a node with exactly these flags.
pub(crate) fn start_gateway_with(args: &[&str]) -> TestGateway {
    start_gateway_on(std::net::Ipv4Addr::LOCALHOST.into(), args)
}

/// Starts a node with exactly these flags, listening on a free port of `ip`.
pub(crate) fn start_gateway_on(ip: std::net::IpAddr, args: &[&str]) -> TestGateway {
    let config = Config::try_parse_from(std::iter::once("sse-gateway").chain(args.iter().copied()))
        .unwrap_or_else(|error| panic!("flags {args:?} do not parse: {error}"));
    let node = ServerThread::start_on(ip, "sse-gateway", move |listener, shutdown| {
        sse_gateway::run(config, listener, shutdown)
    });
    TestGateway {
        addr: node.addr(),
        node: Some(node),
    }
}

impl TestGateway {
    /// The value of the sample `series` (name and labels, as exported) on `/metrics`; fails
    /// the test when it is not exported.
    pub(crate) async fn metric(&self, series: &str) -> u64 {
        metric_at(self.addr, series).await
    }

    /// Opens `GET path` (e.g. `/events?topic=a`) over HTTP/1.1 with `headers`.
    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> SseClient {
        SseClient::get(self.addr, path, headers).await
    }

    /// Opens `path` resuming from `last_event_id` (the `Last-Event-ID` header) and checks
    /// that it is a stream.
    pub(crate) async fn resume(&self, path: &str, last_event_id: &str) -> SseClient {
        let mut client = self.get(path, &[("Last-Event-ID", last_event_id)]).await;
        assert_eq!(client.status(), 200, "{}", client.text().await);
        client
    }

    /// Opens a stream on `topics` and waits until it is live (its first `id:` position
    /// arrived), so that anything published afterwards must reach it.
    pub(crate) async fn subscribe(&self, topics: &[&str]) -> SseClient {
        let query: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
        let mut client = self.get(&format!("/events?{}", query.join("&")), &[]).await;
        assert_eq!(client.status(), 200, "{}", client.text().await);
        client.position(PATIENCE).await;
        client
    }

    /// The status and body of `GET path`.
    pub(crate) async fn fetch(&self, path: &str) -> (u16, String) {
        let mut client = self.get(path, &[]).await;
        (client.status().as_u16(), client.text().await)
    }

    /// Starts the node's shutdown (as SIGTERM does) without waiting for it.
    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(node) = &mut self.node {
            node.begin_shutdown();
        }
    }

    /// Shuts the node down and waits for `run` to return.
    pub(crate) fn stop(mut self) -> Result<(), StartError> {
        self.node.take().expect("stopped once").stop()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.detach();
        }
    }
}

/// The value of the sample `series` (name and labels, as exported) on the `/metrics` of the
/// node at `addr`; fails the test when it is not exported.
pub(crate) async fn metric_at(addr: SocketAddr, series: &str) -> u64 {
    let mut client = SseClient::get(addr, "/metrics", &[]).await;
    let status = client.status();
    let text = client.text().await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("an integer sample"))
        .unwrap_or_else(|| panic!("{series} is exported by {addr}"))
}

/// A publisher (the library) for `redis`.
pub(crate) async fn publisher(redis: &RedisServer) -> Publisher {
    publisher_with(redis, Retention::default()).await
}

/// A publisher for `redis` whose streams keep `max_len` events.
pub(crate) async fn publisher_keeping(redis: &RedisServer, max_len: u64) -> Publisher {
    let retention = Retention {
        max_len,
        ..Retention::default()
    };
    publisher_with(redis, retention).await
}

/// A publisher for `redis` with `retention`.
pub(crate) async fn publisher_with(redis: &RedisServer, retention: Retention) -> Publisher {
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..RedisFlags::default()
    };
    Publisher::connect(&options, retention)
        .await
        .expect("the redis url is valid")
}

/// Publishes `data` on `topic` (optionally named) and returns the event id.
pub(crate) async fn publish(
    publisher: &Publisher,
    topic: &str,
    name: Option<&str>,
    data: &str,
) -> String {
    let mut event = Event::new(
        Topic::parse(topic).expect("tests use valid topics"),
        data.to_owned(),
    );
    if let Some(name) = name {
        event = event.named(EventName::parse(name).expect("tests use valid event names"));
    }
    publisher
        .publish(&event)
        .await
        .expect("publish")
        .to_string()
}

/// Subscribers of `topic`'s live channel, as Redis counts them (`PUBSUB NUMSUB`).
pub(crate) fn numsub(redis: &RedisServer, topic: &str) -> i64 {
    let channel = sse_core::schema::live_channel(&Topic::parse(topic).expect("a valid topic"));
    let reply: (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(&mut redis.connection())
        .expect("PUBSUB NUMSUB");
    reply.1
}

/// Sends a raw HTTP/1.1 request (which must say `Connection: close`) and returns the whole
/// response as text: for requests no well-behaved client library sends.
pub(crate) fn raw_request(addr: SocketAddr, request: &str) -> String {
    String::from_utf8_lossy(&sse_testkit::send_raw(addr, request.as_bytes(), PATIENCE)).into_owned()
}

/// Each event as `(type, data, id)`, to compare whole sequences at once.
pub(crate) fn triples(events: &[sse_core::MessageEvent]) -> Vec<(&str, &str, &str)> {
    events
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.data.as_str(),
                e.last_event_id.as_str(),
            )
        })
        .collect()
}

/// The `sse-publisher` binary of this build.
pub(crate) fn publisher_binary() -> std::path::PathBuf {
    sibling_binary("sse-publisher")
}

/// The binary `package` (named like its package) of this build, a sibling of the gateway's,
/// built if it is not there yet (`cargo test -p sse-gateway` alone does not build other
/// packages' binaries).
pub(crate) fn sibling_binary(package: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_sse-gateway")).with_file_name(package);
    if !path.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", package, "--bin", package])
            .status()
            .expect("run cargo build");
        assert!(built.success(), "cargo build -p {package} failed");
    }
    path
}

/// Makes `MAXLEN ~` trim exactly: it trims whole stream nodes, so one entry per node.
pub(crate) fn trim_exactly(redis: &RedisServer) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(1)
        .exec(&mut redis.connection())
        .expect("CONFIG SET");
}

/// Drops the node's pub/sub connection and keeps it from subscribing again (its user may not
/// `SUBSCRIBE`), so that what is published until [`restore_pubsub`] reaches the node only by
/// the gap fill that follows.
pub(crate) async fn cut_pubsub(redis: &RedisServer, gateway: &TestGateway) {
    let mut control = redis.connection();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-subscribe")
        .exec(&mut control)
        .expect("ACL SETUSER");
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut control)
        .expect("CLIENT KILL TYPE pubsub");
    assert_eq!(killed, 1, "the node's one pub/sub connection");
    eventually("the node cannot resubscribe", PATIENCE, || async {
        (gateway.fetch("/readyz").await.0 == 503).then_some(())
    })
    .await;
}

/// Lets the node subscribe again, and waits until it has.
pub(crate) async fn restore_pubsub(redis: &RedisServer, gateway: &TestGateway) {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+subscribe")
        .exec(&mut redis.connection())
        .expect("ACL SETUSER");
    eventually("the node resubscribed", PATIENCE, || async {
        (gateway.fetch("/readyz").await.0 == 200).then_some(())
    })
    .await;
}
