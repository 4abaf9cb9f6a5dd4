//! Resuming: a client that comes back with its last event id, on the same node or another,
//! gets exactly what it missed; one whose position cannot be continued is told so first.

mod harness;

use std::time::Duration;

use harness::feed::Feed;
use harness::{PATIENCE, publish, publisher, publisher_keeping, publisher_with, start_gateway};
use sse_core::schema::Retention;
use sse_core::{Cursor, Event, Topic};
use sse_testkit::{RedisServer, eventually};

/// The `sse.truncated` data the gateway documents.
fn truncated(topic: &str, reason: &str, from: &str) -> String {
    format!(r#"{{"topic":"{topic}","reason":"{reason}","from":"{from}"}}"#)
}

fn topic(name: &str) -> Topic {
    Topic::parse(name).expect("tests use valid topics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_by_header_on_any_node_loses_and_repeats_nothing() {
    let redis = RedisServer::start();
    let node_a = start_gateway(&redis, &[]);
    // Small replay pages, so that a replay spans several.
    let node_b = start_gateway(&redis, &["--replay-page", "3"]);
    let path = "/events?topic=feed";
    let mut client = node_a.subscribe(&["feed"]).await;
    let feed = Feed::start(publisher(&redis).await, &["feed"]);

    let mut received = Vec::new();
    // From A to A again, then to B, then to B again: each time gone while events are published.
    for node in [&node_a, &node_b, &node_b] {
        received.extend(client.events(20, PATIENCE).await);
        let last = client.last_event_id().to_owned();
        drop(client);
        feed.wait_for(10).await;
        client = node.resume(path, &last).await;
    }
    received.extend(client.events(20, PATIENCE).await);
    let ids = feed.stop().await.remove(0);
    let rest = ids.len() - received.len();
    received.extend(client.events(rest, PATIENCE).await);

    for (n, (event, id)) in received.iter().zip(&ids).enumerate() {
        assert_eq!(event.event_type, "message");
        assert_eq!(
            event.data,
            format!("feed:{n}"),
            "every event once, in order"
        );
        assert_eq!(&event.last_event_id, id);
    }
}

#[tokio::test]
async fn a_first_connection_resumes_from_the_last_event_id_query_parameter() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&publisher, "q", None, &n.to_string()).await);
    }

    let mut client = gateway
        .get(&format!("/events?topic=q&lastEventId={}", ids[1]), &[])
        .await;
    assert_eq!(client.status(), 200);
    let events = client.events(3, PATIENCE).await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.data.as_str(), e.last_event_id.as_str()))
        .collect();
    assert_eq!(seen, [("2", &*ids[2]), ("3", &*ids[3]), ("4", &*ids[4])]);
    let live = publish(&publisher, "q", None, "5").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("5", live));

    // A reconnecting browser sends the header and keeps the URL: the header wins.
    let mut client = gateway
        .get(
            &format!("/events?topic=q&lastEventId={}", ids[0]),
            &[("Last-Event-ID", ids[3].as_str())],
        )
        .await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("4", &*ids[4])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_topic_cursor_resumes_every_topic_exactly_on_another_node() {
    let redis = RedisServer::start();
    let node_a = start_gateway(&redis, &[]);
    // Small replay pages, so that a replay spans several.
    let node_b = start_gateway(&redis, &["--replay-page", "3"]);
    let path = "/events?topic=left&topic=right";
    let topics = [topic("left"), topic("right")];
    let mut client = node_a.subscribe(&["left", "right"]).await;
    let feed = Feed::start(publisher(&redis).await, &["left", "right"]);

    let mut received = Vec::new();
    // From A to B and back to A, each time gone while both topics move on.
    for node in [&node_b, &node_a] {
        received.extend(client.events(20, PATIENCE).await);
        let cursor = client.last_event_id().to_owned();
        drop(client);
        feed.wait_for(10).await;
        client = node.resume(path, &cursor).await;
    }
    received.extend(client.events(10, PATIENCE).await);
    let ids = feed.stop().await;
    let rest = ids[0].len() + ids[1].len() - received.len();
    received.extend(client.events(rest, PATIENCE).await);

    let mut seen: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for event in &received {
        assert_eq!(event.event_type, "message", "{}", event.data);
        let (name, n) = event.data.split_once(':').expect("data is <topic>:<n>");
        let i = usize::from(name == "right");
        assert_eq!(n, seen[i].len().to_string(), "{name}: no gap, no duplicate");
        seen[i].push(ids[i][seen[i].len()].clone());
        let cursor = Cursor::decode(&event.last_event_id, &topics).unwrap();
        let position = cursor.get(&topics[i]).map(|id| id.to_string());
        assert_eq!(position.as_deref(), seen[i].last().map(String::as_str));
    }
    assert_eq!(seen.to_vec(), ids);
}

