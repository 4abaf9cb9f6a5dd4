//! Chaos: the delivery guarantee (SPEC §8) holds while real processes fail.
//!
//! Three `sse-gateway` processes and one `sse-publisher` process, all real binaries, on one of
//! two Redis backends (see `chaos/backend.rs`); the scenario and the checks are the same:
//!
//! - `every_client_receives_every_event_exactly_once_through_chaos`: one `redis-server` with
//!   AOF (`appendfsync always`), which the schedule kills and restarts.
//! - `every_client_receives_every_event_exactly_once_through_cluster_chaos`: a Redis Cluster of
//!   3 masters and 3 replicas (the test kit's), both binaries with `--redis-cluster`, the
//!   publisher with `--min-replicas-ack 1`; the four topics live on all three masters at start.
//!   The schedule SIGKILLs a topic's master (its replica takes over; the killed node comes back
//!   as a replica seconds later), fails a topic's master over to its replica (`CLUSTER
//!   FAILOVER`), and moves a topic's slot to another master while it is published to.
//!
//! One task per topic publishes sequence numbers over HTTP, retrying each until it gets a 201.
//! Two dozen EventSource-like clients (one, two or three topics each) read their streams and,
//! whenever a stream ends or breaks, reconnect to a random gateway with their `Last-Event-ID`.
//! Meanwhile a seeded schedule kills gateways with SIGKILL, stops them with SIGTERM (drain),
//! kills the gateways' pub/sub connections (`CLIENT KILL TYPE pubsub`, on a cluster on every
//! master), injects the backend's Redis faults (above), and makes clients stop reading for
//! seconds (so a gateway with a 32 KiB `--client-buffer` may cut them); never are all gateways
//! down at once, nor two Redis faults under way at once. Then everything is healed and the
//! clients catch up.
//!
//! What it proves: every acknowledged publish is in its topic's stream, nothing is lost from
//! the sequence, and every client received, for each of its topics, exactly the entries of
//! the topic's stream (`XRANGE`): same ids, same data, in order, each once, and never a
//! `sse.truncated`. A publish whose reply was lost (or, on the cluster, that no replica
//! confirmed in time: a 503) is retried and may be written twice; the stream, not the
//! publisher's count, is what clients must receive. On the cluster the stream is read from the
//! master that owns the topic's slot at the end. Nothing here asserts timing: timeouts only
//! bound hangs.
//!
//! The seed is printed; `CHAOS_SEED=<n>` replays a schedule (the processes' timing varies) of
//! either variant. On failure (or with `CHAOS_KEEP_LOGS=1`) the nodes' logs are kept and their
//! directory is printed. The two variants take turns rather than share the machine.

#[path = "chaos/backend.rs"]
mod backend;
#[path = "chaos/client.rs"]
mod client;
#[path = "chaos/http.rs"]
mod http;
#[path = "chaos/processes.rs"]
mod processes;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use backend::{Backend, RedisFault};
use client::{ClientHandle, ClientSpec};
use processes::{GATEWAY, LogDir, Node, publisher_binary};
use sse_testkit::{Rng, SseClient, free_port};
use tokio::task::JoinHandle;

const DEFAULT_SEED: u64 = 0x5EED_C4A0_2024;
const TOPICS: [&str; 4] = ["chaos-a", "chaos-b", "chaos-c", "chaos-d"];
const GATEWAYS: usize = 3;
const CLIENTS: usize = 24;
/// Publishing with faults lasts at least this long (and until every fault was injected).
const CHAOS: Duration = Duration::from_secs(30);
/// ... but never longer than this.
const CHAOS_MAX: Duration = Duration::from_secs(40);
/// Pause between two events of one topic.
const PUBLISH_PACE: Duration = Duration::from_millis(25);
/// Bytes of padding after the sequence number, so a stalled client overflows its buffer.
const PADDING: usize = 600;
/// The faults to inject on one Redis, each this many times, in a seeded order.
const DECK: [(Fault, usize); 5] = [
    (Fault::KillGateway, 4),
    (Fault::TermGateway, 3),
    (Fault::Redis(RedisFault::KillPubSub), 3),
    (Fault::Redis(RedisFault::RestartRedis), 3),
    (Fault::StallClient, 2),
];
/// The faults to inject on a cluster. Fewer gateway faults: a failover takes seconds, and
/// the whole deck must fit in [`CHAOS_MAX`].
const CLUSTER_DECK: [(Fault, usize); 7] = [
    (Fault::KillGateway, 2),
    (Fault::TermGateway, 2),
    (Fault::Redis(RedisFault::KillPubSub), 2),
    (Fault::Redis(RedisFault::KillMaster), 2),
    (Fault::Redis(RedisFault::Failover), 2),
    (Fault::Redis(RedisFault::MoveSlot), 2),
    (Fault::StallClient, 2),
];
/// Bounds one wait (a start, a heal, a drain); a hang, never a speed assertion.
const PATIENCE: Duration = Duration::from_secs(15);
/// Bounds the clients' catching up after the heal.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Gateway counters summed over every life of every node (read before each kill and at the end).
const COUNTERS: [&str; 5] = [
    "sse_slow_consumer_disconnects_total",
    "sse_redis_reconnects_total",
    "sse_gap_filled_events_total",
    "sse_replayed_events_total",
    "sse_history_truncated_total",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillGateway,
    TermGateway,
    StallClient,
    Redis(RedisFault),
}

