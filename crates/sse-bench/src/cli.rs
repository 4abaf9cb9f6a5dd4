//! The command line: one subcommand per scenario, the options every scenario shares in one
//! flattened struct. Each field's `///` is its `--help`. URLs are parsed and resolved here,
//! so a typo fails before any connection is opened.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use http::{HeaderName, HeaderValue};

use crate::template::Endpoint;

/// Drives SSE servers (sse-gateway, Nchan, …) with many EventSource connections and paced
/// HTTP publishing, checks every event, and reports loss, latency and server memory.
#[derive(Debug, Parser)]
#[command(name = "sse-bench", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// Open the connections, sample server memory at every 10 %, hold them; no publishing.
    Idle(Shared),
    /// All connections on one topic (--topics is ignored); publish --rate for --duration.
    Fanout(Shared),
    /// Connections over --topics topics (default connections / 10); publish --rate.
    Topics(Shared),
    /// Publish at each of --rates for --step, until a step fails; report the best rate.
    Ramp {
        #[command(flatten)]
        shared: Shared,
        #[command(flatten)]
        ramp: RampOptions,
    },
    /// Publish --rate; at --storm-at, drop --storm-share of the connections at once; they
    /// stay away --storm-away (plus up to --storm-spread) and resume with Last-Event-ID.
    /// Reports how long they took to catch up, and with --redis-stats the Redis commands.
    ReconnectStorm {
        #[command(flatten)]
        shared: Shared,
        #[command(flatten)]
        storm: StormOptions,
    },
    /// Open --connections streams on one topic that read their response head and then
    /// nothing (a small SO_RCVBUF fills fast), publish --rate events of --payload padding
    /// for --duration, and sample the server's RSS, the kernel's TCP memory and the server's
    /// sockets by TCP state; --healthy readers alongside must get every event.
    Stalled {
        #[command(flatten)]
        shared: Shared,
        #[command(flatten)]
        stalled: StalledOptions,
    },
    /// Join the JSON reports of cooperating drivers (--shard) into one: counts summed, the
    /// latency histograms merged, driver CPU summed (and each process's stated), driver-bound
    /// judged again; printed as a table, and written with --json.
    Merge {
        /// The shards' reports, every shard of the run once.
        #[arg(required = true, value_name = "REPORT")]
        reports: Vec<PathBuf>,
        /// Write the merged report as JSON to this file.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
}

impl Scenario {
    /// The options every scenario has; `None` for `merge`, which runs nothing.
    pub(crate) fn shared(&self) -> Option<&Shared> {
        match self {
            Self::Idle(shared) | Self::Fanout(shared) | Self::Topics(shared) => Some(shared),
            Self::Ramp { shared, .. }
            | Self::ReconnectStorm { shared, .. }
            | Self::Stalled { shared, .. } => Some(shared),
            Self::Merge { .. } => None,
        }
    }

    /// Why the shared options do not fit this scenario, if they do not.
    pub(crate) fn check(&self, shared: &Shared) -> Result<(), String> {
        let shardable = matches!(self, Self::Idle(_) | Self::Fanout(_) | Self::Topics(_));
        match shared.shard {
            Some(shard) if shard.count > 1 && !shardable => {
                Err("--shard works with idle, fanout and topics only".to_owned())
            }
            Some(shard) if shard.count > 1 && shared.start_at.is_none() => Err(
                "--shard needs --start-at, so that every shard is open before publishing"
                    .to_owned(),
            ),
            _ => Ok(()),
        }
    }
}

