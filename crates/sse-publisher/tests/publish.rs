//! The write path works: what `POST /v1/publish` (and the `Publisher` library) answers is what
//! Redis holds and announces. Ids are the stream's ids and increase per topic, payloads are
//! stored as the spec says, batches are written whole and in order, and retention trims.

mod harness;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use harness::{
    PATIENCE, TOKEN, assert_strictly_increasing, entries, ids, parse_id, start_publisher,
    start_publisher_with, xlen,
};
use serde_json::{Value, json};
use sse_core::schema::{PublishedEvent, Retention, live_channel};
use sse_core::{Event, EventName, Topic};
use sse_publisher::{Publisher, RedisFlags};
use sse_testkit::{RedisServer, eventually};

#[tokio::test]
async fn a_published_event_is_in_the_stream_under_the_returned_id() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let named = publisher
        .publish_created(&json!({"topic": "orders", "data": "hello", "event": "created"}))
        .await;
    let unnamed = publisher
        .publish_created(&json!({"topic": "orders", "data": "plain"}))
        .await;

    assert_eq!(named["topic"], "orders");
    assert_eq!(named.as_object().unwrap().len(), 2, "{named}");
    let stored = entries(&redis, "orders");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].id, named["id"].as_str().unwrap());
    assert_eq!(stored[0].data, b"hello");
    assert_eq!(stored[0].event.as_deref(), Some("created"));
    assert_eq!(stored[0].fields, 2);
    assert_eq!(stored[1].id, unnamed["id"].as_str().unwrap());
    assert_eq!(stored[1].data, b"plain");
    assert_eq!(stored[1].event, None, "an unnamed event has no event field");
    assert_eq!(stored[1].fields, 1);
}

#[tokio::test]
async fn sequential_publishes_get_strictly_increasing_ids() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let mut published = Vec::new();
    for n in 0..50 {
        published.push(publisher.publish_one("ticks", &n.to_string()).await);
    }

    assert_strictly_increasing(&published);
    assert_eq!(ids(&redis, "ticks"), published);
}

#[tokio::test]
async fn concurrent_publishes_get_unique_ids_in_stream_order() {
    let redis = RedisServer::start();
    let publisher = std::sync::Arc::new(start_publisher(&redis, &[]));

    let mut requests = tokio::task::JoinSet::new();
    for n in 0..200 {
        let publisher = publisher.clone();
        requests.spawn(async move {
            let id = publisher.publish_one("busy", &format!("event {n}")).await;
            (id, format!("event {n}"))
        });
    }
    let mut published = Vec::new();
    while let Some(result) = requests.join_next().await {
        published.push(result.unwrap());
    }

    let unique: HashSet<&String> = published.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), 200, "ids are unique");
    assert_eq!(xlen(&redis, "busy"), 200);
    // The stream's order is the ids' order, and each id holds the event its request sent.
    published.sort_by_key(|(id, _)| parse_id(id));
    let stored = entries(&redis, "busy");
    let stored: Vec<(String, String)> = stored
        .into_iter()
        .map(|entry| (entry.id, String::from_utf8(entry.data).unwrap()))
        .collect();
    assert_eq!(stored, published);
}

