//! The demo page in a real browser: `deploy/local/run.sh` starts Redis, the publisher, two
//! gateways and nginx; `tests/browser/demo.e2e.mjs` opens the page through nginx in headless
//! Chromium, publishes numbered events, kills (SIGKILL) the gateway serving the page midway, and
//! checks from the page's DOM that the browser's own `EventSource` reconnected through nginx to
//! the other gateway and shows every event exactly once, in order. It saves a screenshot as
//! `<target dir>/e2e/demo.png`. A second test runs `tests/browser/cross-origin.e2e.mjs`: pages
//! on another origin subscribe with a token in a cookie (`withCredentials`) or in the query. A
//! third runs `tests/browser/token-expiry.e2e.mjs` against gateways started with
//! `SSE_JWT_SECRET`: the demo page's token expires twice mid-stream, and with each new token in
//! its field the page resumes and shows every event exactly once, in order. A fourth runs
//! `tests/browser/http2.e2e.mjs`: one page over nginx's TLS port (HTTP/2, the script's
//! self-signed certificate) opens eight streams, more than the six HTTP/1.1 connections a
//! browser allows per origin, and each receives its event.
//!
//! Needs `node` (18+, with `npm`) and `chromium` (or `CHROMIUM_BIN`); a missing one fails the
//! test with the package to install. `npm ci` runs in `tests/browser` when its `node_modules`
//! lacks `playwright-core`.

mod harness;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use sse_testkit::wait_until;

const PATIENCE: Duration = Duration::from_secs(15);
/// Longer than the script's own deadline, so that it gets to close its browser itself.
const SCRIPT_PATIENCE: Duration = Duration::from_secs(150);
/// Fetching playwright-core from the npm registry.
const NPM_PATIENCE: Duration = Duration::from_secs(300);

/// The workspace root, where the scripts run.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Where screenshots go: `<target>/e2e`, beside `<target>/<profile>/sse-gateway`.
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .ancestors()
        .nth(2)
        .expect("the target directory")
        .join("e2e")
}

