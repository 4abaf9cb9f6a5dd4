//! Tests of the test kit itself: `RedisServer` really owns, kills and restarts its `redis-server`
//! (or `valkey-server`), AOF data survives a restart and non-AOF data does not, and `Drop` leaves no
//! process or directory.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use sse_testkit::{Engine, RedisServer, free_port};

/// The pid and working directory of the server behind `conn`, as Redis reports them.
fn pid_and_dir(conn: &mut redis::Connection) -> (u32, String) {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(conn)
        .expect("INFO server");
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .expect("INFO server has a numeric process_id");
    let (_, dir): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("dir")
        .query(conn)
        .expect("CONFIG GET dir");
    (pid, dir)
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).expect("GET")
}

fn set(conn: &mut redis::Connection, key: &str, value: &str) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(conn)
        .expect("SET");
}

#[test]
fn without_aof_a_restart_loses_the_data() {
    let mut server = RedisServer::start();
    assert!(server.is_running());
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    set(&mut server.connection(), "k", "v");
    assert_eq!(get(&mut server.connection(), "k").as_deref(), Some("v"));

    server.kill();
    assert!(!server.is_running());
    let refused = server
        .client()
        .get_connection_with_timeout(Duration::from_secs(1));
    assert!(refused.is_err(), "connected to a killed server");

    let port = server.port();
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(get(&mut server.connection(), "k"), None);
}

#[test]
fn with_aof_the_data_survives_kill_and_restart() {
    let mut server = RedisServer::start_with_aof();
    let mut conn = server.connection();
    set(&mut conn, "k", "v");
    for i in 0..100 {
        let () = redis::cmd("XADD")
            .arg("stream")
            .arg("*")
            .arg("n")
            .arg(i)
            .query(&mut conn)
            .unwrap();
    }
    drop(conn);

    server.kill();
    server.restart();
    let mut conn = server.connection();
    assert_eq!(get(&mut conn, "k").as_deref(), Some("v"));
    let len: u64 = redis::cmd("XLEN").arg("stream").query(&mut conn).unwrap();
    assert_eq!(len, 100);
}

#[test]
fn restart_of_a_running_server_kills_it_first() {
    let mut server = RedisServer::start();
    let (old_pid, _) = pid_and_dir(&mut server.connection());
    server.restart();
    let (new_pid, _) = pid_and_dir(&mut server.connection());
    assert_ne!(old_pid, new_pid);
    assert!(!Path::new(&format!("/proc/{old_pid}")).exists());
}

#[test]
fn drop_kills_the_process_and_removes_the_directory() {
    let server = RedisServer::start_with_aof();
    let (pid, dir) = pid_and_dir(&mut server.connection());
    let proc_dir = format!("/proc/{pid}");
    assert!(Path::new(&proc_dir).exists());
    let log = match Engine::from_env() {
        Engine::Redis => "redis.log",
        Engine::Valkey => "valkey.log",
    };
    assert!(Path::new(&dir).join(log).exists(), "no {log} in {dir}");

    drop(server);
    assert!(
        !Path::new(&proc_dir).exists(),
        "redis-server {pid} outlived its RedisServer"
    );
    assert!(!Path::new(&dir).exists(), "{dir} outlived its RedisServer");
}

#[test]
fn two_servers_get_different_ports_and_data() {
    let first = RedisServer::start();
    let second = RedisServer::start();
    assert_ne!(first.port(), second.port());
    set(&mut first.connection(), "k", "first");
    assert_eq!(get(&mut second.connection(), "k"), None);
}

/// What `free_port` promises: a port that can be bound at once, and, while the caller holds
/// it, not the port a second call hands out.
#[test]
fn free_port_can_be_bound_and_is_not_handed_out_again_while_held() {
    let port = free_port();
    let _held = TcpListener::bind(("127.0.0.1", port)).expect("the port free_port returned binds");
    let next = free_port();
    assert_ne!(next, port, "free_port handed out a port that is bound");
    TcpListener::bind(("127.0.0.1", next)).expect("the second port binds too");
}

#[test]
#[should_panic(expected = "did another process take the port")]
fn restart_panics_when_the_port_was_taken_meanwhile() {
    let mut server = RedisServer::start();
    server.kill();
    let _squatter = TcpListener::bind(("127.0.0.1", server.port())).unwrap();
    server.restart();
}
