#!/usr/bin/env bash
# What subscriber authentication costs in a reconnect storm: the same sse-bench
# reconnect-storm (CONNECTIONS clients, default 10,000, on TOPICS topics at RATE events/s, all
# dropped at once and resumed with Last-Event-ID) against one gateway configured each way
# (MODES, default all of them, in this order):
#
#   off           no authentication
#   hs256         --jwt-secret; a distinct token per client (its own sub), HMAC checked on
#                 every connect (the gateway caches no HMAC check)
#   rs256         --jwt-public-key (a fresh 2048-bit RSA key pair); distinct tokens; the
#                 gateway caches a public-key check per token, so the storm's reconnects are
#                 cache hits and the first connects pay the RSA verifications
#   forward-hit   --auth-url to loadtest/auth/allow.py (200 {} to any GET) with
#                 --auth-cache-ttl 60s: the reconnects are answered from the gateway's cache
#   forward-miss  the same with --auth-cache-ttl 0s: every connect asks the auth service
#
# With tokens (every mode but off) each client sends its own token as Authorization on every
# connect and reconnect (sse-bench --tokens); the forward modes send the HS256 tokens, which
# allow.py ignores. Each mode gets a fresh stack: its own redis-server on a free port, the
# gateway and sse-publisher pinned to $SERVER_CORE (default 0); the driver, Redis and allow.py
# to $DRIVER_CORE (default 1), as loadtest/compare/run.sh pins them. Server CPU (--pid) is the
# gateway + publisher, as in compare/run.sh. Release builds unless SSE_BIN_DIR names prebuilt
# ones (then BUILD says what they were built from, for the table). Writes $OUT/auth-storm.md (default loadtest/results) and one sse-bench report per mode
# in $OUT/auth-storm/<mode>.json (the table is made by auth/report.py, which can be run again on
# the reports alone). Stops exactly the processes it started.
#
#   loadtest/auth/run.sh                                    # all five modes, full size
#   MODES="off hs256 rs256" CONNECTIONS=2000 loadtest/auth/run.sh
#
# Needs redis-server, openssl, python3, curl and taskset. The forward modes need a gateway
# with --auth-url and --auth-cache-ttl; without them the script says so and stops before
# running anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=loadtest/auth

MODES=${MODES:-"off hs256 rs256 forward-hit forward-miss"}
CONNECTIONS=${CONNECTIONS:-10000}
TOPICS=${TOPICS:-100}
RATE=${RATE:-200}
DURATION=${DURATION:-20s}
PUBLISH_CONNECTIONS=${PUBLISH_CONNECTIONS:-32}
SERVER_CORE=${SERVER_CORE:-0}
DRIVER_CORE=${DRIVER_CORE:-1}
OUT=${OUT:-loadtest/results}
WORK=$(mktemp -d -t sse-auth-storm.XXXXXX)
mkdir -p "$OUT/auth-storm"

# Topics are auth.0 … auth.<TOPICS-1>; every token allows them all and nothing else.
PREFIX=auth.
PATTERN='auth.*'

for mode in $MODES; do
  case $mode in
    off | hs256 | rs256 | forward-hit | forward-miss) ;;
    *) echo "unknown mode $mode (off hs256 rs256 forward-hit forward-miss)" >&2; exit 2 ;;
  esac
done
for tool in redis-server redis-cli openssl python3 curl taskset; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
if [ -n "${SSE_BIN_DIR:-}" ]; then
  bin=$SSE_BIN_DIR
  BUILD=${BUILD:-"prebuilt binaries in $SSE_BIN_DIR"}
else
  cargo build --release --quiet -p sse-gateway -p sse-publisher -p sse-bench
  bin=target/release
  BUILD="release build of $(git describe --always --dirty 2>/dev/null || echo 'this tree')"
fi
case " $MODES " in
  *" forward-"*)
    "$bin/sse-gateway" --help | grep -q -- --auth-cache-ttl || {
      echo "$bin/sse-gateway has no --auth-url/--auth-cache-ttl: leave forward-hit and" \
        "forward-miss out of MODES, or build a gateway that has forward auth" >&2
      exit 1
    } ;;
esac

# --- processes ---------------------------------------------------------------------------
. loadtest/processes.sh

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until URL answers 200; fails, with the log's tail, if PID exits first.
wait_http() { # url pid log
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { echo "process $2 exited; $3:" >&2; tail -5 "$3" >&2; exit 1; }
    sleep 0.1
  done
}

