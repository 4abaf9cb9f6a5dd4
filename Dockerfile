# One image for both binaries: sse-gateway (the default command) and sse-publisher.
#   docker build -t sse-gateway:local .
#   docker run --rm -e REDIS_URL=redis://redis:6379 sse-gateway:local                # a gateway on :8080
#   docker run --rm -e SSE_LISTEN=0.0.0.0:8081 -e SSE_PUBLISH_TOKENS=... sse-gateway:local sse-publisher
# docker-compose.yml builds it and runs three gateways and a publisher from it.
# Works with the classic builder and BuildKit alike (no heredocs, no cache mounts).

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------
# Builder
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src

# 1. Dependencies only: the workspace manifests, the lock file and empty targets for every crate
#    (the workspace needs all members' manifests, and targets declared by path must exist). This
#    layer is rebuilt only when a Cargo.toml or Cargo.lock changes, not when a source does.
#    A new workspace member needs its COPY line here (tests/deploy_files.rs checks).
COPY Cargo.toml Cargo.lock ./
COPY crates/sse-bench/Cargo.toml crates/sse-bench/Cargo.toml
COPY crates/sse-core/Cargo.toml crates/sse-core/Cargo.toml
COPY crates/sse-gateway/Cargo.toml crates/sse-gateway/Cargo.toml
COPY crates/sse-publisher/Cargo.toml crates/sse-publisher/Cargo.toml
COPY crates/sse-testkit/Cargo.toml crates/sse-testkit/Cargo.toml
#    Every [[test]] and [[bench]] a manifest declares gets an empty file too: cargo reads them
#    all, whatever it builds.
RUN set -eux; \
    for crate in crates/*/; do \
        mkdir -p "$crate/src"; \
        : > "$crate/src/lib.rs"; \
        echo 'fn main() {}' > "$crate/src/main.rs"; \
        for kind in test:tests bench:benches; do \
            for name in $(awk -v section="[[${kind%:*}]]" '$0 == section { inside = 1; next } /^\[/ { inside = 0 } inside && $1 == "name" { gsub(/"/, "", $3); print $3 }' "$crate/Cargo.toml"); do \
                mkdir -p "$crate/${kind#*:}"; \
                echo 'fn main() {}' > "$crate/${kind#*:}/$name.rs"; \
            done; \
        done; \
    done; \
    cargo build --release --locked -p sse-gateway -p sse-publisher; \
    rm -rf crates/*/src crates/*/tests crates/*/benches

# 2. The sources. COPY keeps the files' modification times, which may be older than the dummy
#    build's: touch them so cargo rebuilds the workspace crates (and only them).
#    The release profile keeps line tables (about 35 MB per binary); the image drops them
#    (about 7 MB; panics still name functions) unless built with KEEP_DEBUG_INFO=1.
ARG KEEP_DEBUG_INFO=0
COPY crates crates
RUN set -eux; \
    find crates -name '*.rs' -exec touch {} +; \
    cargo build --release --locked -p sse-gateway -p sse-publisher; \
    install -d /out; \
    install -m 0755 target/release/sse-gateway target/release/sse-publisher /out/; \
    if [ "${KEEP_DEBUG_INFO:-0}" != 1 ]; then strip --strip-debug /out/sse-gateway /out/sse-publisher; fi

# ---------------------------------------------------------------------------------------------
# Runtime: Debian slim, no compiler, no curl; bash (already in the base image) does the
# health check over /dev/tcp.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# sse-healthcheck [path]: GET <path> (default /healthz) from this container's own listener and
# exit 0 on a 200. The address is SSE_ADMIN_LISTEN (the gateway's probe listener) when set, else
# SSE_LISTEN when set, else the binary's default port (8081 when PID 1 is sse-publisher, 8080
# otherwise); a wildcard address is reached through 127.0.0.1.
RUN set -eux; \
    printf '%s\n' \
      '#!/bin/bash' \
      '# GET ${1:-/healthz} from the local sse-gateway or sse-publisher; exit 0 on HTTP 200.' \
      'set -euo pipefail' \
      'path=${1:-/healthz}' \
      'listen=${SSE_ADMIN_LISTEN:-${SSE_LISTEN:-}}' \
      'if [[ -z $listen ]]; then' \
      '  case $(cat /proc/1/comm 2>/dev/null || true) in' \
      '    sse-publisher) listen=0.0.0.0:8081 ;;' \
      '    *) listen=0.0.0.0:8080 ;;' \
      '  esac' \
      'fi' \
      'port=${listen##*:}' \
      'host=${listen%:*}' \
      'host=${host#[}' \
      'host=${host%]}' \
      'case $host in ""|0.0.0.0|::) host=127.0.0.1 ;; esac' \
      'exec 3<>"/dev/tcp/$host/$port"' \
      'printf "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$path" >&3' \
      'status=' \
      'IFS= read -r -t 5 status <&3 || true' \
      'status=${status%%[[:cntrl:]]*}' \
      'if [[ $status == "HTTP/1."[01]" 200 "* ]]; then exit 0; fi' \
      'echo "GET $path on $host:$port: ${status:-no answer}" >&2' \
      'exit 1' \
      > /usr/local/bin/sse-healthcheck; \
    chmod 0755 /usr/local/bin/sse-healthcheck; \
    groupadd --system --gid 10001 sse; \
    useradd --system --uid 10001 --gid sse --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sse

COPY --from=builder /out/sse-gateway /out/sse-publisher /usr/local/bin/

USER 10001:10001
EXPOSE 8080 8081

# Liveness only (/healthz: the process serves HTTP). Readiness (/readyz: Redis reachable, not
# draining) is for load balancers, not for restarting a container: `sse-healthcheck /readyz`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["sse-healthcheck"]

# SIGTERM starts the gateway's drain (--drain-seconds, 10 s by default): give containers a
# longer stop timeout than that (docker-compose.yml sets stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["sse-gateway"]
