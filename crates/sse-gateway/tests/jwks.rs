//! Keys from a JWKS URL, against a real node, a real Redis and a local HTTP server playing the
//! identity provider: a rotation to a new key (of another type, too) is picked up without a
//! restart on the first token that names it; a provider that is down or serves garbage
//! leaves the keys the node had in use; made-up `kid`s cannot make the node fetch more than
//! once per `--jwks-min-interval`; before any key was fetched, tokens get 503, not 401.

mod harness;

use std::path::Path;

use harness::tokens::{bearer, key_pair, reading, sign_with_kid, signing_key};
use harness::{PATIENCE, TestGateway, publish, publisher, refused, start_gateway};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use sse_testkit::{Answer, AppServer, RedisServer, eventually};

/// A signing key and the JWK of its public half.
struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    jwk: Value,
}

impl Signer {
    fn new(dir: &Path, kid: &str, algorithm: Algorithm) -> Self {
        let key = signing_key(&key_pair(dir, kid, algorithm), algorithm);
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&key, algorithm).expect("a JWK of the public key"),
        )
        .expect("a JWK is JSON");
        jwk["kid"] = json!(kid);
        Self {
            key,
            algorithm,
            jwk,
        }
    }

    /// `Bearer <token>` for reading `orders.*`, naming `kid`.
    fn bearer(&self, kid: &str) -> String {
        bearer(&sign_with_kid(
            &reading(&["orders.*"]),
            self.algorithm,
            &self.key,
            kid,
        ))
    }
}

fn document(signers: &[&Signer]) -> Answer {
    Answer::json(json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}))
}

const PATH: &str = "/events?topic=orders.eu";

async fn opens(gateway: &TestGateway, authorization: &str) {
    let mut client = gateway.get(PATH, &[("Authorization", authorization)]).await;
    assert_eq!(client.status(), 200, "{}", client.text().await);
}

/// Waits until the node counted `count` fetches with `outcome`.
async fn fetched(gateway: &TestGateway, outcome: &str, count: u64) {
    let series = format!("sse_jwks_refreshes_total{{outcome=\"{outcome}\"}}");
    eventually(&format!("{series} reaches {count}"), PATIENCE, || async {
        let text = gateway.fetch("/metrics").await.1;
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str())?.strip_prefix(' '))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0);
        (value >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_rotated_key_is_used_without_restart_and_the_old_one_stops_verifying() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("a temporary directory");
    let old = Signer::new(keys.path(), "old", Algorithm::RS256);
    let new = Signer::new(keys.path(), "new", Algorithm::ES256);
    let provider = AppServer::start(document(&[&old]));
    let url = provider.url("/.well-known/jwks.json");
    let gateway = start_gateway(&redis, &["--jwks-url", &url, "--jwks-min-interval", "0s"]);
    let publisher = publisher(&redis).await;
    fetched(&gateway, "updated", 1).await;
    assert_eq!(gateway.metric("sse_jwks_keys").await, 1);

    let mut before = gateway
        .get(PATH, &[("Authorization", &old.bearer("old"))])
        .await;
    assert_eq!(before.status(), 200, "{}", before.text().await);
    before.position(PATIENCE).await;
    refused(
        &gateway,
        PATH,
        &[("Authorization", &new.bearer("new"))],
        401,
        &["kid \"new\"", "does not know"],
    )
    .await;

    provider.answer(document(&[&new]));
    opens(&gateway, &new.bearer("new")).await;
    refused(
        &gateway,
        PATH,
        &[("Authorization", &old.bearer("old"))],
        401,
        &["kid \"old\""],
    )
    .await;
    // A stream is checked when it opens: the one opened with the old key runs on.
    publish(&publisher, "orders.eu", None, "still here").await;
    assert_eq!(before.next_event(PATIENCE).await.data, "still here");
    assert!(
        gateway
            .metric("sse_auth_failures_total{reason=\"unknown_key\"}")
            .await
            >= 2
    );
}

#[tokio::test]
async fn a_provider_down_or_serving_garbage_leaves_the_keys_in_use() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("a temporary directory");
    let signer = Signer::new(keys.path(), "a", Algorithm::EdDSA);
    let provider = AppServer::start(document(&[&signer]));
    let url = provider.url("/jwks");
    let gateway = start_gateway(&redis, &["--jwks-url", &url, "--jwks-min-interval", "0s"]);
    fetched(&gateway, "updated", 1).await;

    let garbage = [
        Answer::status(500).body("oops"),
        Answer::json("<html>not json</html>"),
        Answer::json(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]})),
        Answer::json(json!({"keys": "none"})),
    ];
    for answer in garbage {
        provider.answer(answer.clone());
        let calls = provider.calls();
        // A made-up kid makes the node fetch, which fails...
        refused(
            &gateway,
            PATH,
            &[("Authorization", &signer.bearer("made-up"))],
            401,
            &["kid \"made-up\""],
        )
        .await;
        assert!(provider.calls() > calls, "{answer:?}: the node fetched");
        // ...and the key it had still verifies.
        opens(&gateway, &signer.bearer("a")).await;
        assert_eq!(gateway.metric("sse_jwks_keys").await, 1, "{answer:?}");
    }
    fetched(&gateway, "unreachable", 1).await;
    fetched(&gateway, "invalid", 3).await;
}

#[tokio::test]
async fn made_up_kids_cannot_make_the_node_fetch_more_than_once_per_interval() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("a temporary directory");
    let signer = Signer::new(keys.path(), "a", Algorithm::ES256);
    let provider = AppServer::start(document(&[&signer]));
    let url = provider.url("/jwks");
    let gateway = start_gateway(&redis, &["--jwks-url", &url, "--jwks-min-interval", "1h"]);
    fetched(&gateway, "updated", 1).await;
    for n in 0..20 {
        refused(
            &gateway,
            PATH,
            &[("Authorization", &signer.bearer(&format!("guess-{n}")))],
            401,
            &["does not know"],
        )
        .await;
    }
    assert_eq!(provider.calls(), 1, "only the fetch at start");
    opens(&gateway, &signer.bearer("a")).await;
}

#[tokio::test]
async fn before_any_key_was_fetched_tokens_get_503_and_then_verify() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("a temporary directory");
    let signer = Signer::new(keys.path(), "a", Algorithm::RS256);
    let provider = AppServer::start(Answer::status(503));
    let url = provider.url("/jwks");
    let gateway = start_gateway(&redis, &["--jwks-url", &url, "--jwks-min-interval", "0s"]);
    fetched(&gateway, "unreachable", 1).await;
    let mut client = gateway
        .get(PATH, &[("Authorization", &signer.bearer("a"))])
        .await;
    assert_eq!(client.status(), 503);
    assert!(client.headers().contains_key("retry-after"));
    let message = client.text().await;
    assert!(
        message.contains("cannot be checked right now") && message.contains("keys"),
        "{message}"
    );
    assert_eq!(
        gateway
            .metric("sse_auth_failures_total{reason=\"no_keys\"}")
            .await,
        1
    );

    provider.answer(document(&[&signer]));
    opens(&gateway, &signer.bearer("a")).await;
}
