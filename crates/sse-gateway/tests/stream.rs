//! Live delivery: what a subscriber receives, byte for byte and event for event, from every
//! kind of publisher, on one topic or several, over HTTP/1.1 and h2c, on one node or several.

mod harness;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use harness::{PATIENCE, TestGateway, numsub, publish, publisher, start_gateway};
use sse_core::parser::Item;
use sse_core::{Cursor, EventId, Topic};
use sse_testkit::{Engine, Next, Protocol, RedisServer, SseClient, eventually, find};

/// The value of the sample `series` (a metric name with its labels, as exported) on `gateway`'s
/// `/metrics`, or 0 when it is absent.
async fn metric(gateway: &TestGateway, series: &str) -> f64 {
    let (status, text) = gateway.fetch("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a numeric sample"))
}

/// Runs `redis-cli` (`valkey-cli` on Valkey) against `redis` with `args` (and `stdin`, if any),
/// and returns its output.
fn redis_cli(redis: &RedisServer, args: &[&str], stdin: Option<&str>) -> String {
    let port = redis.port().to_string();
    let mut command = Command::new(Engine::from_env().cli_binary());
    command.args(["-p", port.as_str()]).args(args);
    let output = match stdin {
        Some(path) => command
            .stdin(std::fs::File::open(path).expect("open the file for redis-cli's stdin"))
            .output(),
        None => command.output(),
    }
    .expect("redis-cli runs (it comes with redis-server)");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .expect("redis-cli prints text")
        .trim_end()
        .to_owned()
}

/// Sends a raw HTTP/1.1 request (which must say `Connection: close`) and returns the status
/// and the response head's headers, names lower-cased.
fn raw_head(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>) {
    let response = harness::raw_request(addr, request);
    let head = response
        .split("\r\n\r\n")
        .next()
        .expect("split yields at least one part");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn topic(name: &str) -> Topic {
    Topic::parse(name).expect("tests use valid topics")
}

#[tokio::test]
async fn a_single_topic_stream_carries_every_payload_exactly() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--retry-jitter", "0s"]);
    let publisher = publisher(&redis).await;
    let mut client = gateway.get("/events?topic=orders", &[]).await;

    assert_eq!(client.status(), 200);
    assert_eq!(client.headers()["content-type"], "text/event-stream");
    assert_eq!(client.headers()["cache-control"], "no-cache");
    assert_eq!(client.headers()["x-accel-buffering"], "no");
    let position = client.position(PATIENCE).await;
    assert_eq!(position, "0-0", "a new topic starts before its first event");
    let head = String::from_utf8_lossy(client.raw()).into_owned();
    assert!(
        head.starts_with("retry: 1000\n\n: stream open\n\nid: 0-0\n\n"),
        "the stream opens with retry, a comment and the bare position: {head:?}"
    );

    // (name, published data, data as EventSource dispatches it)
    let cases: [(Option<&str>, &str, &str); 9] = [
        (Some("created"), "plain", "plain"),
        (None, "line 1\nline 2\nline 3", "line 1\nline 2\nline 3"),
        (Some("crlf"), "a\r\nb\r\nc", "a\nb\nc"),
        (None, "a\rb\rc", "a\nb\nc"),
        (None, "mixed\r\n\r\rx\n", "mixed\n\n\nx\n"),
        (Some("empty"), "", ""),
        (None, "héllo ✓ 日本語 🚀", "héllo ✓ 日本語 🚀"),
        (
            None,
            "data: not a field\nid: 7-7\n: no comment",
            "data: not a field\nid: 7-7\n: no comment",
        ),
        (Some("last"), "\n", "\n"),
    ];
    let mut ids = Vec::new();
    for (name, data, _) in cases {
        ids.push(publish(&publisher, "orders", name, data).await);
    }

    let events = client.events(cases.len(), PATIENCE).await;
    for (((name, _, expected), id), event) in cases.iter().zip(&ids).zip(&events) {
        assert_eq!(event.event_type, name.unwrap_or("message"));
        assert_eq!(event.data, *expected);
        assert_eq!(&event.last_event_id, id, "the SSE id is the stream id");
    }
}