#[tokio::test]
async fn a_position_trimmed_away_gets_a_truncated_event_then_everything_retained() {
    let redis = RedisServer::start();
    harness::trim_exactly(&redis);
    // A replay cache must keep fewer events than the streams retain (README): then a
    // position it holds is still in the stream.
    let gateway = start_gateway(
        &redis,
        &[
            "--replay-page",
            "4",
            "--retry-jitter",
            "0s",
            "--replay-cache-events",
            "4",
        ],
    );
    let publisher = publisher_keeping(&redis, 10).await;
    let seed = publish(&publisher, "kept", None, "seed").await;
    let client = gateway.subscribe(&["kept"]).await;
    assert_eq!(client.last_event_id(), seed);
    drop(client);

    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(publish(&publisher, "kept", None, &n.to_string()).await);
    }
    let len: u64 = redis::cmd("XLEN")
        .arg("sse:{kept}:stream")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(len, 10, "retention keeps exactly 10 events");

    let mut client = gateway.resume("/events?topic=kept", &seed).await;
    let notice = client.next_event(PATIENCE).await;
    assert_eq!(notice.event_type, "sse.truncated");
    assert_eq!(notice.data, truncated("kept", "trimmed", &seed));
    let control = format!(
        "retry: 1000\n\n: stream open\n\nevent: sse.truncated\ndata: {}\n\n",
        truncated("kept", "trimmed", &seed)
    );
    assert!(
        client.raw().starts_with(control.as_bytes()),
        "the control event carries no id: {:?}",
        String::from_utf8_lossy(client.raw())
    );
    let events = client.events(10, PATIENCE).await;
    for (event, n) in events.iter().zip(20..30) {
        assert_eq!(event.event_type, "message");
        assert_eq!(event.data, n.to_string());
        assert_eq!(event.last_event_id, ids[n]);
    }
    let live = publish(&publisher, "kept", None, "live").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("live", live));
}

#[tokio::test]
async fn a_multi_topic_resume_truncates_only_the_topic_that_was_trimmed() {
    let redis = RedisServer::start();
    harness::trim_exactly(&redis);
    // Fewer cached events than retained, as the README requires.
    let gateway = start_gateway(&redis, &["--replay-cache-events", "4"]);
    let publisher = publisher_keeping(&redis, 5).await;
    publish(&publisher, "busy", None, "seed").await;
    let client = gateway.subscribe(&["busy", "calm"]).await;
    let cursor = client.last_event_id().to_owned();
    drop(client);

    let mut busy = Vec::new();
    for n in 0..12 {
        busy.push(publish(&publisher, "busy", None, &format!("busy:{n}")).await);
    }
    let calm = [
        publish(&publisher, "calm", None, "calm:0").await,
        publish(&publisher, "calm", None, "calm:1").await,
    ];

    let topics = [topic("busy"), topic("calm")];
    let position = |id: &str, i: usize| {
        let cursor = Cursor::decode(id, &topics).unwrap();
        cursor.get(&topics[i]).unwrap().to_string()
    };
    let from = position(&cursor, 0);
    let mut client = gateway
        .resume("/events?topic=busy&topic=calm", &cursor)
        .await;
    let events = client.events(1 + 5 + 2, PATIENCE).await;
    assert_eq!(events[0].event_type, "sse.truncated");
    assert_eq!(events[0].data, truncated("busy", "trimmed", &from));
    let mut seen: [Vec<(String, String)>; 2] = [Vec::new(), Vec::new()];
    for event in &events[1..] {
        assert_eq!(event.event_type, "message", "one control event only");
        let i = usize::from(event.data.starts_with("calm:"));
        seen[i].push((event.data.clone(), position(&event.last_event_id, i)));
    }
    let busy_retained: Vec<(String, String)> = (7..12)
        .map(|n| (format!("busy:{n}"), busy[n].clone()))
        .collect();
    assert_eq!(
        seen[0], busy_retained,
        "everything retained of the trimmed topic"
    );
    let calm_missed: Vec<(String, String)> = (0..2)
        .map(|n| (format!("calm:{n}"), calm[n].clone()))
        .collect();
    assert_eq!(seen[1], calm_missed, "the other topic continues exactly");
}

