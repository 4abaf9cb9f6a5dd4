//! Hostile input to the write path, generated at random: arbitrary JSON values (depth-bounded)
//! and arbitrary bytes posted to `/v1/publish`, garbage instead of HTTP on the raw socket, and
//! arbitrary payloads through the library `Publisher`.
//!
//! What it proves: every answer is `201` or a `4xx` with the documented JSON error body
//! `{"error", "detail"}`, never a `5xx` and never a dropped connection; for JSON values, the
//! status is exactly what an independent model of the request rules predicts; nothing is
//! half-written (the streams hold exactly as many entries as the `201`s acknowledged); and the
//! service is healthy and publishes afterwards.
//!
//! The generator is a small seeded PRNG. Runs use a fixed seed, so CI is repeatable; set
//! `SSE_FUZZ_SEED=<n>` to explore others (the seed is printed in every failure message).

mod harness;

use std::collections::HashMap;
use std::time::Duration;

use harness::{PATIENCE, TOKEN, TestPublisher, entries, http_client, sse_keys, start_publisher};
use serde_json::{Map, Number, Value};
use sse_core::schema::Retention;
use sse_core::{Event, EventId, EventName, Topic};
use sse_publisher::{Publisher, RedisFlags};
use sse_testkit::{H2_PREFACE, RedisServer, Rng, exchange, find};

/// JSON values posted; each also yields one mutated byte body.
const JSON_CASES: usize = 400;
/// Random byte bodies posted.
const BYTE_CASES: usize = 300;
/// Garbage sent instead of HTTP.
const GARBAGE_CASES: usize = 120;
/// Events published through the library.
const LIBRARY_CASES: usize = 200;

// === a seeded generator ===

