//! [`RedisServer`]: a `redis-server` (or `valkey-server`, see [`Engine`]) child process that one
//! test owns, kills and restarts.
//!
//! Guarantees: the server listens on `127.0.0.1` only, on a port free at start, with its working
//! directory and its log (`redis.log`, or `valkey.log` on Valkey) in a fresh temporary directory,
//! and no config file, so nothing leaks between tests or from the machine's own Redis. `start`
//! returns only once *this* process answers `PING` (the `process_id` in `INFO server` is checked, so
//! a server another test started on a recycled port is never mistaken for ours; on Valkey, so is
//! the `valkey_version`, so a `redis-server` is never mistaken for Valkey). `restart` reuses the
//! same port and directory, so with AOF the data written before `kill` is back.
//!
//! Not guaranteed: the port is not held while the server is down, so another process may take it
//! between `kill` and `restart` (the restart then panics and says so). If the test process itself is
//! killed with SIGKILL, `Drop` does not run and the child survives it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Engine, free_port};

/// How long a start or restart may take until the server answers `PING`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect, read and write timeout of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Connect timeout of [`RedisServer::connection`].
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many ports `start` tries when the server exits early (most likely: the port was taken).
pub(crate) const START_ATTEMPTS: usize = 5;
/// How many lines of the server log a panic message quotes.
const LOG_TAIL_LINES: usize = 30;

/// A real `redis-server` on `127.0.0.1`, owned by one test; a `valkey-server` when
/// `SSE_TEST_ENGINE=valkey` (see [`Engine`]).
///
/// Dropping it kills the process (SIGKILL), waits for it and removes its temporary directory.
#[derive(Debug)]
pub struct RedisServer {
    /// `None` while killed. A `Mutex` so that [`RedisServer::is_running`] can reap the child through
    /// `&self`.
    child: Mutex<Option<Child>>,
    port: u16,
    /// What `launch` adds to the command line: persistence, and the test's own arguments.
    args: Vec<OsString>,
    /// Chosen at start; a restart runs the same binary.
    engine: Engine,
    /// Dropped after `Drop::drop` killed the child, so the directory outlives the process.
    dir: TempDir,
}

/// Why a launched server did not become ready.
pub(crate) enum LaunchError {
    /// The process exited before answering, most likely because the port was taken.
    Exited(ExitStatus),
    /// The process still runs but did not answer `PING` in time; holds the last probe's failure.
    Timeout(String),
}

// === impl RedisServer ===

impl RedisServer {
    /// Starts a server with persistence off (`--save "" --appendonly no`): a restart loses all data.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on `PATH` (with `SSE_TEST_ENGINE=valkey`: if no `valkey-server` is
    /// found), or the server does not answer `PING` within 10 s, or exits early on 5 different ports
    /// in a row. The message names the engine and quotes the tail of the server log.
    pub fn start() -> RedisServer {
        Self::launch_with(persistence_args(false))
    }

    /// Starts a server with `--appendonly yes --appendfsync always`: every acknowledged write is in
    /// the AOF, so it survives [`kill`](RedisServer::kill) and [`restart`](RedisServer::restart).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with_aof() -> RedisServer {
        Self::launch_with(persistence_args(true))
    }

    /// Starts a server as [`RedisServer::start`] does, with `args` added to its command line
    /// (for example `--tls-port` and its certificate files: the plain port stays, for the
    /// readiness probe). [`RedisServer::restart`] uses them again.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with_args(args: &[OsString]) -> RedisServer {
        let mut all = persistence_args(false);
        all.extend_from_slice(args);
        Self::launch_with(all)
    }

    fn launch_with(args: Vec<OsString>) -> RedisServer {
        let engine = Engine::from_env();
        let server = engine.server_program();
        let dir = tempfile::Builder::new()
            .prefix("sse-testkit-redis-")
            .tempdir()
            .unwrap_or_else(|err| panic!("create a temporary directory for {server}: {err}"));
        let mut early_exits = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match launch(engine, port, dir.path(), &args) {
                Ok(child) => {
                    return RedisServer {
                        child: Mutex::new(Some(child)),
                        port,
                        args,
                        engine,
                        dir,
                    };
                }
                // Another process took the port between `free_port` and the bind: try another one.
                Err(LaunchError::Exited(status)) => {
                    early_exits.push(format!("port {port}: {status}"));
                }
                Err(LaunchError::Timeout(last)) => panic!(
                    "{server} on port {port} did not answer PING within {READY_TIMEOUT:?} \
                     (last attempt: {last}); {}",
                    log_tail(engine, dir.path())
                ),
            }
        }
        panic!(
            "{server} exited before answering PING {START_ATTEMPTS} times ({}); {}",
            early_exits.join(", "),
            log_tail(engine, dir.path())
        )
    }

    /// The TCP port the server listens on; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address as a URL: `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        url(self.port)
    }

    /// A client for this server. Creating it does not connect, so it works while the server is killed.
    ///
    /// # Panics
    ///
    /// Never in practice: [`RedisServer::url`] is always a valid URL.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis://127.0.0.1:PORT/ is a valid redis URL")
    }

    /// A new synchronous connection to this server (connect timeout 5 s, no read timeout, so blocking
    /// commands work).
    ///
    /// # Panics
    ///
    /// If the server cannot be reached, e.g. after [`RedisServer::kill`]. To observe that failure, use
    /// [`RedisServer::client`] instead.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .unwrap_or_else(|err| {
                let server = self.engine.server_program();
                panic!("connect to {server} at {}: {err}", self.url())
            })
    }

    /// Kills the server with SIGKILL and waits for it to exit. Does nothing if it is already killed.
    ///
    /// The port and the directory are kept for [`RedisServer::restart`]; nothing holds the port while
    /// the server is down.
    ///
    /// # Panics
    ///
    /// If the process cannot be waited for.
    pub fn kill(&mut self) {
        let server = self.engine.server_program();
        self.stop()
            .unwrap_or_else(|err| panic!("kill {server} and wait for it: {err}"));
    }

    /// Starts the server again on the same port and directory, and waits until it answers `PING`
    /// (that is, until it finished loading its AOF, if any). Kills it first if it still runs.
    ///
    /// # Panics
    ///
    /// If the server exits early (most likely another process took the port while it was down) or does
    /// not answer within 10 s. The message quotes the tail of the server log. Unlike
    /// [`RedisServer::start`], it does not retry: the port must stay the same.
    pub fn restart(&mut self) {
        self.kill();
        let (port, engine) = (self.port, self.engine);
        let server = engine.server_program();
        match launch(engine, port, self.dir.path(), &self.args) {
            Ok(child) => {
                *self.child.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);
            }
            Err(LaunchError::Exited(status)) => panic!(
                "{server} exited on restart on port {port} with {status} (did another process \
                 take the port while it was down?); {}",
                log_tail(engine, self.dir.path())
            ),
            Err(LaunchError::Timeout(last)) => panic!(
                "restarted {server} on port {port} did not answer PING within {READY_TIMEOUT:?} \
                 (last attempt: {last}); {}",
                log_tail(engine, self.dir.path())
            ),
        }
    }

    /// Whether the server process is alive: `false` after [`RedisServer::kill`], and also if it died
    /// on its own.
    ///
    /// # Panics
    ///
    /// If the process status cannot be read.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match child.as_mut() {
            None => false,
            Some(child) => child
                .try_wait()
                .unwrap_or_else(|err| {
                    panic!("read the status of {}: {err}", self.engine.server_program())
                })
                .is_none(),
        }
    }

    /// SIGKILLs and reaps the child if there is one.
    fn stop(&mut self) -> io::Result<()> {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut child) = child {
            // Fails only if the child already exited; `wait` below reaps it either way.
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // No panic here: this may run while a test is already unwinding.
        let _ = self.stop();
    }
}