/// `name` on the `PATH`, or a failure naming what to install.
fn on_path(name: &str, install: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` not found on PATH: {install}"))
}

/// The browser: `CHROMIUM_BIN`, or `chromium` on the `PATH`.
fn chromium() -> PathBuf {
    match std::env::var_os("CHROMIUM_BIN") {
        Some(path) => PathBuf::from(path),
        None => on_path("chromium", "apt-get install -y chromium"),
    }
}

/// Installs the script's npm dependencies (playwright-core, pinned by the lockfile) if missing,
/// once for all the tests of this process: `npm ci` starts by deleting `node_modules`, so two at
/// once would pull it from under each other.
fn npm_ci(root: &Path) {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if *installed
        || root
            .join("tests/browser/node_modules/playwright-core/package.json")
            .exists()
    {
        *installed = true;
        return;
    }
    let npm = on_path("npm", "apt-get install -y npm (or nodejs from NodeSource)");
    let mut install = harness::child::spawn_in_own_group(
        Command::new(npm)
            .args(["ci", "--prefix", "tests/browser", "--no-audit", "--no-fund"])
            .current_dir(root)
            .stdin(Stdio::null()),
    )
    .expect("run npm ci");
    match harness::child::wait_within(&mut install, NPM_PATIENCE) {
        Some(status) => assert!(status.success(), "npm ci --prefix tests/browser failed"),
        None => panic!("npm ci --prefix tests/browser did not end within {NPM_PATIENCE:?}"),
    }
    *installed = true;
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold anything, so split after its last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The pid of the `sse-gateway` listening on `port` that `ancestor` started, found by its
/// command line.
fn gateway_pid(ancestor: u32, port: u16) -> u32 {
    let binary = env!("CARGO_BIN_EXE_sse-gateway");
    let listen = format!("127.0.0.1:{port}");
    let descends = |mut pid: u32| {
        while let Some(up) = parent(pid) {
            if up == ancestor {
                return true;
            }
            if up <= 1 {
                return false;
            }
            pid = up;
        }
        false
    };
    let found = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first() == Some(&binary.as_bytes())
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--listen" && w[1] == listen.as_bytes())
        })
        .filter(|pid| descends(*pid))
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1, "one sse-gateway on {listen}: {found:?}");
    found[0]
}

/// Fails the test unless `run.sh` started nginx, which serves the demo page.
fn assert_serves_the_demo_page(cluster: &harness::local_cluster::LocalCluster) {
    let (nginx_port, said) = (cluster.nginx_port, &cluster.said);
    assert!(
        said.contains(&format!("http://127.0.0.1:{nginx_port}/ (demo page")),
        "run.sh started no nginx (apt-get install -y nginx-light):\n{said}"
    );
}

/// Reads `from` to the end on a thread; the text once joined.
/// Reads `from` to its end on a thread of its own; the text arrives on the channel.
fn drain(mut from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (text, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut read = String::new();
        let _ = from.read_to_string(&mut read);
        let _ = text.send(read);
    });
    received
}

/// Runs the browser script `script` (relative to `root`) with `node`, Chromium and `env`, and
/// fails the test unless it ends in time, successfully, saying `PASSED`. node and the browsers
/// it starts are one process group, killed as a whole if the script overstays (and after it
/// ends, so that no browser it left behind keeps running).
fn run_script(root: &Path, script: &str, env: &[(&str, String)]) {
    let node = on_path("node", "apt-get install -y nodejs (18 or newer)");
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "no browser at {}: apt-get install -y chromium",
        chromium.display()
    );
    npm_ci(root);
    let mut e2e = harness::child::spawn_in_own_group(
        Command::new(node)
            .arg(script)
            .current_dir(root)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .env("CHROMIUM_BIN", &chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap_or_else(|error| panic!("run node {script}: {error}"));
    let out = drain(e2e.stdout.take().expect("piped stdout"));
    let err = drain(e2e.stderr.take().expect("piped stderr"));
    let status = harness::child::wait_within(&mut e2e, SCRIPT_PATIENCE);
    harness::child::kill_group(&e2e);
    let unread = || "(its output did not end)".to_owned();
    let (out, err) = (
        out.recv_timeout(PATIENCE).unwrap_or_else(|_| unread()),
        err.recv_timeout(PATIENCE).unwrap_or_else(|_| unread()),
    );
    println!("{out}");
    eprintln!("{err}");
    match status {
        Some(status) => assert!(
            status.success(),
            "{script} failed ({status}):\n{out}\n{err}"
        ),
        None => panic!("{script} still running after {SCRIPT_PATIENCE:?}:\n{out}\n{err}"),
    }
    assert!(
        out.contains("PASSED"),
        "{script} did not pass:\n{out}\n{err}"
    );
}

#[test]
fn demo_page_in_chromium_resumes_through_nginx_when_its_gateway_is_killed() {
    let root = workspace_root();
    let mut cluster = harness::local_cluster::LocalCluster::start();
    assert_serves_the_demo_page(&cluster);
    let (nginx_port, gateways) = (cluster.nginx_port, cluster.gateway_ports);
    let script_pid = cluster.pid();
    let pids = gateways.map(|port| gateway_pid(script_pid, port));

    run_script(
        &root,
        "tests/browser/demo.e2e.mjs",
        &[
            ("E2E_BASE_URL", format!("http://127.0.0.1:{nginx_port}")),
            (
                "E2E_GATEWAYS",
                format!("{}:{},{}:{}", gateways[0], pids[0], gateways[1], pids[1]),
            ),
            ("E2E_ARTIFACTS", artifacts().display().to_string()),
        ],
    );

    cluster.stop();
    wait_until("the gateways' processes end", PATIENCE, || {
        pids.iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
}

#[test]
fn eight_streams_from_one_page_over_https_all_receive_through_nginx_over_http2() {
    let root = workspace_root();
    let mut cluster = harness::local_cluster::LocalCluster::start();
    run_script(
        &root,
        "tests/browser/http2.e2e.mjs",
        &[
            (
                "E2E_BASE_URL",
                format!("https://127.0.0.1:{}", cluster.nginx_tls_port),
            ),
            ("E2E_ARTIFACTS", artifacts().display().to_string()),
        ],
    );
    cluster.stop();
}

#[test]
fn pages_on_another_origin_subscribe_with_a_cookie_token_or_a_query_token_through_nginx() {
    let root = workspace_root();
    let page_port = sse_testkit::free_port();
    let origin = format!("http://127.0.0.1:{page_port}");
    let secret = "cross-origin-test-secret";
    let mut cluster = harness::local_cluster::LocalCluster::start_with(&[
        ("SSE_JWT_SECRET", secret),
        ("SSE_JWT_COOKIE", "sse_token"),
        ("SSE_CORS_ORIGINS", &origin),
        ("SSE_CORS_CREDENTIALS", "true"),
    ]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"exp": exp, "sub": "browser", "sse": {"subscribe": ["xorigin"]}}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign the page's token");
    run_script(
        &root,
        "tests/browser/cross-origin.e2e.mjs",
        &[
            (
                "E2E_BASE_URL",
                format!("http://127.0.0.1:{}", cluster.nginx_port),
            ),
            ("E2E_PAGE_PORT", page_port.to_string()),
            ("E2E_SUBSCRIBE", token),
        ],
    );
    cluster.stop();
}

#[test]
fn demo_page_in_chromium_resumes_with_each_new_token_when_its_token_expires() {
    let root = workspace_root();
    let secret = "token-expiry-test-secret";
    // Both binaries read SSE_JWT_SECRET; the publisher keeps accepting its static token.
    let mut cluster =
        harness::local_cluster::LocalCluster::start_with(&[("SSE_JWT_SECRET", secret)]);
    assert_serves_the_demo_page(&cluster);
    run_script(
        &root,
        "tests/browser/token-expiry.e2e.mjs",
        &[
            (
                "E2E_BASE_URL",
                format!("http://127.0.0.1:{}", cluster.nginx_port),
            ),
            ("E2E_JWT_SECRET", secret.to_owned()),
            ("E2E_ARTIFACTS", artifacts().display().to_string()),
        ],
    );
    cluster.stop();
}
