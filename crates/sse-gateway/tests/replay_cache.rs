//! Resumes in a reconnect storm: served from the node's recent events without a Redis read
//! when the node holds the position, read from the stream otherwise, and, when read, one read
//! per page for every client resuming a topic together. Redis's own `INFO commandstats`
//! counts the reads, so these tests see what Redis was asked, not what the node says it did.

mod harness;

use harness::{
    PATIENCE, cut_pubsub, publish, publisher, publisher_keeping, restore_pubsub, start_gateway,
};
use sse_testkit::{RedisServer, SseClient, eventually};

/// Calls of `command` Redis has served (`INFO commandstats`).
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a number of calls"))
}

/// The history reads Redis has served: what a resume from Redis costs.
fn reads(redis: &RedisServer) -> u64 {
    ["xrange", "xrevrange", "xinfo|stream"]
        .iter()
        .map(|command| calls(redis, command))
        .sum()
}

/// Waits until `client` got the events `expected` (data), in order, and nothing else first.
async fn gets(client: &mut SseClient, expected: &[String]) {
    let data: Vec<String> = client
        .events(expected.len(), PATIENCE)
        .await
        .into_iter()
        .map(|event| event.data)
        .collect();
    assert_eq!(data, expected);
}

#[tokio::test]
async fn a_resume_inside_the_recent_events_reads_nothing_from_redis() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut live = gateway.subscribe(&["recent"]).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(publish(&publisher, "recent", None, &n.to_string()).await);
    }
    let all: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    gets(&mut live, &all).await; // the node has them all

    let before = reads(&redis);
    let mut client = gateway.resume("/events?topic=recent", &ids[5]).await;
    gets(&mut client, &all[6..]).await;
    let up_to_date = gateway.resume("/events?topic=recent", &ids[19]).await;
    let next = publish(&publisher, "recent", None, "next").await;
    let mut up_to_date = up_to_date;
    let event = up_to_date.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("next", next));
    assert_eq!(reads(&redis), before, "no history read reached Redis");
    assert_eq!(
        gateway
            .metric(r#"sse_replays_total{source="memory"}"#)
            .await,
        2
    );
    assert_eq!(
        gateway.metric(r#"sse_replays_total{source="redis"}"#).await,
        0
    );
}

#[tokio::test]
async fn a_resume_older_than_the_recent_events_reads_the_stream_exactly() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--replay-cache-events", "5"]);
    let publisher = publisher(&redis).await;
    let mut live = gateway.subscribe(&["older"]).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(publish(&publisher, "older", None, &n.to_string()).await);
    }
    let all: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    gets(&mut live, &all).await;

    let before = calls(&redis, "xrange");
    let mut client = gateway.resume("/events?topic=older", &ids[2]).await;
    gets(&mut client, &all[3..]).await;
    assert!(calls(&redis, "xrange") > before, "read from the stream");
    assert_eq!(
        gateway.metric(r#"sse_replays_total{source="redis"}"#).await,
        1
    );
    // The newest five are still served from memory.
    let mut recent = gateway.resume("/events?topic=older", &ids[15]).await;
    gets(&mut recent, &all[16..]).await;
    assert_eq!(
        gateway
            .metric(r#"sse_replays_total{source="memory"}"#)
            .await,
        1
    );
}

#[tokio::test]
async fn a_topic_stays_subscribed_for_the_linger_so_clients_that_all_left_resume_from_memory() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--replay-cache-linger", "1h"]);
    let publisher = publisher(&redis).await;
    let mut client = gateway.subscribe(&["blip"]).await;
    let first = publish(&publisher, "blip", None, "0").await;
    gets(&mut client, &["0".to_owned()]).await;
    drop(client); // the node's only client of the topic
    eventually("the client left", PATIENCE, || async {
        (gateway.metric("sse_connections_active").await == 0).then_some(())
    })
    .await;
    let missed: Vec<String> = (1..6).map(|n| n.to_string()).collect();
    for data in &missed {
        publish(&publisher, "blip", None, data).await;
    }
    assert_eq!(harness::numsub(&redis, "blip"), 1, "still subscribed");

    let before = reads(&redis);
    let mut back = gateway.resume("/events?topic=blip", &first).await;
    gets(&mut back, &missed).await;
    assert_eq!(reads(&redis), before, "served from memory");
}