# --- tokens ------------------------------------------------------------------------------
# One token per client, each with its own sub, minted by `sse-gateway token`, two at a time
# (one per core). Valid for two hours: longer than any run.
mint() { # file signing-flags...
  local file=$1
  shift
  echo "minting $CONNECTIONS tokens into $(basename "$file")" >&2
  seq "$CONNECTIONS" | xargs -P 2 -I '{}' "$bin/sse-gateway" token "$@" \
    --subscribe "$PATTERN" --sub 'user-{}' --ttl 2h > "$file"
}

SECRET=$(openssl rand -hex 32)
case " $MODES " in
  *" hs256 "* | *" forward-"*) mint "$WORK/hs256.tokens" --jwt-secret "$SECRET" ;;
esac
case " $MODES " in
  *" rs256 "*)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/jwt.pem" 2>/dev/null
    openssl pkey -in "$WORK/jwt.pem" -pubout -out "$WORK/jwt.pub.pem"
    mint "$WORK/rs256.tokens" --private-key "$WORK/jwt.pem"
    ;;
esac

# --- one mode ----------------------------------------------------------------------------
run_mode() { # mode
  local mode=$1 redis_port gateway_port publisher_port auth_port
  local gateway_flags=() tokens=()
  redis_port=$(free_port)
  gateway_port=$(free_port)
  publisher_port=$(free_port)
  case $mode in
    off) ;;
    hs256)
      gateway_flags=(--jwt-secret "$SECRET")
      tokens=(--tokens "$WORK/hs256.tokens") ;;
    rs256)
      gateway_flags=(--jwt-public-key "$WORK/jwt.pub.pem")
      tokens=(--tokens "$WORK/rs256.tokens") ;;
    forward-hit | forward-miss)
      auth_port=$(free_port)
      taskset -c "$DRIVER_CORE" python3 "$here/allow.py" "$auth_port" &
      started+=($!)
      wait_http "http://127.0.0.1:$auth_port/auth" $! /dev/null
      local ttl=60s
      [ "$mode" = forward-miss ] && ttl=0s
      gateway_flags=(--auth-url "http://127.0.0.1:$auth_port/auth" --auth-cache-ttl "$ttl")
      tokens=(--tokens "$WORK/hs256.tokens") ;;
  esac

  taskset -c "$DRIVER_CORE" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$WORK" --logfile "$WORK/redis-$mode.log" &
  started+=($!)
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done

  taskset -c "$SERVER_CORE" "$bin/sse-gateway" --listen "127.0.0.1:$gateway_port" \
    --redis-url "redis://127.0.0.1:$redis_port" --max-connections $((CONNECTIONS + 1000)) \
    --log-format json "${gateway_flags[@]}" > "$WORK/gateway-$mode.log" 2>&1 &
  started+=($!)
  local gateway=$!
  SSE_PUBLISH_TOKENS=bench taskset -c "$SERVER_CORE" "$bin/sse-publisher" \
    --listen "127.0.0.1:$publisher_port" --redis-url "redis://127.0.0.1:$redis_port" \
    --log-format json > "$WORK/publisher-$mode.log" 2>&1 &
  started+=($!)
  local publisher=$!
  wait_http "http://127.0.0.1:$gateway_port/readyz" "$gateway" "$WORK/gateway-$mode.log"
  wait_http "http://127.0.0.1:$publisher_port/readyz" "$publisher" "$WORK/publisher-$mode.log"

  echo "== reconnect storm, auth $mode" >&2
  # In the background and waited for, so that Ctrl-C stops it at once.
  taskset -c "$DRIVER_CORE" "$bin/sse-bench" reconnect-storm \
    --subscribe-url "http://127.0.0.1:$gateway_port/events?topic={topic}" \
    --publish-url "http://127.0.0.1:$publisher_port/v1/publish" \
    --publish-header 'Authorization: Bearer bench' \
    --ready-url "http://127.0.0.1:$gateway_port/readyz" \
    --pid "$gateway,$publisher" --json "$OUT/auth-storm/$mode.json" \
    --connections "$CONNECTIONS" --topics "$TOPICS" --topic-prefix "$PREFIX" \
    --rate "$RATE" --duration "$DURATION" --storm-share 1.0 \
    --publish-spread --publish-connections "$PUBLISH_CONNECTIONS" "${tokens[@]}" &
  started+=($!)
  wait $!
  stop_all
}

for mode in $MODES; do
  run_mode "$mode"
done

# --- the table ---------------------------------------------------------------------------
python3 "$here/report.py" "$OUT" "$MODES" "$CONNECTIONS" "$TOPICS" "$RATE" "$DURATION" "$BUILD"
echo "results in $OUT: auth-storm.md, auth-storm/<mode>.json" >&2
