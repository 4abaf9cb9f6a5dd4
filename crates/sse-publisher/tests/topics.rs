//! `GET /v1/topics/<topic>`: the fleet's subscriber count for a topic (the shares of the
//! gateway nodes alive, `sse_core::schema::counts`) and what its history holds, authorized
//! like publishing. A topic that never existed answers 200 with zeros.

mod harness;

use harness::start_publisher;
use serde_json::json;
use sse_testkit::RedisServer;

#[tokio::test]
async fn a_topic_nobody_used_is_all_zeros_not_404() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let reply = publisher.get_authorized("/v1/topics/nobody").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"topic": "nobody", "subscribers": 0, "nodes": 0, "retained": 0,
               "first_id": null, "last_id": null,
               "present": [], "present_count": 0, "present_next": null})
    );
}

#[tokio::test]
async fn the_history_and_the_live_nodes_shares_are_reported() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let ids: Vec<String> = [
        publisher.publish_one("orders", "1").await,
        publisher.publish_one("orders", "2").await,
        publisher.publish_one("orders", "3").await,
    ]
    .into();
    // Two nodes' shares as gateways write them, and a third of a node that is gone.
    let mut redis_connection = redis.connection();
    redis::pipe()
        .hset("sse:{orders}:subscribers", "node-a", 5)
        .hset("sse:{orders}:subscribers", "node-b", 2)
        .hset("sse:{orders}:subscribers", "node-dead", 7)
        .set("sse:{nodes}:alive:node-a", 1)
        .set("sse:{nodes}:alive:node-b", 1)
        .exec(&mut redis_connection)
        .expect("write the shares");

    let reply = publisher.get_authorized("/v1/topics/orders").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"topic": "orders", "subscribers": 7, "nodes": 2, "retained": 3,
               "first_id": ids[0], "last_id": ids[2],
               "present": [], "present_count": 0, "present_next": null})
    );
}

#[tokio::test]
async fn the_subjects_present_on_live_nodes_are_listed_a_page_at_a_time() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    // Presence as gateways running --presence write it, with a subject only a gone node holds.
    redis::pipe()
        .hset("sse:{presence:orders}:present", "carol", "node-a")
        .hset("sse:{presence:orders}:present", "alice", "node-dead node-b")
        .hset("sse:{presence:orders}:present", "bob", "node-a node-b")
        .hset("sse:{presence:orders}:present", "dave", "node-dead")
        .set("sse:{nodes}:alive:node-a", 1)
        .set("sse:{nodes}:alive:node-b", 1)
        .exec(&mut redis.connection())
        .expect("write the presence");

    let page = |query: &str| {
        let path = format!("/v1/topics/orders{query}");
        let publisher = &publisher;
        async move {
            let reply = publisher.get_authorized(&path).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            let body = reply.json();
            (
                body["present"].clone(),
                body["present_count"].clone(),
                body["present_next"].clone(),
            )
        }
    };
    assert_eq!(
        page("").await,
        (json!(["alice", "bob", "carol"]), json!(3), json!(null))
    );
    assert_eq!(
        page("?present_limit=2").await,
        (json!(["alice", "bob"]), json!(3), json!("bob"))
    );
    assert_eq!(
        page("?present_limit=2&present_after=bob").await,
        (json!(["carol"]), json!(3), json!(null))
    );
    for bad in [
        "?present_limit=0",
        "?present_limit=x",
        "?present_limit=1001",
    ] {
        publisher
            .get_authorized(&format!("/v1/topics/orders{bad}"))
            .await
            .assert_error(
                400,
                "invalid_query",
                &["present_limit must be a whole number"],
            );
    }
    publisher
        .get_authorized("/v1/topics/orders?who=all")
        .await
        .assert_error(400, "invalid_query", &["unknown query parameter"]);
}

#[tokio::test]
async fn topic_info_is_refused_like_a_publish() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    publisher
        .get("/v1/topics/orders")
        .await
        .assert_error(401, "unauthorized", &[]);
    publisher
        .get_authorized("/v1/topics/not%20a%20topic")
        .await
        .assert_error(400, "invalid_topic", &["not a valid topic"]);
    let post = publisher
        .request(http::Method::POST, "/v1/topics/orders")
        .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
}

#[tokio::test]
async fn the_busiest_topics_come_from_the_live_nodes_sets() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let empty = publisher.get_authorized("/v1/topics").await;
    assert_eq!(empty.json(), json!({"topics": []}), "no node, no topics");

    let mut redis_connection = redis.connection();
    redis::pipe()
        .zadd("sse:{nodes}:members", "node-a", 1)
        .zadd("sse:{nodes}:members", "node-b", 1)
        .zadd("sse:{nodes}:members", "node-dead", 1)
        .set("sse:{nodes}:alive:node-a", 1)
        .set("sse:{nodes}:alive:node-b", 1)
        .zadd("sse:{nodes}:topics:node-a", "user:1", 4)
        .zadd("sse:{nodes}:topics:node-a", "news", 1)
        .zadd("sse:{nodes}:topics:node-b", "user:1", 1)
        .zadd("sse:{nodes}:topics:node-b", "user:2", 3)
        .zadd("sse:{nodes}:topics:node-dead", "news", 100)
        .exec(&mut redis_connection)
        .expect("write the nodes' sets");

    let all = publisher.get_authorized("/v1/topics").await;
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(
        all.json(),
        json!({"topics": [
            {"topic": "user:1", "subscribers": 5},
            {"topic": "user:2", "subscribers": 3},
            {"topic": "news", "subscribers": 1},
        ]})
    );
    let users = publisher
        .get_authorized("/v1/topics?prefix=user%3A&limit=1")
        .await;
    assert_eq!(
        users.json(),
        json!({"topics": [{"topic": "user:1", "subscribers": 5}]})
    );
    for (query, says) in [
        ("limit=0", "from 1 to 1000"),
        ("limit=many", "from 1 to 1000"),
        ("sort=asc", "unknown query parameter"),
    ] {
        publisher
            .get_authorized(&format!("/v1/topics?{query}"))
            .await
            .assert_error(400, "invalid_query", &[says]);
    }
    publisher
        .get("/v1/topics")
        .await
        .assert_error(401, "unauthorized", &[]);
}
