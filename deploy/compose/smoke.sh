#!/usr/bin/env bash
# The docker-compose.yml smoke test's setup and teardown, on images built on this machine: no
# image registry is needed.
#
#   deploy/compose/smoke.sh up     # dockerd (if none answers), stand-in base images, the
#                                  # project's image (the Dockerfile as it is), `up` of the
#                                  # project's docker-compose.yml (as it is, plus
#                                  # smoke.override.yml), until nginx answers on 127.0.0.1:8000
#   deploy/compose/smoke.sh down   # `down -v`, checks that nothing of it is left, and stops the
#                                  # dockerd it started
#   deploy/compose/smoke.sh        # up, one event through nginx, down
#   deploy/compose/smoke.sh compose ps   # the project's docker-compose, with the same files
#
# crates/sse-gateway/tests/compose.rs runs up, its checks, then down.
#
# Stand-ins: no registry is reachable, so the base images the Dockerfile and the compose file
# name are made here from Debian's packages (debootstrap, then `docker import` under the names
# the files use): debian:bookworm-slim, redis:7.2, nginx:1.27 and prom/prometheus:v2.53.2 from
# one Debian root file system holding redis-server, nginx-light, curl, wget and prometheus;
# rust:1-bookworm from another with gcc, this machine's Rust toolchain, and the workspace's
# dependencies (`cargo vendor`, run here), so the image build needs no network. Grafana has no
# Debian package: smoke.override.yml leaves it out (its provisioning is validated by the tests).
# Stand-ins are built once and kept (in docker, and their root file systems in $SMOKE_CACHE);
# `SMOKE_REBUILD=1` makes them again.
#
# Needs root (dockerd, debootstrap); installs docker.io, debootstrap and docker-compose when
# missing. Talks only to 127.0.0.1 and the network compose creates.
set -euo pipefail
cd "$(dirname "$0")/../.."

PROJECT=${SMOKE_PROJECT:-sse-smoke}
SMOKE_CACHE=${SMOKE_CACHE:-$PWD/target/compose-smoke}
STATE=$SMOKE_CACHE/state
DOCKER=${DOCKER:-docker}
mkdir -p "$STATE"

log() { echo "smoke: $*" >&2; }
compose() {
  docker-compose -p "$PROJECT" -f docker-compose.yml -f deploy/compose/smoke.override.yml "$@"
}

install_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

start_dockerd() {
  if "$DOCKER" info >/dev/null 2>&1; then return; fi
  log "starting dockerd"
  dockerd >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  local waited=0
  until "$DOCKER" info >/dev/null 2>&1; do
    sleep 0.5
    waited=$((waited + 1))
    if [ $waited -gt 60 ]; then
      log "dockerd did not answer in 30 s:"
      tail -20 "$STATE/dockerd.log" >&2
      exit 1
    fi
  done
}

stop_dockerd() {
  [ -f "$STATE/dockerd.pid" ] || return 0
  local pid
  pid=$(cat "$STATE/dockerd.pid")
  log "stopping the dockerd it started (pid $pid)"
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  rm -f "$STATE/dockerd.pid"
}

