//! [`RedisCluster`]: a real Redis Cluster of three masters and three replicas that one test owns,
//! kills, restarts, fails over and reshards.
//!
//! Guarantees: every node is a `redis-server` (a `valkey-server` on Valkey, see [`Engine`])
//! launched as [`RedisServer`](crate::RedisServer) launches its server (`127.0.0.1` only, a port
//! free at start, its own temporary directory with its log, `redis.log` or `valkey.log`, no config
//! file, persistence off), plus `--cluster-enabled yes`, its `nodes.conf` in that directory, its
//! cluster bus on a second free port and `--cluster-node-timeout 1000`, so that a killed master is
//! replaced within a few seconds. The cluster is created with `redis-cli --cluster create ...
//! --cluster-replicas 1` (`valkey-cli` on Valkey). `start`, `restart`, `failover`,
//! `wait_for_failover`, `move_slot` and `wait_ok` return only once the cluster is *settled*: every
//! live node reports `cluster_state:ok`, every live node's `CLUSTER SLOTS` names the same master for
//! every slot range, and every live replica of a live master reports `master_link_status:up` and
//! is listed as that master's replica in every live node's `CLUSTER NODES`.
//! "Live" means started and not [`kill`](RedisCluster::kill)ed by the test.
//!
//! Not guaranteed: replication is asynchronous, so a write acknowledged by a master just before it
//! is killed may be missing after [`wait_for_failover`](RedisCluster::wait_for_failover) (use `WAIT`
//! in the test; [`failover`](RedisCluster::failover) is graceful and loses nothing). A node keeps no
//! data across `kill` and `restart`: a restarted replica syncs again from its master, a restarted
//! master that was not failed over comes back empty. A node that dies on its own still counts as
//! live, so the next wait panics. Ports are not held while a node is down (a `restart` then panics
//! and says so), and if the test process itself is killed with SIGKILL the nodes survive it.
//!
//! **TLS**: [`start_with_tls`](RedisCluster::start_with_tls) gives every node a TLS port as well
//! (`--tls-port`, `--tls-cluster yes`, `--tls-replication yes`, clients must show a certificate of
//! the CA). Redis answers `CLUSTER SLOTS` with the port of the connection's kind, so a client that
//! starts from [`tls_seeds`](RedisCluster::tls_seeds) only ever sees TLS ports, while the fixture
//! keeps managing the nodes on their plain ports.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::redis_server::{
    CONNECT_TIMEOUT, LaunchError, READY_TIMEOUT, START_ATTEMPTS, launch, log_tail,
};
use crate::{Engine, free_port};

/// How many masters `start` creates; each gets [`REPLICAS_PER_MASTER`] replicas.
const MASTERS: usize = 3;
/// How many replicas each master gets (`--cluster-replicas`).
const REPLICAS_PER_MASTER: usize = 1;
/// `--cluster-node-timeout` in milliseconds: how long a node may be unreachable before it counts as
/// failed. Small, so that a failover takes a few seconds rather than the default 15 s and more.
const NODE_TIMEOUT_MS: u64 = 1000;
/// How many hash slots a Redis Cluster has.
const SLOTS: u16 = 16384;
/// How long the cluster may take to settle after a start, restart, failover or resharding, and how
/// long `redis-cli --cluster create` may run.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two checks whether the cluster settled.
const SETTLE_INTERVAL: Duration = Duration::from_millis(50);
/// Connect, read and write timeout of the fixture's own commands to a node (`MIGRATE` included).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after winning an election a node cannot win a proper one again.
///
/// Redis 7.0 keeps a replica's election state for `2 * max(2 * node timeout, 2 s)` (4 s here): a
/// node asked to fail over again within that time "wins" at once with the votes and epoch of its
/// previous election, the other nodes ignore its stale claim, and the manual failover times out.
/// So: 4 s, plus a margin.
const ELECTION_RETRY: Duration = Duration::from_millis(4500);
/// How long after an election the masters refuse to vote about the master it replaced:
/// `2 * node timeout`, plus a margin.
const VOTE_COOLDOWN: Duration = Duration::from_millis(2500);
/// How many keys one `MIGRATE` moves.
const MIGRATE_BATCH: usize = 100;
/// The `timeout` argument of `MIGRATE`, in milliseconds: less than [`QUERY_TIMEOUT`], so a stuck
/// migration is reported by Redis rather than by the client's read timeout.
const MIGRATE_TIMEOUT_MS: u64 = 2000;
/// The cluster config file inside each node's directory.
const NODES_CONF: &str = "nodes.conf";

/// A real Redis Cluster on `127.0.0.1`, owned by one test: three masters, each with one replica; a
/// Valkey cluster when `SSE_TEST_ENGINE=valkey` (see [`Engine`]).
///
/// All ports in its API are the nodes' client ports. Dropping it kills every node (SIGKILL), waits
/// for each and removes their temporary directories.
#[derive(Debug)]
pub struct RedisCluster {
    /// Chosen at start; every node and restart runs the same binary.
    engine: Engine,
    nodes: Vec<Node>,
    /// The elections seen to end in `failover` and `wait_for_failover`. A `Mutex` because both
    /// take `&self`.
    elections: Mutex<Vec<Election>>,
}

