//! Tests of the test kit itself: `RedisCluster` really is a Redis Cluster of three masters with one
//! replica each, whose keys spread over the masters, and it fails over, reshards under writes and
//! brings killed nodes back as the gateway's cluster tests need.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use sse_testkit::RedisCluster;

/// Pause between two writes of the background publisher in the resharding test.
const WRITE_INTERVAL: Duration = Duration::from_millis(2);
/// How many string keys the resharding test puts in the moved slot besides the stream: ten
/// `MIGRATE` batches, so the move loops and lasts long enough for the publisher to write during it.
const KEYS_IN_SLOT: usize = 1000;

fn cluster_connection(cluster: &RedisCluster) -> ClusterConnection {
    ClusterClient::builder(cluster.seeds().split(',').map(str::to_owned))
        .response_timeout(Duration::from_secs(5))
        .build()
        .expect("the seed URLs are valid")
        .get_connection()
        .expect("connect to the cluster")
}

fn get(conn: &mut impl redis::ConnectionLike, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).expect("GET")
}

fn set(conn: &mut impl redis::ConnectionLike, key: &str, value: &str) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(conn)
        .expect("SET");
}

fn pid(conn: &mut redis::Connection) -> u32 {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(conn)
        .expect("INFO server");
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .expect("INFO server has a numeric process_id")
}

/// Hash tags whose slots are on `count` different masters, one per master.
fn tags_on_different_masters(cluster: &RedisCluster, count: usize) -> Vec<(String, u16)> {
    let mut found: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let tag = format!("t{i}");
        let master = cluster.master_of(&format!("{{{tag}}}"));
        if found.iter().all(|(_, seen)| *seen != master) {
            found.push((tag, master));
        }
        if found.len() == count {
            break;
        }
        assert!(i < 1000, "no {count} tags on different masters: {found:?}");
    }
    found
}

#[test]
fn start_makes_three_masters_with_one_replica_each_and_spreads_the_keys() {
    let cluster = RedisCluster::start();
    let ports = cluster.ports();
    assert_eq!(ports.len(), 6);

    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    assert!(masters.is_sorted());
    let mut nodes = masters.clone();
    for &master in &masters {
        let replicas = cluster.replicas_of(master);
        assert_eq!(replicas.len(), 1, "replicas of {master}: {replicas:?}");
        nodes.extend(replicas);
    }
    nodes.sort_unstable();
    let mut all = ports.clone();
    all.sort_unstable();
    assert_eq!(nodes, all, "every node is a master or the replica of one");

    let seeds: Vec<String> = masters
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}"))
        .collect();
    assert_eq!(cluster.seeds(), seeds.join(","));

    let tags = tags_on_different_masters(&cluster, 3);
    let mut conn = cluster_connection(&cluster);
    for (tag, master) in &tags {
        let key = format!("sse:{{{tag}}}:last");
        set(&mut conn, &key, tag);
        assert_eq!(get(&mut conn, &key).as_deref(), Some(tag.as_str()));
        // Without a redirect: the key really is on the master `master_of` names.
        assert_eq!(cluster.master_of(&key), *master);
        assert_eq!(
            get(&mut cluster.connection(*master), &key).as_deref(),
            Some(tag.as_str())
        );
    }
}

#[test]
fn slot_of_agrees_with_cluster_keyslot() {
    let cluster = RedisCluster::start();
    let mut conn = cluster.connection(cluster.ports()[0]);
    let keys = [
        "sse:{orders}:stream",
        "orders",
        "sse:{orders}:last",
        "foo",
        "bar",
        "123456789",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "a{b",
        "}{",
        "{}",
        "",
        "ключ:{тег}",
    ];
    for key in keys {
        let expected: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT");
        assert_eq!(RedisCluster::slot_of(key), expected, "slot of {key:?}");
    }
}

