//! Paced publishing over HTTP keep-alive connections, the same way for every server.
//!
//! Event `n` of a run goes to topic `n % T` with that topic's next sequence number, and is due
//! at `n / rate` seconds. A lane (connection) sends its requests one after another, each after
//! the previous answer, so by Little's law the rate is at most `lanes in flight ÷ reply time`.
//! Which lane an event takes:
//!
//! - by default topic `i` always goes over lane `i % K`: each topic's sequence reaches the
//!   server in order, but a topic has at most one request in flight, so with few topics the
//!   driver runs closed-loop against a server whose publish reply waits behind its fan-out;
//! - with `spread` event `n` goes over lane `n % K`: every topic may have up to `K` requests
//!   in flight, as with any HTTP load tool, and its events may reach the server out of order
//!   (the subscribers' check tolerates that, see `sequence`).
//!
//! The data carries both the time the request is sent and the time it was due (see
//! `payload`), so the report shows latency with and without the time spent queued in the
//! driver.
//!
//! The lanes' queues are short: together they hold `QUEUED` requests, however many lanes
//! there are, so more lanes mean more requests in flight but not a longer backlog. When the
//! server is slower than `rate`, the pacer waits for room and falls behind schedule, and the
//! achieved rate shows it; it gives up at twice the planned time rather than publish the
//! whole backlog. Any 2xx answer is a success; everything else (other statuses, connection
//! errors) is counted as failed, and the lane reconnects. Every success is also recorded in
//! the run's [`Acked`] (per topic, the highest sequence below which everything is
//! acknowledged), which a reconnect storm uses as each client's catch-up target.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::acked::Acked;
use crate::conn::{self, Connection, HttpError};
use crate::payload::{self, Stamp};
use crate::template::{Endpoint, Template};

/// Requests all lanes together may have queued before the pacer waits (at least one each).
const QUEUED: usize = 64;

/// How to publish, as the user configured it.
#[derive(Clone)]
pub(crate) struct PublishPlan {
    pub(crate) endpoint: Endpoint,
    pub(crate) body: Template,
    /// Sent with every request (`Content-Type` and the user's `--publish-header`s).
    pub(crate) headers: HeaderMap,
    /// The number of keep-alive connections (lanes).
    pub(crate) connections: usize,
    /// Lane by event number rather than by topic (see the module docs).
    pub(crate) spread: bool,
    /// Padding bytes in each event's data.
    pub(crate) payload: usize,
}

/// What has been published so far.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    /// Successful publishes per topic.
    pub(crate) per_topic: Vec<u64>,
    /// Publishes that failed.
    pub(crate) failed: u64,
}

impl Published {
    /// Nothing published, on `topics` topics.
    pub(crate) fn none(topics: usize) -> Self {
        Self {
            per_topic: vec![0; topics],
            failed: 0,
        }
    }
}

/// What a lane is asked to do.
enum Job {
    Publish {
        topic: usize,
        sequence: u64,
        /// When the schedule had it due, in µs since the Unix epoch.
        due_micros: u64,
    },
    /// Answer once every job before this one is done.
    Flush(oneshot::Sender<()>),
}

/// What the lanes share: the plan, and what they published.
struct LaneState {
    plan: PublishPlan,
    topics: Arc<[Arc<str>]>,
    padding: String,
    succeeded: Vec<AtomicU64>,
    failed: AtomicU64,
    acked: Arc<Acked>,
}

/// The publishing side of a run: its lanes and every topic's next sequence number.
pub(crate) struct Publisher {
    lanes: Vec<mpsc::Sender<Job>>,
    next_sequence: Vec<u64>,
    shared: Arc<LaneState>,
    _tasks: JoinSet<()>,
}

impl Publisher {
    /// Starts the lanes; each connects on its first request. Successes are recorded in
    /// `acked` too.
    pub(crate) fn start(plan: PublishPlan, topics: Arc<[Arc<str>]>, acked: Arc<Acked>) -> Self {
        let lanes_wanted = plan.connections.max(1);
        let shared = Arc::new(LaneState {
            padding: "x".repeat(plan.payload),
            succeeded: topics.iter().map(|_| AtomicU64::new(0)).collect(),
            failed: AtomicU64::new(0),
            acked,
            plan,
            topics: topics.clone(),
        });
        let mut tasks = JoinSet::new();
        let lanes = (0..lanes_wanted)
            .map(|_| {
                let (sender, jobs) = mpsc::channel((QUEUED / lanes_wanted).max(1));
                tasks.spawn(lane(shared.clone(), jobs));
                sender
            })
            .collect();
        Self {
            lanes,
            next_sequence: vec![0; topics.len()],
            shared,
            _tasks: tasks,
        }
    }

