//! [`LocalCluster`]: `deploy/local/run.sh`, the README's "run" command, as a test runs it.
//!
//! Every wait on the script is bounded: a script that never says it is ready, or does not stop
//! when told, fails the test (after its whole process group was killed) instead of hanging the
//! suite. The ports are free only a moment before the script binds them, so when another test
//! took one first (a server says "Address already in use" and the script ends), the cluster
//! starts again on new ports.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sse_testkit::free_port;

use super::child::{spawn_in_own_group, wait_within};
use super::{PATIENCE, publisher_binary};

/// How long the script may take to say it is ready (a cold nginx and two gateways).
const READY_PATIENCE: Duration = Duration::from_secs(90);
/// How long it may take to stop once told: the gateways drain their streams first.
const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// Fresh sets of ports to try when one was taken.
const PORT_ATTEMPTS: usize = 3;

/// `deploy/local/run.sh` on free ports with this build's binaries: Redis, the publisher, two
/// gateways and nginx. Dropping it stops the script as Ctrl-C would.
pub(crate) struct LocalCluster {
    script: Child,
    pub(crate) redis_port: u16,
    pub(crate) publisher_port: u16,
    pub(crate) gateway_ports: [u16; 2],
    pub(crate) nginx_port: u16,
    /// nginx's TLS (HTTP/2) port.
    pub(crate) nginx_tls_port: u16,
    /// What the script printed until it was ready.
    pub(crate) said: String,
    /// What the script wrote to stderr so far (read on a thread of its own).
    complaints: Arc<Mutex<String>>,
}

/// Why a start failed: the whole story, for the panic message.
struct NotReady {
    story: String,
    port_taken: bool,
}

impl LocalCluster {
    /// Starts the script and waits until it says it is ready.
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the script with `env` added to its environment, and waits until it says it is
    /// ready.
    pub(crate) fn start_with(env: &[(&str, &str)]) -> Self {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(env) {
                Ok(cluster) => return cluster,
                Err(NotReady {
                    story,
                    port_taken: true,
                }) => last = story,
                Err(NotReady { story, .. }) => panic!("{story}"),
            }
        }
        panic!(
            "{PORT_ATTEMPTS} sets of free ports were each taken before the script bound them; the last try:\n{last}"
        )
    }

    fn try_start(env: &[(&str, &str)]) -> Result<Self, NotReady> {
        let (redis_port, publisher_port, nginx_port) = (free_port(), free_port(), free_port());
        let nginx_tls_port = free_port();
        let gateway_ports = [free_port(), free_port()];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut script = spawn_in_own_group(
            Command::new("bash")
                .arg("deploy/local/run.sh")
                .current_dir(&root)
                .env("REDIS_PORT", redis_port.to_string())
                .env("PUBLISHER_PORT", publisher_port.to_string())
                .env(
                    "GATEWAY_PORTS",
                    format!("{} {}", gateway_ports[0], gateway_ports[1]),
                )
                .env("NGINX_PORT", nginx_port.to_string())
                .env("NGINX_TLS_PORT", nginx_tls_port.to_string())
                .env("SSE_PUBLISHER_BIN", publisher_binary())
                .env("SSE_GATEWAY_BIN", env!("CARGO_BIN_EXE_sse-gateway"))
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .expect("start deploy/local/run.sh");
        let lines = lines_in_background(script.stdout.take().expect("piped stdout"));
        let (complaints, stderr_ended) =
            read_in_background(script.stderr.take().expect("piped stderr"));
        let mut said = String::new();
        let deadline = Instant::now() + READY_PATIENCE;
        let outcome = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    said.push_str(&line);
                    said.push('\n');
                    if line.contains("Press Ctrl-C") {
                        break Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    break Err(format!(
                        "the script was not ready within {READY_PATIENCE:?}"
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => break Err("the script ended".to_owned()),
            }
        };
        if let Err(what) = outcome {
            let status = wait_within(&mut script, PATIENCE);
            // Its stderr ends with it, unless a process it started still holds it open.
            let _ = stderr_ended.recv_timeout(PATIENCE);
            let complaints = complaints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return Err(NotReady {
                port_taken: complaints.contains("Address already in use"),
                story: format!(
                    "{what} ({status:?}) before it was ready; it said:\n{said}\nand complained:\n{complaints}"
                ),
            });
        }
        Ok(Self {
            script,
            redis_port,
            publisher_port,
            gateway_ports,
            nginx_port,
            nginx_tls_port,
            said,
            complaints,
        })
    }

    /// What the script wrote to stderr so far.
    pub(crate) fn complaints(&self) -> String {
        self.complaints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The script's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.script.id()
    }

    /// Stops the script with SIGTERM and waits until every port it served is closed.
    pub(crate) fn stop(&mut self) {
        let stopped = self.stop_script();
        assert!(
            stopped,
            "the script did not stop within {STOP_PATIENCE:?} of SIGTERM; its process group was killed"
        );
        let ports = [
            self.redis_port,
            self.publisher_port,
            self.gateway_ports[0],
            self.gateway_ports[1],
            self.nginx_port,
            self.nginx_tls_port,
        ];
        sse_testkit::wait_until("every process the script started stops", PATIENCE, || {
            ports
                .iter()
                .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_err())
        });
    }

    /// SIGTERM, as Ctrl-C would; whether the script ended within [`STOP_PATIENCE`] (if not,
    /// its whole process group is killed).
    fn stop_script(&mut self) -> bool {
        if self.script.try_wait().ok().flatten().is_some() {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.script.id().to_string()])
            .status();
        wait_within(&mut self.script, STOP_PATIENCE).is_some()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_script();
    }
}

/// The lines of `pipe`, read to its end on a thread of its own (so the writer never blocks,
/// whether or not anyone still listens); the channel closes when the pipe ends.
fn lines_in_background(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    received
}

/// Reads `pipe` to its end on a thread of its own, so the process writing it never blocks:
/// the text so far, and a channel that says when the pipe ended.
fn read_in_background(
    pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<String>>, mpsc::Receiver<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let (ended, ended_received) = mpsc::channel();
    let writer = text.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut text = writer.lock().unwrap_or_else(PoisonError::into_inner);
            text.push_str(&line);
            text.push('\n');
        }
        let _ = ended.send(());
    });
    (text, ended_received)
}
