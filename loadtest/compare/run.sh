#!/usr/bin/env bash
# Side by side: our stack (sse-gateway + sse-publisher) and Nchan (nginx + nchan, one worker),
# each with its own fresh Redis, each server pinned to the same core ($SERVER_CORE, default 0)
# and the driver (sse-bench) and both Redis servers to the other ($DRIVER_CORE, default 1).
# Every scenario runs against each server in turn, on a freshly started stack, with the same
# driver and the same flags; only the URLs differ. Every publishing scenario spreads its events
# over $PUBLISH_CONNECTIONS publish connections ($RAMP_PUBLISH_CONNECTIONS for the ramp) with
# --publish-spread, so a topic has many publishes in flight against either server (Little's
# law: connections well above rate x reply time). Memory and CPU (--pid) count every process of
# each stack: sse-gateway + sse-publisher; nginx master + worker (PSS as well as RSS, so pages
# the master and worker share count once). Writes to $OUT (default loadtest/results): one
# sse-bench JSON per scenario and server, compare.json, compare.md and the plots
# (latency.svg/png: percentiles vs achieved publish rate; memory.svg/png: RSS vs connections).
#
# The reconnect storm drops every client $STORM_AT into publishing, keeps them away long
# enough to come back about $STORM_BEHIND events behind ($STORM_RATE events/s over
# $STORM_TOPICS topics), spreads their reconnects over $STORM_SPREAD, and times until each has
# caught up. Both servers keep their messages in their own Redis (Nchan in distributed mode),
# so the Redis commands of the storm window are counted for both (--redis-stats): every
# command either issued, in total; the stream reads (XRANGE, XREVRANGE, XINFO, XREAD) only
# mean something for our gateway, Nchan reads its hashes and lists inside EVALSHA scripts.
#
# Fan-out keeps the driver from being what is measured: every stream checks every event, but
# only $TIMED_SAMPLE of them (spread over the topics) parse and time events (--timed-sample), the
# others scan for the sequence numbers alone; above $SHARD_ABOVE streams the driver runs as
# $SHARDS cooperating processes (--shard, started together with --start-at), whose reports
# `sse-bench merge` joins into the one in $OUT (each process's own in $OUT/shards/).
#
# The stalled scenario opens $STALLED streams that read their response head and then nothing
# (SO_RCVBUF 4 KiB), beside $HEALTHY healthy readers, and publishes $STALLED_RATE events/s of
# $STALLED_PAYLOAD bytes: it samples RSS, the kernel's TCP memory and the server's sockets by
# TCP state, to see whether a server that cuts a slow reader frees its kernel memory. Each
# server runs with its defaults: the gateway caps each stream's SO_SNDBUF (--send-buffer,
# 64 KiB) and cuts a client more than --client-buffer (256 KiB) behind with a reset; nginx
# (start-nchan.sh, nchan.conf.template) sets no sndbuf= on its listener, so the kernel
# autotunes each send buffer up to net.ipv4.tcp_wmem's maximum, and closes a client that
# accepts nothing for send_timeout (60 s by default, longer than the run).
#
#   loadtest/compare/run.sh                   # every scenario, full size (about 12 minutes;
#                                             # needs an otherwise idle machine)
#   SCALE=small loadtest/compare/run.sh       # the same at toy sizes (about 3 minutes)
#   SCENARIOS="idle fanout" loadtest/compare/run.sh
#
# Needs redis-server, nginx with libnginx-mod-nchan, python3 with matplotlib, taskset; as root
# it installs what is missing. Builds release binaries unless SSE_BIN_DIR names prebuilt ones.
# Stops exactly the processes it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=loadtest/compare

