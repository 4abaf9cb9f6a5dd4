//! `--tokens` against a gateway that requires subscriber tokens: every connection presents its
//! own token on its first connect and again on its reconnect in a storm, and loses nothing;
//! tokens that do not allow the topic fail every connection, and the report says so with the
//! status the gateway answered.

mod harness;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::{SPREAD, Stack, assert_exactly_once};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "bench-test-secret";

/// A file of `count` tokens, each with its own `sub`, allowed to read `pattern`; removed on drop.
struct TokensFile(PathBuf);

impl TokensFile {
    fn new(name: &str, count: usize, pattern: &str) -> Self {
        let exp = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is past 1970")
            + Duration::from_secs(600))
        .as_secs();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        // An empty line between tokens, which the driver skips.
        let text: String = (0..count)
            .map(|i| {
                let claims = json!({"exp": exp, "sub": format!("user-{i}"),
                    "sse": {"subscribe": [pattern]}});
                let token = jsonwebtoken::encode(&Header::default(), &claims, &key)
                    .expect("sign a test token");
                format!("{token}\n\n")
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "sse-bench-tokens-{}-{name}.txt",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the tokens file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }
}

impl Drop for TokensFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn every_connect_and_reconnect_sends_its_token_and_nothing_is_lost() {
    let stack = Stack::start(&["--jwt-secret", SECRET]);
    let tokens = TokensFile::new("allowed", 200, "tokens.*");
    let ready = stack.ready_url();
    let report = stack.bench(
        "reconnect-storm",
        &[
            &["--tokens", tokens.path(), "--topic-prefix", "tokens."][..],
            &["--connections", "200", "--topics", "2", "--rate", "200"],
            &["--duration", "2s", "--ramp", "2000", "--storm-at", "1s"],
            &["--ready-url", &ready],
            &SPREAD[..],
        ]
        .concat(),
    );
    assert_exactly_once(&report, 200, 400, 100);
    assert_eq!(report["params"]["tokens"], 200, "{report:#}");
    let storm = &report["storm"];
    assert_eq!(storm["reconnected"], 200, "{report:#}");
    assert_eq!(storm["failed"], 0, "{report:#}");
}

#[test]
fn tokens_for_another_topic_fail_every_connection_and_the_report_says_403() {
    let stack = Stack::start(&["--jwt-secret", SECRET]);
    let tokens = TokensFile::new("forbidden", 10, "other.*");
    let report = stack.bench(
        "topics",
        &[
            "--tokens",
            tokens.path(),
            "--topic-prefix",
            "tokens.",
            "--connections",
            "20",
            "--topics",
            "2",
            "--rate",
            "20",
            "--duration",
            "500ms",
        ],
    );
    let connections = &report["connections"];
    assert_eq!(connections["live"], 0, "{report:#}");
    assert_eq!(connections["failed"], 20, "{report:#}");
    assert_eq!(
        connections["failed_by_status"],
        json!({"403": 20}),
        "{report:#}"
    );
    assert_eq!(report["events"]["received"], 0, "{report:#}");
}

#[test]
fn an_empty_or_unreadable_tokens_file_stops_the_driver_before_it_connects() {
    let empty = TokensFile::new("empty", 0, "tokens.*");
    for (path, says) in [
        (empty.path(), "holds no token"),
        ("/nonexistent/tokens.txt", "cannot read"),
    ] {
        // Port 9 (discard) on loopback: nothing may be connected to before the file is read.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sse-bench"))
            .args(["idle", "--tokens", path])
            .args(["--subscribe-url", "http://127.0.0.1:9/events?topic={topic}"])
            .output()
            .expect("sse-bench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("--tokens"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("connections live"), "{stderr}");
    }
}
