//! Every metric the gateway exports: names, help and buckets in one place, mirrored by the
//! README. Each [`Metrics`] registers into its own [`Registry`], so tests don't share counters.
//! No metric is labelled by topic: topics are unbounded, label values must not be.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use sse_core::runtime::jwks::JwksMetrics;

/// The gateway's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    /// `sse_connections_active`: open event streams.
    pub(crate) connections_active: IntGauge,
    /// `sse_connections_total`: event streams opened.
    pub(crate) connections_total: IntCounter,
    /// `sse_requests_rejected_total{reason}`: `/events` requests refused.
    pub(crate) requests_rejected: IntCounterVec,
    /// `sse_events_received_total`: events received from Redis pub/sub.
    pub(crate) events_received: IntCounter,
    /// `sse_redis_messages_invalid_total`: pub/sub messages and stream entries that were not
    /// valid events.
    pub(crate) messages_invalid: IntCounter,
    /// `sse_redis_messages_ahead_total`: pub/sub messages refused because their id was ahead
    /// of Redis time by more than the bound (`pubsub`).
    pub(crate) messages_ahead: IntCounter,
    /// `sse_frames_delivered_total`: events written to clients, live and replayed.
    pub(crate) frames_delivered: IntCounter,
    /// `sse_delivery_latency_seconds`: from the publish (the stream id's time) to the write.
    pub(crate) delivery_latency: Histogram,
    /// `sse_replayed_events_total`: events sent from a stream to resuming clients.
    pub(crate) replayed_events: IntCounter,
    /// `sse_history_truncated_total`: resumes that could not continue exactly.
    pub(crate) history_truncated: IntCounter,
    /// `sse_slow_consumer_disconnects_total`: streams ended because a client fell behind.
    pub(crate) slow_consumer_disconnects: IntCounter,
    /// `sse_redis_reconnects_total`: times the pub/sub connection was lost (each loss is followed
    /// by reconnection attempts until one succeeds).
    pub(crate) redis_reconnects: IntCounter,
    /// `sse_gap_filled_events_total`: events recovered from streams after a pub/sub outage.
    pub(crate) gap_filled_events: IntCounter,
    /// `sse_topics_active`: topics this node is subscribed to.
    pub(crate) topics_active: IntGauge,
    /// `sse_redis_connected`: 1 while the pub/sub connection is up and caught up, else 0.
    pub(crate) redis_connected: IntGauge,
    /// `sse_cors_rejected_total`: requests and preflights from an origin not allowed.
    pub(crate) cors_rejected: IntCounter,
    /// `sse_auth_failures_total{reason}`: subscriber checks refused, by what was wrong.
    pub(crate) auth_failures: IntCounterVec,
    /// `sse_forward_auth_calls_total{outcome}`: calls to `--auth-url`.
    pub(crate) forward_auth_calls: IntCounterVec,
    /// `sse_forward_auth_duration_seconds`: how long they took.
    pub(crate) forward_auth_seconds: Histogram,
    /// `sse_forward_auth_cache_hits_total`: checks answered without a call.
    pub(crate) forward_auth_cache_hits: IntCounter,
    /// `sse_jwks_refreshes_total{outcome}` and `sse_jwks_keys`: fetches of `--jwks-url`.
    pub(crate) jwks: JwksMetrics,
}

impl Metrics {
    /// Creates the metrics in a registry of their own.
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let register = |metric: Box<dyn Collector>| {
            registry
                .register(metric)
                .expect("each metric is registered once, with a valid name");
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid metric options");
            register(Box::new(metric.clone()));
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric options");
            register(Box::new(metric.clone()));
            metric
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let metric =
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric options");
            register(Box::new(metric.clone()));
            metric
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric options");
            register(Box::new(metric.clone()));
            metric
        };
        Self {
            connections_active: gauge("sse_connections_active", "Open event streams."),
            connections_total: counter("sse_connections_total", "Event streams opened."),
            requests_rejected: counter_vec(
                "sse_requests_rejected_total",
                "Event stream requests refused, by reason (bad_request, no_token, invalid_token, forbidden, auth_unavailable, per_ip_limit, per_user_limit, over_capacity, draining, ...).",
                "reason",
            ),
            events_received: counter(
                "sse_events_received_total",
                "Events received from Redis pub/sub.",
            ),
            messages_invalid: counter(
                "sse_redis_messages_invalid_total",
                "Pub/sub messages and stream entries that were not valid events (skipped).",
            ),
            messages_ahead: counter(
                "sse_redis_messages_ahead_total",
                "Pub/sub messages refused because their id was more than 2s ahead of Redis time (not delivered).",
            ),
            frames_delivered: counter(
                "sse_frames_delivered_total",
                "Events written to clients, live and replayed.",
            ),
            delivery_latency: histogram(
                "sse_delivery_latency_seconds",
                "Time from publish (the event id's timestamp) to the write to a client, live events.",
                vec![
                    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            replayed_events: counter(
                "sse_replayed_events_total",
                "Events sent from a topic's stream to resuming clients.",
            ),
            history_truncated: counter(
                "sse_history_truncated_total",
                "Resumes that could not continue exactly (history trimmed or position unknown).",
            ),
            slow_consumer_disconnects: counter(
                "sse_slow_consumer_disconnects_total",
                "Streams ended because the client fell more than --client-buffer behind.",
            ),
            redis_reconnects: counter(
                "sse_redis_reconnects_total",
                "Times the pub/sub connection to Redis was lost (the node then reconnects).",
            ),
            gap_filled_events: counter(
                "sse_gap_filled_events_total",
                "Events read from streams after a pub/sub outage, so that none is lost.",
            ),
            topics_active: gauge(
                "sse_topics_active",
                "Topics this node is subscribed to (with at least one local client).",
            ),
            redis_connected: gauge(
                "sse_redis_connected",
                "1 while the Redis pub/sub connection is up and caught up (the node is ready), else 0.",
            ),
            auth_failures: counter_vec(
                "sse_auth_failures_total",
                "Subscriber checks refused, by reason (no_token, forbidden, expired, signature, malformed, algorithm, not_yet_valid, audience, issuer, claims, too_long, unknown_key, no_keys, forward_denied, forward_unavailable).",
                "reason",
            ),
            forward_auth_calls: counter_vec(
                "sse_forward_auth_calls_total",
                "Calls to --auth-url, by outcome (allow, deny, error: no answer in time, unreachable, another status, an unreadable answer).",
                "outcome",
            ),
            forward_auth_seconds: histogram(
                "sse_forward_auth_duration_seconds",
                "Time a call to --auth-url took, to its answer or failure.",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            forward_auth_cache_hits: counter(
                "sse_forward_auth_cache_hits_total",
                "Forward-auth checks answered without a call: a remembered decision, or one shared with an identical check under way.",
            ),
            cors_rejected: counter(
                "sse_cors_rejected_total",
                "Requests and preflights from a browser origin that --cors-origin does not allow.",
            ),
            jwks: JwksMetrics::register(&registry),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
