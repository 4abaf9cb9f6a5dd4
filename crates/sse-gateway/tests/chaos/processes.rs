//! The processes a chaos run owns: the two binaries as [`Node`]s that can be SIGKILLed,
//! SIGTERMed and started again on the same port, and [`LogDir`], where their logs go.
//! Dropping a `Node` kills its process, so a failed assertion leaks nothing.

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The `sse-gateway` binary under test.
pub(crate) const GATEWAY: &str = env!("CARGO_BIN_EXE_sse-gateway");

/// The `sse-publisher` binary of this build, a sibling of the gateway's. Built (a no-op when up
/// to date) so that a stale binary is never tested.
pub(crate) fn publisher_binary() -> PathBuf {
    let path = Path::new(GATEWAY).with_file_name("sse-publisher");
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "sse-publisher",
            "--bin",
            "sse-publisher",
        ])
        .status()
        .expect("run cargo build -p sse-publisher");
    assert!(built.success(), "cargo build -p sse-publisher failed");
    assert!(
        path.exists(),
        "no sse-publisher binary at {}",
        path.display()
    );
    path
}

/// A child process that can be stopped and started again with the same arguments.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// A node that is not started yet; it will listen on `addr` and log to `log`.
    pub(crate) fn new(
        name: &str,
        addr: SocketAddr,
        program: &Path,
        args: Vec<String>,
        log: PathBuf,
    ) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            program: program.to_owned(),
            args,
            log,
            child: None,
        }
    }

    /// Starts the process (again), appending its output to its log.
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already started", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the node's log");
        let stderr = log.try_clone().expect("clone the log file handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", self.program.display()));
        self.child = Some(child);
    }

    /// `kill -9` and reap. Does nothing if the process is not running.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if it already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop); [`Node::exited`] tells when it is done.
    pub(crate) fn terminate(&mut self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("run kill -TERM");
            assert!(status.success(), "kill -TERM {} failed", self.name);
        }
    }

    /// The exit status if the process has exited (it is reaped and forgotten then).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self
            .child
            .as_mut()?
            .try_wait()
            .expect("read a child's status")?;
        self.child = None;
        Some(status)
    }

    /// The lines of the node's log (all its lives) that contain `needle`.
    pub(crate) fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// The last `lines` lines of the node's log (all its lives).
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh directory for the nodes' logs: removed at the end of a passing run, kept (and its
/// path printed) when the test fails or `CHAOS_KEEP_LOGS` is set.
pub(crate) struct LogDir(PathBuf);

impl LogDir {
    pub(crate) fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!("sse-chaos-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("create the log directory");
        Self(path)
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("CHAOS_KEEP_LOGS").is_some() {
            eprintln!("chaos: the nodes' logs are kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
