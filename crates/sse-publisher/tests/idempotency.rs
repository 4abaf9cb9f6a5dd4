//! Publishing exactly once with an `Idempotency-Key`: a retry of a publish whose reply was
//! lost writes nothing more and answers with the first attempt's ids; the same key with other
//! events is refused and writes nothing; the key is checked in the same atomic call as the
//! append, on every path (HTTP, the library, `FCALL` from any Redis client).

mod harness;

use std::time::Duration;

use harness::{PATIENCE, TOKEN, ids, start_publisher, xlen};
use serde_json::{Value, json};
use sse_core::schema::{IdempotencyKey, LIBRARY, Retention};
use sse_core::{Event, Topic};
use sse_publisher::{Outcome, PublishError, Publisher, RedisFlags};
use sse_testkit::{RedisServer, ReplyCutter, eventually};

const AUTH: (&str, &str) = ("Authorization", "Bearer test-token");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn body(value: &Value) -> String {
    value.to_string()
}

async fn library(redis_url: String) -> Publisher {
    let flags = RedisFlags {
        redis_url,
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..RedisFlags::default()
    };
    Publisher::connect(&flags, Retention::default())
        .await
        .expect("a valid redis url")
}

fn event(topic: &str, data: &str) -> Event {
    Event::new(Topic::parse(topic).expect("a valid topic"), data.to_owned())
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text.as_bytes()).expect("a valid key")
}