have_image() { [ -z "${SMOKE_REBUILD:-}" ] && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# A Debian root file system with `packages` (comma-separated) in $SMOKE_CACHE/<name>.
rootfs() { # name packages
  local dir=$SMOKE_CACHE/$1
  if [ -f "$dir/.complete" ] && [ -z "${SMOKE_REBUILD:-}" ]; then echo "$dir"; return; fi
  rm -rf "$dir"
  log "debootstrap $1 ($2)"
  debootstrap --variant=minbase --include="$2" bookworm "$dir" http://deb.debian.org/debian \
    >"$STATE/debootstrap-$1.log" 2>&1 || { tail -20 "$STATE/debootstrap-$1.log" >&2; exit 1; }
  touch "$dir/.complete"
  echo "$dir"
}

import() { # dir name changes...
  local dir=$1 name=$2
  shift 2
  local changes=()
  for change in "$@"; do changes+=(-c "$change"); done
  log "docker import $name"
  tar -C "$dir" --exclude=./.complete -c . | "$DOCKER" import "${changes[@]}" - "$name" >/dev/null
}

runtime_images() {
  local wanted=(debian:bookworm-slim redis:7.2 nginx:1.27 prom/prometheus:v2.53.2) all=1
  for image in "${wanted[@]}"; do have_image "$image" || all=; done
  [ -n "$all" ] && return
  local dir
  dir=$(rootfs runtime redis-server,nginx-light,curl,wget,prometheus,ca-certificates)
  mkdir -p "$dir/data" "$dir/prometheus"
  # The official redis image is built with protected mode off (the compose file's Redis has no
  # password and is reached from other containers); Debian's redis-server has it on.
  printf '%s\n' '#!/bin/sh' 'exec /usr/bin/redis-server "$@" --protected-mode no' \
    >"$dir/usr/local/bin/redis-server"
  chmod 0755 "$dir/usr/local/bin/redis-server"
  import "$dir" debian:bookworm-slim 'CMD ["bash"]'
  import "$dir" redis:7.2 'WORKDIR /data' 'CMD ["redis-server"]'
  import "$dir" nginx:1.27 'CMD ["nginx", "-g", "daemon off;"]'
  import "$dir" prom/prometheus:v2.53.2 'WORKDIR /prometheus' 'ENTRYPOINT ["/usr/bin/prometheus"]'
}

builder_image() {
  have_image rust:1-bookworm && return
  local dir toolchain
  dir=$(rootfs builder gcc,libc6-dev,ca-certificates)
  toolchain=$(dirname "$(dirname "$(rustup which rustc 2>/dev/null || command -v rustc)")")
  log "adding the Rust toolchain ($toolchain) and the vendored dependencies"
  rm -rf "$dir/usr/local/rust" "$dir/usr/local/cargo"
  mkdir -p "$dir/usr/local/rust/lib/rustlib" "$dir/usr/local/cargo"
  cp -a "$toolchain/bin" "$dir/usr/local/rust/"
  cp -a "$toolchain"/lib/*.so* "$dir/usr/local/rust/lib/"
  cp -a "$toolchain/lib/rustlib/x86_64-unknown-linux-gnu" "$dir/usr/local/rust/lib/rustlib/"
  cargo vendor --locked --versioned-dirs "$dir/usr/local/cargo/vendor" >/dev/null 2>"$STATE/vendor.log" ||
    { cat "$STATE/vendor.log" >&2; exit 1; }
  cat >"$dir/usr/local/cargo/config.toml" <<'CONFIG'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
CONFIG
  import "$dir" rust:1-bookworm \
    'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV CARGO_HOME=/usr/local/cargo' 'CMD ["bash"]'
}

wait_for() { # what seconds command...
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -gt $deadline ]; then
      log "$what: not within $seconds s"
      compose ps >&2 || true
      compose logs --tail 30 >&2 || true
      exit 1
    fi
    sleep 1
  done
}

up() {
  install_tools
  start_dockerd
  for port in 8000 8443 9090; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      log "port $port on 127.0.0.1 is taken: the compose file publishes it"
      exit 1
    fi
  done
  runtime_images
  builder_image
  log "building the project's image with its Dockerfile"
  compose build >"$STATE/build.log" 2>&1 || { tail -40 "$STATE/build.log" >&2; exit 1; }
  log "docker-compose up"
  compose up -d >"$STATE/up.log" 2>&1 || { cat "$STATE/up.log" >&2; compose logs --tail 30 >&2; exit 1; }
  wait_for "nginx answers on 127.0.0.1:8000" 120 curl -fsS http://127.0.0.1:8000/nginx-health
  log "up: nginx on http://127.0.0.1:8000 and https://127.0.0.1:8443, Prometheus on :9090"
}

down() {
  if "$DOCKER" info >/dev/null 2>&1; then
    log "docker-compose down -v"
    compose down -v --remove-orphans >"$STATE/down.log" 2>&1 || { cat "$STATE/down.log" >&2; exit 1; }
    local left
    left=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT"
      "$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$PROJECT"
      "$DOCKER" network ls -q --filter "label=com.docker.compose.project=$PROJECT")
    if [ -n "$left" ]; then
      log "left behind after down -v: $left"
      exit 1
    fi
  fi
  stop_dockerd
}

case "${1:-all}" in
  up) up ;;
  down) down ;;
  all)
    trap down EXIT
    up
    id=$(curl -fsS -X POST http://127.0.0.1:8000/v1/publish -H 'Authorization: Bearer dev-token' \
      -H 'Content-Type: application/json' -d '{"topic":"smoke","data":"hello"}')
    log "published $id; reading it back from the stream"
    curl -fsS -N --max-time 5 -H 'Last-Event-ID: 0-0' 'http://127.0.0.1:8000/events?topic=smoke' |
      grep -m1 '^data: hello$'
    log "passed"
    ;;
  # The project's compose command, for a test's own steps: smoke.sh compose restart redis
  compose) shift; compose "$@" ;;
  *) echo "usage: $0 [up|down|compose <args>]" >&2; exit 2 ;;
esac
