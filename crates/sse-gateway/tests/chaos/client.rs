//! The EventSource-like clients: each reads its stream, records every event per topic, and
//! when the stream ends or breaks reconnects as a browser would, to a random gateway, with its
//! last event id as `Last-Event-ID`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sse_core::control::TRUNCATED_EVENT;
use sse_core::{Cursor, EventId, Item, MessageEvent, Topic};
use sse_testkit::{Next, Rng, SseClient};
use tokio::task::JoinHandle;

/// Silence on a stream for this long (heartbeats come every second) means the connection is
/// dead: the client drops it and reconnects. It bounds a hang; it asserts nothing.
const READ_PATIENCE: Duration = Duration::from_secs(5);
/// How long opening a stream may take (a node waits for Redis before answering).
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// What a client subscribes to.
#[derive(Clone, Debug)]
pub(crate) struct ClientSpec {
    pub(crate) index: usize,
    pub(crate) topics: Vec<String>,
}

impl ClientSpec {
    /// `/events?topic=a&topic=b`.
    pub(crate) fn path(&self) -> String {
        let query: Vec<String> = self.topics.iter().map(|t| format!("topic={t}")).collect();
        format!("/events?{}", query.join("&"))
    }
}

/// Everything a client saw, shared with the test while the client runs.
#[derive(Debug, Default)]
pub(crate) struct ClientLog {
    /// Per topic, each event received: (stream id, data), in arrival order.
    pub(crate) received: BTreeMap<String, Vec<(String, String)>>,
    /// Streams opened with status 200, the first one included.
    pub(crate) connections: u32,
    /// Connection attempts that failed before a response head (refused, reset, timed out).
    pub(crate) failed_connects: u32,
    /// Responses other than 200, by status.
    pub(crate) refusals: BTreeMap<u16, u32>,
    /// Streams given up after [`READ_PATIENCE`] of silence.
    pub(crate) silent_streams: u32,
    /// Stalls ordered by the fault schedule, and streams that ended after one.
    pub(crate) stalls: u32,
    pub(crate) streams_ended_after_stall: u32,
    /// Everything that breaks the guarantees (a control event, an id that moves wrong).
    pub(crate) anomalies: Vec<String>,
}

/// A running client.
pub(crate) struct ClientHandle {
    pub(crate) spec: ClientSpec,
    pub(crate) log: Arc<Mutex<ClientLog>>,
    /// Set to a number of milliseconds to make the client stop reading for that long.
    pub(crate) stall: Arc<AtomicU64>,
    pub(crate) task: JoinHandle<()>,
}

impl ClientHandle {
    /// Starts reading `first`, a stream already open on `spec`'s topics that has sent its
    /// position.
    pub(crate) fn start(
        spec: ClientSpec,
        first: SseClient,
        gateways: Vec<SocketAddr>,
        rng: Rng,
    ) -> Self {
        let log = Arc::new(Mutex::new(ClientLog {
            received: spec
                .topics
                .iter()
                .map(|t| (t.clone(), Vec::new()))
                .collect(),
            connections: 1,
            ..ClientLog::default()
        }));
        let stall = Arc::new(AtomicU64::new(0));
        let reader = Reader {
            topics: spec
                .topics
                .iter()
                .map(|t| Topic::parse(t).expect("a valid topic"))
                .collect(),
            path: spec.path(),
            gateways,
            log: log.clone(),
            stall: stall.clone(),
            rng,
        };
        let task = tokio::spawn(reader.run(first));
        Self {
            spec,
            log,
            stall,
            task,
        }
    }

    /// Locks the log (a poisoned lock is still readable: the data is only ever appended to).
    pub(crate) fn log(&self) -> std::sync::MutexGuard<'_, ClientLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Reader {
    topics: Vec<Topic>,
    path: String,
    gateways: Vec<SocketAddr>,
    log: Arc<Mutex<ClientLog>>,
    stall: Arc<AtomicU64>,
    rng: Rng,
}

