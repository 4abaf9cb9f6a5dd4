//! One subscriber: an EventSource-like connection that checks every event of its topic.
//!
//! It sends `GET <subscribe url>` with `Accept: text/event-stream`, counts as live once the
//! answer is `200` (Nchan sends no `id:` line until its first message, so nothing more is
//! required), and checks each event's sequence (see `payload` and `sequence`): each arrives
//! once, late arrivals are counted as reordered, repeats as duplicates. A *timed* connection
//! parses the stream with `sse_core::Parser` and records each event's latency from the send
//! and from the scheduled time; a *counted* one (all but a sample, with `--timed-sample`)
//! only scans the bytes for the sequences (see `scan`) and reads no clock per event, so the
//! loss check stays exact on every connection while the driver's cost per event is small.
//! Storm clients are always timed: they need the last event id and the catch-up times.
//!
//! In a reconnect storm the connection is dropped on a signal, stays away for its delay
//! (`--storm-away` plus its share of `--storm-spread`, drawn by the fleet), and is reopened
//! with `Last-Event-ID` set to the last `id:` it received, as a browser's EventSource does; the
//! sequence check carries on across the reconnect, so a resume that loses or repeats an event
//! shows up as missing or duplicated.
//!
//! **Catching up.** Just before its reconnect request the client takes its target: what the
//! publisher has seen acknowledged of its topic by then (see `acked`), so how many events it
//! is behind is measured, not derived from the flags. It has caught up once its sequence
//! check holds every sequence below the target; the time from the request until then is its
//! catch-up time, and each event below the target that arrives meanwhile is a *resumed*
//! event, timed from the same request. A client with nothing to fetch is caught up when its
//! stream is back (status 200). The target is taken at the first reconnect attempt, so time
//! lost to failed attempts counts. A reconnect the server refuses with 401 or 403 is not
//! retried (the same token would be refused again): it counts as a failed reconnect at once.
//! With `--tokens`, every request carries the connection's `Authorization` header.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sse_core::parser::{Item, Parser};
use tokio_util::sync::CancellationToken;

use crate::acked::Acked;
use crate::conn::{self, Connection, HttpError};
use crate::payload;
use crate::scan::Scanner;
use crate::sequence::{Seen, SequenceCheck};
use crate::tally::Tally;
use crate::template::Endpoint;

/// How often, and how far apart, a storm connection tries to reconnect.
const RECONNECT_ATTEMPTS: u32 = 20;
const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// One connection's settings.
pub(crate) struct Subscriber {
    /// Its number, which also picks its latency shard.
    pub(crate) index: usize,
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) source: IpAddr,
    pub(crate) topic: Arc<str>,
    /// Its topic's number, for `acked`.
    pub(crate) topic_index: usize,
    /// `Bearer <token>`, sent on every connect (see `tokens`).
    pub(crate) authorization: Option<HeaderValue>,
    /// For a storm client, how long it stays away after the drop; `None`: no part in it.
    pub(crate) storm_delay: Option<Duration>,
    /// What the publisher has seen acknowledged, for the catch-up target.
    pub(crate) acked: Arc<Acked>,
    /// Whether it parses and times every event, or only counts them (see the module docs).
    pub(crate) timed: bool,
}

/// How a connection reads its stream.
enum Reader {
    /// Parses every event and times it.
    Timed(Parser),
    /// Scans for the sequences only.
    Counted(Scanner),
}

impl Reader {
    /// A fresh reader of the kind `timed` asks for.
    fn new(timed: bool) -> Self {
        if timed {
            Self::Timed(Parser::new())
        } else {
            Self::Counted(Scanner::default())
        }
    }

    /// The last event id seen, for a resume (only timed readers keep it).
    fn last_event_id(&self) -> &str {
        match self {
            Self::Timed(parser) => parser.last_event_id(),
            Self::Counted(_) => "",
        }
    }
}

/// Where a connection stands in its topic: what arrived, and whether it is catching up.
#[derive(Default)]
struct Position {
    check: SequenceCheck,
    catching_up: Option<CatchingUp>,
}

