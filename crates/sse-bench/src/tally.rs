//! [`Tally`]: the counters every subscriber adds to, and the latency histograms.
//!
//! Counters only ever grow, so a measurement over part of a run (a ramp step) is the
//! difference of two [`Counts`] snapshots, and its latency the difference of two merged
//! histograms: nothing is reset, and windows may nest (the whole run around its steps).
//! Latency goes into 64 histogram shards, picked by connection, so that thousands of
//! connections rarely wait on one lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// How many latency shards there are.
const SHARDS: usize = 64;

/// The counters of a run, shared by every connection.
#[derive(Default)]
pub(crate) struct Tally {
    /// Connections that got status 200 on their first request.
    pub(crate) live: AtomicU64,
    /// Connections whose first request failed (connect error or a status other than 200).
    pub(crate) failed: AtomicU64,
    /// Live connections the server ended (or whose stream could not be parsed).
    pub(crate) ended_by_server: AtomicU64,
    /// Events with the driver's data format, duplicates included.
    pub(crate) received: AtomicU64,
    /// Events whose sequence a connection had already passed.
    pub(crate) duplicated: AtomicU64,
    /// Times a connection's sequence skipped ahead (events missing or out of order).
    pub(crate) gaps: AtomicU64,
    /// When the latest event arrived, in µs since the Unix epoch.
    pub(crate) last_received_micros: AtomicU64,
    /// Storm connections that reconnected.
    pub(crate) reconnected: AtomicU64,
    /// Storm connections whose every reconnect attempt failed.
    pub(crate) reconnect_failed: AtomicU64,
    /// When the latest storm reconnect succeeded, in µs since the Unix epoch.
    pub(crate) last_reconnect_micros: AtomicU64,
    /// Publish-to-receive latency in µs.
    latency: Vec<Mutex<Histogram<u64>>>,
}

/// A snapshot of the event counters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) received: u64,
    pub(crate) duplicated: u64,
    pub(crate) gaps: u64,
    pub(crate) last_received_micros: u64,
}

impl Counts {
    /// What happened between `earlier` and `self` (the latest arrival is kept as is).
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            received: self.received - earlier.received,
            duplicated: self.duplicated - earlier.duplicated,
            gaps: self.gaps - earlier.gaps,
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
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            ..Self::default()
        }
    }

    /// Counts one event received by connection `index`, `latency_micros` after it was sent.
    pub(crate) fn record_latency(&self, index: usize, latency_micros: u64) {
        if let Ok(mut shard) = self.latency[index % SHARDS].lock() {
            shard.saturating_record(latency_micros.max(1));
        }
    }

    /// The event counters now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            received: self.received.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            last_received_micros: self.last_received_micros.load(Ordering::Relaxed),
        }
    }

    /// Every latency recorded so far, merged.
    pub(crate) fn latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.latency {
            if let Ok(shard) = shard.lock() {
                let _ = all.add(&*shard);
            }
        }
        all
    }
}
