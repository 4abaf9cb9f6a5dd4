//! Redis going away: the service says so (`503` + `Retry-After`, `/readyz` fails), writes
//! nothing it did not acknowledge, and publishes again when Redis is back, without a restart,
//! also when Redis lost the publish function.
//!
//! `--redis-timeout 1s` keeps each failing call short.

mod harness;

use std::time::Duration;

use harness::{PATIENCE, TestPublisher, entries, ids, start_publisher, xlen};
use serde_json::json;
use sse_core::schema::Retention;
use sse_core::{Event, Topic};
use sse_publisher::{PublishError, Publisher, RedisFlags};
use sse_testkit::{RedisServer, eventually};

const FAST: &[&str] = &["--redis-timeout", "1s"];

/// Asserts that `reply` is the documented "Redis is down" answer.
/// A 503 whose detail says either that nothing was written (Redis refused the connection) or,
/// when the connection broke with the call in flight, that the outcome is unknown.
fn assert_unavailable(reply: &harness::Reply) {
    let detail = reply.assert_error(503, "redis_unavailable", &[]);
    assert!(
        detail.contains("was not published")
            || detail.contains("may or may not have been published"),
        "{detail}"
    );
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("a 503 says when to retry")
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
}

/// Waits until `/readyz` answers 200 again.
async fn wait_ready(publisher: &TestPublisher) {
    eventually("/readyz is 200 again", PATIENCE, || async {
        (publisher.get("/readyz").await.status == 200).then_some(())
    })
    .await;
}

fn function_count(redis: &RedisServer) -> usize {
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut redis.connection())
        .expect("FUNCTION LIST");
    libraries.len()
}

#[tokio::test]
async fn redis_down_gives_503_with_retry_after_and_fails_readyz() {
    let mut redis = RedisServer::start();
    let publisher = start_publisher(&redis, FAST);
    publisher.publish_one("down", "before").await;

    redis.kill();
    let single = publisher
        .publish(&json!({"topic": "down", "data": "lost"}))
        .await;
    let batch = publisher
        .publish(&json!([{"topic": "down", "data": "lost"}]))
        .await;
    let ready = publisher.get("/readyz").await;
    let health = publisher.get("/healthz").await;

    assert_unavailable(&single);
    assert_unavailable(&batch);
    assert_eq!(ready.status, 503);
    assert_eq!(ready.text(), "redis unreachable\n");
    assert_eq!(health.status, 200, "the process itself is fine");
}

#[tokio::test]
async fn after_a_restart_without_persistence_the_function_is_reloaded() {
    let mut redis = RedisServer::start();
    let publisher = start_publisher(&redis, FAST);
    publisher.publish_one("reload", "before").await;

    redis.restart();
    assert_eq!(function_count(&redis), 0, "the restart lost the function");
    let publisher = &publisher;
    let mut attempt = 0;
    let id = eventually("a publish succeeds again", PATIENCE, move || {
        attempt += 1;
        let body = json!({"topic": "reload", "data": format!("attempt {attempt}")});
        async move {
            let reply = publisher.publish(&body).await;
            if reply.status == 201 {
                Some((reply.json()["id"].as_str().unwrap().to_owned(), body))
            } else {
                assert_unavailable(&reply);
                None
            }
        }
    })
    .await;

    let (id, body) = id;
    let stored = entries(&redis, "reload");
    assert_eq!(
        stored.len(),
        1,
        "only the acknowledged attempt is in the stream"
    );
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].data, body["data"].as_str().unwrap().as_bytes());
    assert_eq!(function_count(&redis), 1);
}

#[tokio::test]
async fn once_redis_answers_again_the_first_publish_reloads_the_function() {
    let mut redis = RedisServer::start();
    let publisher = start_publisher(&redis, FAST);
    publisher.publish_one("reload", "before").await;
    redis.restart();

    // Connected again, but the function is still missing: the publish must load it itself.
    wait_ready(&publisher).await;
    assert_eq!(function_count(&redis), 0);
    let id = publisher.publish_one("reload", "after").await;

    assert_eq!(ids(&redis, "reload"), [id]);
}

#[tokio::test]
async fn once_redis_answers_again_a_batch_reloads_the_function() {
    let mut redis = RedisServer::start();
    let publisher = start_publisher(&redis, FAST);
    publisher.publish_one("reload", "before").await;
    redis.restart();

    wait_ready(&publisher).await;
    assert_eq!(function_count(&redis), 0);
    let reply = publisher
        .publish(&json!([
            {"topic": "reload", "data": "one"},
            {"topic": "other", "data": "two"},
            {"topic": "reload", "data": "three"},
        ]))
        .await;

    assert_eq!(reply.status, 201, "{reply:?}");
    let batch = reply.json()["ids"].clone();
    assert_eq!(
        ids(&redis, "reload"),
        [batch[0].as_str().unwrap(), batch[2].as_str().unwrap()]
    );
    assert_eq!(ids(&redis, "other"), [batch[1].as_str().unwrap()]);
}