/// Options every scenario shares.
#[derive(Debug, Args)]
pub(crate) struct Shared {
    /// Where to subscribe, `{topic}` filled in; repeat for several servers (connections are
    /// spread round-robin). Nchan: http://127.0.0.1:PORT/sub/{topic}
    #[arg(
        long = "subscribe-url",
        value_name = "TEMPLATE",
        default_value = "http://127.0.0.1:8080/events?topic={topic}",
        value_parser = Endpoint::parse
    )]
    pub(crate) subscribe_urls: Vec<Endpoint>,
    /// Where to POST events, `{topic}` filled in. Nchan: http://127.0.0.1:PORT/pub/{topic}
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = "http://127.0.0.1:8081/v1/publish",
        value_parser = Endpoint::parse
    )]
    pub(crate) publish_url: Endpoint,
    /// The request body, `{topic}` and `{data}` filled in. Nchan: '{data}'
    #[arg(
        long,
        value_name = "TEMPLATE",
        default_value = r#"{"topic":"{topic}","data":"{data}"}"#
    )]
    pub(crate) publish_body: String,
    /// A header for every publish request, "Name: value"; repeatable. Content-Type is
    /// application/json unless given here.
    #[arg(long = "publish-header", value_name = "HEADER", value_parser = parse_header)]
    pub(crate) publish_headers: Vec<(HeaderName, HeaderValue)>,
    /// HTTP/1.1 keep-alive connections for publishing, one request after another on each.
    /// Topic i goes over connection i % K, so each topic stays in order, unless
    /// --publish-spread.
    #[arg(long, value_name = "K", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) publish_connections: u16,
    /// Event n goes over publish connection n % K instead: up to K requests in flight per
    /// topic, so a server whose publish reply waits behind its fan-out is not driven one
    /// request at a time. A topic's events may then arrive out of order; they are counted
    /// as reordered, not lost.
    #[arg(long)]
    pub(crate) publish_spread: bool,
    /// Subscriber connections to open.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) connections: u32,
    /// Topics; connection i subscribes to topic i % T. Default: connections / 10.
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) topics: Option<u32>,
    /// Connections opened per second.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) ramp: u64,
    /// Events published per second, over all topics (ramp: see --rates).
    #[arg(long, default_value_t = 100)]
    pub(crate) rate: u64,
    /// How long to publish (idle: to hold the connections; ramp: see --step), e.g. 20s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Padding bytes in each event's data.
    #[arg(long, default_value_t = 32)]
    pub(crate) payload: usize,
    /// Source addresses for the connections, comma-separated. Default: 127.0.0.1,
    /// 127.0.0.2, … one per 10,000 connections.
    #[arg(long, value_delimiter = ',')]
    pub(crate) sources: Vec<IpAddr>,
    /// Server PIDs, comma-separated; their summed VmRSS is the server memory and their
    /// summed CPU time the server CPU. Give every process of the server's stack (or the
    /// same share of each stack) so that two servers are counted alike.
    #[arg(long, value_delimiter = ',')]
    pub(crate) pid: Vec<u32>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub(crate) json: Option<PathBuf>,
    /// Bearer tokens, one per line (empty lines skipped): connection i sends
    /// `Authorization: Bearer <token i mod n>` on every connect and reconnect.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokens: Option<PathBuf>,
    /// Prefix of the topic names. Default: bench-<unix seconds>-, fresh for every run
    /// (Nchan replays an old channel's messages to new subscribers).
    #[arg(long)]
    pub(crate) topic_prefix: Option<String>,
    /// Wait after all connections are open before publishing: a server may answer the
    /// headers before its subscription is active.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) settle: Duration,
    /// Time only this many connections, spread over the topics: they parse every event and
    /// measure its latency; all others only scan for the sequence numbers (loss, duplicates
    /// and reordering stay exact on every connection) and read no clock per event. Default:
    /// every connection is timed.
    #[arg(long, value_name = "N")]
    pub(crate) timed_sample: Option<u32>,
    /// Be process I of K cooperating drivers (idle, fanout, topics): this one opens
    /// connections I, I + K, I + 2K, … of --connections (the same flags otherwise, the same
    /// --topic-prefix), from its own source addresses (127.0.I.1, …) unless --sources; only
    /// shard 0 publishes. Needs --start-at. `sse-bench merge` joins the reports.
    #[arg(long, value_name = "I/K", value_parser = Shard::parse)]
    pub(crate) shard: Option<Shard>,
    /// Start measuring (and publishing) at this Unix time in milliseconds, once the
    /// connections are open and settled: the start barrier of cooperating drivers. A driver
    /// that is late starts at once and reports by how much.
    #[arg(long, value_name = "UNIX_MS")]
    pub(crate) start_at: Option<u64>,
}

/// Which of several cooperating drivers this one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shard {
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl Shard {
    /// The whole run in one process.
    pub(crate) const ALONE: Self = Self { index: 0, count: 1 };

    /// `I/K`, with I below K.
    fn parse(text: &str) -> Result<Self, String> {
        let parsed = text
            .split_once('/')
            .and_then(|(index, count)| Some((index.parse().ok()?, count.parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Self { index, count }),
            _ => Err(format!("{text:?} is not I/K with 0 <= I < K")),
        }
    }

    /// The connection numbers of `total` this shard opens.
    pub(crate) fn indices(self, total: usize) -> impl Iterator<Item = usize> {
        (self.index..total).step_by(self.count)
    }

    /// Whether this shard publishes: only the first does.
    pub(crate) fn publishes(self) -> bool {
        self.index == 0
    }
}

/// Options of the ramp scenario.
#[derive(Debug, Args)]
pub(crate) struct RampOptions {
    /// Publish rates to try in turn, events per second, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,500,1000,2000,5000,10000,20000,50000"
    )]
    pub(crate) rates: Vec<u64>,
    /// How long each rate is published.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) step: Duration,
    /// A step passes only if its p99 latency is below this (and nothing is missing, and the
    /// publisher achieved 95 % of the rate).
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub(crate) max_p99: Duration,
}