SCENARIOS=${SCENARIOS:-"idle fanout fanout-10 topics ramp reconnect-storm stalled"}
SERVERS=${SERVERS:-"sse-gateway nchan"}
SCALE=${SCALE:-full}
SERVER_CORE=${SERVER_CORE:-0}
DRIVER_CORE=${DRIVER_CORE:-1}
PUBLISH_CONNECTIONS=${PUBLISH_CONNECTIONS:-32}
RAMP_PUBLISH_CONNECTIONS=${RAMP_PUBLISH_CONNECTIONS:-64}
OUT=${OUT:-loadtest/results}
TIMED_SAMPLE=${TIMED_SAMPLE:-500}
SHARD_ABOVE=${SHARD_ABOVE:-5000} SHARDS=${SHARDS:-2}
WORK=$(mktemp -d -t sse-compare.XXXXXX)
mkdir -p "$OUT" "$OUT/shards"

if [ "$SCALE" = small ]; then
  IDLE=2000 FANOUT=1000 TOPICS=1000 RAMP=200 STORM=1000 SECONDS_=5s STEP=3s
  STALLED=${STALLED:-500} HEALTHY=${HEALTHY:-50}
  RATES=100,500,1000,2000 STORM_BEHIND=${STORM_BEHIND:-10}
else
  IDLE=18000 FANOUT=10000 TOPICS=10000 RAMP=1000 STORM=10000 SECONDS_=20s STEP=10s
  STALLED=${STALLED:-2000} HEALTHY=${HEALTHY:-100}
  RATES=100,200,500,1000,2000,5000,10000,20000 STORM_BEHIND=${STORM_BEHIND:-50}
fi
# The storm: away long enough that each client is STORM_BEHIND events behind its topic
# (rate x away / topics), reconnects spread over STORM_SPREAD, and publishing on for
# STORM_TAIL after the last reconnect so the catch-up happens under live load.
STORM_TOPICS=${STORM_TOPICS:-100} STORM_RATE=${STORM_RATE:-200}
STORM_AT=${STORM_AT:-5} STORM_SPREAD=${STORM_SPREAD:-1} STORM_TAIL=${STORM_TAIL:-5}
STALLED_RATE=${STALLED_RATE:-200} STALLED_PAYLOAD=${STALLED_PAYLOAD:-1024}
STORM_AWAY_MS=$((STORM_BEHIND * STORM_TOPICS * 1000 / STORM_RATE))
STORM_SECONDS_MS=$(((STORM_AT + STORM_SPREAD + STORM_TAIL) * 1000 + STORM_AWAY_MS))

# --- what the machine needs --------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || missing+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing: ${missing[*]} (apt-get install -y ${missing[*]})" >&2; exit 1; }
  apt-get install -y "${missing[@]}"
fi
python3 -c 'import matplotlib' 2>/dev/null || pip install --quiet matplotlib
# SSE_BIN_DIR: a directory that already holds sse-gateway, sse-publisher and sse-bench.
if [ -n "${SSE_BIN_DIR:-}" ]; then
  bin=$SSE_BIN_DIR
else
  cargo build --release --quiet -p sse-gateway -p sse-publisher -p sse-bench
  bin=target/release
fi

# --- processes ---------------------------------------------------------------------------
. loadtest/processes.sh

start_redis() { # port
  taskset -c "$DRIVER_CORE" redis-server --port "$1" --bind 127.0.0.1 --save "" \
    --appendonly no --dir "$WORK" --logfile "$WORK/redis-$1.log" &
  started+=($!)
  until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.1; done
}

wait_http() { until curl -fsS -o /dev/null "$1" 2>/dev/null; do sleep 0.1; done; }

