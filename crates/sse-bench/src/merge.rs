//! `sse-bench merge`: one report from the reports of cooperating drivers (`--shard I/K`).
//!
//! One driver process is bounded twice: by its open-file limit (20,000 here) and by the one
//! core its event loop runs on. A run split over K processes, each opening every K-th
//! connection with only the first publishing, is measured by K reports that only together say
//! what happened. Merging them exactly needs more than their summaries, so every report also
//! carries per topic what it published and how many connections it had there, and its whole
//! latency histograms (`per_topic`, `latency_histograms_us`):
//!
//! - counts are summed; `expected` is, per topic, the events published (by the publishing
//!   shard) times the connections of every shard there, and `missing` follows from it;
//! - latency percentiles come from the merged histograms, never from averaging percentiles;
//! - driver CPU is summed (each process's is listed under `shards`), the driver cores' busy
//!   time is the busiest shard's, and the run is driver-bound if any shard was or if the sum
//!   saturates the cores the shards ran on together;
//! - the server's figures (RSS, CPU, kernel memory) were read by every shard of the same
//!   server over the same window: the highest reading is taken (the lowest for "before"),
//!   and per-connection figures are divided by all shards' live connections.
//!
//! Idle memory samples are per shard (each counts its own connections) and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bound::{BoundBy, Busy, Cores};
use crate::cli::Shard;
use crate::report::{
    Connections, Events, Histograms, Latency, PerTopic, Readings, ServerRss, round,
};
use crate::tally::Latencies;

/// The scenarios whose runs can be split.
const SHARDABLE: [&str; 3] = ["idle", "fanout", "topics"];

/// What merging reads of one report.
#[derive(Debug, Deserialize)]
struct Input {
    scenario: String,
    params: InputParams,
    shard: Option<Shard>,
    started_late_ms: Option<u64>,
    connections: Connections,
    events: Events,
    per_topic: PerTopic,
    latency_histograms_us: Histograms,
    server_rss_kib: ServerRss,
    kernel_memory: Option<InputKernel>,
    driver_cpu_percent: f64,
    server_cpu_percent: Option<f64>,
    driver_core_busy_percent: Option<f64>,
    driver_bound: bool,
}

#[derive(Debug, Deserialize)]
struct InputParams {
    connections: usize,
    topic_prefix: String,
    rate: Option<u64>,
    server_cores: Option<usize>,
    driver_cpus: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct InputKernel {
    tcp_mem_kib: Readings,
    server_send_queue_kib: Readings,
    server_sockets_idle: u64,
}

/// One report as read: its file, its whole JSON, and what merging needs of it.
struct Read {
    path: PathBuf,
    json: Value,
    input: Input,
}

/// Reads the reports at `paths` and merges them.
///
/// # Errors
/// A report that cannot be read, or reports that are not every shard of one run.
pub(crate) fn merge_files(paths: &[PathBuf]) -> anyhow::Result<Value> {
    let mut reads = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let input = Input::deserialize(&json).with_context(|| {
            format!(
                "{} is not an sse-bench report with what merging needs",
                path.display()
            )
        })?;
        reads.push(Read {
            path: path.clone(),
            json,
            input,
        });
    }
    merge(reads)
}

/// Checks that `reads` are every shard of one run, once each, and sorts them by shard.
fn check(reads: &mut [Read]) -> anyhow::Result<()> {
    reads.sort_by_key(|read| read.input.shard.map(|shard| shard.index));
    let first = &reads[0].input;
    ensure!(
        SHARDABLE.contains(&first.scenario.as_str()),
        "{} reports cannot be merged (only {})",
        first.scenario,
        SHARDABLE.join(", ")
    );
    for (position, read) in reads.iter().enumerate() {
        let name = read.path.display();
        let input = &read.input;
        let Some(shard) = input.shard else {
            bail!("{name} is not a shard's report (no --shard)");
        };
        ensure!(
            shard.count == reads.len() && shard.index == position,
            "{name} is shard {}/{}, but {} reports were given: give every shard once",
            shard.index,
            shard.count,
            reads.len()
        );
        ensure!(
            input.scenario == first.scenario
                && input.params.connections == first.params.connections
                && input.params.topic_prefix == first.params.topic_prefix
                && input.per_topic.published.len() == first.per_topic.published.len(),
            "{name} is of another run (scenario, --connections, topics or --topic-prefix differ)"
        );
        ensure!(
            shard.publishes() || input.events.published == 0,
            "{name} published, but only shard 0 publishes"
        );
    }
    Ok(())
}

