#!/usr/bin/env bash
# The reconnect storm against one gateway node, with its replay cache on and then off, in one
# run: every client drops at once, stays away while publishing goes on, and reconnects within
# `STORM_SPREAD` with `Last-Event-ID`. Writes one sse-bench JSON per case and a table:
#
#   loadtest/storm/run.sh        # CONNECTIONS=18000 TOPICS=180 AWAY=50s: 50 events behind
#   CASES="on" loadtest/storm/run.sh
#
# Each case gets a fresh Redis, gateway and publisher: the gateway and the publisher on
# SERVER_CORE, the driver and Redis on DRIVER_CORE. "off" is `--replay-cache-events 0`: every
# resume reads the Redis stream (the shared reads still coalesce). The driver raises its file
# limit to the hard one: 18,000 streams and 32 publish connections fit under 20,000, which is
# why the default is not the 20,000 clients on 200 topics one might want.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
# shellcheck source=../processes.sh
source loadtest/processes.sh

CONNECTIONS=${CONNECTIONS:-18000}
TOPICS=${TOPICS:-180}
RATE=${RATE:-$TOPICS}
AWAY=${AWAY:-50s}
STORM_SPREAD=${STORM_SPREAD:-1s}
DURATION=${DURATION:-70s}
CASES=${CASES:-on off}
SERVER_CORE=${SERVER_CORE:-0}
DRIVER_CORE=${DRIVER_CORE:-1}
REDIS_PORT=${REDIS_PORT:-16701}
GATEWAY_PORT=${GATEWAY_PORT:-18180}
PUBLISHER_PORT=${PUBLISHER_PORT:-18181}
OUT=${OUT:-loadtest/results}
B=target/release

cargo build --release --quiet -p sse-gateway -p sse-publisher -p sse-bench

wait_http() { until curl -fsS "$1" >/dev/null 2>&1; do sleep 0.1; done; }

storm() {
  local cache=$1
  local flags=()
  [ "$cache" = off ] && flags=(--replay-cache-events 0)
  taskset -c "$DRIVER_CORE" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --logfile "$WORK/redis-$cache.log" &
  started+=($!)
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
  taskset -c "$SERVER_CORE" "$B/sse-gateway" --listen "127.0.0.1:$GATEWAY_PORT" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT" --max-connections 19000 --log-format json \
    "${flags[@]}" >"$WORK/gateway-$cache.log" 2>&1 &
  local gateway=$!
  started+=($gateway)
  SSE_PUBLISH_TOKENS=bench taskset -c "$SERVER_CORE" "$B/sse-publisher" \
    --listen "127.0.0.1:$PUBLISHER_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --log-format json >"$WORK/publisher-$cache.log" 2>&1 &
  local publisher=$!
  started+=($publisher)
  wait_http "http://127.0.0.1:$GATEWAY_PORT/readyz"
  wait_http "http://127.0.0.1:$PUBLISHER_PORT/readyz"
  taskset -c "$DRIVER_CORE" "$B/sse-bench" reconnect-storm \
    --subscribe-url "http://127.0.0.1:$GATEWAY_PORT/events?topic={topic}" \
    --publish-url "http://127.0.0.1:$PUBLISHER_PORT/v1/publish" \
    --publish-header 'Authorization: Bearer bench' \
    --connections "$CONNECTIONS" --topics "$TOPICS" --rate "$RATE" --duration "$DURATION" \
    --ramp 5000 --publish-spread --publish-connections 32 \
    --sources 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4 \
    --storm-at 5s --storm-away "$AWAY" --storm-spread "$STORM_SPREAD" --storm-share 1.0 \
    --redis-stats "redis://127.0.0.1:$REDIS_PORT" \
    --ready-url "http://127.0.0.1:$GATEWAY_PORT/readyz" \
    --pid "$gateway,$publisher" --json "$OUT/storm-$CONNECTIONS-cache-$cache.json" \
    >"$WORK/bench-$cache.txt"
  stop_all
}

for cache in $CASES; do
  echo "storm: $CONNECTIONS clients on $TOPICS topics, replay cache $cache" >&2
  storm "$cache"
done

python3 - "$OUT" "$CONNECTIONS" $CASES <<'EOF'
import json, sys
out, connections, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
print("| replay cache | behind at reconnect (mean) | all caught up after the drop | per client from reconnect p50 / p99 | resumed events p99 | Redis stream reads | Redis commands | server CPU while reconnecting | server RSS peak | driver CPU while reconnecting | missing / duplicated |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for case in cases:
    r = json.load(open(f"{out}/storm-{connections}-cache-{case}.json"))
    s = r["storm"]
    c, w = s["catch_up"], s["window"]
    rc, redis = w["reconnecting"], s.get("redis_commands", {})
    behind = s["behind_at_reconnect"]
    resumed = s["resumed_events_from_reconnect_ms"]
    print(f"| {case} | {behind['mean']:.1f} | {c['seconds_until_all']} s "
          f"| {c['from_reconnect_ms']['p50']:.0f} / {c['from_reconnect_ms']['p99']:.0f} ms "
          f"| {resumed['p99']:.0f} ms | {redis.get('read_commands')} | {redis.get('total')} "
          f"| {rc['server_cpu_percent']:.0f} % | {w['server_rss_peak_kib'] / 1024:.0f} MiB "
          f"| {rc['driver_cpu_percent']:.0f} % | {r['events']['missing']} / {r['events']['duplicated']} |")
EOF
