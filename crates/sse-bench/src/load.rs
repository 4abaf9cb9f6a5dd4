//! Paced publishing: `rate` events per second for `duration`, round-robin over the topics, each
//! event's data `<sequence on its topic> <publish time in µs> <padding>`, straight into Redis
//! with the publish function (the `sse-publisher` library). Every 5 ms the events due are sent
//! as one ordered batch, so each topic's sequence reaches Redis in order; a driver that falls
//! behind sends bigger batches rather than more concurrent ones.

use std::time::Duration;

use sse_core::{Event, Topic};
use sse_publisher::Publisher;

use crate::clients::now_micros;

/// What was published, per topic.
pub(crate) struct Published {
    pub(crate) per_topic: Vec<u64>,
    pub(crate) failed: u64,
}

/// Publishes as described in the module docs.
pub(crate) async fn publish(
    publisher: &Publisher,
    topics: &[Topic],
    rate: u64,
    duration: Duration,
    payload: usize,
) -> Published {
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let padding = "x".repeat(payload);
    let mut per_topic = vec![0u64; topics.len()];
    let mut failed = 0;
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        let mut batch = Vec::new();
        while sent < due {
            let index = usize::try_from(sent).unwrap_or(0) % topics.len();
            let data = format!("{} {} {padding}", per_topic[index], now_micros());
            per_topic[index] += 1;
            batch.push(Event::new(topics[index].clone(), data));
            sent += 1;
        }
        if !batch.is_empty() && publisher.publish_batch(&batch).await.is_err() {
            failed += batch.len() as u64;
        }
    }
    Published { per_topic, failed }
}
