//! The report of a run: its JSON schema (the types below, which a plotting script reads) and
//! the same figures as a table for people.
//!
//! Every scenario reports the same sections (`params`, `connections`, `events`, `latency_ms`,
//! `server_rss_kib`, `driver_cpu_percent`); [`Details`] adds what only one scenario has:
//! `memory_samples` (idle), `steps` and `best` (ramp), `storm` (reconnect-storm).

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) params: Params,
    pub(crate) connections: Connections,
    pub(crate) events: Events,
    pub(crate) latency_ms: Latency,
    pub(crate) server_rss_kib: ServerRss,
    /// The driver's CPU use while measuring, in percent of one core.
    pub(crate) driver_cpu_percent: f64,
    #[serde(flatten)]
    pub(crate) details: Details,
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
    pub(crate) topic_prefix: String,
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
        ready_url: Option<String>,
    },
}

/// How opening the connections went.
#[derive(Debug, Serialize)]
pub(crate) struct Connections {
    pub(crate) requested: usize,
    pub(crate) live: u64,
    pub(crate) failed: u64,
    pub(crate) ended_by_server: u64,
    pub(crate) seconds_to_open: f64,
}

/// What was published and what arrived, over a run or a ramp step.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Events {
    pub(crate) published: u64,
    pub(crate) publish_failed: u64,
    /// For every connection, the events published to its topic.
    pub(crate) expected: u64,
    /// Events received, duplicates included.
    pub(crate) received: u64,
    /// `expected - (received - duplicated)`.
    pub(crate) missing: u64,
    pub(crate) duplicated: u64,
    pub(crate) sequence_gaps: u64,
    pub(crate) delivered_per_second: f64,
}

/// Publish-to-receive latency percentiles, in milliseconds.
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

/// One rate of a ramp.
#[derive(Debug, Serialize)]
pub(crate) struct Step {
    pub(crate) rate: u64,
    /// The rate the publisher reached (the server took the events this fast).
    pub(crate) published_per_second: f64,
    pub(crate) events: Events,
    pub(crate) latency_ms: Latency,
    pub(crate) passed: bool,
}

/// The passing ramp step with the most deliveries per second.
#[derive(Debug, Serialize)]
pub(crate) struct Best {
    pub(crate) rate: u64,
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
    /// From the drop to the last successful reconnect.
    pub(crate) seconds_to_reconnect: f64,
    /// Whether no readiness poll during the storm was answered with anything but 200;
    /// `None` without `--ready-url`.
    pub(crate) ready_during_storm: Option<bool>,
    /// The readiness polls during the storm, by outcome; `None` without `--ready-url`.
    pub(crate) ready_polls: Option<ReadyPolls>,
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
        storm: Storm,
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
    section("server_rss_kib", &report.server_rss_kib);
    row(
        "driver_cpu_percent",
        &Value::from(report.driver_cpu_percent),
    );
    match &report.details {
        Details::Steady {} => {}
        Details::Idle { memory_samples } => {
            columns(
                "memory_samples",
                memory_samples,
                &["connections", "rss_kib"],
            );
        }
        Details::Ramp { steps, best } => {
            columns(
                "steps",
                steps,
                &[
                    "rate",
                    "passed",
                    "events/published",
                    "events/delivered_per_second",
                    "events/missing",
                    "events/duplicated",
                    "latency_ms/p50",
                    "latency_ms/p99",
                    "latency_ms/max",
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

/// `rows` as a table under `name`, one column per path (`/`-separated fields).
fn columns<T: Serialize>(name: &str, rows: &[T], paths: &[&str]) {
    let header = paths
        .iter()
        .map(|path| path.rsplit('/').next().unwrap_or(path).to_owned());
    let cells = rows.iter().map(|item| {
        let value = serde_json::to_value(item).unwrap_or_default();
        paths
            .iter()
            .map(|path| {
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