/// Options of the reconnect-storm scenario.
#[derive(Debug, Args)]
pub(crate) struct StormOptions {
    /// When, after publishing starts, the connections drop. Default: half of --duration.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) storm_at: Option<Duration>,
    /// The share of the connections that drop, from 0 to 1.
    #[arg(long, default_value_t = 1.0, value_parser = parse_share)]
    pub(crate) storm_share: f64,
    /// How long the dropped connections stay away while publishing goes on, e.g. 5s: each
    /// comes back about rate × away ÷ topics events behind. 0: reconnect at once.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub(crate) storm_away: Duration,
    /// Spread the reconnects uniformly at random over this window (after --storm-away),
    /// e.g. 1s. 0: all at the same instant.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub(crate) storm_spread: Duration,
    /// A readiness URL polled every 100 ms from the storm until all reconnected.
    #[arg(long, value_parser = Endpoint::parse)]
    pub(crate) ready_url: Option<Endpoint>,
    /// A Redis server of the system under test, e.g. redis://127.0.0.1:6379; repeatable
    /// (a cluster: each master). Its `INFO commandstats` is read before the drop and once
    /// every client caught up, and the calls per command in between are reported.
    #[arg(long = "redis-stats", value_name = "URL", value_parser = parse_redis_url)]
    pub(crate) redis_stats: Vec<String>,
}

/// Options of the stalled scenario.
#[derive(Debug, Args)]
pub(crate) struct StalledOptions {
    /// Ordinary readers on the same topic, which must get every event.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) healthy: usize,
    /// SO_RCVBUF of each stalled stream's socket, set before connecting, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub(crate) stalled_rcvbuf: u32,
    /// How often the server's memory and sockets are sampled.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) sample_interval: Duration,
    /// How long to go on sampling after publishing ended, the stalled streams still open.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) hold_after: Duration,
}

/// `Name: value` → a header.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not \"Name: value\""))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("header name: {e}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("header value: {e}"))?;
    Ok((name, value))
}

/// A Redis URL the redis crate accepts.
fn parse_redis_url(text: &str) -> Result<String, String> {
    redis::Client::open(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{text:?}: {e}"))
}

/// A number from 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from(["sse-bench", "ramp"]).unwrap();
        let Scenario::Ramp { shared, ramp } = cli.scenario else {
            panic!("ramp expected");
        };
        assert_eq!(shared.subscribe_urls.len(), 1);
        assert_eq!(shared.publish_url.path("t"), "/v1/publish");
        assert_eq!(ramp.rates.len(), 9);
        assert_eq!(ramp.max_p99, Duration::from_millis(200));
        assert!(!shared.publish_spread);
    }

    #[test]
    fn shards_parse_and_split_the_connections() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shard = Shard { index: 1, count: 3 };
        assert_eq!(shard.indices(8).collect::<Vec<_>>(), [1, 4, 7]);
        assert!(!shard.publishes());
        assert!(Shard::ALONE.publishes());
        let cli = Cli::try_parse_from(["sse-bench", "fanout", "--shard", "1/2"]).unwrap();
        let shared = cli.scenario.shared().unwrap();
        assert!(cli.scenario.check(shared).is_err());
        let cli = Cli::try_parse_from(["sse-bench", "ramp", "--shard", "0/2", "--start-at", "1"])
            .unwrap();
        assert!(cli.scenario.check(cli.scenario.shared().unwrap()).is_err());
        let cli = Cli::try_parse_from(["sse-bench", "idle", "--shard", "0/2", "--start-at", "1"])
            .unwrap();
        assert!(cli.scenario.check(cli.scenario.shared().unwrap()).is_ok());
    }

    #[test]
    fn headers_and_shares_are_checked() {
        let (name, value) = parse_header("Authorization: Bearer dev-token").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("authorization", "Bearer dev-token")
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_share("1.5").is_err());
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_redis_url("http://127.0.0.1:6379").is_err());
    }

    #[test]
    fn storm_options_default_to_an_immediate_reconnect() {
        let cli = Cli::try_parse_from(["sse-bench", "reconnect-storm"]).unwrap();
        let Scenario::ReconnectStorm { storm, .. } = cli.scenario else {
            panic!("reconnect-storm expected");
        };
        assert_eq!(storm.storm_away, Duration::ZERO);
        assert_eq!(storm.storm_spread, Duration::ZERO);
        assert!(storm.redis_stats.is_empty());
        let cli = Cli::try_parse_from([
            "sse-bench",
            "reconnect-storm",
            "--storm-away",
            "5s",
            "--storm-spread",
            "1s",
            "--redis-stats",
            "redis://127.0.0.1:1",
            "--redis-stats",
            "redis://127.0.0.1:2",
        ])
        .unwrap();
        let Scenario::ReconnectStorm { storm, .. } = cli.scenario else {
            panic!("reconnect-storm expected");
        };
        assert_eq!(storm.storm_away, Duration::from_secs(5));
        assert_eq!(storm.storm_spread, Duration::from_secs(1));
        assert_eq!(storm.redis_stats.len(), 2);
    }
}
