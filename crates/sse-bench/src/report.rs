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
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bound::{BoundBy, Busy, Cores, SATURATED_PERCENT};
use crate::cli::Shard;
use crate::kernel::Side;
use crate::tally::Latencies;

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) params: Params,
    /// Which of several cooperating drivers wrote this (`--shard`); `None` for a driver alone.
    pub(crate) shard: Option<Shard>,
    /// With `--start-at`: how late this driver was for it, in ms (0: on time).
    pub(crate) started_late_ms: Option<u64>,
    pub(crate) connections: Connections,
    pub(crate) events: Events,
    /// From the time each request was sent.
    pub(crate) latency_ms: Latency,
    /// From the time each event was due by the schedule: includes any wait in the driver.
    pub(crate) latency_from_schedule_ms: Latency,
    pub(crate) server_rss_kib: ServerRss,
    /// `None` where `/proc` cannot be read.
    pub(crate) kernel_memory: Option<KernelMemory>,
    /// What `merge` needs to join shards exactly: per topic the events published and the
    /// connections subscribed, and the whole latency histograms.
    pub(crate) per_topic: PerTopic,
    pub(crate) latency_histograms_us: Histograms,
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
    /// The CPUs the driver may run on (all shards' together in a merged report).
    pub(crate) driver_cpus: Vec<u32>,
    pub(crate) topic_prefix: String,
    /// Distinct subscriber tokens (`--tokens`), sent round-robin; `None` without.
    pub(crate) tokens: Option<usize>,
    /// `--timed-sample`: how many connections were asked to be timed; `None`: all
    /// (`connections.timed` says how many were).
    pub(crate) timed_sample: Option<u32>,
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
    Stalled {
        /// Healthy readers beside the stalled streams (`--healthy`).
        healthy: usize,
        /// The stalled streams' `SO_RCVBUF`, asked before connecting.
        stalled_rcvbuf: u32,
        sample_interval_s: f64,
        hold_after_s: f64,
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
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Connections {
    pub(crate) requested: usize,
    pub(crate) live: u64,
    pub(crate) failed: u64,
    /// The failed connections the server answered, by status (`"403": 10`).
    pub(crate) failed_by_status: BTreeMap<u16, u64>,
    pub(crate) ended_by_server: u64,
    pub(crate) seconds_to_open: f64,
    /// Live connections that timed every event: the latency percentiles are theirs alone.
    /// The others counted and checked every event without timing it (`--timed-sample`).
    pub(crate) timed: u64,
}

/// What was published and what arrived, over a run or a ramp step.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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

/// Per topic, in topic order: the events published (by this driver) and its connections.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PerTopic {
    pub(crate) published: Vec<u64>,
    pub(crate) subscribers: Vec<u64>,
}

/// The latency histograms (µs) as `[value, count]` pairs, one per non-empty bucket (value:
/// the highest equivalent of the bucket), so that reports can be merged exactly.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Histograms {
    pub(crate) from_send: Vec<[u64; 2]>,
    pub(crate) from_schedule: Vec<[u64; 2]>,
}

impl Histograms {
    /// The buckets of both histograms of `latencies`.
    pub(crate) fn of(latencies: &Latencies) -> Self {
        Self {
            from_send: buckets(&latencies.from_send),
            from_schedule: buckets(&latencies.from_schedule),
        }
    }
}

/// The non-empty buckets of `histogram`.
fn buckets(histogram: &Histogram<u64>) -> Vec<[u64; 2]> {
    histogram
        .iter_recorded()
        .map(|bucket| [bucket.value_iterated_to(), bucket.count_at_value()])
        .collect()
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
#[derive(Debug, Serialize, Deserialize)]
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

/// The kernel's TCP memory beside the server's RSS (see `kernel`): what the sockets' buffers
/// hold, which no process's RSS shows.
#[derive(Debug, Serialize)]
pub(crate) struct KernelMemory {
    /// The ports whose sockets are the server's side: the subscribe URLs'.
    pub(crate) server_ports: Vec<u16>,
    pub(crate) page_size: u64,
    /// `/proc/net/sockstat` TCP `mem` × page size: **machine-wide**, both ends of every
    /// loopback connection (the driver's receive queues too) and anything else running.
    pub(crate) tcp_mem_kib: Readings,
    /// The summed `tx_queue` of the server's sockets (local port a server port, any state
    /// but `LISTEN`, so closed ones still in `FIN_WAIT1` count): written by the server, not
    /// yet acknowledged by the client. The peak is of readings every 5 s.
    pub(crate) server_send_queue_kib: Readings,
    /// The server's sockets at idle, and by TCP state.
    pub(crate) server_sockets_idle: u64,
    pub(crate) server_states_idle: BTreeMap<&'static str, u64>,
}

/// A kernel figure before the first connection, at idle and at its highest in the run, in
/// KiB; per connection, what it grew by over the live connections.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Readings {
    pub(crate) before: Option<u64>,
    pub(crate) idle: Option<u64>,
    pub(crate) peak: Option<u64>,
    /// `(idle − before) / live`.
    pub(crate) per_connection_idle: Option<f64>,
    /// `(peak − before) / live`.
    pub(crate) per_connection_peak: Option<f64>,
}