/// Merges the reports `reads` (see the module docs).
fn merge(mut reads: Vec<Read>) -> anyhow::Result<Value> {
    ensure!(!reads.is_empty(), "no reports to merge");
    check(&mut reads)?;
    let inputs: Vec<&Input> = reads.iter().map(|read| &read.input).collect();
    let sum = |value: fn(&Input) -> u64| inputs.iter().map(|input| value(input)).sum::<u64>();
    let sum_f = |value: fn(&Input) -> f64| inputs.iter().map(|input| value(input)).sum::<f64>();
    let max_f = |value: fn(&Input) -> Option<f64>| {
        inputs
            .iter()
            .filter_map(|input| value(input))
            .reduce(f64::max)
    };

    let live = sum(|i| i.connections.live);
    let mut failed_by_status = BTreeMap::new();
    for input in &inputs {
        for (status, count) in &input.connections.failed_by_status {
            *failed_by_status.entry(*status).or_default() += count;
        }
    }
    let connections = Connections {
        requested: inputs.iter().map(|i| i.connections.requested).sum(),
        live,
        failed: sum(|i| i.connections.failed),
        failed_by_status,
        ended_by_server: sum(|i| i.connections.ended_by_server),
        seconds_to_open: inputs
            .iter()
            .map(|i| i.connections.seconds_to_open)
            .fold(0.0, f64::max),
        timed: sum(|i| i.connections.timed),
    };

    let topics = inputs[0].per_topic.published.len();
    let per_topic = PerTopic {
        published: (0..topics)
            .map(|t| inputs.iter().map(|i| i.per_topic.published[t]).sum())
            .collect(),
        subscribers: (0..topics)
            .map(|t| {
                inputs
                    .iter()
                    .filter_map(|i| i.per_topic.subscribers.get(t))
                    .sum()
            })
            .collect(),
    };
    let expected: u64 = per_topic
        .published
        .iter()
        .zip(&per_topic.subscribers)
        .map(|(published, subscribers)| published * subscribers)
        .sum();
    let received = sum(|i| i.events.received);
    let duplicated = sum(|i| i.events.duplicated);
    let events = Events {
        published: sum(|i| i.events.published),
        published_per_second: round(sum_f(|i| i.events.published_per_second), 1),
        publish_failed: sum(|i| i.events.publish_failed),
        expected,
        received,
        missing: expected.saturating_sub(received.saturating_sub(duplicated)),
        duplicated,
        reordered: sum(|i| i.events.reordered),
        delivered_per_second: sum_f(|i| i.events.delivered_per_second).round(),
    };

    let mut latencies = Latencies::new();
    for input in &inputs {
        add(
            &mut latencies.from_send,
            &input.latency_histograms_us.from_send,
        )?;
        add(
            &mut latencies.from_schedule,
            &input.latency_histograms_us.from_schedule,
        )?;
    }
    let (latency_ms, latency_from_schedule_ms) = Latency::both(&latencies);

    let rss = |value: fn(&ServerRss) -> u64| inputs.iter().map(move |i| value(&i.server_rss_kib));
    let pss = |value: fn(&ServerRss) -> Option<u64>| {
        inputs.iter().filter_map(move |i| value(&i.server_rss_kib))
    };
    let (before, idle) = (rss(|r| r.before).min(), rss(|r| r.idle).max());
    let server_rss_kib = ServerRss {
        before: before.unwrap_or(0),
        idle: idle.unwrap_or(0),
        pss_before: pss(|r| r.pss_before).min(),
        pss_idle: pss(|r| r.pss_idle).max(),
        peak: rss(|r| r.peak).max().unwrap_or(0),
        per_connection_idle: if live == 0 {
            0.0
        } else {
            round(
                idle.unwrap_or(0).saturating_sub(before.unwrap_or(0)) as f64 / live as f64,
                2,
            )
        },
    };

    let driver_cpus: BTreeSet<u32> = inputs
        .iter()
        .flat_map(|i| i.params.driver_cpus.iter().copied())
        .collect();
    let cores = Cores {
        driver: (!driver_cpus.is_empty()).then_some(driver_cpus.len()),
        server: inputs[0].params.server_cores,
    };
    let busy = Busy {
        driver_cpu_percent: sum_f(|i| i.driver_cpu_percent),
        server_cpu_percent: max_f(|i| i.server_cpu_percent),
        driver_core_busy_percent: max_f(|i| i.driver_core_busy_percent),
        asked_rate: inputs[0].params.rate,
        achieved_rate: events.published_per_second,
    };
    let driver_bound = busy.driver_bound(cores) || inputs.iter().any(|i| i.driver_bound);
    let bound_by = if driver_bound {
        BoundBy::Driver
    } else {
        busy.bound_by(cores)
    };

    let shards: Vec<Value> = reads
        .iter()
        .map(|read| {
            let input = &read.input;
            json!({
                "index": input.shard.map(|shard| shard.index),
                "report": read.path.display().to_string(),
                "live": input.connections.live,
                "timed": input.connections.timed,
                "received": input.events.received,
                "published": input.events.published,
                "driver_cpu_percent": input.driver_cpu_percent,
                "driver_core_busy_percent": input.driver_core_busy_percent,
                "driver_cpus": input.params.driver_cpus,
                "driver_bound": input.driver_bound,
                "started_late_ms": input.started_late_ms,
            })
        })
        .collect();

    let mut merged = reads[0].json.clone();
    let Some(fields) = merged.as_object_mut() else {
        bail!("{} is not a JSON object", reads[0].path.display());
    };
    for name in ["shard", "started_late_ms", "memory_samples"] {
        fields.remove(name);
    }
    let mut set = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    set("connections", serde_json::to_value(&connections)?);
    set("events", serde_json::to_value(events)?);
    set("latency_ms", serde_json::to_value(latency_ms)?);
    set(
        "latency_from_schedule_ms",
        serde_json::to_value(latency_from_schedule_ms)?,
    );
    set(
        "latency_histograms_us",
        serde_json::to_value(Histograms::of(&latencies))?,
    );
    set("per_topic", serde_json::to_value(&per_topic)?);
    set("server_rss_kib", serde_json::to_value(&server_rss_kib)?);
    set("kernel_memory", kernel_memory(&reads, live)?);
    set(
        "driver_cpu_percent",
        json!(round(busy.driver_cpu_percent, 0)),
    );
    set("server_cpu_percent", json!(busy.server_cpu_percent));
    set(
        "driver_core_busy_percent",
        json!(busy.driver_core_busy_percent),
    );
    set("driver_bound", json!(driver_bound));
    set("bound_by", serde_json::to_value(bound_by)?);
    set("shards", Value::Array(shards));
    if let Some(params) = fields.get_mut("params").and_then(Value::as_object_mut) {
        params.insert("driver_cpus".to_owned(), json!(driver_cpus));
        params.insert("driver_cores".to_owned(), json!(cores.driver));
    }
    Ok(merged)
}

