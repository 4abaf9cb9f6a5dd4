#!/usr/bin/env bash
# Runs the system on this machine, in the foreground, without Docker:
#   - redis-server on $REDIS_PORT (default 6379), unless a Redis already answers there; with
#     --redis-cluster (or REDIS_CLUSTER=on), a Redis Cluster instead: 3 masters and 3 replicas
#     on $CLUSTER_PORTS (default "7000 7001 7002 7003 7004 7005"; cluster bus ports
#     $CLUSTER_BUS_PORTS, default each port + 10000), with AOF, and both binaries run with
#     --redis-cluster;
#   - sse-publisher on $PUBLISHER_PORT (default 8081), accepting the token $SSE_TOKEN
#     (default "dev-token": for local use only);
#   - one sse-gateway per port in $GATEWAY_PORTS (default "8080 8082"): two nodes, so a client
#     can resume on the other one;
#   - nginx on $NGINX_HOST:$NGINX_PORT (default 127.0.0.1:8000) in front of them, with the
#     project's nginx/nginx.conf and the demo page, and over TLS with HTTP/2 on
#     $NGINX_HOST:$NGINX_TLS_PORT (default 8443) with a self-signed certificate made by
#     `sse-gateway tls-cert` into the state directory (NGINX=off leaves it out; without nginx
#     installed the script says so and runs the rest).
# SSE_PUBLISHER_BIN and SSE_GATEWAY_BIN name prebuilt binaries; without them the script runs
# `cargo build --release`, the same build (same packages, same features) a later
# `cargo build --release` finds up to date.
# Ctrl-C (or SIGTERM) stops exactly what this script started.
#
# With subscriber tokens: every process inherits the environment, so
#   SSE_JWT_SECRET=local-secret deploy/local/run.sh
# makes both gateways require a token on /events (any other SSE_JWT_* or SSE_* flag variable
# reaches them the same way); the publisher also accepts JWTs then, and still $SSE_TOKEN. Mint a
# token and paste it into the demo page's Token field (the page sends it as access_token):
#   target/release/sse-gateway token --jwt-secret local-secret --subscribe demo --ttl 1m
# When it expires the page shows "token expired", and resumes from its last event, losing
# nothing, as soon as a new token is in the field.
set -euo pipefail
cd "$(dirname "$0")/../.."

REDIS_PORT=${REDIS_PORT:-6379}
REDIS_CLUSTER=${REDIS_CLUSTER:-off}
if [ "${1:-}" = --redis-cluster ]; then REDIS_CLUSTER=on; fi
CLUSTER_PORTS=${CLUSTER_PORTS:-"7000 7001 7002 7003 7004 7005"}
CLUSTER_BUS_PORTS=${CLUSTER_BUS_PORTS:-}
PUBLISHER_PORT=${PUBLISHER_PORT:-8081}
GATEWAY_PORTS=${GATEWAY_PORTS:-"8080 8082"}
NGINX_HOST=${NGINX_HOST:-127.0.0.1}
NGINX_PORT=${NGINX_PORT:-8000}
NGINX_TLS_PORT=${NGINX_TLS_PORT:-8443}
NGINX=${NGINX:-on}
SSE_TOKEN=${SSE_TOKEN:-dev-token}
STATE_DIR=${STATE_DIR:-$(mktemp -d -t sse-local.XXXXXX)}

started=()
stop() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

# Waits until `check` (the rest of the arguments) succeeds, for at most a minute; ends the script
# saying why if process $2 (named $1) exits first or the minute passes: a port already taken
# makes a server exit at once, and waiting for it would wait forever.
wait_for() {
  local name=$1 pid=$2 deadline=$((SECONDS + 60))
  shift 2
  until "$@" >/dev/null 2>&1; do
    # A process that exited stays a zombie until `wait`: read its state, not just its pid.
    if [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)" != [^ZX]* ]]; then
      echo "$name exited before it was ready (see its message above)" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name was not ready within 60 s" >&2
      exit 1
    fi
    sleep 0.1
  done
}

need_redis_server() {
  command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install -y redis-server" >&2; exit 1; }
}
redis_flags=()
if [ "$REDIS_CLUSTER" = on ]; then
  need_redis_server
  read -r -a ports <<<"$CLUSTER_PORTS"
  read -r -a bus_ports <<<"$CLUSTER_BUS_PORTS"
  [ "${#ports[@]}" -eq 6 ] || { echo "CLUSTER_PORTS must name 6 ports (3 masters, 3 replicas)" >&2; exit 1; }
  nodes=()
  for i in "${!ports[@]}"; do
    port=${ports[$i]}
    mkdir -p "$STATE_DIR/$port"
    redis-server --port "$port" --cluster-port "${bus_ports[$i]:-$((port + 10000))}" \
      --cluster-enabled yes --cluster-config-file "$STATE_DIR/$port/nodes.conf" \
      --cluster-node-timeout 2000 --bind 127.0.0.1 --dir "$STATE_DIR/$port" --appendonly yes \
      --save "" --logfile "$STATE_DIR/$port/redis.log" &
    started+=($!)
    nodes+=("127.0.0.1:$port")
  done
  for i in "${!ports[@]}"; do
    wait_for "redis-server on port ${ports[$i]}" "${started[$i]}" redis-cli -p "${ports[$i]}" ping
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  for i in "${!ports[@]}"; do
    wait_for "the cluster node on port ${ports[$i]}" "${started[$i]}" \
      sh -c "redis-cli -p ${ports[$i]} cluster info | grep -q '^cluster_state:ok'"
  done
  REDIS_URL="redis://${nodes[0]},redis://${nodes[1]},redis://${nodes[2]}"
  redis_flags=(--redis-cluster)
  echo "redis cluster: 3 masters and 3 replicas on ports ${ports[*]} (AOF in $STATE_DIR)"
