//! [`SseClient`]: an event-stream client for tests, over hyper's client connection API and
//! `sse_core`'s parser, reading exactly what a browser's `EventSource` would see.
//!
//! It can speak HTTP/1.1 (as browsers and nginx do) or HTTP/2 with prior knowledge (h2c),
//! send any headers (`Last-Event-ID`), and read the stream item by item with a timeout, so a
//! test can tell "nothing arrived" from "the server ended the stream". [`SseClient::reconnect`]
//! opens the same URL again with the last event id, as `EventSource` does.
//!
//! [`SseClient::get`] panics when there is no response (a failed test); [`SseClient::try_get`]
//! returns a [`ConnectError`] instead, for clients that expect a node to be down and retry.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sse_core::parser::{Item, MessageEvent, Parser};
use tokio::net::TcpStream;

/// Which HTTP version to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, as browsers and nginx's upstream connections use.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// What [`SseClient::next`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// An item of the stream: an event, a `retry:` or a comment.
    Item(Item),
    /// Nothing within the timeout.
    Timeout,
    /// The server ended the stream (or the connection broke).
    Closed,
}

/// Why no response head arrived.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection could not be made (refused: the node is down or not listening).
    Connect(std::io::Error),
    /// The HTTP handshake failed (on HTTP/2: the preface and settings exchange).
    Handshake(hyper::Error),
    /// The connection broke before a response head arrived.
    NoResponse(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "connect to the server: {error}"),
            Self::Handshake(error) => write!(f, "HTTP handshake: {error}"),
            Self::NoResponse(error) => write!(f, "the server sends no response head: {error}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(error) => Some(error),
            Self::Handshake(error) | Self::NoResponse(error) => Some(error),
        }
    }
}

/// An open event stream; see the module docs.
pub struct SseClient {
    addr: SocketAddr,
    path: String,
    protocol: Protocol,
    headers: Vec<(String, String)>,
    status: StatusCode,
    response_headers: HeaderMap,
    body: Option<Incoming>,
    parser: Parser,
    items: VecDeque<Item>,
    /// The last event id as of the last item handed out. The parser runs ahead of the caller
    /// when one read holds several events (the server batches writes): items still queued
    /// have not been seen, so a resume must not skip them.
    handed_out_id: String,
    /// Every byte of the body received so far, for assertions on the wire format.
    raw: Vec<u8>,
}