/// The shards' kernel memory as one: the lowest "before", the highest idle and peak, per
/// connection over all `live` connections; the server's sockets of the shard that saw most.
fn kernel_memory(reads: &[Read], live: u64) -> anyhow::Result<Value> {
    let kernels: Vec<(&Read, &InputKernel)> = reads
        .iter()
        .filter_map(|read| Some((read, read.input.kernel_memory.as_ref()?)))
        .collect();
    let Some(&(most, _)) = kernels
        .iter()
        .max_by_key(|(_, kernel)| kernel.server_sockets_idle)
    else {
        return Ok(Value::Null);
    };
    let merged = |readings: fn(&InputKernel) -> &Readings| {
        let all = || kernels.iter().map(|(_, kernel)| readings(kernel));
        Readings::of(
            all().filter_map(|r| r.before).min(),
            all().filter_map(|r| r.idle).max(),
            all().filter_map(|r| r.peak).max(),
            live,
        )
    };
    let mut kernel = most.json["kernel_memory"].clone();
    if let Some(fields) = kernel.as_object_mut() {
        fields.insert(
            "tcp_mem_kib".to_owned(),
            serde_json::to_value(merged(|k| &k.tcp_mem_kib))?,
        );
        fields.insert(
            "server_send_queue_kib".to_owned(),
            serde_json::to_value(merged(|k| &k.server_send_queue_kib))?,
        );
    }
    Ok(kernel)
}