/// The `retry:` of each stream is drawn from `--retry-ms` plus up to `--retry-jitter`, so the
/// clients of a lost node do not reconnect in lockstep.
#[tokio::test]
async fn each_stream_gets_a_retry_of_its_own_within_the_band() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--retry-ms", "2000", "--retry-jitter", "1s"]);
    let mut retries = Vec::new();
    for _ in 0..20 {
        let mut client = gateway.get("/events?topic=orders", &[]).await;
        client.position(PATIENCE).await;
        let head = String::from_utf8_lossy(client.raw()).into_owned();
        let retry: u64 = head
            .strip_prefix("retry: ")
            .and_then(|rest| rest.split('\n').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("the stream opens with retry: {head:?}"));
        retries.push(retry);
    }
    assert!(
        retries.iter().all(|retry| (2000..=3000).contains(retry)),
        "{retries:?}"
    );
    // 20 draws from 1001 values are all the same with a chance of about 1e-57.
    retries.sort_unstable();
    retries.dedup();
    assert!(retries.len() > 1, "every stream got {retries:?}");
}

#[tokio::test]
async fn a_fresh_client_is_told_its_position_and_resumes_from_it() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut newest = String::new();
    for n in 0..3 {
        newest = publish(&publisher, "known", None, &n.to_string()).await;
    }

    let mut known = gateway.get("/events?topic=known", &[]).await;
    assert_eq!(known.position(PATIENCE).await, newest);
    let mut fresh = gateway.get("/events?topic=fresh", &[]).await;
    assert_eq!(fresh.position(PATIENCE).await, "0-0");

    // Gone before its first event: the position alone resumes it exactly.
    drop(known);
    let missed = publish(&publisher, "known", None, "3").await;
    let mut known = gateway
        .get("/events?topic=known", &[("Last-Event-ID", newest.as_str())])
        .await;
    let event = known.next_event(PATIENCE).await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id),
        ("3", missed.clone())
    );

    // A client joining a topic already live on the node gets the same kind of position.
    let mut again = gateway.get("/events?topic=known", &[]).await;
    assert_eq!(again.position(PATIENCE).await, missed);

    let first = publish(&publisher, "fresh", None, "first").await;
    let event = fresh.next_event(PATIENCE).await;
    assert_eq!((event.data.as_str(), event.last_event_id), ("first", first));

    // The same on several topics: the position is a cursor, and it resumes both exactly.
    let path = "/events?topic=known&topic=later";
    let mut both = gateway.get(path, &[]).await;
    let cursor = both.position(PATIENCE).await;
    drop(both);
    let known_missed = publish(&publisher, "known", None, "4").await;
    let later_missed = publish(&publisher, "later", None, "0").await;
    let mut both = gateway
        .get(path, &[("Last-Event-ID", cursor.as_str())])
        .await;
    let mut seen: Vec<(String, String)> = both
        .events(2, PATIENCE)
        .await
        .into_iter()
        .map(|event| (event.event_type, event.data))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("message".to_owned(), "0".to_owned()),
            ("message".to_owned(), "4".to_owned())
        ]
    );
    let topics = [topic("known"), topic("later")];
    let position = Cursor::decode(both.last_event_id(), &topics).unwrap();
    assert_eq!(position.get(&topics[0]).unwrap().to_string(), known_missed);
    assert_eq!(position.get(&topics[1]).unwrap().to_string(), later_missed);
}