/// An election that ended: the replica `winner` took over the slots of the master `replaced`.
#[derive(Debug, Clone, Copy)]
struct Election {
    winner: u16,
    replaced: u16,
    /// When the fixture saw it end; the election itself started a little earlier.
    at: Instant,
}

/// The PEM files of a cluster whose nodes serve TLS too (see
/// [`RedisCluster::start_with_tls`]): each node presents `cert` (with `key`) to clients, to the
/// other nodes and to its master, and trusts `ca` for the certificates shown to it.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One `redis-server` (or `valkey-server`) of the cluster.
#[derive(Debug)]
struct Node {
    engine: Engine,
    port: u16,
    /// The cluster bus port (`--cluster-port`); the same across restarts, as `nodes.conf` records it.
    bus_port: u16,
    /// The TLS port and files, for a cluster started with TLS; the same across restarts.
    tls: Option<(u16, ClusterTls)>,
    /// `None` while killed.
    child: Option<Child>,
    /// Dropped after `Drop::drop` killed the child, so the directory outlives the process.
    dir: TempDir,
}

/// One line of a node's `CLUSTER SLOTS` answer, reduced to what nodes must agree on.
///
/// The replicas in that answer are left out: a node lists a replica there only once it has heard
/// of a replication offset above 0 for it, which on an idle cluster takes up to
/// `repl-ping-replica-period` (10 s), so nodes legitimately disagree on them for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SlotRange {
    start: u16,
    end: u16,
    /// The port of the master that owns `start..=end`.
    master: u16,
}

/// One line of `CLUSTER NODES` (or of `nodes.conf`, which has the same format).
struct NodeLine<'a> {
    id: &'a str,
    port: u16,
    flags: Vec<&'a str>,
    /// The id of its master, `-` for a master.
    master_id: &'a str,
    /// `5461`, `0-5460`, or `[slot->-id]` / `[slot-<-id]` for a migration in progress.
    slots: Vec<&'a str>,
}

/// What a node says about itself in `INFO replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Master,
    Replica { master: u16, link_up: bool },
}

// === impl RedisCluster ===

impl RedisCluster {
    /// Starts six nodes, creates a cluster of three masters and three replicas from them, and waits
    /// until it is settled (see the module docs).
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is not on `PATH` (with `SSE_TEST_ENGINE=valkey`: if
    /// `valkey-server` or `valkey-cli` is not found), if a node does not answer `PING` within 10 s or
    /// exits early on 5 different ports in a row, if `redis-cli --cluster create` fails, or if the
    /// cluster does not settle within 30 s. The message names the engine and quotes the tails of the
    /// nodes' logs.
    pub fn start() -> RedisCluster {
        Self::launch(None)
    }

    /// Starts a cluster as [`start`](RedisCluster::start) does, whose nodes also serve TLS with
    /// `tls`'s files on ports of their own (see the module docs).
    ///
    /// # Panics
    ///
    /// As [`start`](RedisCluster::start); a node that cannot read the files exits early, and the
    /// message quotes its log.
    pub fn start_with_tls(tls: ClusterTls) -> RedisCluster {
        Self::launch(Some(tls))
    }

    fn launch(tls: Option<ClusterTls>) -> RedisCluster {
        let engine = Engine::from_env();
        let count = MASTERS * (1 + REPLICAS_PER_MASTER);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            // A panic here drops the nodes already started, which kills them.
            nodes.push(Node::start(engine, tls.clone()));
        }
        let cluster = RedisCluster {
            engine,
            nodes,
            elections: Mutex::new(Vec::new()),
        };
        cluster.create();
        cluster.wait_settled("the new cluster is settled", |map| {
            let masters = masters_in(map).len();
            if masters == MASTERS {
                Ok(())
            } else {
                Err(format!("{masters} masters own slots, not {MASTERS}"))
            }
        });
        cluster
    }

