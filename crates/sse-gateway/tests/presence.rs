//! Presence (`--presence`): joins and leaves over the fleet as events of the companion topic
//! `presence:<topic>`, resumed by `Last-Event-ID` on any node like every event; a reconnect
//! within the grace is neither; a node killed without a word has its subjects leave.

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::tokens::{SECRET, bearer, hs256, now};
use harness::{PATIENCE, TestGateway, publisher, start_gateway};
use serde_json::json;
use sse_core::Topic;
use sse_testkit::{RedisServer, SseClient, eventually, free_port};

/// Every node of these tests: tokens, presence, and refreshes fast enough for a test; the
/// grace leaves a reconnect to another node time to be written there (within a second).
const FLAGS: [&str; 7] = [
    "--jwt-secret",
    SECRET,
    "--presence",
    "--presence-grace",
    "3s",
    "--count-refresh",
    "1s",
];

/// `Authorization: Bearer` for `subject`, allowed to read every topic.
fn authorization(subject: &str) -> String {
    bearer(&hs256(&json!({
        "exp": now() + 3600,
        "sub": subject,
        "sse": {"subscribe": ["*"]}
    })))
}

/// A stream of `subject` on `path`, live.
async fn listen(node: &TestGateway, path: &str, subject: &str) -> SseClient {
    let authorization = authorization(subject);
    let mut client = node.get(path, &[("Authorization", &authorization)]).await;
    assert_eq!(client.status(), 200, "{}", client.text().await);
    client.position(PATIENCE).await;
    client
}

/// The next presence event on `watcher`: (event, data), and its id.
async fn next_presence(watcher: &mut SseClient) -> ((String, String), String) {
    let event = watcher.next_event(PATIENCE).await;
    ((event.event_type, event.data), event.last_event_id)
}

