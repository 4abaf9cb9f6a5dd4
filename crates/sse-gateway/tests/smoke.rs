//! The first thing a user does: open a stream, publish, receive.

mod harness;

use harness::{PATIENCE, publish, publisher, start_gateway};
use sse_testkit::RedisServer;

#[tokio::test]
async fn a_published_event_reaches_a_subscriber() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut client = gateway.subscribe(&["orders"]).await;

    let id = publish(&publisher, "orders", Some("created"), "line 1\nline 2").await;

    let event = client.next_event(PATIENCE).await;
    assert_eq!(event.event_type, "created");
    assert_eq!(event.data, "line 1\nline 2");
    assert_eq!(event.last_event_id, id);
    assert_eq!(client.headers()["content-type"], "text/event-stream");
}