impl SseClient {
    /// `GET path` over HTTP/1.1 with `headers`. Returns once the response head arrived,
    /// whatever its status.
    ///
    /// # Panics
    /// If the connection cannot be made or the server sends no response head.
    pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        Self::open(addr, path, headers, Protocol::Http1).await
    }

    /// `GET path` over HTTP/1.1 with `headers`, or why no response head arrived. Returns once
    /// the response head arrived, whatever its status.
    ///
    /// # Errors
    /// [`ConnectError`] if the connection cannot be made or breaks before a response head.
    pub async fn try_get(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, ConnectError> {
        Self::try_open(addr, path, headers, Protocol::Http1).await
    }

    /// `GET path` with `headers` over `protocol`.
    ///
    /// # Panics
    /// If the connection cannot be made or the server sends no response head.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        protocol: Protocol,
    ) -> Self {
        Self::try_open(addr, path, headers, protocol)
            .await
            .unwrap_or_else(|error| panic!("GET {path} from {addr}: {error}"))
    }

    /// `GET path` with `headers` over `protocol`, or why no response head arrived.
    ///
    /// # Errors
    /// [`ConnectError`] if the connection cannot be made or breaks before a response head.
    pub async fn try_open(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        protocol: Protocol,
    ) -> Result<Self, ConnectError> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (status, response_headers, body) = request(addr, path, &headers, protocol).await?;
        Ok(Self {
            addr,
            path: path.to_owned(),
            protocol,
            headers,
            status,
            response_headers,
            body: Some(body),
            parser: Parser::new(),
            items: VecDeque::new(),
            handed_out_id: String::new(),
            raw: Vec::new(),
        })
    }

    /// Opens the same URL again, sending `Last-Event-ID` with the last event id seen (if
    /// any), as a browser's `EventSource` does after a disconnect.
    pub async fn reconnect(&mut self) {
        let last_event_id = self.last_event_id().to_owned();
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("last-event-id"));
        if !last_event_id.is_empty() {
            self.headers
                .push(("Last-Event-ID".to_owned(), last_event_id.clone()));
        }
        let (status, response_headers, body) =
            request(self.addr, &self.path, &self.headers, self.protocol)
                .await
                .unwrap_or_else(|error| panic!("reconnect to {}: {error}", self.addr));
        self.status = status;
        self.response_headers = response_headers;
        self.body = Some(body);
        // A new connection is a new stream; only the last event id carries over.
        self.parser = Parser::new();
        if !last_event_id.is_empty() {
            let line = format!("id: {last_event_id}\n\n");
            let _ = self.parser.feed(line.as_bytes());
        }
        self.items.clear();
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.response_headers
    }

    /// The last event id, as `EventSource` would send it on reconnect: as of the last item
    /// this client handed out (events read but not yet handed out do not count).
    pub fn last_event_id(&self) -> &str {
        if self.has_queued_events() {
            &self.handed_out_id
        } else {
            self.parser.last_event_id()
        }
    }

    fn has_queued_events(&self) -> bool {
        self.items.iter().any(|item| matches!(item, Item::Event(_)))
    }

    /// Every body byte received on the current connection (or the last one).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The next item, or [`Next::Timeout`] / [`Next::Closed`].
    ///
    /// # Panics
    /// If the stream is not valid event-stream text (a parser error).
    pub async fn next(&mut self, timeout: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = self.items.pop_front() {
                if let Item::Event(event) = &item {
                    self.handed_out_id.clone_from(&event.last_event_id);
                }
                return Next::Item(item);
            }
            if let Err(end) = self.read(deadline).await {
                return end;
            }
        }
    }

    /// Reads until the stream has a last event id (a fresh stream sends its position as a
    /// bare `id:` line, which is no item), and returns it.
    ///
    /// # Panics
    /// If none arrives within `timeout`, or the stream ends first.
    pub async fn position(&mut self, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.parser.last_event_id().is_empty() {
            if let Err(end) = self.read(deadline).await {
                panic!("no position on {} ({end:?})", self.path);
            }
        }
        self.parser.last_event_id().to_owned()
    }

    /// Reads one body frame into the parser, or tells why it could not.
    async fn read(&mut self, deadline: tokio::time::Instant) -> Result<(), Next> {
        let Some(body) = self.body.as_mut() else {
            return Err(Next::Closed);
        };
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Next::Timeout),
            Ok(None | Some(Err(_))) => {
                self.body = None;
                return Err(Next::Closed);
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if !self.has_queued_events() {
                self.handed_out_id = self.parser.last_event_id().to_owned();
            }
            self.raw.extend_from_slice(&data);
            let items = self
                .parser
                .feed(&data)
                .expect("the stream is valid event-stream text");
            self.items.extend(items);
        }
        Ok(())
    }

    /// The next event, skipping comments and `retry:` fields.
    ///
    /// # Panics
    /// If no event arrives within `timeout`, or the stream ends first.
    pub async fn next_event(&mut self, timeout: Duration) -> MessageEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Item(Item::Event(event)) => return event,
                Next::Item(_) => {}
                Next::Timeout => panic!("no event within {timeout:?} on {}", self.path),
                Next::Closed => {
                    panic!("the stream {} ended while an event was expected", self.path)
                }
            }
        }
    }

    /// The next `n` events.
    ///
    /// # Panics
    /// As [`SseClient::next_event`], for any of them.
    pub async fn events(&mut self, n: usize, timeout: Duration) -> Vec<MessageEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next_event(timeout).await);
        }
        events
    }

    /// Reads until the server ends the stream, returning the events that came first.
    ///
    /// # Panics
    /// If the stream is still open after `timeout`.
    pub async fn until_closed(&mut self, timeout: Duration) -> Vec<MessageEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Item(Item::Event(event)) => events.push(event),
                Next::Item(_) => {}
                Next::Timeout => panic!("the stream {} is still open after {timeout:?}", self.path),
                Next::Closed => return events,
            }
        }
    }

    /// Reads the whole body of a response that is not an event stream (an error), as text.
    pub async fn text(&mut self) -> String {
        let Some(body) = self.body.take() else {
            return String::new();
        };
        let bytes: Bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    protocol: Protocol,
) -> Result<(StatusCode, HeaderMap, Incoming), ConnectError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ConnectError::Connect)?;
    let io = TokioIo::new(stream);
    let mut builder = Request::get(format!("http://{addr}{path}"));
    if protocol == Protocol::Http1 {
        builder = builder.header("host", addr.to_string());
    }
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(ConnectError::Handshake)?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        Protocol::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(ConnectError::Handshake)?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
    }
    .map_err(ConnectError::NoResponse)?;
    let (parts, body) = response.into_parts();
    Ok((parts.status, parts.headers, body))
}