# Starts one server's stack; sets TARGET (sse-bench flags) and PIDS (every process of the
# stack but its Redis, so memory and CPU are counted alike for both).
start_server() { # name
  case $1 in
    sse-gateway)
      start_redis 16601
      taskset -c "$SERVER_CORE" "$bin/sse-gateway" --listen 127.0.0.1:18080 \
        --redis-url redis://127.0.0.1:16601 --max-connections 19000 --log-format json \
        > "$WORK/gateway.log" 2>&1 &
      started+=($!)
      local gateway=$!
      SSE_PUBLISH_TOKENS=bench taskset -c "$SERVER_CORE" "$bin/sse-publisher" \
        --listen 127.0.0.1:18081 --redis-url redis://127.0.0.1:16601 --log-format json \
        > "$WORK/publisher.log" 2>&1 &
      started+=($!)
      local publisher=$!
      wait_http http://127.0.0.1:18080/readyz
      wait_http http://127.0.0.1:18081/readyz
      TARGET=(--subscribe-url 'http://127.0.0.1:18080/events?topic={topic}'
        --publish-url http://127.0.0.1:18081/v1/publish
        --publish-header 'Authorization: Bearer bench')
      READY=(--ready-url http://127.0.0.1:18080/readyz)
      REDIS_STATS=(--redis-stats redis://127.0.0.1:16601)
      PIDS="$gateway,$publisher"
      ;;
    nchan)
      start_redis 16602
      local pids
      pids=$("$here/start-nchan.sh" "$WORK/nchan" 18090 16602 "$SERVER_CORE")
      local master worker
      master=$(sed -n 's/^MASTER_PID=//p' <<< "$pids")
      worker=$(sed -n 's/^WORKER_PID=//p' <<< "$pids")
      started+=("$master")
      TARGET=(--subscribe-url 'http://127.0.0.1:18090/sub/{topic}'
        --publish-url 'http://127.0.0.1:18090/pub/{topic}' --publish-body '{data}')
      READY=()
      # Nchan's messages live in this Redis too (nchan_redis_storage_mode distributed).
      REDIS_STATS=(--redis-stats redis://127.0.0.1:16602)
      PIDS="$master,$worker"
      ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
}

bench() { # server scenario sse-bench-subcommand flags...
  local server=$1 scenario=$2 subcommand=$3
  shift 3
  echo "== $scenario against $server" >&2
  # In the background and waited for, so that Ctrl-C stops it at once.
  taskset -c "$DRIVER_CORE" "$bin/sse-bench" "$subcommand" "${TARGET[@]}" --pid "$PIDS" \
    --json "$OUT/$scenario.$server.json" "$@" &
  started+=($!)
  wait $!
}

# A fan-out: one driver for up to SHARD_ABOVE streams, else SHARDS cooperating ones, all on the
# driver's core, merged into one report; every stream checked, TIMED_SAMPLE of them timed.
fanout_bench() { # server scenario connections flags...
  local server=$1 scenario=$2 connections=$3
  shift 3
  local sample=(--timed-sample "$TIMED_SAMPLE")
  if [ "$connections" -le "$SHARD_ABOVE" ]; then
    bench "$server" "$scenario" fanout --connections "$connections" "${sample[@]}" "$@"
    return
  fi
  echo "== $scenario against $server ($SHARDS driver processes)" >&2
  # Time for every shard to open its streams (at --ramp 5000/s) and settle, then start.
  local start_at=$(( $(date +%s%3N) + 3000 + connections / SHARDS / 5 ))
  local prefix="bench-$(date +%s)-"
  local shard pids=() reports=()
  for ((shard = 0; shard < SHARDS; shard++)); do
    local report="$OUT/shards/$scenario.$server.$shard.json"
    reports+=("$report")
    taskset -c "$DRIVER_CORE" "$bin/sse-bench" fanout "${TARGET[@]}" --pid "$PIDS" \
      --connections "$connections" "${sample[@]}" --shard "$shard/$SHARDS" \
      --start-at "$start_at" --topic-prefix "$prefix" --json "$report" "$@" \
      > "$WORK/$scenario.$server.$shard.txt" &
    started+=($!)
    pids+=($!)
  done
  wait "${pids[@]}"
  "$bin/sse-bench" merge "${reports[@]}" --json "$OUT/$scenario.$server.json"
}

# The same publishing for every server: events spread over many connections.
SPREAD=(--publish-spread --publish-connections "$PUBLISH_CONNECTIONS")
RAMP_SPREAD=(--publish-spread --publish-connections "$RAMP_PUBLISH_CONNECTIONS")

for scenario in $SCENARIOS; do
  for server in $SERVERS; do
    start_server "$server"
    case $scenario in
      idle) bench "$server" idle idle --connections "$IDLE" --duration 5s ;;
      fanout) fanout_bench "$server" fanout "$FANOUT" --rate 100 \
        --duration "$SECONDS_" "${SPREAD[@]}" ;;
      # The same fan-out at a tenth of the rate.
      fanout-10) fanout_bench "$server" fanout-10 "$FANOUT" --rate 10 \
        --duration "$SECONDS_" "${SPREAD[@]}" ;;
      topics) bench "$server" topics topics --connections "$TOPICS" --topics $((TOPICS / 10)) \
        --rate 1000 --duration "$SECONDS_" "${SPREAD[@]}" ;;
      ramp) bench "$server" ramp ramp --connections "$RAMP" --topics 10 --rates "$RATES" \
        --step "$STEP" --max-p99 200ms "${RAMP_SPREAD[@]}" ;;
      reconnect-storm) bench "$server" reconnect-storm reconnect-storm --connections "$STORM" \
        --topics "$STORM_TOPICS" --rate "$STORM_RATE" --duration "${STORM_SECONDS_MS}ms" \
        --storm-at "${STORM_AT}s" --storm-away "${STORM_AWAY_MS}ms" \
        --storm-spread "${STORM_SPREAD}s" --storm-share 1.0 "${SPREAD[@]}" \
        "${READY[@]}" "${REDIS_STATS[@]}" ;;
      stalled) bench "$server" stalled stalled --connections "$STALLED" --healthy "$HEALTHY" \
        --rate "$STALLED_RATE" --payload "$STALLED_PAYLOAD" --duration "$SECONDS_" \
        --sample-interval 500ms --hold-after 5s "${SPREAD[@]}" ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    stop_all
  done