    /// The URLs of the live masters that own slots now, comma-separated:
    /// `redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3` (the form a cluster
    /// client's seed list takes).
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::masters`].
    pub fn seeds(&self) -> String {
        self.masters()
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `rediss://` URLs of the TLS ports of the live masters that own slots now,
    /// comma-separated, as [`seeds`](RedisCluster::seeds) names their plain ports.
    ///
    /// # Panics
    ///
    /// If the cluster was not started with [`start_with_tls`](RedisCluster::start_with_tls), or
    /// as [`RedisCluster::masters`].
    pub fn tls_seeds(&self) -> String {
        self.masters()
            .iter()
            .map(|&port| match &self.node(port).tls {
                Some((tls_port, _)) => format!("rediss://127.0.0.1:{tls_port}"),
                None => panic!("tls_seeds: the cluster was started without TLS"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's port, killed nodes included, in the order the nodes were started.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The ports of the live nodes that own slots now, as the first live node that answers sees it;
    /// sorted.
    ///
    /// # Panics
    ///
    /// If no live node answers `CLUSTER SLOTS`.
    pub fn masters(&self) -> Vec<u16> {
        masters_in(&self.slot_map())
            .into_iter()
            .filter(|&port| self.is_live(port))
            .collect()
    }

    /// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the part between the
    /// first `{` and the next `}`, if that part is not empty), modulo 16384; what `CLUSTER KEYSLOT`
    /// answers.
    pub fn slot_of(key: &str) -> u16 {
        let key = key.as_bytes();
        let hashed = key
            .iter()
            .position(|&byte| byte == b'{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                match rest.iter().position(|&byte| byte == b'}') {
                    Some(0) | None => None,
                    Some(close) => Some(&rest[..close]),
                }
            })
            .unwrap_or(key);
        crc16(hashed) % SLOTS
    }

    /// The port of the master that owns the slot of `key` now, as the first live node that answers
    /// sees it.
    ///
    /// # Panics
    ///
    /// If no live node answers `CLUSTER SLOTS`, or the slot is not assigned.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = Self::slot_of(key);
        owner(&self.slot_map(), slot)
            .unwrap_or_else(|| panic!("slot {slot} of key {key:?} is not assigned to any node"))
    }

