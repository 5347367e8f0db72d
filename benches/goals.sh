#!/usr/bin/env bash
# The performance goals of the relay, measured side by side in one sitting with the load
# tool: a relay binary from before a change (BEFORE), the one after it (AFTER), the bare
# socketioxide forwarder (its task-per-event and inline variants), the Node.js socket.io 2
# reference server (benches/node-reference) and the bare quinn copy relay; runs alternate
# within each round, every run on a fresh server process. docs/BENCHMARKS.md says what each
# line measures and holds the figures.
#
#   benches/goals.sh BEFORE AFTER [--rounds N] [--duration S] [--idle-clients N] [--out DIR]
#
# Copy both binaries out of target/ first if a build could replace them meanwhile. Needs
# target/release/p2p-relay-load (cargo build --release -p p2p-relay-load) and `npm ci` in
# benches/node-reference. Prints one line per run; the full output of each is in DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
[ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
BEFORE="$1"
AFTER="$2"
shift 2
LOAD="${LOAD:-$REPO/target/release/p2p-relay-load}"
ROUNDS=2
DURATION=4
IDLE=10000
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --idle-clients) IDLE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for bin in "$BEFORE" "$AFTER" "$LOAD"; do [ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 1; }; done
NODE_REF="$REPO/benches/node-reference"
# shellcheck source=benches/node-reference/start.sh
source "$NODE_REF/start.sh"
[ -d "$NODE_REF/node_modules/socket.io" ] || { echo "run npm ci in $NODE_REF first" >&2; exit 1; }
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/goals.XXXXXX)"
mkdir -p "$OUT"
echo "logs in $OUT; $(nproc) cpus; node $(node --version)"

NODE_PID=""
cleanup() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# One run: NAME SERVER ARGS... where SERVER is before|after|bare|inline|node|copy.
run() {
  local name="$1" server="$2"
  shift 2
  local log="$OUT/$name.$server.r$ROUND.log" where=()
  case "$server" in
    before) where=(--spawn "$BEFORE") ;;
    after) where=(--spawn "$AFTER") ;;
    bare) where=(--spawn-forwarder) ;;
    inline) where=(--spawn-forwarder --inline) ;;
    copy) where=(--spawn-copy-relay) ;;
    node)
      start_node_reference "$log.server" || exit 1
      where=(--socketio-url "$NODE_URL" --pid "$NODE_PID") ;;
  esac
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >"$log"
  # The load tool bounds its own runs (warm-up, duration, connect timeouts) and ends the
  # relay it spawned; `timeout` is the backstop.
  timeout 300 "$LOAD" "$@" "${where[@]}" >>"$log" 2>&1 || echo "exit $?" >>"$log"
  if [ "$server" = node ]; then kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; NODE_PID=""; fi
  printf '%-14s %-6s r%s  %s\n' "$name" "$server" "$ROUND" \
    "$(grep -E '^(relayed messages/s|acks/s|ack latency|stream:|relay CPU|RSS per|.*idle.*KiB)' "$log" | tr '\n' ' ' | sed 's/  */ /g')"
}

for ROUND in $(seq "$ROUNDS"); do
  for s in before after bare inline node; do run emit "$s" emit --duration "$DURATION"; done
  for s in before after bare node; do run emit-20k "$s" emit --rate 20000 --duration "$DURATION"; done
  for s in before after bare node; do run emit-ack "$s" emit-ack --window 256 --duration "$DURATION"; done
  for s in before after; do run emit-ack-1 "$s" emit-ack --window 1 --duration "$DURATION"; done
  for s in before after; do run emit-quic "$s" emit --from quic --duration "$DURATION"; done
  for s in before after; do run stream-sio "$s" stream --from sio3 --duration "$DURATION"; done
  for s in before after copy; do run stream-quic "$s" stream --from quic --duration "$DURATION"; done
  if [ "$IDLE" -gt 0 ]; then
    for s in before after bare node; do run idle-sio3 "$s" idle --transports sio3 --clients "$IDLE"; done
    for s in before after; do run idle-quic "$s" idle --transports quic --clients "$IDLE"; done
  fi
done
