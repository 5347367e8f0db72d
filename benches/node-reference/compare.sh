#!/usr/bin/env bash
# p2p-relay beside the Node.js socket.io 2 reference server (server.js), driven by the same
# load tool in one sitting, runs alternated, a fresh server process for every run.
#
#   benches/node-reference/compare.sh [options]
#
#   --relay BIN        p2p-relay binary          (default: target/release/p2p-relay)
#   --load BIN         p2p-relay-load binary     (default: target/release/p2p-relay-load)
#   --rounds N         rounds of every scenario  (default: 3)
#   --duration S       seconds measured per traffic run (default: 4)
#   --rate N           messages/s of a rated emit run (repeat for several; default: 20000)
#   --idle-clients N   idle sio3 clients per idle run (default: 5000; 0 skips idle runs)
#   --node-clients     also run tests/interop/load.js (socket.io-client 2.5 legacy clients,
#                      sender and receiver in one node process) against both servers
#   --out DIR          where the logs go (default: a new directory under /tmp)
#
# Needs `npm ci` here (socket.io 2.5.1), and for --node-clients `npm ci` in tests/interop.
# Copy the two binaries somewhere first if a rebuild could replace them during the runs.
# Prints one line per run while going, then a table (summarize.js) of medians and ratios.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RELAY="$REPO/target/release/p2p-relay"
LOAD="$REPO/target/release/p2p-relay-load"
ROUNDS=3
DURATION=4
RATES=""
IDLE_CLIENTS=5000
NODE_CLIENTS=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --relay) RELAY="$2"; shift 2 ;;
    --load) LOAD="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rate) RATES="$RATES $2"; shift 2 ;;
    --idle-clients) IDLE_CLIENTS="$2"; shift 2 ;;
    --node-clients) NODE_CLIENTS=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$RELAY" ] || { echo "no relay binary at $RELAY" >&2; exit 1; }
[ -x "$LOAD" ] || { echo "no load tool at $LOAD" >&2; exit 1; }
[ -d "$HERE/node_modules/socket.io" ] || { echo "run npm ci in $HERE first" >&2; exit 1; }
[ -n "$RATES" ] || RATES=20000
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/node-reference.XXXXXX)"
mkdir -p "$OUT"
echo "logs in $OUT"
{
  echo "date $(date -u +%FT%TZ)"
  echo "node $(node --version)"
  echo "socket.io $(node -p "require('$HERE/node_modules/socket.io/package.json').version")" \
       "engine.io $(node -p "require('$HERE/node_modules/engine.io/package.json').version")" \
       "ws $(node -p "require('$HERE/node_modules/ws/package.json').version")"
  echo "relay $RELAY ($("$RELAY" --version 2>/dev/null || echo '?'))"
  echo "cpus $(nproc)"
} | tee "$OUT/versions.txt"

# Every process started here is ended here, by its pid.
NODE_PID=""
RELAY_PID=""
RELAY_DIR=""
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
  [ -n "$RELAY_DIR" ] && rm -rf "$RELAY_DIR" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_node LOG: a fresh server.js; sets NODE_PID and NODE_URL.
