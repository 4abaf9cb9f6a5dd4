//! `--min-replicas-ack`: a publish is acknowledged only once that many replicas hold it. On a
//! Redis without replicas every publish is written and then refused with 503 saying so; on a
//! Redis Cluster, where each master has a replica, publishes are acknowledged as usual.

mod harness;

use std::time::Duration;

use harness::{PATIENCE, entries, start_publisher, start_publisher_with};
use serde_json::json;
use sse_core::schema::Retention;
use sse_core::{Event, Topic};
use sse_publisher::{PublishError, Publisher, RedisFlags};
use sse_testkit::{RedisCluster, RedisServer, eventually};

fn event(topic: &str, data: &str) -> Event {
    Event::new(Topic::parse(topic).expect("a valid topic"), data.to_owned())
}

/// A publisher on `redis` that waits up to `timeout` for one replica to confirm each publish.
async fn wanting_a_replica(redis: &RedisServer, timeout: Duration) -> Publisher {
    Publisher::connect(&RedisFlags::single(redis.url()), Retention::default())
        .await
        .expect("connects")
        .acknowledged_by(1, timeout)
        .expect("lanes")
}

/// `error` says that the event was written and no replica confirmed it, and it is the one
/// event `redis` holds on `orders`.
fn assert_written_unconfirmed(redis: &RedisServer, error: &PublishError) {
    let PublishError::NotReplicated {
        ids, acked, wanted, ..
    } = error
    else {
        panic!("{error:?}");
    };
    assert_eq!((*acked, *wanted), (0, 1));
    let stored = entries(redis, "orders");
    assert_eq!(stored.len(), 1, "written on the master all the same");
    assert_eq!(stored[0].id, ids[0].to_string());
}

#[tokio::test]
async fn without_enough_replicas_the_event_is_written_and_the_publish_says_it_is_not_safe() {
    let redis = RedisServer::start();
    let publisher = wanting_a_replica(&redis, Duration::from_millis(100)).await;

    let error = publisher
        .publish(&event("orders", "one"))
        .await
        .expect_err("no replica can confirm it");
    assert_written_unconfirmed(&redis, &error);
    assert!(
        error.to_string().contains("a failover may lose it"),
        "{error}"
    );

    let batch = [event("orders", "two"), event("orders", "three")];
    let batch_not_replicated = || async {
        let error = publisher
            .publish_batch(&batch)
            .await
            .expect_err("no replica can confirm it");
        assert!(
            matches!(&error, PublishError::NotReplicated { ids, .. } if ids.len() == 2),
            "{error:?}"
        );
    };
    batch_not_replicated().await;
    assert_eq!(entries(&redis, "orders").len(), 3);

    // Redis lost the function (restarted empty, say): it is loaded again, the batch written.
    let mut connection = redis.connection();
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .exec(&mut connection)
        .expect("FUNCTION FLUSH");
    batch_not_replicated().await;
    assert_eq!(entries(&redis, "orders").len(), 5);
}

/// A `WAIT` that Redis ends with an error after the write is no confirmation, not a refusal:
/// the event is in the stream, and the publish says it was written but not confirmed. (A
/// failover ends a waiting `WAIT` with `UNBLOCKED` once the master became a replica; here
/// `CLIENT UNBLOCK ... ERROR` does the same to a `WAIT` no replica can ever satisfy.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_ended_by_an_error_after_the_write_is_written_but_not_confirmed() {
    let redis = RedisServer::start();
    let publisher = wanting_a_replica(&redis, Duration::from_secs(60)).await;
    let publish = tokio::spawn(async move { publisher.publish(&event("orders", "one")).await });

    let mut control = redis.connection();
    let waiting = eventually("the publish waits for a replica", PATIENCE, || async {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut redis.connection())
            .expect("CLIENT LIST");
        clients
            .lines()
            .find(|line| line.contains(" cmd=wait "))
            .and_then(|line| {
                line.strip_prefix("id=")?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
    })
    .await;
    let unblocked: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(waiting)
        .arg("ERROR")
        .query(&mut control)
        .expect("CLIENT UNBLOCK");
    assert_eq!(unblocked, 1, "the WAIT was unblocked");

    let error = publish
        .await
        .expect("the publish does not panic")
        .expect_err("no replica confirmed it");
    assert_written_unconfirmed(&redis, &error);
}

#[tokio::test]
async fn over_http_a_publish_without_enough_replicas_is_a_503_that_says_why() {
    let redis = RedisServer::start();
    let publisher = start_publisher(
        &redis,
        &["--min-replicas-ack", "1", "--min-replicas-timeout", "100ms"],
    );
    let reply = publisher
        .publish(&json!({"topic": "orders", "data": "x"}))
        .await;
    reply.assert_error(
        503,
        "redis_unavailable",
        &["not confirmed by enough replicas", "--min-replicas-ack"],
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(entries(&redis, "orders").len(), 1);
}

#[tokio::test]
async fn on_a_cluster_with_a_replica_per_master_publishes_are_acknowledged() {
    let cluster = RedisCluster::start();
    let seeds = cluster.seeds();
    let publisher = start_publisher_with(&[
        "--redis-cluster",
        "--redis-url",
        &seeds,
        "--allow-anonymous",
        "--min-replicas-ack",
        "1",
    ]);
    let one = publisher
        .publish_created(&json!({"topic": "orders", "data": "x"}))
        .await;
    let id = one["id"].as_str().expect("an id").to_owned();
    let batch = publisher
        .publish_created(&json!([
            {"topic": "orders", "data": "y"},
            {"topic": "orders", "data": "z"}
        ]))
        .await;
    assert_eq!(batch["ids"].as_array().map(Vec::len), Some(2));

    // The replica holds them already.
    let key = sse_core::schema::stream_key(&Topic::parse("orders").expect("a valid topic"));
    let master = cluster.master_of(&key);
    let replica = cluster.replicas_of(master)[0];
    let mut redis = cluster.connection(replica);
    redis::cmd("READONLY")
        .exec(&mut redis)
        .expect("reads on the replica");
    let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut redis)
        .expect("XRANGE on the replica");
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0].0, id);
}
