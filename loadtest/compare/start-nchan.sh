#!/usr/bin/env bash
# Usage: start-nchan.sh WORKDIR PORT REDIS_PORT CORE
# Renders nchan.conf.template into WORKDIR and starts a foreground nginx (one worker) in the
# background, pinned to CPU CORE. The Redis on REDIS_PORT must already be running. Prints
# MASTER_PID=<pid> and WORKER_PID=<pid> once /sub/ answers; stop it with kill MASTER_PID.
# NCHAN_MODULE overrides the module path (default: Debian's libnginx-mod-nchan).
set -euo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 WORKDIR PORT REDIS_PORT CORE" >&2
    exit 2
fi
workdir=$(mkdir -p "$1" && cd "$1" && pwd)
port=$2 redis_port=$3 core=$4
module=${NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
here=$(cd "$(dirname "$0")" && pwd)

[ -f "$module" ] || { echo "no nchan module at $module (apt-get install libnginx-mod-nchan)" >&2; exit 1; }
mkdir -p "$workdir"/tmp/{body,proxy,fastcgi,uwsgi,scgi}
sed -e "s|{{WORKDIR}}|$workdir|g" -e "s|{{PORT}}|$port|g" \
    -e "s|{{REDIS_PORT}}|$redis_port|g" -e "s|{{MODULE}}|$module|g" \
    "$here/nchan.conf.template" > "$workdir/nginx.conf"

taskset -c "$core" nginx -p "$workdir" -c "$workdir/nginx.conf" -e "$workdir/error.log" \
    < /dev/null > "$workdir/nginx.out" 2>&1 &
master=$!

# An EventSource request never ends by itself: give it 0.3 s and look at the status code
# (Nchan answers 403 to a request without Accept: text/event-stream).
code=000
for _ in $(seq 50); do
    kill -0 "$master" 2>/dev/null || break
    code=$(curl -s -o /dev/null -m 0.3 -w '%{http_code}' \
        -H 'Accept: text/event-stream' "http://127.0.0.1:$port/sub/__ready" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
done
worker=$(pgrep -P "$master" || true)
if [ "$code" != 200 ] || [ "$(wc -w <<< "$worker")" != 1 ]; then
    echo "nchan did not start (status $code, workers '$worker'):" >&2
    tail -n 20 "$workdir/nginx.out" "$workdir/error.log" >&2 || true
    kill "$master" 2>/dev/null || true
    exit 1
fi
echo "MASTER_PID=$master"
echo "WORKER_PID=$worker"
