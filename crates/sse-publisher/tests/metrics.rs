//! `/metrics` counts what operators alert on: publish requests by status, events written
//! (a batch counts each of its events) and the publish latency histogram.

mod harness;

use harness::{TOKEN, start_publisher};
use serde_json::json;
use sse_testkit::RedisServer;

/// The value of the sample `name` (with its labels, exactly as exposed), if present.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn metrics_count_requests_by_status_and_events_individually() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    publisher.publish_one("m", "1").await;
    publisher.publish_one("m", "2").await;
    publisher
        .publish_created(&json!([
            {"topic": "m", "data": 3},
            {"topic": "n", "data": 4},
            {"topic": "m", "data": 5},
        ]))
        .await;
    let bad = publisher.post_json("{", Some(TOKEN)).await;
    assert_eq!(bad.status, 400);
    let unauthorized = publisher.post_json(r#"{"topic":"m","data":1}"#, None).await;
    assert_eq!(unauthorized.status, 401);
    // Other routes are not publish requests.
    assert_eq!(publisher.get("/healthz").await.status, 200);
    let reply = publisher.get("/metrics").await;

    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/plain")),
        "{reply:?}"
    );
    let metrics = reply.text();
    let value = |name: &str| {
        sample(&metrics, name).unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
    };
    assert_eq!(value(r#"sse_publish_requests_total{status="201"}"#), 3.0);
    assert_eq!(value(r#"sse_publish_requests_total{status="400"}"#), 1.0);
    assert_eq!(value(r#"sse_publish_requests_total{status="401"}"#), 1.0);
    assert_eq!(value("sse_events_published_total"), 5.0);
    assert_eq!(value("sse_publish_duration_seconds_count"), 5.0);
    assert_eq!(
        value(r#"sse_publish_duration_seconds_bucket{le="+Inf"}"#),
        5.0
    );
    assert!(metrics.contains("# TYPE sse_publish_duration_seconds histogram"));
}

#[tokio::test]
async fn a_fresh_service_has_published_nothing() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let metrics = publisher.get("/metrics").await.text();

    assert_eq!(sample(&metrics, "sse_events_published_total"), Some(0.0));
    assert_eq!(
        sample(&metrics, "sse_publish_duration_seconds_count"),
        Some(0.0)
    );
}
