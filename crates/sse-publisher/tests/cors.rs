//! CORS on the publisher: an allowed origin may publish from a browser (the answer, errors
//! included, carries its CORS headers), a preflight allows `POST` with `Authorization` and
//! `Content-Type`, other origins get no CORS headers (and are counted), and `*` with
//! credentials is refused at startup.

mod harness;

use harness::{TOKEN, start_publisher};
use serde_json::json;
use sse_testkit::RedisServer;

#[tokio::test]
async fn an_allowed_origin_publishes_and_preflights_and_others_get_no_cors_headers() {
    let redis = RedisServer::start();
    let publisher = start_publisher(
        &redis,
        &["--cors-origin", "https://app.example", "--cors-credentials"],
    );
    let body = json!({"topic": "orders", "data": 1}).to_string();
    let authorization = format!("Bearer {TOKEN}");
    let from = |origin: &'static str| {
        [
            ("Content-Type", "application/json"),
            ("Authorization", authorization.as_str()),
            ("Origin", origin),
        ]
    };
    let allowed = publisher
        .post_with_headers(&body, &from("https://app.example"))
        .await;
    assert_eq!(allowed.status, 201, "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));

    let unauthorized = publisher
        .post_with_headers(
            &body,
            &[
                ("Content-Type", "application/json"),
                ("Origin", "https://app.example"),
            ],
        )
        .await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized.header("access-control-allow-origin"),
        Some("https://app.example"),
        "the page can read why it was refused"
    );

    let other = publisher
        .post_with_headers(&body, &from("https://evil.example"))
        .await;
    assert!(other.header("access-control-allow-origin").is_none());

    let preflight = harness::http_client()
        .request(http::Method::OPTIONS, publisher.url("/v1/publish"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("send a preflight");
    assert_eq!(preflight.status().as_u16(), 204);
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert!(header("access-control-allow-methods").contains("post"));
    for needed in ["authorization", "content-type"] {
        assert!(header("access-control-allow-headers").contains(needed));
    }

    let refused_preflight = harness::http_client()
        .request(http::Method::OPTIONS, publisher.url("/v1/publish"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("send a preflight");
    assert!(
        refused_preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let metrics = publisher.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|line| line == "sse_publish_cors_rejected_total 2"),
        "the refused request and the refused preflight are counted:\n{metrics}"
    );
}

#[test]
fn any_origin_with_credentials_is_refused_at_startup() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sse-publisher"))
        .env_clear()
        .args(["--listen", "127.0.0.1:0", "--token", "t"])
        .args(["--cors-origin", "*", "--cors-credentials"])
        .output()
        .expect("run sse-publisher");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--cors-origin '*' cannot go with --cors-credentials"),
        "{stderr}"
    );
}
