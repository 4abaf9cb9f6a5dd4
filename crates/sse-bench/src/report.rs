//! The report of a run: its JSON schema (the types below, which a plotting script reads) and
//! the same figures as a table for people.
//!
//! Every scenario reports the same sections (`params`, `connections`, `events`, `latency_ms`
//! from the send time, `latency_from_schedule_ms` from the time the event was due,
//! `server_rss_kib`, and the [`Load`] fields `driver_cpu_percent`, `server_cpu_percent`,
//! `driver_core_busy_percent`, `driver_bound`, `bound_by`); [`Details`] adds what only one scenario has:
//! `memory_samples` (idle), `steps` and `best` (ramp), `storm` (reconnect-storm: the
//! reconnects, how far behind the clients were and how long they took to catch up, the
//! resumed events' times, and over the storm window the servers' CPU and memory and the
//! Redis commands issued, see [`Storm`]).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::bound::{BoundBy, Busy, Cores};
use crate::tally::Latencies;

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) params: Params,
    pub(crate) connections: Connections,
    pub(crate) events: Events,
    /// From the time each request was sent.
    pub(crate) latency_ms: Latency,
    /// From the time each event was due by the schedule: includes any wait in the driver.
    pub(crate) latency_from_schedule_ms: Latency,
    pub(crate) server_rss_kib: ServerRss,
    #[serde(flatten)]
    pub(crate) load: Load,
    #[serde(flatten)]
    pub(crate) details: Details,
}

/// How busy each side was while measuring, and what limited the figures (see `bound`).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Load {
    /// The driver's CPU use, in percent of one core.
    pub(crate) driver_cpu_percent: f64,
    /// The `--pid` processes' CPU use together, in percent of one core; `None` without
    /// `--pid`.
    pub(crate) server_cpu_percent: Option<f64>,
    /// How busy the driver's cores were altogether (driver, Redis, anything else), in percent
    /// of those cores; `None` if unknown.
    pub(crate) driver_core_busy_percent: Option<f64>,
    /// Whether the driver or its cores were saturated, so the figures may be the driver's
    /// limit.
    pub(crate) driver_bound: bool,
    pub(crate) bound_by: BoundBy,
}

impl Load {
    /// The load `busy` describes, on `cores`.
    pub(crate) fn of(busy: &Busy, cores: Cores) -> Self {
        Self {
            driver_cpu_percent: busy.driver_cpu_percent,
            server_cpu_percent: busy.server_cpu_percent,
            driver_core_busy_percent: busy.driver_core_busy_percent,
            driver_bound: busy.driver_bound(cores),
            bound_by: busy.bound_by(cores),
        }
    }
}

/// What the run was asked to do.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Params {
    pub(crate) connections: usize,
    pub(crate) topics: usize,
    /// Events per second; `None` where it varies (ramp).
    pub(crate) rate: Option<u64>,
    /// How long publishing (or holding, for idle) lasted; `None` where it varies (ramp).
    pub(crate) duration_s: Option<f64>,
    pub(crate) payload: usize,
    pub(crate) subscribe_urls: Vec<String>,
    pub(crate) publish_url: String,
    pub(crate) publish_connections: usize,
    /// Whether events were spread over the publish connections rather than a topic per
    /// connection.
    pub(crate) publish_spread: bool,
    /// The processes counted as the server (memory and CPU).
    pub(crate) server_pids: Vec<u32>,
    /// The CPUs the server's processes may run on together, and the driver; `None` if
    /// unknown.
    pub(crate) server_cores: Option<usize>,
    pub(crate) driver_cores: Option<usize>,
    pub(crate) topic_prefix: String,
    /// Distinct subscriber tokens (`--tokens`), sent round-robin; `None` without.
    pub(crate) tokens: Option<usize>,
    #[serde(flatten)]
    pub(crate) scenario: ScenarioParams,
}

/// Parameters only one scenario has.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ScenarioParams {
    None {},
    Ramp {
        rates: Vec<u64>,
        step_s: f64,
        max_p99_ms: f64,
    },
    Storm {
        storm_at_s: f64,
        storm_share: f64,
        /// How long the dropped clients stayed away, at least (`--storm-away`).
        storm_away_s: f64,
        /// The window over which their reconnects were spread (`--storm-spread`).
        storm_spread_s: f64,
        ready_url: Option<String>,
        /// The Redis servers whose commands were counted (`--redis-stats`).
        redis_stats: Vec<String>,
    },
}

