//! Forward auth (`--auth-url`) against a real node, a real Redis and a local HTTP server
//! playing the application: it gets the subscriber's cookies, Authorization (or query token)
//! and topics; a 2xx opens the stream, naming topics and an expiry if it likes; its 401 and
//! 403 reach the subscriber; a slow, unreachable or garbled application is a 503 and never a
//! stream, and harms no open stream; decisions are reused for `--auth-cache-ttl`, and
//! identical checks under way share one call. With a JWT key too, both must allow.

mod harness;

use std::time::Duration;

use harness::tokens::{SECRET, bearer, hs256, now, reading};
use harness::{PATIENCE, TestGateway, publish, publisher, refused, start_gateway};
use serde_json::json;
use sse_testkit::{Answer, AppServer, RedisServer, free_port};

fn with_app(redis: &RedisServer, app: &AppServer, extra: &[&str]) -> TestGateway {
    let url = app.url("/auth?app=sse");
    let mut args = vec!["--auth-url", url.as_str()];
    args.extend_from_slice(extra);
    start_gateway(redis, &args)
}

#[tokio::test]
async fn the_application_gets_the_credentials_and_topics_and_its_2xx_opens_the_stream() {
    let redis = RedisServer::start();
    let app = AppServer::start(Answer::status(204));
    let gateway = with_app(&redis, &app, &["--auth-cache-ttl", "0s"]);
    let publisher = publisher(&redis).await;
    let mut client = gateway
        .get(
            "/events?topic=orders&topic=news",
            &[
                ("Cookie", "session=s1"),
                ("Cookie", "theme=dark"),
                ("Authorization", "Basic dXNlcjpwdw=="),
            ],
        )
        .await;
    assert_eq!(client.status(), 200, "{}", client.text().await);
    client.position(PATIENCE).await;
    publish(&publisher, "news", None, "hello").await;
    assert_eq!(client.next_event(PATIENCE).await.data, "hello");

    let seen = app.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/auth?app=sse&topic=news&topic=orders");
    let header = |name: &str| {
        seen[0]
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap_or_default().to_owned())
    };
    assert_eq!(header("cookie").as_deref(), Some("session=s1; theme=dark"));
    assert_eq!(
        header("authorization").as_deref(),
        Some("Basic dXNlcjpwdw==")
    );

    // A query token, for a cross-site EventSource, travels as a bearer token.
    let client = gateway
        .get("/events?topic=orders&access_token=opaque-123", &[])
        .await;
    assert_eq!(client.status(), 200);
    let seen = app.seen();
    assert_eq!(
        seen[1]
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer opaque-123")
    );
    assert!(
        gateway
            .metric("sse_forward_auth_calls_total{outcome=\"allow\"}")
            .await
            >= 2
    );
}

#[tokio::test]
async fn the_applications_401_and_403_reach_the_subscriber_and_its_topics_bound_the_stream() {
    let redis = RedisServer::start();
    let app = AppServer::start(
        Answer::status(401)
            .header("www-authenticate", "Bearer realm=\"app\"")
            .body("log in first"),
    );
    let gateway = with_app(&redis, &app, &["--auth-cache-ttl", "0s"]);
    let mut client = gateway.get("/events?topic=orders", &[]).await;
    assert_eq!(client.status(), 401);
    assert_eq!(
        client
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer realm=\"app\"")
    );
    assert!(
        client
            .text()
            .await
            .contains("application refused this stream (401)")
    );

    app.answer(Answer::status(403));
    refused(
        &gateway,
        "/events?topic=orders",
        &[],
        403,
        &["application refused this stream (403)"],
    )
    .await;
    assert_eq!(
        gateway
            .metric("sse_auth_failures_total{reason=\"forward_denied\"}")
            .await,
        2
    );

    app.answer(Answer::json(
        json!({"subscribe": ["orders.*"], "sub": "alice"}),
    ));
    let mut allowed = gateway.get("/events?topic=orders.eu", &[]).await;
    assert_eq!(allowed.status(), 200, "{}", allowed.text().await);
    refused(
        &gateway,
        "/events?topic=orders.eu&topic=news",
        &[],
        403,
        &["application does not allow reading topic \"news\""],
    )
    .await;
}

