//! What every integration test of `sse-publisher` starts from: a service in this process on
//! `127.0.0.1:0` in front of a `redis-server` the test owns, an HTTP client for it, a raw
//! HTTP/1.1 client for requests no well-behaved client sends, and readers of what Redis holds.
//!
//! The service is a [`sse_testkit::ServerThread`]: it runs on a thread and runtime of its own,
//! as it would in its own process, so a test may block (a synchronous Redis call,
//! [`sse_testkit::wait_until`], a pub/sub read) without stalling the service it is talking to.
//!
//! Each test file uses a different part of this module, so the rest is dead code there.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sse_core::Topic;
use sse_core::schema::stream_key;
use sse_publisher::{Config, StartError};
use sse_testkit::{RedisServer, ServerThread, find, status_of};

/// The bearer token [`start_publisher`] configures.
pub(crate) const TOKEN: &str = "test-token";

/// How long any single wait of these tests may take before it fails the test. Generous: it
/// only bounds a hang, it asserts nothing about speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

/// An `sse-publisher` service running in this process.
///
/// Dropping it shuts the service down and waits for it; [`TestPublisher::stop`] also returns
/// what `run` returned.
pub(crate) struct TestPublisher {
    /// Where the service listens.
    pub(crate) addr: SocketAddr,
    client: reqwest::Client,
    service: ServerThread<Result<(), StartError>>,
}

/// Starts the service for `redis` with `--token test-token`, the defaults users get, and
/// `extra_args` (e.g. `["--max-body", "1KiB"]`).
pub(crate) fn start_publisher(redis: &RedisServer, extra_args: &[&str]) -> TestPublisher {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str(), "--token", TOKEN];
    args.extend_from_slice(extra_args);
    start_publisher_with(&args)
}

/// Starts the service with exactly these flags (no token unless `args` has one).
pub(crate) fn start_publisher_with(args: &[&str]) -> TestPublisher {
    let config =
        Config::try_parse_from(std::iter::once("sse-publisher").chain(args.iter().copied()))
            .unwrap_or_else(|error| panic!("flags {args:?} do not parse: {error}"));
    let service = ServerThread::start("sse-publisher", move |listener, shutdown| {
        sse_publisher::run(config, listener, shutdown)
    });
    TestPublisher {
        addr: service.addr(),
        client: http_client(),
        service,
    }
}

/// A client that talks to 127.0.0.1 directly, whatever proxy the environment names.
pub(crate) fn http_client() -> reqwest::Client {
    // The workspace's reqwest brings no TLS provider of its own; the services install ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .expect("build an HTTP client")
}

impl TestPublisher {
    /// `http://127.0.0.1:PORT<path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /v1/publish` of `body` as JSON with the test token.
    pub(crate) async fn publish(&self, body: &Value) -> Reply {
        self.post_json(&body.to_string(), Some(TOKEN)).await
    }

    /// `POST /v1/publish` of `body` as JSON with the test token; asserts `201` and returns the
    /// response body.
    pub(crate) async fn publish_created(&self, body: &Value) -> Value {
        let reply = self.publish(body).await;
        assert_eq!(reply.status, 201, "publishing {body} answered {reply:?}");
        reply.json()
    }

    /// Publishes one event and returns its id.
    pub(crate) async fn publish_one(&self, topic: &str, data: &str) -> String {
        let body = self
            .publish_created(&serde_json::json!({ "topic": topic, "data": data }))
            .await;
        body["id"]
            .as_str()
            .expect("a 201 for one event has a string id")
            .to_owned()
    }

