//! Every metric the publisher exports: names, help and buckets in one place, mirrored by the
//! README. Each [`Metrics`] registers into its own [`Registry`], so tests don't share counters.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The publisher's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    /// `sse_publish_requests_total{status}`: publish requests by HTTP status code.
    pub(crate) publish_requests: IntCounterVec,
    /// `sse_publish_duration_seconds`: time to answer a publish request, Redis included.
    pub(crate) publish_duration: Histogram,
    /// `sse_events_published_total`: events written (a batch counts each of its events).
    pub(crate) events_published: IntCounter,
}

impl Metrics {
    /// Creates the metrics in a registry of their own.
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let publish_requests = IntCounterVec::new(
            Opts::new(
                "sse_publish_requests_total",
                "Publish requests, by HTTP status code.",
            ),
            &["status"],
        )
        .expect("metric options are valid");
        let publish_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sse_publish_duration_seconds",
                "Time to answer a publish request, including the Redis round trip.",
            )
            .buckets(vec![
                0.000_25, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ]),
        )
        .expect("metric options are valid");
        let events_published = IntCounter::new(
            "sse_events_published_total",
            "Events written to Redis; a batch counts each of its events.",
        )
        .expect("metric options are valid");
        for metric in [
            Box::new(publish_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(publish_duration.clone()),
            Box::new(events_published.clone()),
        ] {
            registry
                .register(metric)
                .expect("each metric is registered once");
        }
        Self {
            registry,
            publish_requests,
            publish_duration,
            events_published,
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
