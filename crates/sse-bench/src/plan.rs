//! [`Plan`]: the shared options turned into what a run uses: topic names, source addresses,
//! subscriber tokens, the publish settings, and the `params` the report repeats.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, header};
use sse_core::{Topic, TopicError};

use crate::bound::Cores;
use crate::cli::{Shard, Shared};
use crate::procfs;
use crate::publish::PublishPlan;
use crate::report::{Params, ScenarioParams, round};
use crate::template::{Endpoint, Template};
use crate::tokens::{Tokens, TokensError};

/// Connections per source address by default. Each address has ~28k ephemeral ports, but
/// Linux's `connect` prefers half of them (even ports; odd ones are left for `bind`), and past
/// that half its port search dominates the driver's CPU (measured: `__inet_hash_connect`,
/// ~150 connections/s beyond 14k to one destination).
const CONNECTIONS_PER_SOURCE: usize = 10_000;

/// Everything a scenario needs from the shared options.
pub(crate) struct Plan {
    /// The connections this process opens, and those of the whole run (all shards).
    pub(crate) connections: usize,
    pub(crate) total_connections: usize,
    /// Which of the cooperating drivers this one is.
    pub(crate) shard: Shard,
    /// When to start measuring, in ms since the Unix epoch (`--start-at`).
    pub(crate) start_at_ms: Option<u64>,
    /// Topic `i` is subscribed by connections `i`, `i + T`, `i + 2T`, …
    pub(crate) topics: Arc<[Arc<str>]>,
    pub(crate) subscribe: Vec<Arc<Endpoint>>,
    pub(crate) sources: Vec<IpAddr>,
    /// The `Authorization` value of each subscriber, from `--tokens`.
    pub(crate) tokens: Option<Tokens>,
    /// Connections opened per second.
    pub(crate) ramp: u64,
    pub(crate) rate: u64,
    pub(crate) duration: Duration,
    pub(crate) pids: Vec<u32>,
    /// How many CPUs the server's processes and the driver may use, to judge saturation.
    pub(crate) cores: Cores,
    /// The CPUs the driver may run on (empty if unknown), whose busy time is measured.
    pub(crate) driver_cpus: BTreeSet<u32>,
    pub(crate) settle: Duration,
    /// How many connections are timed (`--timed-sample`); `None`: all.
    pub(crate) timed_sample: Option<usize>,
    pub(crate) publish: PublishPlan,
    /// The report's `params`, without scenario-specific ones.
    pub(crate) params: Params,
}

/// Why the options cannot make a run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanError {
    /// `--topic-prefix` makes an invalid topic name.
    #[error("--topic-prefix")]
    Topic(#[source] TopicError),
    /// The `--tokens` file cannot be used.
    #[error("--tokens")]
    Tokens(#[source] TokensError),
}

impl Plan {
    /// The ports the subscribe URLs point at: the server's side of every stream.
    pub(crate) fn server_ports(&self) -> Vec<u16> {
        let ports: BTreeSet<u16> = self.subscribe.iter().map(|e| e.addr.port()).collect();
        ports.into_iter().collect()
    }

    /// Resolves `shared` for a run over `topics` topics.
    ///
    /// # Errors
    /// [`PlanError`] naming the option that is wrong.
    pub(crate) fn resolve(shared: &Shared, topics: usize) -> Result<Self, PlanError> {
        let total_connections = shared.connections as usize;
        let shard = shared.shard.unwrap_or(Shard::ALONE);
        let connections = shard.indices(total_connections).count();
        let prefix = shared.topic_prefix.clone().unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            format!("bench-{}-", now.as_secs())
        });
        let topic_names = (0..topics)
            .map(|i| Topic::parse(&format!("{prefix}{i}")).map(|topic| Arc::from(topic.as_str())))
            .collect::<Result<Arc<[Arc<str>]>, _>>()
            .map_err(PlanError::Topic)?;
        let tokens = shared
            .tokens
            .as_deref()
            .map(Tokens::load)
            .transpose()
            .map_err(PlanError::Tokens)?;
        let sources = if shared.sources.is_empty() {
            let count = connections.div_ceil(CONNECTIONS_PER_SOURCE).clamp(1, 254);
            // Each shard its own addresses, so their ephemeral ports never compete.
            let third = u8::try_from(shard.index).unwrap_or(u8::MAX);
            (1..=count)
                .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, third, last as u8)))
                .collect()
        } else {
            shared.sources.clone()
        };
        let mut headers: http::HeaderMap = shared.publish_headers.iter().cloned().collect();
        headers
            .entry(header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
        let driver_cpus = procfs::cpus_allowed(&[std::process::id()]).unwrap_or_default();
        let cores = Cores {
            driver: (!driver_cpus.is_empty()).then_some(driver_cpus.len()),
            server: procfs::cpus_allowed(&shared.pid).map(|cpus| cpus.len()),
        };
        let params = Params {
            connections: total_connections,
            topics,
            rate: Some(shared.rate),
            duration_s: Some(round(shared.duration.as_secs_f64(), 3)),
            payload: shared.payload,
            subscribe_urls: shared
                .subscribe_urls
                .iter()
                .map(|e| e.url.clone())
                .collect(),
            publish_url: shared.publish_url.url.clone(),
            publish_connections: usize::from(shared.publish_connections),
            publish_spread: shared.publish_spread,
            server_pids: shared.pid.clone(),
            server_cores: cores.server,
            driver_cores: cores.driver,
            driver_cpus: driver_cpus.iter().copied().collect(),
            topic_prefix: prefix,
            tokens: tokens.as_ref().map(Tokens::len),
            timed_sample: shared.timed_sample,
            scenario: ScenarioParams::None {},
        };
        Ok(Self {
            connections,
            total_connections,
            shard,
            start_at_ms: shared.start_at,
            topics: topic_names,
            subscribe: shared
                .subscribe_urls
                .iter()
                .cloned()
                .map(Arc::new)
                .collect(),
            sources,
            tokens,
            ramp: shared.ramp,
            rate: shared.rate,
            duration: shared.duration,
            pids: shared.pid.clone(),
            cores,
            driver_cpus,
            settle: shared.settle,
            timed_sample: shared.timed_sample.map(|n| n as usize),
            publish: PublishPlan {
                endpoint: shared.publish_url.clone(),
                body: Template::new(&shared.publish_body),
                headers,
                connections: usize::from(shared.publish_connections),
                spread: shared.publish_spread,
                payload: shared.payload,
            },
            params,
        })
    }
}