/// How opening the connections went.
#[derive(Debug, Serialize)]
pub(crate) struct Connections {
    pub(crate) requested: usize,
    pub(crate) live: u64,
    pub(crate) failed: u64,
    /// The failed connections the server answered, by status (`"403": 10`).
    pub(crate) failed_by_status: BTreeMap<u16, u64>,
    pub(crate) ended_by_server: u64,
    pub(crate) seconds_to_open: f64,
}

/// What was published and what arrived, over a run or a ramp step.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Events {
    pub(crate) published: u64,
    /// `published` ÷ the time publishing took: the publish rate achieved.
    pub(crate) published_per_second: f64,
    pub(crate) publish_failed: u64,
    /// For every connection, the events published to its topic.
    pub(crate) expected: u64,
    /// Events received, duplicates included.
    pub(crate) received: u64,
    /// `expected - (received - duplicated)`.
    pub(crate) missing: u64,
    /// Events a connection had already received (the same sequence twice).
    pub(crate) duplicated: u64,
    /// Events that arrived after a higher sequence of their topic: out of order, not lost.
    pub(crate) reordered: u64,
    pub(crate) delivered_per_second: f64,
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) samples: u64,
}

impl Latency {
    /// The percentiles of both histograms of `latencies`: from send, from schedule.
    pub(crate) fn both(latencies: &Latencies) -> (Self, Self) {
        (
            Self::of(&latencies.from_send),
            Self::of(&latencies.from_schedule),
        )
    }

    /// The percentiles of `histogram` (in µs).
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |quantile| ms(histogram.value_at_quantile(quantile));
        Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(histogram.max()),
            samples: histogram.len(),
        }
    }
}

/// Server memory (summed `VmRSS` of `--pid`), in KiB.
#[derive(Debug, Serialize)]
pub(crate) struct ServerRss {
    /// Before the first connection.
    pub(crate) before: u64,
    /// With every connection open and nothing published.
    pub(crate) idle: u64,
    /// Summed PSS at the same two moments: pages the processes share count once; `None`
    /// where `/proc/PID/smaps_rollup` cannot be read.
    pub(crate) pss_before: Option<u64>,
    pub(crate) pss_idle: Option<u64>,
    pub(crate) peak: u64,
    /// `(idle - before) / live`.
    pub(crate) per_connection_idle: f64,
}

/// Server memory when a number of connections were live.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct MemorySample {
    pub(crate) connections: u64,
    pub(crate) rss_kib: u64,
}

/// One rate of a ramp; the rate achieved is `events.published_per_second`.
#[derive(Debug, Serialize)]
pub(crate) struct Step {
    /// The rate asked.
    pub(crate) rate: u64,
    pub(crate) events: Events,
    pub(crate) latency_ms: Latency,
    pub(crate) latency_from_schedule_ms: Latency,
    #[serde(flatten)]
    pub(crate) load: Load,
    pub(crate) verdict: Verdict,
    /// The rules the step broke: `missing`, `p99`, `publish_rate`.
    pub(crate) failed_on: Vec<&'static str>,
}

/// How a ramp step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Passed,
    /// The server lost events, was too slow, or could not take the rate.
    Failed,
    /// Only publishing fell short, while the driver was saturated: driver-bound, no verdict
    /// on the server.
    Inconclusive,
}

/// The passing ramp step with the most deliveries per second.
#[derive(Debug, Serialize)]
pub(crate) struct Best {
    /// The rate asked, and the rate publishing reached.
    pub(crate) rate: u64,
    pub(crate) published_per_second: f64,
    pub(crate) delivered_per_second: f64,
    pub(crate) p99_ms: f64,
}

