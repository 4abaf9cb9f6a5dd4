//! # sse-bench: a load driver for the SSE gateway
//!
//! Opens `--connections` event streams on one or more gateway nodes (spread over topics and
//! over loopback source addresses), publishes `--rate` events per second for `--duration`
//! straight into Redis, and reports: connections live and failed, events expected, received,
//! missing and duplicated (every event carries its topic's sequence number), delivered
//! events per second, publish-to-receive latency percentiles (every event carries its publish
//! time), and the gateway's memory (`--pid`): before, with every connection idle, and at peak,
//! with the memory per connection. It also reports its own CPU use, so that a number limited
//! by the driver is not mistaken for the server's.
//!
//! Modules: `clients` (the connections and their checks), `load` (paced publishing),
//! `report` (memory, CPU, percentiles, output).

mod clients;
mod load;
mod report;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sse_core::Topic;
use sse_core::schema::Retention;
use sse_publisher::{Publisher, RedisOptions};

/// Drives event streams and publishing against sse-gateway nodes and reports what arrived.
#[derive(Debug, Parser)]
#[command(name = "sse-bench", version)]
struct Args {
    /// A gateway node, host:port; repeat for several (connections are spread round-robin).
    #[arg(long = "gateway", required = true)]
    gateways: Vec<SocketAddr>,
    /// The Redis the gateways read from; events are published straight into it.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Event streams to open.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Topics the streams are spread over (bench-0, bench-1, ...), one topic per stream.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Streams opened per second.
    #[arg(long, default_value_t = 5000)]
    ramp: u64,
    /// Events published per second, over all topics (0: connections only).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to publish (or, with --rate 0, to hold the connections).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Padding bytes in each event's data.
    #[arg(long, default_value_t = 32)]
    payload: usize,
    /// Source addresses for the connections, comma-separated (each gives ~28k ports).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    /// PIDs of the gateway processes, for memory figures.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.topics > 0 && args.ramp > 0,
        "--topics and --ramp must be positive"
    );
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let topics: Vec<Topic> = (0..args.topics)
        .map(|i| Topic::parse(&format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    let options = RedisOptions {
        url: args.redis_url.clone(),
        timeout: Duration::from_secs(5),
    };
    let publisher = Publisher::connect(&options, Retention::default()).await?;

    let rss_before = report::total_rss_kib(&args.pid);
    let tally = Arc::new(clients::Tally::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let opening = Instant::now();
    let mut subscribers = vec![0u64; topics.len()];
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.connections {
        subscribers[index % topics.len()] += 1;
        let target = clients::Target {
            gateway: args.gateways[index % args.gateways.len()],
            source: args.sources[index % args.sources.len()],
            topic: topics[index % topics.len()].to_string(),
        };
        tasks.spawn(clients::run(index, target, tally.clone(), stopped.clone()));
        let due = opening + Duration::from_secs_f64((index + 1) as f64 / args.ramp as f64);
        tokio::time::sleep_until(due.into()).await;
        if index % 1000 == 999 {
            eprintln!(
                "opened {} streams, {} live",
                index + 1,
                tally.connected.load(Ordering::Relaxed)
            );
        }
    }
    clients::wait_connected(&tally, args.connections as u64, Duration::from_secs(60)).await;
    let connect_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = report::total_rss_kib(&args.pid);
    let live = tally.connected.load(Ordering::Relaxed);
    eprintln!("{live} streams live after {connect_seconds:.1}s; publishing");

    let cpu_before = report::own_cpu_seconds();
    let publishing = Instant::now();
    let publishing_micros = clients::now_micros();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_idle));
    let sampler = {
        let (pids, peak) = (args.pid.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(report::total_rss_kib(&pids), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let published = if args.rate > 0 {
        load::publish(&publisher, &topics, args.rate, args.duration, args.payload).await
    } else {
        tokio::time::sleep(args.duration).await;
        load::Published {
            per_topic: vec![0; topics.len()],
            failed: 0,
        }
    };
    let publish_seconds = publishing.elapsed().as_secs_f64();
    let expected: u64 = published
        .per_topic
        .iter()
        .zip(&subscribers)
        .map(|(p, s)| p * s)
        .sum();
    // Let the last events arrive: until everything expected is in, or 3 s without progress.
    let (mut last, mut since) = (0, Instant::now());
    while tally.received.load(Ordering::Relaxed) < expected
        && since.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = tally.received.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    let delivered_seconds = publishing.elapsed().as_secs_f64();
    let last_received = tally.last_received_micros.load(Ordering::Relaxed);
    let receiving_seconds = last_received.saturating_sub(publishing_micros) as f64 / 1e6;
    let driver_cpu = report::own_cpu_seconds() - cpu_before;
    sampler.abort();
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}

    let received = tally.received.load(Ordering::Relaxed);
    let duplicated = tally.duplicated.load(Ordering::Relaxed);
    let per_connection = |rss: u64| {
        if live == 0 {
            0.0
        } else {
            rss.saturating_sub(rss_before) as f64 / live as f64
        }
    };
    let result = json!({
        "connections": {
            "requested": args.connections, "live": live,
            "failed": tally.failed.load(Ordering::Relaxed),
            "ended_by_server": tally.closed_early.load(Ordering::Relaxed),
            "seconds_to_open": (connect_seconds * 10.0).round() / 10.0,
        },
        "events": {
            "published": published.per_topic.iter().sum::<u64>(), "publish_failed": published.failed,
            "expected": expected, "received": received,
            "missing": expected.saturating_sub(received - duplicated),
            "duplicated": duplicated,
            "sequence_gaps": tally.gaps.load(Ordering::Relaxed),
            "delivered_per_second": (received as f64 / receiving_seconds.max(publish_seconds)).round(),
        },
        "latency_ms": report::latency_json(&tally.merged_latency()),
        "server_rss_kib": {
            "before": rss_before, "idle": rss_idle, "peak": peak.load(Ordering::Relaxed),
            "per_connection_idle": (per_connection(rss_idle) * 100.0).round() / 100.0,
        },
        "driver_cpu_percent": (driver_cpu / delivered_seconds * 100.0).round(),
    });
    report::print_table(&result);
    if let Some(path) = args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&result)?)?;
    }
    Ok(())
}