#[tokio::test]
async fn string_data_is_stored_verbatim_and_other_json_compact() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let cases: [(Value, &[u8]); 11] = [
        (json!("a\nb"), b"a\nb"),
        (json!("a\r\nb\rc"), b"a\r\nb\rc"),
        (json!("  spaced  "), b"  spaced  "),
        (json!(""), b""),
        (json!("he said \"hi\""), b"he said \"hi\""),
        (json!("é ✓ \u{0}"), "é ✓ \u{0}".as_bytes()),
        (json!({"k": [1, 2]}), br#"{"k":[1,2]}"#),
        (json!([1, "x", null]), br#"[1,"x",null]"#),
        (json!(42), b"42"),
        (json!(null), b"null"),
        (json!(true), b"true"),
    ];

    for (data, _) in &cases {
        publisher
            .publish_created(&json!({"topic": "payloads", "data": data}))
            .await;
    }
    // Formatting the client chose is not kept either.
    let spaced = r#"{ "topic" : "payloads" , "data" : { "k" : [ 1 , 2.5 ] } }"#;
    let reply = publisher.post_json(spaced, Some(TOKEN)).await;
    assert_eq!(reply.status, 201, "{reply:?}");

    let stored: Vec<Vec<u8>> = entries(&redis, "payloads")
        .into_iter()
        .map(|entry| entry.data)
        .collect();
    let mut expected: Vec<Vec<u8>> = cases.iter().map(|(_, bytes)| bytes.to_vec()).collect();
    expected.push(br#"{"k":[1,2.5]}"#.to_vec());
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn retention_keeps_about_max_len_events() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--retention", "100"]);

    let first = publisher.publish_one("trimmed", "first").await;
    let mut last = String::new();
    // 999 more, in batches of 111 (every event is one `XADD … MAXLEN ~ 100`).
    for batch in 0..9 {
        let events: Vec<Value> = (0..111)
            .map(|n| json!({"topic": "trimmed", "data": format!("{batch}/{n}")}))
            .collect();
        let body = publisher.publish_created(&Value::Array(events)).await;
        last = body["ids"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
    }

    // 1000 events published; `MAXLEN ~ 100` keeps at least 100 and trims whole nodes of 100.
    let kept = ids(&redis, "trimmed");
    assert!(
        (100..300).contains(&kept.len()),
        "kept {} events",
        kept.len()
    );
    assert!(!kept.contains(&first), "the first event was trimmed");
    assert_eq!(kept.last(), Some(&last), "the newest event is kept");
}

#[tokio::test]
async fn retention_age_trims_old_events() {
    let redis = RedisServer::start();
    // `MINID ~` trims whole stream nodes only; with one entry per node the trimming is exact,
    // so the old event is gone as soon as it is older than the age.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg("1")
        .query(&mut redis.connection())
        .unwrap();
    let publisher = start_publisher(&redis, &["--retention-age", "300ms"]);
    let old = publisher.publish_one("aging", "old").await;

    // Trimming happens on publish, so each poll publishes a fresh event.
    let fresh = eventually("the old event is trimmed", PATIENCE, || async {
        let fresh = publisher.publish_one("aging", "fresh").await;
        let kept = ids(&redis, "aging");
        (!kept.contains(&old)).then_some((fresh, kept))
    })
    .await;

    let (fresh, kept) = fresh;
    assert_eq!(
        kept.last(),
        Some(&fresh),
        "the event just published is kept"
    );
    assert!(parse_id(&kept[0]) > parse_id(&old));
}

#[tokio::test]
async fn live_subscribers_see_the_id_the_http_call_returned() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let topic = Topic::parse("live").unwrap();
    let mut connection = redis.connection();
    let mut subscriber = connection.as_pubsub();
    subscriber.subscribe(live_channel(&topic)).unwrap();
    subscriber.set_read_timeout(Some(PATIENCE)).unwrap();

    let named = publisher
        .publish_created(&json!({"topic": "live", "data": "x\ny", "event": "tick"}))
        .await;
    let unnamed = publisher
        .publish_created(&json!({"topic": "live", "data": {"n": 1}}))
        .await;

    let named_id = named["id"].as_str().unwrap();
    let message = subscriber.get_message().unwrap();
    assert_eq!(message.get_channel_name(), live_channel(&topic));
    assert_eq!(
        message.get_payload_bytes(),
        format!("{named_id}\ntick\nx\ny").as_bytes()
    );
    let decoded =
        PublishedEvent::from_live_message(Bytes::copy_from_slice(message.get_payload_bytes()))
            .unwrap();
    assert_eq!(decoded.id, parse_id(named_id));
    assert_eq!(decoded.name.unwrap().as_str(), "tick");
    assert_eq!(&decoded.data[..], b"x\ny");

    let unnamed_id = unnamed["id"].as_str().unwrap();
    let message = subscriber.get_message().unwrap();
    assert_eq!(
        message.get_payload_bytes(),
        format!("{unnamed_id}\n\n{{\"n\":1}}").as_bytes()
    );
}

#[tokio::test]
async fn a_batch_returns_ids_in_order_and_writes_every_event() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let before = publisher.publish_one("batch", "before").await;

    let events: Vec<Value> = (0..5)
        .map(|n| json!({"topic": "batch", "data": format!("b{n}"), "event": "item"}))
        .collect();
    let body = publisher.publish_created(&Value::Array(events)).await;

    assert_eq!(body.as_object().unwrap().len(), 1, "only ids: {body}");
    let batch: Vec<String> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(batch.len(), 5);
    let mut all = vec![before];
    all.extend(batch.iter().cloned());
    assert_strictly_increasing(&all);
    let stored = entries(&redis, "batch");
    assert_eq!(stored.len(), 6);
    for (n, (entry, id)) in stored[1..].iter().zip(&batch).enumerate() {
        assert_eq!(&entry.id, id);
        assert_eq!(entry.data, format!("b{n}").into_bytes());
        assert_eq!(entry.event.as_deref(), Some("item"));
    }
}

#[tokio::test]
async fn a_batch_spans_topics() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let events: Vec<Value> = (0..6)
        .map(|n| {
            let topic = if n % 2 == 0 { "even" } else { "odd" };
            json!({"topic": topic, "data": n})
        })
        .collect();
    let body = publisher.publish_created(&Value::Array(events)).await;
    let batch: Vec<String> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();

    let even: Vec<String> = batch.iter().step_by(2).cloned().collect();
    let odd: Vec<String> = batch.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(ids(&redis, "even"), even);
    assert_eq!(ids(&redis, "odd"), odd);
    assert_strictly_increasing(&even);
    assert_strictly_increasing(&odd);
    let data = |topic| -> Vec<Vec<u8>> {
        entries(&redis, topic)
            .into_iter()
            .map(|entry| entry.data)
            .collect()
    };
    assert_eq!(data("even"), [b"0", b"2", b"4"]);
    assert_eq!(data("odd"), [b"1", b"3", b"5"]);
}