    /// `POST /v1/publish` of the text `body` declared as `application/json`, with `token` as
    /// bearer token if given.
    pub(crate) async fn post_json(&self, body: &str, token: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post(self.url("/v1/publish"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::read(request.send().await.expect("send a publish request")).await
    }

    /// `POST /v1/publish` of `body` with exactly these headers.
    pub(crate) async fn post_with_headers(&self, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .client
            .post(self.url("/v1/publish"))
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("send a publish request")).await
    }

    /// Any request without a body.
    pub(crate) async fn request(&self, method: http::Method, path: &str) -> Reply {
        let response = self
            .client
            .request(method, self.url(path))
            .send()
            .await
            .expect("send a request");
        Reply::read(response).await
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.request(http::Method::GET, path).await
    }

    /// `GET path` with the test token.
    pub(crate) async fn get_authorized(&self, path: &str) -> Reply {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("send a request");
        Reply::read(response).await
    }

    /// Shuts the service down and returns what `run` returned.
    pub(crate) fn stop(self) -> Result<(), StartError> {
        self.service.stop()
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("read a response body");
        Self {
            status,
            headers,
            body,
        }
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "response body {:?} is not JSON: {error}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts that this is the documented error body with `status` and `code`, and that its
    /// `detail` contains every one of `details`. Returns the detail.
    pub(crate) fn assert_error(&self, status: u16, code: &str, details: &[&str]) -> String {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body = self.json();
        let object = body.as_object().expect("an error body is a JSON object");
        assert_eq!(
            object.len(),
            2,
            "an error body has exactly error and detail: {body}"
        );
        assert_eq!(body["error"], code, "unexpected error code: {body}");
        let detail = body["detail"]
            .as_str()
            .expect("an error's detail is a string")
            .to_owned();
        for expected in details {
            assert!(
                detail.contains(expected),
                "detail {detail:?} does not contain {expected:?}"
            );
        }
        detail
    }
}

/// Sends `request` as is over a new TCP connection and reads one HTTP/1.1 response.
///
/// For requests a normal client would not send (chunked bodies, lying or missing headers).
/// It blocks, which is fine: the service runs on its own threads.
pub(crate) fn raw_http(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the publisher");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
    stream.write_all(request).expect("send a raw request");
    read_response(&mut stream, Vec::new())
}

/// Reads one HTTP/1.1 response from `stream`, of which `received` already arrived.
pub(crate) fn read_response(stream: &mut TcpStream, mut received: Vec<u8>) -> Reply {
    let mut buffer = [0_u8; 8192];
    loop {
        if let Some(reply) = parse_response(&received) {
            return reply;
        }
        match stream.read(&mut buffer) {
            Ok(0) => panic!(
                "connection closed before a whole response arrived: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) => panic!(
                "reading the response failed after {:?}: {error}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

/// A whole response with a `Content-Length` body, or `None` if more bytes are needed.
fn parse_response(bytes: &[u8]) -> Option<Reply> {
    let head_end = find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).expect("response headers are text");
    let status = status_of(bytes).unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let mut lines = head.split("\r\n");
    lines.next(); // the status line
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(value.trim()).expect("a valid header value"),
        );
    }
    let length: usize = headers
        .get(http::header::CONTENT_LENGTH)
        .expect("the publisher answers with a Content-Length")
        .to_str()
        .expect("Content-Length is text")
        .parse()
        .expect("Content-Length is a number");
    let body = bytes.get(head_end + 4..head_end + 4 + length)?;
    Some(Reply {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

/// One entry of a topic's stream, as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    /// The `data` field.
    pub(crate) data: Vec<u8>,
    /// The `event` field, if the entry has one.
    pub(crate) event: Option<String>,
    /// How many fields the entry has.
    pub(crate) fields: usize,
}

/// The stream key of `topic`, spelled by `sse_core::schema`.
pub(crate) fn key(topic: &str) -> String {
    stream_key(&Topic::parse(topic).expect("tests use valid topics"))
}

/// Every entry of `topic`'s stream, oldest first (`XRANGE - +`).
pub(crate) fn entries(redis: &RedisServer, topic: &str) -> Vec<Entry> {
    let reply: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(key(topic))
        .arg("-")
        .arg("+")
        .query(&mut redis.connection())
        .expect("XRANGE");
    reply
        .into_iter()
        .map(|(id, mut fields)| Entry {
            id,
            fields: fields.len(),
            data: fields.remove("data").expect("every entry has a data field"),
            event: fields
                .remove("event")
                .map(|name| String::from_utf8(name).expect("event names are text")),
        })
        .collect()
}

/// The ids in `topic`'s stream, oldest first.
pub(crate) fn ids(redis: &RedisServer, topic: &str) -> Vec<String> {
    entries(redis, topic)
        .into_iter()
        .map(|entry| entry.id)
        .collect()
}

/// `XLEN` of `topic`'s stream.
pub(crate) fn xlen(redis: &RedisServer, topic: &str) -> usize {
    redis::cmd("XLEN")
        .arg(key(topic))
        .query(&mut redis.connection())
        .expect("XLEN")
}

/// Every key of the schema (`KEYS sse:*`), sorted.
pub(crate) fn sse_keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("sse:*")
        .query(&mut redis.connection())
        .expect("KEYS sse:*");
    keys.sort();
    keys
}

/// A stream id as `(ms, seq)`, for comparing ids the way Redis orders them.
pub(crate) fn parse_id(id: &str) -> sse_core::EventId {
    sse_core::EventId::parse(id).unwrap_or_else(|error| panic!("{error}"))
}

/// Asserts that `ids` increase strictly, in Redis order.
pub(crate) fn assert_strictly_increasing(ids: &[String]) {
    for pair in ids.windows(2) {
        assert!(
            parse_id(&pair[0]) < parse_id(&pair[1]),
            "ids do not increase: {} then {}",
            pair[0],
            pair[1]
        );
    }
}