#[tokio::test]
async fn with_aof_only_acknowledged_events_are_in_the_stream() {
    let mut redis = RedisServer::start_with_aof();
    let publisher = start_publisher(&redis, FAST);

    let a = publisher.publish_one("durable", "A").await;
    redis.kill();
    let b = publisher
        .publish(&json!({"topic": "durable", "data": "B"}))
        .await;
    assert_unavailable(&b);
    redis.restart();
    wait_ready(&publisher).await;
    let c = publisher.publish_one("durable", "C").await;

    let stored: Vec<(String, Vec<u8>)> = entries(&redis, "durable")
        .into_iter()
        .map(|entry| (entry.id, entry.data))
        .collect();
    assert_eq!(stored, [(a, b"A".to_vec()), (c, b"C".to_vec())]);
}

#[tokio::test]
async fn the_service_starts_while_redis_is_down_and_publishes_once_it_is_up() {
    let mut redis = RedisServer::start();
    redis.kill();
    let publisher = start_publisher(&redis, FAST);

    assert_eq!(publisher.get("/healthz").await.status, 200);
    assert_eq!(publisher.get("/readyz").await.status, 503);
    assert_unavailable(
        &publisher
            .publish(&json!({"topic": "late", "data": 0}))
            .await,
    );
    redis.restart();
    wait_ready(&publisher).await;
    let id = publisher.publish_one("late", "1").await;

    assert_eq!(ids(&redis, "late"), [id]);
}

#[tokio::test]
async fn the_library_reports_an_outage_as_unavailable_and_recovers() {
    let mut redis = RedisServer::start();
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(1),
        ..RedisFlags::default()
    };
    let publisher = Publisher::connect(&options, Retention::default())
        .await
        .unwrap();
    let topic = Topic::parse("library").unwrap();
    publisher
        .publish(&Event::new(topic.clone(), "before"))
        .await
        .unwrap();

    redis.kill();
    // The first call may find the old connection just broken (outcome unknown); once the
    // publisher knows, Redis refusing connections means nothing was written.
    let error = publisher
        .publish(&Event::new(topic.clone(), "lost"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PublishError::Unavailable(_) | PublishError::NoReply(_)
        ),
        "{error:?}"
    );
    let error = publisher
        .publish_batch(&[Event::new(topic.clone(), "lost")])
        .await
        .unwrap_err();
    assert!(matches!(error, PublishError::Unavailable(_)), "{error:?}");
    assert!(!publisher.ping().await);

    redis.restart();
    let id = eventually("the library publishes again", PATIENCE, || async {
        publisher
            .publish(&Event::new(topic.clone(), "after"))
            .await
            .ok()
    })
    .await;
    assert_eq!(ids(&redis, "library"), [id.to_string()]);
    assert_eq!(xlen(&redis, "library"), 1);
}

#[tokio::test]
/// Out of memory is a condition to wait out (like a failover), so it is a 503 with
/// `Retry-After`, for a single event as for a batch (which Redis aborts whole).
async fn redis_out_of_memory_gives_503_and_writes_nothing() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, FAST);
    let before = publisher.publish_one("full", "before").await;
    config_set(&redis, "maxmemory", "1");

    let single = publisher
        .publish(&json!({"topic": "full", "data": "refused"}))
        .await;
    let batch = publisher
        .publish(&json!([
            {"topic": "full", "data": "refused"},
            {"topic": "empty", "data": "refused"},
        ]))
        .await;

    assert_unavailable(&single);
    assert_unavailable(&batch);
    single.assert_error(503, "redis_unavailable", &["OOM"]);
    config_set(&redis, "maxmemory", "0");
    assert_eq!(ids(&redis, "full"), [before]);
    assert_eq!(xlen(&redis, "empty"), 0);
    publisher.publish_one("full", "after").await;
}