/// `sse_testkit`'s generator seeded from `SSE_FUZZ_SEED`, or a fixed default; and the seed.
fn seeded_rng() -> (Rng, u64) {
    let seed = std::env::var("SSE_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5EED_F022);
    (Rng::new(seed), seed)
}

/// The inputs this fuzzer draws from a [`Rng`].
trait Inputs {
    /// Any Unicode scalar value, weighted towards the interesting planes.
    fn char(&mut self) -> char;

    /// A string rich in what the rules are about.
    fn string(&mut self) -> String;

    /// A topic: one of a few valid ones most of the time, else any string.
    fn topic_string(&mut self) -> String;

    /// A JSON number: integers of every size, floats, extremes.
    fn number(&mut self) -> Number;

    /// Any JSON value, nested at most `depth` deep.
    fn json(&mut self, depth: usize) -> Value;

    /// An object shaped like a publish request, valid more often than not.
    fn request(&mut self) -> Value;

    /// A request body as a JSON value: a request, a batch, or anything at all.
    fn body(&mut self) -> Value;

    /// `bytes` with a few random edits: bytes replaced, inserted, removed, or cut short.
    fn mutate(&mut self, bytes: Vec<u8>) -> Vec<u8>;
}

impl Inputs for Rng {
    fn char(&mut self) -> char {
        let ranges: [(u32, u32); 5] = [
            (0, 0x80),
            (0x80, 0x800),
            (0x800, 0x1_0000),
            (0x1_0000, 0x11_0000),
            (0, 0x20),
        ];
        let (low, high) = *self.pick(&ranges);
        let code = low + (self.next_u64() % u64::from(high - low)) as u32;
        char::from_u32(code).unwrap_or('\u{FFFD}')
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "orders",
            "a",
            "user:42/inbox",
            "A-Z_0.9",
            "sse.",
            "sse.truncated",
            " ",
            "\t",
            "\r",
            "\n",
            "\r\n",
            "\0",
            "{",
            "}",
            "*",
            "\"",
            "\\",
            "/",
            "é",
            "日本",
            "\u{FEFF}",
            "\u{2028}",
            "\u{10FFFF}",
            "%00",
            "+",
            "-",
        ];
        let mut out = String::new();
        for _ in 0..self.below(5) {
            match self.below(4) {
                0 => out.push(self.char()),
                1 => out.push_str(&"x".repeat(self.below(140))),
                _ => {
                    let piece = *self.pick::<&str>(PIECES);
                    out.push_str(piece);
                }
            }
        }
        out
    }

    fn topic_string(&mut self) -> String {
        if self.chance(70) {
            (*self.pick(&["fz-a", "fz-b", "fz:c/d", "FZ_e.f", &"t".repeat(128)])).to_owned()
        } else {
            self.string()
        }
    }

    fn number(&mut self) -> Number {
        match self.below(6) {
            0 => Number::from(self.next_u64() as i64),
            1 => Number::from(self.next_u64()),
            2 => Number::from(self.below(10) as u64),
            3 => {
                Number::from_f64(f64::from_bits(self.next_u64())).unwrap_or_else(|| Number::from(0))
            }
            4 => Number::from_f64(self.next_u64() as f64 / 7.0).unwrap_or_else(|| Number::from(0)),
            _ => Number::from_f64(f64::MIN_POSITIVE).unwrap_or_else(|| Number::from(0)),
        }
    }

    fn json(&mut self, depth: usize) -> Value {
        let kinds = if depth == 0 { 4 } else { 6 };
        match self.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(self.chance(50)),
            2 => Value::Number(self.number()),
            3 => Value::String(self.string()),
            4 => Value::Array((0..self.below(5)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let mut object = Map::new();
                for _ in 0..self.below(5) {
                    let key = if self.chance(50) {
                        (*self.pick(&["topic", "data", "event"])).to_owned()
                    } else {
                        self.string()
                    };
                    object.insert(key, self.json(depth - 1));
                }
                Value::Object(object)
            }
        }
    }

    fn request(&mut self) -> Value {
        let mut object = Map::new();
        if self.chance(92) {
            let topic = if self.chance(90) {
                Value::String(self.topic_string())
            } else {
                self.json(1)
            };
            object.insert("topic".to_owned(), topic);
        }
        if self.chance(92) {
            object.insert("data".to_owned(), self.json(3));
        }
        if self.chance(40) {
            let event = match self.below(5) {
                0 => Value::Null,
                1 => self.json(1),
                2 | 3 => Value::String((*self.pick(&["created", "tick", "x.y", "é"])).to_owned()),
                _ => Value::String(self.string()),
            };
            object.insert("event".to_owned(), event);
        }
        if self.chance(5) {
            object.insert(self.string(), self.json(1));
        }
        Value::Object(object)
    }

    fn body(&mut self) -> Value {
        match self.below(10) {
            0..=4 => self.request(),
            5..=6 => Value::Array((0..self.below(6)).map(|_| self.request()).collect()),
            _ => self.json(4),
        }
    }

    fn mutate(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..=self.below(4) {
            let at = self.below(bytes.len() + 1);
            match self.below(4) {
                0 if at < bytes.len() => bytes[at] = self.next_u64() as u8,
                1 => bytes.insert(at, *self.pick(b"{}[]\",:\\0 \x00\xff")),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    }
}

// === the model ===

/// What the service must answer for a JSON value: `Some(n)` for `201` with `n` ids, `None`
/// for `400 invalid_request`. Written from the README's rules, not from the decoder.
fn expected(body: &Value) -> Option<usize> {
    match body {
        Value::Object(object) => valid_request(object).then_some(1),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .all(|item| item.as_object().is_some_and(valid_request))
            .then_some(items.len()),
        _ => None,
    }
}

fn valid_request(object: &Map<String, Value>) -> bool {
    let known = object
        .keys()
        .all(|key| matches!(key.as_str(), "topic" | "data" | "event"));
    let topic = object
        .get("topic")
        .and_then(Value::as_str)
        .is_some_and(|topic| Topic::parse(topic).is_ok());
    let event = match object.get("event") {
        None | Some(Value::Null) => true,
        Some(Value::String(name)) => EventName::parse(name).is_ok(),
        Some(_) => false,
    };
    known && topic && event && object.contains_key("data")
}

// === checking answers ===

/// A response, read whole.
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn post(publisher: &TestPublisher, client: &reqwest::Client, body: Vec<u8>) -> Answer {
    let response = client
        .post(publisher.url("/v1/publish"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .expect("the service answers every request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.expect("a whole body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// Checks the shape of an answer and returns the ids a `201` acknowledged, by topic.
fn acknowledged(answer: &Answer, context: &dyn Fn() -> String) -> Vec<(Option<String>, String)> {
    let text = String::from_utf8_lossy(&answer.body);
    assert!(
        answer.status == 201 || (400..500).contains(&answer.status),
        "status {} ({text}) for {}",
        answer.status,
        context()
    );
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "{}",
        context()
    );
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|error| panic!("body {text:?} is not JSON ({error}) for {}", context()));
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("body {text} is not an object for {}", context()));
    let id_of = |id: &Value| {
        let id = id
            .as_str()
            .unwrap_or_else(|| panic!("id {id} is not a string for {}", context()));
        assert!(EventId::parse(id).is_ok(), "id {id:?} for {}", context());
        id.to_owned()
    };
    if answer.status != 201 {
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["detail", "error"],
            "error body {text} for {}",
            context()
        );
        assert!(
            object["error"]
                .as_str()
                .is_some_and(|code| !code.is_empty())
                && object["detail"]
                    .as_str()
                    .is_some_and(|detail| !detail.is_empty()),
            "error body {text} for {}",
            context()
        );
        return Vec::new();
    }
    match (object.get("id"), object.get("ids")) {
        (Some(id), None) => {
            let topic = object["topic"].as_str().map(str::to_owned);
            vec![(topic, id_of(id))]
        }
        (None, Some(Value::Array(ids))) => ids.iter().map(|id| (None, id_of(id))).collect(),
        _ => panic!("201 body {text} for {}", context()),
    }
}

/// Every entry id of every stream, by stream key.
fn all_entries(redis: &RedisServer) -> HashMap<String, Vec<String>> {
    sse_keys(redis)
        .into_iter()
        .map(|key| {
            let ids: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query(&mut redis.connection())
                .expect("XRANGE");
            (key, ids.into_iter().map(|(id, _)| id).collect())
        })
        .collect()
}

fn total_entries(redis: &RedisServer) -> usize {
    all_entries(redis).values().map(Vec::len).sum()
}

/// The service still answers `/healthz` and publishes.
async fn assert_still_serving(publisher: &TestPublisher, redis: &RedisServer) {
    assert_eq!(publisher.get("/healthz").await.status, 200);
    let before = total_entries(redis);
    let id = publisher.publish_one("fz-after", "still works").await;
    assert_eq!(
        entries(redis, "fz-after").last().map(|e| e.id.clone()),
        Some(id)
    );
    assert_eq!(total_entries(redis), before + 1);
}

// === tests ===

#[tokio::test]
async fn arbitrary_json_and_bytes_get_201_or_a_json_4xx_and_nothing_half_written() {
    let (mut rng, seed) = seeded_rng();
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &[]);
    let client = http_client();
    let mut acked = Vec::new();

    for case in 0..JSON_CASES {
        let value = rng.body();
        let text = value.to_string();
        let context = || format!("JSON case {case} (SSE_FUZZ_SEED={seed}): {text}");
        let answer = post(&publisher, &client, text.clone().into_bytes()).await;
        let ids = acknowledged(&answer, &context);
        match expected(&value) {
            Some(count) => assert_eq!(
                (answer.status, ids.len()),
                (201, count),
                "{}: {}",
                context(),
                String::from_utf8_lossy(&answer.body)
            ),
            None => {
                assert_eq!(answer.status, 400, "{}", context());
                let code =
                    serde_json::from_slice::<Value>(&answer.body).expect("JSON")["error"].clone();
                assert_eq!(code, "invalid_request", "valid JSON: {}", context());
            }
        }
        if let Some(topic) = ids.first().and_then(|(topic, _)| topic.clone()) {
            assert_eq!(value["topic"], topic, "{}", context());
        }
        acked.extend(ids);

        // The same value, slightly broken: any answer but a 5xx.
        let mutated = rng.mutate(text.clone().into_bytes());
        let context = || {
            format!(
                "mutated case {case} (SSE_FUZZ_SEED={seed}): {:?}",
                String::from_utf8_lossy(&mutated)
            )
        };
        let answer = post(&publisher, &client, mutated.clone()).await;
        acked.extend(acknowledged(&answer, &context));
    }
    for case in 0..BYTE_CASES {
        let body = rng.bytes(600);
        let context = || format!("bytes case {case} (SSE_FUZZ_SEED={seed}): {body:?}");
        let answer = post(&publisher, &client, body.clone()).await;
        acked.extend(acknowledged(&answer, &context));
    }

    // Exactly the acknowledged events are in Redis: none missing, none extra.
    let stored = all_entries(&redis);
    let mut stored_ids: Vec<&String> = stored.values().flatten().collect();
    let mut acked_ids: Vec<&String> = acked.iter().map(|(_, id)| id).collect();
    stored_ids.sort();
    acked_ids.sort();
    assert!(
        !acked_ids.is_empty(),
        "SSE_FUZZ_SEED={seed}: no case was valid"
    );
    assert_eq!(
        stored_ids, acked_ids,
        "SSE_FUZZ_SEED={seed}: the streams hold exactly what was acknowledged"
    );
    assert_still_serving(&publisher, &redis).await;
}

#[tokio::test]
async fn garbage_instead_of_http_gets_400_or_a_closed_connection() {
    let (mut rng, seed) = seeded_rng();
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--header-timeout", "1s"]);

    let mut cases: Vec<Vec<u8>> = Vec::new();
    for _ in 0..GARBAGE_CASES {
        let garbage = match rng.below(7) {
            0 => rng.bytes(2000),
            1 => (0..rng.below(400))
                .map(|_| b' ' + rng.below(95) as u8)
                .collect(),
            // A request line or header that goes wrong.
            2 => {
                let mut bytes = b"POST /v1/publish HTTP/1.1\r\nHost: x\r\n".to_vec();
                bytes.extend(rng.bytes(200));
                bytes.extend_from_slice(b"\r\n\r\n");
                bytes
            }
            // A request head, slightly broken (or not: then it is answered like any request).
            3 => rng.mutate(
                format!(
                    "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                     Content-Type: application/json\r\n\r\n"
                )
                .into_bytes(),
            ),
            // TLS ClientHello to a plain-text port.
            4 => {
                let mut bytes = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
                bytes.extend(rng.bytes(300));
                bytes
            }
            // The HTTP/2 preface, then garbage frames.
            5 => {
                // At least one whole frame of the largest size allowed: a frame cut short
                // is `a_connection_stalled_before_its_first_request_is_closed`'s case.
                let mut bytes = H2_PREFACE.to_vec();
                bytes.extend((0..9 + 16_384 + rng.below(300)).map(|_| rng.next_u64() as u8));
                bytes
            }
            _ => rng
                .pick(&[
                    &b"\r\n\r\n\r\n"[..],
                    b"GET\r\n\r\n",
                    b"GET /\r\n\r\n",
                    b"\x00",
                ])
                .to_vec(),
        };
        // A prefix of the HTTP/2 preface (such as "P", a request cut after one byte) is
        // `a_connection_stalled_before_its_first_request_is_closed`'s case, not this test's.
        if !H2_PREFACE.starts_with(&garbage) {
            cases.push(garbage);
        }
    }

    let tasks: Vec<_> = cases
        .into_iter()
        .map(|garbage| {
            let addr = publisher.addr;
            tokio::spawn(async move {
                let answer = exchange(addr, &garbage, PATIENCE).await;
                (garbage, answer)
            })
        })
        .collect();
    for task in tasks {
        let (garbage, answer) = task.await.expect("a garbage task does not panic");
        let shown = String::from_utf8_lossy(&garbage);
        let Some(answer) = answer else {
            panic!(
                "SSE_FUZZ_SEED={seed}: no answer and no close within {PATIENCE:?} for {shown:?}"
            );
        };
        if answer.is_empty() || garbage.starts_with(b"PRI * HTTP/2.0") {
            continue; // closed without a word, or HTTP/2 frames (a GOAWAY)
        }
        let head = String::from_utf8_lossy(&answer);
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .unwrap_or_default();
        // Garbage that hyper still parses as a request gets whatever that request deserves
        // (a 401, 404, 415...): any client error, never a success for non-requests.
        assert!(
            status.starts_with('4') || may_be_a_request(&garbage),
            "SSE_FUZZ_SEED={seed}: {shown:?} answered {head:?}"
        );
        assert!(
            !head.starts_with("HTTP/1.1 5"),
            "SSE_FUZZ_SEED={seed}: {shown:?} answered {head:?}"
        );
    }
    assert_still_serving(&publisher, &redis).await;
}

/// A request whose head arrives but whose body stops short of its `Content-Length` is a
/// slow-body ("R.U.D.Y.") variant of slowloris: it must not hold its connection forever. The
/// service should answer (400 or 408) or close it in bounded time, as it does for a head that
/// stops short (`--header-timeout`).
///
/// Known to fail: nothing bounds the time to read a body, so such a connection stays open
/// forever; enough of them exhaust the service's file descriptors (it has no connection cap).
#[tokio::test]
async fn a_body_that_stops_short_does_not_hold_the_connection_forever() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--header-timeout", "1s", "--body-timeout", "1s"]);
    let request = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"topic\":"
    );
    let answer = exchange(publisher.addr, request.as_bytes(), PATIENCE).await;
    let answer = answer.unwrap_or_else(|| {
        panic!("a body 90 bytes short held its connection open for {PATIENCE:?}")
    });
    let head = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.1 408"),
        "{head:?}"
    );
    assert_still_serving(&publisher, &redis).await;
}