#[tokio::test]
async fn without_a_linger_the_last_client_leaving_unsubscribes() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--replay-cache-linger", "0s"]);
    let client = gateway.subscribe(&["gone"]).await;
    assert_eq!(harness::numsub(&redis, "gone"), 1);
    drop(client);
    eventually("unsubscribed", PATIENCE, || async {
        (harness::numsub(&redis, "gone") == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resumes_of_one_topic_share_their_reads() {
    const CLIENTS: usize = 200;
    let redis = RedisServer::start();
    // Every resume reads Redis: no recent events in memory.
    let gateway = start_gateway(
        &redis,
        &["--replay-cache-events", "0", "--max-connections", "1000"],
    );
    let publisher = publisher(&redis).await;
    let _live = gateway.subscribe(&["herd"]).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(publish(&publisher, "herd", None, &n.to_string()).await);
    }
    let before = calls(&redis, "xrange");
    // Redis answers nothing for a moment: the resumes pile up as in a storm.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query(&mut redis.connection())
        .expect("CLIENT PAUSE");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(gateway.resume("/events?topic=herd", &ids[0]).await);
    }
    let expected: Vec<String> = (1..12).map(|n| n.to_string()).collect();
    for client in &mut clients {
        gets(client, &expected).await;
    }
    let xranges = calls(&redis, "xrange") - before;
    assert!(
        xranges <= 10,
        "{CLIENTS} resumes from one position cost {xranges} XRANGE calls"
    );
    assert!(gateway.metric("sse_replay_reads_coalesced_total").await >= CLIENTS as u64 - 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gap_fill_a_resume_from_memory_is_still_exact() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut live = gateway.subscribe(&["mended"]).await;
    let before_cut = publish(&publisher, "mended", None, "0").await;
    gets(&mut live, &["0".to_owned()]).await;

    cut_pubsub(&redis, &gateway).await;
    let mut missed: Vec<String> = (1..6).map(|n| n.to_string()).collect();
    for data in &missed {
        publish(&publisher, "mended", None, data).await;
    }
    restore_pubsub(&redis, &gateway).await;
    gets(&mut live, &missed).await; // from the gap fill, with nothing before them
    assert_eq!(gateway.metric("sse_gap_filled_events_total").await, 5);
    publish(&publisher, "mended", None, "6").await;
    missed.push("6".to_owned());
    gets(&mut live, &missed[5..]).await; // live again: the gap fill is over

    let before = reads(&redis);
    let mut back = gateway.resume("/events?topic=mended", &before_cut).await;
    gets(&mut back, &missed).await;
    assert_eq!(reads(&redis), before, "served from memory, across the gap");
    assert_eq!(
        gateway
            .metric(r#"sse_replays_total{source="memory"}"#)
            .await,
        1
    );
    assert_eq!(gateway.metric("sse_history_truncated_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_the_stream_no_longer_holds_is_told_never_served_from_memory() {
    let redis = RedisServer::start();
    harness::trim_exactly(&redis);
    let gateway = start_gateway(&redis, &["--replay-cache-events", "4"]);
    let publisher = publisher_keeping(&redis, 4).await;
    let mut live = gateway.subscribe(&["outlasted"]).await;
    let before_cut = publish(&publisher, "outlasted", None, "0").await;
    gets(&mut live, &["0".to_owned()]).await;

    cut_pubsub(&redis, &gateway).await;
    let mut ids = Vec::new();
    for n in 1..=10 {
        ids.push(publish(&publisher, "outlasted", None, &n.to_string()).await);
    }
    restore_pubsub(&redis, &gateway).await;
    let retained: Vec<String> = (7..=10).map(|n| n.to_string()).collect();
    let notice = format!(r#"{{"topic":"outlasted","reason":"trimmed","from":"{before_cut}"}}"#);

    // The live client is told, between the last event before the gap and the first after.
    let told = live.next_event(PATIENCE).await;
    assert_eq!(
        (told.event_type.as_str(), told.data.as_str()),
        ("sse.truncated", notice.as_str())
    );
    assert_eq!(told.last_event_id, before_cut, "the notice carries no id");
    gets(&mut live, &retained).await;

    // A resume from before the gap is not served from memory: Redis says what is missing.
    let before = reads(&redis);
    let mut back = gateway.resume("/events?topic=outlasted", &before_cut).await;
    let told = back.next_event(PATIENCE).await;
    assert_eq!(
        (told.event_type.as_str(), told.data.as_str()),
        ("sse.truncated", notice.as_str())
    );
    gets(&mut back, &retained).await;
    assert!(reads(&redis) > before, "read from the stream");

    // What the node read after the gap is contiguous again: a resume inside it is exact.
    let before = reads(&redis);
    let mut recent = gateway.resume("/events?topic=outlasted", &ids[6]).await;
    gets(&mut recent, &retained[1..]).await;
    assert_eq!(reads(&redis), before, "served from memory");
    assert_eq!(gateway.metric("sse_history_truncated_total").await, 2);
}
