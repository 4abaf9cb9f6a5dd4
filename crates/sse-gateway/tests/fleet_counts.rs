//! Subscriber counts across the fleet (`sse_core::schema::counts`): every node writes its
//! share to Redis each `--count-refresh`, and `Publisher::topic_info` (the publisher's
//! `GET /v1/topics/<topic>`) adds up the shares of the nodes alive. Exact once the nodes have
//! refreshed; a node killed without a word drops out within three refreshes; after Redis lost
//! its data the nodes write their counts again; a topic's count is one field per node however
//! many streams it has there.

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{PATIENCE, publisher, start_gateway};
use sse_core::Topic;
use sse_publisher::{Publisher, TopicInfo};
use sse_testkit::{RedisServer, SseClient, eventually, free_port};

const REFRESH: &str = "200ms";

fn topic(name: &str) -> Topic {
    Topic::parse(name).expect("a valid topic")
}

/// Waits until `topic` counts `subscribers` streams on `nodes` nodes, and returns the info.
async fn counts(publisher: &Publisher, name: &str, subscribers: u64, nodes: u64) -> TopicInfo {
    let topic = topic(name);
    eventually(
        &format!("{name} counts {subscribers} streams on {nodes} nodes"),
        PATIENCE,
        || async {
            let info = publisher.topic_info(&topic).await.ok()?;
            (info.subscribers == subscribers && info.nodes == nodes).then_some(info)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_add_up_over_the_nodes_as_clients_come_and_go() {
    let redis = RedisServer::start();
    let nodes: Vec<_> = (0..3)
        .map(|_| start_gateway(&redis, &["--count-refresh", REFRESH]))
        .collect();
    let publisher = publisher(&redis).await;
    assert_eq!(
        publisher.topic_info(&topic("never")).await.expect("info"),
        TopicInfo::default(),
        "a topic nobody listens to is all zeros"
    );

    let a1 = nodes[0].subscribe(&["shared"]).await;
    let _a2 = nodes[0].subscribe(&["shared", "other"]).await;
    let b1 = nodes[1].subscribe(&["shared"]).await;
    counts(&publisher, "shared", 3, 2).await;
    counts(&publisher, "other", 1, 1).await;

    drop(a1);
    counts(&publisher, "shared", 2, 2).await;
    drop(b1);
    counts(&publisher, "shared", 1, 1).await;
    let _c = nodes[2].subscribe(&["shared"]).await;
    counts(&publisher, "shared", 2, 2).await;

    // A node that stops removes its share at once: its clients are leaving.
    let mut nodes = nodes;
    nodes.remove(2).stop().expect("the node stops");
    counts(&publisher, "shared", 1, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_without_a_word_drops_out_within_three_refreshes() {
    let redis = RedisServer::start();
    let survivor = start_gateway(&redis, &["--count-refresh", "1s"]);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .args(["--listen", &addr.to_string(), "--redis-url", &redis.url()])
        .args(["--count-refresh", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sse-gateway");
    let publisher = publisher(&redis).await;
    let _kept = survivor.subscribe(&["k"]).await;
    let mut gone = Vec::new();
    for _ in 0..2 {
        let mut client = eventually("the process serves a stream", PATIENCE, || async {
            let client = SseClient::try_get(addr, "/events?topic=k", &[])
                .await
                .ok()?;
            (client.status() == 200).then_some(client)
        })
        .await;
        client.position(PATIENCE).await;
        gone.push(client);
    }
    counts(&publisher, "k", 3, 2).await;

    doomed.kill().expect("SIGKILL the node");
    let killed = Instant::now();
    let _ = doomed.wait();
    counts(&publisher, "k", 1, 1).await;
    let after = killed.elapsed();
    eprintln!("the killed node's streams left the count {after:?} after SIGKILL (refresh 1 s)");
    assert!(
        after >= Duration::from_secs(1),
        "dropped after {after:?}: before its alive key could expire, so not by expiry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_redis_lost_its_data_the_nodes_write_their_counts_again() {
    let mut redis = RedisServer::start(); // no persistence: a restart starts empty
    let node = start_gateway(&redis, &["--count-refresh", REFRESH]);
    let publisher = publisher(&redis).await;
    let _clients = [node.subscribe(&["r"]).await, node.subscribe(&["r"]).await];
    counts(&publisher, "r", 2, 1).await;

    redis.kill();
    redis.restart();
    // The counts are gone with the data; the node's next refresh finds its alive key
    // missing and writes everything again.
    counts(&publisher, "r", 2, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_streams_on_one_topic_are_one_field_written_once() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &["--count-refresh", REFRESH]);
    let publisher = publisher(&redis).await;
    let mut clients = Vec::new();
    for _ in 0..300 {
        clients.push(node.get("/events?topic=crowd", &[]).await);
    }
    let before = hset_calls(&redis);
    let info = counts(&publisher, "crowd", 300, 1).await;
    assert_eq!(info.nodes, 1);
    // Several refreshes later, with nothing changed, nothing more was written.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = hset_calls(&redis) - before;
    assert!(
        written <= 3,
        "{written} HSETs for 300 streams: one per refresh that saw a change, not one per stream"
    );
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg("sse:{crowd}:subscribers")
        .query(&mut redis.connection())
        .expect("HKEYS");
    assert_eq!(fields.len(), 1, "one field for the node: {fields:?}");
}

/// `HSET` calls Redis served so far (`INFO commandstats`).
fn hset_calls(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_hset:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_busiest_topics_add_up_over_the_live_nodes() {
    let redis = RedisServer::start();
    let mut nodes: Vec<_> = (0..2)
        .map(|_| start_gateway(&redis, &["--count-refresh", REFRESH]))
        .collect();
    let publisher = publisher(&redis).await;
    let mut clients = Vec::new();
    for (node, topics) in [
        (0, &["busy", "calm"][..]),
        (0, &["busy"]),
        (1, &["busy", "orders:1"]),
        (1, &["orders:2"]),
        (1, &["orders:2"]),
    ] {
        clients.push(nodes[node].subscribe(topics).await);
    }
    let expected = |list: &[(&str, u64)]| -> Vec<(Topic, u64)> {
        list.iter().map(|(name, n)| (topic(name), *n)).collect()
    };
    let busiest = |prefix: &'static str, limit: usize, list: Vec<(Topic, u64)>| {
        let publisher = &publisher;
        async move {
            eventually(
                &format!("the busiest {prefix:?}* are {list:?}"),
                PATIENCE,
                || {
                    let list = list.clone();
                    async move {
                        let got = publisher.busiest_topics(prefix, limit).await.ok()?;
                        (got == list).then_some(())
                    }
                },
            )
            .await;
        }
    };
    busiest(
        "",
        10,
        expected(&[("busy", 3), ("orders:2", 2), ("calm", 1), ("orders:1", 1)]),
    )
    .await;
    busiest("orders:", 10, expected(&[("orders:2", 2), ("orders:1", 1)])).await;
    busiest("", 1, expected(&[("busy", 3)])).await;

    // A node that stops leaves the list with its topics.
    nodes.remove(1).stop().expect("the node stops");
    busiest("", 10, expected(&[("busy", 2), ("calm", 1)])).await;
}