    /// The ports of the live nodes that replicate `master` now (as their own `INFO replication`
    /// says), sorted.
    ///
    /// # Panics
    ///
    /// If a live node does not answer `INFO replication`.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        let mut replicas: Vec<u16> = self
            .live_ports()
            .into_iter()
            .filter(|&port| match role(port) {
                Ok(Role::Replica { master: of, .. }) => of == master,
                Ok(Role::Master) => false,
                Err(err) => panic!("replicas_of({master}): {err}; {}", self.log_of(port)),
            })
            .collect();
        replicas.sort_unstable();
        replicas
    }

    /// A new synchronous connection to the node on `port` (connect timeout 5 s, no read timeout, so
    /// blocking commands work). It does not follow `MOVED` or `ASK`: use a cluster client for that.
    ///
    /// # Panics
    ///
    /// If `port` is not a node of this cluster, or the node cannot be reached (e.g. after
    /// [`RedisCluster::kill`]).
    pub fn connection(&self, port: u16) -> redis::Connection {
        let node = self.node(port);
        client(node.port)
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .unwrap_or_else(|err| panic!("connect to cluster node 127.0.0.1:{port}: {err}"))
    }

    /// Kills the node on `port` with SIGKILL and waits for it to exit. Does nothing if it is already
    /// killed. Its port, directory and `nodes.conf` are kept for [`RedisCluster::restart`].
    ///
    /// # Panics
    ///
    /// If `port` is not a node of this cluster, or the process cannot be waited for.
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port)
            .stop()
            .unwrap_or_else(|err| panic!("kill cluster node {port} and wait for it: {err}"));
    }

    /// Starts the node on `port` again, with the same ports and directory, and waits until it answers
    /// `PING` and the cluster is settled again with it. Kills it first if it still runs.
    ///
    /// Its `nodes.conf` brings it back into the cluster under its old node id: as a replica of the
    /// new master if it was a master that was failed over meanwhile, as the (empty) master of its
    /// slots if it was not.
    ///
    /// # Panics
    ///
    /// If `port` is not a node of this cluster, if the node exits early (most likely another process
    /// took one of its ports while it was down) or does not answer within 10 s, or if the cluster
    /// does not settle within 30 s. The messages quote the tail of the node's log.
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).restart();
        self.wait_settled(&format!("the restarted node {port} is back"), |_| Ok(()));
    }

    /// Waits, after [`kill`](RedisCluster::kill) of the master on `dead`, until a replica of it took
    /// over all the slots `dead` owned when it died (as its `nodes.conf` says) and the cluster is
    /// settled; returns the new master's port.
    ///
    /// # Panics
    ///
    /// If `dead` is not a killed node of this cluster, if it owned no slots, or if no replica took
    /// over within 30 s.
    pub fn wait_for_failover(&self, dead: u16) -> u16 {
        let node = self.node(dead);
        assert!(
            node.child.is_none(),
            "wait_for_failover({dead}): node {dead} is not killed"
        );
        let owned = node.slots_owned_at_death();
        let Some(&first) = owned.first() else {
            panic!(
                "wait_for_failover({dead}): node {dead} owned no slots when it was killed (was it \
                 a replica?)"
            )
        };
        let new = self.wait_settled(
            &format!("a replica took over the slots of the killed master {dead}"),
            |map| {
                let new = owner(map, first).ok_or(format!("slot {first} is not assigned"))?;
                if new == dead {
                    return Err(format!(
                        "slot {first} is still owned by the killed node {dead}"
                    ));
                }
                match owned.iter().find(|&&slot| owner(map, slot) != Some(new)) {
                    Some(slot) => Err(format!(
                        "slot {slot} is not owned by {new}, slot {first} is"
                    )),
                    None => Ok(new),
                }
            },
        );
        self.record_election(new, dead);
        new
    }

    /// Sends `CLUSTER FAILOVER` (a graceful manual failover: the master stops accepting writes until
    /// the replica caught up, so nothing is lost) to the replica on `replica`, and waits until that
    /// node is the master of the slots, its old master is its replica with the link up, and the
    /// cluster is settled. Waits until the cluster is settled before, too: a master ignores the
    /// request of a replica it does not know as its own yet, and the failover would time out. And if
    /// `replica` won an election less than 4.5 s ago, or its master was replaced in one less than
    /// 2.5 s ago (as seen through this fixture), waits until then: Redis 7.0 would not hold a proper
    /// election that soon.
    ///
    /// # Panics
    ///
    /// If `replica` is not a live replica of a live master of this cluster, if `CLUSTER FAILOVER` is
    /// refused, or if the cluster does not settle, before or after, within 30 s.
    pub fn failover(&self, replica: u16) {
        self.wait_settled(
            &format!("the cluster is settled before the failover to {replica}"),
            |_| Ok(()),
        );
        let old = match role(self.live_node(replica).port) {
            Ok(Role::Replica { master, .. }) if self.is_live(master) => master,
            Ok(Role::Replica { master, .. }) => panic!(
                "failover({replica}): its master {master} is not live; kill it and use \
                 wait_for_failover instead"
            ),
            Ok(Role::Master) => panic!("failover({replica}): node {replica} is not a replica"),
            Err(err) => panic!("failover({replica}): {err}; {}", self.log_of(replica)),
        };
        self.wait_until_electable(replica, old);
        let () = self.command(replica, redis::cmd("CLUSTER").arg("FAILOVER"));
        self.wait_settled(
            &format!("replica {replica} took over from master {old}"),
            |map| {
                if masters_in(map).contains(&old) || !masters_in(map).contains(&replica) {
                    return Err(format!("slot map: {}", describe(map)));
                }
                match role(old)? {
                    Role::Replica {
                        master,
                        link_up: true,
                    } if master == replica => Ok(()),
                    other => Err(format!("the old master {old} is {other:?}")),
                }
            },
        );
        self.record_election(replica, old);
    }

    /// Moves `slot` with its keys to the master on `to`, while clients keep using it: `CLUSTER SETSLOT
    /// IMPORTING` on `to`, `MIGRATING` on the owner, `MIGRATE` of the keys in batches until the owner
    /// has none left (clients that miss a key there get `ASK` and write to `to`), then `CLUSTER
    /// SETSLOT NODE` on `to`, the old owner and every other live master; then waits until every live
    /// node sees `to` as the owner and the cluster is settled. Does nothing but wait if `to` already
    /// owns the slot.
    ///
    /// # Panics
    ///
    /// If `slot` is not below 16384, if `to` is not a live master of this cluster, if the slot's owner
    /// is not live, if a command of the move fails, or if the cluster does not settle within 30 s.
    pub fn move_slot(&self, slot: u16, to: u16) {
        assert!(slot < SLOTS, "move_slot: there is no slot {slot}");
        match role(self.live_node(to).port) {
            Ok(Role::Master) => {}
            Ok(replica) => {
                panic!("move_slot({slot}, {to}): node {to} is not a master: {replica:?}")
            }
            Err(err) => panic!("move_slot({slot}, {to}): {err}; {}", self.log_of(to)),
        }
        let from = owner(&self.slot_map(), slot)
            .unwrap_or_else(|| panic!("move_slot({slot}, {to}): slot {slot} is not assigned"));
        let what = format!("every node sees slot {slot} on {to}");
        if from != to {
            assert!(
                self.is_live(from),
                "move_slot({slot}, {to}): slot {slot} is owned by the killed node {from}"
            );
            self.migrate(slot, from, to);
        }
        self.wait_settled(&what, |map| match owner(map, slot) {
            Some(port) if port == to => Ok(()),
            other => Err(format!("slot {slot} is owned by {other:?}")),
        });
    }

    /// Waits until the cluster is settled (see the module docs).
    ///
    /// # Panics
    ///
    /// If it does not settle within 30 s; the message says what was last seen and quotes the tails of
    /// every node's log.
    pub fn wait_ok(&self) {
        self.wait_settled("the cluster is settled", |_| Ok(()));
    }

    /// Notes that `winner` just took over from `replaced`.
    fn record_election(&self, winner: u16, replaced: u16) {
        self.elections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Election {
                winner,
                replaced,
                at: Instant::now(),
            });
    }

    /// Sleeps until `replica` can hold a proper election to replace `master`: [`ELECTION_RETRY`]
    /// after it last won one, [`VOTE_COOLDOWN`] after `master` was last replaced.
    fn wait_until_electable(&self, replica: u16, master: u16) {
        let ready = self
            .elections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|election| {
                if election.winner == replica {
                    Some(election.at + ELECTION_RETRY)
                } else if election.replaced == master {
                    Some(election.at + VOTE_COOLDOWN)
                } else {
                    None
                }
            })
            .max();
        if let Some(ready) = ready {
            thread::sleep(ready.saturating_duration_since(Instant::now()));
        }
    }

    /// Runs `redis-cli --cluster create` (`valkey-cli` on Valkey) over all nodes.
    fn create(&self) {
        let cli = self.engine.cli_program();
        let program = self.engine.cli_binary();
        let mut command = Command::new(&program);
        command.args(["--cluster", "create"]);
        for node in &self.nodes {
            command.arg(format!("127.0.0.1:{}", node.port));
        }
        command
            .arg("--cluster-replicas")
            .arg(REPLICAS_PER_MASTER.to_string())
            .arg("--cluster-yes");
        // A file rather than a pipe: nothing has to read while the command runs.
        let mut output =
            tempfile::tempfile().expect("create a temporary file for the cli's output");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the cli's output file"))
            .stderr(output.try_clone().expect("clone the cli's output file"))
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "{} (the cluster is created with {cli} --cluster create)",
                    self.engine.spawn_failed(&program, &err)
                )
            });
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let status = loop {
            let status = child
                .try_wait()
                .unwrap_or_else(|err| panic!("read the status of {cli}: {err}"));
            if let Some(status) = status {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(SETTLE_INTERVAL);
        };
        if status.is_some_and(|status| status.success()) {
            return;
        }
        let outcome = match status {
            Some(status) => format!("exited with {status}"),
            None => format!("did not finish within {SETTLE_TIMEOUT:?}"),
        };
        panic!(
            "{cli} --cluster create {outcome} ({} cluster); its output:\n{}\n{}",
            self.engine,
            read_all(&mut output),
            self.logs()
        )
    }

    /// The resharding part of [`RedisCluster::move_slot`]: from `from` to `to`, both live masters.
    fn migrate(&self, slot: u16, from: u16, to: u16) {
        let from_id: String = self.command(from, redis::cmd("CLUSTER").arg("MYID"));
        let to_id: String = self.command(to, redis::cmd("CLUSTER").arg("MYID"));
        let () = self.command(
            to,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(&from_id),
        );
        let () = self.command(
            from,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(&to_id),
        );
        // While the slot is MIGRATING, the owner answers a command for a key it no longer has with
        // ASK, so no new key appears on it: the loop ends.
        loop {
            let keys: Vec<Vec<u8>> = self.command(
                from,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(MIGRATE_BATCH),
            );
            if keys.is_empty() {
                break;
            }
            // "OK", or "NOKEY" if all of them expired or were deleted since GETKEYSINSLOT.
            let _: redis::Value = self.command(
                from,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg("")
                    .arg(0)
                    .arg(MIGRATE_TIMEOUT_MS)
                    .arg("KEYS")
                    .arg(&keys),
            );
        }
        // The new owner first, so that from now on a client redirected to it is served there.
        let others: Vec<u16> = self
            .live_ports()
            .into_iter()
            .filter(|&port| port != from && port != to)
            .filter(|&port| role(port) == Ok(Role::Master))
            .collect();
        for port in [to, from].into_iter().chain(others) {
            let () = self.command(
                port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id),
            );
        }
    }

    /// Polls until the cluster is settled and `done` accepts the agreed slot map, and returns what
    /// `done` returned. Follows the deadline rule of [`wait_until`](crate::wait_until): one more check
    /// after the deadline.
    fn wait_settled<T>(
        &self,
        what: &str,
        mut done: impl FnMut(&[SlotRange]) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let expired = Instant::now() >= deadline;
            let last = match self.settled().and_then(|map| done(&map)) {
                Ok(value) => return value,
                Err(err) => err,
            };
            if expired {
                panic!(
                    "timed out after {SETTLE_TIMEOUT:?} waiting until {what} (last check: {last}); \
                     {}",
                    self.logs()
                );
            }
            thread::sleep(SETTLE_INTERVAL);
        }
    }

    /// One check whether the cluster is settled; returns the slot map all live nodes agree on, or
    /// what is not settled yet.
    fn settled(&self) -> Result<Vec<SlotRange>, String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        let mut replicas = Vec::new();
        let mut views = Vec::new();
        for &port in &live {
            let mut conn = query_connection(port)?;
            let info: String = query(&mut conn, port, redis::cmd("CLUSTER").arg("INFO"))?;
            match info_field(&info, "cluster_state") {
                Some("ok") => {}
                state => return Err(format!("node {port} says cluster_state:{state:?}")),
            }
            let map = slot_map_of(&mut conn, port)?;
            match &agreed {
                None => agreed = Some((port, map)),
                Some((first, first_map)) if *first_map != map => {
                    return Err(format!(
                        "node {port} sees the slot map {} but node {first} sees {}",
                        describe(&map),
                        describe(first_map)
                    ));
                }
                Some(_) => {}
            }
            let nodes: String = query(&mut conn, port, redis::cmd("CLUSTER").arg("NODES"))?;
            views.push((port, nodes));
            match role_of(&mut conn, port)? {
                Role::Replica { master, link_up } if live.contains(&master) => {
                    if !link_up {
                        return Err(format!(
                            "replica {port}: its link to master {master} is down"
                        ));
                    }
                    replicas.push((port, master));
                }
                _ => {}
            }
        }
        let (_, map) = agreed.ok_or_else(|| "every node is killed".to_owned())?;
        // A master ignores a failover request from a node it does not know as its replica, and the
        // other masters do not vote for it.
        for (replica, master) in replicas {
            let master_id = views
                .iter()
                .find(|(port, _)| *port == master)
                .and_then(|(_, nodes)| myself(nodes))
                .map(|myself| myself.id.to_owned())
                .ok_or_else(|| format!("node {master}: CLUSTER NODES has no myself line"))?;
            if let Some((port, nodes)) = views
                .iter()
                .find(|(_, nodes)| !lists_replica(nodes, replica, &master_id))
            {
                return Err(format!(
                    "node {port} does not list {replica} as a replica of {master} yet:\n{nodes}"
                ));
            }
        }
        Ok(map)
    }

    /// The slot map as the first live node that answers sees it.
    fn slot_map(&self) -> Vec<SlotRange> {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match query_connection(port).and_then(|mut conn| slot_map_of(&mut conn, port)) {
                Ok(map) => return map,
                Err(err) => errors.push(err),
            }
        }
        panic!(
            "no live cluster node answered CLUSTER SLOTS ({}); {}",
            errors.join("; "),
            self.logs()
        )
    }

    /// Runs one fixture command on the node on `port`; panics, quoting its log, if it fails.
    fn command<T: redis::FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> T {
        query_connection(port)
            .and_then(|mut conn| query(&mut conn, port, cmd))
            .unwrap_or_else(|err| panic!("{err}; {}", self.log_of(port)))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    fn is_live(&self, port: u16) -> bool {
        self.nodes
            .iter()
            .any(|node| node.port == port && node.child.is_some())
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("{}", self.not_a_node(port)))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        let message = self.not_a_node(port);
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("{message}"))
    }

    fn live_node(&self, port: u16) -> &Node {
        let node = self.node(port);
        assert!(node.child.is_some(), "cluster node {port} is killed");
        node
    }

    fn not_a_node(&self, port: u16) -> String {
        format!(
            "port {port} is not a node of this cluster (its nodes: {:?})",
            self.ports()
        )
    }

    /// The tail of one node's log, for panic messages.
    fn log_of(&self, port: u16) -> String {
        match self.nodes.iter().find(|node| node.port == port) {
            Some(node) => format!("node {port}: {}", log_tail(self.engine, node.dir.path())),
            None => self.not_a_node(port),
        }
    }

    /// The tails of every node's log, for panic messages.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for node in &self.nodes {
            let state = if node.child.is_some() {
                ""
            } else {
                " (killed)"
            };
            let _ = write!(
                logs,
                "\nnode {}{state}: {}",
                node.port,
                log_tail(self.engine, node.dir.path())
            );
        }
        logs
    }
}