/// How a reconnect storm went.
#[derive(Debug, Serialize)]
pub(crate) struct Storm {
    /// Connections that dropped and reconnected.
    pub(crate) clients: usize,
    pub(crate) reconnected: u64,
    /// Connections whose every reconnect attempt failed.
    pub(crate) failed: u64,
    /// Those whose last attempt the server answered, by status.
    pub(crate) failed_by_status: BTreeMap<u16, u64>,
    /// From the drop to the last successful reconnect.
    pub(crate) seconds_to_reconnect: f64,
    /// How many events the clients were behind when they sent their reconnect request.
    pub(crate) behind_at_reconnect: Behind,
    /// How long they took to receive what they were behind.
    pub(crate) catch_up: CatchUp,
    /// Every resumed event (published before its client's reconnect request), from that
    /// request until it arrived: how fast the server replays.
    pub(crate) resumed_events_from_reconnect_ms: Latency,
    /// The servers' and the driver's resources from the drop until every client caught up.
    pub(crate) window: StormWindow,
    /// The Redis commands issued over the window; `None` without `--redis-stats` or when a
    /// server could not be read (then `redis_stats_error` says why).
    pub(crate) redis_commands: Option<RedisCommands>,
    pub(crate) redis_stats_error: Option<String>,
    /// Whether no readiness poll during the storm was answered with anything but 200;
    /// `None` without `--ready-url`.
    pub(crate) ready_during_storm: Option<bool>,
    /// The readiness polls during the storm, by outcome; `None` without `--ready-url`.
    pub(crate) ready_polls: Option<ReadyPolls>,
}

/// How far behind the storm clients were at their reconnect request: the events of their
/// topic acknowledged to the publisher by then that they had not received (measured per
/// client, see `clients`).
#[derive(Debug, Serialize)]
pub(crate) struct Behind {
    /// Clients that sent a reconnect request.
    pub(crate) clients: u64,
    pub(crate) mean: f64,
    pub(crate) max: u64,
}

/// How the storm clients caught up: received every event their topic had (acknowledged to
/// the publisher) when they sent their reconnect request.
#[derive(Debug, Serialize)]
pub(crate) struct CatchUp {
    pub(crate) caught_up: u64,
    /// Storm clients that had not caught up when the driver stopped waiting (including
    /// those that never reconnected).
    pub(crate) not_caught_up: u64,
    /// From the drop until the last storm client caught up; `None` unless every one did.
    pub(crate) seconds_until_all: Option<f64>,
    /// Per client, from its own reconnect request until it caught up.
    pub(crate) from_reconnect_ms: Latency,
}

/// Resources over a storm window: from just before the drop until every client caught up
/// (or the driver stopped waiting).
#[derive(Debug, Serialize)]
pub(crate) struct StormWindow {
    pub(crate) seconds: f64,
    /// Events published within the window: sent after it opened and acknowledged before it
    /// closed (so each reached the server's Redis inside it).
    pub(crate) published: u64,
    /// CPU of the `--pid` processes together, in seconds and in percent of one core; `None`
    /// without `--pid`.
    pub(crate) server_cpu_seconds: Option<f64>,
    pub(crate) server_cpu_percent: Option<f64>,
    /// Summed RSS of the `--pid` processes at the drop and at its highest in the window
    /// (sampled every 10 ms), in KiB; `None` without `--pid`.
    pub(crate) server_rss_at_drop_kib: Option<u64>,
    pub(crate) server_rss_peak_kib: Option<u64>,
    /// The driver's own CPU.
    pub(crate) driver_cpu_seconds: f64,
    pub(crate) driver_cpu_percent: f64,
    /// How busy the driver's cores were (the driver, Redis, anything else), in percent of
    /// those cores; `None` if unknown.
    pub(crate) driver_core_busy_percent: Option<f64>,
    /// The same from the end of `--storm-away` (the first reconnect) until the window
    /// closed: the replay, without the quiet away time that dilutes the percentages above.
    pub(crate) reconnecting: Phase,
}

/// CPU over part of a storm window.
#[derive(Debug, Serialize)]
pub(crate) struct Phase {
    pub(crate) seconds: f64,
    /// The `--pid` processes together; `None` without `--pid`.
    pub(crate) server_cpu_seconds: Option<f64>,
    pub(crate) server_cpu_percent: Option<f64>,
    pub(crate) driver_cpu_seconds: f64,
    pub(crate) driver_cpu_percent: f64,
    pub(crate) driver_core_busy_percent: Option<f64>,
}

