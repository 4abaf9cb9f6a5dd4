//! [`Tally`]: the counters every subscriber adds to, and the latency histograms.
//!
//! Counters only ever grow, so a measurement over part of a run (a ramp step) is the
//! difference of two [`Counts`] snapshots, and its latency the difference of two merged
//! histograms: nothing is reset, and windows may nest (the whole run around its steps).
//! Latency is kept twice, from the send time and from the scheduled time (see `payload`),
//! each in 64 histogram shards picked by connection, so that thousands of connections rarely
//! wait on one lock.
//!
//! A reconnect storm adds its own figures ([`CatchUps`]): how far behind each client was when
//! it reconnected, when it had caught up, and how long after its reconnect request each
//! resumed event (published before that request) arrived.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::conn::HttpError;

/// How many latency shards there are.
const SHARDS: usize = 64;

/// The counters of a run, shared by every connection.
#[derive(Default)]
pub(crate) struct Tally {
    /// Connections that got status 200 on their first request.
    pub(crate) live: AtomicU64,
    /// Connections whose first request failed (connect error or a status other than 200).
    pub(crate) failed: AtomicU64,
    /// Of those, the ones the server answered, by status.
    pub(crate) failed_by_status: Statuses,
    /// Live connections the server ended (or whose stream could not be parsed).
    pub(crate) ended_by_server: AtomicU64,
    /// Events with the driver's data format, duplicates included.
    pub(crate) received: AtomicU64,
    /// Events whose sequence the connection had already seen (see `sequence`).
    pub(crate) duplicated: AtomicU64,
    /// Events that arrived after a higher sequence of their topic: reordered, not lost.
    pub(crate) reordered: AtomicU64,
    /// When the latest event arrived, in µs since the Unix epoch (to 10 ms for the counted
    /// connections, see `clock`).
    pub(crate) last_received_micros: AtomicU64,
    /// The time, stored every 10 ms by `clock::Ticker`, in µs since the Unix epoch.
    pub(crate) coarse_micros: AtomicU64,
    /// Connections that parse and time every event (all, unless `--timed-sample`).
    pub(crate) timed: AtomicU64,
    /// Storm connections that reconnected.
    pub(crate) reconnected: AtomicU64,
    /// Storm connections whose every reconnect attempt failed.
    pub(crate) reconnect_failed: AtomicU64,
    /// Of those, the ones the server answered last, by status.
    pub(crate) reconnect_failed_by_status: Statuses,
    /// When the latest storm reconnect succeeded, in µs since the Unix epoch.
    pub(crate) last_reconnect_micros: AtomicU64,
    /// How the storm clients caught up.
    pub(crate) catch_ups: CatchUps,
    /// Latency in µs, from the send time and from the scheduled time, one shard each.
    latency: Vec<Mutex<Latencies>>,
}

/// How the storm clients caught up after their reconnect (see `clients`).
#[derive(Default)]
pub(crate) struct CatchUps {
    /// Storm clients that sent a reconnect request, and the events they were behind then,
    /// summed and the most.
    pub(crate) behind_clients: AtomicU64,
    pub(crate) behind_total: AtomicU64,
    pub(crate) behind_max: AtomicU64,
    /// Storm clients that have caught up, and when the latest did (µs since the epoch).
    pub(crate) caught_up: AtomicU64,
    pub(crate) last_caught_up_micros: AtomicU64,
    /// Per client, from its reconnect request until it caught up, in µs.
    from_reconnect: Mutex<Option<Histogram<u64>>>,
    /// Per resumed event, from its client's reconnect request until it arrived, in µs; one
    /// shard per connection group, like the latency.
    resumed: Vec<Mutex<Histogram<u64>>>,
}

impl CatchUps {
    /// Nothing recorded yet.
    fn new() -> Self {
        Self {
            from_reconnect: Mutex::new(Some(histogram())),
            resumed: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            ..Self::default()
        }
    }

    /// A storm client sends its reconnect request, `behind` events behind its target.
    pub(crate) fn record_behind(&self, behind: u64) {
        self.behind_clients.fetch_add(1, Ordering::Relaxed);
        self.behind_total.fetch_add(behind, Ordering::Relaxed);
        self.behind_max.fetch_max(behind, Ordering::Relaxed);
    }