// === impl Node ===

impl Node {
    /// Launches a node on free ports, retrying on new ports when it exits early.
    fn start(engine: Engine, tls: Option<ClusterTls>) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("sse-testkit-redis-cluster-")
            .tempdir()
            .expect("create a temporary directory for a cluster node");
        let mut early_exits = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut others = std::iter::repeat_with(free_port).filter(|&other| other != port);
            let bus_port = others.next().expect("free_port keeps returning ports");
            let tls = tls.clone().map(|files| {
                let tls_port = others
                    .find(|&other| other != bus_port)
                    .expect("free_port keeps returning ports");
                (tls_port, files)
            });
            let args = node_args(dir.path(), bus_port, tls.as_ref());
            match launch(engine, port, dir.path(), &args) {
                Ok(child) => {
                    return Node {
                        engine,
                        port,
                        bus_port,
                        tls,
                        child: Some(child),
                        dir,
                    };
                }
                // Another process took a port between `free_port` and the bind: try other ones,
                // without the node id and ports a half-started node may have written.
                Err(LaunchError::Exited(status)) => {
                    early_exits.push(format!("ports {port} and {bus_port}: {status}"));
                    let _ = fs::remove_file(dir.path().join(NODES_CONF));
                }
                Err(LaunchError::Timeout(last)) => panic!(
                    "{engine} cluster node on port {port} did not answer PING within \
                     {READY_TIMEOUT:?} (last attempt: {last}); {}",
                    log_tail(engine, dir.path())
                ),
            }
        }
        panic!(
            "{engine} cluster node exited before answering PING {START_ATTEMPTS} times ({}); {}",
            early_exits.join(", "),
            log_tail(engine, dir.path())
        )
    }

    /// Launches the node again on its ports; kills it first if it runs.
    fn restart(&mut self) {
        self.stop()
            .unwrap_or_else(|err| panic!("kill cluster node {} and wait for it: {err}", self.port));
        let (engine, port, dir) = (self.engine, self.port, self.dir.path());
        match launch(
            engine,
            port,
            dir,
            &node_args(dir, self.bus_port, self.tls.as_ref()),
        ) {
            Ok(child) => self.child = Some(child),
            Err(LaunchError::Exited(status)) => panic!(
                "{engine} cluster node exited on restart on port {port} (bus port {}) with \
                 {status} (did another process take a port while it was down?); {}",
                self.bus_port,
                log_tail(engine, dir)
            ),
            Err(LaunchError::Timeout(last)) => panic!(
                "restarted {engine} cluster node on port {port} did not answer PING within \
                 {READY_TIMEOUT:?} (last attempt: {last}); {}",
                log_tail(engine, dir)
            ),
        }
    }

    /// The slots this node owned as its own `nodes.conf` last recorded them (the `myself` line),
    /// ascending.
    fn slots_owned_at_death(&self) -> Vec<u16> {
        let path = self.dir.path().join(NODES_CONF);
        let conf = fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        let myself = myself(&conf)
            .unwrap_or_else(|| panic!("{} has no myself line:\n{conf}", path.display()));
        let mut slots = Vec::new();
        // A migration in progress ("[slot->-id]") assigns nothing: it does not parse.
        for field in myself.slots {
            let range = field.split_once('-').unwrap_or((field, field));
            if let (Ok(start), Ok(end)) = (range.0.parse::<u16>(), range.1.parse::<u16>()) {
                slots.extend(start..=end);
            }
        }
        slots
    }

    /// SIGKILLs and reaps the child if there is one.
    fn stop(&mut self) -> std::io::Result<()> {
        if let Some(mut child) = self.child.take() {
            // Fails only if the child already exited; `wait` below reaps it either way.
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // No panic here: this may run while a test is already unwinding.
        let _ = self.stop();
    }
}