fn presence(event: &str, topic: &str, subject: &str) -> (String, String) {
    (
        event.to_owned(),
        format!(r#"{{"topic":"{topic}","sub":"{subject}"}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_over_three_nodes_resume_by_last_event_id_on_any_node() {
    let redis = RedisServer::start();
    let nodes: Vec<TestGateway> = (0..3).map(|_| start_gateway(&redis, &FLAGS)).collect();
    let mut watcher = listen(&nodes[0], "/events?topic=presence:room", "watcher").await;

    let alice_one = listen(&nodes[1], "/events?topic=room", "alice").await;
    let (event, first) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("join", "room", "alice"));
    // A second stream of hers, elsewhere, is no news; bob is.
    let alice_two = listen(&nodes[2], "/events?topic=room", "alice").await;
    let bob = listen(&nodes[2], "/events?topic=room&topic=other", "bob").await;
    let (event, _) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("join", "room", "bob"));

    // alice leaves once her last stream anywhere has been closed for the grace.
    drop(alice_one);
    drop(alice_two);
    let (event, _) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("leave", "room", "alice"));

    // bob reconnects within the grace: no leave, no join. carol's join comes next.
    drop(bob);
    let _bob = listen(&nodes[1], "/events?topic=room", "bob").await;
    let _carol = listen(&nodes[0], "/events?topic=room", "carol").await;
    let (event, last) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("join", "room", "carol"));

    // A client that saw only the first join resumes on another node: exactly what it missed.
    let authorization = authorization("late");
    let mut late = nodes[2]
        .get(
            "/events?topic=presence:room",
            &[("Authorization", &authorization), ("Last-Event-ID", &first)],
        )
        .await;
    let missed: Vec<_> = late
        .events(3, PATIENCE)
        .await
        .into_iter()
        .map(|event| (event.event_type, event.data, event.last_event_id))
        .collect();
    let expected: Vec<_> = [("join", "bob"), ("leave", "alice"), ("join", "carol")]
        .into_iter()
        .map(|(event, subject)| presence(event, "room", subject))
        .collect();
    assert_eq!(
        missed
            .iter()
            .map(|(e, d, _)| (e.clone(), d.clone()))
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(missed[2].2, last);

    // The publisher lists who is there, over the fleet, a page at a time.
    let publisher = publisher(&redis).await;
    let room = Topic::parse("room").unwrap();
    let page = publisher.present(&room, None, 1).await.unwrap();
    assert_eq!(
        (page.subjects, page.count, page.next.as_deref()),
        (vec!["bob".to_owned()], 2, Some("bob"))
    );
    let page = publisher.present(&room, Some("bob"), 1).await.unwrap();
    assert_eq!((page.subjects, page.next), (vec!["carol".to_owned()], None));
    let other = Topic::parse("other").unwrap();
    eventually("bob left the other topic", PATIENCE, || async {
        publisher
            .present(&other, None, 10)
            .await
            .ok()
            .filter(|page| page.count == 0)
    })
    .await;
    assert!(
        nodes[0]
            .metric(r#"sse_presence_events_total{event="join"}"#)
            .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subjects_of_a_node_killed_without_a_word_leave_within_the_bound() {
    let redis = RedisServer::start();
    let survivor = start_gateway(&redis, &FLAGS);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .args(["--listen", &addr.to_string(), "--redis-url", &redis.url()])
        .args(FLAGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sse-gateway");
    let mut watcher = listen(&survivor, "/events?topic=presence:hall", "watcher").await;
    let _stays = listen(&survivor, "/events?topic=hall", "erin").await;
    let (event, _) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("join", "hall", "erin"));
    let authorization = authorization("dave");
    let _dave = eventually("the process serves dave's stream", PATIENCE, || async {
        let mut client = SseClient::try_get(
            addr,
            "/events?topic=hall",
            &[("Authorization", &authorization)],
        )
        .await
        .ok()?;
        if client.status() != 200 {
            return None;
        }
        client.position(PATIENCE).await;
        Some(client)
    })
    .await;
    let (event, _) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("join", "hall", "dave"));

    doomed.kill().expect("SIGKILL the node");
    let killed = Instant::now();
    let _ = doomed.wait();
    let (event, _) = next_presence(&mut watcher).await;
    assert_eq!(event, presence("leave", "hall", "dave"));
    let after = killed.elapsed();
    eprintln!("dave left {after:?} after SIGKILL of his node (count refresh 1 s)");
    assert!(
        after >= Duration::from_secs(1),
        "left after {after:?}: before the node's alive key could expire, so not by expiry"
    );
    let publisher = publisher(&redis).await;
    let page = publisher
        .present(&Topic::parse("hall").unwrap(), None, 10)
        .await
        .unwrap();
    assert_eq!(page.subjects, ["erin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_lost_its_data_the_nodes_write_their_presence_again() {
    let redis = RedisServer::start();
    let node = start_gateway(&redis, &FLAGS);
    let _frank = listen(&node, "/events?topic=desk", "frank").await;
    let publisher = publisher(&redis).await;
    let desk = Topic::parse("desk").unwrap();
    let present = || async {
        publisher
            .present(&desk, None, 10)
            .await
            .ok()
            .filter(|page| page.subjects == ["frank"])
    };
    eventually("frank is present", PATIENCE, present).await;
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.connection())
        .expect("FLUSHALL");
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut redis.connection())
        .expect("FUNCTION FLUSH");
    eventually("frank is present again", PATIENCE, present).await;
}

#[test]
fn presence_without_subscriber_auth_is_refused_at_start() {
    let redis = RedisServer::start();
    let output = Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .args(["--listen", "127.0.0.1:0", "--redis-url", &redis.url()])
        .arg("--presence")
        .stdin(Stdio::null())
        .output()
        .expect("run sse-gateway");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--presence needs subscriber auth"),
        "{stderr}"
    );
}

#[test]
fn the_presence_function_refuses_bad_input_and_writes_nothing() {
    let redis = RedisServer::start();
    let mut connection = redis.connection();
    let _: () = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(sse_core::schema::LIBRARY)
        .query(&mut connection)
        .expect("FUNCTION LOAD");
    let present = "sse:{presence:t}:present";
    let stream = "sse:{presence:t}:stream";
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                present,
                "sse:{presence:u}:stream",
                "n1",
                "1000",
                "0",
                "1000",
                "+",
                "a",
            ],
            "keys must be",
        ),
        (
            &[present, stream, "n 1", "1000", "0", "1000", "+", "a"],
            "node must be",
        ),
        (
            &[present, stream, "n1", "0", "0", "1000", "+", "a"],
            "maxlen and ttl-ms",
        ),
        (
            &[
                present, stream, "n1", "1000", "0", "1000", "+", "a", "?", "b",
            ],
            "op must be",
        ),
        (
            &[
                present, stream, "n1", "1000", "0", "1000", "+", "a", "-", "",
            ],
            "a subject must be",
        ),
    ];
    for (args, expected) in cases {
        let error = redis::cmd("FCALL")
            .arg("sse_presence")
            .arg(2)
            .arg(args)
            .query::<redis::Value>(&mut connection)
            .expect_err("refused");
        assert!(error.to_string().contains(expected), "{args:?}: {error}");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut connection).unwrap();
    assert!(keys.is_empty(), "nothing written: {keys:?}");
}