/// The slowloris guard must also cover a connection that stops before its first request is
/// known to be HTTP/1.1 or HTTP/2: "P" (an HTTP/1.1 `POST` cut after one byte, too),
/// "PRI * HTTP/2.0" and nothing more, or the whole preface and half a `SETTINGS` frame.
///
/// Known to fail: the service peeks one byte under `--header-timeout`, then hands the
/// connection to hyper-util's auto builder, which waits without a deadline for enough bytes to
/// tell HTTP/1.1 from HTTP/2 (and then for the HTTP/2 handshake); hyper's header timeout only
/// starts once an HTTP/1.1 connection is being served. Such connections are held forever.
#[tokio::test]
async fn a_connection_stalled_before_its_first_request_is_closed() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--header-timeout", "1s"]);
    let mut half_settings = H2_PREFACE.to_vec();
    half_settings.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3]);
    let stalls = [
        &b"P"[..],
        b"PRI * HTTP/2.0",
        &H2_PREFACE[..23],
        &half_settings,
    ];
    let tasks: Vec<_> = stalls
        .iter()
        .map(|stall| {
            let (addr, stall) = (publisher.addr, stall.to_vec());
            tokio::spawn(async move { exchange(addr, &stall, PATIENCE).await.is_none() })
        })
        .collect();
    let mut held = Vec::new();
    for (stall, task) in stalls.iter().zip(tasks) {
        if task.await.expect("the task does not panic") {
            held.push(String::from_utf8_lossy(stall).into_owned());
        }
    }
    assert!(
        held.is_empty(),
        "held open for {PATIENCE:?} (header timeout 1s): {held:?}"
    );
    assert_still_serving(&publisher, &redis).await;
}

