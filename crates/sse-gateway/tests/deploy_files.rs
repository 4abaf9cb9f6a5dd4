//! The deployment and monitoring files are valid and agree with the code:
//! - `docker-compose config` accepts `docker-compose.yml` and renders the nine services plus
//!   the seven of the `cluster` profile, every host nginx and Prometheus reach is one of them,
//!   and with `deploy/compose/cluster.env` both binaries are pointed at the cluster's nodes;
//! - `promtool` accepts `deploy/prometheus/prometheus.yml` and `alerts.yml`, and the alert unit
//!   tests in `alerts.test.yml` pass;
//! - every `sse_*` metric the Grafana dashboard and the alert rules query is one the binaries
//!   export (read from `crates/*/src/metrics.rs`), the dashboard uses the provisioned datasource,
//!   and every exported metric has a panel.
//!
//! Needs `docker-compose` (Debian package `docker-compose`) and `promtool` (Debian package
//! `prometheus`). A missing tool fails the test with the package to install: it never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Runs `program args` in the repository root and returns its stdout; fails the test when the
/// program is missing (naming the Debian package that has it) or exits unsuccessfully.
fn run(program: &str, args: &[&str], package: &str) -> String {
    let output = match Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not installed; it is needed to check the deployment files: \
             apt-get install -y {package}"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    };
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

const SERVICES: [&str; 9] = [
    "gateway-1",
    "gateway-2",
    "gateway-3",
    "grafana",
    "nginx",
    "prometheus",
    "publisher",
    "redis",
    "tls-cert",
];

/// The services of the `cluster` profile: six nodes and the one-shot job that creates the
/// cluster from them.
const CLUSTER_SERVICES: [&str; 7] = [
    "redis-cluster-1",
    "redis-cluster-2",
    "redis-cluster-3",
    "redis-cluster-4",
    "redis-cluster-5",
    "redis-cluster-6",
    "redis-cluster-init",
];

/// The keys of the top-level `services:` mapping of a rendered compose file (two-space indent,
/// as `docker-compose config` writes it).
fn rendered_services(rendered: &str) -> BTreeSet<String> {
    let mut services = BTreeSet::new();
    let mut inside = false;
    for line in rendered.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line.trim_end() == "services:";
        } else if inside
            && let Some(key) = line.strip_prefix("  ")
            && !key.starts_with(' ')
            && let Some(name) = key.trim_end().strip_suffix(':')
        {
            services.insert(name.to_owned());
        }
    }
    services
}