    /// Publishes `rate` events per second for `duration` (see the module docs) and returns
    /// how long it took, until the last answer.
    pub(crate) async fn publish(&mut self, rate: u64, duration: Duration) -> Duration {
        let start = Instant::now();
        let start_micros = payload::now_micros();
        let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
        let give_up = start.checked_add(duration.saturating_mul(2));
        let topics = self.next_sequence.len();
        let mut sent = 0u64;
        'pacing: while sent < total {
            let due_at = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due_at).await;
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
            while sent < due {
                if give_up.is_some_and(|give_up| Instant::now() > give_up) {
                    break 'pacing;
                }
                let event = usize::try_from(sent).unwrap_or(0);
                let topic = event % topics;
                let sequence = self.next_sequence[topic];
                let lane_index = if self.shared.plan.spread {
                    event
                } else {
                    topic
                };
                let lane = &self.lanes[lane_index % self.lanes.len()];
                let due_micros = start_micros + (sent as f64 * 1e6 / rate as f64) as u64;
                let job = Job::Publish {
                    topic,
                    sequence,
                    due_micros,
                };
                if lane.send(job).await.is_err() {
                    break 'pacing;
                }
                self.next_sequence[topic] += 1;
                sent += 1;
            }
        }
        self.flush().await;
        start.elapsed()
    }

    /// Waits until every lane has answered everything queued.
    async fn flush(&self) {
        let mut waiting = Vec::new();
        for lane in &self.lanes {
            let (done, flushed) = oneshot::channel();
            if lane.send(Job::Flush(done)).await.is_ok() {
                waiting.push(flushed);
            }
        }
        for flushed in waiting {
            let _ = flushed.await;
        }
    }

    /// What has been published so far.
    pub(crate) fn published(&self) -> Published {
        Published {
            per_topic: self
                .shared
                .succeeded
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }
}

/// One keep-alive connection: sends its jobs in order, reconnecting after a failure.
async fn lane(shared: Arc<LaneState>, mut jobs: mpsc::Receiver<Job>) {
    let mut connection = None;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::Publish {
                topic,
                sequence,
                due_micros,
            } => {
                let stamp = |sent_micros| Stamp {
                    sequence,
                    sent_micros,
                    due_micros,
                };
                let in_window = shared.acked.window_open();
                match send(&shared, &mut connection, topic, stamp).await {
                    Ok(()) => {
                        shared.succeeded[topic].fetch_add(1, Ordering::Relaxed);
                        shared.acked.ack(topic, sequence, in_window);
                    }
                    Err(error) => {
                        let context = format_args!("publish to topic {}", shared.topics[topic]);
                        conn::count_failure(&shared.failed, context, &error);
                    }
                }
            }
        }
    }
}

/// Publishes one event on `connection`, opening it first if needed; `stamp` makes its stamp
/// from the send time.
async fn send(
    shared: &LaneState,
    connection: &mut Option<Connection>,
    topic: usize,
    stamp: impl FnOnce(u64) -> Stamp,
) -> Result<(), HttpError> {
    let plan = &shared.plan;
    let open = match connection.take() {
        Some(open) if !open.is_closed() => open,
        _ => Connection::open(plan.endpoint.addr, None).await?,
    };
    let open = connection.insert(open);
    let topic = &shared.topics[topic];
    let data = payload::encode(stamp(payload::now_micros()), &shared.padding);
    let body = Bytes::from(plan.body.render(topic, &data));
    let request = conn::request(Method::POST, &plan.endpoint, topic, &plan.headers, body)?;
    let result = async {
        let response = open.send(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(HttpError::Status(status))
        }
    }
    .await;
    if matches!(result, Err(HttpError::Exchange(_))) {
        *connection = None;
    }
    result
}
