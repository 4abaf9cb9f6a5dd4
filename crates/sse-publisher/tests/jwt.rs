//! Publisher JWTs: a token whose claim lists topics may publish to them and to nothing else; a
//! batch with one forbidden topic is refused whole before anything is written; bad tokens get
//! 401 saying why; static tokens keep working beside JWTs; keys from a JWKS URL verify by
//! `kid` (503 before any was fetched); refusals are counted by reason.

mod harness;

use harness::{TOKEN, start_publisher, xlen};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sse_testkit::RedisServer;

const SECRET: &str = "publisher-test-secret";

fn token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign a test token")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn publishing(topics: &[&str]) -> String {
    token(&json!({"exp": now() + 3600, "sse": {"publish": topics}}))
}

#[tokio::test]
async fn a_jwt_publishes_to_its_topics_only_and_a_batch_is_checked_whole() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--jwt-secret", SECRET]);
    let orders = publishing(&["orders.*"]);

    let one = json!({"topic": "orders.eu", "data": 1}).to_string();
    let reply = publisher.post_json(&one, Some(&orders)).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(xlen(&redis, "orders.eu"), 1);

    let elsewhere = json!({"topic": "news", "data": 1}).to_string();
    publisher
        .post_json(&elsewhere, Some(&orders))
        .await
        .assert_error(403, "forbidden", &["\"news\"", "nothing was published"]);

    let batch = json!([
        {"topic": "orders.us", "data": 1},
        {"topic": "orders.eu", "data": 2},
        {"topic": "billing", "data": 3}
    ])
    .to_string();
    publisher
        .post_json(&batch, Some(&orders))
        .await
        .assert_error(403, "forbidden", &["\"billing\""]);
    assert_eq!(
        xlen(&redis, "orders.us"),
        0,
        "nothing of the batch was written"
    );
    assert_eq!(xlen(&redis, "orders.eu"), 1);

    // A token whose claim lists only subscriptions may publish nowhere.
    let reader = token(&json!({"exp": now() + 3600, "sse": {"subscribe": ["**"]}}));
    publisher
        .post_json(&one, Some(&reader))
        .await
        .assert_error(403, "forbidden", &["orders.eu"]);

    // The static token still publishes anywhere.
    let reply = publisher.post_json(&elsewhere, Some(TOKEN)).await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

#[tokio::test]
async fn bad_publisher_tokens_get_401_saying_why() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--jwt-secret", SECRET]);
    let body = json!({"topic": "orders", "data": 1}).to_string();
    let expired = token(&json!({"exp": now() - 600, "sse": {"publish": ["orders"]}}));
    let forged = jsonwebtoken::encode(
        &Header::default(),
        &json!({"exp": now() + 3600, "sse": {"publish": ["orders"]}}),
        &EncodingKey::from_secret(b"not the secret"),
    )
    .expect("sign");
    let bad_pattern = publishing(&["orders.**.x"]);
    for (token, phrases) in [
        (expired, &["expired"][..]),
        (forged, &["signature does not verify"][..]),
        (bad_pattern, &["invalid topic pattern"][..]),
        ("not-a-jwt".to_owned(), &["not a JWT"][..]),
    ] {
        let reply = publisher.post_json(&body, Some(&token)).await;
        reply.assert_error(401, "invalid_token", phrases);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    publisher.post_json(&body, None).await.assert_error(
        401,
        "unauthorized",
        &["Authorization: Bearer"],
    );
    assert_eq!(xlen(&redis, "orders"), 0);
}

#[tokio::test]
async fn a_jwt_key_alone_is_enough_to_start_and_publish() {
    let redis = RedisServer::start();
    let url = redis.url();
    let publisher = harness::start_publisher_with(&["--redis-url", &url, "--jwt-secret", SECRET]);
    let body = json!({"topic": "orders", "data": 1}).to_string();
    let reply = publisher
        .post_json(&body, Some(&publishing(&["orders"])))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    publisher.post_json(&body, Some(TOKEN)).await.assert_error(
        401,
        "invalid_token",
        &["not a JWT"],
    );
}

/// An Ed25519 key pair for the JWKS test only.
const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINIyM2TO6mzHT5Nry9Jo7oFpvQ9ScXF1+H/ReeRUBZ25
-----END PRIVATE KEY-----
";

/// The `sse_publish_auth_failures_total` sample for `reason` (0 when not yet counted).
async fn auth_failures(publisher: &harness::TestPublisher, reason: &str) -> u64 {
    let series = format!("sse_publish_auth_failures_total{{reason=\"{reason}\"}} ");
    publisher
        .get("/metrics")
        .await
        .text()
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn jwks_keys_verify_publisher_tokens_by_kid_and_refusals_are_counted_by_reason() {
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::jwk::Jwk;
    use sse_testkit::{Answer, AppServer};

    let redis = RedisServer::start();
    let key = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).expect("a private key");
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("a JWK"))
            .expect("JSON");
    jwk["kid"] = json!("k1");
    let provider = AppServer::start(Answer::status(503));
    let url = provider.url("/jwks");
    let publisher = start_publisher(&redis, &["--jwks-url", &url, "--jwks-min-interval", "0s"]);
    let signed = |kid: &str| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let claims = json!({"exp": now() + 3600, "sse": {"publish": ["orders"]}});
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    };
    let body = json!({"topic": "orders", "data": 1}).to_string();

    let reply = publisher.post_json(&body, Some(&signed("k1"))).await;
    reply.assert_error(503, "keys_unavailable", &["could not be fetched"]);
    assert!(reply.header("retry-after").is_some());

    provider.answer(Answer::json(json!({"keys": [jwk]})));
    let reply = publisher.post_json(&body, Some(&signed("k1"))).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    publisher
        .post_json(&body, Some(&signed("k2")))
        .await
        .assert_error(401, "invalid_token", &["kid \"k2\""]);
    publisher.post_json(&body, None).await;
    assert_eq!(auth_failures(&publisher, "no_keys").await, 1);
    assert_eq!(auth_failures(&publisher, "unknown_key").await, 1);
    assert_eq!(auth_failures(&publisher, "no_token").await, 1);
    assert_eq!(xlen(&redis, "orders"), 1);
}