impl Reader {
    fn log(&self) -> std::sync::MutexGuard<'_, ClientLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(mut self, first: SseClient) {
        // `position` is the id the client holds: what it sends as Last-Event-ID, and what the
        // next event's id is compared with to tell which topic moved.
        let mut position = first.last_event_id().to_owned();
        let mut stream = Some(first);
        loop {
            let mut client = match stream.take() {
                Some(client) => client,
                None => match self.reconnect(&position).await {
                    Some(client) => client,
                    None => {
                        tokio::time::sleep(self.rng.millis(50, 250)).await;
                        continue;
                    }
                },
            };
            let mut stalled = false;
            loop {
                let pause = self.stall.swap(0, Ordering::Relaxed);
                if pause > 0 {
                    self.log().stalls += 1;
                    stalled = true;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                match client.next(READ_PATIENCE).await {
                    Next::Item(Item::Event(event)) => self.record(&mut position, event),
                    Next::Item(_) => {}
                    Next::Timeout => {
                        self.log().silent_streams += 1;
                        break;
                    }
                    Next::Closed => {
                        if stalled {
                            self.log().streams_ended_after_stall += 1;
                        }
                        break;
                    }
                }
            }
            // What EventSource sends: the stream's last event id (every queued item was
            // consumed before `next` reported the end, so it is the last event's id).
            let last = client.last_event_id();
            if !last.is_empty() && last != position {
                self.log().anomalies.push(format!(
                    "the stream's last event id {last:?} moved past the last event's {position:?} \
                     without an event"
                ));
                position = last.to_owned();
            }
        }
    }

    /// Opens the stream again on a random gateway; `None` if that failed (the caller backs off).
    async fn reconnect(&mut self, position: &str) -> Option<SseClient> {
        let addr = self.gateways[self.rng.below(self.gateways.len())];
        let headers = [("Last-Event-ID", position)];
        let open = SseClient::try_get(addr, &self.path, &headers);
        let Ok(Ok(mut client)) = tokio::time::timeout(CONNECT_PATIENCE, open).await else {
            // Refused, broken before a response head, or no answer in time: the node is down
            // or dying, which is what this test does to nodes.
            self.log().failed_connects += 1;
            return None;
        };
        let status = client.status().as_u16();
        if status == 200 {
            self.log().connections += 1;
            return Some(client);
        }
        let text = tokio::time::timeout(CONNECT_PATIENCE, client.text())
            .await
            .unwrap_or_default();
        let mut log = self.log();
        *log.refusals.entry(status).or_default() += 1;
        // 503 (draining, over capacity, Redis unavailable) says "try again"; anything else
        // refuses a request that is valid, the position included.
        if status != 503 {
            log.anomalies.push(format!(
                "{addr} answered {status} to Last-Event-ID {position:?}: {}",
                text.trim()
            ));
        }
        None
    }

    /// Attributes `event` to its topic by the id it carries, and records it.
    fn record(&self, position: &mut String, event: MessageEvent) {
        let mut log = self.log();
        if event.event_type == TRUNCATED_EVENT {
            log.anomalies.push(format!(
                "sse.truncated {} after position {position:?}",
                event.data
            ));
            return;
        }
        if event.event_type != "message" {
            log.anomalies
                .push(format!("unexpected event type {:?}", event.event_type));
        }
        let id = event.last_event_id;
        match self.moved_topic(position, &id) {
            Ok((topic, stream_id)) => {
                log.received
                    .entry(topic.as_str().to_owned())
                    .or_default()
                    .push((stream_id.to_string(), event.data));
            }
            Err(why) => log.anomalies.push(format!(
                "event #{} with id {id:?} after {position:?}: {why}",
                event.data.split(' ').next().unwrap_or_default()
            )),
        }
        *position = id;
    }

    /// The one topic whose position moved forward from `before` to `after`, and where to.
    fn moved_topic(&self, before: &str, after: &str) -> Result<(Topic, EventId), String> {
        let before = Cursor::decode(before, &self.topics).map_err(|e| e.to_string())?;
        let after = Cursor::decode(after, &self.topics).map_err(|e| e.to_string())?;
        let mut moved = Vec::new();
        for (topic, id) in after.iter() {
            let old = before.get(topic).unwrap_or(EventId::ZERO);
            if id < old {
                return Err(format!("{topic} moved back from {old} to {id}"));
            }
            if id > old {
                moved.push((topic.clone(), id));
            }
        }
        match <[_; 1]>::try_from(moved) {
            Ok([one]) => Ok(one),
            Err(moved) if moved.is_empty() => Err("no topic moved (a duplicate?)".to_owned()),
            Err(moved) => Err(format!("{} topics moved at once", moved.len())),
        }
    }
}
