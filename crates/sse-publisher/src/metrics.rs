//! Every metric the publisher exports: names, help and buckets in one place, mirrored by the
//! README. Each [`Metrics`] registers into its own registry, so tests don't share counters.

use prometheus::{Histogram, IntCounter, IntCounterVec};
use sse_core::runtime::jwks::JwksMetrics;
use sse_core::runtime::metrics::MetricsRegistry;

/// The publisher's metrics.
pub(crate) struct Metrics {
    registry: MetricsRegistry,
    /// `sse_publish_requests_total{status}`: publish requests by HTTP status code.
    pub(crate) publish_requests: IntCounterVec,
    /// `sse_publish_duration_seconds`: time to answer a publish request, Redis included.
    pub(crate) publish_duration: Histogram,
    /// `sse_events_published_total`: events written (a batch counts each of its events).
    pub(crate) events_published: IntCounter,
    /// `sse_publish_idempotent_replays_total`: requests whose `Idempotency-Key` had published
    /// their events already, answered with those ids.
    pub(crate) idempotent_replays: IntCounter,
    /// `sse_publish_idempotency_conflicts_total`: requests refused because their key was used
    /// for a different request.
    pub(crate) idempotency_conflicts: IntCounter,
    /// `sse_publish_auth_failures_total{reason}`: publishers refused, by what was wrong.
    pub(crate) auth_failures: IntCounterVec,
    /// `sse_publish_cors_rejected_total`: requests and preflights from an origin not allowed.
    pub(crate) cors_rejected: IntCounter,
    /// `sse_jwks_refreshes_total{outcome}` and `sse_jwks_keys`: fetches of `--jwks-url`.
    pub(crate) jwks: JwksMetrics,
}

impl Metrics {
    /// Creates the metrics in a registry of their own.
    pub(crate) fn new() -> Self {
        let registry = MetricsRegistry::new();
        Self {
            publish_requests: registry.counter_vec(
                "sse_publish_requests_total",
                "Publish requests, by HTTP status code.",
                "status",
            ),
            publish_duration: registry.histogram(
                "sse_publish_duration_seconds",
                "Time to answer a publish request, including the Redis round trip.",
                vec![
                    0.000_25, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0,
                ],
            ),
            events_published: registry.counter(
                "sse_events_published_total",
                "Events written to Redis; a batch counts each of its events.",
            ),
            idempotent_replays: registry.counter(
                "sse_publish_idempotent_replays_total",
                "Publish requests whose Idempotency-Key had already published their events: nothing was written, the first ids were returned.",
            ),
            idempotency_conflicts: registry.counter(
                "sse_publish_idempotency_conflicts_total",
                "Publish requests refused (409) because their Idempotency-Key was used for a different request within --idempotency-window.",
            ),
            auth_failures: registry.counter_vec(
                "sse_publish_auth_failures_total",
                "Publish requests refused for who sent them, by reason (no_token, forbidden, expired, signature, malformed, algorithm, not_yet_valid, audience, issuer, claims, too_long, unknown_key, no_keys).",
                "reason",
            ),
            cors_rejected: registry.counter(
                "sse_publish_cors_rejected_total",
                "Publish requests and preflights from a browser origin that --cors-origin does not allow.",
            ),
            jwks: JwksMetrics::register(&registry),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        self.registry.render()
    }
}