#[tokio::test]
async fn a_forged_position_gets_an_unknown_position_event_then_everything_retained() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&publisher, "f", None, &n.to_string()).await);
    }

    let forged = "99999999999999-0";
    let mut client = gateway.resume("/events?topic=f", forged).await;
    let notice = client.next_event(PATIENCE).await;
    assert_eq!(notice.event_type, "sse.truncated");
    assert_eq!(notice.data, truncated("f", "unknown-position", forged));
    for (n, event) in client.events(5, PATIENCE).await.iter().enumerate() {
        assert_eq!(
            (event.data.as_str(), &event.last_event_id),
            (&*n.to_string(), &ids[n])
        );
    }
    let live = publish(&publisher, "f", None, "live").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("live", live));
}

#[tokio::test]
async fn a_position_in_a_history_that_expired_while_idle_gets_an_unknown_position_event() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let idle = Duration::from_millis(300);
    let publisher = publisher_with(
        &redis,
        Retention {
            max_idle: Some(idle),
            ..Retention::default()
        },
    )
    .await;
    let mut last = String::new();
    for n in 0..3 {
        last = publish(&publisher, "idle", None, &format!("old {n}")).await;
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg("sse:{idle}:stream")
        .query(&mut redis.connection())
        .expect("PTTL");
    assert!(
        (1..=300).contains(&ttl),
        "the last append set the expiry: {ttl} ms"
    );
    sse_testkit::wait_until("the idle topic's history expires", PATIENCE, || {
        let exists: bool = redis::cmd("EXISTS")
            .arg("sse:{idle}:stream")
            .query(&mut redis.connection())
            .expect("EXISTS");
        !exists
    });
    let after = publish(&publisher, "idle", None, "after").await;

    let mut client = gateway.resume("/events?topic=idle", &last).await;
    let notice = client.next_event(PATIENCE).await;
    assert_eq!(notice.event_type, "sse.truncated");
    assert_eq!(notice.data, truncated("idle", "unknown-position", &last));
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("after", after));
}

#[tokio::test]
async fn a_position_from_before_redis_lost_its_data_is_not_taken_as_a_continuation() {
    let mut redis = RedisServer::start(); // no persistence: a restart starts empty
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut client = gateway.subscribe(&["lost"]).await;
    for n in 0..3 {
        publish(&publisher, "lost", None, &format!("old {n}")).await;
    }
    let old = client.events(3, PATIENCE).await;
    let last = old[2].last_event_id.clone();
    drop(client);

    redis.kill();
    redis.restart();
    let mut ids = Vec::new();
    for n in 0..3 {
        let event = Event::new(topic("lost"), format!("new {n}"));
        let id = eventually("the publisher reaches the new redis", PATIENCE, || async {
            publisher.publish(&event).await.ok()
        })
        .await;
        ids.push(id.to_string());
    }
    eventually("the node is back on redis", PATIENCE, || async {
        (gateway.fetch("/readyz").await.0 == 200).then_some(())
    })
    .await;

    let mut client = gateway.resume("/events?topic=lost", &last).await;
    let notice = client.next_event(PATIENCE).await;
    assert_eq!(notice.event_type, "sse.truncated");
    assert_eq!(notice.data, truncated("lost", "unknown-position", &last));
    for (n, event) in client.events(3, PATIENCE).await.iter().enumerate() {
        assert_eq!(event.data, format!("new {n}"));
        assert_eq!(event.last_event_id, ids[n]);
    }
    let live = publish(&publisher, "lost", None, "live").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("live", live));
}

