//! A measurement window: the events, latency, achieved publish rate and the CPU of the
//! driver and of the server between two moments.
//!
//! A window snapshots the (only ever growing) counters when it opens and subtracts the
//! snapshot when it closes, so a ramp step starts from fresh figures while the whole run is
//! measured by an outer window around the steps. Closing first waits for the stragglers:
//! until every expected event arrived, or 3 s pass without any arriving; CPU and time are
//! then measured up to the last arrival, so waiting out a stall does not dilute them.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::payload;
use crate::procfs;
use crate::publish::Published;
use crate::report::{Events, round};
use crate::tally::{Counts, Latencies, Tally};

/// How long closing waits for an event before it gives up on the rest.
const STALL: Duration = Duration::from_secs(3);

/// An open window.
pub(crate) struct Window {
    started: Instant,
    started_micros: u64,
    counts: Counts,
    published: Published,
    latency: Latencies,
    cpu_seconds: f64,
    /// The server's processes (`--pid`), and their CPU seconds at the start.
    server_pids: Vec<u32>,
    server_cpu_seconds: f64,
    /// The CPUs the driver may run on, and their busy and total ticks at the start.
    driver_cpus: BTreeSet<u32>,
    driver_core_ticks: Option<(u64, u64)>,
    /// Whether this driver publishes what its subscribers expect (see `close`).
    publishes: bool,
}

/// The clocks a window is measured with, read at one moment.
struct Reading {
    at: Instant,
    cpu_seconds: f64,
    server_cpu_seconds: f64,
    driver_core_ticks: Option<(u64, u64)>,
}

/// What a window measured.
pub(crate) struct Measurement {
    pub(crate) events: Events,
    /// Latency in µs, from send and from schedule.
    pub(crate) latency: Latencies,
    /// Driver CPU in percent of one core.
    pub(crate) driver_cpu_percent: f64,
    /// Server CPU (all `--pid` processes) in percent of one core; `None` without `--pid`.
    pub(crate) server_cpu_percent: Option<f64>,
    /// How busy the driver's cores were, whatever ran on them (the driver, Redis, …), in
    /// percent of those cores; `None` if unknown.
    pub(crate) driver_core_busy_percent: Option<f64>,
    /// Events published per topic in the window.
    pub(crate) published_per_topic: Vec<u64>,
}

impl Window {
    /// Opens a window now; `published` is what the publisher had published so far,
    /// `server_pids` the processes whose CPU counts as the server's, `driver_cpus` the cores
    /// the driver may run on; `publishes` whether this driver's publisher is the one its
    /// subscribers hear (not for a shard that does not publish, see `close`).
    pub(crate) fn open(
        tally: &Tally,
        published: Published,
        server_pids: &[u32],
        driver_cpus: &BTreeSet<u32>,
        publishes: bool,
    ) -> Self {
        Self {
            started: Instant::now(),
            started_micros: payload::now_micros(),
            counts: tally.counts(),
            published,
            latency: tally.latency(),
            cpu_seconds: procfs::own_cpu_seconds(),
            server_pids: server_pids.to_vec(),
            server_cpu_seconds: procfs::total_cpu_seconds(server_pids),
            driver_cpus: driver_cpus.clone(),
            driver_core_ticks: procfs::core_ticks(driver_cpus),
            publishes,
        }
    }

    /// The clocks now.
    fn read(&self) -> Reading {
        Reading {
            at: Instant::now(),
            cpu_seconds: procfs::own_cpu_seconds(),
            server_cpu_seconds: procfs::total_cpu_seconds(&self.server_pids),
            driver_core_ticks: procfs::core_ticks(&self.driver_cpus),
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
        // A shard that does not publish cannot know what to expect: it waits for the stall,
        // and its expected and missing stay 0 until `merge` joins it with the publisher's.
        let end = self
            .wait_for(tally, if self.publishes { expected } else { u64::MAX })
            .await;
        let counts = tally.counts().since(self.counts);
        let latency = tally.latency().since(&self.latency);
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
        let published_count: u64 = per_topic.iter().sum();
        let published_per_second = if publishing.is_zero() {
            0.0
        } else {
            published_count as f64 / publishing.as_secs_f64()
        };
        let events = Events {
            published: published_count,
            published_per_second: round(published_per_second, 1),
            publish_failed: published.failed - self.published.failed,
            expected,
            received: counts.received,
            missing: expected.saturating_sub(unique),
            duplicated: counts.duplicated,
            reordered: counts.reordered,
            delivered_per_second: delivered_per_second.round(),
        };
        let wall = (end.at - self.started).as_secs_f64().max(f64::EPSILON);
        let percent = |seconds: f64| round(seconds / wall * 100.0, 0);
        let server_cpu = end.server_cpu_seconds - self.server_cpu_seconds;
        let driver_core_busy_percent =
            procfs::busy_percent(self.driver_core_ticks, end.driver_core_ticks)
                .map(|percent| round(percent, 0));
        Measurement {
            events,
            latency,
            driver_cpu_percent: percent(end.cpu_seconds - self.cpu_seconds),
            server_cpu_percent: (!self.server_pids.is_empty()).then(|| percent(server_cpu)),
            driver_core_busy_percent,
            published_per_topic: per_topic,
        }
    }

    /// Waits until `expected` distinct events arrived in this window, or for a stall, and
    /// returns the clocks as they were when the last event arrived (or when waiting began):
    /// the time spent waiting out a stall is not measured.
    async fn wait_for(&self, tally: &Tally, expected: u64) -> Reading {
        let arrived = || {
            let counts = tally.counts().since(self.counts);
            counts.received.saturating_sub(counts.duplicated)
        };
        let (mut last, mut reading) = (arrived(), self.read());
        while last < expected && reading.at.elapsed() < STALL {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = arrived();
            if now != last {
                (last, reading) = (now, self.read());
            }
        }
        if last >= expected {
            self.read()
        } else {
            reading
        }
    }
}