    /// A storm client caught up at `at_micros`, `since_reconnect` µs after its reconnect
    /// request.
    pub(crate) fn record_caught_up(&self, at_micros: u64, since_reconnect: u64) {
        if let Ok(mut guard) = self.from_reconnect.lock()
            && let Some(histogram) = guard.as_mut()
        {
            histogram.saturating_record(since_reconnect.max(1));
        }
        self.last_caught_up_micros
            .fetch_max(at_micros, Ordering::Relaxed);
        self.caught_up.fetch_add(1, Ordering::Relaxed);
    }

    /// Connection `index` received a resumed event `since_reconnect` µs after its reconnect
    /// request.
    pub(crate) fn record_resumed(&self, index: usize, since_reconnect: u64) {
        if let Ok(mut shard) = self.resumed[index % SHARDS].lock() {
            shard.saturating_record(since_reconnect.max(1));
        }
    }

    /// The per-client catch-up times so far, in µs.
    pub(crate) fn catch_up_times(&self) -> Histogram<u64> {
        self.from_reconnect
            .lock()
            .ok()
            .and_then(|guard| guard.clone())
            .unwrap_or_else(histogram)
    }

    /// The resumed events' times so far, merged, in µs.
    pub(crate) fn resumed(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.resumed {
            if let Ok(shard) = shard.lock() {
                let _ = all.add(&*shard);
            }
        }
        all
    }
}

/// The two latency histograms of a shard, of a window or of a run, in µs.
#[derive(Clone, Debug)]
pub(crate) struct Latencies {
    /// From when the publish request was sent.
    pub(crate) from_send: Histogram<u64>,
    /// From when the schedule had the event due.
    pub(crate) from_schedule: Histogram<u64>,
}

impl Latencies {
    /// Both histograms empty.
    pub(crate) fn new() -> Self {
        Self {
            from_send: histogram(),
            from_schedule: histogram(),
        }
    }

    /// Adds every value of `other` (histograms with the same bounds never fail to add).
    fn add(&mut self, other: &Self) {
        let _ = self.from_send.add(&other.from_send);
        let _ = self.from_schedule.add(&other.from_schedule);
    }

    /// What was recorded since `earlier`, a snapshot of the same histograms.
    pub(crate) fn since(mut self, earlier: &Self) -> Self {
        let _ = self.from_send.subtract(&earlier.from_send);
        let _ = self.from_schedule.subtract(&earlier.from_schedule);
        self
    }
}

/// Failed requests by the status the server answered them with, so that a report says why
/// connections failed (401 and 403: the token). Only failures touch the lock.
#[derive(Default)]
pub(crate) struct Statuses(Mutex<BTreeMap<u16, u64>>);

impl Statuses {
    /// Counts `error` if it is a status.
    pub(crate) fn count(&self, error: &HttpError) {
        if let (HttpError::Status(status), Ok(mut counts)) = (error, self.0.lock()) {
            *counts.entry(status.as_u16()).or_default() += 1;
        }
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.0
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }
}

/// A snapshot of the event counters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) received: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    pub(crate) last_received_micros: u64,
}

impl Counts {
    /// What happened between `earlier` and `self` (the latest arrival is kept as is).
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            received: self.received - earlier.received,
            duplicated: self.duplicated - earlier.duplicated,
            reordered: self.reordered - earlier.reordered,
            last_received_micros: self.last_received_micros,
        }
    }
}

/// An empty histogram for latencies from 1 µs to 10 minutes.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

impl Tally {
    /// A tally with every counter at zero.
    pub(crate) fn new() -> Self {
        Self {
            latency: (0..SHARDS).map(|_| Mutex::new(Latencies::new())).collect(),
            catch_ups: CatchUps::new(),
            ..Self::default()
        }
    }

    /// Records one event received by connection `index`, `from_send` µs after it was sent
    /// and `from_schedule` µs after it was due.
    pub(crate) fn record_latency(&self, index: usize, from_send: u64, from_schedule: u64) {
        if let Ok(mut shard) = self.latency[index % SHARDS].lock() {
            shard.from_send.saturating_record(from_send.max(1));
            shard.from_schedule.saturating_record(from_schedule.max(1));
        }
    }

    /// The event counters now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            received: self.received.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            last_received_micros: self.last_received_micros.load(Ordering::Relaxed),
        }
    }

    /// Every latency recorded so far, merged.
    pub(crate) fn latency(&self) -> Latencies {
        let mut all = Latencies::new();
        for shard in &self.latency {
            if let Ok(shard) = shard.lock() {
                all.add(&shard);
            }
        }
        all
    }
}