impl Readings {
    /// The figures of `before`, `idle` and `peak` over `live` connections.
    pub(crate) fn of(before: Option<u64>, idle: Option<u64>, peak: Option<u64>, live: u64) -> Self {
        let per_connection = |value: Option<u64>| {
            let (value, before) = value.zip(before)?;
            (live > 0).then(|| round(value.saturating_sub(before) as f64 / live as f64, 3))
        };
        Self {
            before,
            idle,
            peak,
            per_connection_idle: per_connection(idle),
            per_connection_peak: per_connection(peak),
        }
    }
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

/// How stalled readers weighed on the server (the `stalled` scenario).
#[derive(Debug, Serialize)]
pub(crate) struct Stalled {
    /// Stalled streams asked for, opened (answered 200) and failed.
    pub(crate) connections: usize,
    pub(crate) opened: u64,
    pub(crate) failed: u64,
    /// Their `SO_RCVBUF`, asked before connecting (the kernel doubles it).
    pub(crate) receive_buffer_bytes: u32,
    /// Healthy readers on the same topic: the run's `events` and latency are theirs.
    pub(crate) healthy: usize,
    /// Before any stream opened.
    pub(crate) baseline: StalledSample,
    /// The highest of each figure over the samples.
    pub(crate) peak: StalledPeak,
    /// `(peak − baseline) / opened`: what one stalled stream cost at most.
    pub(crate) per_stream_peak_rss_kib: Option<f64>,
    pub(crate) per_stream_peak_tcp_mem_kib: Option<f64>,
    pub(crate) per_stream_peak_server_send_queue_kib: Option<f64>,
    /// The last sample, `--hold-after` past the end of publishing, streams still open.
    pub(crate) end: StalledSample,
    /// A second after the driver closed the stalled streams. The machine-wide TCP memory
    /// before that includes the driver's own stalled sockets: what they received and never
    /// read stays queued until they are closed, even once the server has reset them.
    pub(crate) after_close: StalledSample,
    /// Every `--sample-interval` from the start of publishing, `end` last.
    pub(crate) samples: Vec<StalledSample>,
}

/// One reading of the server's memory and sockets.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StalledSample {
    /// Seconds since publishing started.
    pub(crate) t_s: f64,
    /// Summed RSS of the `--pid` processes.
    pub(crate) rss_kib: u64,
    /// `/proc/net/sockstat` TCP `mem` × page size, machine-wide.
    pub(crate) tcp_mem_kib: Option<u64>,
    /// The server's side (local port a subscribe URL's port) and the clients' side.
    pub(crate) server: Side,
    pub(crate) clients: Side,
}

/// The highest figures over a run's samples.
#[derive(Debug, Serialize)]
pub(crate) struct StalledPeak {
    pub(crate) rss_kib: u64,
    pub(crate) tcp_mem_kib: Option<u64>,
    pub(crate) server_send_queue_bytes: u64,
    pub(crate) server_sockets: u64,
    /// Server sockets in `FIN_WAIT1`: closed by the server with data still queued.
    pub(crate) server_fin_wait1: u64,
}

impl StalledPeak {
    /// The peaks of `samples`.
    pub(crate) fn of(samples: &[StalledSample]) -> Self {
        let max = |value: fn(&StalledSample) -> u64| samples.iter().map(value).max().unwrap_or(0);
        Self {
            rss_kib: max(|s| s.rss_kib),
            tcp_mem_kib: samples.iter().filter_map(|s| s.tcp_mem_kib).max(),
            server_send_queue_bytes: max(|s| s.server.send_queue_bytes),
            server_sockets: max(|s| s.server.sockets),
            server_fin_wait1: max(|s| s.server.states.get("FIN_WAIT1").copied().unwrap_or(0)),
        }
    }
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
    Stalled {
        stalled: Box<Stalled>,
    },
}

