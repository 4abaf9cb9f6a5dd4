#!/usr/bin/env bash
# What the fleet-wide subscriber counts cost Redis at steady state: one gateway (release build,
# default --count-refresh 10s) holding CONNECTIONS streams (default 18,000) on TOPICS topics
# (1,800), held by `sse-bench idle`; after the ramp and the first refreshes, Redis's
# INFO commandstats are reset and read again WINDOW seconds (60) later. Prints the commands of
# that window and the number of topics with a count.
#
# With PRESENCE=on the gateway also runs --presence (with --jwt-secret), and every stream
# sends a token of its own subject (user-1 … user-N, minted by `sse-gateway token`): the cost
# of counts and presence together, with one present subject per stream, the most there can be.
# It then also prints the presence keys and Redis's memory.
#
#   loadtest/counts/run.sh
#   PRESENCE=on loadtest/counts/run.sh
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
PRESENCE=${PRESENCE:-off}
B=target/release

cargo build --release --quiet -p sse-gateway -p sse-bench
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$WORK/redis.log" &
started+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
presence_flags=() tokens=()
if [ "$PRESENCE" = on ]; then
  secret=$(openssl rand -hex 32)
  echo "minting $CONNECTIONS tokens, one subject each" >&2
  seq "$CONNECTIONS" | xargs -P 2 -I '{}' "$B/sse-gateway" token --jwt-secret "$secret" \
    --subscribe '*' --sub 'user-{}' --ttl 2h >"$WORK/tokens"
  presence_flags=(--jwt-secret "$secret" --presence)
  tokens=(--tokens "$WORK/tokens")
fi
"$B/sse-gateway" --listen "127.0.0.1:$GATEWAY_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
  --max-connections 19000 --log-format json "${presence_flags[@]}" >"$WORK/gateway.log" 2>&1 &
gateway=$!
started+=($gateway)
until curl -fs "http://127.0.0.1:$GATEWAY_PORT/readyz" >/dev/null; do sleep 0.1; done
"$B/sse-bench" idle --subscribe-url "http://127.0.0.1:$GATEWAY_PORT/events?topic={topic}" \
  --connections "$CONNECTIONS" --topics "$TOPICS" --duration "$((WINDOW + 35))s" \
  --pid "$gateway" --sources 127.0.0.1,127.0.0.2 "${tokens[@]}" >"$WORK/bench.txt" 2>&1 &
started+=($!)
sleep 30 # the ramp (5,000 connections/s) and the refreshes that write its counts
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
sleep "$WINDOW"
echo "Redis commands in $WINDOW s, $CONNECTIONS streams on $TOPICS topics held steady:"
redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | grep '^cmdstat_' | grep -v resetstat
echo "topics with a count: $(redis-cli -p "$REDIS_PORT" --scan --pattern 'sse:*:subscribers' | wc -l)"
if [ "$PRESENCE" = on ]; then
  echo "topics with presence: $(redis-cli -p "$REDIS_PORT" --scan --pattern 'sse:*:present' | wc -l)," \
    "present subjects: $(redis-cli -p "$REDIS_PORT" --scan --pattern 'sse:*:present' |
      while read -r key; do redis-cli -p "$REDIS_PORT" HLEN "$key"; done | awk '{s += $1} END {print s}')"
  echo "companion streams: $(redis-cli -p "$REDIS_PORT" --scan --pattern 'sse:{presence:*}:stream' | wc -l)"
fi
echo "redis memory: $(redis-cli -p "$REDIS_PORT" INFO memory | tr -d '\r' | grep '^used_memory:')"