// === talking to nodes ===

/// The server arguments of a cluster node, beyond what [`launch`] passes to every server.
fn node_args(dir: &Path, bus_port: u16, tls: Option<&(u16, ClusterTls)>) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-node-timeout",
        &NODE_TIMEOUT_MS.to_string(),
        "--cluster-port",
        &bus_port.to_string(),
        // A replica's full sync starts at once, not after the default 5 s wait for more replicas.
        "--repl-diskless-sync-delay",
        "0",
        "--cluster-config-file",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(dir.join(NODES_CONF).into_os_string());
    if let Some((tls_port, files)) = tls {
        for (flag, value) in [
            ("--tls-port", OsString::from(tls_port.to_string())),
            ("--tls-cert-file", files.cert.clone().into()),
            ("--tls-key-file", files.key.clone().into()),
            ("--tls-ca-cert-file", files.ca.clone().into()),
            ("--tls-cluster", "yes".into()),
            ("--tls-replication", "yes".into()),
        ] {
            args.extend([flag.into(), value]);
        }
    }
    args
}

fn client(port: u16) -> redis::Client {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("redis://127.0.0.1:PORT/ is a valid redis URL")
}

/// A connection for the fixture's own commands, with [`QUERY_TIMEOUT`] on connect, read and write.
fn query_connection(port: u16) -> Result<redis::Connection, String> {
    let conn = client(port)
        .get_connection_with_timeout(QUERY_TIMEOUT)
        .map_err(|err| format!("connect to cluster node {port}: {err}"))?;
    conn.set_read_timeout(Some(QUERY_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(QUERY_TIMEOUT)))
        .map_err(|err| format!("set timeouts on a connection to cluster node {port}: {err}"))?;
    Ok(conn)
}