elif redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "using the Redis already running on port $REDIS_PORT"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
else
  need_redis_server
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE_DIR" --appendonly yes \
    --save "" --logfile "$STATE_DIR/redis.log" &
  started+=($!)
  wait_for "redis-server on port $REDIS_PORT" "$!" redis-cli -p "$REDIS_PORT" ping
  echo "redis-server on port $REDIS_PORT (AOF in $STATE_DIR)"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
fi

if [ -z "${SSE_PUBLISHER_BIN:-}" ] || [ -z "${SSE_GATEWAY_BIN:-}" ]; then
  cargo build --release --quiet
fi
SSE_PUBLISHER_BIN=${SSE_PUBLISHER_BIN:-target/release/sse-publisher}
SSE_GATEWAY_BIN=${SSE_GATEWAY_BIN:-target/release/sse-gateway}

SSE_PUBLISH_TOKENS="$SSE_TOKEN" "$SSE_PUBLISHER_BIN" --listen "127.0.0.1:$PUBLISHER_PORT" \
  --redis-url "$REDIS_URL" "${redis_flags[@]}" &
started+=($!)
publisher_pid=$!
gateway_pids=()
for port in $GATEWAY_PORTS; do
  # nginx runs on this machine: its X-Forwarded-For names the client.
  "$SSE_GATEWAY_BIN" --listen "127.0.0.1:$port" --redis-url "$REDIS_URL" "${redis_flags[@]}" \
    --trusted-proxy 127.0.0.1 &
  started+=($!)
  gateway_pids+=($!)
done

wait_for "sse-publisher on port $PUBLISHER_PORT" "$publisher_pid" \
  curl -fsS --max-time 2 "http://127.0.0.1:$PUBLISHER_PORT/readyz"
i=0
for port in $GATEWAY_PORTS; do
  wait_for "sse-gateway on port $port" "${gateway_pids[$i]}" curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz"
  i=$((i + 1))
done

nginx_missing=
if [ "$NGINX" = on ] && ! command -v nginx >/dev/null; then
  nginx_missing=yes
  NGINX=off
fi
if [ "$NGINX" = on ]; then
  # The same nginx.conf as docker-compose, with upstreams pointing at the local processes.
  prefix="$STATE_DIR/nginx"
  mkdir -p "$prefix"
  # nginx's workers drop root for an unprivileged user, which must reach the demo page.
  chmod 755 "$STATE_DIR"
  sed -e "s/listen 8000;/listen $NGINX_HOST:$NGINX_PORT;/" \
    -e "s/listen 8443 ssl http2;/listen $NGINX_HOST:$NGINX_TLS_PORT ssl http2;/" \
    nginx/nginx.conf > "$prefix/nginx.conf"
  "$SSE_GATEWAY_BIN" tls-cert --out "$prefix/tls" --host "$NGINX_HOST" >/dev/null
  ln -sfn "$PWD/deploy/demo" "$prefix/demo"
  {
    echo "upstream sse_gateways {"
    echo "    least_conn;"
    for port in $GATEWAY_PORTS; do echo "    server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"; done
    echo "    keepalive 64;"
    echo "}"
    echo "upstream sse_publisher { server 127.0.0.1:$PUBLISHER_PORT; keepalive 16; }"
  } > "$prefix/upstreams.conf"
  nginx -p "$prefix" -c nginx.conf -g 'daemon off;' &
  started+=($!)
  wait_for "nginx on port $NGINX_PORT" "$!" curl -fsS --max-time 2 "http://$NGINX_HOST:$NGINX_PORT/nginx-health"
  echo "nginx         on http://$NGINX_HOST:$NGINX_PORT/ (demo page; /events and /v1/ proxied)"
  echo "              and https://$NGINX_HOST:$NGINX_TLS_PORT/ (HTTP/2; self-signed: $prefix/tls/server.crt)"
fi

echo "sse-publisher on http://127.0.0.1:$PUBLISHER_PORT (token: $SSE_TOKEN)"
for port in $GATEWAY_PORTS; do echo "sse-gateway   on http://127.0.0.1:$port/events?topic=<name>"; done
cat <<INFO
Subscribe: curl -N 'http://127.0.0.1:${GATEWAY_PORTS%% *}/events?topic=orders'
Publish:   curl -X POST http://127.0.0.1:$PUBLISHER_PORT/v1/publish -H 'Authorization: Bearer $SSE_TOKEN' \\
             -H 'Content-Type: application/json' -d '{"topic":"orders","data":{"n":1}}'
Press Ctrl-C to stop.
INFO
if [ -n "$nginx_missing" ]; then
  cat >&2 <<WARN
nginx is not installed, so it was NOT started: no proxy and no demo page on port $NGINX_PORT.
The publisher and the gateways above work without it. To get nginx and the demo page:
  apt-get install -y nginx-light
and run this script again.
WARN
fi
# Until Ctrl-C or SIGTERM: a process that dies (a gateway killed to watch clients fail over)
# leaves the rest running.
wait