#[tokio::test]
async fn the_library_publishes_events_and_batches() {
    let redis = RedisServer::start();
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..RedisFlags::default()
    };
    let publisher = Publisher::connect(&options, Retention::default())
        .await
        .unwrap();
    let orders = Topic::parse("orders").unwrap();
    let audit = Topic::parse("audit").unwrap();

    let first = publisher
        .publish(&Event::new(orders.clone(), "one").named(EventName::parse("created").unwrap()))
        .await
        .unwrap();
    let batch = publisher
        .publish_batch(&[
            Event::new(orders.clone(), "two"),
            Event::new(audit.clone(), "seen"),
            Event::new(orders.clone(), "three"),
        ])
        .await
        .unwrap();
    let empty = publisher.publish_batch(&[]).await.unwrap();

    assert!(empty.is_empty());
    assert_eq!(batch.len(), 3);
    assert!(
        first < batch[0] && batch[0] < batch[2],
        "ids increase per topic"
    );
    let stored = entries(&redis, "orders");
    let stored: Vec<(String, &[u8], Option<&str>)> = stored
        .iter()
        .map(|entry| (entry.id.clone(), &entry.data[..], entry.event.as_deref()))
        .collect();
    assert_eq!(
        stored,
        [
            (first.to_string(), &b"one"[..], Some("created")),
            (batch[0].to_string(), &b"two"[..], None),
            (batch[2].to_string(), &b"three"[..], None),
        ]
    );
    assert_eq!(ids(&redis, "audit"), [batch[1].to_string()]);
}

#[tokio::test]
async fn http_and_library_publishes_share_one_order() {
    let redis = RedisServer::start();
    let service = start_publisher(&redis, &[]);
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..RedisFlags::default()
    };
    let library = Publisher::connect(&options, Retention::default())
        .await
        .unwrap();
    let topic = Topic::parse("shared").unwrap();

    let mut published = Vec::new();
    for n in 0..10 {
        if n % 2 == 0 {
            published.push(service.publish_one("shared", "http").await);
        } else {
            let id = library
                .publish(&Event::new(topic.clone(), "library"))
                .await
                .unwrap();
            published.push(id.to_string());
        }
    }

    assert_strictly_increasing(&published);
    assert_eq!(ids(&redis, "shared"), published);
}

#[tokio::test]
async fn anonymous_publishing_works_only_when_allowed() {
    let redis = RedisServer::start();
    let url = redis.url();
    let publisher = start_publisher_with(&["--redis-url", &url, "--allow-anonymous"]);

    let reply = publisher
        .post_json(r#"{"topic": "open", "data": 1}"#, None)
        .await;

    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(ids(&redis, "open"), [reply.json()["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn json_content_types_with_parameters_are_accepted() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let auth = format!("Bearer {TOKEN}");

    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let reply = publisher
            .post_with_headers(
                r#"{"topic": "typed", "data": 1}"#,
                &[("content-type", content_type), ("authorization", &auth)],
            )
            .await;
        assert_eq!(reply.status, 201, "{content_type}: {reply:?}");
    }
    assert_eq!(xlen(&redis, "typed"), 2);
}

#[tokio::test]
async fn health_and_readiness_are_reported() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let health = publisher.get("/healthz").await;
    let ready = publisher.get("/readyz").await;

    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
}

#[tokio::test]
async fn a_stopped_service_returns_ok_and_stops_listening() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    publisher.publish_one("before-stop", "x").await;
    let addr = publisher.addr;

    publisher.stop().unwrap();

    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed after shutdown"
    );
}

#[tokio::test]
async fn with_retention_idle_each_publish_sets_the_histories_expiry_and_without_it_none() {
    let redis = RedisServer::start();
    let ttl = |topic: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(harness::key(topic))
            .query(&mut redis.connection())
            .expect("PTTL")
    };
    let idle = start_publisher(&redis, &["--retention-idle", "1h"]);
    idle.publish_one("idle", "a").await;
    assert!(
        (3_590_000..=3_600_000).contains(&ttl("idle")),
        "{} ms",
        ttl("idle")
    );
    let keeping = start_publisher(&redis, &[]);
    keeping.publish_one("kept", "a").await;
    assert_eq!(ttl("kept"), -1, "no expiry without --retention-idle");
}
