//! The state every request handler shares ([`App`]): the hub, the history, the node's limits
//! and counters, and the policies that apply to every stream ([`Cors`], [`StreamSlot`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sse_core::runtime::cors::Cors;

use crate::admission::Admission;
use crate::auth::Auth;
use crate::client_limits::{ClientLimits, ClientSlot};
use crate::drain::Drain;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::{Here, Presence};
use crate::shared_reads::SharedReads;

// === impl App ===

/// Per-stream limits from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most distinct topics in one stream (`--max-topics`).
    pub(crate) max_topics: usize,
    /// Most open event streams on the node (`--max-connections`).
    pub(crate) max_streams: usize,
    /// Most bytes queued for one client (`--client-buffer`).
    pub(crate) client_buffer: usize,
    /// The `retry:` sent to clients (`--retry-ms`, `--retry-jitter`).
    pub(crate) retry: Band,
    /// How long a stream may last (`--max-connection-age` and its jitter).
    pub(crate) max_age: Option<Band>,
}

/// A delay drawn at random for each stream or client, so that those who start together (the
/// clients of a lost node, a storm) do not act together again: `least` plus up to `spread`,
/// uniformly, to the millisecond.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Band {
    pub(crate) least: Duration,
    pub(crate) spread: Duration,
}

impl Band {
    /// The delay for one.
    pub(crate) fn pick(self) -> Duration {
        let spread = u64::try_from(self.spread.as_millis()).unwrap_or(u64::MAX);
        self.least
            .saturating_add(Duration::from_millis(fastrand::u64(0..=spread)))
    }
}

/// What every handler shares.
pub(crate) struct App {
    /// Which local clients want which topic: every stream joins it.
    pub(crate) hub: Arc<Hub>,
    /// Reading topic streams for resuming clients, shared between them.
    pub(crate) reads: Arc<SharedReads>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    /// Open event streams, against `--max-connections`.
    pub(crate) open_streams: Arc<AtomicUsize>,
    /// Whether the node is shutting down: new streams are refused, `/readyz` fails.
    pub(crate) drain: Drain,
    /// Whether the pub/sub link is connected and caught up.
    pub(crate) redis_connected: Arc<AtomicBool>,
    /// Which browser origins may open streams.
    pub(crate) cors: Cors,
    /// Subscriber tokens, when a key is configured.
    pub(crate) auth: Option<Auth>,
    /// Streams per client address and per user.
    pub(crate) client_limits: Arc<ClientLimits>,
    /// New streams per second (`--accept-rate`), when limited.
    pub(crate) admission: Option<Admission>,
    /// Who is listening here (`--presence`).
    pub(crate) presence: Option<Arc<Presence>>,
}

// === impl StreamSlot ===

/// One of the node's `--max-connections` stream slots (streams, not TCP connections: an
/// HTTP/2 connection may carry several), held by a stream for its life.
pub(crate) struct StreamSlot {
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    /// The stream's share of its client's limits, given back with the slot.
    pub(crate) client: Option<ClientSlot>,
    /// The stream's subject in the node's presence, while it is open.
    pub(crate) presence: Option<Here>,
    opened: Instant,
}

impl StreamSlot {
    /// Takes a slot if fewer than `max` streams are open.
    pub(crate) fn take(
        open: &Arc<AtomicUsize>,
        max: usize,
        metrics: &Arc<Metrics>,
    ) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        metrics.connections_active.inc();
        metrics.connections_total.inc();
        Some(Self {
            open: open.clone(),
            metrics: metrics.clone(),
            client: None,
            presence: None,
            opened: Instant::now(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections_active.dec();
        self.metrics
            .stream_duration
            .observe(self.opened.elapsed().as_secs_f64());
    }
}
