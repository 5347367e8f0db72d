#!/usr/bin/env bash
# What one relayed message costs the server in system calls, futex calls, epoll waits and
# context switches, beside its CPU time: for the relay, the bare socketioxide forwarder and
# the Node.js reference server, in three regimes (a closed loop, a fixed 20,000 msgs/s, and
# one emit-ack at a time). docs/BENCHMARKS.md holds the figures and says how to read them.
#
#   benches/counts.sh RELAY [--window S] [--out DIR]
#
# Counting is perf's (tracepoints raw_syscalls:sys_enter, syscalls:sys_enter_futex, the
# three epoll waits (tokio's mio uses epoll_wait, Node's libuv epoll_pwait) and the
# context-switches event, for every thread of the server), over a window of S seconds (default 3) inside the load tool's measurement: perf
# starts when the load tool prints its second per-second line and stops S seconds later,
# and the messages of the window are the sum of the load tool's per-second lines it spans
# (so the window is aligned to within the 50 ms this script polls at). Needs root (or
# perf_event_paranoid -1) for the tracepoints, target/release/p2p-relay-load, and `npm ci`
# in benches/node-reference.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,16p' "$0"; exit 2; }
RELAY="$1"
shift
LOAD="${LOAD:-$REPO/target/release/p2p-relay-load}"
WINDOW=3
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --window) WINDOW="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for bin in "$RELAY" "$LOAD"; do [ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 1; }; done
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 1; }
NODE_REF="$REPO/benches/node-reference"
# shellcheck source=benches/node-reference/start.sh
source "$NODE_REF/start.sh"
[ -d "$NODE_REF/node_modules/socket.io" ] || { echo "run npm ci in $NODE_REF first" >&2; exit 1; }
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/counts.XXXXXX)"
mkdir -p "$OUT"
# The load tool measures for the window plus two seconds (one before it, one after).
DURATION=$((WINDOW + 3))
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_pwait2,context-switches
echo "logs in $OUT; $(nproc) cpus; window ${WINDOW}s"
printf '%-10s %-6s %12s %10s %9s %9s %9s %9s\n' regime server "msgs/s" "CPU/msg" "syscalls" "futex" "epoll" "ctx sw"
echo "(the last four per message of the window: per acked emit for emit-ack)"

NODE_PID=""
LOAD_PID=""
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The value of a perf counter in its output file.
counter() { awk -v e="$2" '$2 == e { gsub(",", "", $1); print $1 }' "$1"; }
# Waits in epoll, whichever of the three calls the server makes.
epolls() { awk '$2 ~ /^syscalls:sys_enter_epoll_(wait|pwait|pwait2)$/ { n += $1 } END { print n + 0 }' "$1"; }

# One run: NAME SERVER COLUMN LOAD-ARGS..., SERVER one of relay|bare|node, COLUMN the load
# tool's per-second column that counts messages (relayed, or acked for emit-ack).
run() {
  local name="$1" server="$2" column="$3"
  shift 3
  local log="$OUT/$name.$server.log" perf_out="$OUT/$name.$server.perf" where=() pid=""
  case "$server" in
    relay) where=(--spawn "$RELAY") ;;
    bare) where=(--spawn-forwarder) ;;
    node)
      start_node_reference "$log.server" || exit 1
      where=(--socketio-url "$NODE_URL" --pid "$NODE_PID")
      pid=$NODE_PID ;;
  esac
  timeout 120 "$LOAD" "$@" --warmup 1 --duration "$DURATION" "${where[@]}" >"$log" 2>&1 &
  LOAD_PID=$!
  # The server's pid (the load tool prints the one it spawned), then its second line.
  for _ in $(seq 600); do
    [ -n "$pid" ] || pid="$(sed -n 's/^relay: pid \([0-9]*\).*/\1/p' "$log" | head -1)"
    [ -n "$pid" ] && grep -q '^ *2\.0s' "$log" && break
    sleep 0.05
  done
  grep -q '^ *2\.0s' "$log" || { echo "$name/$server: no second line (see $log)" >&2; exit 1; }
  perf stat -x ' ' -e "$EVENTS" -p "$pid" -o "$perf_out" -- sleep "$WINDOW" 2>/dev/null || true
  wait "$LOAD_PID" || echo "$name/$server: the load tool exited with $?" >&2
  LOAD_PID=""
  if [ "$server" = node ]; then kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""; fi
  # Messages in the window: the per-second lines from 3.0s to (2 + WINDOW).0s.
  local msgs
  msgs="$(awk -v col="$column" -v last=$((2 + WINDOW)) '
    $1 ~ /s$/ { t = $1 + 0; for (i = 2; i < NF; i++) if ($i == col) { r = $(i + 1); sub("/s", "", r); if (t >= 3 && t <= last) n += r } }
    END { print n + 0 }' "$log")"
  local rate cpu
  if [ "$column" = acked ]; then
    rate="$(sed -n 's/^ack latency: .*(\([0-9]*\) acks\/s).*/\1/p' "$log" | head -1)"
  else
    rate="$(sed -n 's/^relayed messages\/s: \([0-9]*\).*/\1/p' "$log" | head -1)"
  fi
  # The load tool's own figure over its whole measurement, with its unit (µs or ms).
  cpu="$(sed -n 's/^relay CPU: .*, \([0-9.]* [µm]s\) per .*/\1/p' "$log" | head -1 | tr -d ' ')"
  per() { awk -v c="$1" -v m="$msgs" 'BEGIN { if (m > 0 && c != "") printf "%.2f", c / m; else print "-" }'; }
  printf '%-10s %-6s %12s %10s %9s %9s %9s %9s\n' "$name" "$server" "${rate:--}" "${cpu:--}" \
    "$(per "$(counter "$perf_out" raw_syscalls:sys_enter)")" \
    "$(per "$(counter "$perf_out" syscalls:sys_enter_futex)")" \
    "$(per "$(epolls "$perf_out")")" \
    "$(per "$(counter "$perf_out" context-switches)")"
}

for s in relay bare node; do run emit "$s" relayed emit; done
for s in relay bare node; do run emit-20k "$s" relayed emit --rate 20000; done
for s in relay bare node; do run emit-ack-1 "$s" acked emit-ack --window 1; done