/// Adds the `[value, count]` buckets to `histogram`.
fn add(histogram: &mut Histogram<u64>, buckets: &[[u64; 2]]) -> anyhow::Result<()> {
    for &[value, count] in buckets {
        histogram
            .record_n(value, count)
            .with_context(|| format!("latency bucket {value} µs out of range"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard's report, as the driver writes it, with `latencies` (µs) from send.
    fn shard(index: usize, published: u64, received: u64, latencies: &[u64], cpu: f64) -> Read {
        let mut histogram = crate::tally::histogram();
        for &latency in latencies {
            histogram.record(latency).unwrap();
        }
        let buckets: Vec<[u64; 2]> = histogram
            .iter_recorded()
            .map(|b| [b.value_iterated_to(), b.count_at_value()])
            .collect();
        let json = json!({
            "scenario": "fanout",
            "params": {"connections": 4, "topic_prefix": "p-", "rate": 10, "server_cores": 1,
                       "driver_cpus": [index as u32]},
            "shard": {"index": index, "count": 2},
            "started_late_ms": 0,
            "connections": {"requested": 2, "live": 2, "failed": 0,
                            "failed_by_status": {"403": index}, "ended_by_server": 0,
                            "seconds_to_open": 0.5, "timed": 1},
            "events": {"published": published, "published_per_second": published as f64 / 10.0,
                       "publish_failed": 0, "expected": published * 2, "received": received,
                       "missing": 0, "duplicated": 1, "reordered": 0,
                       "delivered_per_second": received as f64 / 10.0},
            "latency_ms": {}, "latency_from_schedule_ms": {},
            "per_topic": {"published": [published], "subscribers": [2]},
            "latency_histograms_us": {"from_send": buckets, "from_schedule": buckets},
            "server_rss_kib": {"before": 1000 + index as u64, "idle": 1100 + index as u64,
                               "pss_before": null, "pss_idle": null, "peak": 1200, "per_connection_idle": 50.0},
            "kernel_memory": {"server_ports": [1], "page_size": 4096,
                "tcp_mem_kib": {"before": 10, "idle": 20 + index as u64, "peak": 30,
                                "per_connection_idle": 5.0, "per_connection_peak": 10.0},
                "server_send_queue_kib": {"before": 0, "idle": 0, "peak": 8,
                                          "per_connection_idle": 0.0, "per_connection_peak": 4.0},
                "server_sockets_idle": 4, "server_states_idle": {"ESTABLISHED": 4}},
            "driver_cpu_percent": cpu, "server_cpu_percent": 50.0,
            "driver_core_busy_percent": cpu + 5.0, "driver_bound": false, "bound_by": "none",
            "memory_samples": [],
        });
        let input = Input::deserialize(&json).unwrap();
        Read {
            path: PathBuf::from(format!("shard{index}.json")),
            json,
            input,
        }
    }

    #[test]
    fn shards_merge_into_one_run() {
        // Shard 0 published 100 to its 2 connections, which got 199 (one a duplicate: 2
        // missing); shard 1 listened with 2 connections and got 200 (one a duplicate: 1
        // missing).
        let fast: Vec<u64> = (1..=99).collect();
        let slow = [10_000, 20_000];
        let merged = merge(vec![
            shard(1, 0, 200, &slow, 50.0),
            shard(0, 100, 199, &fast, 40.0),
        ])
        .unwrap();
        assert!(merged.get("shards").is_some());
        let events = &merged["events"];
        assert_eq!(events["published"], 100);
        assert_eq!(events["expected"], 400);
        assert_eq!(events["received"], 399);
        assert_eq!(events["duplicated"], 2);
        assert_eq!(events["missing"], 3);
        assert_eq!(merged["connections"]["live"], 4);
        assert_eq!(merged["connections"]["timed"], 2);
        assert_eq!(merged["connections"]["failed_by_status"]["403"], 1);
        assert_eq!(merged["per_topic"]["subscribers"][0], 4);
        // The percentiles of all 101 samples together: the max is shard 1's, and p99 lands
        // among them, which no average of the shards' p99s would give.
        let latency = &merged["latency_ms"];
        assert_eq!(latency["samples"], 101);
        assert!(latency["max"].as_f64().unwrap() >= 20.0, "{latency}");
        assert!(latency["p99"].as_f64().unwrap() >= 10.0, "{latency}");
        assert!(latency["p50"].as_f64().unwrap() < 0.1, "{latency}");
        // Driver CPU summed over two cores; neither saturated, nor the sum.
        assert_eq!(merged["driver_cpu_percent"], 90.0);
        assert_eq!(merged["driver_core_busy_percent"], 55.0);
        assert_eq!(merged["params"]["driver_cores"], 2);
        assert_eq!(merged["driver_bound"], false);
        assert_eq!(merged["shards"].as_array().unwrap().len(), 2);
        assert_eq!(merged["shards"][1]["driver_cpu_percent"], 50.0);
        // The server's figures: lowest before, highest idle, per connection over all.
        assert_eq!(merged["server_rss_kib"]["before"], 1000);
        assert_eq!(merged["server_rss_kib"]["idle"], 1101);
        assert_eq!(merged["server_rss_kib"]["per_connection_idle"], 25.25);
        let tcp_mem = &merged["kernel_memory"]["tcp_mem_kib"];
        assert_eq!(tcp_mem["idle"], 21);
        assert_eq!(tcp_mem["per_connection_peak"], 5.0);
        assert!(merged.get("shard").is_none());
        assert!(merged.get("memory_samples").is_none());
    }

    #[test]
    fn shards_on_one_core_are_driver_bound_together() {
        let mut a = shard(0, 10, 20, &[5], 50.0);
        let mut b = shard(1, 0, 20, &[5], 50.0);
        for read in [&mut a, &mut b] {
            read.input.params.driver_cpus = vec![1];
            read.input.driver_core_busy_percent = Some(60.0);
        }
        let merged = merge(vec![a, b]).unwrap();
        assert_eq!(merged["driver_bound"], true);
        assert_eq!(merged["bound_by"], "driver");
        // One shard bound is enough.
        let mut a = shard(0, 10, 20, &[5], 10.0);
        a.input.driver_bound = true;
        let merged = merge(vec![a, shard(1, 0, 20, &[5], 10.0)]).unwrap();
        assert_eq!(merged["driver_bound"], true);
    }

    #[test]
    fn only_every_shard_of_one_run_once_merges() {
        let error = |reads| merge(reads).unwrap_err().to_string();
        assert!(error(vec![shard(0, 1, 1, &[1], 1.0)]).contains("every shard"));
        assert!(
            error(vec![shard(0, 1, 1, &[1], 1.0), shard(0, 1, 1, &[1], 1.0)])
                .contains("every shard")
        );
        assert!(
            error(vec![shard(0, 1, 1, &[1], 1.0), shard(1, 5, 1, &[1], 1.0)])
                .contains("only shard 0 publishes")
        );
        let mut other = shard(1, 0, 1, &[1], 1.0);
        other.input.params.topic_prefix = "q-".to_owned();
        assert!(error(vec![shard(0, 1, 1, &[1], 1.0), other]).contains("another run"));
        let mut ramp = shard(0, 1, 1, &[1], 1.0);
        ramp.input.scenario = "ramp".to_owned();
        assert!(error(vec![ramp]).contains("cannot be merged"));
    }

    #[test]
    fn reports_are_read_from_files() {
        let dir = std::env::temp_dir().join(format!("sse-bench-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let paths: Vec<PathBuf> = [shard(0, 10, 20, &[5], 1.0), shard(1, 0, 20, &[7], 1.0)]
            .iter()
            .enumerate()
            .map(|(i, read)| {
                let path = dir.join(format!("{i}.json"));
                std::fs::write(&path, read.json.to_string()).unwrap();
                path
            })
            .collect();
        let merged = merge_files(&paths).unwrap();
        assert_eq!(merged["events"]["expected"], 40);
        assert!(merge_files(&[dir.join("missing.json")]).is_err());
        std::fs::write(dir.join("bad.json"), "{}").unwrap();
        assert!(merge_files(&[dir.join("bad.json")]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
