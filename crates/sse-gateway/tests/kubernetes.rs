//! The Kubernetes manifests (`deploy/kubernetes`) render, validate, and agree with the binaries:
//! - `kubectl kustomize` renders every overlay, and `kubernetes-validate --strict` accepts every
//!   object against the Kubernetes schemas (offline: the PyPI package bundles them);
//! - every environment variable a container sets is a flag of its binary, and the gateway starts
//!   with the Deployment's environment as it is and becomes ready;
//! - probes use the paths and ports the binaries serve, grace periods outlast the preStop sleep
//!   plus the drain (gateway) or shutdown timeout (publisher), rollouts keep capacity, the
//!   disruption budget and Services select the pods, and the gateway's memory limit holds its
//!   connection limit at the measured memory per connection plus its replay cache;
//! - the single-Redis overlay runs Redis with its AOF on a volume, and the cluster overlay points
//!   both binaries at a cluster.
//!
//! Needs `kubectl` (Debian package `kubernetes-client`) and `kubernetes-validate` (PyPI, with
//! PyYAML): `tests/run.sh` installs both. A missing tool fails the test: it never skips.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sse_testkit::{RedisServer, eventually, free_port, http_status};

const PATIENCE: Duration = Duration::from_secs(10);

/// The Kubernetes version the objects are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// Measured memory per idle stream: 2.2 KiB of process RSS (README, Performance) and about
/// 5 KiB of kernel socket buffers, which the pod's cgroup is charged for.
const BYTES_PER_STREAM: u64 = 2_300 + 5 * 1024;
/// The gateway's own memory without streams, with room to spare.
const BASE_BYTES: u64 = 32 << 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Runs `program args` (with `stdin` as its input) and returns its stdout; fails the test,
/// naming how to install it, when the program is missing or fails.
fn run(program: &str, args: &[&str], stdin: &str, install: &str) -> String {
    let child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("`{program}` is not installed; it is needed to check the manifests: {install}")
        }
        Err(e) => panic!("cannot run `{program}`: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for the program");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{stdout}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The overlay `name` rendered, validated, and parsed: its objects.
fn render(name: &str) -> Vec<Value> {
    let dir = format!("deploy/kubernetes/overlays/{name}");
    let yaml = run(
        "kubectl",
        &["kustomize", &dir],
        "",
        "apt-get install -y kubernetes-client",
    );
    let file =
        std::env::temp_dir().join(format!("sse-kubernetes-{name}-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).expect("write the rendered overlay");
    let path = file.to_str().expect("a UTF-8 temp path");
    run(
        "kubernetes-validate",
        &["--strict", "--quiet", "-k", KUBERNETES_VERSION, path],
        "",
        "pip install kubernetes-validate",
    );
    let _ = std::fs::remove_file(&file);
    let json = run(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ],
        &yaml,
        "pip install pyyaml",
    );
    serde_json::from_str(&json).expect("the objects as JSON")
}

/// The object of `kind` whose name is (or, for generated ones, starts with) `name`.
fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n == name || n.starts_with(&format!("{name}-")))
        })
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

/// The container's environment: its `env` values and the data of the ConfigMaps and Secrets
/// it takes whole (`envFrom`); a value from the downward API is `None`.
fn environment(objects: &[Value], container: &Value) -> Vec<(String, Option<String>)> {
    let mut env: Vec<(String, Option<String>)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|var| {
            let name = var["name"].as_str().expect("a name").to_owned();
            (name, var["value"].as_str().map(str::to_owned))
        })
        .collect();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let (kind, reference) = match (&source["configMapRef"], &source["secretRef"]) {
            (Value::Object(r), _) => ("ConfigMap", r),
            (_, Value::Object(r)) => ("Secret", r),
            other => panic!("an envFrom of neither kind: {other:?}"),
        };
        let name = reference["name"].as_str().expect("a name");
        let data = &object(objects, kind, name)["data"];
        for (key, value) in data.as_object().expect("data") {
            let value = value.as_str().expect("a string").to_owned();
            // Secrets hold base64: the names are what is checked here, so keep it as is.
            env.push((key.clone(), Some(value)));
        }
    }
    env
}

fn value<'a>(env: &'a [(String, Option<String>)], name: &str) -> &'a str {
    env.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .unwrap_or_else(|| panic!("{name} is not set"))
}

