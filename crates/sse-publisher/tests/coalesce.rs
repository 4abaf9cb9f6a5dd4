//! Grouped single-event publishes (`Publisher::grouped`, `--group-publishes`): many concurrent publishes through one
//! `Publisher` share pipelines, yet each gets its own id or its own error, every event is in
//! its stream exactly once, and an outage answers every waiting caller.

mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use harness::{PATIENCE, entries, key};
use sse_core::schema::Retention;
use sse_core::{Event, Topic};
use sse_publisher::{PublishError, Publisher, RedisFlags};
use sse_testkit::{RedisServer, eventually};

async fn library(redis: &RedisServer) -> Publisher {
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(2),
        ..RedisFlags::default()
    };
    Publisher::connect(&options, Retention::default())
        .await
        .expect("connect")
        .grouped()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_publishes_each_land_once_under_their_own_id() {
    let redis = RedisServer::start();
    let publisher = Arc::new(library(&redis).await);
    let topics = ["t0", "t1", "t2", "t3"];

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..64 {
        let publisher = publisher.clone();
        tasks.spawn(async move {
            let mut sent = Vec::new();
            for n in 0..32 {
                let topic = topics[(task + n) % topics.len()];
                let data = format!("{task}/{n}");
                let event = Event::new(Topic::parse(topic).unwrap(), data.clone());
                let id = publisher.publish(&event).await.expect("publish");
                sent.push((topic, id.to_string(), data));
            }
            sent
        });
    }
    let mut sent = Vec::new();
    while let Some(done) = tasks.join_next().await {
        sent.extend(done.unwrap());
    }

    assert_eq!(sent.len(), 64 * 32);
    let unique: HashSet<(&str, &str)> = sent.iter().map(|(t, id, _)| (*t, id.as_str())).collect();
    assert_eq!(unique.len(), sent.len(), "every publish got its own id");
    for topic in topics {
        let stored = entries(&redis, topic);
        let expected: HashMap<&str, &str> = sent
            .iter()
            .filter(|(t, _, _)| *t == topic)
            .map(|(_, id, data)| (id.as_str(), data.as_str()))
            .collect();
        assert_eq!(stored.len(), expected.len(), "{topic}: each event once");
        for entry in &stored {
            assert_eq!(
                expected.get(entry.id.as_str()).map(|d| d.as_bytes()),
                Some(entry.data.as_slice()),
                "{topic}: {} holds what was published under it",
                entry.id
            );
        }
        // Per task, a topic's events are in the stream in the order that task published them.
        let position: HashMap<&str, usize> = stored
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.as_str(), i))
            .collect();
        for task in 0..64 {
            let prefix = format!("{task}/");
            let order: Vec<usize> = sent
                .iter()
                .filter(|(t, _, data)| *t == topic && data.starts_with(&prefix))
                .map(|(_, id, _)| position[id.as_str()])
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "{topic}, task {task}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refused_publish_fails_alone_among_concurrent_ones() {
    let redis = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg(key("broken"))
        .arg("not a stream")
        .query(&mut redis.connection())
        .expect("SET");
    let publisher = Arc::new(library(&redis).await);

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..400 {
        let publisher = publisher.clone();
        let topic = if n % 100 == 50 { "broken" } else { "fine" };
        tasks.spawn(async move {
            let event = Event::new(Topic::parse(topic).unwrap(), format!("{n}"));
            (topic, publisher.publish(&event).await)
        });
    }
    let mut written = 0;
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            ("fine", Ok(_)) => written += 1,
            ("broken", Err(PublishError::Refused(_))) => refused += 1,
            (topic, other) => panic!("{topic}: {other:?}"),
        }
    }
    assert_eq!((written, refused), (396, 4));
    assert_eq!(entries(&redis, "fine").len(), 396);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_mid_load_answers_every_caller_and_acknowledges_only_what_is_stored() {
    let mut redis = RedisServer::start_with_aof();
    let publisher = Arc::new(library(&redis).await);
    let topic = Topic::parse("outage").unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..32 {
        let publisher = publisher.clone();
        let topic = topic.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for n in 0..200 {
                let event = Event::new(topic.clone(), format!("{task}/{n}"));
                match publisher.publish(&event).await {
                    Ok(id) => acked.push(id.to_string()),
                    // Answered with an error: this caller stops, as a client would back off.
                    Err(_) => break,
                }
            }
            acked
        });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    redis.kill();
    let mut acked = Vec::new();
    // Every caller is answered: the wait only bounds a hang.
    tokio::time::timeout(PATIENCE, async {
        while let Some(done) = tasks.join_next().await {
            acked.extend(done.unwrap());
        }
    })
    .await
    .expect("every publish was answered while Redis was down");

    redis.restart();
    let stored: HashSet<String> = entries(&redis, "outage")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    let again = Event::new(topic, "after the outage");
    eventually("a publish succeeds again", PATIENCE, || async {
        publisher.publish(&again).await.ok()
    })
    .await;
}