#[test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs docker-compose: tests/run.sh (or --features sse-gateway/e2e)"
)]
fn compose_file_renders_every_service() {
    let rendered = run(
        "docker-compose",
        &["-f", "docker-compose.yml", "config"],
        "docker-compose",
    );
    let services = rendered_services(&rendered);
    let expected: BTreeSet<String> = SERVICES
        .iter()
        .chain(&CLUSTER_SERVICES)
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(services, expected, "services in:\n{rendered}");
    // Without the cluster env file, all four binaries use the one Redis.
    assert_eq!(rendered.matches("REDIS_URL: redis://redis:6379").count(), 4);
    assert_eq!(rendered.matches("REDIS_CLUSTER: \"false\"").count(), 4);
    for needle in [
        "condition: service_healthy",
        "SSE_LISTEN: 0.0.0.0:8080",
        "SSE_LISTEN: 0.0.0.0:8081",
        "SSE_LOG_FORMAT: json",
        "--appendonly",
        "upstreams.compose.conf:/etc/nginx/sse/upstreams.conf:ro",
        // nginx's TLS port, with the certificate the one-shot tls-cert service made.
        "8443:8443",
        "tls:/etc/nginx/sse/tls:ro",
        "condition: service_completed_successfully",
    ] {
        assert!(
            rendered.contains(needle),
            "`{needle}` is missing from:\n{rendered}"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs docker-compose: tests/run.sh (or --features sse-gateway/e2e)"
)]
fn the_cluster_env_file_points_both_binaries_at_the_cluster_profile() {
    let env = read("deploy/compose/cluster.env");
    assert!(env.lines().any(|line| line == "COMPOSE_PROFILES=cluster"));
    let rendered = run(
        "docker-compose",
        &[
            "--env-file",
            "deploy/compose/cluster.env",
            "-f",
            "docker-compose.yml",
            "config",
        ],
        "docker-compose",
    );
    let seeds = "REDIS_URL: redis://redis-cluster-1:6379,redis://redis-cluster-2:6379,redis://redis-cluster-3:6379";
    assert_eq!(rendered.matches(seeds).count(), 4, "{rendered}");
    assert_eq!(rendered.matches("REDIS_CLUSTER: \"true\"").count(), 4);
    assert_eq!(
        rendered.matches("- cluster\n").count(),
        CLUSTER_SERVICES.len(),
        "every cluster service, and only they, in the profile:\n{rendered}"
    );
    for node in &CLUSTER_SERVICES[..6] {
        assert!(
            rendered.contains(&format!("hostname: {node}")),
            "{node} announces its service name:\n{rendered}"
        );
    }
}

#[test]
fn nginx_and_prometheus_reach_compose_services() {
    let upstreams = read("nginx/upstreams.compose.conf");
    let nginx_hosts: Vec<&str> = upstreams
        .lines()
        .filter_map(|line| line.trim().strip_prefix("server "))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    let prometheus = read("deploy/prometheus/prometheus.yml");
    let scraped: Vec<&str> = prometheus
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- targets: ["))
        .flat_map(|list| list.trim_end_matches(']').split(','))
        .filter_map(|target| target.trim().trim_matches('"').split(':').next())
        .filter(|host| *host != "127.0.0.1")
        .collect();
    assert!(nginx_hosts.len() >= 4, "upstreams: {nginx_hosts:?}");
    assert!(scraped.len() >= 4, "scrape targets: {scraped:?}");
    for host in nginx_hosts.iter().chain(&scraped) {
        assert!(
            SERVICES.contains(host),
            "{host} is not a docker-compose service"
        );
    }
    for service in ["gateway-1", "gateway-2", "gateway-3", "publisher"] {
        assert!(
            scraped.contains(&service),
            "Prometheus does not scrape {service}"
        );
    }
}

/// The Dockerfile's dependency layer builds from the manifests alone: it must copy every
/// workspace member's Cargo.toml and stub every target a manifest declares (cargo reads them
/// all): it stubs each `[[test]]` and `[[bench]]` it finds, whatever their names. That the
/// image really builds is `tests/compose.rs`'s job, which builds it.
#[test]
fn dockerfile_knows_every_workspace_member() {
    let dockerfile = read("Dockerfile");
    let workspace = read("Cargo.toml");
    let members: Vec<&str> = workspace
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("\"crates/"))
        .map(|line| line.trim_end_matches(',').trim_matches('"'))
        .collect();
    assert!(members.len() >= 4, "workspace members: {members:?}");
    for member in members {
        let copy = format!("COPY {member}/Cargo.toml {member}/Cargo.toml");
        assert!(dockerfile.contains(&copy), "the Dockerfile lacks `{copy}`");
    }
    assert!(
        dockerfile.contains("for kind in test:tests bench:benches; do"),
        "the Dockerfile stubs every declared test and bench target"
    );
    // Other declared targets would need stubs too.
    for section in ["[[example]]", "[[bin]]"] {
        let declared = members_declaring(section);
        assert!(
            declared.is_empty(),
            "{declared:?} declare {section}: the Dockerfile's dependency layer stubs only tests and benches"
        );
    }
}

/// The workspace members whose manifest has a `section` table.
fn members_declaring(section: &str) -> Vec<String> {
    std::fs::read_dir(repo_root().join("crates"))
        .expect("the crates directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path().join("Cargo.toml");
            let manifest = std::fs::read_to_string(&path).ok()?;
            manifest
                .lines()
                .any(|line| line.trim() == section)
                .then(|| path.display().to_string())
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "e2e"),
    ignore = "needs promtool: tests/run.sh (or --features sse-gateway/e2e)"
)]
fn prometheus_config_and_alert_rules_pass_promtool() {
    run(
        "promtool",
        &["check", "config", "deploy/prometheus/prometheus.yml"],
        "prometheus",
    );
    run(
        "promtool",
        &["check", "rules", "deploy/prometheus/alerts.yml"],
        "prometheus",
    );
    let tested = run(
        "promtool",
        &["test", "rules", "deploy/prometheus/alerts.test.yml"],
        "prometheus",
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Metric names a `metrics.rs` registers (its `"sse_…"` string literals), each with whether it
/// is a histogram (registered through `MetricsRegistry::histogram`).
fn registered_metrics(source: &str) -> BTreeMap<String, bool> {
    let mut metrics = BTreeMap::new();
    for (at, _) in source.match_indices("\"sse_") {
        let name: String = source[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let before = source[..at].trim_end();
        let histogram = before.ends_with(".histogram(");
        *metrics.entry(name).or_insert(false) |= histogram;
    }
    metrics
}

fn exported_metrics() -> BTreeMap<String, bool> {
    let mut metrics = registered_metrics(&read("crates/sse-gateway/src/metrics.rs"));
    for source in [
        "crates/sse-publisher/src/metrics.rs",
        // The JWKS metrics both services register.
        "crates/sse-core/src/runtime/jwks.rs",
    ] {
        metrics.extend(registered_metrics(&read(source)));
    }
    assert!(
        metrics.len() >= 10 && metrics.values().any(|histogram| *histogram),
        "could not read the metric names from metrics.rs: {metrics:?}"
    );
    metrics
}

/// The `sse_…` names in a PromQL expression (or any text).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("sse_") {
        let preceded = text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !preceded {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            names.insert(name);
        }
    }
    names
}

/// The exported metric a queried name belongs to (`x_bucket` → `x` for a histogram `x`).
fn resolve<'a>(name: &str, exported: &'a BTreeMap<String, bool>) -> Option<&'a str> {
    if let Some((metric, _)) = exported.get_key_value(name) {
        return Some(metric);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        match exported.get_key_value(base) {
            Some((metric, true)) => Some(metric.as_str()),
            _ => None,
        }
    })
}