/// The environment variables the binary built from `dirs` reads: every `env = "NAME"` of its
/// flags, and `RUST_LOG`.
fn flag_variables(dirs: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::from(["RUST_LOG".to_owned()]);
    for dir in dirs {
        for entry in walk(&repo_root().join(dir)) {
            let source = std::fs::read_to_string(&entry).expect("read a source file");
            for piece in source.split("env = \"").skip(1) {
                if let Some(name) = piece.split('"').next() {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn seconds(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a number of seconds"))
}

/// The `sleep <n>` of a container's preStop hook.
fn pre_stop_seconds(container: &Value) -> u64 {
    let command = &container["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(command[0], "sleep", "{command}");
    command[1]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("sleep <seconds>")
}

/// The container port named `name`.
fn port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port {name}"))
}

fn bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.trim_end_matches(char::is_alphabetic).len());
    let multiplier = match unit {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unexpected unit {other:?} in {quantity}"),
    };
    number.parse::<u64>().expect("a whole quantity") * multiplier
}

fn checks_the_base(objects: &[Value]) {
    let gateway = object(objects, "Deployment", "sse-gateway");
    let publisher = object(objects, "Deployment", "sse-publisher");

    // Every variable is a flag of its binary.
    let gateway_flags = flag_variables(&["crates/sse-gateway/src", "crates/sse-core/src/runtime"]);
    let publisher_flags =
        flag_variables(&["crates/sse-publisher/src", "crates/sse-core/src/runtime"]);
    for (deployment, flags) in [(gateway, &gateway_flags), (publisher, &publisher_flags)] {
        for (name, _) in environment(objects, container(deployment)) {
            assert!(
                flags.contains(&name),
                "{name} is no flag of {}",
                deployment["metadata"]["name"]
            );
        }
    }

    // Gateway: probes on the admin listener, a grace period longer than preStop plus the
    // drain, a rollout that surges before it drains, the limit for its connections.
    let spec = &gateway["spec"]["template"]["spec"];
    let c = container(gateway);
    let env = environment(objects, c);
    let admin = port(c, "admin");
    assert!(value(&env, "SSE_ADMIN_LISTEN").ends_with(&format!(":{admin}")));
    assert!(value(&env, "SSE_LISTEN").ends_with(&format!(":{}", port(c, "http"))));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    let drain: u64 = value(&env, "SSE_DRAIN_SECONDS").parse().expect("seconds");
    let grace = seconds(&spec["terminationGracePeriodSeconds"]);
    assert!(
        grace > pre_stop_seconds(c) + drain,
        "grace {grace} s must outlast preStop {} s + drain {drain} s",
        pre_stop_seconds(c)
    );
    let rolling = &gateway["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        rolling["maxUnavailable"], 0,
        "capacity is kept while pods drain"
    );
    assert!(rolling["maxSurge"].as_u64().is_some_and(|n| n >= 1));
    let max_connections: u64 = value(&env, "SSE_MAX_CONNECTIONS")
        .parse()
        .expect("a number");
    let cache = value(&env, "SSE_REPLAY_CACHE_TOTAL_BYTES");
    let cache = bytes(cache.strip_suffix('B').expect("a size in bytes"));
    let needed = max_connections * BYTES_PER_STREAM + cache + BASE_BYTES;
    let limit = bytes(
        c["resources"]["limits"]["memory"]
            .as_str()
            .expect("a memory limit"),
    );
    assert!(
        limit >= needed,
        "limit {limit} below {needed} bytes for {max_connections} streams"
    );
    assert!(c["resources"]["requests"]["memory"].is_string());

    // The budget and the Services select the pods.
    let pod_labels = &gateway["spec"]["template"]["metadata"]["labels"];
    for (kind, name, selector) in [
        (
            "PodDisruptionBudget",
            "sse-gateway",
            "/spec/selector/matchLabels",
        ),
        ("Service", "sse-gateway", "/spec/selector"),
    ] {
        let selector = object(objects, kind, name)
            .pointer(selector)
            .expect("a selector");
        for (key, value) in selector.as_object().expect("labels") {
            assert_eq!(&pod_labels[key], value, "{kind} {name} selects {key}");
        }
    }
    assert_eq!(
        object(objects, "PodDisruptionBudget", "sse-gateway")["spec"]["maxUnavailable"],
        1
    );

    // Publisher: probes on its one port, a grace period longer than preStop plus shutdown.
    let spec = &publisher["spec"]["template"]["spec"];
    let c = container(publisher);
    let env = environment(objects, c);
    assert!(value(&env, "SSE_LISTEN").ends_with(&format!(":{}", port(c, "http"))));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let shutdown = humantime::parse_duration(value(&env, "SSE_SHUTDOWN_TIMEOUT"))
        .expect("a duration")
        .as_secs();
    let grace = seconds(&spec["terminationGracePeriodSeconds"]);
    assert!(grace > pre_stop_seconds(c) + shutdown);
    let selector = &object(objects, "Service", "sse-publisher")["spec"]["selector"];
    for (key, value) in selector.as_object().expect("labels") {
        assert_eq!(
            &publisher["spec"]["template"]["metadata"]["labels"][key],
            value
        );
    }

    // The Ingress lets streams through unbuffered and for longer than a heartbeat.
    let annotations = &object(objects, "Ingress", "sse-gateway")["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
        "off"
    );
    let timeout: u64 = annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a read timeout");
    assert!(
        timeout >= 2 * 15,
        "the read timeout must outlast two heartbeats (15 s)"
    );
}

#[test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs kubectl and kubernetes-validate: tests/run.sh (or --features sse-gateway/e2e)"
)]
fn the_single_redis_overlay_renders_validates_and_runs_redis_with_its_aof() {
    let objects = render("redis");
    checks_the_base(&objects);
    let redis = object(&objects, "StatefulSet", "redis");
    let args: Vec<&str> = container(redis)["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "{args:?}"
    );
    assert!(args.windows(2).any(|w| w == ["--dir", "/data"]), "{args:?}");
    assert_eq!(
        container(redis)["volumeMounts"][0]["mountPath"],
        "/data",
        "the AOF is on the volume"
    );
    let config = &object(&objects, "ConfigMap", "sse-redis")["data"];
    assert_eq!(config["REDIS_URL"], "redis://redis:6379");
    assert_eq!(config["REDIS_CLUSTER"], "false");
    object(&objects, "Service", "redis");
}

#[test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs kubectl and kubernetes-validate: tests/run.sh (or --features sse-gateway/e2e)"
)]
fn the_cluster_overlay_renders_validates_and_points_both_binaries_at_a_cluster() {
    let objects = render("redis-cluster");
    checks_the_base(&objects);
    let config = &object(&objects, "ConfigMap", "sse-redis")["data"];
    assert_eq!(config["REDIS_CLUSTER"], "true");
    assert_eq!(
        config["REDIS_URL"]
            .as_str()
            .expect("a seed list")
            .split(',')
            .count(),
        3
    );
    assert!(
        !objects.iter().any(|o| o["kind"] == "StatefulSet"),
        "the cluster is the user's"
    );
}

