//! The README's publishing commands, run exactly as written (addresses swapped for this
//! test's own publisher and Redis), so the front door never shows a command that fails.
//!
//! A block is picked up when the line before its opening fence is `<!-- readme-test: NAME -->`.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{entries, start_publisher};
use serde_json::Value;
use sse_testkit::{RedisCluster, RedisServer};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the README block marked `name`: comment lines dropped, `\` continuations
/// joined.
fn readme_commands(name: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let marker = format!("<!-- readme-test: {name} -->");
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|line| line.trim() != marker)
        .skip(2)
        .take_while(|line| !line.starts_with("```"))
        .collect();
    assert!(!block.is_empty(), "README.md has no block marked {marker}");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(continued) => current.push_str(continued),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// Runs `command` with `sh` in the workspace root after swapping the README's addresses for
/// the test's; returns its standard output.
fn run(command: &str, publisher: &str, redis_url: &str) -> String {
    let command = command
        .replace("http://127.0.0.1:8081", publisher)
        .replace("redis://127.0.0.1:6379", redis_url.trim_end_matches('/'));
    let output = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(workspace_root())
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "README command failed: {command}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the commands print text")
}

#[test]
fn the_readme_curl_examples_publish() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--token", "dev-token"]);
    let commands = readme_commands("http");
    assert_eq!(commands.len(), 2, "{commands:#?}");

    let one: Value = serde_json::from_str(&run(&commands[0], &publisher.url(""), &redis.url()))
        .expect("a JSON answer");
    assert_eq!(one["topic"], "orders");
    let orders = entries(&redis, "orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].id, one["id"].as_str().expect("an id"));
    assert_eq!(orders[0].event.as_deref(), Some("created"));
    assert_eq!(orders[0].data, br#"{"id":42,"total":9.5}"#);

    let batch: Value = serde_json::from_str(&run(&commands[1], &publisher.url(""), &redis.url()))
        .expect("a JSON answer");
    assert_eq!(batch["ids"].as_array().map(Vec::len), Some(2));
    assert_eq!(entries(&redis, "orders")[1].data, b"plain text,\ntwo lines");
    assert_eq!(entries(&redis, "audit")[0].data, b"[1,2]");
}

#[test]
fn the_readme_redis_cli_example_publishes() {
    let redis = RedisServer::start();
    let commands = readme_commands("redis-cli");
    assert_eq!(commands.len(), 2, "{commands:#?}");
    assert_eq!(run(&commands[0], "", &redis.url()).trim(), "sse");
    let id = run(&commands[1], "", &redis.url());
    let orders = entries(&redis, "orders");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].id, id.trim());
    assert_eq!(orders[0].event.as_deref(), Some("created"));
    assert_eq!(orders[0].data, br#"{"id":43}"#);
}

#[test]
fn the_readme_redis_cli_cluster_example_publishes_with_spublish() {
    let cluster = RedisCluster::start();
    let node = format!("127.0.0.1:{}", cluster.masters()[0]);
    let commands = readme_commands("redis-cli-cluster");
    assert_eq!(commands.len(), 2, "{commands:#?}");
    let on_cluster = |command: &str| run(&command.replace("127.0.0.1:7000", &node), "", "");
    on_cluster(&commands[0]);
    let key = "sse:{orders}:stream";
    let owner = cluster.master_of(key);
    let mut redis = cluster.connection(owner);
    let library: String = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("WITHCODE")
        .query::<redis::Value>(&mut redis)
        .map(|value| format!("{value:?}"))
        .expect("FUNCTION LIST");
    assert!(
        library.contains("local ANNOUNCE = 'SPUBLISH'"),
        "the cluster variant is loaded on the topic's master"
    );
    let id = on_cluster(&commands[1]);
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut redis)
        .expect("XRANGE on the topic's master");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id.trim());
}