/// Asserts every `sse_` name in `exprs` is exported; returns the exported metrics they use.
fn check_names<'a>(
    what: &str,
    exprs: &[String],
    exported: &'a BTreeMap<String, bool>,
) -> BTreeSet<&'a str> {
    let mut used = BTreeSet::new();
    for expr in exprs {
        for name in metric_names(expr) {
            let metric = resolve(&name, exported).unwrap_or_else(|| {
                panic!(
                    "{what} queries `{name}`, which no binary exports (in `{expr}`); \
                     exported: {:?}",
                    exported.keys().collect::<Vec<_>>()
                )
            });
            used.insert(metric);
        }
    }
    used
}

/// The values of every `key:` entry of a YAML file: plain or quoted on the same line, or a
/// block scalar (`>-`, `|`) on the more-indented lines after it.
fn yaml_values(yaml: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut values = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(rest) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let rest = rest.trim();
        if rest.starts_with('>') || rest.starts_with('|') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            values.push(block.join(" "));
        } else {
            values.push(rest.trim_matches(|c| c == '\'' || c == '"').to_owned());
        }
    }
    values
}

#[test]
fn alert_rules_query_only_exported_metrics() {
    let exported = exported_metrics();
    let rules = read("deploy/prometheus/alerts.yml");
    let exprs = yaml_values(&rules, "expr");
    assert!(exprs.len() >= 5, "alert expressions: {exprs:?}");
    let used = check_names("deploy/prometheus/alerts.yml", &exprs, &exported);
    for metric in [
        "sse_delivery_latency_seconds",
        "sse_slow_consumer_disconnects_total",
        "sse_publish_requests_total",
        "sse_redis_reconnects_total",
    ] {
        assert!(used.contains(metric), "no alert rule uses {metric}");
    }
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("up{") && e.contains("== 0"))
    );
    // Every rule has a `for:` or fires at once by design, a severity and both annotations.
    let alerts = yaml_values(&rules, "alert").len();
    for key in ["severity", "summary", "description"] {
        assert_eq!(yaml_values(&rules, key).len(), alerts, "{key} per alert");
    }
    // The unit tests feed only real series.
    let series = yaml_values(&read("deploy/prometheus/alerts.test.yml"), "series");
    assert!(!series.is_empty());
    check_names("deploy/prometheus/alerts.test.yml", &series, &exported);
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let exported = exported_metrics();
    let text = read("deploy/grafana/dashboards/sse-gateway.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sse-gateway.json: {e}"));
    assert!(
        dashboard["schemaVersion"].is_number(),
        "schemaVersion is not set"
    );
    assert!(dashboard["uid"].is_string());
    let exprs = strings_of(&dashboard, "expr");
    assert!(exprs.len() >= 10, "expressions: {exprs:?}");
    let used = check_names("the Grafana dashboard", &exprs, &exported);
    let unused: Vec<&String> = exported
        .keys()
        .filter(|m| !used.contains(m.as_str()))
        .collect();
    assert!(unused.is_empty(), "no dashboard panel shows {unused:?}");

    // Every datasource reference is the provisioned Prometheus, by uid (Grafana's own
    // annotation source aside).
    let provisioned = yaml_values(
        &read("deploy/grafana/provisioning/datasources/prometheus.yml"),
        "uid",
    );
    assert_eq!(provisioned.len(), 1, "datasource uids: {provisioned:?}");
    let uids = strings_of(&dashboard, "uid");
    let mut datasource_uids: BTreeSet<&str> = uids
        .iter()
        .map(String::as_str)
        .filter(|uid| *uid != "sse-gateway" && *uid != "-- Grafana --")
        .collect();
    assert!(datasource_uids.remove(provisioned[0].as_str()));
    assert!(
        datasource_uids.is_empty(),
        "unknown datasource uids: {datasource_uids:?}"
    );
    let provider = read("deploy/grafana/provisioning/dashboards/sse.yml");
    assert!(provider.contains("path: /etc/grafana/dashboards"));
}