// === launching ===

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// The persistence arguments of [`RedisServer::start`] (`aof == false`) and
/// [`RedisServer::start_with_aof`].
fn persistence_args(aof: bool) -> Vec<OsString> {
    let args: &[&str] = if aof {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    args.iter().map(OsString::from).collect()
}

/// Spawns the `engine`'s server on `port`, with its working directory and log in `dir`, RDB
/// snapshots off and `extra` appended to the command line, and waits until it answers; on a
/// timeout the child is killed.
pub(crate) fn launch(
    engine: Engine,
    port: u16,
    dir: &Path,
    extra: &[OsString],
) -> Result<Child, LaunchError> {
    let program = engine.server_binary();
    let mut command = Command::new(&program);
    command
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join(engine.log_file()))
        .args(["--daemonize", "no", "--save", ""])
        .args(extra);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("{}", engine.spawn_failed(&program, &err)));
    match wait_ready(engine, &mut child, port) {
        Ok(()) => Ok(child),
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(err)
        }
    }
}

/// Polls until `child` itself answers `PING` on `port`, or exits, or [`READY_TIMEOUT`] passes.
///
/// # Panics
///
/// If `child` answers but is not the `engine` (on Valkey: `INFO server` has no `valkey_version`).
fn wait_ready(engine: Engine, child: &mut Child, port: u16) -> Result<(), LaunchError> {
    let server = engine.server_program();
    let client =
        redis::Client::open(url(port)).expect("redis://127.0.0.1:PORT/ is a valid redis URL");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let status = child
            .try_wait()
            .unwrap_or_else(|err| panic!("read the status of {server}: {err}"));
        if let Some(status) = status {
            return Err(LaunchError::Exited(status));
        }
        let last = match probe(&client) {
            Ok((pid, info)) if pid == child.id() => {
                if engine.version_in(&info).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} is not {engine}: its INFO server has no {}:\n{info}",
                        engine.server_binary().display(),
                        engine.version_field()
                    );
                }
                return Ok(());
            }
            Ok((pid, _)) => format!("port {port} is served by another server, pid {pid}"),
            Err(err) => err,
        };
        if Instant::now() >= deadline {
            return Err(LaunchError::Timeout(last));
        }
        thread::sleep(PROBE_INTERVAL);
    }
}

/// Sends `PING` (an error while the server loads its AOF: `LOADING`) and returns the server's pid
/// and its `INFO server`.
fn probe(client: &redis::Client) -> Result<(u32, String), String> {
    let mut conn = client
        .get_connection_with_timeout(PROBE_TIMEOUT)
        .map_err(|err| err.to_string())?;
    conn.set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|err| err.to_string())?;
    let _pong: String = redis::cmd("PING")
        .query(&mut conn)
        .map_err(|err| err.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut conn)
        .map_err(|err| err.to_string())?;
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| "INFO server has no process_id".to_owned())?;
    Ok((pid, info))
}

/// The last lines of the `engine`'s log in `dir`, for panic messages.
pub(crate) fn log_tail(engine: Engine, dir: &Path) -> String {
    let path = dir.join(engine.log_file());
    match fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            format!("tail of the {engine} log {}:\n{tail}", path.display())
        }
        Err(err) => format!("no {engine} log: read {}: {err}", path.display()),
    }
}