/// Whether a mutated request head may still be a whole request, which then gets whatever
/// answer a request gets (404 for a mutated path, 401 for a mutated token...), but no 5xx.
fn may_be_a_request(garbage: &[u8]) -> bool {
    find(garbage, b"\r\n\r\n").is_some()
}

#[tokio::test]
async fn the_library_stores_any_payload_byte_for_byte() {
    let (mut rng, seed) = seeded_rng();
    let redis = RedisServer::start();
    let options = RedisFlags {
        redis_url: redis.url(),
        redis_cluster: false,
        redis_timeout: Duration::from_secs(5),
        ..RedisFlags::default()
    };
    let publisher = Publisher::connect(&options, Retention::default())
        .await
        .expect("a valid URL");

    let random_event = |rng: &mut Rng| loop {
        let Ok(topic) = Topic::parse(&rng.topic_string()) else {
            continue;
        };
        let data = match rng.below(4) {
            0 => rng.bytes(8),
            1 => rng.bytes(4096),
            2 => rng.string().into_bytes(),
            _ => b"\r\n\r\n\0data: x\nid: 1-0\n\n".to_vec(),
        };
        let name = if rng.chance(50) {
            EventName::parse(&rng.string()).ok()
        } else {
            None
        };
        let mut event = Event::new(topic, data);
        event.name = name;
        return event;
    };

    for case in 0..LIBRARY_CASES {
        let batch: Vec<Event> = (0..=rng.below(4)).map(|_| random_event(&mut rng)).collect();
        let ids = if batch.len() == 1 {
            vec![publisher.publish(&batch[0]).await.unwrap()]
        } else {
            publisher.publish_batch(&batch).await.unwrap()
        };
        assert_eq!(ids.len(), batch.len());
        for (event, id) in batch.iter().zip(ids) {
            let stored = entries(&redis, event.topic.as_str())
                .into_iter()
                .find(|entry| entry.id == id.to_string())
                .unwrap_or_else(|| panic!("case {case} (SSE_FUZZ_SEED={seed}): {id} not stored"));
            assert_eq!(
                (&stored.data[..], stored.event.as_deref()),
                (&event.data[..], event.name.as_ref().map(EventName::as_str)),
                "case {case} (SSE_FUZZ_SEED={seed})"
            );
        }
    }
}