/// Every string value of a member named `key`, anywhere in `value`.
fn strings_of(value: &serde_json::Value, key: &str) -> Vec<String> {
    let mut found = Vec::new();
    collect(value, key, &mut found);
    found
}

fn collect(value: &serde_json::Value, key: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, key, found)),
        serde_json::Value::Object(members) => {
            for (k, v) in members {
                if let (true, Some(text)) = (k == key, v.as_str()) {
                    found.push(text.to_owned());
                }
                collect(v, key, found);
            }
        }
        _ => {}
    }
}

/// The directives that keep `/events` a live stream through nginx. nginx 1.22 delivered small
/// events promptly even with buffering turned back on in an experiment, so the end-to-end test
/// alone cannot catch such a regression; this check does.
#[test]
fn nginx_proxies_events_unbuffered() {
    let config = read("nginx/nginx.conf");
    let start = config
        .find("location = /events {")
        .expect("nginx.conf has a location = /events block");
    let block =
        &config[start..start + config[start..].find("\n        }").expect("the block ends")];
    for directive in [
        "proxy_buffering off;",
        "proxy_cache off;",
        "gzip off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_read_timeout 1h;",
    ] {
        assert!(
            block.contains(directive),
            "location = /events lacks `{directive}`"
        );
    }
    assert!(
        !block.contains("proxy_ignore_headers"),
        "the gateway's X-Accel-Buffering: no must not be ignored"
    );
}

/// A subscriber token may travel in the query (`?access_token=`): nginx's log formats must
/// never write the raw query or request line, and the project's format redacts the token.
#[test]
fn nginx_logs_never_write_a_query_token() {
    let config = read("nginx/nginx.conf");
    let formats: Vec<&str> = config
        .split("log_format")
        .skip(1)
        .map(|rest| rest.split(';').next().unwrap_or_default())
        .collect();
    assert!(!formats.is_empty(), "nginx.conf defines a log format");
    for format in &formats {
        for raw in [
            "$request ",
            "$request\"",
            "$request_uri",
            "$args",
            "$query_string",
        ] {
            assert!(!format.contains(raw), "a log format writes {raw}: {format}");
        }
    }
    assert!(
        config.contains("access_token=)[^&]*(?<after>.*)$\" \"${before}REDACTED${after}\""),
        "the redacting map replaces the token's value"
    );
}
