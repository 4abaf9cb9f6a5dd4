//! The Redis side of a chaos run, [`Backend`]: the flags that point the processes at it, the
//! faults injected there and their healing, and where the final check reads each topic's
//! stream.
//!
//! - [`Backend::Single`]: one `redis-server` with AOF (`appendfsync always`). Its faults:
//!   `CLIENT KILL TYPE pubsub`, and SIGKILL with a restart (from the AOF) 0.3–2 s later.
//! - [`Backend::Cluster`]: a Redis Cluster of 3 masters and 3 replicas without persistence; the
//!   publisher's `--min-replicas-ack 1` is what keeps an acknowledged event through a failover.
//!   Its faults: `CLIENT KILL TYPE pubsub` on every master; SIGKILL of a topic's master, whose
//!   replica takes over, the killed node restarting 2–3 s later (it rejoins as the new master's
//!   replica); a graceful `CLUSTER FAILOVER` of a topic's master; moving a topic's slot, stream
//!   included, to another master (every topic is published to throughout, so the slot is busy).
//!   While a killed node is down its shard has no replica, so no other Redis fault is injected
//!   until it is back; and a shard whose nodes took part in an election less than
//!   [`ELECTION_GAP`] ago is neither killed nor failed over again (Redis would not hold a proper
//!   election that soon, and the test kit would sleep until it does).
//!
//! The cluster's methods block while it settles; they run in `block_in_place`, so the clients'
//! and publishers' tasks go on meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sse_core::Topic;
use sse_core::schema::stream_key;
use sse_testkit::{RedisCluster, RedisServer, Rng};
use tokio::task::block_in_place;

use crate::strings;

/// How long after an election its two nodes are left alone by [`RedisFault::KillMaster`] and
/// [`RedisFault::Failover`]: longer than the test kit's longest wait before another failover
/// (4.5 s).
const ELECTION_GAP: Duration = Duration::from_secs(5);
/// Bounds connecting to the single Redis for `CLIENT KILL` (it may be restarting).
const CONNECT_PATIENCE: Duration = Duration::from_secs(1);

/// A fault injected into Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RedisFault {
    /// `CLIENT KILL TYPE pubsub`: every gateway loses its subscriptions (on a cluster, on every
    /// master).
    KillPubSub,
    /// The single Redis is SIGKILLed and restarted.
    RestartRedis,
    /// A random topic's master is SIGKILLed; its replica takes over; the killed node restarts.
    KillMaster,
    /// A random topic's master hands over to its replica (`CLUSTER FAILOVER`).
    Failover,
    /// A random topic's slot moves to another master.
    MoveSlot,
}

/// The Redis the processes of a chaos run use.
pub(crate) enum Backend {
    Single(Single),
    Cluster(Cluster),
}

pub(crate) struct Single {
    server: RedisServer,
    /// While it is killed: when it restarts.
    down_until: Option<Instant>,
}

pub(crate) struct Cluster {
    cluster: RedisCluster,
    topics: Vec<String>,
    /// A killed master's port, and when it restarts.
    killed: Option<(u16, Instant)>,
    /// When each node last took part in an election, won or lost.
    elections: BTreeMap<u16, Instant>,
}

impl Backend {
    /// One `redis-server` with AOF.
    pub(crate) fn single() -> Self {
        Self::Single(Single {
            server: RedisServer::start_with_aof(),
            down_until: None,
        })
    }

    /// A Redis Cluster of 3 masters and 3 replicas; panics unless `topics` live on all of its
    /// masters.
    pub(crate) fn cluster(topics: &[&str]) -> Self {
        let cluster = block_in_place(RedisCluster::start);
        let masters = cluster.masters();
        let mut used: Vec<u16> = topics
            .iter()
            .map(|topic| cluster.master_of(&key(topic)))
            .collect();
        used.sort_unstable();
        used.dedup();
        assert_eq!(
            used, masters,
            "the topics {topics:?} live on the masters {used:?}, not on every master"
        );
        Self::Cluster(Cluster {
            cluster,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            killed: None,
            elections: BTreeMap::new(),
        })
    }