fn query<T: redis::FromRedisValue>(
    conn: &mut redis::Connection,
    port: u16,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    cmd.query(conn).map_err(|err| {
        let args: Vec<String> = cmd
            .args_iter()
            .take(4)
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => "?".to_owned(),
            })
            .collect();
        format!("node {port}: {} ...: {err}", args.join(" "))
    })
}

/// What the node on `port` says about itself in `INFO replication`.
fn role(port: u16) -> Result<Role, String> {
    role_of(&mut query_connection(port)?, port)
}

fn role_of(conn: &mut redis::Connection, port: u16) -> Result<Role, String> {
    let info: String = query(conn, port, redis::cmd("INFO").arg("replication"))?;
    match info_field(&info, "role") {
        Some("master") => Ok(Role::Master),
        Some("slave") => {
            let master = info_field(&info, "master_port")
                .and_then(|port| port.parse().ok())
                .ok_or_else(|| format!("node {port}: INFO replication has no master_port"))?;
            let link_up = info_field(&info, "master_link_status") == Some("up");
            Ok(Role::Replica { master, link_up })
        }
        other => Err(format!("node {port}: INFO replication says role:{other:?}")),
    }
}

/// The value of `field` in an `INFO` or `CLUSTER INFO` answer.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The node's `CLUSTER SLOTS`, reduced to ranges and master ports, sorted.
fn slot_map_of(conn: &mut redis::Connection, port: u16) -> Result<Vec<SlotRange>, String> {
    let answer: redis::Value = query(conn, port, redis::cmd("CLUSTER").arg("SLOTS"))?;
    let malformed = |what: &redis::Value| format!("node {port}: CLUSTER SLOTS answered {what:?}");
    let redis::Value::Array(entries) = &answer else {
        return Err(malformed(&answer));
    };
    let mut map = entries
        .iter()
        .map(|entry| {
            // [start, end, master, replicas...], each node as [ip, port, id, ...]
            let redis::Value::Array(fields) = entry else {
                return Err(malformed(entry));
            };
            let number = |value: &redis::Value| match value {
                redis::Value::Int(n) => u16::try_from(*n).map_err(|_| malformed(entry)),
                _ => Err(malformed(entry)),
            };
            let [start, end, redis::Value::Array(master), ..] = fields.as_slice() else {
                return Err(malformed(entry));
            };
            let [_, port, ..] = master.as_slice() else {
                return Err(malformed(entry));
            };
            Ok(SlotRange {
                start: number(start)?,
                end: number(end)?,
                master: number(port)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    map.sort_unstable();
    Ok(map)
}

/// The master that owns `slot` in `map`.
fn owner(map: &[SlotRange], slot: u16) -> Option<u16> {
    map.iter()
        .find(|range| (range.start..=range.end).contains(&slot))
        .map(|range| range.master)
}

/// The masters that own slots in `map`, sorted.
fn masters_in(map: &[SlotRange]) -> Vec<u16> {
    let mut masters: Vec<u16> = map.iter().map(|range| range.master).collect();
    masters.sort_unstable();
    masters.dedup();
    masters
}

/// `map` as `0-5460@P1 5461-10922@P2 ...`, for messages.
fn describe(map: &[SlotRange]) -> String {
    map.iter()
        .map(|range| format!("{}-{}@{}", range.start, range.end, range.master))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses one line of `CLUSTER NODES` or `nodes.conf`:
/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`.
/// `None` for other lines (the `vars` line of `nodes.conf`).
fn node_line(line: &str) -> Option<NodeLine<'_>> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [
        id,
        address,
        flags,
        master_id,
        _ping,
        _pong,
        _epoch,
        _link,
        slots @ ..,
    ] = &fields[..]
    else {
        return None;
    };
    let (_, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
    Some(NodeLine {
        id,
        port: port.parse().ok()?,
        flags: flags.split(',').collect(),
        master_id,
        slots: slots.to_vec(),
    })
}

/// The `myself` line of a `CLUSTER NODES` answer or a `nodes.conf`.
fn myself(nodes: &str) -> Option<NodeLine<'_>> {
    nodes
        .lines()
        .filter_map(node_line)
        .find(|node| node.flags.contains(&"myself"))
}

/// Whether a `CLUSTER NODES` answer lists the node on `replica` as a replica of the node `master_id`.
fn lists_replica(nodes: &str, replica: u16, master_id: &str) -> bool {
    nodes.lines().filter_map(node_line).any(|node| {
        node.port == replica && node.flags.contains(&"slave") && node.master_id == master_id
    })
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum of Redis Cluster key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

fn read_all(file: &mut File) -> String {
    let mut bytes = Vec::new();
    match file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
    {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<could not read it: {err}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value of CRC16/XMODEM, and the reference key of the Redis Cluster specification.
    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    /// The hash tag rules of the Redis Cluster specification.
    #[test]
    fn hash_tags() {
        let slot = RedisCluster::slot_of;
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("{user1000}.followers"), slot("user1000"));
        assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
        assert_eq!(slot("a{b"), crc16(b"a{b") % SLOTS);
        assert_eq!(slot("sse:{orders}:stream"), slot("orders"));
    }

    #[test]
    fn the_owner_of_a_slot_is_the_range_holding_it() {
        let map = [
            SlotRange {
                start: 0,
                end: 99,
                master: 1,
            },
            SlotRange {
                start: 100,
                end: 100,
                master: 2,
            },
        ];
        assert_eq!(owner(&map, 0), Some(1));
        assert_eq!(owner(&map, 99), Some(1));
        assert_eq!(owner(&map, 100), Some(2));
        assert_eq!(owner(&map, 101), None);
        assert_eq!(masters_in(&map), [1, 2]);
    }

    /// A `CLUSTER NODES` answer of Redis 7.0, as the master on 30001 sees the cluster.
    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922 [5462->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 7000
vars currentEpoch 6 lastVoteEpoch 0
";

    #[test]
    fn node_lines_parse_and_name_the_replicas() {
        let me = myself(NODES).unwrap();
        assert_eq!(me.port, 30001);
        assert_eq!(me.master_id, "-");
        assert_eq!(me.slots, ["0-5460", "7000"]);
        assert!(lists_replica(NODES, 30004, me.id));
        assert!(
            !lists_replica(NODES, 30005, me.id),
            "a replica of another master"
        );
        assert!(!lists_replica(NODES, 30002, me.id), "a master");
        let other = "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1";
        assert!(lists_replica(NODES, 30005, other));
        let migrating = NODES.lines().filter_map(node_line).nth(1).unwrap();
        assert_eq!(migrating.port, 30002);
        assert_eq!(migrating.slots.len(), 2);
    }
}