#[tokio::test]
async fn a_multi_topic_stream_delivers_each_topic_in_order_with_a_cursor_id() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let alpha_tip = publish(&publisher, "alpha", None, "before").await;
    let topics = [topic("alpha"), topic("beta")];

    let mut client = gateway.get("/events?topic=beta&topic=alpha", &[]).await;
    assert_eq!(client.status(), 200);
    let position = client.position(PATIENCE).await;
    assert!(
        EventId::parse(&position).is_err(),
        "a cursor, not a stream id: {position}"
    );
    let cursor = Cursor::decode(&position, &topics).unwrap();
    assert_eq!(
        cursor.get(&topics[0]),
        Some(EventId::parse(&alpha_tip).unwrap())
    );
    assert_eq!(cursor.get(&topics[1]), Some(EventId::ZERO));

    let rounds = 20;
    let mut published: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for n in 0..rounds {
        for (i, name) in ["alpha", "beta"].into_iter().enumerate() {
            published[i].push(publish(&publisher, name, None, &format!("{name}:{n}")).await);
        }
    }

    let mut received: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut last_id = position;
    for event in client.events(2 * rounds, PATIENCE).await {
        let (name, n) = event.data.split_once(':').expect("data is <topic>:<n>");
        let i = usize::from(name == "beta");
        assert_eq!(n, received[i].len().to_string(), "{name} in order");
        received[i].push(published[i][received[i].len()].clone());
        assert_ne!(event.last_event_id, last_id, "each event moves the cursor");
        assert!(EventId::parse(&event.last_event_id).is_err());
        let cursor = Cursor::decode(&event.last_event_id, &topics).unwrap();
        for (j, topic) in topics.iter().enumerate() {
            let expected = received[j].last().map_or(
                if j == 0 {
                    EventId::parse(&alpha_tip).unwrap()
                } else {
                    EventId::ZERO
                },
                |id| EventId::parse(id).unwrap(),
            );
            assert_eq!(
                cursor.get(topic),
                Some(expected),
                "{topic} in {}",
                event.last_event_id
            );
        }
        last_id = event.last_event_id;
    }
    assert_eq!(received, published);
}

#[tokio::test]
async fn every_client_on_every_node_gets_every_event_in_order() {
    let redis = RedisServer::start();
    let node_a = start_gateway(&redis, &[]);
    let node_b = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut clients = [
        node_a.subscribe(&["fan"]).await,
        node_a.subscribe(&["fan"]).await,
        node_b.subscribe(&["fan"]).await,
        node_b.subscribe(&["fan"]).await,
    ];

    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(publish(&publisher, "fan", None, &n.to_string()).await);
    }

    for (c, client) in clients.iter_mut().enumerate() {
        let events = client.events(ids.len(), PATIENCE).await;
        for (n, (event, id)) in events.iter().zip(&ids).enumerate() {
            assert_eq!(event.data, n.to_string(), "client {c}");
            assert_eq!(&event.last_event_id, id, "client {c}");
        }
    }
}

#[tokio::test]
async fn a_node_subscribes_once_per_topic_and_unsubscribes_after_the_last_client() {
    let redis = RedisServer::start();
    // With the replay cache on, a topic stays subscribed for the linger after its last client:
    // `replay_cache.rs` tests that. Here, without one.
    let node_a = start_gateway(&redis, &["--replay-cache-linger", "0s"]);
    let node_b = start_gateway(&redis, &[]);

    let first = node_a.subscribe(&["shared"]).await;
    let second = node_a.subscribe(&["shared"]).await;
    assert_eq!(
        numsub(&redis, "shared"),
        1,
        "one subscription for two clients"
    );

    drop(first);
    eventually("the node saw the first client leave", PATIENCE, || async {
        (metric(&node_a, "sse_connections_active").await == 1.0).then_some(())
    })
    .await;
    // The link handles the hub's requests in order: once a later subscription is live, an
    // unsubscribe the first client's leaving might have caused would have been applied.
    let barrier = node_a.subscribe(&["barrier"]).await;
    assert_eq!(
        numsub(&redis, "shared"),
        1,
        "the second client still holds the topic"
    );

    drop(second);
    eventually(
        "the last client's leaving unsubscribes",
        PATIENCE,
        || async { (numsub(&redis, "shared") == 0).then_some(()) },
    )
    .await;
    assert_eq!(numsub(&redis, "barrier"), 1);
    drop(barrier);

    let _on_a = node_a.subscribe(&["shared"]).await;
    let _on_b = node_b.subscribe(&["shared"]).await;
    assert_eq!(numsub(&redis, "shared"), 2, "one subscription per node");
}