    /// What it is, for the summary.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Single(_) => "one redis-server",
            Self::Cluster(_) => "a Redis Cluster of 3 masters and 3 replicas",
        }
    }

    /// The flags that point a gateway at it.
    pub(crate) fn gateway_args(&self) -> Vec<String> {
        match self {
            Self::Single(single) => strings(&["--redis-url", &single.server.url()]),
            Self::Cluster(cluster) => {
                strings(&["--redis-cluster", "--redis-url", &cluster.cluster.seeds()])
            }
        }
    }

    /// The flags that point the publisher at it; on a cluster, a publish is acknowledged only
    /// once a replica holds it too.
    pub(crate) fn publisher_args(&self) -> Vec<String> {
        let mut args = self.gateway_args();
        if let Self::Cluster(_) = self {
            args.extend(strings(&[
                "--min-replicas-ack",
                "1",
                "--min-replicas-timeout",
                "1s",
            ]));
        }
        args
    }

    /// Restarts a killed node once it is due; says so.
    pub(crate) fn tick(&mut self) -> Option<String> {
        let now = Instant::now();
        match self {
            Self::Single(single) => {
                let until = single.down_until?;
                (now >= until).then(|| {
                    single.down_until = None;
                    single.restart()
                })
            }
            Self::Cluster(cluster) => {
                let (port, until) = cluster.killed?;
                (now >= until).then(|| block_in_place(|| cluster.restart_killed(port)))
            }
        }
    }

    /// Injects `fault` if it can be now: `None` defers it, `Some` says what was done.
    pub(crate) fn inject(&mut self, fault: RedisFault, rng: &mut Rng) -> Option<String> {
        match self {
            Self::Single(single) => {
                if single.down_until.is_some() {
                    return None;
                }
                match fault {
                    RedisFault::KillPubSub => {
                        let client = single.server.client();
                        let mut conn = client.get_connection_with_timeout(CONNECT_PATIENCE).ok()?;
                        kill_pubsub(&mut conn).then(String::new)
                    }
                    RedisFault::RestartRedis => {
                        single.server.kill();
                        single.down_until = Some(Instant::now() + rng.millis(300, 2000));
                        Some(String::new())
                    }
                    RedisFault::KillMaster | RedisFault::Failover | RedisFault::MoveSlot => {
                        panic!("{fault:?} is a cluster fault; the single-Redis deck has none")
                    }
                }
            }
            Self::Cluster(cluster) => {
                if cluster.killed.is_some() {
                    return None;
                }
                block_in_place(|| cluster.inject(fault, rng))
            }
        }
    }

    /// Restarts a killed node now; says so.
    pub(crate) fn heal(&mut self) -> Option<String> {
        match self {
            Self::Single(single) => single.down_until.take().map(|_| single.restart()),
            Self::Cluster(cluster) => {
                let (port, _) = cluster.killed?;
                Some(block_in_place(|| cluster.restart_killed(port)))
            }
        }
    }

    /// Every entry of `topic`'s stream: (id, data). On a cluster, as the master of its slot
    /// holds it.
    pub(crate) fn xrange(&self, topic: &str) -> Vec<(String, String)> {
        let key = key(topic);
        let mut conn = match self {
            Self::Single(single) => single.server.connection(),
            Self::Cluster(cluster) => cluster.cluster.connection(cluster.cluster.master_of(&key)),
        };
        let entries: Vec<(String, BTreeMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .expect("XRANGE the topic's stream");
        entries
            .into_iter()
            .map(|(id, mut fields)| {
                let data = fields
                    .remove("data")
                    .unwrap_or_else(|| panic!("stream entry {id} has no data field"));
                (id, data)
            })
            .collect()
    }
}

impl Single {
    /// Restarts the killed server (it replays its AOF before it answers).
    fn restart(&mut self) -> String {
        self.server.restart();
        "redis-server restarted".to_owned()
    }
}