done

# --- the results -------------------------------------------------------------------------
python3 - "$OUT" "$SCALE" "$PUBLISH_CONNECTIONS" "$RAMP_PUBLISH_CONNECTIONS" "$SCENARIOS" \
  "$TIMED_SAMPLE" "$SHARD_ABOVE" "$SHARDS" <<'PY'
import json, pathlib, platform, subprocess, sys, datetime
out, scale = pathlib.Path(sys.argv[1]), sys.argv[2]
publish_connections, ramp_publish_connections = sys.argv[3], sys.argv[4]
chosen = sys.argv[5].split()
timed_sample, shard_above, shards = sys.argv[6], sys.argv[7], sys.argv[8]
scenarios = {}
for path in sorted(out.glob("*.*.json")):
    scenario, server = path.name[: -len(".json")].split(".", 1)
    scenarios.setdefault(scenario, {})[server] = json.loads(path.read_text())
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
nchan = subprocess.run(["sh", "-c", "dpkg-query -W -f '${Version}' libnginx-mod-nchan"],
                       capture_output=True, text=True).stdout.strip()
compare = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": f"{platform.machine()}, {cpu}, kernel {platform.release()}; servers pinned "
               f"to one core, driver and both Redis servers on the other",
    "command": "".join([
        "" if scale == "full" else f"SCALE={scale} ",
        "" if chosen == "idle fanout fanout-10 topics ramp reconnect-storm stalled".split()
        else f"SCENARIOS=\"{' '.join(chosen)}\" ",
        "loadtest/compare/run.sh",
    ]),
    "servers": ["sse-gateway", "nchan"],
    "versions": {"nchan": nchan},
    "processes": {"sse-gateway": "sse-gateway + sse-publisher (--pid both)",
                  "nchan": "nginx master + worker (--pid both)"},
    "redis": {"sse-gateway": "its own redis-server (streams; --redis-stats)",
              "nchan": "its own redis-server (distributed mode; --redis-stats)"},
    "publishing": f"--publish-spread over {publish_connections} connections "
                  f"({ramp_publish_connections} for the ramp), the same for both servers",
    "driver": f"fan-out: every stream checked, {timed_sample} timed (--timed-sample); above "
              f"{shard_above} streams {shards} driver processes (--shard), merged",
    "scenarios": scenarios,
}
(out / "compare.json").write_text(json.dumps(compare, indent=1) + "\n")
PY
python3 "$here/report.py" "$OUT/compare.json" "$OUT"
echo "results in $OUT: compare.md, compare.json, latency.svg, memory.svg" >&2
