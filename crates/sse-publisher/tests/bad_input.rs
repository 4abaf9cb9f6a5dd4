//! Bad input of any kind gets its status, its error code and a detail that names the problem,
//! writes nothing, and harms nobody: after each test the service still publishes and is
//! healthy.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::{Reply, TOKEN, TestPublisher, ids, raw_http, sse_keys, start_publisher};
use serde_json::json;
use sse_testkit::RedisServer;

/// Nothing of the schema exists in Redis, yet a valid publish still succeeds and `/healthz`
/// answers.
async fn assert_nothing_written_and_still_serving(redis: &RedisServer, publisher: &TestPublisher) {
    assert_eq!(
        sse_keys(redis),
        Vec::<String>::new(),
        "a refused request wrote to redis"
    );
    let id = publisher.publish_one("still-works", "ok").await;
    assert_eq!(ids(redis, "still-works"), [id]);
    assert_eq!(publisher.get("/healthz").await.status, 200);
}

/// Posts `body` as JSON with the test token.
async fn post(publisher: &TestPublisher, body: &str) -> Reply {
    publisher.post_json(body, Some(TOKEN)).await
}

#[tokio::test]
async fn malformed_json_is_invalid_json() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases = [
        ("{", "EOF"),
        ("", "EOF"),
        ("not json", "expected"),
        (r#"{"topic": "a", "data": 1}x"#, "trailing characters"),
        (r#"{"topic": "a", "data": 1,}"#, "trailing comma"),
        (r#"{"topic": "a", "data": "\ud800"}"#, "hex escape"),
    ];

    for (body, detail) in cases {
        post(&publisher, body)
            .await
            .assert_error(400, "invalid_json", &[detail]);
    }
    // Deeply nested, but valid JSON: a batch whose element is not an event.
    post(&publisher, &deep).await.assert_error(
        400,
        "invalid_request",
        &["event 0: invalid type: sequence"],
    );
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn wrong_shapes_name_the_field() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let cases = [
        (r#"{"topic": "a"}"#, "missing field `data`"),
        (r#"{"data": 1}"#, "missing field `topic`"),
        (
            r#"{"topic": "a", "data": 1, "evnet": "x"}"#,
            "unknown field `evnet`",
        ),
        (r#"{"topic": 5, "data": 1}"#, "invalid type: integer `5`"),
        (
            r#"{"topic": "a", "data": 1, "event": 7}"#,
            "invalid type: integer `7`",
        ),
        (r#"{"topic": null, "data": 1}"#, "invalid type: null"),
        ("42", "invalid type"),
        (r#""just a string""#, "invalid type"),
        ("null", "invalid type"),
    ];

    for (body, detail) in cases {
        let reply = post(&publisher, body).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        let code = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(
            code == "invalid_json" || code == "invalid_request",
            "{body}: {code}"
        );
        reply.assert_error(400, &code, &[detail]);
    }
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

/// A client tells "your JSON is broken" from "your request is wrong" by the code alone, so
/// one problem must get one code whether the event is sent alone or in a batch.
#[tokio::test]
async fn a_missing_field_gets_the_same_code_alone_and_in_a_batch() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let alone = post(&publisher, r#"{"topic": "a"}"#).await;
    let in_batch = post(&publisher, r#"[{"topic": "a"}]"#).await;

    let (alone_code, batch_code) = (
        alone.json()["error"].clone(),
        in_batch.json()["error"].clone(),
    );
    assert_eq!(
        alone_code, batch_code,
        "alone: {alone:?}, in a batch: {in_batch:?}"
    );
    alone.assert_error(400, alone_code.as_str().unwrap(), &["missing field `data`"]);
    in_batch.assert_error(
        400,
        batch_code.as_str().unwrap(),
        &["event 0: ", "missing field `data`"],
    );
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

/// `{"topic": "a", "data": 1, "topic": "b"}` names two topics; publishing to either one is a
/// guess (today the last one wins, silently), like the typo `"evnet"` the decoder refuses.
#[tokio::test]
async fn a_duplicate_field_is_refused() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    let reply = post(&publisher, r#"{"topic": "a", "data": 1, "topic": "b"}"#).await;

    assert_eq!(reply.status, 400, "{reply:?}");
    let code = reply.json()["error"].as_str().unwrap().to_owned();
    reply.assert_error(400, &code, &["duplicate field `topic`"]);
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn invalid_topics_are_refused_with_the_rule() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let too_long = "x".repeat(129);
    let cases = [
        ("a b", "contains ' '"),
        ("{a}", "contains '{'"),
        ("a}", "contains '}'"),
        ("a*", "contains '*'"),
        ("ü", "contains 'ü'"),
        ("a\nb", "contains '\\n'"),
        ("", "topic name is empty"),
        (too_long.as_str(), "129 bytes long; the limit is 128"),
    ];

    for (topic, detail) in cases {
        let body = json!({"topic": topic, "data": 1}).to_string();
        post(&publisher, &body).await.assert_error(
            400,
            "invalid_request",
            &["invalid topic", detail],
        );
    }
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn invalid_event_names_are_refused_with_the_rule() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let too_long = "e".repeat(129);
    let cases = [
        ("a\nb", "line break"),
        ("a\rb", "line break"),
        ("a\u{0}b", "NUL"),
        ("sse.truncated", "reserved"),
        ("", "empty"),
        (too_long.as_str(), "the limit is 128"),
    ];

    for (event, detail) in cases {
        let body = json!({"topic": "a", "data": 1, "event": event}).to_string();
        post(&publisher, &body).await.assert_error(
            400,
            "invalid_request",
            &["invalid event name", detail],
        );
    }
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

/// A body of exactly `len` bytes: `{"topic":"big","data":"xxx…"}`.
fn body_of_len(len: usize) -> String {
    let frame = r#"{"topic":"big","data":""}"#;
    format!(
        r#"{{"topic":"big","data":"{}"}}"#,
        "x".repeat(len - frame.len())
    )
}

#[tokio::test]
async fn bodies_over_max_body_get_413_and_bodies_at_the_limit_pass() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--max-body", "1KiB"]);

    let over = post(&publisher, &body_of_len(1025)).await;

    over.assert_error(413, "too_large", &["1024 bytes"]);
    assert_eq!(sse_keys(&redis), Vec::<String>::new());
    let at_limit = post(&publisher, &body_of_len(1024)).await;
    assert_eq!(at_limit.status, 201, "{at_limit:?}");
    assert_eq!(
        ids(&redis, "big"),
        [at_limit.json()["id"].as_str().unwrap()]
    );
}

/// A chunked request: the headers, then `body` in chunks of `chunk` bytes.
fn chunked_request(body: &str, chunk: usize) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in body.as_bytes().chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[tokio::test]
async fn chunked_bodies_are_limited_while_read() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--max-body", "1KiB"]);

    let over = raw_http(publisher.addr, &chunked_request(&body_of_len(2000), 100));

    over.assert_error(413, "too_large", &["1024 bytes"]);
    assert_eq!(sse_keys(&redis), Vec::<String>::new());
    let under = raw_http(publisher.addr, &chunked_request(&body_of_len(1000), 100));
    assert_eq!(under.status, 201, "{under:?}");
    assert_eq!(ids(&redis, "big"), [under.json()["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_arrives() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--max-body", "1KiB"]);
    let headers_only = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    );

    // The body never comes: an answer proves the service did not wait for it.
    let reply = raw_http(publisher.addr, headers_only.as_bytes());

    reply.assert_error(413, "too_large", &["1024 bytes"]);
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn the_content_type_must_be_json() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let body = r#"{"topic": "a", "data": 1}"#;
    let auth = format!("Bearer {TOKEN}");

    let wrong = publisher
        .post_with_headers(
            body,
            &[("content-type", "text/plain"), ("authorization", &auth)],
        )
        .await;
    let form = publisher
        .post_with_headers(
            body,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &auth),
            ],
        )
        .await;
    let missing = publisher
        .post_with_headers(body, &[("authorization", &auth)])
        .await;

    wrong.assert_error(
        415,
        "unsupported_media_type",
        &["application/json", "text/plain"],
    );
    form.assert_error(415, "unsupported_media_type", &["x-www-form-urlencoded"]);
    missing.assert_error(415, "unsupported_media_type", &["no Content-Type"]);
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn an_empty_batch_is_refused() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);

    post(&publisher, "[]")
        .await
        .assert_error(400, "invalid_request", &["empty"]);
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn a_batch_over_max_batch_gets_413() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--max-batch", "3"]);
    let event = json!({"topic": "a", "data": 1});

    let over = publisher
        .publish(&json!([event, event, event, event]))
        .await;

    over.assert_error(413, "too_large", &["4 events", "the limit is 3"]);
    assert_eq!(sse_keys(&redis), Vec::<String>::new());
    let at_limit = publisher.publish(&json!([event, event, event])).await;
    assert_eq!(at_limit.status, 201, "{at_limit:?}");
}

#[tokio::test]
async fn a_batch_with_one_bad_element_writes_nothing_and_names_it() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let good = json!({"topic": "good", "data": 1});
    let cases = [
        (
            json!([good, {"topic": "a b", "data": 2}, good]),
            "invalid topic",
        ),
        (
            json!([good, {"topic": "good", "data": 2, "event": "sse.x"}]),
            "invalid event name",
        ),
        (json!([good, {"topic": "good"}]), "missing field `data`"),
        (
            json!([good, {"topic": "good", "data": 2, "evnet": "x"}]),
            "unknown field `evnet`",
        ),
        (json!([good, "nope"]), "invalid type"),
        (json!([good, [good]]), "invalid type"),
    ];

    for (body, detail) in cases {
        let reply = publisher.publish(&body).await;
        reply.assert_error(400, "invalid_request", &["event 1: ", detail]);
    }
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let body = r#"{"topic": "a", "data": 1}"#;
    let json = ("content-type", "application/json");
    let cases: [&[(&str, &str)]; 6] = [
        &[json],
        &[json, ("authorization", "Bearer wrong-token")],
        &[json, ("authorization", "Bearer test-token-and-more")],
        &[json, ("authorization", "Bearer ")],
        &[json, ("authorization", "Basic dGVzdC10b2tlbjp4")],
        &[json, ("authorization", "test-token")],
    ];

    for headers in cases {
        let reply = publisher.post_with_headers(body, headers).await;
        reply.assert_error(401, "unauthorized", &["Authorization: Bearer"]);
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer"),
            "{headers:?}"
        );
    }
    // Authentication comes first: an anonymous caller learns nothing about the request.
    let anonymous_bad_type = publisher
        .post_with_headers("nonsense", &[("content-type", "text/plain")])
        .await;
    anonymous_bad_type.assert_error(401, "unauthorized", &[]);
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive, so `bearer` is `Bearer`.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let body = r#"{"topic": "a", "data": 1}"#;

    for scheme in ["bearer", "BEARER"] {
        let authorization = format!("{scheme} {TOKEN}");
        let reply = publisher
            .post_with_headers(
                body,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &authorization),
                ],
            )
            .await;
        assert_eq!(reply.status, 201, "{authorization:?}: {reply:?}");
    }
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_405_with_allow() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    use http::Method;

    publisher
        .get("/nope")
        .await
        .assert_error(404, "not_found", &["/nope", "POST /v1/publish"]);
    publisher
        .request(Method::POST, "/v1/publish/")
        .await
        .assert_error(404, "not_found", &["/v1/publish/"]);
    for (method, path, allow) in [
        (Method::GET, "/v1/publish", "POST, OPTIONS"),
        (Method::PUT, "/v1/publish", "POST, OPTIONS"),
        (Method::DELETE, "/v1/publish", "POST, OPTIONS"),
        (Method::POST, "/healthz", "GET"),
        (Method::POST, "/readyz", "GET"),
        (Method::DELETE, "/metrics", "GET"),
    ] {
        let reply = publisher.request(method.clone(), path).await;
        reply.assert_error(405, "method_not_allowed", &[method.as_str(), allow]);
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

#[tokio::test]
async fn a_broken_chunked_body_is_unreadable() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let request = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         zz\r\n{{}}\r\n0\r\n\r\n"
    );

    let reply = raw_http(publisher.addr, request.as_bytes());

    reply.assert_error(400, "body_unreadable", &["could not read the request body"]);
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

/// Reads from `stream` until the service closes it, or panics after `patience` (many times
/// the header timeout the tests configure: a bound on a hang, not a measurement).
fn assert_closed_by_the_service(mut stream: TcpStream, patience: Duration) {
    stream
        .set_read_timeout(Some(patience))
        .expect("set a read timeout");
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(error) => panic!(
            "the connection is still open after {patience:?} ({error}); received {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--header-timeout", "200ms"]);

    for partial in [
        &b"POST /"[..],
        b"POST /v1/publish HTTP/1.1\r\nHost: test\r\n",
    ] {
        let mut stream = TcpStream::connect(publisher.addr).unwrap();
        stream.write_all(partial).unwrap();
        assert_closed_by_the_service(stream, Duration::from_secs(5));
    }
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}

/// `--header-timeout` is "the slow-client guard": a connection that never sends a byte must
/// not be held open forever either, or idle sockets exhaust the service's file descriptors.
#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected_after_the_header_timeout() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--header-timeout", "200ms"]);

    let silent = TcpStream::connect(publisher.addr).unwrap();

    assert_closed_by_the_service(silent, Duration::from_secs(5));
    assert_nothing_written_and_still_serving(&redis, &publisher).await;
}
