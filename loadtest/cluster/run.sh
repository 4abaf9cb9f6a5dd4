#!/usr/bin/env bash
# How the publish function scales with Redis Cluster shards: the same redis-benchmark load of
# `FCALL sse_publish` (the cluster library, announcing with SPUBLISH) against a cluster of one
# master and against one of three, on this machine, in one run. Writes
# loadtest/results/cluster-shards.md.
#
#   loadtest/cluster/run.sh                  # REQUESTS=400000 CLIENTS=64 PIPELINE=16 BASE=7400
#
# One node holds all 16384 slots in the first cluster; the second is made by
# `redis-cli --cluster create` with three masters and no replicas. redis-benchmark runs with
# two threads, and against three masters with --cluster (each of its clients talks to one
# master, with a key in that master's slots; it refuses --cluster for a single node). It shares the machine with the masters, so on a small machine the ratio is
# bounded by cores, not by Redis: the table states the core count.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
# shellcheck source=../processes.sh
source loadtest/processes.sh

REQUESTS=${REQUESTS:-400000}
CLIENTS=${CLIENTS:-64}
PIPELINE=${PIPELINE:-16}
BASE=${BASE:-7400}
# Every master on SERVER_CORE, redis-benchmark on DRIVER_CORE (cores as taskset numbers them).
SERVER_CORE=${SERVER_CORE:-0}
DRIVER_CORE=${DRIVER_CORE:-1}
OUT=${OUT:-loadtest/results/cluster-shards.md}
LIBRARY=$(sed "s/^local ANNOUNCE = 'PUBLISH'/local ANNOUNCE = 'SPUBLISH'/" crates/sse-core/src/schema/publish.lua)

node() {
  local port=$1
  mkdir -p "$WORK/$port"
  taskset -c "$SERVER_CORE" redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$WORK/$port/nodes.conf" --dir "$WORK/$port" \
    --save "" --appendonly no --logfile "$WORK/$port/redis.log" &
  started+=($!)
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
}

until_ok() {
  for port in "$@"; do
    until redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do sleep 0.1; done
  done
}

# "<events/s> <driver CPU %>" of the publish function against the cluster that `port`
# belongs to; extra arguments go to redis-benchmark (--cluster for several masters: it
# refuses one).
measure() {
  local port=$1
  shift
  redis-cli --cluster call "127.0.0.1:$port" FUNCTION LOAD REPLACE "$LIBRARY" --cluster-only-masters >/dev/null
  local rate
  rate=$( { TIMEFORMAT=%P; time taskset -c "$DRIVER_CORE" redis-benchmark "$@" -h 127.0.0.1 -p "$port" \
    -n "$REQUESTS" -c "$CLIENTS" -P "$PIPELINE" --threads 2 -q \
    FCALL sse_publish 1 'sse:{tag}:stream' '{"seq":123456,"body":"a typical small event"}' '' 1000 0 |
    tr '\r' '\n' | awk '/requests per second/ {for (i = 1; i <= NF; i++) if ($i == "requests") r = $(i - 1)} END {printf "%.0f", r}'; } 2>"$WORK/cpu")
  echo "$rate $(tr -d ' \n' <"$WORK/cpu")"
}

node "$BASE"
redis-cli -p "$BASE" cluster addslotsrange 0 16383 >/dev/null
until_ok "$BASE"
read -r one one_cpu <<<"$(measure "$BASE")"

for n in 1 2 3; do node $((BASE + 10 + n)); done
redis-cli --cluster create 127.0.0.1:$((BASE + 11)) 127.0.0.1:$((BASE + 12)) 127.0.0.1:$((BASE + 13)) \
  --cluster-replicas 0 --cluster-yes >/dev/null
until_ok $((BASE + 11)) $((BASE + 12)) $((BASE + 13))
read -r three three_cpu <<<"$(measure $((BASE + 11)) --cluster)"
stop_all

ratio=$(awk -v a="$one" -v b="$three" 'BEGIN { printf "%.2f", b / a }')
version=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')
{
  echo "# Publish function: one shard vs three"
  echo
  echo "\`loadtest/cluster/run.sh\`, $(date -u +%Y-%m-%d), Redis $version, $(nproc) cores: masters on core"
  echo "$SERVER_CORE, redis-benchmark (2 threads) on core $DRIVER_CORE; $REQUESTS calls of \`FCALL sse_publish\`"
  echo "(cluster library), $CLIENTS clients, pipeline $PIPELINE. Driver CPU is of one core (100 = the"
  echo "whole core; above 85 the driver, not Redis, may be the limit)."
  echo
  echo "| cluster | events/s | driver CPU % |"
  echo "|---|---|---|"
  echo "| 1 master | $one | $one_cpu |"
  echo "| 3 masters, same core | $three | $three_cpu |"
  echo "| ratio (3 / 1) | $ratio | |"
} >"$OUT"
cat "$OUT"