#[tokio::test]
async fn events_from_redis_cli_are_delivered_like_any_other_and_garbage_is_skipped() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    // The README's way to load the function, straight from the schema's source file.
    let library = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sse-core/src/schema/publish.lua"
    );
    assert_eq!(
        redis_cli(
            &redis,
            &["-x", "FUNCTION", "LOAD", "REPLACE"],
            Some(library)
        ),
        "sse"
    );
    let publisher = publisher(&redis).await;
    let mut client = gateway.subscribe(&["t"]).await;

    let fcall = |data: &str, event: &str| {
        redis_cli(
            &redis,
            &[
                "FCALL",
                "sse_publish",
                "1",
                "sse:{t}:stream",
                data,
                event,
                "1000",
                "0",
            ],
            None,
        )
    };
    let by_cli = fcall("two\r\nlines", "created");
    let by_library = publish(&publisher, "t", Some("created"), "two\r\nlines").await;
    let unnamed = fcall("x", "");
    // Not `<id>\n<event>\n<data>` with a valid id and name: skipped, counted, harmless.
    let forged_control = "99999999999999-0\nsse.truncated\n{}";
    for garbage in ["garbage", "not-an-id\n\ndata", forged_control] {
        assert_eq!(
            redis_cli(&redis, &["PUBLISH", "sse:{t}:live", garbage], None),
            "1"
        );
    }
    let after = fcall("after garbage", "");

    let events = client.events(4, PATIENCE).await;
    let seen = harness::triples(&events);
    assert_eq!(
        seen,
        [
            ("created", "two\nlines", by_cli.as_str()),
            ("created", "two\nlines", by_library.as_str()),
            ("message", "x", unnamed.as_str()),
            ("message", "after garbage", after.as_str()),
        ]
    );
    assert_eq!(
        metric(&gateway, "sse_redis_messages_invalid_total").await,
        3.0
    );
}

#[tokio::test]
async fn the_same_stream_works_over_h2c() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--retry-jitter", "0s"]);
    let publisher = publisher(&redis).await;
    let mut client = SseClient::open(gateway.addr, "/events?topic=h2", &[], Protocol::Http2).await;
    assert_eq!(client.status(), 200);
    assert_eq!(client.headers()["content-type"], "text/event-stream");
    assert_eq!(client.position(PATIENCE).await, "0-0");
    assert!(
        client
            .raw()
            .starts_with(b"retry: 1000\n\n: stream open\n\nid: 0-0\n\n")
    );

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(publish(&publisher, "h2", Some("tick"), &format!("{n}\r\nnext")).await);
    }
    for (n, (event, id)) in client
        .events(3, PATIENCE)
        .await
        .iter()
        .zip(&ids)
        .enumerate()
    {
        assert_eq!(event.event_type, "tick");
        assert_eq!(event.data, format!("{n}\nnext"));
        assert_eq!(&event.last_event_id, id);
    }

    let last = ids.last().expect("three ids").clone();
    let missed = publish(&publisher, "h2", None, "missed").await;
    let mut resumed = SseClient::open(
        gateway.addr,
        "/events?topic=h2",
        &[("last-event-id", last.as_str())],
        Protocol::Http2,
    )
    .await;
    let event = resumed.next_event(PATIENCE).await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id),
        ("missed", missed)
    );
}

#[tokio::test]
async fn cors_allows_only_the_configured_origin_and_answers_preflights() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--cors-origin", "https://app.example"]);

    let allowed = gateway
        .get("/events?topic=c", &[("Origin", "https://app.example")])
        .await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = gateway
        .get("/events?topic=c", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let preflight = |origin: &str| {
        raw_head(
            gateway.addr,
            &format!(
                "OPTIONS /events?topic=c HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: GET\r\n\
                 Access-Control-Request-Headers: last-event-id\r\nConnection: close\r\n\r\n",
                gateway.addr
            ),
        )
    };
    let (status, headers) = preflight("https://app.example");
    assert!((200..300).contains(&status), "preflight status {status}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.split(',').any(|m| m.trim() == "GET"), "{methods:?}");
    let allow_headers = header(&headers, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allow_headers
            .split(',')
            .any(|h| h.trim() == "last-event-id"),
        "{allow_headers:?}"
    );

    let (_, headers) = preflight("https://evil.example");
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn cors_with_credentials_echoes_the_origin_and_counts_refused_origins() {
    let redis = RedisServer::start();
    let gateway = start_gateway(
        &redis,
        &["--cors-origin", "https://app.example", "--cors-credentials"],
    );
    let allowed = gateway
        .get("/events?topic=c", &[("Origin", "https://app.example")])
        .await;
    let header_of = |name: &str| {
        allowed
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        header_of("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header_of("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header_of("vary").as_deref(), Some("Origin"));

    let (status, headers) = raw_head(
        gateway.addr,
        &format!(
            "OPTIONS /events?topic=c HTTP/1.1\r\nHost: {}\r\nOrigin: https://app.example\r\n\
             Access-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: authorization, last-event-id\r\n\
             Connection: close\r\n\r\n",
            gateway.addr
        ),
    );
    assert!((200..300).contains(&status), "preflight status {status}");
    let allow_headers = header(&headers, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for needed in ["authorization", "last-event-id", "content-type"] {
        assert!(
            allow_headers.split(',').any(|h| h.trim() == needed),
            "{allow_headers:?} lacks {needed}"
        );
    }
    assert!(header(&headers, "access-control-max-age").is_some());

    let refused = gateway
        .get("/events?topic=c", &[("Origin", "https://evil.example")])
        .await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let (_, metrics) = gateway.fetch("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "sse_cors_rejected_total 1"),
        "the refused origin is counted"
    );
}

#[test]
fn any_origin_with_credentials_is_refused_at_startup_with_a_reason() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .env_clear()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cors-origin",
            "*",
            "--cors-credentials",
        ])
        .output()
        .expect("run sse-gateway");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cors-origin '*' cannot go with --cors-credentials"),
        "{stderr}"
    );
}

