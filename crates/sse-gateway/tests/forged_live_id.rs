//! A writer must not harm readers: a pub/sub message whose id is far ahead of the stream
//! (anyone with Redis access can `PUBLISH` one, and so can a buggy direct publisher) must not
//! move a node's position for its topic, or the node would drop every real event below that id
//! until it restarts. The node refuses it, counts it, and goes on delivering real events.

mod harness;

use harness::{PATIENCE, publish, publisher, start_gateway};
use sse_core::schema::{PublishedEvent, live_channel};
use sse_core::{EventId, Topic};
use sse_testkit::{RedisServer, eventually};

#[tokio::test]
async fn a_live_id_far_ahead_of_redis_time_is_refused_and_real_events_keep_flowing() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut client = node.subscribe(&["orders"]).await;
    let first = publish(&publisher, "orders", None, "real 0").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("real 0", first.as_str())
    );

    // A message in the schema's format, an hour past the stream's newest id, straight onto
    // the topic's channel: not in the stream, and far beyond the Redis clock.
    let newest: EventId = first.parse().expect("a stream id");
    let forged = PublishedEvent {
        id: EventId::new(newest.ms + 3_600_000, 0),
        name: None,
        data: "forged".into(),
    };
    let topic = Topic::parse("orders").expect("a valid topic");
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(live_channel(&topic))
        .arg(forged.to_live_message())
        .query(&mut redis.connection())
        .expect("PUBLISH");
    assert_eq!(receivers, 1, "the node is subscribed to the channel");

    for n in 1..=5 {
        let data = format!("real {n}");
        let id = publish(&publisher, "orders", None, &data).await;
        let event = client.next_event(PATIENCE).await;
        assert_eq!(
            (event.data.as_str(), event.last_event_id.as_str()),
            (data.as_str(), id.as_str()),
            "after a forged far-future id, the client must get every real event and only those"
        );
    }
    eventually("the refused message is counted", PATIENCE, || async {
        (node.metric("sse_redis_messages_ahead_total").await == 1).then_some(())
    })
    .await;
}