#[test]
fn a_killed_master_is_replaced_by_its_replica_and_rejoins_as_a_replica() {
    let mut cluster = RedisCluster::start();
    let key = "sse:{failover}:last";
    let master = cluster.master_of(key);
    let replicas = cluster.replicas_of(master);
    // Replication is asynchronous: make sure the replica has the write before the master dies.
    // WAIT counts the replicas that have this connection's writes, so both go on one connection.
    let mut conn = cluster.connection(master);
    set(&mut conn, key, "before");
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut conn)
        .expect("WAIT");
    assert_eq!(acked, 1);

    cluster.kill(master);
    let started = Instant::now();
    let new = cluster.wait_for_failover(master);
    println!("failover took {:?}", started.elapsed());
    assert!(
        replicas.contains(&new),
        "{new} took over, not a replica of {master} ({replicas:?})"
    );
    assert_eq!(cluster.master_of(key), new);
    assert!(!cluster.masters().contains(&master));
    assert!(!cluster.seeds().contains(&master.to_string()));
    let mut conn = cluster_connection(&cluster);
    assert_eq!(get(&mut conn, key).as_deref(), Some("before"));
    set(&mut conn, key, "after");
    assert_eq!(get(&mut conn, key).as_deref(), Some("after"));

    cluster.restart(master);
    assert_eq!(cluster.replicas_of(new), [master]);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.master_of(key), new);
    assert_eq!(
        get(&mut cluster_connection(&cluster), key).as_deref(),
        Some("after")
    );
    cluster.wait_ok();
}

#[test]
fn a_manual_failover_promotes_the_replica_and_keeps_the_data() {
    let cluster = RedisCluster::start();
    let key = "sse:{manual}:stream";
    let mut conn = cluster_connection(&cluster);
    for i in 0..100 {
        let _: String = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("n")
            .arg(i)
            .query(&mut conn)
            .expect("XADD");
    }
    let master = cluster.master_of(key);
    let [replica] = cluster.replicas_of(master)[..] else {
        panic!("{master} has not exactly one replica")
    };

    cluster.failover(replica);
    assert_eq!(cluster.master_of(key), replica);
    assert_eq!(cluster.replicas_of(replica), [master]);
    assert!(cluster.replicas_of(master).is_empty());
    let len: usize = redis::cmd("XLEN")
        .arg(key)
        .query(&mut cluster.connection(replica))
        .expect("XLEN on the new master");
    assert_eq!(len, 100);
    let len: usize = redis::cmd("XLEN")
        .arg(key)
        .query(&mut cluster_connection(&cluster))
        .expect("XLEN through a cluster client");
    assert_eq!(len, 100);

    // And back: the old master is a proper replica again.
    cluster.failover(master);
    assert_eq!(cluster.master_of(key), master);
}

/// What the background publisher of the resharding test saw.
#[derive(Debug, Default)]
struct Writes {
    /// The `n` of every XADD that returned an id, in order.
    acked: Vec<u64>,
    /// Errors the publisher retried (the write was then sent again with the same `n`).
    transient: Vec<String>,
    /// The error that stopped the publisher, if any.
    fatal: Option<String>,
}