/// `max_events` and `max_seconds` end a stream by themselves (what load tests and bounded
/// polling use); the next connection resumes exactly where the bounded one ended.
#[tokio::test]
async fn bounded_streams_end_by_themselves_and_resume_exactly() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);
    let publisher = publisher(&redis).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&publisher, "bounded", None, &n.to_string()).await);
    }

    let mut first = gateway
        .get("/events?topic=bounded&lastEventId=0-0&max_events=3", &[])
        .await;
    let events = first.until_closed(PATIENCE).await;
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["0", "1", "2"]);

    let path = format!(
        "/events?topic=bounded&max_events=10&max_seconds=1&lastEventId={}",
        ids[2]
    );
    let mut rest = gateway.get(&path, &[]).await;
    let live = publish(&publisher, "bounded", None, "5").await;
    let events = rest.until_closed(PATIENCE).await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.data.as_str(), e.last_event_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("3", ids[3].as_str()),
            ("4", ids[4].as_str()),
            ("5", live.as_str())
        ]
    );

    let (status, body) = gateway.fetch("/events?topic=bounded&max_events=0").await;
    assert_eq!(status, 400);
    assert!(body.contains("max_events"), "{body}");
}

/// `--max-connection-age`: every stream ends by itself within the age band, and its client
/// resumes from its last id with exactly the events it did not get, whatever was published
/// around the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_at_the_connection_age_and_resume_exactly() {
    let redis = RedisServer::start();
    let gateway = start_gateway(
        &redis,
        &[
            "--max-connection-age",
            "2s",
            "--max-connection-age-jitter",
            "1s",
        ],
    );
    let publisher = publisher(&redis).await;
    let mut client = gateway.subscribe(&["aging"]).await;
    let opened = std::time::Instant::now();
    let mut ids = Vec::new();
    let mut received = Vec::new();
    loop {
        match client.next(Duration::from_millis(50)).await {
            Next::Item(Item::Event(event)) => received.push(event.data),
            Next::Item(_) => {}
            Next::Timeout => {
                ids.push(publish(&publisher, "aging", None, &ids.len().to_string()).await);
                assert!(opened.elapsed() < PATIENCE, "the stream never ended");
            }
            Next::Closed => break,
        }
    }
    // The age is drawn from 1–2 s: the stream cannot have ended before 1 s.
    assert!(opened.elapsed() >= Duration::from_secs(1));
    assert!(!received.is_empty());
    for _ in 0..3 {
        ids.push(publish(&publisher, "aging", None, &ids.len().to_string()).await);
    }
    let mut resumed = gateway
        .get(
            "/events?topic=aging",
            &[("Last-Event-ID", client.last_event_id())],
        )
        .await;
    let rest = resumed.events(ids.len() - received.len(), PATIENCE).await;
    let all: Vec<String> = received
        .into_iter()
        .chain(rest.into_iter().map(|e| e.data))
        .collect();
    let expected: Vec<String> = (0..ids.len()).map(|n| n.to_string()).collect();
    assert_eq!(all, expected, "every event once, in order, across the end");
    let ended = gateway.metric("sse_stream_duration_seconds_count").await;
    assert!(ended >= 1, "the ended stream's lifetime is counted");

    let error = start_gateway(
        &redis,
        &[
            "--max-connection-age",
            "1s",
            "--max-connection-age-jitter",
            "1s",
        ],
    )
    .stop()
    .expect_err("a jitter as long as the age is refused");
    assert!(
        sse_core::ErrorChain(&error).to_string().contains(
            "--max-connection-age-jitter (1s) must be less than --max-connection-age (1s)"
        ),
        "{error}"
    );
}