/// A storm client between its reconnect request and having caught up.
#[derive(Clone, Copy)]
struct CatchingUp {
    /// Every sequence below this one must arrive.
    target: u64,
    /// When the reconnect request was sent, µs since the epoch.
    since_micros: u64,
}

/// The signals every subscriber listens to.
#[derive(Clone)]
pub(crate) struct Signals {
    /// The run is over: close the connection.
    pub(crate) stop: CancellationToken,
    /// Drop the connection and reconnect (storm subscribers only).
    pub(crate) storm: CancellationToken,
}

/// An open event stream; dropping it closes the connection.
struct Stream {
    body: Incoming,
    _connection: Connection,
}

/// Why reading a stream stopped.
enum End {
    Stopped,
    Storm,
    ByServer,
}

impl Subscriber {
    /// Runs the connection until `signals.stop`, the server ending it, or a failed reconnect.
    pub(crate) async fn run(self, tally: Arc<Tally>, signals: Signals) {
        let mut stream = match self.open("").await {
            Ok(stream) => stream,
            Err(error) => {
                let context = format_args!("connection {} to {}", self.index, self.endpoint.url);
                conn::count_failure(&tally.failed, context, &error);
                tally.failed_by_status.count(&error);
                return;
            }
        };
        tally.live.fetch_add(1, Ordering::Relaxed);
        let timed = self.timed || self.storm_delay.is_some();
        if timed {
            tally.timed.fetch_add(1, Ordering::Relaxed);
        }
        let mut reader = Reader::new(timed);
        let mut position = Position::default();
        let mut storm = self.storm_delay.is_some().then(|| signals.storm.clone());
        loop {
            let end = self
                .read(
                    &mut stream,
                    &mut reader,
                    &mut position,
                    &tally,
                    &signals.stop,
                    storm.as_ref(),
                )
                .await;
            match end {
                End::Stopped => return,
                End::ByServer => {
                    tally.ended_by_server.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                End::Storm => {
                    storm = None;
                    drop(stream);
                    let away = self.storm_delay.unwrap_or_default();
                    tokio::select! {
                        () = tokio::time::sleep(away) => {}
                        () = signals.stop.cancelled() => return,
                    }
                    let resume = reader.last_event_id().to_owned();
                    reader = Reader::new(timed);
                    let target = self.acked.floor(self.topic_index);
                    let catch_ups = &tally.catch_ups;
                    catch_ups.record_behind(position.check.outstanding_below(target));
                    let since_micros = payload::now_micros();
                    match self.reopen(&resume, &signals.stop).await {
                        Some(Ok(reopened)) => {
                            stream = reopened;
                            let now = payload::now_micros();
                            tally.reconnected.fetch_add(1, Ordering::Relaxed);
                            tally
                                .last_reconnect_micros
                                .fetch_max(now, Ordering::Relaxed);
                            if position.check.has_all_below(target) {
                                catch_ups.record_caught_up(now, now.saturating_sub(since_micros));
                            } else {
                                position.catching_up = Some(CatchingUp {
                                    target,
                                    since_micros,
                                });
                            }
                        }
                        Some(Err(error)) => {
                            let context = format_args!("connection {} reconnecting", self.index);
                            conn::count_failure(&tally.reconnect_failed, context, &error);
                            tally.reconnect_failed_by_status.count(&error);
                            return;
                        }
                        None => return,
                    }
                }
            }
        }
    }

    /// Opens the stream, resuming after `last_event_id` unless it is empty.
    async fn open(&self, last_event_id: &str) -> Result<Stream, HttpError> {
        let mut connection = Connection::open(self.endpoint.addr, Some(self.source)).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(authorization) = &self.authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        if !last_event_id.is_empty() {
            headers.insert(
                "last-event-id",
                HeaderValue::from_str(last_event_id).map_err(http::Error::from)?,
            );
        }
        let request = conn::request(
            Method::GET,
            &self.endpoint,
            &self.topic,
            &headers,
            Bytes::new(),
        )?;
        let response = connection.send(request).await?;
        if response.status() != http::StatusCode::OK {
            return Err(HttpError::Status(response.status()));
        }
        Ok(Stream {
            body: response.into_body(),
            _connection: connection,
        })
    }

    /// Reopens after a storm: at once, then every 500 ms, up to 20 attempts, unless refused
    /// (401, 403). `None` if the run stopped meanwhile.
    async fn reopen(
        &self,
        last_event_id: &str,
        stop: &CancellationToken,
    ) -> Option<Result<Stream, HttpError>> {
        let mut attempt = 1;
        loop {
            let result = tokio::select! {
                result = self.open(last_event_id) => result,
                () = stop.cancelled() => return None,
            };
            let refused = matches!(&result, Err(error) if error.is_refusal());
            if result.is_ok() || refused || attempt == RECONNECT_ATTEMPTS {
                return Some(result);
            }
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(RECONNECT_INTERVAL) => {}
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Reads events until the stream ends or a signal comes; while `catching_up`, also times
    /// resumed events and notes when the client has caught up.
    async fn read(
        &self,
        stream: &mut Stream,
        reader: &mut Reader,
        position: &mut Position,
        tally: &Tally,
        stop: &CancellationToken,
        storm: Option<&CancellationToken>,
    ) -> End {
        let storm = async {
            match storm {
                Some(storm) => storm.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(storm);
        loop {
            let frame = tokio::select! {
                biased;
                () = stop.cancelled() => return End::Stopped,
                () = &mut storm => return End::Storm,
                frame = stream.body.frame() => frame,
            };
            let Some(Ok(frame)) = frame else {
                return End::ByServer;
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            match reader {
                Reader::Timed(parser) => {
                    if self.timed_chunk(&data, parser, position, tally).is_err() {
                        return End::ByServer;
                    }
                }
                Reader::Counted(scanner) => count_chunk(&data, scanner, position, tally),
            }
        }
    }

    /// Parses `data`, checks and times its events; `Err` if the stream cannot be parsed.
    fn timed_chunk(
        &self,
        data: &[u8],
        parser: &mut Parser,
        position: &mut Position,
        tally: &Tally,
    ) -> Result<(), ()> {
        let items = parser.feed(data).map_err(|_| ())?;
        let now = payload::now_micros();
        for item in items {
            let Item::Event(event) = item else { continue };
            let Some(stamp) = payload::decode(&event.data) else {
                continue;
            };
            tally.received.fetch_add(1, Ordering::Relaxed);
            tally.last_received_micros.fetch_max(now, Ordering::Relaxed);
            match position.check.observe(stamp.sequence) {
                Seen::Duplicate => {
                    tally.duplicated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Seen::Late => {
                    tally.reordered.fetch_add(1, Ordering::Relaxed);
                }
                Seen::New => {}
            }
            if let Some(catching) = position.catching_up
                && stamp.sequence < catching.target
            {
                let since = now.saturating_sub(catching.since_micros);
                tally.catch_ups.record_resumed(self.index, since);
            }
            tally.record_latency(
                self.index,
                now.saturating_sub(stamp.sent_micros),
                now.saturating_sub(stamp.due_micros),
            );
        }
        if let Some(catching) = position.catching_up
            && position.check.has_all_below(catching.target)
        {
            let since = now.saturating_sub(catching.since_micros);
            tally.catch_ups.record_caught_up(now, since);
            position.catching_up = None;
        }
        Ok(())
    }
}

/// Scans `data` for sequences and checks them; the counters are added to once per chunk, and
/// the arrival time is the coarse clock's (see `clock`).
fn count_chunk(data: &[u8], scanner: &mut Scanner, position: &mut Position, tally: &Tally) {
    let (mut received, mut duplicated, mut reordered) = (0, 0, 0);
    scanner.feed(data, |sequence| {
        received += 1;
        match position.check.observe(sequence) {
            Seen::Duplicate => duplicated += 1,
            Seen::Late => reordered += 1,
            Seen::New => {}
        }
    });
    if received == 0 {
        return;
    }
    tally.received.fetch_add(received, Ordering::Relaxed);
    if duplicated > 0 {
        tally.duplicated.fetch_add(duplicated, Ordering::Relaxed);
    }
    if reordered > 0 {
        tally.reordered.fetch_add(reordered, Ordering::Relaxed);
    }
    let now = tally.coarse_micros.load(Ordering::Relaxed);
    tally.last_received_micros.fetch_max(now, Ordering::Relaxed);
}