impl Cluster {
    /// A cluster fault; the caller made sure that no node is down. Blocks until the cluster
    /// settled.
    fn inject(&mut self, fault: RedisFault, rng: &mut Rng) -> Option<String> {
        match fault {
            RedisFault::KillPubSub => {
                let masters = self.cluster.masters();
                for &port in &masters {
                    if !kill_pubsub(&mut self.cluster.connection(port)) {
                        return None;
                    }
                }
                Some(format!(" on {masters:?}"))
            }
            RedisFault::KillMaster => {
                let (topic, master, _) = self.pick_rested(rng)?;
                self.cluster.kill(master);
                let promoted = self.cluster.wait_for_failover(master);
                self.elected(&[master, promoted]);
                self.killed = Some((master, Instant::now() + rng.millis(2000, 3000)));
                Some(format!(
                    ": {topic}'s master {master} killed, {promoted} took over"
                ))
            }
            RedisFault::Failover => {
                let (topic, master, replica) = self.pick_rested(rng)?;
                self.cluster.failover(replica);
                self.elected(&[master, replica]);
                Some(format!(
                    ": {topic}'s master {master} handed over to {replica}"
                ))
            }
            RedisFault::MoveSlot => {
                let topic = rng.pick(&self.topics).clone();
                let key = key(&topic);
                let slot = RedisCluster::slot_of(&key);
                let from = self.cluster.master_of(&key);
                let others: Vec<u16> = self
                    .cluster
                    .masters()
                    .into_iter()
                    .filter(|&port| port != from)
                    .collect();
                let to = *rng.pick(&others);
                self.cluster.move_slot(slot, to);
                Some(format!(": {topic}'s slot {slot} moved from {from} to {to}"))
            }
            RedisFault::RestartRedis => {
                panic!("{fault:?} is a single-Redis fault; the cluster deck has none")
            }
        }
    }

    /// A random topic whose master and replica took part in no election for
    /// [`ELECTION_GAP`], with those two; `None` if there is none.
    fn pick_rested(&self, rng: &mut Rng) -> Option<(String, u16, u16)> {
        let rested = |port: u16| {
            self.elections
                .get(&port)
                .is_none_or(|at| at.elapsed() >= ELECTION_GAP)
        };
        let candidates: Vec<(String, u16, u16)> = self
            .topics
            .iter()
            .filter_map(|topic| {
                let master = self.cluster.master_of(&key(topic));
                let replicas = self.cluster.replicas_of(master);
                let Some(&replica) = replicas.first() else {
                    panic!("{topic}'s master {master} has no replica while every node is up")
                };
                (rested(master) && rested(replica)).then(|| (topic.clone(), master, replica))
            })
            .collect();
        (!candidates.is_empty()).then(|| rng.pick(&candidates).clone())
    }

    /// Notes that `nodes` just took part in an election.
    fn elected(&mut self, nodes: &[u16]) {
        let now = Instant::now();
        for &port in nodes {
            self.elections.insert(port, now);
        }
    }

    /// Restarts the killed node on `port` and waits until the cluster settled with it; says
    /// what the node is now.
    fn restart_killed(&mut self, port: u16) -> String {
        self.cluster.restart(port);
        self.killed = None;
        let role = match self
            .cluster
            .masters()
            .into_iter()
            .find(|&master| self.cluster.replicas_of(master).contains(&port))
        {
            Some(master) => format!("a replica of {master}"),
            None => "not a replica".to_owned(),
        };
        format!("cluster node {port} restarted, {role}")
    }
}

/// The key of `topic`'s stream, `sse:{<topic>}:stream`.
fn key(topic: &str) -> String {
    stream_key(&Topic::parse(topic).expect("the chaos topics are valid"))
}

/// `CLIENT KILL TYPE pubsub` on `conn`; whether Redis did it.
fn kill_pubsub(conn: &mut redis::Connection) -> bool {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query::<u64>(conn)
        .is_ok()
}
