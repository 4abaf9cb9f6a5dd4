//! Redis Cluster: gateways and the publisher with `--redis-cluster` on a real cluster of 3
//! masters and 3 replicas. Topics on every shard are delivered and resumed exactly, and a
//! busy topic keeps every event, once and in order, while its slot moves to another master,
//! while its master hands over to its replica, after its master is killed, and while every
//! master drops the node's pub/sub connections.

mod harness;

use std::time::Duration;

use harness::cluster::{master_of, one_topic_per_shard, one_topic_per_shard_of};
use harness::feed::Feed;
use harness::{PATIENCE, TestGateway, publish, start_gateway_with};
use sse_core::parser::Item;
use sse_core::schema::{Retention, stream_key};
use sse_core::{Event, EventId, Topic};
use sse_publisher::{PublishError, Publisher, RedisFlags};
use sse_testkit::{Next, RedisCluster, RedisServer, SseClient, eventually};

fn topic(name: &str) -> Topic {
    Topic::parse(name).expect("tests use valid topics")
}

/// The ids in `name`'s stream on the node at `port`, oldest first.
fn stream_ids(cluster: &RedisCluster, port: u16, name: &str) -> Vec<String> {
    let mut redis = cluster.connection(port);
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream_key(&topic(name)))
        .arg("-")
        .arg("+")
        .query(&mut redis)
        .expect("XRANGE on the master");
    entries.into_iter().map(|(id, _)| id).collect()
}

/// A gateway node on `cluster`, plus `extra` flags.
fn gateway(cluster: &RedisCluster, extra: &[&str]) -> TestGateway {
    let seeds = cluster.seeds();
    let mut args = vec!["--redis-cluster", "--redis-url", seeds.as_str()];
    args.extend_from_slice(extra);
    start_gateway_with(&args)
}

async fn publisher(cluster: &RedisCluster) -> Publisher {
    Publisher::connect(&RedisFlags::cluster(cluster.seeds()), Retention::default())
        .await
        .expect("the seed list is valid")
}

/// Checks that `client` received exactly `ids` (what the feed published), in order.
async fn receives_exactly(client: &mut SseClient, name: &str, ids: &[String]) {
    let events = client.events(ids.len(), PATIENCE).await;
    for (n, (event, id)) in events.iter().zip(ids).enumerate() {
        assert_eq!(
            event.data,
            format!("{name}:{n}"),
            "every event once, in order"
        );
        assert_eq!(&event.last_event_id, id);
    }
    // Nothing after the last one: a duplicate would come next.
    loop {
        match client.next(Duration::from_millis(500)).await {
            Next::Item(Item::Event(event)) => panic!("an event more than published: {event:?}"),
            Next::Item(_) => {}
            Next::Timeout | Next::Closed => break,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_on_every_shard_are_delivered_and_resumed_on_another_node() {
    let cluster = RedisCluster::start();
    let topics = one_topic_per_shard(&cluster);
    let masters: Vec<u16> = topics.iter().map(|t| master_of(&cluster, t)).collect();
    assert_eq!(masters.len(), 3);
    assert!(
        masters[0] != masters[1] && masters[1] != masters[2] && masters[0] != masters[2],
        "three shards: {masters:?}"
    );
    let node_a = gateway(&cluster, &[]);
    let node_b = gateway(&cluster, &[]);
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut client = node_a.subscribe(&names).await;
    let publisher = publisher(&cluster).await;

    let mut sent = Vec::new();
    for round in 0..4 {
        for name in &names {
            let id = publish(&publisher, name, None, &format!("{name}:{round}")).await;
            sent.push((name.to_string(), id));
        }
    }
    let events = client.events(sent.len(), PATIENCE).await;
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.data.split(':').next().unwrap_or("").to_owned(),
                e.data.clone(),
            )
        })
        .collect();
    for (name, _) in &sent {
        let rounds: Vec<&str> = seen
            .iter()
            .filter(|(t, _)| t == name)
            .map(|(_, d)| d.as_str())
            .collect();
        let expected: Vec<String> = (0..4).map(|r| format!("{name}:{r}")).collect();
        assert_eq!(rounds, expected, "each topic's events once, in order");
    }

    // Gone while one more event per topic is published; back on the other node.
    let cursor = client.last_event_id().to_owned();
    drop(client);
    for name in &names {
        publish(&publisher, name, None, &format!("{name}:4")).await;
    }
    let query: Vec<String> = names.iter().map(|t| format!("topic={t}")).collect();
    let mut resumed = node_b
        .get(
            &format!("/events?{}", query.join("&")),
            &[("Last-Event-ID", &cursor)],
        )
        .await;
    assert_eq!(resumed.status(), 200);
    let missed = resumed.events(3, PATIENCE).await;
    let mut data: Vec<String> = missed.into_iter().map(|e| e.data).collect();
    data.sort();
    let mut expected: Vec<String> = names.iter().map(|t| format!("{t}:4")).collect();
    expected.sort();
    assert_eq!(data, expected, "exactly what was missed, from every shard");
}