#[tokio::test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs kubectl and kubernetes-validate: tests/run.sh (or --features sse-gateway/e2e)"
)]
async fn the_gateway_starts_with_the_deployments_environment_and_becomes_ready() {
    let objects = render("redis");
    let env = environment(
        &objects,
        container(object(&objects, "Deployment", "sse-gateway")),
    );
    let redis = RedisServer::start();
    let (listen, admin) = (free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-gateway"));
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (name, value) in &env {
        let value = match name.as_str() {
            // Where this test can reach it, instead of the pod's addresses and Redis.
            "SSE_LISTEN" => format!("127.0.0.1:{listen}"),
            "SSE_ADMIN_LISTEN" => format!("127.0.0.1:{admin}"),
            "REDIS_URL" => redis.url(),
            "SSE_NODE_ID" => "sse-gateway-7d9c-x2".to_owned(), // a pod name
            _ => value
                .clone()
                .unwrap_or_else(|| panic!("{name} has no value")),
        };
        command.env(name, value);
    }
    let mut gateway = command.spawn().expect("start sse-gateway");
    let admin_addr = ([127, 0, 0, 1], admin).into();
    eventually(
        "the gateway is ready on its admin port",
        PATIENCE,
        || async {
            let status = http_status(admin_addr, "/readyz", PATIENCE).await?;
            (status == 200).then_some(())
        },
    )
    .await;
    let _ = gateway.kill();
    let _ = gateway.wait();
}