#[tokio::test]
async fn resuming_from_zero_replays_the_whole_untrimmed_history_without_notice() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&publisher, "all", None, &n.to_string()).await);
    }

    let mut client = gateway.resume("/events?topic=all", "0-0").await;
    for (n, event) in client.events(5, PATIENCE).await.iter().enumerate() {
        assert_eq!(event.event_type, "message", "no control event");
        assert_eq!(
            (event.data.as_str(), &event.last_event_id),
            (&*n.to_string(), &ids[n])
        );
    }
    // A topic that has no stream yet: nothing to replay, nothing truncated, then live.
    let mut empty = gateway.resume("/events?topic=none", "0-0").await;
    let live = publish(&publisher, "none", None, "first").await;
    let event = empty.next_event(PATIENCE).await;
    assert_eq!(event.event_type, "message");
    assert_eq!((event.data.as_str(), event.last_event_id), ("first", live));
}

#[tokio::test]
async fn an_entry_written_into_the_stream_by_hand_that_is_no_event_is_skipped_on_replay() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let before = publish(&publisher, "hand", None, "before").await;
    // Anyone can write to Redis: an entry without a `data` field, and one with a reserved name.
    // sse-core's schema/payload.rs: a malformed entry is "for the reader to count and skip".
    for fields in [
        &["note", "no data"][..],
        &["data", "x", "event", "sse.truncated"],
    ] {
        redis::cmd("XADD")
            .arg("sse:{hand}:stream")
            .arg("*")
            .arg(fields)
            .exec(&mut redis.connection())
            .unwrap();
    }
    let after = publish(&publisher, "hand", None, "after").await;

    let mut client = gateway.resume("/events?topic=hand", "0-0").await;
    let events = client.events(2, PATIENCE).await;
    let seen = harness::triples(&events);
    assert_eq!(
        seen,
        [
            ("message", "before", before.as_str()),
            ("message", "after", after.as_str())
        ]
    );
    let live = publish(&publisher, "hand", None, "live").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("live", live));
}

/// `--max-concurrent-replays 1`: while Redis holds the one read in progress (`CLIENT PAUSE`),
/// every other resume waits for its turn (`sse_replays_waiting`) rather than failing, and
/// once Redis answers again each client receives exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_beyond_the_concurrent_replay_limit_wait_their_turn_and_lose_nothing() {
    const CLIENTS: usize = 10;
    let redis = RedisServer::start();
    // Every client reads Redis (no replay cache), each from a position of its own (resumes
    // from one position would share their reads).
    let gateway = start_gateway(
        &redis,
        &[
            "--max-concurrent-replays",
            "1",
            "--replay-page",
            "4",
            "--replay-cache-events",
            "0",
        ],
    );
    let publisher = publisher(&redis).await;
    // The node's subscription to the topic is up before Redis pauses.
    let _live = gateway.subscribe(&["queued"]).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(publish(&publisher, "queued", None, &n.to_string()).await);
    }
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query(&mut redis.connection())
        .expect("CLIENT PAUSE");
    let mut clients = Vec::new();
    for from in &ids[..CLIENTS] {
        clients.push(gateway.resume("/events?topic=queued", from).await);
    }
    eventually("every resume but one waits", PATIENCE, || async {
        let waiting = gateway.metric("sse_replays_waiting").await;
        (waiting == CLIENTS as u64 - 1).then_some(())
    })
    .await;
    for (from, client) in clients.iter_mut().enumerate() {
        let data: Vec<String> = client
            .events(11 - from, PATIENCE)
            .await
            .into_iter()
            .map(|event| event.data)
            .collect();
        let expected: Vec<String> = (from + 1..12).map(|n| n.to_string()).collect();
        assert_eq!(data, expected);
    }
    assert_eq!(gateway.metric("sse_replays_waiting").await, 0);
}