#[tokio::test]
async fn a_repeated_key_answers_200_with_the_first_id_and_writes_nothing() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let request = body(&json!({"topic": "orders", "data": {"n": 1}}));
    let keyed = [AUTH, JSON, ("Idempotency-Key", "order-1")];

    let first = publisher.post_with_headers(&request, &keyed).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = publisher.post_with_headers(&request, &keyed).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json(), "the same id and topic");
    assert_eq!(
        ids(&redis, "orders"),
        [first.json()["id"].as_str().unwrap()]
    );

    // Another key, or none, publishes again.
    let other = publisher
        .post_with_headers(&request, &[AUTH, JSON, ("Idempotency-Key", "order-2")])
        .await;
    assert_eq!(other.status, 201);
    assert_eq!(
        publisher
            .post_with_headers(&request, &[AUTH, JSON])
            .await
            .status,
        201
    );
    assert_eq!(xlen(&redis, "orders"), 3);

    let metrics = publisher.get("/metrics").await.text();
    assert!(
        metrics.contains("sse_publish_idempotent_replays_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sse_events_published_total 3\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_key_reused_for_other_events_is_409_and_writes_nothing() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let keyed = [AUTH, JSON, ("Idempotency-Key", "k")];
    let one = body(&json!({"topic": "a", "data": "first"}));
    assert_eq!(publisher.post_with_headers(&one, &keyed).await.status, 201);

    for different in [
        json!({"topic": "a", "data": "second"}),
        json!({"topic": "a", "data": "first", "event": "named"}),
        json!([{"topic": "a", "data": "first"}, {"topic": "b", "data": "more"}]),
    ] {
        let reply = publisher.post_with_headers(&body(&different), &keyed).await;
        reply.assert_error(409, "idempotency_key_reused", &["nothing was published"]);
    }
    assert_eq!(xlen(&redis, "a"), 1);
    assert_eq!(xlen(&redis, "b"), 0);
    let metrics = publisher.get("/metrics").await.text();
    assert!(
        metrics.contains("sse_publish_idempotency_conflicts_total 3\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_batch_is_published_once_under_one_key() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let keyed = [AUTH, JSON, ("Idempotency-Key", "batch-7")];
    let batch = body(&json!([
        {"topic": "x", "data": "1"},
        {"topic": "y", "data": "2"},
        {"topic": "x", "data": "3"},
    ]));

    let first = publisher.post_with_headers(&batch, &keyed).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = publisher.post_with_headers(&batch, &keyed).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["ids"], first.json()["ids"]);
    assert_eq!((xlen(&redis, "x"), xlen(&redis, "y")), (2, 1));

    // The same first events, one fewer or one more: another request.
    for different in [
        json!([{"topic": "x", "data": "1"}, {"topic": "y", "data": "2"}]),
        json!([
            {"topic": "x", "data": "1"}, {"topic": "y", "data": "2"},
            {"topic": "x", "data": "3"}, {"topic": "y", "data": "4"},
        ]),
    ] {
        let reply = publisher.post_with_headers(&body(&different), &keyed).await;
        reply.assert_error(409, "idempotency_key_reused", &[]);
    }
    assert_eq!((xlen(&redis, "x"), xlen(&redis, "y")), (2, 1));
}

#[tokio::test]
async fn a_bad_key_is_400_and_names_what_is_wrong() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let request = body(&json!({"topic": "t", "data": "x"}));
    let long = "k".repeat(256);
    for (value, says) in [
        ("", "empty"),
        (long.as_str(), "256 bytes long; at most 255"),
        ("two words", "visible ASCII"),
    ] {
        let reply = publisher
            .post_with_headers(&request, &[AUTH, JSON, ("Idempotency-Key", value)])
            .await;
        reply.assert_error(400, "invalid_idempotency_key", &[says]);
    }
    assert_eq!(xlen(&redis, "t"), 0);
}

#[tokio::test]
async fn a_retry_after_a_lost_reply_publishes_once_with_a_key_and_twice_without() {
    let redis = RedisServer::start();
    let proxy = ReplyCutter::start(([127, 0, 0, 1], redis.port()).into());
    let url = format!("redis://{}", proxy.addr());
    let publisher = start_publisher_via(&url);

    for (topic, key) in [("keyed", Some("retry-1")), ("unkeyed", None)] {
        // Once a publish went through, the connection is set up and idle: the next reply
        // on it is the one the test cuts.
        publisher.publish_one("warm-up", "x").await;
        let request = body(&json!({"topic": topic, "data": "once"}));
        let mut headers = vec![AUTH, JSON];
        headers.extend(key.map(|key| ("Idempotency-Key", key)));
        proxy.cut_next_reply();
        let lost = publisher.post_with_headers(&request, &headers).await;
        lost.assert_error(
            503,
            "redis_unavailable",
            &["may or may not have been published"],
        );
        assert_eq!(
            xlen(&redis, topic),
            1,
            "Redis ran the call whose reply was lost"
        );

        // The client retries, as the answer tells it it may, until Redis is reachable again.
        let retried = eventually("the retry reaches Redis", PATIENCE, || async {
            let reply = publisher.post_with_headers(&request, &headers).await;
            (reply.status != 503).then_some(reply)
        })
        .await;
        let stored = ids(&redis, topic);
        match key {
            Some(_) => {
                assert_eq!(retried.status, 200, "{}", retried.text());
                assert_eq!(retried.header("idempotent-replayed"), Some("true"));
                assert_eq!(
                    stored,
                    [retried.json()["id"].as_str().unwrap()],
                    "one entry"
                );
            }
            None => {
                assert_eq!(retried.status, 201, "{}", retried.text());
                assert_eq!(
                    stored.len(),
                    2,
                    "without a key the retry published it again"
                );
            }
        }
    }
    assert_eq!(proxy.replies_cut(), 2);
}

/// The service with `--token` [`TOKEN`], talking to Redis at `url`.
fn start_publisher_via(url: &str) -> harness::TestPublisher {
    harness::start_publisher_with(&["--redis-url", url, "--token", TOKEN])
}

#[tokio::test]
async fn the_library_publishes_once_per_key_and_refuses_a_reused_one() {
    let redis = RedisServer::start();
    let publisher = library(redis.url()).await;

    let (id, outcome) = publisher
        .publish_once(&event("lib", "a"), &key("k1"))
        .await
        .expect("publish");
    assert_eq!(outcome, Outcome::Written);
    let (again, outcome) = publisher
        .publish_once(&event("lib", "a"), &key("k1"))
        .await
        .expect("publish again");
    assert_eq!((again, outcome), (id, Outcome::Replayed));

    let batch = [event("lib", "b"), event("lib", "c")];
    let (ids_first, outcome) = publisher
        .publish_batch_once(&batch, &key("k2"))
        .await
        .expect("batch");
    assert_eq!(outcome, Outcome::Written);
    let (ids_again, outcome) = publisher
        .publish_batch_once(&batch, &key("k2"))
        .await
        .expect("batch again");
    assert_eq!((ids_again, outcome), (ids_first, Outcome::Replayed));

    let reused = publisher.publish_once(&event("lib", "z"), &key("k2")).await;
    assert!(
        matches!(reused, Err(PublishError::KeyReused(_))),
        "{reused:?}"
    );
    assert_eq!(xlen(&redis, "lib"), 3);
}

#[tokio::test]
async fn a_key_is_forgotten_after_its_window() {
    let redis = RedisServer::start();
    let publisher = library(redis.url())
        .await
        .remembering_keys_for(Duration::from_millis(300));
    let (first, _) = publisher
        .publish_once(&event("w", "a"), &key("short"))
        .await
        .expect("publish");
    let record = "sse:{w}:idempotency:short";
    let ttl: i64 = redis::cmd("PTTL")
        .arg(record)
        .query(&mut redis.connection())
        .expect("PTTL");
    assert!(
        (1..=300).contains(&ttl),
        "the record expires with the window: {ttl} ms"
    );

    sse_testkit::wait_until("the record expires", PATIENCE, || {
        let exists: bool = redis::cmd("EXISTS")
            .arg(record)
            .query(&mut redis.connection())
            .expect("EXISTS");
        !exists
    });
    let (second, outcome) = publisher
        .publish_once(&event("w", "a"), &key("short"))
        .await
        .expect("publish after the window");
    assert_eq!(outcome, Outcome::Written);
    assert_ne!(second, first);
    assert_eq!(xlen(&redis, "w"), 2);
}

#[test]
fn fcall_from_any_redis_client_takes_the_key_too() {
    let redis = RedisServer::start();
    let mut connection = redis.connection();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(LIBRARY)
        .query(&mut connection)
        .expect("load the library");
    let mut call = |data: &str| {
        redis::cmd("FCALL")
            .arg("sse_publish")
            .arg(2)
            .arg("sse:{direct}:stream")
            .arg("sse:{direct}:idempotency:cli-1")
            .arg(data)
            .arg("")
            .arg(1000)
            .arg(0)
            .arg(0)
            .arg(300_000)
            .query::<(String, i64)>(&mut connection)
    };
    let (id, replayed) = call("hello").expect("first call");
    assert_eq!(replayed, 0);
    assert_eq!(call("hello").expect("repeat"), (id.clone(), 1));
    let conflict = call("other").expect_err("another body under the same key");
    assert_eq!(conflict.code(), Some("CONFLICT"), "{conflict}");
    assert_eq!(ids(&redis, "direct"), [id]);

    let bad = redis::cmd("FCALL")
        .arg("sse_publish")
        .arg(2)
        .arg("sse:{direct}:stream")
        .arg("sse:{direct}:idempotency:has space")
        .arg("x")
        .arg("")
        .arg(1000)
        .arg(0)
        .arg(0)
        .arg(300_000)
        .query::<(String, i64)>(&mut connection)
        .expect_err("a key with a space");
    assert!(
        bad.to_string().contains("visible ASCII"),
        "the error says what a key may hold: {bad}"
    );
}
