#!/usr/bin/env bash
# What an idle topic costs Redis: TOPICS topics (default 100,000) each given 1, then 100 events
# through the publish function (the same FCALL sse-publisher sends), on a fresh redis-server;
# the memory per topic from INFO memory (used_memory after − before, ÷ topics) and from
# MEMORY USAGE of one topic's stream. With --retention-idle that memory is freed once a topic
# has been idle that long; without it, it stays. Writes loadtest/results/idle-topics.md.
#
#   loadtest/idle-topics/run.sh             # TOPICS=100000 EVENTS="1 100" PORT=16801
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d)
# shellcheck source=../processes.sh
source loadtest/processes.sh

TOPICS=${TOPICS:-100000}
EVENTS=${EVENTS:-1 100}
PORT=${PORT:-16801}
OUT=${OUT:-loadtest/results/idle-topics.md}
DATA='{"seq":123456,"body":"a typical small event"}'

redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$WORK/redis.log" &
started+=($!)
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.1; done
cli() { redis-cli -p "$PORT" "$@"; }
cli -x FUNCTION LOAD REPLACE < crates/sse-core/src/schema/publish.lua >/dev/null
used() { cli INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

# The FCALLs of `events` events on every topic, in Redis's protocol, for redis-cli --pipe.
commands() {
  python3 - "$TOPICS" "$1" "$DATA" <<'EOF'
import sys
topics, events, data = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = sys.stdout.buffer
def command(*args):
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        arg = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)
for topic in range(topics):
    key = f"sse:{{user:{topic}/inbox}}:stream"
    one = command("FCALL", "sse_publish", "1", key, data, "", "10000", "0")
    out.write(one * events)
EOF
}

{
  echo "# Redis memory per idle topic"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); $(redis-server --version | cut -d' ' -f1-3)"
  echo "- command: \`loadtest/idle-topics/run.sh\` (TOPICS=$TOPICS)"
  echo "- each event: data \`$DATA\` (${#DATA} bytes), unnamed, on topics \`user:<n>/inbox\`"
  echo
  echo "| events per topic | topics | used_memory before → after | per topic (INFO memory) | MEMORY USAGE of one stream |"
  echo "|---|---|---|---|---|"
} > "$WORK/table.md"
for events in $EVENTS; do
  cli FLUSHALL >/dev/null
  before=$(used)
  commands "$events" | cli --pipe >/dev/null
  after=$(used)
  sample=$(cli MEMORY USAGE 'sse:{user:0/inbox}:stream' SAMPLES 0)
  count=$(cli DBSIZE)
  [ "$count" = "$TOPICS" ] || { echo "expected $TOPICS streams, Redis holds $count" >&2; exit 1; }
  per=$(( (after - before) / TOPICS ))
  echo "| $events | $TOPICS | $before → $after | $per bytes | $sample bytes |" >> "$WORK/table.md"
done
cp "$WORK/table.md" "$OUT"
cat "$OUT"