/// A primary demoted to a replica during a failover refuses writes with `READONLY`: that is
/// Redis being unavailable for writes (retry later), for a batch as for a single event.
#[tokio::test]
async fn a_read_only_replica_gives_503_for_single_events_and_batches() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, FAST);
    publisher.publish_one("demoted", "before").await;
    // A primary that does not exist: the server stays a read-only replica.
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(sse_testkit::free_port())
        .query(&mut redis.connection())
        .unwrap();

    let single = publisher
        .publish(&json!({"topic": "demoted", "data": "refused"}))
        .await;
    let batch = publisher
        .publish(&json!([{"topic": "demoted", "data": "refused"}]))
        .await;

    assert_unavailable(&single);
    assert_unavailable(&batch);
    assert_eq!(xlen(&redis, "demoted"), 1);
}

fn config_set(redis: &RedisServer, name: &str, value: &str) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(&mut redis.connection())
        .expect("CONFIG SET");
}

/// Keeps Redis busy (a Lua loop) for about `millis` ms on a thread of its own, and returns once
/// Redis has stopped answering; join the handle to wait for the end of the stall.
fn stall(redis: &RedisServer, millis: u64) -> std::thread::JoinHandle<()> {
    let client = redis.client();
    let busy = std::thread::spawn(move || {
        let mut connection = client.get_connection().expect("connect for the stall");
        let () = redis::cmd("EVAL")
            .arg(
                "local t = redis.call('TIME') \
                 local start = t[1] * 1000000 + t[2] \
                 repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000",
            )
            .arg(0)
            .arg(millis)
            .query(&mut connection)
            .expect("run the stalling script");
    });
    sse_testkit::wait_until("redis stalls", PATIENCE, || {
        // Connecting includes a handshake, so a stalled Redis fails here already.
        let answered = redis
            .client()
            .get_connection_with_timeout(Duration::from_millis(100))
            .and_then(|mut probe| {
                probe.set_read_timeout(Some(Duration::from_millis(100)))?;
                redis::cmd("PING").query::<String>(&mut probe)
            });
        answered.is_err()
    });
    busy
}

/// A call Redis received but did not answer in time may still run once Redis resumes: no
/// client can take it back. So the 503 must not claim "not published": it says the outcome is
/// unknown, and the event is then in the stream at most once.
#[tokio::test]
async fn a_publish_that_timed_out_reports_an_unknown_outcome() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--redis-timeout", "300ms"]);
    let before = publisher.publish_one("stalled", "before").await;

    let busy = stall(&redis, 1500);
    let timed_out = publisher
        .publish(&json!({"topic": "stalled", "data": "timed out"}))
        .await;
    busy.join().unwrap();
    let after = eventually("a publish succeeds after the stall", PATIENCE, || async {
        let reply = publisher
            .publish(&json!({"topic": "stalled", "data": "after"}))
            .await;
        (reply.status == 201).then(|| reply.json()["id"].as_str().unwrap().to_owned())
    })
    .await;

    timed_out.assert_error(
        503,
        "redis_unavailable",
        &["may or may not have been published"],
    );
    assert!(timed_out.header("retry-after").is_some());
    let stored: Vec<String> = entries(&redis, "stalled")
        .into_iter()
        .map(|entry| String::from_utf8(entry.data).unwrap())
        .collect();
    assert!(
        stored == ["before", "after"] || stored == ["before", "timed out", "after"],
        "{stored:?}"
    );
    let ids = ids(&redis, "stalled");
    assert_eq!((ids.first(), ids.last()), (Some(&before), Some(&after)));
}

/// A late reply to a timed-out call must not be taken for the reply to a later call (which
/// would hand a publisher another event's id).
#[tokio::test]
async fn after_a_timeout_each_reply_goes_to_its_own_request() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--redis-timeout", "300ms"]);
    publisher.publish_one("stalled", "before").await;

    let busy = stall(&redis, 1500);
    let timed_out = publisher
        .publish(&json!({"topic": "stalled", "data": "timed out"}))
        .await;
    busy.join().unwrap();
    assert_unavailable(&timed_out);
    let mut published = Vec::new();
    for n in 0..5 {
        let data = format!("after {n}");
        let id = eventually("a publish succeeds after the stall", PATIENCE, || async {
            let reply = publisher
                .publish(&json!({"topic": "stalled", "data": data}))
                .await;
            (reply.status == 201).then(|| reply.json()["id"].as_str().unwrap().to_owned())
        })
        .await;
        published.push((id, data.into_bytes()));
    }

    let stored: Vec<(String, Vec<u8>)> = entries(&redis, "stalled")
        .into_iter()
        .map(|entry| (entry.id, entry.data))
        .collect();
    for (id, data) in &published {
        assert!(
            stored.contains(&(id.clone(), data.clone())),
            "id {id} does not hold {:?}: {stored:?}",
            String::from_utf8_lossy(data)
        );
    }
}