start_node() {
  local log="$1"
  node "$HERE/server.js" --port 0 >"$log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 100); do
    NODE_URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null || true)"
    [ -n "$NODE_URL" ] && return 0
    sleep 0.1
  done
  echo "server.js did not start: $(cat "$log")" >&2
  return 1
}
stop_node() {
  [ -n "$NODE_PID" ] || return 0
  kill "$NODE_PID" 2>/dev/null || true
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=""
}
# start_relay LOG: the relay on free ports with the limits off (as the load tool's --spawn
# does); sets RELAY_PID and RELAY_URL. Only for load.js (the load tool spawns its own).
start_relay() {
  local log="$1"
  RELAY_DIR="$(mktemp -d /tmp/node-reference-relay.XXXXXX)"
  RUST_LOG=warn "$RELAY" --socketio-listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --data-dir "$RELAY_DIR" \
    >"$log" 2>&1 &
  RELAY_PID=$!
  for _ in $(seq 100); do
    RELAY_URL="$(grep -o 'Socket.IO gateway listening on http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | grep -o 'http://.*' || true)"
    [ -n "$RELAY_URL" ] && return 0
    sleep 0.1
  done
  echo "relay did not start: $(cat "$log")" >&2
  return 1
}
stop_relay() {
  [ -n "$RELAY_PID" ] || return 0
  kill "$RELAY_PID" 2>/dev/null || true
  wait "$RELAY_PID" 2>/dev/null || true
  RELAY_PID=""
  rm -rf "$RELAY_DIR"
  RELAY_DIR=""
}
# bounded SECS CMD...: runs CMD, and past SECS ends it and the processes it started (the
# load tool's --spawn relay would outlive a plain `timeout`), by their pids.
bounded() {
  local secs="$1"
  shift
  "$@" &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge $((secs * 10)) ]; then
      local kids
      kids="$(pgrep -P "$pid" || true)"
      kill "$pid" $kids 2>/dev/null || true
      echo "stopped after ${secs} s"
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid"
}
# cpu_ticks PID: utime+stime of all its threads, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# run NAME SERVER ARGS...: one load-tool run against SERVER (relay|node), logged to
# $OUT/NAME.SERVER.ROUND.log, with the load average before and after.
run() {
  local name="$1" server="$2"
  shift 2
  local log="$OUT/$name.$server.r$ROUND.log"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >"$log"
  if [ "$server" = relay ]; then
    bounded 180 "$LOAD" "$@" --spawn "$RELAY" --relay-arg=--admin-listen=127.0.0.1:0 >>"$log" 2>&1 || echo "exit $?" >>"$log"
  else
    start_node "$OUT/$name.node.r$ROUND.server.log"
    bounded 180 "$LOAD" "$@" --socketio-url "$NODE_URL" --pid "$NODE_PID" >>"$log" 2>&1 || echo "exit $?" >>"$log"
    stop_node
  fi
  echo "load-after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
  printf '%-16s %-5s r%s  %s\n' "$name" "$server" "$ROUND" \
    "$(grep -E '^(relayed messages/s|ack latency|relay CPU| *sio3: [0-9]+ idle)' "$log" | tr '\n' ' ' | sed 's/  */ /g')"
}

# node_clients SERVER: tests/interop/load.js (legacy socket.io-client 2.5 clients) against
# SERVER, the server's CPU read from /proc around the whole run.
node_clients() {
  local server="$1" url pid
  local log="$OUT/nodeclients.$server.r$ROUND.log"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >"$log"
  if [ "$server" = relay ]; then
    start_relay "$OUT/nodeclients.relay.r$ROUND.server.log"; url="$RELAY_URL"; pid="$RELAY_PID"
  else
    start_node "$OUT/nodeclients.node.r$ROUND.server.log"; url="$NODE_URL"; pid="$NODE_PID"
  fi
  local c0 c1
  c0="$(cpu_ticks "$pid")"
  bounded 60 node "$REPO/tests/interop/load.js" --url "$url" --sender legacy --receiver legacy \
    --seconds "$DURATION" >>"$log" 2>&1 || echo "exit $?" >>"$log"
  c1="$(cpu_ticks "$pid")"
  echo "server CPU ticks $((c1 - c0)) (of $(getconf CLK_TCK)/s)" >>"$log"
  if [ "$server" = relay ]; then stop_relay; else stop_node; fi
  echo "load-after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$log"
  printf '%-16s %-5s r%s  %s\n' nodeclients "$server" "$ROUND" \
    "$(grep -E '^(messages/s|server CPU|sent)' "$log" | tr '\n' ' ')"
}

for ROUND in $(seq "$ROUNDS"); do
  # Alternate which server goes first in a round.
  if [ $((ROUND % 2)) -eq 1 ]; then order="relay node"; else order="node relay"; fi
  for s in $order; do run emit "$s" emit --duration "$DURATION"; done
  for rate in $RATES; do
    for s in $order; do run "emit-rate-$rate" "$s" emit --rate "$rate" --duration "$DURATION"; done
  done
  for s in $order; do run emit-ack "$s" emit-ack --window 256 --duration "$DURATION"; done
  if [ "$IDLE_CLIENTS" -gt 0 ]; then
    for s in $order; do run idle "$s" idle --transports sio3 --clients "$IDLE_CLIENTS" --duration 3; done
  fi
  if [ "$NODE_CLIENTS" -eq 1 ]; then
    for s in $order; do node_clients "$s"; done
  fi
done

node "$HERE/summarize.js" "$OUT" | tee "$OUT/summary.md"
