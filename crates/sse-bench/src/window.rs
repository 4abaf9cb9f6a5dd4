//! A measurement window: the events, latency and driver CPU between two moments.
//!
//! A window snapshots the (only ever growing) counters when it opens and subtracts the
//! snapshot when it closes, so a ramp step starts from fresh figures while the whole run is
//! measured by an outer window around the steps. Closing first waits for the stragglers:
//! until every expected event arrived, or 3 s pass without any arriving.

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::payload;
use crate::procfs;
use crate::publish::Published;
use crate::report::{Events, round};
use crate::tally::{Counts, Tally};

/// How long closing waits for an event before it gives up on the rest.
const STALL: Duration = Duration::from_secs(3);

/// An open window.
pub(crate) struct Window {
    started: Instant,
    started_micros: u64,
    counts: Counts,
    published: Published,
    latency: Histogram<u64>,
    cpu_seconds: f64,
}

/// What a window measured.
pub(crate) struct Measurement {
    pub(crate) events: Events,
    /// Latency in µs.
    pub(crate) latency: Histogram<u64>,
    /// Driver CPU in percent of one core.
    pub(crate) cpu_percent: f64,
}

impl Window {
    /// Opens a window now; `published` is what the publisher had published so far.
    pub(crate) fn open(tally: &Tally, published: Published) -> Self {
        Self {
            started: Instant::now(),
            started_micros: payload::now_micros(),
            counts: tally.counts(),
            published,
            latency: tally.latency(),
            cpu_seconds: procfs::own_cpu_seconds(),
        }
    }

    /// Waits for the stragglers and measures. `published` is what the publisher has
    /// published by now, `subscribers` the connections per topic, `publishing` how long
    /// publishing took in this window.
    pub(crate) async fn close(
        self,
        tally: &Tally,
        published: Published,
        subscribers: &[u64],
        publishing: Duration,
    ) -> Measurement {
        let per_topic: Vec<u64> = published
            .per_topic
            .iter()
            .zip(&self.published.per_topic)
            .map(|(now, before)| now - before)
            .collect();
        let expected: u64 = per_topic.iter().zip(subscribers).map(|(p, s)| p * s).sum();
        self.wait_for(tally, expected).await;
        let counts = tally.counts().since(self.counts);
        let mut latency = tally.latency();
        let _ = latency.subtract(&self.latency);
        let receiving = counts
            .last_received_micros
            .saturating_sub(self.started_micros) as f64
            / 1e6;
        let seconds = receiving.max(publishing.as_secs_f64());
        let delivered_per_second = if seconds > 0.0 {
            counts.received as f64 / seconds
        } else {
            0.0
        };
        let unique = counts.received.saturating_sub(counts.duplicated);
        let events = Events {
            published: per_topic.iter().sum(),
            publish_failed: published.failed - self.published.failed,
            expected,
            received: counts.received,
            missing: expected.saturating_sub(unique),
            duplicated: counts.duplicated,
            sequence_gaps: counts.gaps,
            delivered_per_second: delivered_per_second.round(),
        };
        let cpu = procfs::own_cpu_seconds() - self.cpu_seconds;
        let wall = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        Measurement {
            events,
            latency,
            cpu_percent: round(cpu / wall * 100.0, 0),
        }
    }

    /// Waits until `expected` distinct events arrived in this window, or for a stall.
    async fn wait_for(&self, tally: &Tally, expected: u64) {
        let arrived = || {
            let counts = tally.counts().since(self.counts);
            counts.received.saturating_sub(counts.duplicated)
        };
        let (mut last, mut since) = (arrived(), Instant::now());
        while last < expected && since.elapsed() < STALL {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = arrived();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
    }
}