/// Publishes on the one topic of `topic` continuously while `change` reshapes the cluster,
/// then checks that a client subscribed throughout received every event once, in order;
/// returns the node.
async fn busy_topic_through(
    topic: &'static [&'static str; 1],
    change: impl FnOnce(&RedisCluster),
) -> TestGateway {
    let name = topic[0];
    let cluster = RedisCluster::start();
    let node = gateway(&cluster, &[]);
    let mut client = node.subscribe(topic).await;
    let feed = Feed::start(publisher(&cluster).await, topic);
    feed.wait_for(50).await;
    change(&cluster);
    feed.wait_for(100).await;
    let ids = feed.stop().await.remove(0);
    receives_exactly(&mut client, name, &ids).await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_topic_loses_and_repeats_nothing_while_its_slot_moves() {
    let node = busy_topic_through(&["moving"], |cluster| {
        let from = master_of(cluster, "moving");
        let to = cluster
            .masters()
            .into_iter()
            .find(|m| *m != from)
            .expect("another master");
        cluster.move_slot(RedisCluster::slot_of(&stream_key(&topic("moving"))), to);
        assert_eq!(master_of(cluster, "moving"), to, "the slot moved");
    })
    .await;
    assert!(
        node.metric("sse_redis_subscriptions_moved_total").await >= 1,
        "the node followed the slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_topic_loses_and_repeats_nothing_through_a_manual_failover() {
    busy_topic_through(&["handover"], |cluster| {
        let master = master_of(cluster, "handover");
        let replica = cluster.replicas_of(master)[0];
        cluster.failover(replica);
        assert_eq!(
            master_of(cluster, "handover"),
            replica,
            "the replica took over"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_master_is_killed_a_topic_resumes_from_what_the_promoted_replica_holds() {
    let mut cluster = RedisCluster::start();
    let node = gateway(&cluster, &[]);
    let mut client = node.subscribe(&["killed"]).await;
    let publisher = publisher(&cluster).await;
    for n in 0..20 {
        publish(&publisher, "killed", None, &format!("killed:{n}")).await;
    }
    let before = client.events(20, PATIENCE).await;
    assert_eq!(before.len(), 20);

    let master = master_of(&cluster, "killed");
    cluster.kill(master);
    let promoted = cluster.wait_for_failover(master);
    assert_eq!(master_of(&cluster, "killed"), promoted);
    for n in 20..40 {
        loop {
            let event = Event::new(topic("killed"), format!("killed:{n}"));
            match publisher.publish(&event).await {
                Ok(_) => break,
                Err(PublishError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("publish after the failover: {error:?}"),
            }
        }
    }
    // What the promoted replica holds after the client's position is the record; the node
    // delivers exactly that. (Without --min-replicas-ack the last events before the kill may
    // be gone from it: replication is asynchronous.)
    let position = EventId::parse(&before[19].last_event_id).expect("a stream id");
    let stream = stream_ids(&cluster, promoted, "killed");
    let after: Vec<&str> = stream
        .iter()
        .filter(|id| EventId::parse(id).is_ok_and(|id| id > position))
        .map(String::as_str)
        .collect();
    assert_eq!(
        after.len(),
        20,
        "the 20 events published after the failover"
    );
    // If the client's own last event is one of those lost, the new master never held its
    // position: the node says so (as the Guarantees promise for failovers) before going on.
    if !stream.iter().any(|id| *id == before[19].last_event_id) {
        let notice = client.next_event(PATIENCE).await;
        assert_eq!(notice.event_type, "sse.truncated");
        assert_eq!(
            notice.data,
            format!(
                r#"{{"topic":"killed","reason":"unknown-position","from":"{}"}}"#,
                before[19].last_event_id
            )
        );
    }
    let events = client.events(after.len(), PATIENCE).await;
    let ids: Vec<&str> = events.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(
        ids, after,
        "every event the new master holds, once, in order"
    );
}

/// Every master drops the node's pub/sub connections (`CLIENT KILL TYPE pubsub`), round after
/// round, while a topic on each shard is published to without pause: after each reconnect the
/// node reads what it missed from the streams, and the client receives every event once, in
/// order. The gap is certain (events are published while the node reconnects); a live message
/// that arrives between one subscription's probe and the stream reads must not move its topic
/// past the events those reads deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_on_every_shard_lose_nothing_when_every_master_drops_the_subscriptions() {
    const TOPICS: [&str; 3] = ["kept-0", "kept-1", "kept-2"];
    // Each round loses events with about one chance in ten without the fix; 24 rounds
    // nearly always do.
    const ROUNDS: u64 = 24;
    let cluster = RedisCluster::start();
    let mut masters: Vec<u16> = TOPICS.iter().map(|t| master_of(&cluster, t)).collect();
    masters.sort_unstable();
    assert_eq!(masters, cluster.masters(), "one topic per shard");
    let node = gateway(&cluster, &[]);
    let mut client = node.subscribe(&TOPICS).await;
    let feed = Feed::start(publisher(&cluster).await, &TOPICS);
    feed.wait_for(50).await;
    for round in 1..=ROUNDS {
        for &master in &masters {
            let _: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query(&mut cluster.connection(master))
                .expect("CLIENT KILL TYPE pubsub");
        }
        eventually("the node resubscribed", PATIENCE, || async {
            let reconnects = node.metric("sse_redis_reconnects_total").await;
            let ready = node.fetch("/readyz").await.0 == 200;
            (reconnects >= round && ready).then_some(())
        })
        .await;
        feed.wait_for(60).await;
    }
    let published = feed.stop().await;

    // A stream on several topics carries a cursor as its id; each event's data names it.
    let mut received: Vec<Vec<String>> = vec![Vec::new(); TOPICS.len()];
    while let Next::Item(item) = client.next(Duration::from_secs(2)).await {
        let Item::Event(event) = item else { continue };
        let name = event.data.split(':').next().unwrap_or_default();
        let Some(index) = TOPICS.iter().position(|t| *t == name) else {
            panic!("an event of no topic of the test: {event:?}");
        };
        received[index].push(event.data);
    }
    for (index, name) in TOPICS.iter().enumerate() {
        let expected: Vec<String> = (0..published[index].len())
            .map(|n| format!("{name}:{n}"))
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|data| !received[index].contains(data))
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: {} of {} events never arrived: {missing:?}",
            missing.len(),
            expected.len()
        );
        assert_eq!(
            received[index], expected,
            "{name}: every event once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_topic_info_and_keyed_publishes_work_on_every_shard() {
    let cluster = RedisCluster::start();
    let nodes = [
        gateway(&cluster, &["--count-refresh", "200ms"]),
        gateway(&cluster, &["--count-refresh", "200ms"]),
    ];
    let publisher = publisher(&cluster).await;
    let names = one_topic_per_shard(&cluster);
    let mut clients = Vec::new();
    for name in &names {
        clients.push(nodes[0].subscribe(&[name]).await);
        clients.push(nodes[1].subscribe(&[name]).await);
        clients.push(nodes[1].subscribe(&[name]).await);
    }
    for name in &names {
        let topic = topic(name);
        let key = sse_core::schema::IdempotencyKey::parse(format!("once-{name}").as_bytes())
            .expect("a valid key");
        let event = Event::new(topic.clone(), "once".to_owned());
        let (id, _) = publisher.publish_once(&event, &key).await.expect("publish");
        let (again, outcome) = publisher.publish_once(&event, &key).await.expect("again");
        assert_eq!((again, outcome), (id, sse_publisher::Outcome::Replayed));
        let info = eventually(
            &format!("{name} counts 3 streams on 2 nodes"),
            PATIENCE,
            || async {
                let info = publisher.topic_info(&topic).await.ok()?;
                (info.subscribers == 3 && info.nodes == 2).then_some(info)
            },
        )
        .await;
        assert_eq!((info.retained, info.last_id), (1, Some(id)), "{name}");
    }
    let busiest = publisher
        .busiest_topics("shard-", 10)
        .await
        .expect("busiest");
    let mut expected: Vec<(Topic, u64)> = names.iter().map(|name| (topic(name), 3)).collect();
    expected.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    assert_eq!(
        busiest, expected,
        "every shard's topic, from both nodes' sets"
    );
    for gateway in &nodes {
        assert_eq!(
            gateway
                .metric("sse_count_refreshes_total{outcome=\"failed\"}")
                .await,
            0,
            "every refresh reached its shards"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_joins_and_lists_on_every_shard() {
    use harness::tokens::{SECRET, bearer, hs256, now};
    let cluster = RedisCluster::start();
    let node = gateway(
        &cluster,
        &[
            "--jwt-secret",
            SECRET,
            "--presence",
            "--count-refresh",
            "200ms",
        ],
    );
    let publisher = publisher(&cluster).await;
    let token = |subject: &str| {
        bearer(&hs256(&serde_json::json!({
            "exp": now() + 3600, "sub": subject, "sse": {"subscribe": ["*"]}
        })))
    };
    let watching = token("watcher");
    let listening = token("alice");
    let mut streams = Vec::new();
    // Topics whose companions `presence:<topic>` live on three different masters.
    for name in one_topic_per_shard_of(&cluster, "presence:") {
        let path = format!("/events?topic=presence:{name}");
        let mut watcher = node.get(&path, &[("Authorization", &watching)]).await;
        assert_eq!(watcher.status(), 200);
        watcher.position(PATIENCE).await;
        let path = format!("/events?topic={name}");
        let mut alice = node.get(&path, &[("Authorization", &listening)]).await;
        assert_eq!(alice.status(), 200);
        alice.position(PATIENCE).await;
        let join = watcher.next_event(PATIENCE).await;
        assert_eq!(
            (join.event_type.as_str(), join.data),
            ("join", format!(r#"{{"topic":"{name}","sub":"alice"}}"#))
        );
        let present = eventually(&format!("alice is present on {name}"), PATIENCE, || async {
            publisher
                .present(&topic(&name), None, 10)
                .await
                .ok()
                .filter(|page| page.count == 1)
        })
        .await;
        assert_eq!(present.subjects, ["alice"]);
        streams.push((watcher, alice));
    }
    assert_eq!(
        node.metric("sse_presence_writes_total{outcome=\"failed\"}")
            .await,
        0
    );
}

#[tokio::test]
async fn a_seed_list_with_a_dead_node_still_starts() {
    let cluster = RedisCluster::start();
    let dead = format!("redis://127.0.0.1:{}", sse_testkit::free_port());
    let seeds = format!("{dead},{}", cluster.seeds());
    let node = start_gateway_with(&["--redis-cluster", "--redis-url", &seeds]);
    let mut client = node.subscribe(&["seeded"]).await;
    let publisher = Publisher::connect(&RedisFlags::cluster(seeds.clone()), Retention::default())
        .await
        .expect("starts");
    let id = publish(&publisher, "seeded", None, "hello").await;
    let event = client.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("hello", id));
}

#[tokio::test]
async fn the_wrong_mode_fails_at_startup_and_says_which_flag_to_change() {
    let cluster = RedisCluster::start();
    let single = RedisServer::start();

    let cluster_node = format!("redis://127.0.0.1:{}", cluster.masters()[0]);
    let without_flag = harness::start_gateway_with(&["--redis-url", &cluster_node]).stop();
    let message = sse_core::ErrorChain(&without_flag.expect_err("refused")).to_string();
    assert!(message.contains("--redis-cluster"), "{message}");
    let Err(error) = Publisher::connect(
        &RedisFlags::single(cluster_node.clone()),
        Retention::default(),
    )
    .await
    else {
        panic!("a publisher without --redis-cluster started on a cluster node");
    };
    assert!(error.to_string().contains("--redis-cluster"), "{error}");

    let with_flag =
        harness::start_gateway_with(&["--redis-cluster", "--redis-url", &single.url()]).stop();
    let message = sse_core::ErrorChain(&with_flag.expect_err("refused")).to_string();
    assert!(message.contains("not a cluster node"), "{message}");
}

#[tokio::test]
async fn a_batch_across_slots_is_refused_and_writes_nothing_a_batch_on_one_topic_is_atomic() {
    let cluster = RedisCluster::start();
    let publisher = publisher(&cluster).await;
    let topics = one_topic_per_shard(&cluster);
    let across: Vec<Event> = topics.iter().map(|t| Event::new(topic(t), "x")).collect();
    let error = publisher
        .publish_batch(&across)
        .await
        .expect_err("a batch across slots");
    assert!(matches!(error, PublishError::CrossSlot { .. }), "{error:?}");
    assert!(
        error.to_string().contains("different hash slots"),
        "{error}"
    );
    let mut redis = cluster.connection(master_of(&cluster, &topics[0]));
    let written: u64 = redis::cmd("XLEN")
        .arg(stream_key(&topic(&topics[0])))
        .query(&mut redis)
        .expect("XLEN");
    assert_eq!(written, 0, "nothing was written");

    let one_topic: Vec<Event> = (0..3)
        .map(|n| Event::new(topic("solo"), n.to_string()))
        .collect();
    let ids = publisher.publish_batch(&one_topic).await.expect("one slot");
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_replicas_ack_a_killed_master_loses_no_acknowledged_event() {
    let mut cluster = RedisCluster::start();
    let node = gateway(&cluster, &[]);
    let mut client = node.subscribe(&["durable"]).await;
    let publisher = publisher(&cluster)
        .await
        .acknowledged_by(1, Duration::from_secs(1))
        .expect("lanes");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feed = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut acknowledged, mut n) = (Vec::new(), 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let event = Event::new(topic("durable"), format!("durable:{n}"));
                n += 1;
                match publisher.publish(&event).await {
                    Ok(id) => acknowledged.push(id.to_string()),
                    // Not acknowledged: it may or may not be in the stream; not counted.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            acknowledged
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let master = master_of(&cluster, "durable");
    cluster.kill(master);
    let promoted = cluster.wait_for_failover(master);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = feed.await.expect("the feed does not panic");

    let stream = stream_ids(&cluster, promoted, "durable");
    let held: Vec<&str> = stream.iter().map(String::as_str).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !held.contains(&id.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    assert!(
        acknowledged.len() > 50,
        "the feed ran: {}",
        acknowledged.len()
    );
    let events = client.events(held.len(), PATIENCE).await;
    let ids: Vec<&str> = events.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(
        ids, held,
        "every event the new master holds, once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_slot_has_no_master_both_binaries_are_not_ready_and_recover_by_themselves() {
    let mut cluster = RedisCluster::start();
    let node = gateway(&cluster, &[]);
    let publisher = publisher(&cluster).await;
    let ready = || async { node.fetch("/readyz").await.0 };
    eventually("the node is ready", PATIENCE, || async {
        (ready().await == 200).then_some(())
    })
    .await;
    assert!(publisher.ping().await);

    // A shard with neither master nor replica: the cluster reports cluster_state:fail.
    let master = master_of(&cluster, "down");
    let replicas = cluster.replicas_of(master);
    for port in &replicas {
        cluster.kill(*port);
    }
    cluster.kill(master);
    eventually("the node reports not ready", PATIENCE, || async {
        (ready().await == 503).then_some(())
    })
    .await;
    eventually("the publisher reports not ready", PATIENCE, || async {
        (!publisher.ping().await).then_some(())
    })
    .await;
    let refused = publisher.publish(&Event::new(topic("down"), "x")).await;
    assert!(
        matches!(
            refused,
            Err(PublishError::Unavailable(_) | PublishError::NoReply(_))
        ),
        "{refused:?}"
    );

    cluster.restart(master);
    for port in replicas {
        cluster.restart(port);
    }
    eventually("the node is ready again", PATIENCE, || async {
        (ready().await == 200).then_some(())
    })
    .await;
    eventually("the publisher publishes again", PATIENCE, || async {
        publisher
            .publish(&Event::new(topic("down"), "back"))
            .await
            .ok()
    })
    .await;
}