#[test]
fn the_readme_idempotency_example_publishes_once() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--token", "dev-token"]);
    let commands = readme_commands("idempotency");
    assert_eq!(commands.len(), 2, "{commands:#?}");
    let first = run(&commands[0], &publisher.url(""), &redis.url());
    let again = run(&commands[1], &publisher.url(""), &redis.url());
    assert!(first.starts_with("HTTP/1.1 201"), "{first}");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    assert!(
        again
            .to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{again}"
    );
    let body = |response: &str| response.lines().last().unwrap_or_default().to_owned();
    assert_eq!(body(&again), body(&first), "the same id");
    assert_eq!(entries(&redis, "orders").len(), 1, "published once");
}

#[test]
fn the_readme_redis_cli_idempotency_example_publishes_once() {
    let redis = RedisServer::start();
    run(&readme_commands("redis-cli")[0], "", &redis.url());
    let commands = readme_commands("redis-cli-idempotency");
    assert_eq!(commands.len(), 2, "{commands:#?}");
    let first = run(&commands[0], "", &redis.url());
    let again = run(&commands[1], "", &redis.url());
    let orders = entries(&redis, "orders");
    assert_eq!(orders.len(), 1, "published once");
    assert_eq!(
        first.split_whitespace().collect::<Vec<_>>(),
        [&orders[0].id, "0"]
    );
    assert_eq!(
        again.split_whitespace().collect::<Vec<_>>(),
        [&orders[0].id, "1"]
    );
}

#[test]
fn the_readme_topic_info_example_answers() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--token", "dev-token"]);
    run(
        &readme_commands("http")[0],
        &publisher.url(""),
        &redis.url(),
    );
    let commands = readme_commands("topic-info");
    assert_eq!(commands.len(), 1, "{commands:#?}");
    let info: Value = serde_json::from_str(&run(&commands[0], &publisher.url(""), &redis.url()))
        .expect("a JSON answer");
    let id = &entries(&redis, "orders")[0].id;
    assert_eq!(
        info,
        serde_json::json!({"topic": "orders", "subscribers": 0, "nodes": 0, "retained": 1,
                           "first_id": id, "last_id": id,
                           "present": [], "present_count": 0, "present_next": null})
    );
}

#[test]
fn the_readme_presence_example_lists_a_page() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--token", "dev-token"]);
    redis::pipe()
        .hset("sse:{presence:orders}:present", "alice", "n1")
        .hset("sse:{presence:orders}:present", "bob", "n1")
        .hset("sse:{presence:orders}:present", "carol", "n1")
        .set("sse:{nodes}:alive:n1", 1)
        .exec(&mut redis.connection())
        .expect("a node's presence");
    let commands = readme_commands("topic-present");
    assert_eq!(commands.len(), 1, "{commands:#?}");
    let info: Value = serde_json::from_str(&run(&commands[0], &publisher.url(""), &redis.url()))
        .expect("a JSON answer");
    assert_eq!(
        (
            &info["present"],
            &info["present_count"],
            &info["present_next"]
        ),
        (
            &serde_json::json!(["alice", "bob"]),
            &serde_json::json!(3),
            &serde_json::json!("bob")
        )
    );
}

#[test]
fn the_readme_topic_list_example_answers() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--token", "dev-token"]);
    let mut connection = redis.connection();
    redis::pipe()
        .zadd("sse:{nodes}:members", "n1", 1)
        .set("sse:{nodes}:alive:n1", 1)
        .zadd("sse:{nodes}:topics:n1", "orders", 3)
        .zadd("sse:{nodes}:topics:n1", "audit", 9)
        .exec(&mut connection)
        .expect("a node's counts");
    let commands = readme_commands("topic-list");
    assert_eq!(commands.len(), 1, "{commands:#?}");
    let list: Value = serde_json::from_str(&run(&commands[0], &publisher.url(""), &redis.url()))
        .expect("a JSON answer");
    assert_eq!(
        list,
        serde_json::json!({"topics": [{"topic": "orders", "subscribers": 3}]})
    );
}
