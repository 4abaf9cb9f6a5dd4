#!/usr/bin/env bash
# What the fleet-wide subscriber counts cost Redis at steady state: one gateway (release build,
# default --count-refresh 10s) holding CONNECTIONS streams (default 18,000) on TOPICS topics
# (1,800), held by `sse-bench idle`; after the ramp and the first refreshes, Redis's
# INFO commandstats are reset and read again WINDOW seconds (60) later. Prints the commands of
# that window and the number of topics with a count.
#
#   loadtest/counts/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
# shellcheck source=../processes.sh
source loadtest/processes.sh

CONNECTIONS=${CONNECTIONS:-18000}
TOPICS=${TOPICS:-1800}
WINDOW=${WINDOW:-60}
REDIS_PORT=${REDIS_PORT:-16811}
GATEWAY_PORT=${GATEWAY_PORT:-18811}
B=target/release

cargo build --release --quiet -p sse-gateway -p sse-bench
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$WORK/redis.log" &
started+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
"$B/sse-gateway" --listen "127.0.0.1:$GATEWAY_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
  --max-connections 19000 --log-format json >"$WORK/gateway.log" 2>&1 &
gateway=$!
started+=($gateway)
until curl -fs "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null; do sleep 0.1; done
"$B/sse-bench" idle --subscribe-url "http://127.0.0.1:$GATEWAY_PORT/events?topic={topic}" \
  --connections "$CONNECTIONS" --topics "$TOPICS" --duration "$((WINDOW + 35))s" \
  --pid "$gateway" --sources 127.0.0.1,127.0.0.2 >"$WORK/bench.txt" 2>&1 &
started+=($!)
sleep 30 # the ramp (5,000 connections/s) and the refreshes that write its counts
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
sleep "$WINDOW"
echo "Redis commands in $WINDOW s, $CONNECTIONS streams on $TOPICS topics held steady:"
redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | grep '^cmdstat_' | grep -v resetstat
echo "topics with a count: $(redis-cli -p "$REDIS_PORT" --scan --pattern 'sse:*:subscribers' | wc -l)"