/// The variants take turns: together they would starve a small machine of CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_receives_every_event_exactly_once_through_chaos() {
    chaos(Backend::single, &DECK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_receives_every_event_exactly_once_through_cluster_chaos() {
    chaos(|| Backend::cluster(&TOPICS), &CLUSTER_DECK).await;
}

/// The scenario: the processes on the Redis `start` starts, the clients, publishing while
/// `deck` is injected, the heal, the catch-up, the checks.
async fn chaos(start: impl FnOnce() -> Backend, deck: &[(Fault, usize)]) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let began = Instant::now();
    let seed = match std::env::var("CHAOS_SEED") {
        Ok(text) => parse_seed(&text).unwrap_or_else(|| panic!("CHAOS_SEED={text:?} is no u64")),
        Err(_) => DEFAULT_SEED,
    };
    println!("chaos: seed {seed} (replay with CHAOS_SEED={seed})");
    let mut rng = Rng::new(seed);

    // === the processes ===
    let logs = LogDir::new();
    let backend = start();
    let publisher_addr = local(free_port());
    let mut publisher = Node::new(
        "sse-publisher",
        publisher_addr,
        &publisher_binary(),
        node_args(
            publisher_addr,
            backend.publisher_args(),
            &[
                "--token",
                "chaos",
                "--redis-timeout",
                "1s",
                "--retention",
                "1000000",
            ],
        ),
        logs.file("publisher.log"),
    );
    publisher.spawn();
    let gateways: Vec<Gateway> = (0..GATEWAYS)
        .map(|i| {
            let addr = local(free_port());
            let args = node_args(
                addr,
                backend.gateway_args(),
                &[
                    "--drain-seconds",
                    "1",
                    "--redis-timeout",
                    "1s",
                    "--heartbeat",
                    "1s",
                    "--client-buffer",
                    "32KiB",
                ],
            );
            let log = logs.file(&format!("gateway-{i}.log"));
            let mut node = Node::new(&format!("gateway {i}"), addr, GATEWAY.as_ref(), args, log);
            node.spawn();
            Gateway {
                node,
                state: GatewayState::Up,
            }
        })
        .collect();
    let addrs: Vec<SocketAddr> = gateways.iter().map(|g| g.node.addr).collect();
    for addr in addrs.iter().chain([&publisher_addr]) {
        wait_ready(*addr).await;
    }

    // === the clients, each with its position before anything is published ===
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut topics: Vec<String> = TOPICS.iter().map(|t| (*t).to_owned()).collect();
        rng.shuffle(&mut topics);
        topics.truncate(1 + index % 3);
        let spec = ClientSpec { index, topics };
        let mut first = SseClient::get(addrs[index % GATEWAYS], &spec.path(), &[]).await;
        assert_eq!(
            first.status(),
            200,
            "client {index}: {}",
            first.text().await
        );
        first.position(PATIENCE).await;
        clients.push(ClientHandle::start(
            spec,
            first,
            addrs.clone(),
            rng.fork(index as u64),
        ));
    }

    // === publishing, and the faults ===
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<(String, Arc<Mutex<PublishLog>>, JoinHandle<()>)> = TOPICS
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            let log = Arc::new(Mutex::new(PublishLog::default()));
            let task = tokio::spawn(publish(
                publisher_addr,
                (*topic).to_owned(),
                stop.clone(),
                log.clone(),
                rng.fork(1000 + i as u64),
            ));
            ((*topic).to_owned(), log, task)
        })
        .collect();

    let chaos_began = Instant::now();
    let mut world = World {
        began: chaos_began,
        backend,
        gateways,
        counters: BTreeMap::new(),
        injected: BTreeMap::new(),
        anomalies: Vec::new(),
        rng: rng.fork(2000),
    };
    let mut deck: Vec<Fault> = deck
        .iter()
        .flat_map(|(fault, n)| std::iter::repeat_n(*fault, *n))
        .collect();
    rng.shuffle(&mut deck);
    let mut deck = VecDeque::from(deck);
    let mut next_fault = chaos_began + Duration::from_secs(2);
    loop {
        world.tick().await;
        let now = Instant::now();
        if let Some(fault) = deck.front().copied()
            && now >= next_fault
            && world.inject(fault, &clients).await
        {
            deck.pop_front();
            next_fault = now + world.rng.millis(1200, 2600);
        }
        let elapsed = chaos_began.elapsed();
        if (deck.is_empty() && elapsed >= CHAOS) || elapsed >= CHAOS_MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chaos_lasted = chaos_began.elapsed();
    let setup_lasted = chaos_began.duration_since(began);

    // === heal, let the publishers finish, let the clients catch up ===
    stop.store(true, Ordering::Relaxed);
    let heal_began = Instant::now();
    world.heal().await;
    for (topic, _, task) in &publishers {
        let finished = tokio::time::timeout(PATIENCE, async {
            while !task.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            finished.is_ok(),
            "the publisher task of {topic} still retries {PATIENCE:?} after the heal; \
             sse-publisher's log:\n{}",
            publisher.log_tail(30)
        );
    }
    let heal_lasted = heal_began.elapsed();
    let streams: BTreeMap<String, Vec<(String, String)>> = TOPICS
        .iter()
        .map(|t| ((*t).to_owned(), world.backend.xrange(t)))
        .collect();
    let healed = Instant::now();
    let caught_up = tokio::time::timeout(CATCH_UP, async {
        loop {
            let done = clients.iter().all(|c| {
                let log = c.log();
                c.spec
                    .topics
                    .iter()
                    .all(|t| log.received[t].len() >= streams[t].len())
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .is_ok();
    let catch_up_lasted = healed.elapsed();
    for gateway in &world.gateways {
        add_counters(&mut world.counters, gateway.node.addr).await;
    }

    // === check ===
    let mut failures: Vec<String> = std::mem::take(&mut world.anomalies);
    if !caught_up {
        failures.push(format!(
            "some clients did not catch up within {CATCH_UP:?} (details below)"
        ));
    }
    for node in world.gateways.iter().map(|g| &g.node).chain([&publisher]) {
        for line in node.log_lines_with("panicked") {
            failures.push(format!("{} logged a panic: {line}", node.name));
        }
    }
    let mut acknowledged = 0;
    let mut attempts = 0;
    let mut double_writes = 0;
    for (topic, log, _) in &publishers {
        let log = log.lock().unwrap_or_else(PoisonError::into_inner);
        acknowledged += log.acked.len();
        attempts += log.attempts;
        failures.extend(
            log.anomalies
                .iter()
                .map(|a| format!("publisher {topic}: {a}")),
        );
        let stream = &streams[topic];
        double_writes += check_stream(topic, stream, &log.acked, &mut failures);
    }
    let mut received = 0;
    for handle in &clients {
        if handle.task.is_finished() {
            failures.push(format!(
                "client {} stopped (its task panicked; see the output above)",
                handle.spec.index
            ));
        }
        let log = handle.log();
        for anomaly in &log.anomalies {
            failures.push(format!("client {}: {anomaly}", handle.spec.index));
        }
        for topic in &handle.spec.topics {
            received += log.received[topic].len();
            compare(
                handle.spec.index,
                topic,
                &log.received[topic],
                &streams[topic],
                &mut failures,
            );
        }
    }

    // === summary ===
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "chaos summary ({}, seed {seed}):",
        world.backend.name()
    );
    let _ = writeln!(
        summary,
        "  faults injected: {:?} over {:.1}s of publishing",
        world.injected,
        chaos_lasted.as_secs_f64()
    );
    let _ = writeln!(
        summary,
        "  publish attempts {attempts}, acknowledged {acknowledged}, stream entries {} \
         ({double_writes} written twice: retried after a lost reply or a 503)",
        streams.values().map(Vec::len).sum::<usize>()
    );
    let reconnects: Vec<String> = clients
        .iter()
        .map(|c| {
            let log = c.log();
            format!(
                "{}:{}{}",
                c.spec.topics.len(),
                log.connections - 1,
                if log.stalls > 0 { "(stalled)" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(
        summary,
        "  reconnects per client (topics:reconnects): {}",
        reconnects.join(" ")
    );
    let (mut failed_connects, mut silent, mut ended_after_stall) = (0, 0, 0);
    let mut refusals: BTreeMap<u16, u32> = BTreeMap::new();
    for c in &clients {
        let log = c.log();
        failed_connects += log.failed_connects;
        silent += log.silent_streams;
        ended_after_stall += log.streams_ended_after_stall;
        for (status, n) in &log.refusals {
            *refusals.entry(*status).or_default() += n;
        }
    }
    let _ = writeln!(
        summary,
        "  failed connects {failed_connects}, refusals {refusals:?}, silent streams dropped \
         {silent}, streams ended after a stall {ended_after_stall}"
    );
    let _ = writeln!(summary, "  gateway counters: {:?}", world.counters);
    let _ = writeln!(
        summary,
        "  events received by clients: {received}; wall time {:.1}s (setup {:.1}s, heal {:.1}s, \
         catch-up {:.1}s)",
        began.elapsed().as_secs_f64(),
        setup_lasted.as_secs_f64(),
        heal_lasted.as_secs_f64(),
        catch_up_lasted.as_secs_f64(),
    );
    println!("{summary}");

    for handle in &clients {
        handle.task.abort();
    }
    assert!(
        failures.is_empty(),
        "{} failures (seed {seed}):\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// === the world: the processes and the faults ===

struct Gateway {
    node: Node,
    state: GatewayState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GatewayState {
    Up,
    /// SIGTERMed, draining; restarted once it has exited.
    Draining {
        since: Instant,
    },
    /// Down until then.
    Down {
        until: Instant,
    },
}

struct World {
    /// When the faults began, for the log lines.
    began: Instant,
    backend: Backend,
    gateways: Vec<Gateway>,
    counters: BTreeMap<&'static str, u64>,
    injected: BTreeMap<Fault, u32>,
    anomalies: Vec<String>,
    rng: Rng,
}

impl World {
    /// Restarts what is due, reaps what drained, and notices nodes that died on their own.
    async fn tick(&mut self) {
        if let Some(restarted) = self.backend.tick() {
            self.note(&restarted);
        }
        let now = Instant::now();
        for gateway in &mut self.gateways {
            match gateway.state {
                GatewayState::Up => {
                    if let Some(status) = gateway.node.exited() {
                        self.anomalies.push(format!(
                            "{} exited on its own with {status}; its log ends with:\n{}",
                            gateway.node.name,
                            gateway.node.log_tail(20)
                        ));
                        gateway.node.spawn();
                    }
                }
                GatewayState::Draining { since } => {
                    if let Some(status) = gateway.node.exited() {
                        if !status.success() {
                            self.anomalies.push(format!(
                                "{} exited with {status} after SIGTERM; its log ends with:\n{}",
                                gateway.node.name,
                                gateway.node.log_tail(20)
                            ));
                        }
                        gateway.state = GatewayState::Down {
                            until: now + self.rng.millis(200, 1000),
                        };
                    } else if now.duration_since(since) > PATIENCE {
                        self.anomalies.push(format!(
                            "{} still ran {PATIENCE:?} after SIGTERM (--drain-seconds 1); \
                             killed it",
                            gateway.node.name
                        ));
                        gateway.node.kill();
                        gateway.state = GatewayState::Down { until: now };
                    }
                }
                GatewayState::Down { until } => {
                    if now >= until {
                        gateway.node.spawn();
                        gateway.state = GatewayState::Up;
                    }
                }
            }
        }
    }

    /// Injects `fault` now if it can be (one gateway always stays up; Redis must be up for
    /// a Redis fault); `false` defers it.
    async fn inject(&mut self, fault: Fault, clients: &[ClientHandle]) -> bool {
        let now = Instant::now();
        let mut detail = String::new();
        let up: Vec<usize> = (0..self.gateways.len())
            .filter(|&i| self.gateways[i].state == GatewayState::Up)
            .collect();
        match fault {
            Fault::KillGateway | Fault::TermGateway => {
                if up.len() < 2 {
                    return false;
                }
                let gateway = &mut self.gateways[up[self.rng.below(up.len())]];
                add_counters(&mut self.counters, gateway.node.addr).await;
                if fault == Fault::KillGateway {
                    gateway.node.kill();
                    gateway.state = GatewayState::Down {
                        until: now + self.rng.millis(300, 2000),
                    };
                } else {
                    gateway.node.terminate();
                    gateway.state = GatewayState::Draining { since: now };
                }
            }
            Fault::Redis(fault) => match self.backend.inject(fault, &mut self.rng) {
                Some(what) => detail = what,
                None => return false,
            },
            Fault::StallClient => {
                let client = &clients[self.rng.below(clients.len())];
                let pause = self.rng.millis(3000, 5000);
                client.stall.store(
                    u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
        }
        self.note(&format!("{fault:?}{detail}"));
        *self.injected.entry(fault).or_default() += 1;
        true
    }

    /// Brings every process back and waits until every gateway is ready.
    async fn heal(&mut self) {
        if let Some(restarted) = self.backend.heal() {
            self.note(&restarted);
        }
        let deadline = Instant::now() + PATIENCE;
        for gateway in &mut self.gateways {
            if let GatewayState::Down { .. } = gateway.state {
                gateway.state = GatewayState::Down {
                    until: Instant::now(),
                };
            }
        }
        while self.gateways.iter().any(|g| g.state != GatewayState::Up) {
            assert!(
                Instant::now() < deadline,
                "could not bring every node back within {PATIENCE:?}"
            );
            self.tick().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for gateway in &self.gateways {
            wait_ready(gateway.node.addr).await;
        }
    }

    /// Prints what happened, with the time since the faults began.
    fn note(&self, what: &str) {
        println!("chaos: +{:.1}s {what}", self.began.elapsed().as_secs_f64());
    }
}

/// Adds the counters of the node at `addr` (if it answers) to `sums`.
async fn add_counters(sums: &mut BTreeMap<&'static str, u64>, addr: SocketAddr) {
    let Ok(response) = http::get(addr, "/metrics", Duration::from_secs(2)).await else {
        return;
    };
    for line in response.body.lines() {
        for name in COUNTERS {
            if let Some(value) = line.strip_prefix(name).and_then(|v| v.strip_prefix(' ')) {
                let value: f64 = value.trim().parse().unwrap_or(0.0);
                // Counters are whole numbers.
                *sums.entry(name).or_default() += value as u64;
            }
        }
    }
}

/// Polls `GET /readyz` until it answers 200.
async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(response) = http::get(addr, "/readyz", Duration::from_secs(2)).await
            && response.status == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} was not ready within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === publishing ===

#[derive(Debug, Default)]
struct PublishLog {
    /// (sequence number, id) of every acknowledged event, in order.
    acked: Vec<(u64, String)>,
    attempts: u64,
    anomalies: Vec<String>,
}

/// Publishes `0, 1, 2, …` on `topic` until `stop`, each retried until acknowledged.
async fn publish(
    addr: SocketAddr,
    topic: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<PublishLog>>,
    mut rng: Rng,
) {
    let padding = "x".repeat(PADDING);
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = format!(r#"{{"topic":"{topic}","data":"{seq} {padding}"}}"#);
        loop {
            let response = http::request(
                addr,
                "POST",
                "/v1/publish",
                &[
                    ("Authorization", "Bearer chaos"),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
                PATIENCE,
            )
            .await;
            let acknowledged = {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                log.attempts += 1;
                match response {
                    Ok(response) if response.status == 201 => {
                        match json_string(&response.body, "id") {
                            Some(id) => log.acked.push((seq, id)),
                            None => log
                                .anomalies
                                .push(format!("201 without an id: {}", response.body)),
                        }
                        true
                    }
                    // Redis unavailable, or the outcome is unknown: retry the same event.
                    Ok(response) if response.status == 503 => false,
                    Ok(response) => {
                        log.anomalies.push(format!(
                            "publish answered {}: {}",
                            response.status, response.body
                        ));
                        false
                    }
                    // Refused, reset or timed out: the outcome is unknown too.
                    Err(_) => false,
                }
            };
            if acknowledged {
                break;
            }
            tokio::time::sleep(rng.millis(20, 100)).await;
        }
        seq += 1;
        tokio::time::sleep(PUBLISH_PACE).await;
    }
}

/// The string value of `"key":"…"` in a flat JSON object.
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let len = json[start..].find('"')?;
    Some(json[start..start + len].to_owned())
}

// === checking ===

/// The sequence number an event's data starts with.
fn seq_of(data: &str) -> Option<u64> {
    data.split(' ').next()?.parse().ok()
}

/// Checks that the stream holds every acknowledged event and the sequence `0..=last` without
/// a hole (a number may repeat: a retry after a lost reply). Returns how many repeat.
fn check_stream(
    topic: &str,
    stream: &[(String, String)],
    acked: &[(u64, String)],
    failures: &mut Vec<String>,
) -> usize {
    let by_id: BTreeMap<&str, &str> = stream
        .iter()
        .map(|(id, data)| (id.as_str(), data.as_str()))
        .collect();
    for (seq, id) in acked {
        match by_id.get(id.as_str()) {
            Some(data) if seq_of(data) == Some(*seq) => {}
            Some(data) => failures.push(format!(
                "{topic}: acknowledged #{seq} as {id}, but the stream holds {:?} there",
                seq_of(data)
            )),
            None => failures.push(format!(
                "{topic}: acknowledged #{seq} as {id}, which is not in the stream"
            )),
        }
    }
    let mut repeats = 0;
    let mut expected = 0;
    for (id, data) in stream {
        match seq_of(data) {
            Some(seq) if seq == expected => expected += 1,
            Some(seq) if seq + 1 == expected => repeats += 1,
            other => {
                failures.push(format!(
                    "{topic}: stream entry {id} holds #{other:?} where #{expected} was due"
                ));
                return repeats;
            }
        }
    }
    if let Some((last, _)) = acked.last()
        && expected != last + 1
    {
        failures.push(format!(
            "{topic}: the stream ends at #{} but #{last} was acknowledged",
            expected as i64 - 1
        ));
    }
    repeats
}

/// Compares what a client received on `topic` with the topic's stream.
fn compare(
    client: usize,
    topic: &str,
    received: &[(String, String)],
    stream: &[(String, String)],
    failures: &mut Vec<String>,
) {
    if received == stream {
        return;
    }
    let first_difference = received
        .iter()
        .zip(stream)
        .position(|(r, s)| r != s)
        .unwrap_or(received.len().min(stream.len()));
    let stream_ids: BTreeMap<&str, ()> = stream.iter().map(|(id, _)| (id.as_str(), ())).collect();
    let mut seen = BTreeMap::new();
    let mut duplicates = 0;
    for (id, _) in received {
        if seen.insert(id.as_str(), ()).is_some() {
            duplicates += 1;
        }
    }
    let missing = stream_ids
        .keys()
        .filter(|id| !seen.contains_key(*id))
        .count();
    let unknown = seen
        .keys()
        .filter(|id| !stream_ids.contains_key(*id))
        .count();
    let show = |events: &[(String, String)]| -> String {
        events
            .iter()
            .skip(first_difference.saturating_sub(1))
            .take(4)
            .map(|(id, data)| format!("{id}=#{}", seq_of(data).map_or(-1, |s| s as i64)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    failures.push(format!(
        "client {client}, {topic}: received {} events, the stream holds {} ({missing} missing, \
         {duplicates} duplicates, {unknown} not in the stream); first difference at #{first_difference}: \
         received [{}], stream [{}]",
        received.len(),
        stream.len(),
        show(received),
        show(stream),
    ));
}

// === small things ===

fn local(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// A node's arguments: `--listen addr`, the backend's `redis` flags, then `rest`.
fn node_args(addr: SocketAddr, redis: Vec<String>, rest: &[&str]) -> Vec<String> {
    let mut args = strings(&["--listen", &addr.to_string()]);
    args.extend(redis);
    args.extend(strings(rest));
    args
}

fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}