/// Rounds `value` to `decimals` places, so reports do not show float noise.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The fields of a report not printed: what `merge` reads, too long for a table.
const NOT_PRINTED: [&str; 2] = ["per_topic", "latency_histograms_us"];
/// The sections printed first, in this order; the rest follow.
const SECTIONS: [&str; 10] = [
    "params",
    "shard",
    "started_late_ms",
    "connections",
    "events",
    "latency_ms",
    "latency_from_schedule_ms",
    "server_rss_kib",
    "kernel_memory",
    "shards",
];

/// Prints `report` (a [`Report`], or a merged one) as a table on stdout, the driver's CPU
/// and whether it bound the run last.
pub(crate) fn print_table(report: &Value) {
    let field = |name: &str| report.get(name).unwrap_or(&Value::Null);
    println!("{:-<64}", "");
    row("scenario", field("scenario"));
    for name in SECTIONS {
        match (name, field(name)) {
            (_, Value::Null) => {}
            ("shards", Value::Array(shards)) => columns(
                "shards",
                shards,
                &[
                    ("shard", "index"),
                    ("live", "live"),
                    ("timed", "timed"),
                    ("received", "received"),
                    ("driver cpu %", "driver_cpu_percent"),
                    ("driver core %", "driver_core_busy_percent"),
                    ("driver cpus", "driver_cpus"),
                    ("driver-bound", "driver_bound"),
                    ("late ms", "started_late_ms"),
                    ("report", "report"),
                ],
            ),
            (name, value) => section(name, value),
        }
    }
    if let Some(samples) = field("memory_samples").as_array() {
        columns(
            "memory_samples",
            samples,
            &[("connections", "connections"), ("rss_kib", "rss_kib")],
        );
    }
    if let Some(steps) = field("steps").as_array() {
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
        section("best", field("best"));
    }
    if let Some(stalled) = field("stalled").as_object() {
        let samples = stalled.get("samples").and_then(Value::as_array);
        columns(
            "stalled.samples",
            samples.map_or(&[][..], Vec::as_slice),
            &[
                ("t_s", "t_s"),
                ("rss_kib", "rss_kib"),
                ("tcp_mem_kib", "tcp_mem_kib"),
                ("server sockets", "server/sockets"),
                ("server send queue B", "server/send_queue_bytes"),
                ("server states", "server/states"),
                ("client sockets", "clients/sockets"),
                ("client recv queue B", "clients/receive_queue_bytes"),
            ],
        );
        let mut summary = stalled.clone();
        summary.remove("samples");
        section("stalled", &Value::Object(summary));
    }
    section("storm", field("storm"));
    let shown = SECTIONS
        .iter()
        .chain(&NOT_PRINTED)
        .chain(&LOAD)
        .chain(&DETAILS);
    let shown: Vec<&str> = shown.copied().chain(["scenario"]).collect();
    if let Some(fields) = report.as_object() {
        for (name, value) in fields
            .iter()
            .filter(|(name, _)| !shown.contains(&name.as_str()))
        {
            section(name, value);
        }
    }
    let load: serde_json::Map<String, Value> = LOAD
        .iter()
        .map(|&name| (name.to_owned(), field(name).clone()))
        .collect();
    section("load", &Value::Object(load));
    println!("{}", driver_line(report));
    println!("{:-<64}", "");
}

/// The flattened [`Load`] fields.
const LOAD: [&str; 5] = [
    "driver_cpu_percent",
    "server_cpu_percent",
    "driver_core_busy_percent",
    "driver_bound",
    "bound_by",
];
/// The scenario sections printed on their own above.
const DETAILS: [&str; 5] = ["memory_samples", "steps", "best", "stalled", "storm"];

/// One line on the driver: its CPU, its cores' busy time, and whether it bound the run.
fn driver_line(report: &Value) -> String {
    let number = |name: &str| {
        report
            .get(name)
            .and_then(Value::as_f64)
            .map_or_else(|| "?".to_owned(), |value| format!("{value}"))
    };
    let verdict = if report.get("driver_bound").and_then(Value::as_bool) == Some(true) {
        format!("DRIVER-BOUND (above {SATURATED_PERCENT} %)")
    } else {
        "not driver-bound".to_owned()
    };
    format!(
        "driver: {} % of one core, its cores {} % busy: {verdict}",
        number("driver_cpu_percent"),
        number("driver_core_busy_percent"),
    )
}

fn row(name: &str, value: &Value) {
    println!("{name:<36} {value}");
}

/// One row per leaf of `value`, named by its dotted path under `name`.
fn section(name: &str, value: &Value) {
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
    if !value.is_null() {
        leaves(name, value);
    }
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