/// The body of an HTTP/1.1 chunked response, checking the framing strictly: every chunk's
/// size line, data and CRLF, then the last chunk, and nothing after it.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("no chunk size line in {:?}", String::from_utf8_lossy(body)));
        let size = usize::from_str_radix(
            std::str::from_utf8(&body[..line_end]).expect("an ASCII chunk size"),
            16,
        )
        .expect("a hexadecimal chunk size");
        body = &body[line_end + 2..];
        assert_eq!(&body[size..size + 2], b"\r\n", "a chunk ends with CRLF");
        data.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
        if size == 0 {
            assert!(body.is_empty(), "nothing after the last chunk: {body:?}");
            return data;
        }
    }
}

/// The takeover of an HTTP/1.1 stream's socket from hyper by the stream's own writer (see the
/// gateway's `takeover` module) loses, repeats and reorders no byte: the head, the first
/// bytes, replayed and live events (one larger than hyper's buffers) arrive exactly, framed as
/// the head says, and the stream ends with the last chunk and the connection. An HTTP/1.0
/// client, whose stream stays with hyper, reads the same bytes close-delimited.
#[tokio::test]
async fn an_http1_stream_is_exact_on_the_wire_after_the_socket_leaves_hyper() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--retry-jitter", "0s"]);
    let publisher = publisher(&redis).await;
    let large = "x".repeat(40_000);
    let first = publish(&publisher, "wire", Some("big"), &large).await;
    let second = publish(&publisher, "wire", None, "two\nlines").await;
    let expected = format!(
        "retry: 1000\n\n: stream open\n\nevent: big\ndata: {large}\nid: {first}\n\n\
         data: two\ndata: lines\nid: {second}\n\n"
    );

    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let addr = gateway.addr;
        let request = format!(
            "GET /events?topic=wire&lastEventId=0-0&max_events=2 {version}\r\n\
             Host: x\r\n\r\n"
        );
        let response = tokio::task::spawn_blocking(move || {
            sse_testkit::send_raw(addr, request.as_bytes(), PATIENCE)
        })
        .await
        .unwrap();
        let split = find(&response, b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let body = &response[split + 4..];
        assert!(
            head.starts_with(&format!("{} 200", version.to_ascii_lowercase())),
            "{head}"
        );
        let body = if version == "HTTP/1.1" {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            assert!(head.contains("connection: close"), "{head}");
            dechunk(body)
        } else {
            assert!(!head.contains("transfer-encoding"), "{head}");
            body.to_vec()
        };
        assert_eq!(String::from_utf8(body).unwrap(), expected, "{version}");
    }

    // Live: the socket leaves hyper before the events exist.
    let addr = gateway.addr;
    let (positioned, has_position) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let request = "GET /events?topic=wire&max_events=2 HTTP/1.1\r\nHost: x\r\n\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let (mut response, mut buffer) = (Vec::new(), [0u8; 4096]);
        loop {
            let read = stream.read(&mut buffer).unwrap();
            if read == 0 {
                return response;
            }
            response.extend_from_slice(&buffer[..read]);
            if find(&response, b"id: ").is_some() {
                let _ = positioned.send(());
            }
        }
    });
    has_position
        .recv_timeout(PATIENCE)
        .expect("the stream's position");
    let third = publish(&publisher, "wire", None, &large).await;
    let fourth = publish(&publisher, "wire", Some("end"), "4").await;
    let response = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let split = find(&response, b"\r\n\r\n").unwrap();
    let body = String::from_utf8(dechunk(&response[split + 4..])).unwrap();
    assert_eq!(
        body,
        format!(
            "retry: 1000\n\n: stream open\n\nid: {second}\n\n\
             data: {large}\nid: {third}\n\nevent: end\ndata: 4\nid: {fourth}\n\n"
        )
    );
}