#[tokio::test]
async fn a_slow_unreachable_or_garbled_application_is_a_503_and_never_a_stream() {
    let redis = RedisServer::start();
    let app = AppServer::start(Answer::status(200));
    let gateway = with_app(
        &redis,
        &app,
        &["--auth-cache-ttl", "60s", "--auth-timeout", "300ms"],
    );
    let publisher = publisher(&redis).await;
    let mut open = gateway
        .get("/events?topic=orders", &[("Cookie", "session=ok")])
        .await;
    assert_eq!(open.status(), 200);
    open.position(PATIENCE).await;

    let failures = [
        (
            Answer::status(200).delayed(Duration::from_secs(3)),
            "did not answer in time",
        ),
        (Answer::status(500), "answered 500"),
        (
            Answer::status(302).header("location", "/login"),
            "answered 302",
        ),
        (Answer::json("{\"subscribe\": "), "cannot be read"),
        (
            Answer::json(json!({"subscribe": ["a b"]})),
            "cannot be read",
        ),
        (Answer::json(json!({"exp": "tomorrow"})), "cannot be read"),
    ];
    for (n, (answer, says)) in failures.into_iter().enumerate() {
        app.answer(answer);
        // Another subscriber each time, so no remembered decision answers for the app.
        let cookie = format!("session=other-{n}");
        let mut client = gateway
            .get("/events?topic=orders", &[("Cookie", &cookie)])
            .await;
        assert_eq!(client.status(), 503, "{says}");
        assert!(client.headers().contains_key("retry-after"));
        let message = client.text().await;
        assert!(message.contains(says), "{message:?} does not say {says:?}");
        // A failure is not remembered: the application is asked again next time.
        let calls = app.calls();
        let _ = gateway
            .get("/events?topic=orders", &[("Cookie", &cookie)])
            .await;
        assert_eq!(app.calls(), calls + 1, "{says}: asked again");
    }

    // An application that is not there at all.
    let nowhere = start_gateway(
        &redis,
        &[
            "--auth-url",
            &format!("http://127.0.0.1:{}/auth", free_port()),
        ],
    );
    refused(
        &nowhere,
        "/events?topic=orders",
        &[],
        503,
        &["cannot be reached"],
    )
    .await;

    // The stream that was open before runs on.
    publish(&publisher, "orders", None, "unharmed").await;
    assert_eq!(open.next_event(PATIENCE).await.data, "unharmed");
    assert!(
        gateway
            .metric("sse_auth_failures_total{reason=\"forward_unavailable\"}")
            .await
            >= 6
    );
}

#[tokio::test]
async fn decisions_are_reused_for_the_ttl_and_identical_checks_share_one_call() {
    let redis = RedisServer::start();
    let app = AppServer::start(Answer::status(200));
    let gateway = with_app(&redis, &app, &["--auth-cache-ttl", "60s"]);
    for _ in 0..3 {
        let client = gateway
            .get("/events?topic=orders", &[("Cookie", "session=a")])
            .await;
        assert_eq!(client.status(), 200);
    }
    assert_eq!(app.calls(), 1, "one call for three identical checks");
    for other in [("Cookie", "session=b"), ("Authorization", "Bearer x")] {
        let client = gateway.get("/events?topic=orders", &[other]).await;
        assert_eq!(client.status(), 200);
    }
    let client = gateway
        .get("/events?topic=news", &[("Cookie", "session=a")])
        .await;
    assert_eq!(client.status(), 200);
    assert_eq!(
        app.calls(),
        4,
        "other credentials or topics are checked anew"
    );
    // Refusals are remembered too.
    app.answer(Answer::status(403));
    for _ in 0..2 {
        let client = gateway
            .get("/events?topic=orders", &[("Cookie", "session=c")])
            .await;
        assert_eq!(client.status(), 403);
    }
    assert_eq!(app.calls(), 5);
    assert_eq!(gateway.metric("sse_forward_auth_cache_hits_total").await, 3);

    // Without a cache, checks arriving while one is under way still share it.
    let uncached = AppServer::start(Answer::status(200).delayed(Duration::from_secs(1)));
    let gateway = with_app(
        &redis,
        &uncached,
        &["--auth-cache-ttl", "0s", "--auth-timeout", "10s"],
    );
    let opening = (0..10).map(|_| gateway.get("/events?topic=orders", &[("Cookie", "session=a")]));
    for client in futures_util::future::join_all(opening).await {
        assert_eq!(client.status(), 200);
    }
    assert_eq!(
        uncached.calls(),
        1,
        "ten identical checks at once, one call"
    );
    let _ = gateway
        .get("/events?topic=orders", &[("Cookie", "session=a")])
        .await;
    assert_eq!(uncached.calls(), 2, "and none remembered afterwards");
}

#[tokio::test]
async fn the_applications_expiry_ends_the_stream_like_a_tokens_and_a_jwt_must_allow_too() {
    let redis = RedisServer::start();
    let app = AppServer::start(Answer::json(json!({"exp": now() + 2})));
    let gateway = with_app(
        &redis,
        &app,
        &["--jwt-secret", SECRET, "--jwt-leeway", "0s"],
    );
    let publisher = publisher(&redis).await;
    let token = bearer(&hs256(&reading(&["orders"])));

    // No token: refused before the application is asked.
    refused(
        &gateway,
        "/events?topic=orders",
        &[],
        401,
        &["needs a token"],
    )
    .await;
    assert_eq!(app.calls(), 0);

    let mut client = gateway
        .get("/events?topic=orders", &[("Authorization", &token)])
        .await;
    assert_eq!(client.status(), 200, "{}", client.text().await);
    client.position(PATIENCE).await;
    publish(&publisher, "orders", None, "one").await;
    assert_eq!(client.next_event(PATIENCE).await.data, "one");
    let ended = client.until_closed(PATIENCE).await;
    assert_eq!(
        ended.last().map(|event| event.event_type.as_str()),
        Some("sse.token_expired"),
        "the application's exp ends the stream, before the token's"
    );
    assert_eq!(app.calls(), 1);
}