/// Redis commands over a storm window, from `INFO commandstats` (see `redis_stats`).
#[derive(Debug, Serialize)]
pub(crate) struct RedisCommands {
    /// The servers read, whose counts are summed.
    pub(crate) servers: Vec<String>,
    /// Calls per command (lower case, subcommands as `xinfo|stream`), those with none left
    /// out; the publisher's writes included, the driver's own `INFO` not.
    pub(crate) by_command: BTreeMap<String, u64>,
    pub(crate) total: u64,
    /// `xrange` + `xrevrange` + `xinfo …` + `xread`: the stream reads.
    pub(crate) read_commands: u64,
}

/// How the readiness polls of a storm were answered.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ReadyPolls {
    pub(crate) ready: u64,
    /// Answered, with another status.
    pub(crate) not_ready: u64,
    /// Not answered within the poll timeout (typically: the SYN waited in a full accept queue).
    pub(crate) unanswered: u64,
}

/// The sections only one scenario has.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Details {
    Steady {},
    Idle {
        memory_samples: Vec<MemorySample>,
    },
    Ramp {
        steps: Vec<Step>,
        best: Option<Best>,
    },
    Storm {
        storm: Box<Storm>,
    },
}

/// Rounds `value` to `decimals` places, so reports do not show float noise.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Prints `report` as a table on stdout.
pub(crate) fn print_table(report: &Report) {
    println!("{:-<64}", "");
    row("scenario", &Value::from(report.scenario));
    section("params", &report.params);
    section("connections", &report.connections);
    section("events", &report.events);
    section("latency_ms", &report.latency_ms);
    section("latency_from_schedule_ms", &report.latency_from_schedule_ms);
    section("server_rss_kib", &report.server_rss_kib);
    section("load", &report.load);
    match &report.details {
        Details::Steady {} => {}
        Details::Idle { memory_samples } => {
            columns(
                "memory_samples",
                memory_samples,
                &[("connections", "connections"), ("rss_kib", "rss_kib")],
            );
        }
        Details::Ramp { steps, best } => {
            columns(
                "steps",
                steps,
                &[
                    ("rate", "rate"),
                    ("verdict", "verdict"),
                    ("bound_by", "bound_by"),
                    ("published/s", "events/published_per_second"),
                    ("delivered/s", "events/delivered_per_second"),
                    ("missing", "events/missing"),
                    ("dup", "events/duplicated"),
                    ("reordered", "events/reordered"),
                    ("p50", "latency_ms/p50"),
                    ("p99", "latency_ms/p99"),
                    ("sched p99", "latency_from_schedule_ms/p99"),
                    ("server cpu", "server_cpu_percent"),
                    ("driver cpu", "driver_cpu_percent"),
                    ("driver core", "driver_core_busy_percent"),
                ],
            );
            section("best", best);
        }
        Details::Storm { storm } => section("storm", storm),
    }
    println!("{:-<64}", "");
}

fn row(name: &str, value: &Value) {
    println!("{name:<36} {value}");
}

/// One row per leaf of `value`, named by its dotted path under `name`.
fn section(name: &str, value: &impl Serialize) {
    fn leaves(name: &str, value: &Value) {
        match value {
            Value::Object(fields) => {
                for (field, value) in fields {
                    leaves(&format!("{name}.{field}"), value);
                }
            }
            leaf => row(name, leaf),
        }
    }
    leaves(name, &serde_json::to_value(value).unwrap_or_default());
}

/// `rows` as a table under `name`, one column per (header, path), a path naming
/// `/`-separated fields.
fn columns<T: Serialize>(name: &str, rows: &[T], paths: &[(&str, &str)]) {
    let header = paths.iter().map(|&(header, _)| header.to_owned());
    let cells = rows.iter().map(|item| {
        let value = serde_json::to_value(item).unwrap_or_default();
        paths
            .iter()
            .map(|(_, path)| {
                value
                    .pointer(&format!("/{path}"))
                    .map_or_else(String::new, ToString::to_string)
            })
            .collect::<Vec<_>>()
    });
    let table: Vec<Vec<String>> = std::iter::once(header.collect()).chain(cells).collect();
    let widths: Vec<usize> = (0..paths.len())
        .map(|column| table.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    println!("{name}:");
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:>width$}"))
            .collect();
        println!("  {}", line.join("  "));
    }
}
