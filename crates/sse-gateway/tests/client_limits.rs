//! Per-client limits: `--max-connections-per-ip` and `--max-connections-per-user` refuse a
//! client's next stream with 429 and `Retry-After`, leave other clients alone, and give the
//! share back when a stream ends; the address comes from `X-Forwarded-For` only when the
//! peer is a `--trusted-proxy`.

mod harness;

use harness::{PATIENCE, refused, start_gateway};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use sse_testkit::{RedisServer, eventually};

#[tokio::test]
async fn an_address_over_its_limit_gets_429_and_its_share_back_when_a_stream_ends() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--max-connections-per-ip", "2"]);
    let first = gateway.get("/events?topic=a", &[]).await;
    let mut second = gateway.get("/events?topic=b", &[]).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    second.position(PATIENCE).await;
    refused(
        &gateway,
        "/events?topic=c",
        &[],
        429,
        &["this address", "maximum of 2"],
    )
    .await;
    let third = gateway.get("/events?topic=c", &[]).await;
    assert_eq!(
        third
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
        Some("5".to_owned())
    );
    drop(first);
    // The share comes back once the node notices the closed stream.
    let reopened = eventually("a closed stream gives its share back", PATIENCE, || async {
        let client = gateway.get("/events?topic=c", &[]).await;
        (client.status() == 200).then_some(client)
    })
    .await;
    drop(reopened);
    let (_, metrics) = gateway.fetch("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("sse_requests_rejected_total{reason=\"per_ip_limit\"}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let redis = RedisServer::start();
    let trusting = start_gateway(
        &redis,
        &[
            "--max-connections-per-ip",
            "1",
            "--trusted-proxy",
            "127.0.0.0/8",
        ],
    );
    let alice = trusting
        .get("/events?topic=a", &[("X-Forwarded-For", "203.0.113.1")])
        .await;
    let bob = trusting
        .get(
            "/events?topic=a",
            &[("X-Forwarded-For", "203.0.113.2, 127.0.0.1")],
        )
        .await;
    assert_eq!(
        (alice.status().as_u16(), bob.status().as_u16()),
        (200, 200),
        "two clients behind one proxy"
    );
    refused(
        &trusting,
        "/events?topic=a",
        &[("X-Forwarded-For", "203.0.113.1")],
        429,
        &["this address"],
    )
    .await;

    let untrusting = start_gateway(&redis, &["--max-connections-per-ip", "1"]);
    let first = untrusting
        .get("/events?topic=a", &[("X-Forwarded-For", "203.0.113.1")])
        .await;
    assert_eq!(first.status(), 200);
    refused(
        &untrusting,
        "/events?topic=a",
        &[("X-Forwarded-For", "203.0.113.2")],
        429,
        &["this address"],
    )
    .await;
}

#[tokio::test]
async fn a_user_over_its_limit_gets_429_whatever_its_address() {
    let redis = RedisServer::start();
    let secret = "per-user-secret";
    let gateway = start_gateway(
        &redis,
        &["--jwt-secret", secret, "--max-connections-per-user", "1"],
    );
    let token = |sub: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
            + 3600;
        let claims = json!({"exp": exp, "sub": sub, "sse": {"subscribe": ["**"]}});
        let signed = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign");
        format!("Bearer {signed}")
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let first = gateway
        .get("/events?topic=a", &[("Authorization", &alice)])
        .await;
    let other = gateway
        .get("/events?topic=a", &[("Authorization", &bob)])
        .await;
    assert_eq!(
        (first.status().as_u16(), other.status().as_u16()),
        (200, 200)
    );
    refused(
        &gateway,
        "/events?topic=b",
        &[("Authorization", &alice)],
        429,
        &["this user", "maximum of 1"],
    )
    .await;
}

/// `--accept-rate`: a burst of the rate is admitted, then new streams get 503 with a
/// `Retry-After` and a `retry:` that differ from client to client, the streams already open
/// are untouched, `/readyz` stays 200, and the refusals are counted.
#[tokio::test]
async fn beyond_the_accept_rate_new_streams_get_503_told_when_to_return_and_the_node_stays_ready() {
    let redis = RedisServer::start();
    let gateway = start_gateway(&redis, &["--accept-rate", "5"]);
    let mut open = Vec::new();
    for n in 0..5 {
        open.push(gateway.subscribe(&[&format!("admitted-{n}")]).await);
    }
    // Tokens come back at 5 a second: on a slow machine a request now and then is admitted.
    let mut waits = Vec::new();
    let mut attempts = 0;
    while waits.len() < 10 {
        attempts += 1;
        assert!(
            attempts <= 100,
            "only {} of {attempts} refused",
            waits.len()
        );
        let mut client = gateway.get("/events?topic=storm", &[]).await;
        if client.status().as_u16() == 200 {
            continue;
        }
        assert_eq!(client.status().as_u16(), 503);
        let header = |name: &str| {
            client
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        let retry_after: u64 = header("retry-after")
            .and_then(|value| value.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=3).contains(&retry_after), "{retry_after}");
        let body = client.text().await;
        assert!(
            body.starts_with(": this node admits at most 5 new streams per second; retry in "),
            "{body:?}"
        );
        let retry: u64 = body
            .lines()
            .find_map(|line| line.strip_prefix("retry: "))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("a retry: line in {body:?}"));
        assert!(retry <= retry_after * 1000 && retry > (retry_after - 1) * 1000);
        waits.push(retry);
        assert_eq!(gateway.fetch("/readyz").await.0, 200, "still ready");
    }
    waits.sort_unstable();
    waits.dedup();
    assert!(
        waits.len() > 1,
        "clients are told different waits: {waits:?}"
    );
    let (_, metrics) = gateway.fetch("/metrics").await;
    assert!(
        metrics.contains(r#"sse_requests_rejected_total{reason="accept_rate"} 10"#),
        "{metrics}"
    );
    // The open streams still deliver.
    let publisher = harness::publisher(&redis).await;
    harness::publish(&publisher, "admitted-0", None, "still here").await;
    assert_eq!(open[0].next_event(PATIENCE).await.data, "still here");
}
