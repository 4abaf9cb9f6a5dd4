//! Refusals: every limit and every bad input gets its status and a sentence naming the
//! problem, and none of them disturbs the streams already open on the node.

mod harness;

use harness::{PATIENCE, TestGateway, publish, publisher, refused, start_gateway};
use sse_core::{Cursor, EventId, Topic};
use sse_testkit::{RedisServer, eventually};

/// The value of the sample `series` (a metric name with its labels, as exported) on `gateway`'s
/// `/metrics`, or 0 when it is absent.
async fn metric(gateway: &TestGateway, series: &str) -> f64 {
    let (status, text) = gateway.fetch("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a numeric sample"))
}

/// A request that must be refused with 400: its path, its `Last-Event-ID` header if any, and
/// phrases the message must contain.
type BadRequest<'a> = (&'a str, Option<&'a str>, &'a [&'a str]);

fn topic(name: &str) -> Topic {
    Topic::parse(name).expect("tests use valid topics")
}

#[tokio::test]
async fn bad_requests_get_400_with_a_reason_and_harm_no_open_stream() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--max-topics", "2"]);
    let publisher = publisher(&redis).await;
    let mut witness = gateway.subscribe(&["w"]).await;
    let mut ids = vec![publish(&publisher, "w", None, "0").await];

    let other_topics = Cursor::new([
        (topic("a"), EventId::new(1, 0)),
        (topic("b"), EventId::new(2, 0)),
    ])
    .encode();
    let long_topic = format!("/events?topic={}", "t".repeat(129));
    let long_id = "1".repeat(5000);
    #[rustfmt::skip]
    let cases: [BadRequest<'_>; 14] = [
        ("/events", None, &["at least one topic"]),
        ("/events?other=1", None, &["at least one topic"]),
        ("/events?topic=", None, &["invalid topic", "empty"]),
        ("/events?topic=a%20b", None, &["invalid topic", "\"a b\"", "' '"]),
        ("/events?topic=%7Bx%7D", None, &["invalid topic", "\"{x}\"", "'{'"]),
        (&long_topic, None, &["invalid topic", "129 bytes", "128"]),
        ("/events?topic=a&topic=b&topic=c", None, &["3 topics", "at most 2"]),
        ("/events?topic=a", Some("junk"), &["Last-Event-ID", "\"junk\""]),
        ("/events?topic=a&lastEventId=nope", None, &["Last-Event-ID", "\"nope\""]),
        // Not visible ASCII, so not a header value `to_str` accepts.
        ("/events?topic=a", Some("\u{e9}"), &["Last-Event-ID"]),
        ("/events?topic=a", Some(&long_id), &["Last-Event-ID", "5000 bytes", "4096"]),
        (
            "/events?topic=a&topic=b",
            Some("1700000000000-0"),
            &["Last-Event-ID", "a stream id resumes a single topic"],
        ),
        (
            "/events?topic=a&topic=b&lastEventId=1700000000000-0",
            None,
            &["Last-Event-ID", "a stream id resumes a single topic"],
        ),
        ("/events?topic=a&topic=c", Some(&other_topics), &["Last-Event-ID", "different set of topics"]),
    ];
    for (n, (path, last_event_id, phrases)) in cases.iter().enumerate() {
        let headers: Vec<(&str, &str)> = last_event_id
            .iter()
            .map(|id| ("Last-Event-ID", *id))
            .collect();
        refused(&gateway, path, &headers, 400, phrases).await;
        // Interleaved with the refusals, the open stream keeps getting events.
        ids.push(publish(&publisher, "w", None, &(n + 1).to_string()).await);
    }
    // Limits count distinct topics.
    let repeated = gateway
        .get("/events?topic=a&topic=b&topic=a&topic=b", &[])
        .await;
    assert_eq!(repeated.status(), 200);
    drop(repeated);

    for (n, (event, id)) in witness
        .events(ids.len(), PATIENCE)
        .await
        .iter()
        .zip(&ids)
        .enumerate()
    {
        assert_eq!(
            (event.data.as_str(), &event.last_event_id),
            (&*n.to_string(), id)
        );
    }
    assert_eq!(
        metric(
            &gateway,
            r#"sse_requests_rejected_total{reason="bad_request"}"#
        )
        .await,
        cases.len() as f64
    );
}

#[tokio::test]
async fn over_max_connections_gets_503_with_retry_after_until_a_stream_closes() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--max-connections", "2"]);
    let publisher = publisher(&redis).await;
    let mut witness = gateway.subscribe(&["w"]).await;
    let second = gateway.subscribe(&["x"]).await;

    let mut refused = gateway.get("/events?topic=y", &[]).await;
    assert_eq!(refused.status(), 503);
    let retry_after = refused.headers()["retry-after"].to_str().unwrap();
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "Retry-After: {retry_after}"
    );
    let message = refused.text().await;
    assert!(message.contains("maximum of 2 streams"), "{message:?}");
    assert_eq!(
        metric(
            &gateway,
            r#"sse_requests_rejected_total{reason="over_capacity"}"#
        )
        .await,
        1.0
    );

    drop(second);
    let mut third = eventually("a slot frees up", PATIENCE, || async {
        let client = gateway.get("/events?topic=y", &[]).await;
        (client.status() == 200).then_some(client)
    })
    .await;
    third.position(PATIENCE).await;

    let id = publish(&publisher, "w", None, "still here").await;
    let event = witness.next_event(PATIENCE).await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id),
        ("still here", id)
    );
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_405_with_allow() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &[]);

    refused(
        &gateway,
        "/nowhere",
        &[],
        404,
        &["/nowhere", "/events?topic="],
    )
    .await;

    let response = harness::raw_request(
        gateway.addr,
        &format!(
            "POST /events?topic=a HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            gateway.addr
        ),
    );
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {response:?}"));
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    let allow = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("allow"))
        .map(|(_, value)| value.trim());
    assert_eq!(allow, Some("GET, OPTIONS"));
    assert!(body.contains("POST"), "{body:?}");

    let (status, _) = gateway.fetch("/healthz").await;
    assert_eq!(status, 200, "the node still serves");
}
