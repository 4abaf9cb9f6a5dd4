//! Every metric the gateway exports: names, help and buckets in one place, mirrored by the
//! README. Each [`Metrics`] registers into its own registry, so tests don't share counters.
//! No metric is labelled by topic: topics are unbounded, label values must not be.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use sse_core::runtime::jwks::JwksMetrics;
use sse_core::runtime::metrics::MetricsRegistry;

/// The gateway's metrics.
pub(crate) struct Metrics {
    registry: MetricsRegistry,
    /// `sse_connections_active`: open event streams.
    pub(crate) connections_active: IntGauge,
    /// `sse_connections_total`: event streams opened.
    pub(crate) connections_total: IntCounter,
    /// `sse_stream_duration_seconds`: how long event streams lasted, observed as each ends.
    pub(crate) stream_duration: Histogram,
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
    /// `sse_replays_waiting`: resume reads waiting for a turn (`--max-concurrent-replays`).
    pub(crate) replays_waiting: IntGauge,
    /// `sse_replays_total{source}`: resumes of a topic, served from memory or read from Redis.
    pub(crate) replays: IntCounterVec,
    /// `sse_replay_reads_coalesced_total`: history pages a resume shared with another's read.
    pub(crate) replay_reads_coalesced: IntCounter,
    /// `sse_replay_cache_bytes`: bytes of recent events held in memory, over every topic.
    pub(crate) replay_cache_bytes: IntGauge,
    /// `sse_history_truncated_total`: streams told that their position could not continue
    /// exactly (on resuming, or live after a pub/sub gap).
    pub(crate) history_truncated: IntCounter,
    /// `sse_slow_consumer_disconnects_total`: streams ended because a client fell behind.
    pub(crate) slow_consumer_disconnects: IntCounter,
    /// `sse_count_refreshes_total{outcome}`: writes of this node's subscriber counts.
    pub(crate) count_refreshes: IntCounterVec,
    /// `sse_presence_writes_total{outcome}`: rounds that wrote presence changes.
    pub(crate) presence_writes: IntCounterVec,
    /// `sse_presence_events_total{event}`: joins and leaves this node published.
    pub(crate) presence_events: IntCounterVec,
    /// `sse_dead_peer_disconnects_total`: connections closed because the client stopped
    /// acknowledging data (it vanished without closing: `TCP_USER_TIMEOUT`).
    pub(crate) dead_peer_disconnects: IntCounter,
    /// `sse_redis_reconnects_total`: times the pub/sub connection was lost (each loss is followed
    /// by reconnection attempts until one succeeds).
    pub(crate) redis_reconnects: IntCounter,
    /// `sse_redis_subscriptions_moved_total`: topic subscriptions Redis Cluster ended because
    /// their slot moved or their master stepped down, each subscribed again and refilled.
    pub(crate) subscriptions_moved: IntCounter,
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
        let registry = MetricsRegistry::new();
        Self {
            connections_active: registry.gauge("sse_connections_active", "Open event streams."),
            connections_total: registry.counter("sse_connections_total", "Event streams opened."),
            stream_duration: registry.histogram(
                "sse_stream_duration_seconds",
                "How long event streams lasted, observed as each ends.",
                vec![1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0],
            ),
            requests_rejected: registry.counter_vec(
                "sse_requests_rejected_total",
                "Event stream requests refused, by reason (bad_request, no_token, invalid_token, forbidden, auth_unavailable, per_ip_limit, per_user_limit, over_capacity, draining, ...).",
                "reason",
            ),
            events_received: registry.counter(
                "sse_events_received_total",
                "Events received from Redis pub/sub.",
            ),
            messages_invalid: registry.counter(
                "sse_redis_messages_invalid_total",
                "Pub/sub messages and stream entries that were not valid events (skipped).",
            ),
            messages_ahead: registry.counter(
                "sse_redis_messages_ahead_total",
                "Pub/sub messages refused because their id was more than 2s ahead of Redis time (not delivered).",
            ),
            frames_delivered: registry.counter(
                "sse_frames_delivered_total",
                "Events written to clients, live and replayed.",
            ),
            delivery_latency: registry.histogram(
                "sse_delivery_latency_seconds",
                "Time from publish (the event id's timestamp) to the write to a client (as of when its batch left the stream's queue), live events.",
                vec![
                    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            replayed_events: registry.counter(
                "sse_replayed_events_total",
                "Events sent from a topic's stream to resuming clients.",
            ),
            replays_waiting: registry.gauge(
                "sse_replays_waiting",
                "Resume reads waiting for a turn (--max-concurrent-replays).",
            ),
            replays: registry.counter_vec(
                "sse_replays_total",
                "Resumes of a topic by source: memory (the node's recent events, no Redis read) or redis (read from the topic's stream).",
                "source",
            ),
            replay_reads_coalesced: registry.counter(
                "sse_replay_reads_coalesced_total",
                "History pages a resuming client took from a read another client had already sent (one XRANGE for both).",
            ),
            replay_cache_bytes: registry.gauge(
                "sse_replay_cache_bytes",
                "Bytes of recent events held in memory for resumes, over every topic (--replay-cache-total-bytes bounds it).",
            ),
            history_truncated: registry.counter(
                "sse_history_truncated_total",
                "Streams told their position could not continue exactly (history trimmed or position unknown), resuming or live after a pub/sub gap.",
            ),
            slow_consumer_disconnects: registry.counter(
                "sse_slow_consumer_disconnects_total",
                "Streams ended because the client fell more than --client-buffer behind.",
            ),
            count_refreshes: registry.counter_vec(
                "sse_count_refreshes_total",
                "Refreshes of this node's subscriber counts in Redis (--count-refresh), by outcome (ok, failed).",
                "outcome",
            ),
            presence_writes: registry.counter_vec(
                "sse_presence_writes_total",
                "Rounds that wrote this node's presence changes (or removed a gone node's) to Redis (--presence), by outcome (ok, failed).",
                "outcome",
            ),
            presence_events: registry.counter_vec(
                "sse_presence_events_total",
                "Joins and leaves this node's presence writes published on companion topics, by event (join, leave).",
                "event",
            ),
            dead_peer_disconnects: registry.counter(
                "sse_dead_peer_disconnects_total",
                "Connections closed because the client acknowledged nothing for two heartbeats (at least 10 s): it vanished without closing.",
            ),
            redis_reconnects: registry.counter(
                "sse_redis_reconnects_total",
                "Times the pub/sub connection to Redis was lost (the node then reconnects).",
            ),
            subscriptions_moved: registry.counter(
                "sse_redis_subscriptions_moved_total",
                "Topic subscriptions Redis Cluster ended (slot moved, master stepped down); each is subscribed again on the new owner and refilled from its stream.",
            ),
            gap_filled_events: registry.counter(
                "sse_gap_filled_events_total",
                "Events read from streams after a pub/sub outage, so that none is lost.",
            ),
            topics_active: registry.gauge(
                "sse_topics_active",
                "Topics this node is subscribed to (with a local client, or lingering after the last one left: --replay-cache-linger).",
            ),
            redis_connected: registry.gauge(
                "sse_redis_connected",
                "1 while the Redis pub/sub connection is up and caught up (the node is ready), else 0.",
            ),
            auth_failures: registry.counter_vec(
                "sse_auth_failures_total",
                "Subscriber checks refused, by reason (no_token, forbidden, expired, signature, malformed, algorithm, not_yet_valid, audience, issuer, claims, too_long, unknown_key, no_keys, forward_denied, forward_unavailable).",
                "reason",
            ),
            forward_auth_calls: registry.counter_vec(
                "sse_forward_auth_calls_total",
                "Calls to --auth-url, by outcome (allow, deny, error: no answer in time, unreachable, another status, an unreadable answer).",
                "outcome",
            ),
            forward_auth_seconds: registry.histogram(
                "sse_forward_auth_duration_seconds",
                "Time a call to --auth-url took, to its answer or failure.",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            forward_auth_cache_hits: registry.counter(
                "sse_forward_auth_cache_hits_total",
                "Forward-auth checks answered without a call: a remembered decision, or one shared with an identical check under way.",
            ),
            cors_rejected: registry.counter(
                "sse_cors_rejected_total",
                "Requests and preflights from a browser origin that --cors-origin does not allow.",
            ),
            jwks: JwksMetrics::register(&registry),
            registry,
        }
        .touch()
    }

    /// Every source of `sse_replays_total`, exported from the start (at 0).
    fn touch(self) -> Self {
        for source in ["memory", "redis"] {
            self.replays.with_label_values(&[source]);
        }
        self
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        self.registry.render()
    }
}