/// XADDs `n = 0, 1, ...` to `key` every [`WRITE_INTERVAL`] until `stop`, counting acks in `count`.
fn publish(
    mut conn: ClusterConnection,
    key: &str,
    stop: &AtomicBool,
    count: &AtomicUsize,
) -> Writes {
    let mut writes = Writes::default();
    let mut n = 0_u64;
    while !stop.load(Ordering::SeqCst) {
        let result: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("n")
            .arg(n)
            .query(&mut conn);
        match result {
            Ok(_) => {
                writes.acked.push(n);
                count.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            Err(err) if err.is_cluster_error() || err.is_io_error() => {
                writes.transient.push(err.to_string());
            }
            Err(err) => {
                writes.fatal = Some(err.to_string());
                break;
            }
        }
        thread::sleep(WRITE_INTERVAL);
    }
    writes
}

#[test]
fn move_slot_moves_the_keys_while_a_publisher_keeps_writing() {
    let cluster = RedisCluster::start();
    let stream = "sse:{t}:stream";
    let slot = RedisCluster::slot_of(stream);
    let from = cluster.master_of(stream);
    let to = *cluster
        .masters()
        .iter()
        .find(|&&port| port != from)
        .expect("three masters");

    // All on the slot's owner, so one plain pipeline writes them.
    let mut pipe = redis::pipe();
    for i in 0..KEYS_IN_SLOT {
        pipe.set(format!("sse:{{t}}:key:{i}"), i).ignore();
    }
    let () = pipe
        .query(&mut cluster.connection(from))
        .expect("SET the keys of the slot");

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        let conn = cluster_connection(&cluster);
        thread::spawn(move || publish(conn, stream, &stop, &count))
    };
    let wait_for = |acks: usize| {
        sse_testkit::wait_until(
            &format!("the publisher has {acks} acknowledged writes"),
            Duration::from_secs(10),
            || count.load(Ordering::SeqCst) >= acks,
        );
    };
    wait_for(100);
    let before = count.load(Ordering::SeqCst);
    let started = Instant::now();
    cluster.move_slot(slot, to);
    let took = started.elapsed();
    let during = count.load(Ordering::SeqCst) - before;
    wait_for(count.load(Ordering::SeqCst) + 100);
    stop.store(true, Ordering::SeqCst);
    let writes = publisher.join().expect("the publisher thread panicked");
    println!(
        "move_slot took {took:?}; {during} writes were acknowledged during the move, {} in all; \
         transient errors: {:?}",
        writes.acked.len(),
        writes.transient
    );

    assert_eq!(writes.fatal, None, "the publisher failed");
    assert!(during > 0, "no write was acknowledged during the move");
    assert_eq!(cluster.master_of(stream), to);

    // Every acknowledged write is in the stream, once, in order: read on the new owner itself.
    let mut target = cluster.connection(to);
    let entries: Vec<(String, Vec<(String, u64)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut target)
        .expect("XRANGE on the new owner");
    let ns: Vec<u64> = entries
        .iter()
        .map(|(_, fields)| match fields[..] {
            [(ref field, n)] if field == "n" => n,
            _ => panic!("unexpected entry fields {fields:?}"),
        })
        .collect();
    assert_eq!(ns, writes.acked);

    // The other keys moved with their values, and nothing of the slot is left on the old owner.
    for i in 0..KEYS_IN_SLOT {
        let value = get(&mut target, &format!("sse:{{t}}:key:{i}"));
        assert_eq!(value, Some(i.to_string()));
    }
    let count_in = |port: u16| -> usize {
        redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(&mut cluster.connection(port))
            .expect("CLUSTER COUNTKEYSINSLOT")
    };
    assert_eq!(count_in(to), KEYS_IN_SLOT + 1);
    assert_eq!(count_in(from), 0);
}

#[test]
fn drop_kills_every_node_and_removes_the_directories() {
    let mut cluster = RedisCluster::start();
    let mut pids_and_dirs = Vec::new();
    for port in cluster.ports() {
        let mut conn = cluster.connection(port);
        let (_, dir): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("dir")
            .query(&mut conn)
            .expect("CONFIG GET dir");
        assert!(Path::new(&dir).join("nodes.conf").exists());
        pids_and_dirs.push((pid(&mut conn), dir));
    }
    // A killed node's directory goes too.
    let killed = cluster.replicas_of(cluster.masters()[0])[0];
    cluster.kill(killed);

    drop(cluster);
    for (pid, dir) in pids_and_dirs {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "redis-server {pid} outlived its RedisCluster"
        );
        assert!(!Path::new(&dir).exists(), "{dir} outlived its RedisCluster");
    }
}
